// Two traces → one ONNX graph. The function is traced at two batch sizes; the
// traces must make the same calls. Comparing them tells what is constant and
// what follows the batch (the dynamic batch axis):
//   - a value computed from the inputs is a graph value: its operator is mapped
//     to ONNX nodes (aten-ops.ts);
//   - a value computed only from weights and constants, equal in both traces, is
//     folded into an initializer (a weight read as-is keeps its state-dict name);
//   - such a value whose first dimension is k·batch with identical rows (σ filled
//     per sample, the time embedding of one σ) is folded into one row that an
//     Expand broadcasts to k·batch rows at run time;
//   - anything else (random draws, batch-dependent arguments an operator cannot
//     take at run time) must be mapped, or the export fails naming the operator
//     and the line of the traced function that called it. It never guesses.
import { dtypeFromCode, type DType } from '../dtype.js';
import { native, type NativeArg } from '../native.js';
import { GraphBuilder, onnxDtype } from './builder.js';
import type { Trace, TracedCall } from './trace.js';

/** A value of the graph under construction, keyed by its tensor id in the first trace. */
type Value =
  | { kind: 'graph'; name: string }
  | { kind: 'const'; idA: number; hint: string }
  | { kind: 'rows'; idA: number; k: number; hint: string };

export class OnnxExportError extends Error {
  override name = 'OnnxExportError';
}

/** What an operator mapping sees of one call. */
export interface MapContext {
  readonly g: GraphBuilder;
  readonly call: TracedCall;
  /** The ONNX value of tensor argument i (a weight or constant becomes an initializer). */
  tensor(i: number): string;
  /**
   * As tensor(i) for an elementwise operator that broadcasts: a per-sample constant stays one
   * row when another input supplies its batch dimension (no Expand: onnxruntime's loader slows
   * down quadratically with the number of dynamic Expands, and an unrolled sampler has hundreds).
   */
  broadcastTensor(i: number): string;
  /** As tensor(i), or null where the optional argument is absent. */
  optTensor(i: number): string | null;
  tensors(i: number): string[];
  dtypeOf(i: number): DType;
  /** The dtypes of a tensor-list argument. */
  dtypesOf(i: number): DType[];
  shapeOf(i: number): number[];
  /** Whether argument i was left to its default. */
  absent(i: number): boolean;
  /** A non-tensor argument, which must be the same in both traces (def: the schema default). */
  int(i: number, def: number): number;
  ints(i: number, def: readonly number[]): number[];
  num(i: number, def: number): number;
  bool(i: number, def: boolean): boolean;
  str(i: number, def: string): string;
  /** Number of tensor results. */
  readonly nOut: number;
  outDtype(j?: number): DType;
  outShape(j?: number): number[];
  /** Result j's shape as a 1-D int64 ONNX value; a dimension that follows the batch is k·batch at run time. */
  outShapeTensor(j?: number): string;
  /**
   * The result's shape for Reshape as a constant where it can be one: a dimension that follows the
   * batch is 0 (copy the input's) where the input has it at the same place, else -1 (once); otherwise
   * outShapeTensor(). Constant shapes keep onnxruntime's loading time linear in the graph's size.
   */
  reshapeTarget(): string;
  /** name cast from one dtype to another (unchanged when they agree). */
  cast(name: string, from: DType, to: DType): string;
  /** An unsupported use of a supported operator: the error names the call. */
  fail(why: string): never;
}

export type OpMapping = (c: MapContext) => string | string[];

/** Operators whose results are random draws: never folded into constants. */
const RANDOM_OPS =
  /^aten::(rand|randn|randint|randperm|normal|bernoulli|multinomial|dropout|native_dropout|uniform_|normal_|exponential_|poisson|rrelu)/;

function baseType(t: string): string {
  return t.replace(/\([^)]*\)/g, '').trim();
}

function tensorIdsOf(type: string, v: NativeArg): number[] {
  const t = baseType(type);
  if (t === 'Tensor' || t === 'Tensor?') return typeof v === 'number' && v >= 0 ? [v] : [];
  if (t === 'Tensor[]' || t === 'Tensor?[]')
    return Array.isArray(v) ? (v as NativeArg[]).filter((x): x is number => typeof x === 'number' && x >= 0) : [];
  return [];
}

