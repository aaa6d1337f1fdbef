// .npy/.npz reading and writing against numpy (both directions, np.savez and
// np.savez_compressed), statistics files in the ADM evaluator's layout, and
// sample batches as `arr_0`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import * as torch from '@epg/torch';

import {
  formatNpyHeader,
  loadNpz,
  loadStats,
  NpzError,
  NpzReader,
  NpzWriter,
  parseNpyHeader,
  SamplesNpzWriter,
  saveNpz,
  saveSamplesNpz,
  saveStats,
  setZip64LimitForTesting,
  statistics,
} from '../src/eval/index.js';

import { REF_SCRIPT, runRef, tempDir } from './eval-helpers.js';

function python(code: string, ...args: string[]): string {
  const r = spawnSync('python3', ['-c', code, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout;
}

test('npz: arrays written here read back in numpy, and numpy .npz (plain and compressed) read back here', () => {
  torch.tidy(() => {
    const arrays = {
      f8: torch.randn([3, 5], { dtype: 'float64' }),
      f4: torch.randn([7], { dtype: 'float32' }),
      u1: torch.randint(0, 256, [2, 4, 4, 3]).to('uint8'),
      i8: torch.tensor([-(2 ** 52), -1, 0, 2 ** 40]).to('int64'),
      big: torch.randn([1000, 70], { dtype: 'float32' }), // larger than one 64 KiB header read
    };
    for (const compressed of [false, true]) {
      const back = runRef('npz', arrays, { compressed });
      for (const [k, t] of Object.entries(arrays)) {
        const r = back[k]!;
        assert.equal(r.dtype, t.dtype, `${k}: dtype`);
        assert.deepEqual(r.shape, t.shape, `${k}: shape`);
        assert.ok(r.equal(t), `${k}: values after numpy round trip`);
        const sum = t.to('float64').sum().item();
        assert.ok(Math.abs(back[`${k}_sum`]!.item() - sum) <= 1e-9 * Math.max(1, Math.abs(sum)), `${k}: numpy's sum`);
        const descr = new TextDecoder().decode(back[`${k}_dtype`]!.toTypedArray() as Uint8Array);
        assert.equal(descr, { f8: '<f8', f4: '<f4', u1: '|u1', i8: '<i8', big: '<f4' }[k], `${k}: numpy dtype`);
      }
      assert.deepEqual(back['from_numpy_f4']!.shape, [2, 3, 4]);
      assert.ok(
        back['from_numpy_f4']!.allclose(torch.arange(0, 24, 1, { dtype: 'float32' }).div(7).reshape(2, 3, 4), 0, 0),
      );
      assert.deepEqual(Array.from(back['from_numpy_i8']!.toTypedArray() as BigInt64Array, Number), [-(2 ** 40), 0, 7]);
      assert.equal((back['from_numpy_u1']!.toTypedArray() as Uint8Array)[255], 255);
      assert.deepEqual(back['from_numpy_scalar']!.shape, []);
      assert.equal(back['from_numpy_scalar']!.item(), 3.25);
      assert.deepEqual(back['from_numpy_empty']!.shape, [0, 5]);
      assert.ok(
        back['from_numpy_fortran']!.equal(torch.arange(0, 24, 1, { dtype: 'float64' }).reshape(2, 3, 4)),
        'Fortran order',
      );
    }
  });
});

test('npz: unknown dtypes, missing keys and non-zip files fail with the file named', () => {
  using tmp = tempDir();
  const p = join(tmp.dir, 'x.npz');
  python(
    'import numpy as np, sys\n' +
      "np.savez(sys.argv[1], c=np.ones(3, dtype=np.complex64), s=np.array(['ab']), b=np.ones(2, dtype='>f8'))",
    p,
  );
  using r = new NpzReader(p);
  assert.throws(
    () => r.read('c'),
    (e: Error) => e instanceof NpzError && /dtype '<c8' is not supported/.test(e.message) && e.message.includes(p),
  );
  assert.throws(() => r.read('b'), /dtype '>f8' is not supported/);
  assert.throws(() => r.read('s'), /dtype '<U2' is not supported/);
  assert.throws(() => r.read('nope'), /has no array 'nope' \(it has: c, s, b\)/);
  assert.throws(() => new NpzReader(REF_SCRIPT), /cannot open as \.npz/);
});

test('npy headers: 64-byte alignment as numpy writes them, version 2 headers parse', () => {
  for (const shape of [[], [3], [2048, 2048], [50000, 256, 256, 3]]) {
    const h = formatNpyHeader('float64', shape);
    assert.equal(h.length % 64, 0, `[${shape}]`);
    const p = parseNpyHeader(h, 'mem');
    assert.deepEqual(p.shape, shape);
    assert.equal(p.headerBytes, h.length);
  }
  // A version 2.0 header (4-byte length) as numpy writes for very long headers.
  const dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2), }";
  const body = dict + ' '.repeat(64 - ((12 + dict.length + 1) % 64)) + '\n';
  const v2 = new Uint8Array(12 + body.length);
  v2.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 2, 0]);
  new DataView(v2.buffer).setUint32(8, body.length, true);
  v2.set(new TextEncoder().encode(body), 12);
  const p = parseNpyHeader(v2, 'mem');
  assert.deepEqual(p.shape, [4, 2]);
  assert.equal(p.dtype, 'float32');
  assert.equal(p.dataBytes, 32);
});

