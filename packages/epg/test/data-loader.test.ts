// The Loader: per-epoch permutations fixed by (seed, epoch), no duplicates
// within an epoch, drop_last, resuming mid-epoch gives the batches of the
// uninterrupted run (in memory, in decode workers, through get()), ranks
// splitting the global batch, errors from workers, and workers that exit.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  DataError,
  ImageFolder,
  InMemoryDataset,
  Loader,
  encodePng,
  epochPermutation,
  type Batch,
} from '../src/data/index.js';
import { tempDir } from './data-ref.js';

let tmp: { dir: string; cleanup: () => void };
let folder: string;

/** Image i of the test datasets: every pixel is i, label i % 3. */
function memory(n: number): InMemoryDataset {
  const per = 2 * 3 * 3;
  const images = new Uint8Array(n * per);
  for (let i = 0; i < n; i++) images.fill(i % 256, i * per, (i + 1) * per);
  return new InMemoryDataset(
    images,
    Array.from({ length: n }, (_, i) => i % 3),
    { channels: 2, height: 3, width: 3 },
    ['a', 'b', 'c'],
  );
}

before(() => {
  tmp = tempDir();
  folder = join(tmp.dir, 'folder');
  // 23 PNGs in 3 classes; image k (in sorted order) is filled with k.
  let k = 0;
  for (const [cls, count] of [
    ['a', 8],
    ['b', 7],
    ['c', 8],
  ] as const) {
    mkdirSync(join(folder, cls), { recursive: true });
    for (let j = 0; j < count; j++, k++)
      writeFileSync(
        join(folder, cls, `${String(j).padStart(2, '0')}.png`),
        encodePng(new Uint8Array(5 * 4 * 3).fill(k), 5, 4, 3),
      );
  }
});
after(() => tmp.cleanup());

interface Seen {
  epoch: number;
  position: number;
  indices: number[];
  labels: number[];
}

async function take(loader: Loader, n: number, check?: (b: Batch) => void): Promise<Seen[]> {
  const out: Seen[] = [];
  for (let k = 0; k < n; k++) {
    const b = await loader.next();
    check?.(b);
    out.push({
      epoch: b.epoch,
      position: b.position,
      indices: Array.from(b.indices),
      labels: Array.from(b.labels.toTypedArray() as BigInt64Array, Number),
    });
    b.images.dispose();
    b.labels.dispose();
  }
  return out;
}

/** Every image's pixels equal its dataset index (mod 256); labels are the dataset's. */
function checkContents(b: Batch, label: (i: number) => number): void {
  const px = b.images.toTypedArray() as Uint8Array;
  const per = px.length / b.indices.length;
  const labels = b.labels.toTypedArray() as BigInt64Array;
  b.indices.forEach((i, k) => {
    assert.ok(
      px.subarray(k * per, (k + 1) * per).every((v) => v === i % 256),
      `pixels of image ${i}`,
    );
    assert.equal(Number(labels[k]), label(i), `label of image ${i}`);
  });
}

