// ATen operator → ONNX (opset 17) mappings: every operator that EPGViT, the
// preconditioning, classifier-free guidance and the samplers call on values that
// depend on the inputs, plus the common elementwise and shape operators.
// Argument indices follow each operator's schema (ops.info(name, overload)).
// Elementwise arithmetic computes in the result's dtype, as ATen does after type
// promotion, so inputs are cast to it first.
import { tensorMsg } from './builder.js';
import type { MapContext, OpMapping } from './convert.js';

const M = new Map<string, OpMapping>();

function norm(dim: number, rank: number): number {
  return dim < 0 ? dim + rank : dim;
}

/** Tensor argument i cast to the result's dtype. */
function asOut(c: MapContext, i: number): string {
  return c.cast(c.tensor(i), c.dtypeOf(i), c.outDtype());
}

/** As asOut, for elementwise operators that broadcast (a per-sample constant may stay one row). */
function bcOut(c: MapContext, i: number): string {
  return c.cast(c.broadcastTensor(i), c.dtypeOf(i), c.outDtype());
}

/** A Scalar argument as a constant of the result's dtype. */
function scalarOut(c: MapContext, i: number, def: number): string {
  return c.g.scalar(c.num(i, def), c.outDtype());
}

// --- elementwise binary
const BINARY: Record<string, string> = { add: 'Add', sub: 'Sub', mul: 'Mul', div: 'Div' };
for (const [aten, onnx] of Object.entries(BINARY)) {
  const alpha = aten === 'add' || aten === 'sub';
  M.set(`aten::${aten}.Tensor`, (c) => {
    let other = bcOut(c, 1);
    if (alpha && c.num(2, 1) !== 1) other = c.g.op('Mul', [other, scalarOut(c, 2, 1)]);
    return c.g.op(onnx, [bcOut(c, 0), other]);
  });
  M.set(`aten::${aten}.Scalar`, (c) => {
    let other = scalarOut(c, 1, 0);
    if (alpha && c.num(2, 1) !== 1) other = c.g.scalar(c.num(1, 0) * c.num(2, 1), c.outDtype());
    return c.g.op(onnx, [asOut(c, 0), other]);
  });
}
M.set('aten::rsub.Scalar', (c) =>
  c.g.op('Sub', [scalarOut(c, 1, 0), c.g.op('Mul', [asOut(c, 0), scalarOut(c, 2, 1)])]),
);
M.set('aten::rsub.Tensor', (c) => c.g.op('Sub', [asOut(c, 1), c.g.op('Mul', [asOut(c, 0), scalarOut(c, 2, 1)])]));
M.set('aten::div.Tensor_mode', (c) => {
  if (!c.absent(2)) c.fail(`rounding_mode '${c.str(2, '')}' is not supported (only true division)`);
  return c.g.op('Div', [asOut(c, 0), asOut(c, 1)]);
});
M.set('aten::pow.Tensor_Scalar', (c) => {
  const e = c.num(1, 1);
  if (e === 2) return c.g.op('Mul', [asOut(c, 0), asOut(c, 0)]);
  return c.g.op('Pow', [asOut(c, 0), scalarOut(c, 1, 1)]);
});
M.set('aten::pow.Tensor_Tensor', (c) => c.g.op('Pow', [asOut(c, 0), asOut(c, 1)]));
M.set('aten::maximum', (c) => c.g.op('Max', [bcOut(c, 0), bcOut(c, 1)]));
M.set('aten::minimum', (c) => c.g.op('Min', [bcOut(c, 0), bcOut(c, 1)]));
M.set('aten::where.self', (c) => c.g.op('Where', [c.broadcastTensor(0), bcOut(c, 1), bcOut(c, 2)]));

