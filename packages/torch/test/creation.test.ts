// Creation: tensor() from nested arrays and TypedArrays, zeros/ones/full/empty,
// arange/linspace/eye, the *Like functions, scalarTensor, fromTypedArray (copy
// and zero-copy), requiresGrad. Values and dtypes are compared with PyTorch's
// own factories where they exist.
//
// By design, JS numbers give float32 (PyTorch infers int64 from Python ints):
// torch.tensor([1, 2]) here is torch.tensor([1., 2.]) there; integral scalars
// given to arange() do give int64, as in PyTorch.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as torch from '../src/index.js';
import type { Tensor } from '../src/index.js';
import { assertClose } from './harness.js';
import { pyEval, values, type PyTensor } from './pyref.js';

function tidyTest(name: string, fn: () => void): void {
  test(name, () => {
    torch.tidy(fn);
    assert.equal(torch.liveTensors(), 0, 'live native tensors after the test');
  });
}

/** [name, JS factory, Python expression]: compared in dtype, shape and values. */
const FACTORIES: [string, () => Tensor, string][] = [
  [
    'tensor nested float',
    () =>
      torch.tensor([
        [1.5, -2],
        [3, 4.25],
      ]),
    'torch.tensor([[1.5, -2.], [3., 4.25]])',
  ],
  [
    'tensor float64',
    () => torch.tensor([0.1, 1e-300, -7], { dtype: 'float64' }),
    'torch.tensor([0.1, 1e-300, -7.], dtype=torch.float64)',
  ],
  [
    'tensor int64 beyond 2^31',
    () => torch.tensor([[2 ** 40 + 1], [-3]], { dtype: 'int64' }),
    'torch.tensor([[2**40 + 1], [-3]])',
  ],
  [
    'tensor int32 beyond float32 precision',
    () => torch.tensor([16777217, -2147483648, 2147483647], { dtype: 'int32' }),
    'torch.tensor([16777217, -2147483648, 2147483647], dtype=torch.int32)',
  ],
  ['tensor uint8', () => torch.tensor([0, 255, 7], { dtype: 'uint8' }), 'torch.tensor([0, 255, 7], dtype=torch.uint8)'],
  ['tensor int16', () => torch.tensor([-32768, 5], { dtype: 'int16' }), 'torch.tensor([-32768, 5], dtype=torch.int16)'],
  ['tensor bool from booleans', () => torch.tensor([[true, false, true]]), 'torch.tensor([[True, False, True]])'],
  [
    'tensor bool dtype from numbers',
    () => torch.tensor([0, 2, -1], { dtype: 'bool' }),
    'torch.tensor([0, 2, -1]).bool()',
  ],
  [
    'tensor float16',
    () => torch.tensor([0.1, 65504, 1e-8], { dtype: 'float16' }),
    'torch.tensor([0.1, 65504, 1e-8], dtype=torch.float16)',
  ],
  [
    'tensor bfloat16',
    () => torch.tensor([0.1, 3.14159, -1e30], { dtype: 'bfloat16' }),
    'torch.tensor([0.1, 3.14159, -1e30], dtype=torch.bfloat16)',
  ],
  ['tensor 0-d', () => torch.tensor(3.5), 'torch.tensor(3.5)'],
  ['tensor empty', () => torch.tensor([]), 'torch.tensor([])'],
  ['tensor [2, 0]', () => torch.tensor([[], []]), 'torch.tensor([[], []])'],
  ['zeros', () => torch.zeros([2, 3]), 'torch.zeros(2, 3)'],
  ['zeros int64', () => torch.zeros([4], { dtype: 'int64' }), 'torch.zeros(4, dtype=torch.int64)'],
  ['zeros 0-d', () => torch.zeros([]), 'torch.zeros(())'],
  ['ones float64', () => torch.ones([3, 1], { dtype: 'float64' }), 'torch.ones(3, 1, dtype=torch.float64)'],
  ['ones bool', () => torch.ones([2], { dtype: 'bool' }), 'torch.ones(2, dtype=torch.bool)'],
  ['full number', () => torch.full([2, 2], 7.5), 'torch.full((2, 2), 7.5)'],
  ['full int32', () => torch.full([3], -4, { dtype: 'int32' }), 'torch.full((3,), -4, dtype=torch.int32)'],
  ['full boolean', () => torch.full([2], true), 'torch.full((2,), True)'],
  [
    'empty shape/dtype',
    () => torch.empty([3, 0, 2], { dtype: 'float64' }),
    'torch.empty(3, 0, 2, dtype=torch.float64)',
  ],
  ['arange(end)', () => torch.arange(5), 'torch.arange(5)'],
  ['arange(start, end)', () => torch.arange(-2, 3), 'torch.arange(-2, 3)'],
  ['arange negative int step', () => torch.arange(10, 0, -3), 'torch.arange(10, 0, -3)'],
  ['arange float step', () => torch.arange(0, 1, 0.1), 'torch.arange(0, 1, 0.1)'],
  ['arange float bounds', () => torch.arange(-1.5, 2.25, 0.75), 'torch.arange(-1.5, 2.25, 0.75)'],
  ['arange float end only', () => torch.arange(4.5), 'torch.arange(4.5)'],
  [
    'arange dtype float64',
    () => torch.arange(0, 1, 0.1, { dtype: 'float64' }),
    'torch.arange(0, 1, 0.1, dtype=torch.float64)',
  ],
  [
    'arange int dtype float32',
    () => torch.arange(0, 6, 2, { dtype: 'float32' }),
    'torch.arange(0, 6, 2, dtype=torch.float32)',
  ],
  [
    'arange(end) with dtype',
    () => torch.arange(3, undefined, undefined, { dtype: 'float64' }),
    'torch.arange(3, dtype=torch.float64)',
  ],
  ['linspace', () => torch.linspace(0, 1, 5), 'torch.linspace(0, 1, 5)'],
  [
    'linspace float64 negative',
    () => torch.linspace(-2, 2, 7, { dtype: 'float64' }),
    'torch.linspace(-2, 2, 7, dtype=torch.float64)',
  ],
  ['linspace one step', () => torch.linspace(3, 10, 1), 'torch.linspace(3, 10, 1)'],
  ['linspace int64', () => torch.linspace(0, 10, 4, { dtype: 'int64' }), 'torch.linspace(0, 10, 4, dtype=torch.int64)'],
  ['eye', () => torch.eye(3), 'torch.eye(3)'],
  ['eye int64', () => torch.eye(2, { dtype: 'int64' }), 'torch.eye(2, dtype=torch.int64)'],
  ['scalarTensor', () => torch.scalarTensor(2.5), 'torch.scalar_tensor(2.5)'],
  [
    'scalarTensor int64',
    () => torch.scalarTensor(-3, { dtype: 'int64' }),
    'torch.scalar_tensor(-3, dtype=torch.int64)',
  ],
  [
    'fullLike',
    () => torch.fullLike(torch.zeros([2, 3], { dtype: 'float64' }), 2.5),
    'torch.full_like(torch.zeros(2, 3, dtype=torch.float64), 2.5)',
  ],
  [
    'fullLike dtype',
    () => torch.fullLike(torch.zeros([2]), 3, { dtype: 'int64' }),
    'torch.full_like(torch.zeros(2), 3, dtype=torch.int64)',
  ],
  [
    'zerosLike',
    () => torch.zerosLike(torch.ones([2, 2], { dtype: 'int32' })),
    'torch.zeros_like(torch.ones(2, 2, dtype=torch.int32))',
  ],
  [
    'onesLike dtype',
    () => torch.onesLike(torch.zeros([3]), { dtype: 'float64' }),
    'torch.ones_like(torch.zeros(3), dtype=torch.float64)',
  ],
];

