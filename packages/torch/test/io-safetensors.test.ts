// safetensors: round trips with Python's safetensors.torch, validation of bad files, atomic writes.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';

import * as torch from '../src/index.js';
import { io, type DType, type Tensor } from '../src/index.js';
import { setChunkBytesForTesting } from '../src/io/file.js';
import {
  assertCheckpointError,
  assertTensorMatches,
  PY_RAW,
  pyAsync,
  rawBytes,
  tempDir,
  type Expected,
} from './io-helpers.js';

const tmp = tempDir('epg-io-st-');
after(() => tmp.cleanup());

/** Deterministic pseudo-random bytes. */
function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let a = seed >>> 0;
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = a >>> 24;
  }
  return out;
}

/** A tensor of dtype with arbitrary bit patterns (bools 0/1). */
function randomTensor(dtype: DType, shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const b = bytes(n * torch.elementSize(dtype), seed);
  if (dtype === 'bool') for (let i = 0; i < b.length; i++) b[i]! &= 1;
  return torch.fromTypedArray(b, shape, { dtype });
}

// TS writes its file first; then one Python process (importing torch takes seconds) checks
// it and writes the Python-side file, before the tests run.
const tsFile = tmp.path('ts.safetensors');
const tsTensors = new Map<string, Tensor>();
const dtypes: DType[] = [
  'float32',
  'float64',
  'float16',
  'bfloat16',
  'int64',
  'int32',
  'int16',
  'int8',
  'uint8',
  'bool',
];
dtypes.forEach((d, i) => tsTensors.set(`t_${d}`, randomTensor(d, [3, 4], 100 + i)));
dtypes.forEach((d, i) => tsTensors.set(`nc_${d}`, randomTensor(d, [4, 5], 200 + i).transpose(0, 1)));
tsTensors.set('scalar', torch.scalarTensor(2.5, { dtype: 'float64' }));
tsTensors.set('scalar_bool', torch.full([], true));
tsTensors.set('empty', torch.zeros([0, 3]));
tsTensors.set('empty_i8', torch.zeros([5, 0], { dtype: 'int8' }));
tsTensors.set('narrowed', torch.arange(0, 30).reshape(5, 6).narrow(1, 2, 3));
tsTensors.set('strided', randomTensor('float16', [6, 6], 7).narrow(0, 1, 4).transpose(0, 1));
assert.equal(tsTensors.get('nc_float32')!.isContiguous(), false);

const tsExpected: Record<string, Expected> = {};
for (const [k, t] of tsTensors) tsExpected[k] = { dtype: t.dtype, shape: t.shape, hex: rawBytes(t).toString('hex') };
io.saveSafetensors(tsFile, tsTensors, { source: 'epg', ünï: 'cödé' });
const expPath = tmp.path('expected.json');
writeFileSync(expPath, JSON.stringify(tsExpected));
const pyFile = tmp.path('py.safetensors');
const fromPython = pyAsync(
  PY_RAW +
    `
import json, sys
from safetensors.torch import load_file, save_file
from safetensors import safe_open
# TS -> Python: argv[1] written by saveSafetensors, argv[2] its expected tensors.

got = load_file(sys.argv[1])
exp = json.load(open(sys.argv[2]))
assert sorted(got) == sorted(exp), (sorted(got), sorted(exp))
bad = [k for k in exp if expect(got[k]) != exp[k]]
with safe_open(sys.argv[1], 'pt') as f:
  meta = f.metadata()
# The reference writer, given the same tensors and metadata, writes the same file (up to the
# order of the metadata keys, which it keeps in a hash map).
save_file(got, sys.argv[3], metadata=meta)
def parts(path):
  import struct
  d = open(path, 'rb').read()
  n = struct.unpack('<Q', d[:8])[0]
  h = json.loads(d[8:8 + n], object_pairs_hook=list)
  return n, [kv for kv in h if kv[0] != '__metadata__'], sorted(dict(h)['__metadata__']), d[8 + n:]
same = parts(sys.argv[1]) == parts(sys.argv[3])
ts_report = {'bad': bad, 'meta': meta, 'same': same}

# Python -> TS: argv[4].

g = torch.Generator().manual_seed(0)
ts = {}
for dt in [torch.float32, torch.float64, torch.float16, torch.bfloat16]:
    t = torch.randn(3, 5, generator=g).to(dt)
    t[0, 0] = float('nan'); t[0, 1] = float('inf'); t[0, 2] = -0.0
    ts['f_' + DT[dt]] = t
for dt in [torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8]:
    info = torch.iinfo(dt)
    t = torch.randint(info.min, info.max, (4, 3), generator=g, dtype=dt)
    t[0, 0] = info.min; t[0, 1] = info.max
    ts['i_' + DT[dt]] = t
ts['b_bool'] = torch.rand(7, generator=g) > 0.5
ts['scalar'] = torch.tensor(3.25, dtype=torch.float64)
ts['scalar_i'] = torch.tensor(-7, dtype=torch.int64)
ts['empty'] = torch.zeros(0, 4)
ts['empty_bf16'] = torch.zeros(2, 0, dtype=torch.bfloat16)
ts['from_view'] = torch.arange(24, dtype=torch.float32).reshape(4, 6).t().contiguous()
save_file(ts, sys.argv[4], metadata={'format': 'pt', 'note': 'héllo'})
py_expected = {k: expect(v) for k, v in ts.items()}
print(json.dumps({'ts': ts_report, 'py': py_expected}))
`,
  tsFile,
  expPath,
  tmp.path('resaved.safetensors'),
  pyFile,
).then(
  (out) =>
    JSON.parse(out) as {
      ts: { bad: string[]; meta: Record<string, string>; same: boolean };
      py: Record<string, Expected>;
    },
);
const pyExpected = fromPython.then((r) => r.py);
const tsReport = fromPython.then((r) => r.ts);
// A Python failure is reported by the tests that await these, not as an unhandled rejection.
pyExpected.catch(() => undefined);
tsReport.catch(() => undefined);

