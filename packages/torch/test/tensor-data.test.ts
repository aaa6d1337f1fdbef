// Reading tensor data back into JS (every dtype, sync and async), zero-copy
// views over JS memory, the 16-bit float helpers against PyTorch's own
// conversions, tensor metadata, conversions, and clone/detach semantics.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { before, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

import * as torch from '../src/index.js';
import type { DType, Tensor } from '../src/index.js';
import { bfloat16BitsToFloat32, float16BitsToNumber, float32ToBfloat16Bits } from '../src/dtype.js';
import { native } from '../src/native.js';

const ptr = (t: Tensor): number => native.dataPtr(t.id);

// --------------------------------------------------------------- every dtype

interface DtypeCase {
  dtype: DType;
  values: number[][];
  array: new (n: number) => ArrayLike<unknown>;
  expect?: number[][];
}

const CASES: DtypeCase[] = [
  {
    dtype: 'float32',
    values: [
      [-2.5, 0, 1.25],
      [3, 1e-3, -7],
    ],
    array: Float32Array,
    expect: [
      [-2.5, 0, 1.25],
      [3, Math.fround(1e-3), -7],
    ],
  },
  {
    dtype: 'float64',
    values: [
      [-2.5, 0, 1.25],
      [3, 1e-3, -7],
    ],
    array: Float64Array,
  },
  {
    dtype: 'float16',
    values: [
      [-2.5, 0, 1.25],
      [3, 1e-3, 65504],
    ],
    array: Float32Array,
    expect: [
      [-2.5, 0, 1.25],
      [3, 1049 / 2 ** 20, 65504],
    ],
  },
  {
    dtype: 'bfloat16',
    values: [
      [-2.5, 0, 1.25],
      [3, 1e-3, 1e30],
    ],
    array: Float32Array,
    expect: [
      [-2.5, 0, 1.25],
      [3, 0.00099945068359375, 1.0002555517425873e30],
    ],
  },
  {
    dtype: 'int64',
    values: [
      [-2, 0, 1],
      [3, 2 ** 40, -7],
    ],
    array: BigInt64Array,
  },
  {
    dtype: 'int32',
    values: [
      [-2, 0, 1],
      [3, 2 ** 31 - 1, -(2 ** 31)],
    ],
    array: Int32Array,
  },
  {
    dtype: 'int16',
    values: [
      [-2, 0, 1],
      [3, 32767, -32768],
    ],
    array: Int16Array,
  },
  {
    dtype: 'int8',
    values: [
      [-2, 0, 1],
      [3, 127, -128],
    ],
    array: Int8Array,
  },
  {
    dtype: 'uint8',
    values: [
      [2, 0, 1],
      [3, 255, 7],
    ],
    array: Uint8Array,
  },
];

for (const c of CASES) {
  test(`${c.dtype}: toTypedArray, toArray, item (sync and async agree)`, async () => {
    const expect = c.expect ?? c.values;
    const t = torch.tensor(c.values, { dtype: c.dtype });
    try {
      assert.equal(t.dtype, c.dtype);
      const flat = t.toTypedArray();
      assert.ok(flat instanceof c.array, `${flat.constructor.name} is not a ${c.array.name}`);
      assert.deepEqual(Array.from(flat as ArrayLike<number | bigint>, Number), expect.flat());
      assert.deepEqual(t.toArray(), expect);
      assert.equal(
        torch.tidy(() => t.index(1, 1).item()),
        expect[1]![1],
      );

      const pending = t.toTypedArrayAsync();
      assert.ok(pending instanceof Promise);
      const asyncFlat = await pending;
      assert.ok(asyncFlat instanceof c.array);
      assert.deepEqual(asyncFlat, flat);
      assert.deepEqual(await t.toArrayAsync(), expect);
      const one = torch.tidy(() => t.index(1, 1));
      try {
        assert.equal(await one.itemAsync(), one.item());
      } finally {
        one.dispose();
      }
    } finally {
      t.dispose();
    }
  });
}