let refs: PyTensor[] | undefined;
function ref(): PyTensor[] {
  refs ??= pyEval<PyTensor[]>(`result = [\n${FACTORIES.map(([, , py]) => `  ${py},`).join('\n')}\n]`);
  return refs;
}

tidyTest('factories match PyTorch in dtype, shape and values', () => {
  const want = ref();
  FACTORIES.forEach(([name, js], i) => {
    const t = js();
    const w = want[i]!;
    assert.equal(t.dtype, w.dtype, `${name}: dtype`);
    assert.deepEqual(t.shape, w.shape, `${name}: shape`);
    if (name.startsWith('empty')) return;
    assertClose(values(t), w.data, 0, 0, name);
  });
});

tidyTest('tensor() from TypedArrays keeps their dtype; shape and dtype options', () => {
  const cases: [Tensor, string, number[], number[]][] = [
    [torch.tensor(new Float64Array([1.25, -2])), 'float64', [2], [1.25, -2]],
    [torch.tensor(new Float32Array([1, 2, 3, 4, 5, 6]), { shape: [2, 3] }), 'float32', [2, 3], [1, 2, 3, 4, 5, 6]],
    [torch.tensor(new Int32Array([7, -8])), 'int32', [2], [7, -8]],
    [torch.tensor(new BigInt64Array([2n ** 40n, -1n])), 'int64', [2], [2 ** 40, -1]],
    [torch.tensor(new Int16Array([-5])), 'int16', [1], [-5]],
    [torch.tensor(new Int8Array([-128, 127])), 'int8', [2], [-128, 127]],
    [torch.tensor(new Uint8Array([0, 200])), 'uint8', [2], [0, 200]],
    [torch.tensor(new Int32Array([1, 2, 3, 4]), { dtype: 'float64', shape: [2, 2] }), 'float64', [2, 2], [1, 2, 3, 4]],
    // 16-bit floats arrive as their bits, with the dtype saying which format.
    [torch.tensor(new Uint16Array([0x3c00, 0xc000]), { dtype: 'float16' }), 'float16', [2], [1, -2]],
    [torch.tensor(new Uint16Array([0x3f80, 0x4040]), { dtype: 'bfloat16' }), 'bfloat16', [2], [1, 3]],
    [torch.bfloat16From([1, 0.5, -3], [3]), 'bfloat16', [3], [1, 0.5, -3]],
  ];
  cases.forEach(([t, dtype, shape, data], i) => {
    assert.equal(t.dtype, dtype, `case ${i}: dtype`);
    assert.deepEqual(t.shape, shape, `case ${i}: shape`);
    assert.deepEqual(values(t), data, `case ${i}: values`);
  });
  // tensor() copies: changing the source later does not change the tensor.
  const src = new Float32Array([1, 2, 3]);
  const t = torch.tensor(src);
  src[0] = 100;
  assert.deepEqual(values(t), [1, 2, 3]);
  assert.throws(() => torch.tensor(new Uint16Array([1])), /ambiguous/, 'a Uint16Array needs a 16-bit float dtype');
  assert.throws(() => torch.tensor(new Uint32Array([1]) as never), /Uint32Array has no tensor dtype/);
  assert.throws(() => torch.tensor(new Float32Array(5), { shape: [2, 2] }), TypeError);
});

