// Image codecs against Python's PIL (test/ref/data_ref.py): PNG must decode
// exactly as PIL's convert('RGB' / 'L') in every colour type and bit depth
// (16-bit: the high byte); JPEG within the IDCT rounding of jpeg-js against
// libjpeg (chroma upsampling and colour conversion are libjpeg's). Corrupt
// and truncated files fail with errors that say what is wrong. (saveImageGrid
// is tested in data-augment.test.ts, which runs torchvision anyway.)
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  DataError,
  decodeImage,
  detectImageFormat,
  encodePng,
  hwcToChw,
  chwToHwc,
  readImageHeader,
  toChannels,
} from '../src/data/index.js';
import { maxAbsDiff, meanAbsDiff, ref, tempDir, unb64 } from './data-ref.js';

interface RefImage {
  pixels: string;
  channels: number;
}

let tmp: { dir: string; cleanup: () => void };
before(() => {
  tmp = tempDir();
});
after(() => tmp.cleanup());

const W = 37;
const H = 23;

describe('decodeImage: PNG, exactly as PIL', () => {
  const kinds: [string, Record<string, unknown>, number][] = [
    ['L', {}, 1],
    ['1', {}, 1],
    ['I;16', {}, 1],
    ['LA', {}, 1],
    ['RGB', {}, 3],
    ['RGB16', {}, 3],
    ['RGBA', {}, 3],
    ['P', {}, 3],
    ['P', { bits: 4, colors: 16 }, 3],
    ['P', { transparency: 3 }, 3],
    ['GRAY_TRNS', {}, 1],
    ['RGB_TRNS', {}, 3],
  ];
  test('every colour type and bit depth', () => {
    const cases = kinds.map(([kind, extra], k) => ({
      op: 'make_image',
      kind,
      h: H,
      w: W,
      seed: k,
      path: join(tmp.dir, `png-${k}.png`),
      ...extra,
    }));
    const results = ref(cases) as RefImage[];
    kinds.forEach(([kind, extra, channels], k) => {
      const what = `${kind} ${JSON.stringify(extra)}`;
      const img = decodeImage(readFileSync(cases[k]!.path), { name: what });
      assert.equal(img.channels, channels, `${what}: channels`);
      assert.equal(results[k]!.channels, channels, `${what}: PIL channels`);
      assert.equal(img.width, W);
      assert.equal(img.height, H);
      assert.deepEqual(img.pixels, unb64(results[k]!.pixels), `${what}: pixels`);
      const header = readImageHeader(readFileSync(cases[k]!.path));
      assert.deepEqual(header, { format: 'png', width: W, height: H, channels }, `${what}: header`);
    });
  });
});

describe('decodeImage: JPEG, against PIL (libjpeg-turbo)', () => {
  const kinds: [string, string, Record<string, unknown>][] = [
    ['gray', 'L', { quality: 90 }],
    ['4:4:4', 'RGB', { quality: 90, subsampling: 0 }],
    ['4:2:2', 'RGB', { quality: 90, subsampling: 1 }],
    ['4:2:0', 'RGB', { quality: 75, subsampling: 2 }],
    ['4:2:0 progressive', 'RGB', { quality: 85, subsampling: 2, progressive: true }],
  ];
  test('gray, 4:4:4, 4:2:2, 4:2:0, progressive: within IDCT rounding', () => {
    const cases = kinds.map(([, kind, save], k) => ({
      op: 'make_image',
      kind,
      h: H + 8,
      w: W + 12,
      seed: 10 + k,
      smooth: true,
      save,
      path: join(tmp.dir, `jpeg-${k}.jpg`),
    }));
    const results = ref(cases) as RefImage[];
    kinds.forEach(([what, kind], k) => {
      const img = decodeImage(readFileSync(cases[k]!.path), { name: what });
      assert.equal(img.channels, kind === 'L' ? 1 : 3, `${what}: channels`);
      assert.equal(img.width, W + 12);
      assert.equal(img.height, H + 8);
      const want = unb64(results[k]!.pixels);
      // jpeg-js's IDCT (poppler) rounds differently from libjpeg's ISLOW.
      const max = maxAbsDiff(img.pixels, want);
      const mean = meanAbsDiff(img.pixels, want);
      assert.ok(max <= 4 && mean <= 0.5, `${what}: max |diff| ${max}, mean ${mean.toFixed(3)}`);
      const header = readImageHeader(readFileSync(cases[k]!.path));
      assert.deepEqual(header, { format: 'jpeg', width: W + 12, height: H + 8, channels: img.channels });
    });
  });
});

