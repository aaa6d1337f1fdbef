// The ADM centre crop (spec §1, center_crop_arr) against Python's PIL: the
// TypeScript port of Pillow's resampling is bit-exact, for BOX and BICUBIC,
// odd sizes, shrinking and enlarging; torch's bicubic with antialias (the
// same kernel in floating point) stays within 2 levels of it. Shards: round
// trip, atomic writes, errors.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import * as torch from '@epg/torch';

import {
  FashionMnist,
  ImageFolder,
  InMemoryDataset,
  Loader,
  ShardDataset,
  centerCropArr,
  decodeImage,
  hwcToChw,
  prepareShards,
  pyRound,
  resizePil,
  type DecodedImage,
} from '../src/data/index.js';
import { maxAbsDiff, ref, tempDir, unb64 } from './data-ref.js';

let tmp: { dir: string; cleanup: () => void };
before(() => {
  tmp = tempDir();
});
after(() => tmp.cleanup());

function load(path: string): DecodedImage {
  return decodeImage(readFileSync(path), { channels: 3 });
}

describe('resizePil (Pillow Image.resize)', () => {
  test('BOX and BICUBIC, odd sizes, down and up, RGB and gray: bit-exact', () => {
    const src = join(tmp.dir, 'src.png');
    const gsrc = join(tmp.dir, 'gsrc.png');
    ref([
      { op: 'make_image', kind: 'RGB', h: 45, w: 67, seed: 1, path: src },
      { op: 'make_image', kind: 'L', h: 45, w: 67, seed: 2, smooth: true, path: gsrc },
    ]);
    const sizes: [number, number, 'box' | 'bicubic' | 'bilinear'][] = [
      [33, 22, 'box'],
      [34, 23, 'box'],
      [20, 45, 'box'],
      [67, 11, 'bicubic'],
      [31, 17, 'bicubic'],
      [100, 70, 'bicubic'],
      [29, 60, 'bilinear'],
    ];
    const cases = sizes.flatMap(([w, h, filter]) => [
      { op: 'resize', path: src, w, h, filter, mode: 'RGB' },
      { op: 'resize', path: gsrc, w, h, filter, mode: 'L' },
    ]);
    const out = ref(cases) as string[];
    const rgb = load(src);
    const gray = decodeImage(readFileSync(gsrc));
    sizes.forEach(([w, h, filter], k) => {
      assert.deepEqual(resizePil(rgb, w, h, filter).pixels, unb64(out[2 * k]!), `RGB ${filter} to ${w}×${h}`);
      assert.deepEqual(resizePil(gray, w, h, filter).pixels, unb64(out[2 * k + 1]!), `L ${filter} to ${w}×${h}`);
    });
  });

  test('random sizes in every direction (the pass order of Pillow 13)', () => {
    let seed = 12345;
    const rnd = (lo: number, hi: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return lo + (seed % (hi - lo + 1));
    };
    const cases = Array.from({ length: 40 }, (_, k) => ({
      W: rnd(5, 60),
      H: rnd(5, 60),
      w: rnd(3, 80),
      h: rnd(3, 80),
      filter: (['box', 'bilinear', 'bicubic'] as const)[k % 3]!,
      path: join(tmp.dir, `rand-${k}.png`),
    }));
    ref(cases.map((c, k) => ({ op: 'make_image', kind: 'RGB', w: c.W, h: c.H, seed: 100 + k, path: c.path })));
    const out = ref(cases.map((c) => ({ op: 'resize', path: c.path, w: c.w, h: c.h, filter: c.filter }))) as string[];
    cases.forEach((c, k) => {
      const got = resizePil(load(c.path), c.w, c.h, c.filter);
      assert.deepEqual(got.pixels, unb64(out[k]!), `${c.filter} ${c.W}×${c.H} -> ${c.w}×${c.h}`);
    });
  });

  test('bicubic: torch interpolate(bicubic, antialias) is within 2 levels', () => {
    const src = join(tmp.dir, 'tsrc.png');
    ref([{ op: 'make_image', kind: 'RGB', h: 53, w: 71, seed: 4, smooth: true, path: src }]);
    const img = load(src);
    for (const [w, h] of [
      [32, 24],
      [90, 67],
    ] as const) {
      const ours = resizePil(img, w, h, 'bicubic');
      const viaTorch = torch.tidy(() => {
        const t = torch.fromTypedArray(hwcToChw(img.pixels, img.height, img.width, 3), [1, 3, img.height, img.width], {
          dtype: 'uint8',
        });
        const y = torch.F.interpolate(t.float(), { size: [h, w], mode: 'bicubic', antialias: true });
        return y.round().clamp(0, 255).to('uint8').toTypedArray() as Uint8Array;
      });
      const diff = maxAbsDiff(hwcToChw(ours.pixels, h, w, 3), viaTorch);
      assert.ok(diff <= 2, `${w}×${h}: max |Pillow − torch| = ${diff}`);
    }
  });

  test('pyRound is Python 3 round()', () => {
    assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, 2.5001, 3].map(pyRound), [0, 2, 2, -0, -2, 2, 3, 3]);
  });
});