test('bool: Uint8Array of 0/1, booleans in toArray, item as 1/0', async () => {
  const t = torch.tensor([
    [true, false],
    [false, true],
  ]);
  try {
    assert.equal(t.dtype, 'bool');
    const flat = t.toTypedArray();
    assert.ok(flat instanceof Uint8Array);
    assert.deepEqual(Array.from(flat), [1, 0, 0, 1]);
    const expect = [
      [true, false],
      [false, true],
    ];
    assert.deepEqual(t.toArray(), expect);
    assert.deepEqual(await t.toArrayAsync(), expect);
    const x = torch.tidy(() => t.index(0, 0));
    try {
      assert.equal(x.item(), 1);
      assert.equal(await x.itemAsync(), 1);
    } finally {
      x.dispose();
    }
  } finally {
    t.dispose();
  }
});

test('int64 beyond 2**53: exact in BigInt64Array, rounded to the nearest number elsewhere', () => {
  const big = BigInt64Array.from([2n ** 62n + 1n, -(2n ** 63n), 9007199254740993n]);
  const t = torch.fromTypedArray(big, [3]);
  try {
    assert.deepEqual(t.toTypedArray(), big);
    assert.deepEqual(t.toArray(), [2 ** 62, -(2 ** 63), 9007199254740992]);
  } finally {
    t.dispose();
  }
});

test('0-d, empty and non-contiguous tensors read back in row-major order', async () => {
  torch.tidy(() => {
    const s = torch.scalarTensor(4.5);
    assert.deepEqual(s.shape, []);
    assert.equal(s.toArray(), 4.5);
    assert.equal(s.item(), 4.5);
    const e = torch.zeros([0, 3]);
    assert.deepEqual(e.toArray(), []);
    assert.equal(e.toTypedArray().length, 0);
    const m = torch.arange(6, undefined, undefined, { dtype: 'float32' }).reshape(2, 3).t();
    assert.equal(m.isContiguous(), false);
    assert.deepEqual(m.toArray(), [
      [0, 3],
      [1, 4],
      [2, 5],
    ]);
    // Broadcast views (stride 0) materialise too.
    assert.deepEqual(torch.ones([1, 2]).expand(3, 2).toTypedArray(), new Float32Array(6).fill(1));
  });
  const t = torch.tidy(() => torch.arange(6, undefined, undefined, { dtype: 'float32' }).reshape(2, 3).t());
  try {
    assert.deepEqual(Array.from((await t.toTypedArrayAsync()) as Float32Array), [0, 3, 1, 4, 2, 5]);
  } finally {
    t.dispose();
  }
});

test('async reads: concurrent, and survive dispose of the tensor', async () => {
  const base = torch.liveTensors();
  const ts = Array.from({ length: 16 }, (_, i) => torch.full([1000], i));
  const reads = ts.map((t) => t.toTypedArrayAsync());
  // Not resolved synchronously: the copy runs on a worker thread.
  let settled = false;
  void Promise.all(reads).then(() => (settled = true));
  assert.equal(settled, false);
  // Disposing a tensor while its read is in flight is safe: the read holds it.
  for (const t of ts) t.dispose();
  const out = await Promise.all(reads);
  out.forEach((a, i) => {
    assert.equal(a.length, 1000);
    assert.ok((a as Float32Array).every((v) => v === i));
  });
  assert.equal(torch.liveTensors(), base);
  const big = torch.ones([1 << 22]);
  try {
    using sum = big.sum();
    const p = sum.itemAsync();
    assert.ok(p instanceof Promise);
    assert.equal(await p, 1 << 22);
  } finally {
    big.dispose();
  }
  const two = torch.ones([2]);
  try {
    await assert.rejects(two.itemAsync(), { name: 'TypeError', message: /2 elements/ });
  } finally {
    two.dispose();
  }
});

// ------------------------------------------------------------- zero copy