describe('epochPermutation', () => {
  test('a permutation, fixed by (seed, epoch), different across epochs and seeds', () => {
    const p = epochPermutation(1000, 5, 2);
    assert.deepEqual(
      Array.from(p).sort((a, b) => a - b),
      Array.from({ length: 1000 }, (_, i) => i),
    );
    assert.deepEqual(p, epochPermutation(1000, 5, 2));
    assert.notDeepEqual(p, epochPermutation(1000, 5, 3));
    assert.notDeepEqual(p, epochPermutation(1000, 6, 2));
    // Uniform over epochs: each of the 24 orders of 4 elements about 1/24 of the time.
    const counts = new Map<string, number>();
    const n = 4800;
    for (let e = 0; e < n; e++) {
      const key = epochPermutation(4, 1, e).join('');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    assert.equal(counts.size, 24);
    const sd = Math.sqrt(n * (1 / 24) * (23 / 24));
    for (const [k, c] of counts) assert.ok(Math.abs(c - n / 24) < 5 * sd, `order ${k}: ${c} of ${n}`);
  });
});

describe('Loader', () => {
  test('in memory: no duplicates within an epoch, drop_last, labels and pixels right', async () => {
    const ds = memory(103);
    const loader = new Loader(ds, { batchSize: 10, seed: 1 });
    assert.equal(loader.mode, 'sync');
    assert.equal(loader.batchesPerEpoch, 10);
    const seen = await take(loader, 30, (b) => checkContents(b, (i) => i % 3));
    for (let e = 0; e < 3; e++) {
      const ep = seen.filter((s) => s.epoch === e);
      assert.deepEqual(
        ep.map((s) => s.position),
        [...Array(10).keys()],
      );
      const all = ep.flatMap((s) => s.indices);
      assert.equal(new Set(all).size, 100, `epoch ${e}: 100 distinct images`);
      assert.ok(ep.every((s) => s.indices.length === 10));
    }
    assert.notDeepEqual(seen[0]!.indices, seen[10]!.indices, 'epochs are shuffled differently');
    assert.deepEqual(loader.state(), { epoch: 3, position: 0 });
    await loader.close();
    await assert.rejects(loader.next(), /closed/);
  });

  test('dropLast false and shuffle false: dataset order, a last partial batch', async () => {
    const loader = new Loader(memory(25), { batchSize: 10, dropLast: false, shuffle: false });
    const seen = await take(loader, 4);
    assert.deepEqual(
      seen.map((s) => s.indices.length),
      [10, 10, 5, 10],
    );
    assert.deepEqual(seen[2]!.indices, [20, 21, 22, 23, 24]);
    assert.deepEqual(seen[3]!, {
      epoch: 1,
      position: 0,
      indices: [...Array(10).keys()],
      labels: [0, 1, 2, 0, 1, 2, 0, 1, 2, 0],
    });
    await loader.close();
  });

  test('resuming mid-epoch gives the batches of the uninterrupted run (memory, workers, get())', async () => {
    const sources: [string, () => InMemoryDataset | ImageFolder, number | undefined][] = [
      ['memory', () => memory(47), undefined],
      ['workers', () => ImageFolder.open({ root: folder }), 2],
      ['get()', () => ImageFolder.open({ root: folder }), 0],
    ];
    for (const [what, open, numWorkers] of sources) {
      const opts = { batchSize: 6, seed: 7, numWorkers, prefetch: 3 };
      const whole = new Loader(open(), opts);
      const per = whole.batchesPerEpoch;
      const label = (i: number): number => (what === 'memory' ? i % 3 : i < 8 ? 0 : i < 15 ? 1 : 2);
      const all = await take(whole, 2 * per + 3, (b) => checkContents(b, label));
      await whole.close();
      for (const cut of [1, per - 1, per, per + 2]) {
        const first = new Loader(open(), opts);
        const head = await take(first, cut);
        const state = first.state();
        await first.close();
        assert.deepEqual(
          state,
          cut === per ? { epoch: 1, position: 0 } : { epoch: Math.floor(cut / per), position: cut % per },
        );
        const resumed = new Loader(open(), { ...opts, start: state });
        const tail = await take(resumed, all.length - cut);
        await resumed.close();
        assert.deepEqual([...head, ...tail], all, `${what}: resumed after ${cut} batches`);
      }
    }
  });

  test('ranks split the global batch (split_batches)', async () => {
    const ds = memory(40);
    const global = await take(new Loader(ds, { batchSize: 8, seed: 3 }), 5);
    const parts = await Promise.all(
      [0, 1, 2, 3].map((rank) => take(new Loader(ds, { batchSize: 8, seed: 3, rank, worldSize: 4 }), 5)),
    );
    for (let k = 0; k < 5; k++)
      assert.deepEqual(
        parts.flatMap((p) => p[k]!.indices),
        global[k]!.indices,
      );
    assert.throws(() => new Loader(ds, { batchSize: 10, worldSize: 4 }), /multiple of worldSize/);
  });

  test('decode workers: errors name the file; close() ends the workers', async () => {
    const bad = join(tmp.dir, 'bad');
    mkdirSync(join(bad, 'x'), { recursive: true });
    writeFileSync(join(bad, 'x', '0.png'), encodePng(new Uint8Array(5 * 4 * 3), 5, 4, 3));
    writeFileSync(join(bad, 'x', '1.png'), new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0]));
    const loader = new Loader(ImageFolder.open({ root: bad }), { batchSize: 2, numWorkers: 2 });
    assert.equal(loader.mode, 'workers');
    assert.equal(loader.liveWorkers, 2);
    assert.equal(loader.workerThreadIds.length, 2);
    await assert.rejects(
      loader.next(),
      (e: unknown) => e instanceof DataError && /x\/1\.png: truncated PNG/.test(e.message),
    );
    await loader.close();
    assert.equal(loader.liveWorkers, 0);
    const ok = new Loader(ImageFolder.open({ root: folder }), { batchSize: 4, numWorkers: 2 });
    await take(ok, 3);
    await ok.close();
    assert.equal(ok.liveWorkers, 0);
  });

  test('bad options are errors', () => {
    assert.throws(() => new Loader(memory(5), { batchSize: 8 }), /fewer than one batch of 8/);
    assert.throws(
      () => new Loader(memory(50), { batchSize: 8, start: { epoch: 0, position: 9 } }),
      /past the 6 batches/,
    );
    assert.throws(() => new Loader(memory(50), { batchSize: 0 }), /positive integer/);
  });
});