test('saveStats/loadStats: ADM layout (mu, sigma float64), our meta and features; ADM reference batches read ignoring arr_0 and sFID keys', () => {
  using tmp = tempDir();
  torch.tidy(() => {
    const feats = torch.randn([40, 16], { dtype: 'float64' });
    const st = statistics(feats);
    const ours = join(tmp.dir, 'ref.npz');
    const meta = { preprocess: 'clean-fid' as const, numImages: 40, inceptionSha1: 'x', source: 'test' };
    saveStats(ours, st, { meta, features: feats });
    const back = loadStats(ours);
    assert.ok(back.mu.equal(st.mu) && back.sigma.equal(st.sigma));
    assert.deepEqual(back.meta, meta);
    const keys = python(
      'import numpy as np, sys\nz = np.load(sys.argv[1])\nprint(sorted(z.files), z["mu"].dtype, z["sigma"].shape, z["feats"].dtype)',
      ours,
    );
    assert.equal(keys.trim(), "['epg_meta', 'feats', 'mu', 'sigma'] float64 (16, 16) float32");

    // An ADM-style reference batch written by numpy: images, FID and sFID statistics.
    const adm = join(tmp.dir, 'VIRTUAL_like.npz');
    python(
      'import numpy as np, sys\nr = np.random.default_rng(0)\n' +
        'np.savez(sys.argv[1], arr_0=r.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), mu=np.arange(5.0), ' +
        'sigma=np.eye(5) * 2, mu_s=np.zeros(3), sigma_s=np.eye(3))',
      adm,
    );
    const a = loadStats(adm);
    assert.deepEqual(Array.from(a.mu.toTypedArray() as Float64Array), [0, 1, 2, 3, 4]);
    assert.equal(a.sigma.diagonal().sum().item(), 10);
    assert.equal(a.meta, null);
    assert.throws(() => loadStats(REF_SCRIPT), NpzError);
  });
});

test('saveSamplesNpz and SamplesNpzWriter: arr_0 uint8 [N, H, W, 3] as the ADM evaluator reads it; partial files are discarded', () => {
  using tmp = tempDir();
  torch.tidy(() => {
    const imgs = torch.randint(0, 256, [5, 6, 7, 3]).to('uint8');
    const p = join(tmp.dir, 'samples.npz');
    saveSamplesNpz(p, imgs);
    const check =
      'import numpy as np, sys\nz = np.load(sys.argv[1])\na = z["arr_0"]\nprint(z.files, a.dtype, a.shape, int(a.astype(np.int64).sum()))';
    const total = imgs.to('int64').sum().item();
    assert.equal(python(check, p).trim(), `['arr_0'] uint8 (5, 6, 7, 3) ${total}`);

    // Streamed in two batches, the second in NCHW float.
    const q = join(tmp.dir, 'streamed.npz');
    {
      using w = new SamplesNpzWriter(q, 5, 6, 7);
      w.append(imgs.narrow(0, 0, 2));
      w.append(imgs.narrow(0, 2, 3).permute(0, 3, 1, 2).to('float32'), 'NCHW');
      w.close();
    }
    assert.ok(loadNpz(q)['arr_0']!.equal(imgs));
    assert.equal(python(check, q).trim(), `['arr_0'] uint8 (5, 6, 7, 3) ${total}`);
    using r = new NpzReader(q);
    assert.ok(r.readRows('arr_0', 3, 2).equal(imgs.narrow(0, 3, 2)), 'readRows in place');

    const bad = join(tmp.dir, 'short.npz');
    {
      using w = new SamplesNpzWriter(bad, 5, 6, 7);
      w.append(imgs.narrow(0, 0, 2));
      assert.throws(() => w.close(), /2 of 5 images written; file discarded/);
    }
    assert.ok(!existsSync(bad));
    assert.throws(() => saveSamplesNpz(bad, imgs.permute(0, 3, 1, 2)), /expected uint8 \[N, H, W, 3\]/);
  });
  assert.deepEqual(readdirSync(tmp.dir).sort(), ['samples.npz', 'streamed.npz'], 'no temporary files left');
});

test('NpzWriter: streamed members, duplicate keys and short writes are errors', () => {
  using tmp = tempDir();
  const p = join(tmp.dir, 'w.npz');
  {
    using w = new NpzWriter(p);
    w.begin('a', 'float32', [2, 2]);
    w.write(new Uint8Array(new Float32Array([1, 2]).buffer));
    assert.throws(() => w.end(), /8 bytes still to write/);
    w.write(new Uint8Array(new Float32Array([3, 4]).buffer));
    w.end();
    assert.throws(() => w.begin('a', 'uint8', [1]), /written twice/);
    w.close();
  }
  torch.tidy(() =>
    assert.deepEqual(loadNpz(p)['a']!.toArray(), [
      [1, 2],
      [3, 4],
    ]),
  );
  saveNpz(p, { only: torch.ones([2]) });
  assert.deepEqual(Object.keys(loadNpz(p)), ['only'], 'overwritten atomically');
});

test('NpzWriter: ZIP64 records (sizes, offsets, end of directory) read by numpy and by our reader', () => {
  using tmp = tempDir();
  const p = join(tmp.dir, 'z64.npz');
  // With the threshold at 100 bytes every member past the first and every size is "large".
  const old = setZip64LimitForTesting(100);
  try {
    torch.tidy(() => {
      const a = torch.arange(0, 50, 1, { dtype: 'float64' });
      const b = torch.ones([3], { dtype: 'float32' });
      saveNpz(p, { a, b, c: torch.zeros([1], { dtype: 'uint8' }) });
      assert.equal(
        python(
          'import numpy as np, sys\nz = np.load(sys.argv[1])\nprint(z.files, z["a"].sum(), z["b"].sum(), z["c"].shape)',
          p,
        ).trim(),
        "['a', 'b', 'c'] 1225.0 3.0 (1,)",
      );
      const back = loadNpz(p);
      assert.ok(back['a']!.equal(a) && back['b']!.equal(b));
    });
  } finally {
    setZip64LimitForTesting(old);
  }
});
