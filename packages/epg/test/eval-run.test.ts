// runEval end to end on a few tiny images: PNG/JPEG folders and .npz samples,
// a dataset reference (computed, cached, reused) and an .npz reference; the
// "FID-N proxy" label. Few images: the CPU Inception forward is slow.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';
import jpeg from 'jpeg-js';
import pngjs from 'pngjs';

import {
  decodeImage,
  fidLabel,
  formatEvalResult,
  InceptionFeatures,
  listImages,
  loadStats,
  referenceStats,
  runEval,
  saveSamplesNpz,
  type ImageSource,
} from '../src/eval/index.js';

import { tempDir } from './eval-helpers.js';

const { PNG } = pngjs;

/** n smooth random RGB images, uint8 [n, 3, h, w]. */
function images(seed: number, n: number, h: number, w: number): Tensor {
  using gen = new torch.Generator('cpu', seed);
  return torch.tidy(() =>
    torch.F.interpolate(torch.rand([n, 3, h / 4, w / 4], { generator: gen }).mul(255), {
      size: [h, w],
      mode: 'bilinear',
    })
      .round()
      .to('uint8'),
  );
}

function hwc(img: Tensor, channels: number): Uint8Array {
  return torch.tidy(() => {
    let x = img.permute(1, 2, 0);
    if (channels === 4) x = torch.cat([x, torch.full([x.shape[0]!, x.shape[1]!, 1], 255).to('uint8')], 2);
    return x.contiguous().toTypedArray() as Uint8Array;
  });
}

function writePng(path: string, img: Tensor): void {
  const [, h, w] = img.shape as [number, number, number];
  const png = new PNG({ width: w, height: h });
  png.data = Buffer.from(hwc(img, 4));
  writeFileSync(path, PNG.sync.write(png));
}

class MemorySource implements ImageSource {
  readonly channels = 3;
  gets = 0;
  constructor(
    readonly data: Tensor,
    readonly height: number,
    readonly width: number,
  ) {}
  get length(): number {
    return this.data.shape[0]!;
  }
  async get(i: number): Promise<{ pixels: Uint8Array; label: number }> {
    this.gets++;
    return { pixels: this.data.select(0, i).contiguous().toTypedArray() as Uint8Array, label: 0 };
  }
}

test('decodeImage: PNG (RGBA, grey) exact, JPEG close; listImages sorted and recursive', () => {
  using tmp = tempDir();
  const img = images(1, 1, 16, 20).select(0, 0);
  const png = new PNG({ width: 20, height: 16 });
  png.data = Buffer.from(hwc(img, 4));
  const d = decodeImage(PNG.sync.write(png));
  assert.deepEqual([d.height, d.width], [16, 20]);
  assert.deepEqual(d.pixels, img.contiguous().toTypedArray());
  const grey = new PNG({ width: 20, height: 16 });
  grey.data = Buffer.from(hwc(img, 4));
  const g = decodeImage(PNG.sync.write(grey, { colorType: 0 }));
  assert.deepEqual(g.pixels.subarray(0, 320), g.pixels.subarray(320, 640), 'grey repeated to RGB');
  const j = decodeImage(jpeg.encode({ data: hwc(img, 4), width: 20, height: 16 }, 100).data);
  const orig = img.contiguous().toTypedArray() as Uint8Array;
  const maxErr = Math.max(...Array.from(j.pixels, (v, i) => Math.abs(v - orig[i]!)));
  assert.ok(maxErr <= 8, `JPEG q100 round trip within 8 levels (got ${maxErr})`);
  assert.throws(() => decodeImage(new Uint8Array([1, 2, 3]), 'x.png'), /x\.png: not a PNG or JPEG/);
  mkdirSync(join(tmp.dir, 'b'));
  for (const f of ['b/2.png', 'a.jpg', '10.png', 'notes.txt', 'b/1.JPEG']) writeFileSync(join(tmp.dir, f), '');
  assert.deepEqual(
    listImages(tmp.dir).map((p) => p.slice(tmp.dir.length + 1)),
    ['10.png', 'a.jpg', 'b/1.JPEG', 'b/2.png'],
  );
});

test('fidLabel: FID-50K at 50k samples, "FID-N proxy" below', () => {
  assert.equal(fidLabel(50_000), 'FID-50K');
  assert.equal(fidLabel(10_000), 'FID-10000 proxy');
  assert.equal(fidLabel(5), 'FID-5 proxy');
});

test('runEval: folder and .npz samples against a cached dataset reference and an .npz reference', async () => {
  using tmp = tempDir();
  const refImgs = images(2, 5, 32, 32);
  const smpImgs = images(3, 5, 32, 32);
  const folder = join(tmp.dir, 'samples');
  mkdirSync(folder);
  for (let i = 0; i < 5; i++) writePng(join(folder, `${i}.png`), smpImgs.select(0, i));
  const npz = join(tmp.dir, 'samples.npz');
  saveSamplesNpz(npz, smpImgs.permute(0, 2, 3, 1).contiguous());
  const cacheDir = join(tmp.dir, 'cache');
  const source = new MemorySource(refImgs, 32, 32);

  const a = await runEval({
    samples: folder,
    refDataset: { source, name: 'tiny', cacheDir },
    kid: true,
    batchSize: 5,
  });
  assert.equal(a.label, 'FID-5 proxy');
  assert.equal(a.proxy, true);
  assert.equal(a.numSamples, 5);
  assert.equal(a.numReference, 5);
  assert.equal(a.preprocess, 'clean-fid');
  assert.ok(Number.isFinite(a.fid) && a.fid > 0, `fid ${a.fid}`);
  assert.ok(a.precision !== null && a.recall !== null && a.precision >= 0 && a.precision <= 1);
  assert.ok(a.kid !== null && Number.isFinite(a.kid.mean));
  assert.match(formatEvalResult(a), /^FID-5 proxy: \d+\.\d{3} \| precision/);
  assert.match(JSON.stringify(a), /"label":"FID-5 proxy","proxy":true/);
  const cachePath = join(cacheDir, 'tiny-5-32x32-clean-fid.npz');
  assert.ok(existsSync(cachePath), 'reference statistics cached');
  assert.equal(source.gets, 5);

  // The cache is reused (no image read, no forward), and the statistics agree.
  using net = new InceptionFeatures({ preprocess: 'clean-fid' });
  const again = await referenceStats(source, net, { name: 'tiny', cacheDir });
  assert.equal(again.fromCache, true);
  assert.equal(source.gets, 5);
  assert.equal(again.features?.shape[0], 5);

  // Same samples from an .npz (lossless, same pixels) against the cached file as an .npz reference:
  // same FID; the reference's recorded preprocessing is used.
  const b = await runEval({ samples: npz, ref: cachePath, batchSize: 5, numSamples: 5 });
  assert.equal(b.preprocess, 'clean-fid');
  assert.ok(Math.abs(b.fid - a.fid) <= 1e-9 * a.fid, `${b.fid} vs ${a.fid}`);
  assert.equal(b.precision, a.precision);
  assert.equal(b.recall, a.recall);
  assert.equal(b.kid, null);
  const st = loadStats(cachePath);
  assert.deepEqual(st.meta?.numImages, 5);

  await assert.rejects(runEval({ samples: join(tmp.dir, 'none'), ref: cachePath }), /samples '.*none' do not exist/);
  await assert.rejects(runEval({ samples: npz }), /give exactly one reference/);
});