test('fromTypedArray with copy: false shares memory both ways; the default copies', () => {
  const data = new Float32Array([1, 2, 3, 4]);
  const view = torch.fromTypedArray(data, [2, 2], { copy: false });
  const copy = torch.fromTypedArray(data, [2, 2]);
  try {
    data[0] = 10;
    assert.deepEqual(view.toArray(), [
      [10, 2],
      [3, 4],
    ]);
    assert.equal(
      torch.tidy(() => copy.index(0, 0).item()),
      1,
    );
    view.mul_(2);
    assert.deepEqual(Array.from(data), [20, 4, 6, 8]);
    // Views of the view share it too.
    torch.tidy(() => {
      view.reshape(4).narrow(0, 3, 1).fill_(-1);
    });
    assert.equal(data[3], -1);
    // A typed array over part of a buffer: the tensor sees just that part.
    const part = new Float32Array(data.buffer, 8, 2);
    const pv = torch.fromTypedArray(part, [2], { copy: false });
    assert.deepEqual(pv.toArray(), [6, -1]);
    pv.dispose();
  } finally {
    view.dispose();
    copy.dispose();
  }
  // Uint16 data needs its 16-bit float dtype said.
  assert.throws(() => torch.fromTypedArray(new Uint16Array(2), [2]), /ambiguous/);
  const h = torch.fromTypedArray(new Uint16Array([0x3c00, 0xc000]), [2], { dtype: 'float16', copy: false });
  assert.deepEqual(h.toArray(), [1, -2]);
  h.dispose();
  assert.throws(() => torch.fromTypedArray(new Float32Array(3), [2, 2]), /do not fill/);
});

const here = dirname(fileURLToPath(import.meta.url));
const INDEX = pathToFileURL(join(here, '..', 'src', 'index.js')).href;

test('a zero-copy tensor keeps its buffer alive through GC; after dispose nothing breaks', () => {
  const code = `
    const torch = await import(${JSON.stringify(INDEX)});
    const settle = async () => {
      for (let i = 0; i < 6; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 5)); }
    };
    // The only reference to the array is dropped when the function returns.
    const ts = (() => Array.from({ length: 8 }, (_, i) =>
      torch.fromTypedArray(new Float32Array(1 << 18).fill(i + 1), [1 << 18], { copy: false })))();
    await settle();
    // Churn the heap so that freed memory would be reused.
    for (let i = 0; i < 20; i++) new Float32Array(1 << 18).fill(-9);
    await settle();
    const sums = ts.map((t) => torch.tidy(() => t.sum().item()));
    for (const t of ts) t.dispose();
    await settle();
    for (let i = 0; i < 20; i++) new Float32Array(1 << 18).fill(-9);
    console.log(JSON.stringify({ sums, live: torch.liveTensors() }));
  `;
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', code], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, `child failed (${r.signal ?? r.status}):\n${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { sums: number[]; live: number };
  assert.deepEqual(
    out.sums,
    Array.from({ length: 8 }, (_, i) => (i + 1) * (1 << 18)),
  );
  assert.equal(out.live, 0);
});

test('zero-copy refuses buffers that can move or shrink under it', () => {
  const Resizable = ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer;
  const rb = new Resizable(16, { maxByteLength: 64 });
  assert.throws(() => torch.fromTypedArray(new Float32Array(rb), [4], { copy: false }), {
    name: 'TypeError',
    message: /resizable/,
  });
  // Copying from one is fine.
  const c = torch.fromTypedArray(new Float32Array(rb), [4]);
  c.dispose();
  const a = new Float32Array([1, 2]);
  const t = torch.fromTypedArray(a, [2], { copy: false });
  try {
    structuredClone(a.buffer, { transfer: [a.buffer] });
    assert.throws(() => torch.tidy(() => t.sum()), { name: 'TypeError', message: /detached/ });
    assert.throws(() => t.toArray(), { name: 'TypeError', message: /detached/ });
  } finally {
    t.dispose();
  }
});