// --- elementwise unary
const UNARY: Record<string, string> = {
  neg: 'Neg',
  abs: 'Abs',
  exp: 'Exp',
  log: 'Log',
  sqrt: 'Sqrt',
  reciprocal: 'Reciprocal',
  sin: 'Sin',
  cos: 'Cos',
  tanh: 'Tanh',
  sigmoid: 'Sigmoid',
  relu: 'Relu',
  erf: 'Erf',
  floor: 'Floor',
  ceil: 'Ceil',
};
for (const [aten, onnx] of Object.entries(UNARY)) M.set(`aten::${aten}`, (c) => c.g.op(onnx, [asOut(c, 0)]));
M.set('aten::square', (c) => {
  const x = asOut(c, 0);
  return c.g.op('Mul', [x, x]);
});
M.set('aten::rsqrt', (c) => c.g.op('Reciprocal', [c.g.op('Sqrt', [asOut(c, 0)])]));
M.set('aten::silu', (c) => {
  const x = c.tensor(0);
  return c.g.op('Mul', [x, c.g.op('Sigmoid', [x])]);
});
M.set('aten::gelu', (c) => {
  const x = c.tensor(0);
  const dt = c.outDtype();
  const approximate = c.str(1, 'none');
  if (approximate === 'none') {
    // 0.5·x·(1 + erf(x/√2)); ONNX Gelu arrives only in opset 20.
    const erf = c.g.op('Erf', [c.g.op('Mul', [x, c.g.scalar(Math.SQRT1_2, dt)])]);
    return c.g.op('Mul', [c.g.op('Mul', [x, c.g.scalar(0.5, dt)]), c.g.op('Add', [erf, c.g.scalar(1, dt)])]);
  }
  if (approximate !== 'tanh') c.fail(`approximate='${approximate}' is not one of none, tanh`);
  // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
  const x3 = c.g.op('Mul', [c.g.op('Mul', [x, x]), x]);
  const inner = c.g.op('Mul', [
    c.g.op('Add', [x, c.g.op('Mul', [x3, c.g.scalar(0.044715, dt)])]),
    c.g.scalar(Math.sqrt(2 / Math.PI), dt),
  ]);
  return c.g.op('Mul', [
    c.g.op('Mul', [x, c.g.scalar(0.5, dt)]),
    c.g.op('Add', [c.g.op('Tanh', [inner]), c.g.scalar(1, dt)]),
  ]);
});
M.set('aten::clamp', (c) => {
  const dt = c.outDtype();
  const min = c.absent(1) ? '' : c.g.scalar(c.num(1, 0), dt);
  const max = c.absent(2) ? '' : c.g.scalar(c.num(2, 0), dt);
  return c.g.op('Clip', [asOut(c, 0), min, max]);
});
M.set('aten::clamp.Tensor', (c) => {
  // clamp(x, min, max) = min(max(x, lo), hi), elementwise with broadcasting.
  let x = bcOut(c, 0);
  if (!c.absent(1)) x = c.g.op('Max', [x, bcOut(c, 1)]);
  if (!c.absent(2)) x = c.g.op('Min', [x, bcOut(c, 2)]);
  return x;
});

// --- dtype and identity
const identity: OpMapping = (c) => c.g.op('Identity', [c.tensor(0)]);
for (const op of ['alias', 'clone', 'contiguous', 'detach', 'lift_fresh']) M.set(`aten::${op}`, identity);
const toOut: OpMapping = (c) =>
  c.dtypeOf(0) === c.outDtype() ? identity(c) : c.cast(c.tensor(0), c.dtypeOf(0), c.outDtype());
for (const op of ['to.dtype', 'to.dtype_layout', 'to.device', 'to.other', '_to_copy', 'type_as'])
  M.set(`aten::${op}`, toOut);

// --- shapes
const reshapeToOut: OpMapping = (c) => c.g.op('Reshape', [c.tensor(0), c.reshapeTarget()]);
for (const op of [
  'reshape',
  'view',
  'flatten.using_ints',
  'unflatten.int',
  '_unsafe_view',
  'squeeze',
  'squeeze.dim',
  'squeeze.dims',
])
  M.set(`aten::${op}`, reshapeToOut);