describe('decodeImage: channels option', () => {
  test('gray -> RGB replicates; RGB -> gray is PIL convert("L")', () => {
    const path = join(tmp.dir, 'conv.png');
    const [rgb] = ref([{ op: 'make_image', kind: 'RGB', h: 9, w: 11, seed: 3, path }]) as [RefImage];
    const [gray] = ref([{ op: 'decode', paths: [path], channels: 1 }]) as [RefImage[]];
    const bytes = readFileSync(path);
    assert.deepEqual(decodeImage(bytes, { channels: 1 }).pixels, unb64(gray[0]!.pixels));
    const g = decodeImage(bytes, { channels: 1 });
    const back = toChannels(g, 3);
    assert.equal(back.channels, 3);
    for (let i = 0; i < 9 * 11; i++) assert.equal(back.pixels[3 * i + 2], g.pixels[i]);
    assert.deepEqual(decodeImage(bytes).pixels, unb64(rgb.pixels));
  });
});

describe('decodeImage: corrupt input is rejected with a clear error', () => {
  let png: Uint8Array;
  let jpg: Uint8Array;
  before(() => {
    const p = join(tmp.dir, 'ok.png');
    const j = join(tmp.dir, 'ok.jpg');
    ref([
      { op: 'make_image', kind: 'RGB', h: 30, w: 40, seed: 5, path: p },
      { op: 'make_image', kind: 'RGB', h: 30, w: 40, seed: 5, smooth: true, path: j },
    ]);
    png = readFileSync(p);
    jpg = readFileSync(j);
  });
  const rejects = (bytes: Uint8Array, pattern: RegExp): void => {
    assert.throws(
      () => decodeImage(bytes, { name: 'f.img' }),
      (e: unknown) => e instanceof DataError && /^f\.img: /.test(e.message) && pattern.test(e.message),
    );
  };
  test('empty and unknown formats', () => {
    rejects(new Uint8Array(0), /empty file/);
    rejects(new TextEncoder().encode('GIF89a........'), /not a PNG or JPEG image \(it starts with bytes 47 49 46 38/);
    assert.equal(detectImageFormat(new Uint8Array([1, 2, 3])), null);
  });
  test('truncated PNG', () => {
    rejects(png.subarray(0, 20), /truncated PNG/);
    rejects(png.subarray(0, Math.floor(png.length / 2)), /corrupt or truncated PNG/);
    rejects(png.subarray(0, png.length - 12), /corrupt or truncated PNG/);
  });
  test('PNG with a damaged chunk (CRC)', () => {
    const bad = png.slice();
    bad[60] = bad[60]! ^ 0xff;
    rejects(bad, /corrupt or truncated PNG/);
  });
  test('PNG with a bad header', () => {
    const bad = png.slice();
    bad[25] = 5; // colour type 5 does not exist
    rejects(bad, /unknown colour type 5/);
  });
  test('truncated JPEG', () => {
    for (const n of [jpg.length - 2, Math.floor(jpg.length * 0.6), 200, 10])
      rejects(jpg.subarray(0, n), /truncated JPEG/);
  });
  test('corrupt JPEG', () => {
    const bad = jpg.slice();
    const sos = bad.findIndex((b, i) => b === 0xff && bad[i + 1] === 0xda);
    bad[sos + 1] = 0x02; // no such marker
    rejects(bad, /corrupt JPEG \(unknown JPEG marker/);
  });
});

describe('encodePng', () => {
  test('round trip through our decoder and PIL, gray and RGB', () => {
    for (const c of [1, 3, 4]) {
      const w = 13;
      const h = 7;
      const px = Uint8Array.from({ length: w * h * c }, (_, i) => (i * 37 + 11) % 256);
      const path = join(tmp.dir, `enc-${c}.png`);
      writeFileSync(path, encodePng(px, w, h, c));
      const [r] = ref([{ op: 'read_png', path }]) as [{ mode: string; size: number[]; pixels: string }];
      assert.equal(r.mode, { 1: 'L', 3: 'RGB', 4: 'RGBA' }[c]);
      assert.deepEqual(r.size, [w, h]);
      assert.deepEqual(unb64(r.pixels), px);
      if (c !== 4) assert.deepEqual(decodeImage(readFileSync(path)).pixels, px);
    }
    assert.throws(() => encodePng(new Uint8Array(5), 2, 2, 1), /5 bytes for a 2×2×1 image/);
    assert.throws(() => encodePng(new Uint8Array(8), 2, 2, 2), /channels must be 1, 3 or 4/);
  });
});

describe('hwcToChw / chwToHwc', () => {
  test('are inverse permutations', () => {
    const hwc = Uint8Array.from({ length: 2 * 3 * 3 }, (_, i) => i);
    const chw = hwcToChw(hwc, 2, 3, 3);
    assert.deepEqual(Array.from(chw.subarray(0, 6)), [0, 3, 6, 9, 12, 15]);
    assert.deepEqual(chwToHwc(chw, 2, 3, 3), hwc);
  });
});