describe('centerCropArr (ADM center_crop_arr, spec §1)', () => {
  test('equals guided-diffusion / EPG prepare_dataset in Python, bit for bit', () => {
    const shapes: [number, number, number, string][] = [
      [300, 200, 64, 'RGB'], // two BOX halvings? 200 >= 128: one, then BICUBIC
      [517, 389, 64, 'RGB'], // odd sizes: BOX to W//2 is not a 2×2 mean
      [70, 50, 64, 'RGB'], // enlarged
      [64, 64, 64, 'RGB'], // unchanged
      [129, 257, 32, 'RGB'], // portrait, three halvings
      [91, 97, 28, 'L'],
    ];
    const paths = shapes.map((_, k) => join(tmp.dir, `crop-${k}.png`));
    const results = ref([
      ...shapes.map(([w, h, , mode], k) => ({
        op: 'make_image',
        kind: mode,
        w,
        h,
        seed: k,
        smooth: k % 2 === 0,
        path: paths[k],
      })),
      ...shapes.map(([, , res, mode], k) => ({ op: 'center_crop', paths: [paths[k]], res, mode })),
    ]);
    const wants = results.slice(shapes.length).map((r) => (r as string[])[0]!);
    shapes.forEach(([w, h, res, mode], k) => {
      const img = decodeImage(readFileSync(paths[k]!), { channels: mode === 'L' ? 1 : 3 });
      const out = centerCropArr(img, res);
      assert.deepEqual([out.width, out.height], [res, res]);
      assert.deepEqual(out.pixels, unb64(wants[k]!), `${w}×${h} -> ${res}`);
    });
  });
});