M.set('aten::unsqueeze', (c) => c.g.op('Unsqueeze', [c.tensor(0), c.g.ints([norm(c.int(1, 0), c.outShape().length)])]));
M.set('aten::transpose.int', (c) => {
  const rank = c.shapeOf(0).length;
  const perm = Array.from({ length: rank }, (_, i) => i);
  const d0 = norm(c.int(1, 0), rank);
  const d1 = norm(c.int(2, 0), rank);
  [perm[d0], perm[d1]] = [perm[d1]!, perm[d0]!];
  return c.g.op('Transpose', [c.tensor(0)], { perm });
});
M.set('aten::t', (c) => (c.shapeOf(0).length < 2 ? identity(c) : c.g.op('Transpose', [c.tensor(0)], { perm: [1, 0] })));
M.set('aten::permute', (c) => {
  const rank = c.shapeOf(0).length;
  return c.g.op('Transpose', [c.tensor(0)], { perm: c.ints(1, []).map((d) => norm(d, rank)) });
});
const expandToOut: OpMapping = (c) => c.g.op('Expand', [c.tensor(0), c.outShapeTensor()]);
M.set('aten::expand', expandToOut);
M.set('aten::expand_as', (c) => c.g.op('Expand', [c.tensor(0), c.g.op('Shape', [c.tensor(1)])]));
M.set('aten::broadcast_to', expandToOut);
M.set('aten::cat', (c) => {
  const rank = c.outShape().length;
  const dtypes = c.dtypesOf(0);
  const parts = c.tensors(0).map((n, j) => c.cast(n, dtypes[j]!, c.outDtype()));
  return c.g.op('Concat', parts, { axis: norm(c.int(1, 0), rank) });
});
M.set('aten::stack', (c) => {
  const rank = c.outShape().length;
  const axis = norm(c.int(1, 0), rank);
  const parts = c.tensors(0).map((n) => c.g.op('Unsqueeze', [n, c.g.ints([axis])]));
  return c.g.op('Concat', parts, { axis });
});
/** Splits along dim into the traced results' sizes (equal parts: no sizes, so a batch-sized split stays dynamic). */
function splitLike(c: MapContext, dim: number): string[] {
  const rank = c.shapeOf(0).length;
  const axis = norm(dim, rank);
  const sizes = Array.from({ length: c.nOut }, (_, j) => c.outShape(j)[axis]!);
  const equal = sizes.every((s) => s === sizes[0]);
  const input = [c.tensor(0)];
  if (!equal) input.push(c.g.ints(sizes));
  if (c.nOut === 1) return [c.g.op('Identity', [c.tensor(0)])];
  return c.g.node('Split', input, { axis }, { nOut: c.nOut });
}
M.set('aten::chunk', (c) => splitLike(c, c.int(2, 0)));
M.set('aten::split.Tensor', (c) => splitLike(c, c.int(2, 0)));
M.set('aten::split_with_sizes', (c) => splitLike(c, c.int(2, 0)));
M.set('aten::unbind.int', (c) => {
  const axis = norm(c.int(1, 0), c.shapeOf(0).length);
  const parts = c.nOut === 1 ? [c.tensor(0)] : c.g.node('Split', [c.tensor(0)], { axis }, { nOut: c.nOut });
  return parts.map((p) => c.g.op('Squeeze', [p, c.g.ints([axis])]));
});
M.set('aten::slice.Tensor', (c) => {
  const rank = c.shapeOf(0).length;
  const axis = norm(c.int(1, 0), rank);
  const start = c.int(2, 0);
  const end = c.absent(3) ? Number.MAX_SAFE_INTEGER : Math.min(c.int(3, 0), Number.MAX_SAFE_INTEGER);
  const step = c.int(4, 1);
  return c.g.op('Slice', [c.tensor(0), c.g.ints([start]), c.g.ints([end]), c.g.ints([axis]), c.g.ints([step])]);
});
M.set('aten::narrow', (c) => {
  const axis = norm(c.int(1, 0), c.shapeOf(0).length);
  const start = c.int(2, 0);
  return c.g.op('Slice', [c.tensor(0), c.g.ints([start]), c.g.ints([start + c.int(3, 0)]), c.g.ints([axis])]);
});
M.set('aten::select.int', (c) => {
  const axis = norm(c.int(1, 0), c.shapeOf(0).length);
  return c.g.op('Gather', [c.tensor(0), c.g.scalar(c.int(2, 0), 'int64')], { axis });
});
M.set('aten::index_select', (c) => {
  const axis = norm(c.int(1, 0), c.shapeOf(0).length);
  return c.g.op('Gather', [c.tensor(0), c.tensor(2)], { axis });
});
M.set('aten::embedding', (c) => c.g.op('Gather', [c.tensor(0), c.tensor(1)], { axis: 0 }));

// --- creation from a shape (reached only when the shape follows the batch)
const fillOut = (c: MapContext, value: number): string =>
  c.g.op('ConstantOfShape', [c.outShapeTensor()], { value: tensorMsg('value', [value], c.outDtype(), [1]) });
M.set('aten::full', (c) => fillOut(c, c.num(1, 0)));
M.set('aten::full_like', (c) => fillOut(c, c.num(1, 0)));
M.set('aten::zeros', (c) => fillOut(c, 0));
M.set('aten::ones', (c) => fillOut(c, 1));
M.set('aten::zeros_like', (c) => fillOut(c, 0));
M.set('aten::ones_like', (c) => fillOut(c, 1));