// ------------------------------------------- 16-bit floats against PyTorch

interface PyFloats {
  f16: (number | string)[];
  bf16: (number | string)[];
  bf16Bits: number[];
  f16Of: (number | string)[];
  bf16Of: (number | string)[];
}

const SAMPLES = [
  0,
  -0,
  1,
  -1,
  1 / 3,
  Math.PI,
  65504,
  65519,
  65520,
  1e5,
  2049,
  2051,
  2 ** -14,
  2 ** -24,
  2 ** -25,
  3 * 2 ** -25,
  1e-8,
  1 + 2 ** -8,
  1 + 3 * 2 ** -8,
  1 + 2 ** -8 + 2 ** -30,
  256.5,
  257,
  259,
  1e-40,
  -1e-40,
  1e-45,
  1.1754942e-38,
  3.3895e38,
  3.4028234e38,
  1e39,
  -1e39,
  1e300,
  -1e300,
  Infinity,
  -Infinity,
  NaN,
  0.1,
  0.2,
  0.3,
  123456.789,
  -2.5e-5,
];

const num = (v: number | string): number =>
  typeof v === 'number' ? v : v === 'nan' ? NaN : v === 'inf' ? Infinity : -Infinity;

let py: PyFloats;

before(() => {
  const script = `
import json, sys, torch, math
samples = json.loads(sys.argv[1])
enc = lambda xs: [x if math.isfinite(x) else ("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")) for x in xs]
bits = torch.arange(65536, dtype=torch.int32).to(torch.int16)
x64 = torch.tensor(samples, dtype=torch.float64)
out = {
  "f16": enc(bits.view(torch.float16).double().tolist()),
  "bf16": enc(bits.view(torch.bfloat16).double().tolist()),
  "bf16Bits": (x64.to(torch.float32).to(torch.bfloat16).view(torch.int16).to(torch.int32) & 0xFFFF).tolist(),
  "f16Of": enc(x64.to(torch.float16).double().tolist()),
  "bf16Of": enc(x64.to(torch.bfloat16).double().tolist()),
}
print(json.dumps(out))
`;
  // Python's json reads NaN/Infinity tokens; -0 must be written as -0.0 to survive.
  const arg = `[${SAMPLES.map((x) => (Object.is(x, -0) ? '-0.0' : String(x))).join(',')}]`;
  const r = spawnSync('python3', ['-c', script, arg], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`python failed:\n${r.stderr}`);
  py = JSON.parse(r.stdout) as PyFloats;
});

function sameFloat(a: number, b: number): boolean {
  return Number.isNaN(a) ? Number.isNaN(b) : Object.is(a, b);
}

test('float16BitsToNumber decodes all 65,536 bit patterns as PyTorch does', () => {
  for (let bits = 0; bits < 65536; bits++) {
    const js = float16BitsToNumber(bits);
    const ref = num(py.f16[bits]!);
    if (!sameFloat(js, ref)) assert.fail(`float16 bits 0x${bits.toString(16)}: ${js}, PyTorch ${ref}`);
  }
});

test('bfloat16BitsToFloat32 decodes all 65,536 bit patterns as PyTorch does', () => {
  for (let bits = 0; bits < 65536; bits++) {
    const js = bfloat16BitsToFloat32(bits);
    const ref = num(py.bf16[bits]!);
    if (!sameFloat(js, ref)) assert.fail(`bfloat16 bits 0x${bits.toString(16)}: ${js}, PyTorch ${ref}`);
  }
});

