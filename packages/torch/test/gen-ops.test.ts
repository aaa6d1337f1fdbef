// The generated op bindings (scripts/gen-ops.mjs): the committed files match a
// fresh generation from this libtorch's schemas, every method the hand-written
// Tensor had is still there, and the generated paths give bit-identical results
// to the generic one (ops.call: opRef, untyped arguments) they replaced.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

import * as torch from '../src/index.js';
import type { Tensor } from '../src/index.js';

const pkgRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

interface Generator {
  generate(): Record<string, string>;
  coverage(): { overloads: number; typedOverloads: number; names: number; typedNames: number };
}

async function generator(): Promise<Generator> {
  return (await import(pathToFileURL(join(pkgRoot, 'scripts/gen-ops.mjs')).href)) as Generator;
}

test('the committed generated files are what `npm run gen:ops` writes for this libtorch', async () => {
  const files = (await generator()).generate();
  assert.ok(Object.keys(files).length >= 2);
  for (const [rel, text] of Object.entries(files)) {
    const committed = readFileSync(join(pkgRoot, rel), 'utf8');
    assert.ok(committed === text, `${rel} is stale: run \`npm run gen:ops\` and commit the result`);
  }
});

test('the typed functions cover most of ATen', async () => {
  const c = (await generator()).coverage();
  assert.ok(c.typedOverloads > 1000 && c.typedOverloads < c.overloads, JSON.stringify(c));
});

// Every method and accessor of the hand-written Tensor before generation (commit f91c5c8).
const BEFORE = (
  'shape dtype device ndim dim size numel stride isContiguous isLeaf isFloatingPoint requiresGrad requiresGrad_ ' +
  'grad gradFn retainGrad backward toTypedArray toTypedArrayAsync toArray toArrayAsync item itemAsync toString to ' +
  'cpu cuda float double half bfloat16 long int bool typeAs contiguous pinMemory isPinned clone detach detach_ add ' +
  'add_ sub sub_ rsub mul mul_ div div_ pow remainder fmod atan2 maximum minimum clamp clamp_ clampMin clampMax ' +
  'lerp lerp_ addcmul addcmul_ addcdiv_ addcdiv abs neg neg_ sqrt sqrt_ rsqrt exp exp_ exp2 log log_ log2 log10 ' +
  'log1p expm1 sin cos tan asin acos atan sinh cosh tanh sigmoid sign floor ceil round trunc frac reciprocal square ' +
  'erf erfc erfinv relu relu_ logit eq ne lt le gt ge logicalAnd logicalOr logicalXor logicalNot bitwiseAnd ' +
  'bitwiseOr isnan isinf isfinite equal allclose sum mean prod var std varMean max min amax amin argmax argmin ' +
  'logsumexp norm cumsum cumprod all any sort argsort topk reshape view viewAs permute transpose t mT flatten ' +
  'unflatten squeeze unsqueeze expand expandAs repeat repeatInterleave slice select narrow index indexPut_ alias ' +
  'indexSelect gather scatter scatterAdd scatterReduce maskedFill maskedFill_ maskedSelect chunk split unbind flip ' +
  'roll movedim tril triu diagonal matmul mm bmm outer copy_ fill_ zero_ normal_ uniform_ bernoulli_ exponential_ ' +
  'dispose id isDisposed'
).split(' ');

test('every Tensor method of the hand-written class is still there', () => {
  const t = torch.zeros([2]);
  try {
    for (const name of BEFORE) assert.ok(name in t, `Tensor.${name} is missing`);
  } finally {
    t.dispose();
  }
});

/** Asserts a and b have the same dtype, shape and bits (NaNs included), then frees both. */
function same(a: Tensor, b: Tensor, what: string): void {
  try {
    assert.equal(a.dtype, b.dtype, what);
    assert.deepEqual(a.shape, b.shape, what);
    assert.deepEqual(a.toTypedArray(), b.toTypedArray(), what);
  } finally {
    a.dispose();
    b.dispose();
  }
}

const generic = (name: string, overload: string, ...args: torch.OpArg[]): Tensor =>
  torch.ops.call(name, overload, ...args) as Tensor;