// --- reductions
function reduceAxes(c: MapContext, i: number): number[] {
  const rank = c.shapeOf(0).length;
  const dims = c.absent(i) ? Array.from({ length: rank }, (_, j) => j) : c.ints(i, []);
  return dims.map((d) => norm(d, rank));
}
M.set('aten::mean.dim', (c) =>
  c.g.op('ReduceMean', [asOut(c, 0)], { axes: reduceAxes(c, 1), keepdims: Number(c.bool(2, false)) }),
);
M.set('aten::sum.dim_IntList', (c) =>
  c.g.op('ReduceSum', [asOut(c, 0), c.g.ints(reduceAxes(c, 1))], { keepdims: Number(c.bool(2, false)) }),
);
// Full reductions (no dims): every axis, no kept dimensions.
M.set('aten::sum', (c) => c.g.op('ReduceSum', [asOut(c, 0)], { keepdims: 0 }));
M.set('aten::mean', (c) => c.g.op('ReduceMean', [asOut(c, 0)], { keepdims: 0 }));
M.set('aten::softmax.int', (c) => c.g.op('Softmax', [asOut(c, 0)], { axis: c.int(1, 0) }));
M.set('aten::_softmax', (c) => c.g.op('Softmax', [c.tensor(0)], { axis: c.int(1, 0) }));

// --- linear algebra and layers
for (const op of ['matmul', 'mm', 'bmm']) M.set(`aten::${op}`, (c) => c.g.op('MatMul', [asOut(c, 0), asOut(c, 1)]));
M.set('aten::linear', (c) => {
  // One Transpose per weight, shared by every call (an unrolled sampler calls each layer many times).
  const w = c.tensor(1);
  const wT = c.g.memo(`transpose:${w}`, () => c.g.op('Transpose', [w], { perm: [1, 0] }));
  const y = c.g.op('MatMul', [c.tensor(0), wT]);
  const bias = c.optTensor(2);
  return bias === null ? y : c.g.op('Add', [y, bias]);
});
M.set('aten::conv2d', (c) => {
  const two = (v: number[]): number[] => (v.length === 1 ? [v[0]!, v[0]!] : v);
  const pad = two(c.ints(4, [0, 0]));
  if (typeof c.call.args[4] === 'string') c.fail("string padding ('same', 'valid') is not supported");
  const inputs = [c.tensor(0), c.tensor(1)];
  const bias = c.optTensor(2);
  if (bias !== null) inputs.push(bias);
  return c.g.op('Conv', inputs, {
    strides: two(c.ints(3, [1, 1])),
    pads: [...pad, ...pad],
    dilations: two(c.ints(5, [1, 1])),
    group: c.int(6, 1),
  });
});
M.set('aten::layer_norm', (c) => {
  const normalized = c.ints(1, []);
  const dt = c.dtypeOf(0);
  const count = normalized.reduce((p, d) => p * d, 1);
  const scale = c.optTensor(2) ?? c.g.constant(new Array<number>(count).fill(1), dt, normalized);
  const inputs = [c.tensor(0), scale];
  const bias = c.optTensor(3);
  if (bias !== null) inputs.push(bias);
  return c.g.op('LayerNormalization', inputs, { axis: -normalized.length, epsilon: { float: c.num(4, 1e-5) } });
});
M.set('aten::scaled_dot_product_attention', (c) => {
  // softmax(q·kᵀ·scale)·v; scale = 1/√E by default. Masks and dropout are not exported.
  if (!c.absent(3)) c.fail('an attention mask is not supported');
  if (c.num(4, 0) !== 0) c.fail('attention dropout must be 0 at export (call model.eval())');
  if (c.bool(5, false)) c.fail('causal attention is not supported');
  const q = c.shapeOf(0);
  const dt = c.dtypeOf(0);
  const scale = c.absent(6) ? 1 / Math.sqrt(q[q.length - 1]!) : c.num(6, 1);
  const rank = q.length;
  const perm = Array.from({ length: rank }, (_, i) => i);
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1]!, perm[rank - 2]!];
  const kT = c.g.op('Transpose', [c.tensor(1)], { perm });
  const scores = c.g.op('Mul', [c.g.op('MatMul', [c.tensor(0), kT]), c.g.scalar(scale, dt)]);
  return c.g.op('MatMul', [c.g.op('Softmax', [scores], { axis: -1 }), c.tensor(2)]);
});

/** The ATen operators the exporter maps, keyed 'aten::name.overload'. */
export const ATEN_TO_ONNX: ReadonlyMap<string, OpMapping> = M;