tidyTest('tensor() rejects malformed input', () => {
  assert.throws(() => torch.tensor([[1, 2], [3]]), TypeError, 'ragged');
  assert.throws(() => torch.tensor([[1, 2], 3] as never), TypeError, 'ragged depth');
  assert.throws(() => torch.tensor([1, true] as never), TypeError, 'mixed numbers and booleans');
  assert.throws(() => torch.tensor([1.5], { dtype: 'int64' }), TypeError, 'non-integer for an integer dtype');
  assert.throws(() => torch.tensor([1, 2], { shape: [2] }), TypeError, 'shape is for TypedArrays');
  // Out-of-range integers are refused (PyTorch: "cannot be converted ... without overflow").
  assert.throws(() => torch.tensor([300], { dtype: 'uint8' }), RangeError);
  assert.throws(() => torch.tensor([2 ** 31], { dtype: 'int32' }), RangeError);
  assert.throws(() => torch.tensor([-129], { dtype: 'int8' }), RangeError);
  assert.throws(() => torch.tensor([2 ** 63], { dtype: 'int64' }), RangeError);
  assert.throws(() => torch.zeros([2, -1]), TypeError);
  assert.throws(() => torch.ones([1.5]), TypeError);
  assert.throws(() => torch.zeros([2], { dtype: 'complex64' as never }), TypeError);
});

tidyTest('toArray round trips nested arrays', () => {
  const data = [
    [1, 2.5],
    [-3, 4],
  ];
  assert.deepEqual(torch.tensor(data).toArray(), data);
  assert.deepEqual(torch.tensor([[true], [false]]).toArray(), [[true], [false]]);
  assert.deepEqual(torch.tensor([5, 6], { dtype: 'int64' }).toArray(), [5, 6]);
  assert.equal(torch.tensor(7).toArray(), 7);
  assert.equal(torch.tensor(7).item(), 7);
});

tidyTest('*Like functions take shape, dtype and device from their argument', () => {
  const base = torch.randn([2, 3], { dtype: 'float64' });
  for (const [name, t] of [
    ['zerosLike', torch.zerosLike(base)],
    ['onesLike', torch.onesLike(base)],
    ['emptyLike', torch.emptyLike(base)],
    ['fullLike', torch.fullLike(base, 1)],
    ['randnLike', torch.randnLike(base)],
    ['randLike', torch.randLike(base)],
  ] as [string, Tensor][]) {
    assert.deepEqual(t.shape, [2, 3], `${name}: shape`);
    assert.equal(t.dtype, 'float64', `${name}: dtype`);
    assert.equal(t.device, 'cpu', `${name}: device`);
    assert.equal(t.requiresGrad, false, `${name}: requiresGrad`);
  }
  assert.equal(torch.zerosLike(base, { dtype: 'int32' }).dtype, 'int32');
  assert.equal(torch.emptyLike(base, { dtype: 'bool' }).dtype, 'bool');
  assert.equal(torch.randnLike(base, { dtype: 'float32' }).dtype, 'float32');
  // requiresGrad is not inherited, but can be asked for.
  const leaf = torch.zeros([2], { requiresGrad: true });
  assert.equal(torch.zerosLike(leaf).requiresGrad, false);
  assert.equal(torch.onesLike(leaf, { requiresGrad: true }).requiresGrad, true);
  assert.equal(torch.fullLike(leaf, 2, { requiresGrad: true }).requiresGrad, true);
  assert.equal(torch.randnLike(leaf, { requiresGrad: true }).requiresGrad, true);
});