describe('safetensors: Python -> TS', () => {
  const file = pyFile;
  test('loadSafetensors is bit-exact for every dtype, scalars and empty tensors', async () => {
    const expected = await pyExpected;
    const got = io.loadSafetensors(file);
    try {
      assert.deepEqual([...got.keys()].sort(), Object.keys(expected).sort());
      for (const [name, e] of Object.entries(expected)) assertTensorMatches(name, got.get(name), e);
    } finally {
      for (const t of got.values()) t.dispose();
    }
  });

  test('readSafetensorsHeader reads metadata and infos without data', async () => {
    const expected = await pyExpected;
    const h = io.readSafetensorsHeader(file);
    assert.deepEqual(h.metadata, { format: 'pt', note: 'héllo' });
    assert.equal(h.tensors.length, Object.keys(expected).length);
    const f32 = h.tensors.find((t) => t.name === 'f_float32')!;
    assert.equal(f32.dtype, 'float32');
    assert.deepEqual(f32.shape, [3, 5]);
    assert.equal(f32.dataOffsets[1] - f32.dataOffsets[0], 60);
    assert.equal(h.dataStart % 8, 0);
  });

  test('SafetensorsFile reads lazily, one tensor at a time; names selects a subset', async () => {
    const expected = await pyExpected;
    using f = io.SafetensorsFile.open(file);
    assert.equal(f.list().length, Object.keys(expected).length);
    assert.ok(f.has('scalar'));
    for (const name of ['i_int16', 'scalar', 'empty', 'b_bool']) {
      const t = f.get(name);
      assertTensorMatches(name, t, expected[name]!);
      t.dispose();
    }
    assertCheckpointError(() => f.get('nope'), file, /no tensor named "nope"/);
    f.close();
    assertCheckpointError(() => f.get('scalar'), file, /closed/);

    const some = io.loadSafetensors(file, { names: ['f_bfloat16', 'i_uint8'] });
    assert.deepEqual([...some.keys()], ['f_bfloat16', 'i_uint8']);
    for (const [k, t] of some) {
      assertTensorMatches(k, t, expected[k]!);
      t.dispose();
    }
    assertCheckpointError(() => io.loadSafetensors(file, { names: ['missing'] }), file, /no tensor named/);
  });

  test('chunked reads (tensors larger than the transfer chunk) are bit-exact', async () => {
    const expected = await pyExpected;
    const old = setChunkBytesForTesting(16);
    try {
      const got = io.loadSafetensors(file);
      for (const [name, e] of Object.entries(expected)) assertTensorMatches(name, got.get(name), e);
      for (const t of got.values()) t.dispose();
    } finally {
      setChunkBytesForTesting(old);
    }
  });
});