test('generated methods give the bits of the generic path they replaced', () => {
  torch.tidy(() => {
    torch.manualSeed(3);
    const a = torch.randn([3, 4]);
    const b = torch.randn([3, 4]);
    const i = torch.tensor([2, 0, 1], { dtype: 'int64' }).view(3, 1);
    same(a.add(b), generic('add', 'Tensor', a, b), 'add Tensor');
    same(a.add(1.5, 2), generic('add', 'Scalar', a, 1.5, 2), 'add Scalar alpha');
    same(a.sub(b, 0.5), generic('sub', 'Tensor', a, b, 0.5), 'sub alpha');
    same(a.pow(2), generic('pow', 'Tensor_Scalar', a, 2), 'pow Scalar');
    same(a.abs().pow(b), generic('pow', 'Tensor_Tensor', a.abs(), b), 'pow Tensor');
    same(a.gt(0), generic('gt', 'Scalar', a, 0), 'gt');
    same(a.scatter(1, i, 7), generic('scatter', 'value', a, 1, i, 7), 'scatter value');
    same(a.lerp(b, 0.25), generic('lerp', 'Scalar', a, b, 0.25), 'lerp');
    same(a.logit(), generic('logit', '', a), 'logit');
    same(a.cumsum(1, 'float64'), generic('cumsum', '', a, 1, { dtype: 'float64' }), 'cumsum dtype');
    same(a.norm(3, [1], true), generic('linalg_vector_norm', '', a, 3, [1], true), 'norm');
    same(a.sum([0], { keepdim: true }), generic('sum', 'dim_IntList', a, [0], true), 'sum dim');
    const s = a.sort(1, true);
    const [v, ix] = torch.ops.call('sort', '', a, 1, true) as Tensor[];
    same(s.values, v!, 'sort values');
    same(s.indices, ix!, 'sort indices');
    const mask = a.gt(0.3);
    const c = a.clone().clamp_(-0.5, 0.5).mul_(2).maskedFill_(mask, 9);
    const d = generic('masked_fill', 'Scalar', generic('clamp', '', a, -0.5, 0.5).mul(2), mask, 9);
    same(c, d, 'in-place chain');
    const g1 = new torch.Generator('cpu', 7);
    const g2 = new torch.Generator('cpu', 7);
    same(torch.empty([5]).normal_(1, 2, g1), generic('normal_', '', torch.empty([5]), 1, 2, g2), 'normal_ generator');
    g1.dispose();
    g2.dispose();
  });
});

test('typed aten functions and F give the bits of the generic path', () => {
  torch.tidy(() => {
    torch.manualSeed(4);
    const x = torch.randn([1, 2, 5, 5]);
    same(
      torch.F.interpolate(x, { size: [7, 3], mode: 'bicubic', antialias: true }),
      generic('_upsample_bicubic2d_aa', 'vec', x, [7, 3], false, null),
      'interpolate bicubic aa',
    );
    same(torch.F.softmax(x, 1, 'float64'), generic('softmax', 'int', x, 1, { dtype: 'float64' }), 'softmax dtype');
    same(torch.aten.nonzero(x.gt(0)), generic('nonzero', '', x.gt(0)), 'nonzero');
    // _foreach_lerp_ in place (the EMA of packages/epg), against lerp one tensor at a time.
    const t = [torch.randn([3]), torch.randn([2, 2])];
    const s = [torch.randn([3]), torch.randn([2, 2])];
    const expected = t.map((ti, k) => ti.lerp(s[k]!, 0.1));
    torch.aten._foreach_lerp_$Scalar(t, s, 0.1);
    t.forEach((ti, k) => same(ti, expected[k]!, `_foreach_lerp_ ${k}`));
  });
});

test('an undefined Tensor result the schema does not mark optional is a TypeError, and nothing leaks', () => {
  const x = torch.zeros([2]);
  const live = torch.liveTensors();
  // Outside forward-mode AD the tangent is undefined (ops.call gives null there).
  assert.throws(() => torch.aten._unpack_dual(x, 0), /undefined tensor.*torch\.ops\.call/);
  assert.equal(torch.liveTensors(), live);
  x.dispose();
});

test('typed functions refuse wrong arguments with the operator named', () => {
  torch.tidy(() => {
    const a = torch.zeros([2, 3]);
    assert.throws(() => torch.aten.mm(a, a), /aten::mm/);
    assert.throws(() => torch.aten.add$Tensor(a, 2 as unknown as Tensor), TypeError);
  });
});