tidyTest('fromTypedArray: copy by default, zero-copy shares memory', () => {
  const data = new Float32Array([1, 2, 3, 4, 5, 6]);
  const copied = torch.fromTypedArray(data, [2, 3]);
  const shared = torch.fromTypedArray(data, [2, 3], { copy: false });
  data[0] = 10; // JS writes are seen by the zero-copy tensor only
  assert.equal(copied.index(0, 0).item(), 1);
  assert.equal(shared.index(0, 0).item(), 10);
  shared.index(1).fill_(-1); // and tensor writes are seen by JS
  assert.deepEqual(Array.from(data), [10, 2, 3, -1, -1, -1]);
  assert.deepEqual(values(copied), [1, 2, 3, 4, 5, 6]);
  // A view with an offset into a larger buffer.
  const buf = new Float64Array([0, 1, 2, 3, 4, 5, 6, 7]);
  const sub = buf.subarray(2, 6);
  const v = torch.fromTypedArray(sub, [2, 2], { copy: false });
  assert.deepEqual(v.toArray(), [
    [2, 3],
    [4, 5],
  ]);
  v.mul_(10);
  assert.deepEqual(Array.from(buf), [0, 1, 20, 30, 40, 50, 6, 7]);
  // Other element types, and an explicit dtype reinterpreting bits.
  const ints = new BigInt64Array([1n, 2n]);
  const ti = torch.fromTypedArray(ints, [2], { copy: false });
  ints[1] = 99n;
  assert.deepEqual(values(ti), [1, 99]);
  const half = torch.fromTypedArray(new Uint16Array([0x3c00]), [1], { dtype: 'float16' });
  assert.equal(half.item(), 1);
  const bytesAsBool = torch.fromTypedArray(new Uint8Array([0, 1, 1]), [3], { dtype: 'bool' });
  assert.deepEqual(bytesAsBool.toArray(), [false, true, true]);
  assert.throws(() => torch.fromTypedArray(new Float32Array(5), [2, 3]), TypeError);
  assert.throws(() => torch.fromTypedArray(new Float32Array(4), [2, 2], { dtype: 'float64' }), TypeError);
  assert.throws(() => torch.fromTypedArray(new Uint16Array(2), [2]), TypeError);
});

test('fromTypedArray zero-copy tensors are freed like any other', () => {
  const before = torch.liveTensors();
  const data = new Float32Array(1024);
  const t = torch.fromTypedArray(data, [1024], { copy: false });
  assert.equal(torch.liveTensors(), before + 1);
  t.dispose();
  assert.equal(torch.liveTensors(), before);
  data[0] = 1; // the array stays usable after the tensor is gone
  assert.equal(data[0], 1);
});

tidyTest('requiresGrad option', () => {
  for (const t of [
    torch.zeros([2], { requiresGrad: true }),
    torch.ones([2], { requiresGrad: true, dtype: 'float64' }),
    torch.full([2], 3, { requiresGrad: true }),
    torch.tensor([1, 2], { requiresGrad: true }),
    torch.tensor([1, 2], { requiresGrad: true, dtype: 'float64' }),
    torch.tensor(new Float32Array([1, 2]), { requiresGrad: true }),
    torch.randn([2], { requiresGrad: true }),
    torch.rand([2], { requiresGrad: true }),
    torch.arange(0, 1, 0.5, { requiresGrad: true }),
    torch.linspace(0, 1, 3, { requiresGrad: true }),
    torch.eye(2, { requiresGrad: true }),
    torch.scalarTensor(1, { requiresGrad: true }),
    torch.empty([2], { requiresGrad: true }),
  ]) {
    assert.equal(t.requiresGrad, true);
    assert.equal(t.isLeaf, true);
    assert.equal(t.gradFn, null);
  }
  assert.equal(torch.zeros([2]).requiresGrad, false);
  const x = torch.tensor([1, 2, 3], { requiresGrad: true, dtype: 'float64' });
  x.mul(x).sum().backward();
  assert.deepEqual(values(x.grad!), [2, 4, 6]);
  assert.throws(() => torch.arange(3, undefined, undefined, { requiresGrad: true }), TypeError, 'int64 arange');
});

// Regression: the addon once turned a JS -0 into the integer Scalar 0, so
// full([1], -0) was +0 and x.mul(-0).reciprocal() was +inf (PyTorch: -0, -inf).
test('-0 keeps its sign through Scalar arguments', () => {
  torch.tidy(() => {
    assert.ok(Object.is(torch.full([1], -0).item(), -0), 'full([1], -0)');
    assert.equal(torch.ones([1]).mul(-0).reciprocal().item(), -Infinity, 'ones * -0 then 1/x');
  });
});