describe('safetensors: TS -> Python', () => {
  test('every dtype, scalars, empty and non-contiguous tensors, metadata', async () => {
    const file = tsFile;
    const expected = tsExpected;
    const tensors = tsTensors;
    const r = await tsReport;
    assert.deepEqual(r.bad, []);
    assert.deepEqual(r.meta, { source: 'epg', ünï: 'cödé' });
    assert.equal(r.same, true, 'file differs from what the reference writer produces');

    // And back into TS.
    const back = io.loadSafetensors(file);
    for (const [k, e] of Object.entries(expected)) assertTensorMatches(k, back.get(k), e);
    for (const t of [...back.values(), ...tensors.values()]) t.dispose();
  });

  test('chunked writes (tensors larger than the transfer chunk) are bit-exact', () => {
    const file = tmp.path('chunked.safetensors');
    const a = randomTensor('float32', [33, 17], 5).transpose(0, 1);
    const b = randomTensor('bfloat16', [101], 6);
    const old = setChunkBytesForTesting(64);
    try {
      io.saveSafetensors(file, { a, b });
    } finally {
      setChunkBytesForTesting(old);
    }
    const back = io.loadSafetensors(file);
    assert.equal(rawBytes(back.get('a')!).toString('hex'), rawBytes(a).toString('hex'));
    assert.equal(rawBytes(back.get('b')!).toString('hex'), rawBytes(b).toString('hex'));
    for (const t of [a, b, ...back.values()]) t.dispose();
  });
});

// ------------------------------------------------------------ bad files

/** A safetensors file from a header object (or raw header text) and data bytes. */
function writeRaw(name: string, header: unknown, data: Uint8Array, lengthOverride?: bigint): string {
  const path = tmp.path(name);
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, json, data]));
  return path;
}