const isNanBits = (b: number): boolean => (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0;

test('float32ToBfloat16Bits rounds as PyTorch (ties to even, subnormals, overflow, NaN)', () => {
  SAMPLES.forEach((x, i) => {
    // NaN: any NaN encoding (PyTorch itself writes 0x7fc0 in scalar code, 0xffff in vector code).
    if (Number.isNaN(x)) return assert.ok(isNanBits(float32ToBfloat16Bits(x)) && isNanBits(py.bf16Bits[i]!));
    assert.equal(
      float32ToBfloat16Bits(x),
      py.bf16Bits[i],
      `bfloat16 bits of ${x}: 0x${float32ToBfloat16Bits(x).toString(16)}, PyTorch 0x${py.bf16Bits[i]!.toString(16)}`,
    );
  });
  const t = torch.bfloat16From(SAMPLES, [SAMPLES.length]);
  try {
    assert.equal(t.dtype, 'bfloat16');
    const got = t.toTypedArray() as Float32Array;
    SAMPLES.forEach((x, i) => {
      const ref = bfloat16BitsToFloat32(py.bf16Bits[i]!);
      assert.ok(sameFloat(got[i]!, ref), `bfloat16From(${x}) = ${got[i]}, PyTorch ${ref}`);
    });
  } finally {
    t.dispose();
  }
});

test('to(float16) / to(bfloat16) then reading back gives PyTorch values', () => {
  torch.tidy(() => {
    const x = torch.tensor(SAMPLES, { dtype: 'float64' });
    const half = x.half().toTypedArray() as Float32Array;
    const bf = x.bfloat16().toTypedArray() as Float32Array;
    SAMPLES.forEach((v, i) => {
      assert.ok(sameFloat(half[i]!, num(py.f16Of[i]!)), `float16(${v}) = ${half[i]}, PyTorch ${py.f16Of[i]}`);
      assert.ok(sameFloat(bf[i]!, num(py.bf16Of[i]!)), `bfloat16(${v}) = ${bf[i]}, PyTorch ${py.bf16Of[i]}`);
    });
  });
});

// ---------------------------------------------------------------- metadata

test('shape, stride, dtype, device, ndim, numel, contiguity and friends', () => {
  torch.tidy(() => {
    const t = torch.zeros([2, 3, 4]);
    assert.deepEqual(t.shape, [2, 3, 4]);
    assert.deepEqual(t.size(), [2, 3, 4]);
    assert.equal(t.size(1), 3);
    assert.equal(t.size(-1), 4);
    assert.deepEqual(t.stride(), [12, 4, 1]);
    assert.equal(t.dtype, 'float32');
    assert.equal(t.device, 'cpu');
    assert.equal(t.ndim, 3);
    assert.equal(t.dim(), 3);
    assert.equal(t.numel(), 24);
    assert.equal(t.isContiguous(), true);
    assert.equal(t.isFloatingPoint, true);
    assert.equal(t.isLeaf, true);
    assert.equal(t.requiresGrad, false);

    const p = t.permute(2, 0, 1);
    assert.deepEqual(p.shape, [4, 2, 3]);
    assert.deepEqual(p.stride(), [1, 12, 4]);
    assert.equal(p.isContiguous(), false);
    assert.equal(p.contiguous().isContiguous(), true);
    assert.deepEqual(torch.ones([3, 1]).expand(3, 5).stride(), [1, 0]);

    const s = torch.scalarTensor(1);
    assert.deepEqual([s.shape, s.stride(), s.ndim, s.numel()], [[], [], 0, 1]);
    const e = torch.empty([0, 5]);
    assert.equal(e.numel(), 0);
    assert.equal(torch.zeros([2], { dtype: 'int64' }).isFloatingPoint, false);
    const w = torch.ones([2]).requiresGrad_();
    const y = w.mul(2);
    assert.equal(y.isLeaf, false);
    assert.equal(y.requiresGrad, true);
    assert.match(y.gradFn ?? '', /MulBackward/);
    const m = torch.zeros([1e6, 1e6], { device: 'meta' });
    assert.deepEqual([m.device, m.shape, m.numel()], ['meta', [1e6, 1e6], 1e12]);
  });
});

test('toString shows shape, dtype, device and (small) data', () => {
  torch.tidy(() => {
    assert.equal(String(torch.tensor([1, 2.5])), 'Tensor(shape=[2], dtype=float32, device=cpu, [1,2.5])');
    assert.equal(
      `${torch.tensor([[true], [false]])}`,
      'Tensor(shape=[2, 1], dtype=bool, device=cpu, [[true],[false]])',
    );
    assert.equal(String(torch.scalarTensor(3, { dtype: 'int64' })), 'Tensor(shape=[], dtype=int64, device=cpu, 3)');
    assert.equal(String(torch.zeros([100])), 'Tensor(shape=[100], dtype=float32, device=cpu)');
  });
  const t = torch.ones([1]);
  t.dispose();
  assert.equal(t.toString(), 'Tensor(<disposed>)');
});

test('to(), cpu() and the dtype shorthands convert values; no-op conversions alias', () => {
  torch.tidy(() => {
    const x = torch.tensor([-1.5, 0, 2.75, 300]);
    const cases: [string, Tensor, DType, number[] | boolean[]][] = [
      ['float()', x.float(), 'float32', [-1.5, 0, 2.75, 300]],
      ['double()', x.double(), 'float64', [-1.5, 0, 2.75, 300]],
      ['half()', x.half(), 'float16', [-1.5, 0, 2.75, 300]],
      ['bfloat16()', x.bfloat16(), 'bfloat16', [-1.5, 0, 2.75, 300]],
      ['long()', x.long(), 'int64', [-1, 0, 2, 300]],
      ['int()', x.int(), 'int32', [-1, 0, 2, 300]],
      ['bool()', x.bool(), 'bool', [true, false, true, true]],
      ["to('int16')", x.to('int16'), 'int16', [-1, 0, 2, 300]],
      ["to({ dtype: 'uint8' })", x.abs().clamp(0, 255).to({ dtype: 'uint8' }), 'uint8', [1, 0, 2, 255]],
      [
        "to({ device: 'cpu', dtype: 'float64' })",
        x.to({ device: 'cpu', dtype: 'float64' }),
        'float64',
        [-1.5, 0, 2.75, 300],
      ],
    ];
    for (const [what, t, dtype, values] of cases) {
      assert.equal(t.dtype, dtype, what);
      assert.deepEqual(t.toArray(), values, what);
    }
    // Conversions to what the tensor already is return a handle on the same memory.
    assert.equal(ptr(x.float()), ptr(x));
    assert.equal(ptr(x.cpu()), ptr(x));
    assert.equal(ptr(x.to({ device: 'cpu' })), ptr(x));
    assert.notEqual(ptr(x.to({ dtype: 'float32', copy: true })), ptr(x));
    assert.notEqual(ptr(x.double()), ptr(x));
    // The aliasing handle is a separate handle: disposing it leaves x alive.
    const alias = x.float();
    alias.dispose();
    assert.deepEqual(x.toArray(), [-1.5, 0, 2.75, 300]);
  });
});

test('detach shares memory and leaves the graph; clone copies and stays in it', () => {
  torch.tidy(() => {
    const w = torch.tensor([1, 2, 3]).requiresGrad_();
    const d = w.detach();
    assert.equal(d.requiresGrad, false);
    assert.equal(ptr(d), ptr(w));
    d.mul_(10); // visible through w
    assert.deepEqual(w.toArray(), [10, 20, 30]);

    const c = w.clone();
    assert.notEqual(ptr(c), ptr(w));
    assert.equal(c.requiresGrad, true);
    assert.match(c.gradFn ?? '', /CloneBackward/);
    torch.noGrad(() => c.add_(1));
    assert.deepEqual(w.toArray(), [10, 20, 30], 'clone does not share memory');
    c.sum().backward();
    assert.deepEqual(w.grad!.toArray(), [1, 1, 1], 'gradients flow through clone');

    const e = torch.ones([2]).requiresGrad_();
    const f = e.mul(2);
    f.detach_();
    assert.equal(f.requiresGrad, false);
    assert.equal(f.gradFn, null);
  });
});

test('no tensors leak from this file', () => {
  assert.equal(torch.liveTensors(), 0);
});