function resultIds(call: TracedCall): { ids: number[]; other: boolean } {
  const returns = call.info.returns.map(baseType);
  const values = returns.length === 1 ? [call.result] : ((call.result as NativeArg[] | undefined) ?? []);
  const ids: number[] = [];
  let other = false;
  returns.forEach((t, i) => {
    const v = values[i];
    if (t === 'Tensor') ids.push(v as number);
    else if (t === 'Tensor[]') ids.push(...(v as number[]));
    else other = true;
  });
  return { ids, other };
}

function bytesOf(id: number): Uint8Array {
  return new Uint8Array(native.toBuffer(id));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

function deepEqual(a: NativeArg, b: NativeArg): boolean {
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((x, i) => deepEqual(x as NativeArg, b[i] as NativeArg));
  return a === b || (typeof a === 'number' && typeof b === 'number' && Number.isNaN(a) && Number.isNaN(b));
}

export interface ConvertOptions {
  inputNames: readonly string[];
  outputNames: readonly string[];
  /** Names of the tensors the function reads (its weights), for the initializers. */
  names: ReadonlyMap<number, string>;
  batchSizes: readonly [number, number];
  mappings: ReadonlyMap<string, OpMapping>;
}

export interface ConvertedGraph {
  g: GraphBuilder;
  inputs: { name: string; dtype: DType; shape: (number | 'batch')[] }[];
  outputs: { name: string; dtype: DType; shape: (number | 'batch')[] }[];
  /** Counts of the traced calls: mapped to nodes, folded into constants. */
  mapped: number;
  folded: number;
}

/** Converts the traces at batch sizes batchSizes[0] (a) and batchSizes[1] (b) into a graph. */
export function convertTraces(a: Trace, b: Trace, o: ConvertOptions): ConvertedGraph {
  const [B1, B2] = o.batchSizes;
  const g = new GraphBuilder();
  const values = new Map<number, Value>();
  const materialised = new Map<number, string>();
  const shape = (id: number): number[] => native.shape(id);
  const dtype = (id: number): DType => dtypeFromCode(native.dtype(id));

  // A dimension of size dA in trace a and dB in trace b: static, or k·batch.
  const batchFactor = (dA: number, dB: number): number | null => {
    if (dA === dB) return 0;
    const k = dA / B1;
    return Number.isInteger(k) && k > 0 && dB === k * B2 ? k : null;
  };

  // --- inputs: the first dimension of each follows the batch
  if (a.inputIds.length !== o.inputNames.length)
    throw new OnnxExportError(`onnx: ${a.inputIds.length} example inputs for ${o.inputNames.length} input names`);
  const inputs = a.inputIds.map((idA, i) => {
    const name = g.reserve(o.inputNames[i]!);
    values.set(idA, { kind: 'graph', name });
    const sA = shape(idA);
    const sB = shape(b.inputIds[i]!);
    return {
      name,
      dtype: dtype(idA),
      shape: sA.map((d, j) => (j === 0 && sB[0] !== d ? ('batch' as const) : d)),
    };
  });
  const batchInput = inputs.findIndex((x) => x.shape[0] === 'batch');
  let batchName: string | null = null;
  const batch = (): string => {
    if (batchName === null) {
      if (batchInput < 0) throw new OnnxExportError('onnx: no input has a batch dimension');
      batchName = g.op('Shape', [inputs[batchInput]!.name], { start: 0, end: 1 });
    }
    return batchName;
  };
  const shapeTensor = (sA: readonly number[], sB: readonly number[], what: string): string => {
    const pieces: (number[] | string)[] = [];
    sA.forEach((d, j) => {
      const k = batchFactor(d, sB[j]!);
      if (k === null)
        throw new OnnxExportError(`onnx: ${what}: dimension ${j} (${d} vs ${sB[j]}) is not a multiple of the batch`);
      if (k === 0) {
        const last = pieces[pieces.length - 1];
        if (Array.isArray(last)) last.push(d);
        else pieces.push([d]);
      } else pieces.push(k === 1 ? batch() : g.op('Mul', [batch(), g.ints([k])]));
    });
    if (pieces.length === 1 && Array.isArray(pieces[0])) return g.ints(pieces[0]);
    if (pieces.length === 0) return g.ints([]);
    return g.op(
      'Concat',
      pieces.map((p) => (Array.isArray(p) ? g.ints(p) : p)),
      { axis: 0 },
    );
  };

  // The one-row initializer of a per-sample constant.
  const rowNames = new Map<number, string>();
  const rowOf = (idA: number, hint: string): string => {
    let name = rowNames.get(idA);
    if (name === undefined) {
      const s = shape(idA);
      const bytes = bytesOf(idA);
      name = g.initializer(`${hint}_row`, dtype(idA), [1, ...s.slice(1)], bytes.slice(0, bytes.length / s[0]!));
      rowNames.set(idA, name);
    }
    return name;
  };

  const materialise = (idA: number): string => {
    const v = values.get(idA)!;
    if (v.kind === 'graph') return v.name;
    let name = materialised.get(idA);
    if (name !== undefined) return name;
    const s = shape(idA);
    if (v.kind === 'const') name = g.initializer(v.hint, dtype(idA), s, bytesOf(idA));
    else {
      const target = shapeTensor(
        s,
        s.map((d, j) => (j === 0 ? (d / B1) * B2 : d)),
        'a per-sample constant',
      );
      name = g.op('Expand', [rowOf(idA, v.hint), target]);
    }
    materialised.set(idA, name);
    return name;
  };

  // Classifies a tensor the traced function read without computing it (a weight, a host constant).
  const external = (idA: number, idB: number): Value => {
    const hint = o.names.get(idA) ?? 'const';
    if (idA === idB) return { kind: 'const', idA, hint };
    const sA = shape(idA);
    const sB = shape(idB);
    const bA = bytesOf(idA);
    const bB = bytesOf(idB);
    if (deepEqual(sA, sB) && sameBytes(bA, bB) && dtype(idA) === dtype(idB)) return { kind: 'const', idA, hint };
    const rows = rowsOf(sA, sB, bA, bB);
    if (rows !== null) return { kind: 'rows', idA, k: rows, hint };
    return { kind: 'graph', name: '' }; // marks "not constant"; resolved by the caller's error
  };

  // k where [k·B1, ...] and [k·B2, ...] hold one repeated row (the same in both), else null.
  const rowsOf = (sA: number[], sB: number[], bA: Uint8Array, bB: Uint8Array): number | null => {
    if (sA.length === 0 || sA.length !== sB.length) return null;
    const k = batchFactor(sA[0]!, sB[0]!);
    if (k === null || k === 0 || !deepEqual(sA.slice(1), sB.slice(1))) return null;
    const rowBytes = bA.length / sA[0]!;
    const row = bA.subarray(0, rowBytes);
    for (let r = 1; r < sA[0]!; r++) if (!sameBytes(row, bA.subarray(r * rowBytes, (r + 1) * rowBytes))) return null;
    for (let r = 0; r < sB[0]!; r++) if (!sameBytes(row, bB.subarray(r * rowBytes, (r + 1) * rowBytes))) return null;
    return k;
  };

  if (a.calls.length !== b.calls.length)
    throw new OnnxExportError(
      `onnx: the traced function made ${a.calls.length} operator calls at batch ${B1} and ${b.calls.length} at batch ${B2}: ` +
        'its control flow depends on the batch size, so one graph cannot represent it',
    );

  let mapped = 0;
  let folded = 0;
  for (let n = 0; n < a.calls.length; n++) {
    const ca = a.calls[n]!;
    const cb = b.calls[n]!;
    const where = `${ca.op} (call ${n + 1}, at ${ca.site})`;
    if (ca.op !== cb.op)
      throw new OnnxExportError(
        `onnx: call ${n + 1} is ${ca.op} at batch ${B1} but ${cb.op} at batch ${B2} (at ${ca.site}): control flow depends on the batch size`,
      );
    // Classify the tensor arguments.
    let dependsOnInputs = false;
    ca.info.args.forEach((arg, i) => {
      const idsA = tensorIdsOf(arg.type, ca.args[i]);
      const idsB = tensorIdsOf(arg.type, cb.args[i]);
      idsA.forEach((idA, j) => {
        let v = values.get(idA);
        if (v === undefined) {
          v = external(idA, idsB[j]!);
          if (v.kind === 'graph')
            throw new OnnxExportError(
              `onnx: ${where} reads a tensor that no traced operator computed and that differs between batch sizes ` +
                `${B1} and ${B2} (shape [${shape(idA)}]); create it from the inputs with tensor operators`,
            );
          values.set(idA, v);
        }
        if (v.kind === 'graph') dependsOnInputs = true;
      });
    });
    const { ids: outA, other } = resultIds(ca);
    const { ids: outB } = resultIds(cb);
    if (other && dependsOnInputs && outA.length === 0)
      throw new OnnxExportError(
        `onnx: ${where} reads a value computed from the inputs back into JavaScript; ` +
          'data-dependent control flow cannot be exported (keep the computation in tensor operators)',
      );
    if (outA.length === 0) continue;
    const random = RANDOM_OPS.test(ca.op);
    // Fold when every output is a constant or a per-sample constant.
    if (!dependsOnInputs && !random) {
      const foldedOutputs: Value[] = [];
      for (let j = 0; j < outA.length; j++) {
        const sA = shape(outA[j]!);
        const sB = shape(outB[j]!);
        const bA = bytesOf(outA[j]!);
        const bB = bytesOf(outB[j]!);
        if (deepEqual(sA, sB) && sameBytes(bA, bB)) foldedOutputs.push({ kind: 'const', idA: outA[j]!, hint: 'const' });
        else {
          const k = rowsOf(sA, sB, bA, bB);
          if (k === null) break;
          foldedOutputs.push({ kind: 'rows', idA: outA[j]!, k, hint: 'per_sample' });
        }
      }
      if (foldedOutputs.length === outA.length) {
        foldedOutputs.forEach((v, j) => values.set(outA[j]!, v));
        folded++;
        continue;
      }
    }
    // Map the call to ONNX nodes.
    let mapping = o.mappings.get(ca.op);
    let inPlace = false;
    if (mapping === undefined && /_(\.|$)/.test(ca.op)) {
      mapping = o.mappings.get(ca.op.replace(/_(\.|$)/, '$1'));
      inPlace = mapping !== undefined;
    }
    if (mapping === undefined)
      throw new OnnxExportError(
        `onnx: the operator ${ca.op} has no ONNX mapping; it was called at ${ca.site} (call ${n + 1} of the trace)` +
          (random ? ': random draws cannot be exported, pass the noise in as an input' : ''),
      );
    const ctx = context(ca, cb, outA, outB);
    const names = mapping(ctx);
    const list = Array.isArray(names) ? names : [names];
    if (list.length !== outA.length)
      throw new OnnxExportError(
        `onnx: internal: the mapping of ${ca.op} returned ${list.length} values for ${outA.length} results`,
      );
    list.forEach((name, j) => values.set(outA[j]!, { kind: 'graph', name }));
    if (inPlace) {
      const self = tensorIdsOf(ca.info.args[0]!.type, ca.args[0])[0];
      if (self !== undefined) values.set(self, { kind: 'graph', name: list[0]! });
    }
    mapped++;
  }

  for (const r of a.reads)
    if (values.get(r.id)?.kind === 'graph')
      throw new OnnxExportError(
        `onnx: the traced function reads the values of a tensor computed from its inputs into JavaScript at ${r.site}; ` +
          'data-dependent control flow cannot be exported (keep the computation in tensor operators)',
      );

  // --- outputs
  if (a.outputIds.length !== o.outputNames.length)
    throw new OnnxExportError(
      `onnx: the function returned ${a.outputIds.length} tensors for ${o.outputNames.length} output names`,
    );
  const outputs = a.outputIds.map((idA, i) => {
    const name = g.reserve(o.outputNames[i]!);
    let v = values.get(idA);
    if (v === undefined) {
      v = external(idA, b.outputIds[i]!);
      if (v.kind === 'graph')
        throw new OnnxExportError(
          `onnx: output '${o.outputNames[i]}' was not computed by tensor operators and differs between batch sizes`,
        );
      values.set(idA, v);
    }
    g.node('Identity', [materialise(idA)], {}, { outputs: [name] });
    const sA = shape(idA);
    const sB = shape(b.outputIds[i]!);
    return {
      name,
      dtype: dtype(idA),
      shape: sA.map((d, j) => (batchFactor(d, sB[j]!) === 0 ? d : ('batch' as const))),
    };
  });
  return { g, inputs, outputs, mapped, folded };

  function context(ca: TracedCall, cb: TracedCall, outA: number[], outB: number[]): MapContext {
    const fail = (why: string): never => {
      throw new OnnxExportError(`onnx: ${ca.op} at ${ca.site}: ${why}`);
    };
    const tensorArg = (i: number): number => {
      const ids = tensorIdsOf(ca.info.args[i]?.type ?? '', ca.args[i]);
      if (ids.length !== 1) fail(`argument ${i} (${ca.info.args[i]?.name}) is not a tensor`);
      return ids[0]!;
    };
    const staticArg = (i: number): NativeArg => {
      if (!deepEqual(ca.args[i], cb.args[i]))
        fail(
          `argument '${ca.info.args[i]?.name}' is ${JSON.stringify(ca.args[i])} at batch ${B1} but ` +
            `${JSON.stringify(cb.args[i])} at batch ${B2}; this operator takes it as a constant`,
        );
      return ca.args[i];
    };
    return {
      g,
      call: ca,
      tensor: (i) => materialise(tensorArg(i)),
      broadcastTensor: (i) => {
        const idA = tensorArg(i);
        const v = values.get(idA);
        if (v?.kind !== 'rows' || outA.length !== 1) return materialise(idA);
        const oA = shape(outA[0]!);
        const oB = shape(outB[0]!);
        const p = oA.length - shape(idA).length; // the row's first dimension, aligned to the result's
        if (p < 0 || oA[p] === oB[p]) return materialise(idA);
        // Another input computed from the inputs must carry that batch dimension itself.
        const supplied = ca.info.args.some((arg, j) => {
          if (j === i) return false;
          const [ja] = tensorIdsOf(arg.type, ca.args[j]);
          const [jb] = tensorIdsOf(arg.type, cb.args[j]);
          if (ja === undefined || jb === undefined || values.get(ja)?.kind !== 'graph') return false;
          const sa = shape(ja);
          const q = p - (oA.length - sa.length);
          return q >= 0 && sa[q] === oA[p] && shape(jb)[q] === oB[p];
        });
        return supplied ? rowOf(idA, v.hint) : materialise(idA);
      },
      optTensor: (i) => {
        const ids = tensorIdsOf(ca.info.args[i]?.type ?? '', ca.args[i]);
        return ids.length === 0 ? null : materialise(ids[0]!);
      },
      tensors: (i) => tensorIdsOf(ca.info.args[i]?.type ?? '', ca.args[i]).map(materialise),
      dtypeOf: (i) => dtype(tensorArg(i)),
      dtypesOf: (i) => tensorIdsOf(ca.info.args[i]?.type ?? '', ca.args[i]).map(dtype),
      shapeOf: (i) => shape(tensorArg(i)),
      absent: (i) => ca.args[i] === undefined || ca.args[i] === null,
      int: (i, def) => {
        const v = staticArg(i);
        return v === undefined || v === null ? def : Number(v);
      },
      ints: (i, def) => {
        const v = staticArg(i);
        if (v === undefined || v === null) return [...def];
        return Array.isArray(v) ? (v as number[]).map(Number) : [Number(v)];
      },
      num: (i, def) => {
        const v = staticArg(i);
        return v === undefined || v === null ? def : Number(v);
      },
      bool: (i, def) => {
        const v = staticArg(i);
        return v === undefined || v === null ? def : Boolean(v);
      },
      str: (i, def) => {
        const v = staticArg(i);
        return typeof v === 'string' ? v : def;
      },
      nOut: outA.length,
      outDtype: (j = 0) => dtype(outA[j]!),
      outShape: (j = 0) => shape(outA[j]!),
      outShapeTensor: (j = 0) => shapeTensor(shape(outA[j]!), shape(outB[j]!), `the result of ${ca.op}`),
      reshapeTarget: () => {
        const oA = shape(outA[0]!);
        const oB = shape(outB[0]!);
        const [inA] = tensorIdsOf(ca.info.args[0]!.type, ca.args[0]);
        const [inB] = tensorIdsOf(ca.info.args[0]!.type, cb.args[0]);
        const iA = shape(inA!);
        const iB = shape(inB!);
        let inferred = false;
        const dims: number[] = [];
        for (let j = 0; j < oA.length; j++) {
          if (oA[j] === oB[j]) {
            if (oA[j] === 0) return shapeTensor(oA, oB, `the result of ${ca.op}`); // 0 would mean "copy"
            dims.push(oA[j]!);
          } else if (iA[j] === oA[j] && iB[j] === oB[j]) dims.push(0);
          else if (!inferred) {
            inferred = true;
            dims.push(-1);
          } else return shapeTensor(oA, oB, `the result of ${ca.op}`);
        }
        return g.ints(dims);
      },
      cast: (name, from, to) => (from === to ? name : g.op('Cast', [name], { to: onnxDtype(to) })),
      fail,
    };
  }
}