describe('shards', () => {
  test('prepareShards -> ShardDataset round trip (Fashion-MNIST subset), atomic directory', async () => {
    const fm = FashionMnist.load({ split: 'test' });
    const n = 150;
    const sub = new InMemoryDataset(fm.images.subarray(0, n * 784), fm.labels.subarray(0, n), fm, fm.classNames);
    const out = join(tmp.dir, 'fm-shards');
    let progress = 0;
    const index = await prepareShards(sub, out, { shardSize: 64, onProgress: (d) => (progress = d) });
    assert.equal(progress, n);
    assert.deepEqual(
      index.shards.map((s) => s.count),
      [64, 64, 22],
    );
    assert.deepEqual(
      readdirSync(tmp.dir).filter((f) => f.includes('partial')),
      [],
    );
    using ds = ShardDataset.open(out);
    assert.equal(ds.length, n);
    assert.deepEqual([ds.channels, ds.height, ds.width, ds.numClasses], [1, 28, 28, 10]);
    assert.deepEqual(ds.classNames, fm.classNames);
    for (const i of [0, 63, 64, 127, 128, 149]) {
      const a = ds.getSync(i);
      const b = sub.getSync(i);
      assert.deepEqual(a.pixels, b.pixels, `image ${i}`);
      assert.equal(a.label, b.label);
      assert.deepEqual((await ds.get(i)).pixels, b.pixels);
    }
    await assert.rejects(prepareShards(sub, out), /exists \(pass overwrite: true/);
    await prepareShards(sub, out, { shardSize: 100, overwrite: true });
    assert.equal(ShardDataset.open(out).index.shards.length, 2);
    // A Loader over shards reads synchronously.
    const loader = new Loader(ShardDataset.open(out), { batchSize: 32, seed: 3 });
    assert.equal(loader.mode, 'sync');
    const b = await loader.next();
    assert.deepEqual(b.images.shape, [32, 1, 28, 28]);
    torch.tidy(() => {
      const want = torch.stack(Array.from(b.indices, (i) => torch.fromTypedArray(sub.getSync(i).pixels, [1, 28, 28])));
      assert.ok(b.images.equal(want));
    });
    b.images.dispose();
    b.labels.dispose();
    await loader.close();
  });

  test('prepareShards with resolution: the ADM crop of each image (decoded in workers)', async () => {
    const root = join(tmp.dir, 'folder');
    const cases = [
      [40, 30],
      [23, 50],
      [32, 32],
    ].map(([w, h], k) => {
      const path = join(root, k === 2 ? 'b' : 'a', `${k}.png`);
      mkdirSync(join(path, '..'), { recursive: true });
      return { op: 'make_image', kind: 'RGB', w, h, seed: k, path };
    });
    ref(cases);
    const crops = ref([{ op: 'center_crop', paths: cases.map((c) => c.path), res: 16 }])[0] as string[];
    using folder = ImageFolder.open({ root, resolution: 16 });
    const out = join(tmp.dir, 'folder-shards');
    await prepareShards(folder, out, { resolution: 16, numWorkers: 2 });
    using ds = ShardDataset.open(out);
    assert.equal(ds.index.resolution, 16);
    for (let i = 0; i < 3; i++)
      assert.deepEqual(ds.getSync(i).pixels, hwcToChw(unb64(crops[i]!), 16, 16, 3), `image ${i}`);
    assert.deepEqual(Array.from(ds.labels), [0, 0, 1]);
    // An in-memory dataset of another size is cropped on this thread (28 -> 32 enlarges).
    const fm = FashionMnist.load({ split: 'test' });
    const sub = new InMemoryDataset(fm.images.subarray(0, 3 * 784), fm.labels.subarray(0, 3), fm, fm.classNames);
    const out2 = join(tmp.dir, 'fm32');
    await prepareShards(sub, out2, { resolution: 32 });
    using ds2 = ShardDataset.open(out2);
    assert.deepEqual([ds2.height, ds2.width], [32, 32]);
    const want = centerCropArr({ width: 28, height: 28, channels: 1, pixels: sub.getSync(2).pixels }, 32);
    assert.deepEqual(ds2.getSync(2).pixels, want.pixels);
  });

  test('ShardDataset errors: missing index, truncated shard, bad labels', async () => {
    assert.throws(
      () => ShardDataset.open(join(tmp.dir, 'none')),
      /index\.json not found \(expected a directory written by prepareShards\)/,
    );
    const fm = FashionMnist.load({ split: 'test' });
    const sub = new InMemoryDataset(fm.images.subarray(0, 10 * 784), fm.labels.subarray(0, 10), fm, fm.classNames);
    const out = join(tmp.dir, 'broken');
    await prepareShards(sub, out, { shardSize: 4 });
    truncateSync(join(out, 'shard-00001.u8'), 100);
    assert.throws(() => ShardDataset.open(out), /shard-00001\.u8 has 100 bytes, expected 3136 .*truncated or corrupt/);
    await prepareShards(sub, out, { shardSize: 4, overwrite: true });
    const labels = readFileSync(join(out, 'labels.i32'));
    labels.writeInt32LE(10, 8);
    writeFileSync(join(out, 'labels.i32'), labels);
    assert.throws(() => ShardDataset.open(out), /label 10 of image 2 is outside \[0, 10\)/);
    const idx = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(out, 'index.json'), JSON.stringify({ ...idx, format: 'other' }));
    assert.throws(() => ShardDataset.open(out), /format is "other"/);
    assert.ok(existsSync(out));
  });
});