describe('safetensors: invalid files are rejected with a CheckpointError naming the file and the problem', () => {
  const f32 = (begin: number, end: number, shape = [2]) => ({ dtype: 'F32', shape, data_offsets: [begin, end] });
  const cases: [string, () => string, RegExp][] = [
    [
      'shorter than 8 bytes',
      () => {
        const p = tmp.path('short.safetensors');
        writeFileSync(p, Buffer.from([1, 2, 3]));
        return p;
      },
      /shorter than the 8-byte header length/,
    ],
    [
      'header length past the end',
      () => writeRaw('len.st', { a: f32(0, 8) }, new Uint8Array(8), 10_000n),
      /runs past the end/,
    ],
    [
      'absurd header length',
      () => writeRaw('huge.st', {}, new Uint8Array(0), 1n << 40n),
      /larger than the 100000000-byte limit/,
    ],
    ['invalid JSON', () => writeRaw('json.st', '{"a": {"dtype": ', new Uint8Array(0)), /not valid JSON/],
    ['header not an object', () => writeRaw('arr.st', '[1, 2]  ', new Uint8Array(0)), /does not start with "\{"/],
    [
      'unknown dtype',
      () => writeRaw('dtype.st', { a: { dtype: 'F33', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)),
      /unknown dtype "F33"/,
    ],
    [
      'unsupported dtype',
      () => writeRaw('u32.st', { a: { dtype: 'U32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)),
      /U32, which @epg\/torch does not support/,
    ],
    ['negative shape', () => writeRaw('neg.st', { a: f32(0, 8, [-2]) }, new Uint8Array(8)), /invalid shape/],
    ['fractional shape', () => writeRaw('frac.st', { a: f32(0, 8, [1.5]) }, new Uint8Array(8)), /invalid shape/],
    [
      'data_offsets not a pair',
      () => writeRaw('offs.st', { a: { dtype: 'F32', shape: [2], data_offsets: [0] } }, new Uint8Array(8)),
      /invalid data_offsets/,
    ],
    ['size mismatch', () => writeRaw('size.st', { a: f32(0, 12) }, new Uint8Array(12)), /needs 8 bytes/],
    [
      'overlapping offsets',
      () => writeRaw('overlap.st', { a: f32(0, 8), b: f32(4, 12) }, new Uint8Array(12)),
      /overlap/,
    ],
    [
      'hole in the data',
      () => writeRaw('hole.st', { a: f32(0, 8), b: f32(12, 20) }, new Uint8Array(20)),
      /belong to no tensor/,
    ],
    [
      'truncated data',
      () => writeRaw('trunc.st', { a: f32(0, 8), b: f32(8, 16) }, new Uint8Array(11)),
      /run past the end .*truncated/,
    ],
    ['trailing bytes', () => writeRaw('trail.st', { a: f32(0, 8) }, new Uint8Array(10)), /trailing bytes/],
    ['metadata not strings', () => writeRaw('meta.st', { __metadata__: { a: 1 } }, new Uint8Array(0)), /not a string/],
  ];
  for (const [name, make, problem] of cases)
    test(name, () => {
      const path = make();
      assertCheckpointError(() => io.loadSafetensors(path), path, problem);
      assertCheckpointError(() => io.readSafetensorsHeader(path), path, problem);
    });

  test('a missing file', () => {
    const p = tmp.path('does-not-exist.safetensors');
    assertCheckpointError(() => io.loadSafetensors(p), p, /cannot open/);
  });

  test('a truncated real file', () => {
    const src = tmp.path('whole.safetensors');
    const t = randomTensor('float32', [64], 3);
    io.saveSafetensors(src, { t });
    t.dispose();
    const data = readFileSync(src);
    for (const cut of [4, 20, data.length - 1]) {
      const p = tmp.path(`cut${cut}.safetensors`);
      writeFileSync(p, data.subarray(0, cut));
      assertCheckpointError(() => io.loadSafetensors(p), p, /truncated|shorter|past the end/);
    }
  });
});

// ------------------------------------------------------------ atomic writes

function tempLeftovers(): string[] {
  return readdirSync(tmp.dir).filter((n) => n.includes('.tmp-'));
}

describe('safetensors: atomic saves', () => {
  test('a tensor failing mid-write leaves the previous file intact and no temp file', () => {
    const file = tmp.path('atomic.safetensors');
    const good = randomTensor('float32', [16], 9);
    io.saveSafetensors(file, { good });
    const before = readFileSync(file);
    // Passes the header phase (shape and dtype) but fails when its bytes are read.
    const exploding = Object.create(torch.Tensor.prototype, {
      shape: { get: () => [4] },
      dtype: { get: () => 'float32' },
      id: {
        get: () => {
          throw new Error('boom: bytes unavailable');
        },
      },
    }) as Tensor;
    assert.throws(
      () => io.saveSafetensors(file, { good, zzz: exploding }),
      (e: unknown) => e instanceof io.CheckpointError && /boom: bytes unavailable/.test(e.message) && e.file === file,
    );
    assert.deepEqual(readFileSync(file), before);
    assert.deepEqual(tempLeftovers(), []);

    // A disposed tensor fails too, the same way.
    const gone = torch.zeros([2]);
    gone.dispose();
    assert.throws(() => io.saveSafetensors(file, { good, gone }), io.CheckpointError);
    assert.deepEqual(readFileSync(file), before);
    assert.deepEqual(tempLeftovers(), []);

    // A successful save replaces it.
    const other = randomTensor('int32', [3], 10);
    io.saveSafetensors(file, { other });
    assert.notDeepEqual(readFileSync(file), before);
    const reloaded = io.loadSafetensors(file);
    assert.deepEqual([...reloaded.keys()], ['other']);
    for (const t of reloaded.values()) t.dispose();
    assert.deepEqual(tempLeftovers(), []);
    good.dispose();
    other.dispose();
  });

  test('a missing directory is a CheckpointError', () => {
    const p = tmp.path('no/such/dir/x.safetensors');
    const t = torch.zeros([1]);
    assertCheckpointError(() => io.saveSafetensors(p, { t }), p, /cannot write/);
    t.dispose();
  });

  // Started when the suite is declared (a child process: about a second), checked below.
  const fullFile = tmp.path('full.safetensors');
  const small = torch.zeros([4]);
  io.saveSafetensors(fullFile, { small });
  small.dispose();
  const fullBefore = readFileSync(fullFile);
  // A child process under \`ulimit -f\` (with SIGXFSZ ignored, so writes fail with EFBIG).
  const script = `
    import * as torch from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href)};
    const big = torch.zeros([1 << 18]);
    try { torch.io.saveSafetensors(process.argv[1], { big }); console.log('saved'); }
    catch (e) { console.log(e instanceof torch.io.CheckpointError ? 'CheckpointError ' + e.message : 'other ' + e); }
  `;
  const child = new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const p = spawn(
      'bash',
      ['-c', `trap '' XFSZ; ulimit -f 64; exec node --input-type=module -e "$0" "$1"`, script, fullFile],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    p.on('close', (status) => resolve({ status, stdout, stderr }));
  });

  test('running out of space (file size limit, EFBIG) leaves the previous file intact', async () => {
    const file = fullFile;
    const before = fullBefore;
    const r = await child;
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^CheckpointError .*(EFBIG|too large)/);
    assert.deepEqual(readFileSync(file), before);
    assert.deepEqual(tempLeftovers(), []);
  });
});
