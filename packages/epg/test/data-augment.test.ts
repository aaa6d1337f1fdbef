// Normalisation (spec §1 numbers) and the batched augmentations: each op
// against torchvision.transforms.functional on the same images and
// parameters (per sample), then the random parts statistically: flip,
// grayscale, solarize, blur and jitter frequencies, RandomResizedCrop's
// area and aspect distributions against torchvision's get_params, label
// dropout; and determinism. Also saveImageGrid against torchvision's make_grid.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import * as torch from '@epg/torch';
import { testing, type Tensor } from '@epg/torch';

import {
  NORMALIZATIONS,
  VIEW1,
  adjustBrightness,
  adjustContrast,
  adjustHue,
  adjustSaturation,
  augmentView,
  blurKernelSize,
  clampRange,
  colorJitter,
  decodeImage,
  denormalize,
  finetuneBatch,
  gaussianBlur,
  hflip,
  makeImageGrid,
  normalize,
  pretrainViews,
  randomGrayscale,
  resizedCrop,
  saveImageGrid,
  sampleColorJitter,
  sampleResizedCrop,
  solarize,
  type ViewRecipe,
} from '../src/data/index.js';
import { b64, ref, tempDir, unb64, unb64f32 } from './data-ref.js';

const B = 4;
const H = 9;
const W = 11;

/** Deterministic float32 images in [0, 1]. */
function images(c: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: B * c * H * W }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return Math.fround(s / 2 ** 32);
  });
}

const rgb = images(3, 1);
const gray = images(1, 2);
const f32 = (v: number[]): number[] => v.map(Math.fround);
const bools = (v: boolean[]): Tensor => torch.tensor(v);
const floats = (v: number[]): Tensor => torch.tensor(v);

interface TvCase {
  name: string;
  x: Float32Array;
  c: number;
  fn: string;
  params: Record<string, unknown>;
  kernel?: number;
  ours: (x: Tensor) => Tensor;
  atol?: number;
}

const factors = {
  brightness: f32([0.6, 1.0, 1.25, 1.4]),
  contrast: f32([0.6, 0.9, 1.2, 1.4]),
  saturation: f32([0, 0.8, 1.2, 2]),
  hue: f32([-0.1, 0.03, 0.1, -0.45]),
  sigma: f32([0.1, 0.7, 1.3, 2.0]),
};
const mask = [true, false, true, true];
const boxes = { top: [0, 2, 1, 3], left: [0, 3, 0, 5], height: [9, 5, 8, 6], width: [11, 4, 6, 6] };
const orders = [
  [0, 1, 2, 3],
  [3, 2, 1, 0],
  [1, 3, 0, 2],
  [2, 0, 3, 1],
];

const tvCases: TvCase[] = [
  {
    name: 'adjust_brightness',
    x: rgb,
    c: 3,
    fn: 'brightness',
    params: { factor: factors.brightness },
    ours: (x) => adjustBrightness(x, floats(factors.brightness)),
  },
  {
    name: 'adjust_contrast',
    x: rgb,
    c: 3,
    fn: 'contrast',
    params: { factor: factors.contrast },
    ours: (x) => adjustContrast(x, floats(factors.contrast)),
  },
  {
    name: 'adjust_contrast (1 channel)',
    x: gray,
    c: 1,
    fn: 'contrast',
    params: { factor: factors.contrast },
    ours: (x) => adjustContrast(x, floats(factors.contrast)),
  },
  {
    name: 'adjust_saturation',
    x: rgb,
    c: 3,
    fn: 'saturation',
    params: { factor: factors.saturation },
    ours: (x) => adjustSaturation(x, floats(factors.saturation)),
  },
  {
    name: 'adjust_hue',
    x: rgb,
    c: 3,
    fn: 'hue',
    params: { factor: factors.hue },
    ours: (x) => adjustHue(x, floats(factors.hue)),
  },
  {
    name: 'rgb_to_grayscale (masked)',
    x: rgb,
    c: 3,
    fn: 'grayscale',
    params: { apply: mask },
    ours: (x) => randomGrayscale(x, bools(mask)),
  },
  {
    name: 'solarize (masked)',
    x: rgb,
    c: 3,
    fn: 'solarize',
    params: { apply: mask },
    ours: (x) => solarize(x, bools(mask)),
  },
  { name: 'hflip (masked)', x: rgb, c: 3, fn: 'hflip', params: { apply: mask }, ours: (x) => hflip(x, bools(mask)) },
  {
    name: 'gaussian_blur k3',
    x: rgb,
    c: 3,
    fn: 'blur',
    kernel: 3,
    params: { sigma: factors.sigma, apply: mask },
    ours: (x) => gaussianBlur(x, floats(factors.sigma), 3, bools(mask)),
  },
  {
    name: 'gaussian_blur k5 (1 channel)',
    x: gray,
    c: 1,
    fn: 'blur',
    kernel: 5,
    params: { sigma: factors.sigma, apply: [true, true, true, true] },
    ours: (x) => gaussianBlur(x, floats(factors.sigma), 5),
  },
  {
    name: 'resized_crop (bilinear, antialias)',
    x: rgb,
    c: 3,
    fn: 'resized_crop',
    params: boxes,
    ours: (x) =>
      resizedCrop(x, {
        top: floats(boxes.top),
        left: floats(boxes.left),
        height: floats(boxes.height),
        width: floats(boxes.width),
      }),
  },
  {
    name: 'ColorJitter with per-sample order',
    x: rgb,
    c: 3,
    fn: 'jitter',
    params: {
      order: orders,
      b: factors.brightness,
      c: factors.contrast,
      s: f32([0.8, 1.2, 0.9, 1.1]),
      h: factors.hue,
      apply: mask,
    },
    ours: (x) =>
      colorJitter(x, {
        brightness: floats(factors.brightness),
        contrast: floats(factors.contrast),
        saturation: floats(f32([0.8, 1.2, 0.9, 1.1])),
        hue: floats(factors.hue),
        order: torch.tensor(orders, { dtype: 'int64' }),
        apply: bools(mask),
        batchOrder: null,
      }),
  },
];

const RRC_DRAWS = 4000;
const gridLayouts = [
  [5, 3, 2],
  [3, 1, 8],
] as const;
const gridInputs = gridLayouts.map(([n, c]) => {
  const shape = [n, c, 6, 5];
  const count = shape.reduce((a, b) => a * b, 1);
  return { shape, px: Uint8Array.from({ length: count }, (_, i) => (i * 13) % 251) };
});
let tv: string[] = [];
let rrcTv: number[][] = [];
let grids: string[] = [];
let tmp: { dir: string; cleanup: () => void };

// One Python process (torch and torchvision load once) for every reference.
before(() => {
  tmp = tempDir();
  const results = ref([
    ...tvCases.map((c) => ({
      op: 'tv',
      fn: c.fn,
      x: b64(c.x),
      shape: [B, c.c, H, W],
      params: c.params,
      kernel: c.kernel,
    })),
    { op: 'rrc_params', seed: 0, h: 32, w: 32, n: RRC_DRAWS },
    ...gridLayouts.map(([, , nrow], k) => ({
      op: 'make_grid',
      x: b64(gridInputs[k]!.px),
      shape: gridInputs[k]!.shape,
      nrow,
      padding: 2,
    })),
  ]);
  tv = results.slice(0, tvCases.length) as string[];
  rrcTv = results[tvCases.length] as number[][];
  grids = results.slice(tvCases.length + 1) as string[];
});
after(() => tmp.cleanup());

describe('normalisation (spec §1)', () => {
  test('presets and the valid ranges of normalised data', () => {
    const r = clampRange('imagenet');
    const round3 = (v: number[]): number[] => v.map((x) => Math.round(x * 1000) / 1000);
    assert.deepEqual(round3(r.min), [-1.059, -1.018, -0.902]);
    assert.deepEqual(round3(r.max), [1.124, 1.214, 1.32]);
    assert.deepEqual(clampRange('simple'), { min: [-1, -1, -1], max: [1, 1, 1] });
    assert.deepEqual(clampRange('gray'), { min: [-1], max: [1] });
    assert.deepEqual(clampRange('gray', 3), { min: [-1, -1, -1], max: [1, 1, 1] });
    assert.deepEqual(
      NORMALIZATIONS.imagenet.std.map((s) => Math.round(2 * s * 1000) / 1000),
      [0.458, 0.448, 0.45],
    );
  });
  test('normalize: (img/255 − mean)/(2·std); denormalize inverts it on every uint8 value', () => {
    torch.tidy(() => {
      const all = torch.arange(0, 256, 1, { dtype: 'int64' }).to('uint8');
      for (const [name, c] of [
        ['imagenet', 3],
        ['simple', 3],
        ['gray', 1],
      ] as const) {
        const imgs = all.view(1, 1, 16, 16).expand(2, c, 16, 16).contiguous();
        const x = normalize(imgs, name);
        assert.equal(x.dtype, 'float32');
        const r = clampRange(name, c);
        const want = Float32Array.from({ length: 2 * c * 256 }, (_, i) => {
          const ch = Math.floor(i / 256) % c;
          const v = i % 256;
          return (v / 255 - NORMALIZATIONS[name].mean[ch]!) / (2 * NORMALIZATIONS[name].std[ch]!);
        });
        testing.assertClose(x.toTypedArray() as Float32Array, want, 0, 2e-6, `normalize ${name}`);
        assert.ok(Math.abs((x.min() as Tensor).item() - Math.min(...r.min)) < 1e-6);
        assert.ok(denormalize(x, name).equal(imgs), `denormalize(normalize(x)) = x for ${name}`);
      }
      // save_image rounding and clamping
      const out = denormalize(torch.tensor([[[[-2, -1, 0, 0.999, 1.003, 5]]]]), 'gray');
      assert.deepEqual(Array.from(out.toTypedArray() as Uint8Array), [0, 0, 128, 255, 255, 255]);
    });
    assert.throws(
      () => torch.tidy(() => normalize(torch.zeros([1, 1, 2, 2], { dtype: 'uint8' }), 'imagenet')),
      /3 mean values for 1-channel images/,
    );
  });
});

describe('augmentations against torchvision.transforms.functional', () => {
  for (const [k, c] of tvCases.entries())
    test(c.name, () => {
      torch.tidy(() => {
        const x = torch.fromTypedArray(c.x, [B, c.c, H, W]);
        const y = c.ours(x);
        assert.deepEqual(y.shape, [B, c.c, H, W]);
        testing.assertClose(y.toTypedArray() as Float32Array, unb64f32(tv[k]!), 0, c.atol ?? 1e-5, c.name);
      });
    });
  test('ColorJitter: the accelerator path (all samples, then select) equals the CPU subset path', () => {
    torch.tidy(() => {
      const g = new torch.Generator('cpu', 21);
      const x = torch.rand([64, 3, 6, 7], { generator: g });
      for (const perBatch of [false, true]) {
        const f = sampleColorJitter(torch.rand([64, 9], { generator: g, dtype: 'float64' }), VIEW1.jitter, perBatch);
        const a = colorJitter(x, f, { subsets: true });
        const b = colorJitter(x, f, { subsets: false });
        testing.assertClose(
          a.toTypedArray() as Float32Array,
          b.toTypedArray() as Float32Array,
          0,
          1e-6,
          'jitter paths',
        );
        assert.ok(a.sub(x).abs().amax([1, 2, 3]).gt(0).sum().item() > 40, 'most samples changed');
      }
    });
  });
  test('1-channel images: saturation, hue and grayscale are no-ops', () => {
    torch.tidy(() => {
      const x = torch.fromTypedArray(gray, [B, 1, H, W]);
      assert.ok(adjustSaturation(x, floats([0, 0, 2, 2])).equal(x));
      assert.ok(adjustHue(x, floats([0.3, 0.3, 0.3, 0.3])).equal(x));
      assert.ok(randomGrayscale(x, bools([true, true, true, true])).equal(x));
    });
  });
});

/** A fraction and its binomial 5-sigma band. */
function assertRate(hits: number, n: number, p: number, what: string): void {
  const sd = Math.sqrt((p * (1 - p)) / n);
  assert.ok(
    Math.abs(hits / n - p) <= 5 * sd + 1e-12,
    `${what}: ${hits}/${n} = ${(hits / n).toFixed(4)}, expected ${p}`,
  );
}

const none: ViewRecipe = {
  crop: { scale: [1, 1], ratio: [1, 1] },
  jitter: { brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1, p: 0 },
  grayscaleP: 0,
  blurP: 0,
  blurSigma: [0.1, 2],
  solarizeP: 0,
  flipP: 0,
};

describe('augmentations: the random parts', () => {
  const N = 1000;
  test('pretrainViews: shapes, normalised range, flips of x (p 0.5), grayscale of xAug (p 0.2)', () => {
    torch.tidy(() => {
      const g = new torch.Generator('cpu', 7);
      // A colour image whose left and right halves differ: a flip shows.
      const base = torch.zeros([1, 3, 8, 8], { dtype: 'uint8' });
      base.index(':', 0, ':', torch.slice(0, 4)).fill_(200);
      base.index(':', 1, ':', torch.slice(4, 8)).fill_(120);
      base.index(':', 2).fill_(30);
      const imgs = base.expand(N, 3, 8, 8).contiguous();
      const { x, xAug, xAug2 } = pretrainViews(imgs, { generator: g, norm: 'imagenet' });
      for (const v of [x, xAug, xAug2]) {
        assert.deepEqual(v.shape, [N, 3, 8, 8]);
        assert.equal(v.dtype, 'float32');
      }
      const r = clampRange('imagenet');
      for (const v of [xAug, xAug2])
        for (let ch = 0; ch < 3; ch++) {
          const p = v.select(1, ch);
          assert.ok((p.min() as Tensor).item() >= r.min[ch]! - 1e-5 && (p.max() as Tensor).item() <= r.max[ch]! + 1e-5);
        }
      const norm = normalize(base, 'imagenet');
      const flipped = x
        .sub(norm.flip([3]))
        .abs()
        .amax([1, 2, 3])
        .lt(1e-6);
      const same = x.sub(norm).abs().amax([1, 2, 3]).lt(1e-6);
      assert.equal(flipped.logicalOr(same).all().item(), 1, 'x is the image or its mirror');
      assertRate(flipped.sum().item(), N, 0.5, 'x flips');
      const unit = xAug
        .mul(torch.tensor([0.458, 0.448, 0.45]).view(1, 3, 1, 1))
        .add(torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1));
      const isGray = unit.amax(1).sub(unit.amin(1)).amax([1, 2]).lt(1e-5);
      assertRate(isGray.sum().item(), N, 0.2, 'xAug grayscale');
    });
  });

  test('solarize p 0.2, blur p 0.1, jitter p 0.8, flip p 0.5 (each alone)', () => {
    torch.tidy(() => {
      const g = new torch.Generator('cpu', 11);
      const img = torch.full([N, 3, 8, 8], 0.8);
      // a bright spot: blur spreads it
      const spot = img.clone();
      spot.index(':', ':', 4, 4).fill_(0.1);
      const u = (): Tensor => torch.rand([N, 36], { generator: g, dtype: 'float64' });
      const sol = augmentView(img, u(), { ...none, solarizeP: 0.2 });
      assertRate(sol.mean([1, 2, 3]).lt(0.5).sum().item(), N, 0.2, 'solarize');
      const blur = augmentView(spot, u(), { ...none, blurP: 0.1 });
      assertRate(blur.sub(spot).abs().amax([1, 2, 3]).gt(1e-4).sum().item(), N, 0.1, 'blur');
      const jit = augmentView(img, u(), { ...none, jitter: { ...VIEW1.jitter, p: 0.8 } });
      assertRate(jit.sub(img).abs().amax([1, 2, 3]).gt(1e-6).sum().item(), N, 0.8, 'jitter applied');
      const asym = spot.clone();
      asym.index(':', ':', ':', 0).fill_(0);
      const fl = augmentView(asym, u(), { ...none, flipP: 0.5 });
      assertRate(
        fl
          .sub(asym.flip([3]))
          .abs()
          .amax([1, 2, 3])
          .lt(1e-5)
          .sum()
          .item(),
        N,
        0.5,
        'flip',
      );
    });
  });

  test('ColorJitter: factors in range, the 24 orders equally likely per sample', () => {
    torch.tidy(() => {
      const g = new torch.Generator('cpu', 5);
      const n = 24000;
      const f = sampleColorJitter(torch.rand([n, 9], { generator: g, dtype: 'float64' }), VIEW1.jitter);
      const range = (t: Tensor): [number, number] => [(t.min() as Tensor).item(), (t.max() as Tensor).item()];
      const [b0, b1] = range(f.brightness);
      assert.ok(b0 >= 0.6 && b1 <= 1.4 && b0 < 0.61 && b1 > 1.39);
      const [s0, s1] = range(f.saturation);
      assert.ok(s0 >= 0.8 && s1 <= 1.2);
      const [h0, h1] = range(f.hue);
      assert.ok(h0 >= -0.1 && h1 <= 0.1 && h0 < -0.09);
      const codes = f.order
        .select(1, 0)
        .mul(64)
        .add(f.order.select(1, 1).mul(16))
        .add(f.order.select(1, 2).mul(4))
        .add(f.order.select(1, 3));
      const counts = new Map<number, number>();
      for (const c of codes.toTypedArray() as BigInt64Array) counts.set(Number(c), (counts.get(Number(c)) ?? 0) + 1);
      assert.equal(counts.size, 24);
      for (const [code, k] of counts) assertRate(k, n, 1 / 24, `order ${code}`);
      assertRate(f.apply.sum().item(), n, 0.8, 'apply');
      const perBatch = sampleColorJitter(torch.rand([8, 9], { generator: g, dtype: 'float64' }), VIEW1.jitter, true);
      assert.equal(new Set(perBatch.batchOrder).size, 4);
    });
  });

  test('RandomResizedCrop: area fraction in [0.08, 1] and aspect ratio in [3/4, 4/3], distributed as torchvision', () => {
    const ours = torch.tidy(() => {
      const g = new torch.Generator('cpu', 3);
      const b = sampleResizedCrop(torch.rand([RRC_DRAWS, 22], { generator: g, dtype: 'float64' }), 32, 32, VIEW1.crop);
      const get = (t: Tensor): number[] => Array.from(t.toTypedArray() as Float64Array);
      return { top: get(b.top), left: get(b.left), h: get(b.height), w: get(b.width) };
    });
    const area = (h: number, w: number): number => (h * w) / (32 * 32);
    const a1 = ours.h.map((h, i) => area(h, ours.w[i]!)).sort((x, y) => x - y);
    const a2 = rrcTv.map(([, , h, w]) => area(h!, w!)).sort((x, y) => x - y);
    for (let i = 0; i < RRC_DRAWS; i++) {
      assert.ok(
        ours.top[i]! >= 0 && ours.top[i]! + ours.h[i]! <= 32 && ours.left[i]! >= 0 && ours.left[i]! + ours.w[i]! <= 32,
      );
      const r = ours.w[i]! / ours.h[i]!;
      assert.ok(r > 0.6 && r < 1.7, `aspect ${r}`);
    }
    // Rounding to whole pixels lets the area fall slightly below 0.08.
    assert.ok(a1[0]! >= 0.07 && a1[RRC_DRAWS - 1]! <= 1);
    // Two-sample Kolmogorov–Smirnov distance between our areas and torchvision's.
    let ks = 0;
    for (const q of a1.concat(a2)) {
      const cdf = (a: number[]): number => {
        let lo = 0;
        let hi = a.length;
        while (lo < hi) {
          const m = (lo + hi) >> 1;
          if (a[m]! <= q) lo = m + 1;
          else hi = m;
        }
        return lo / a.length;
      };
      ks = Math.max(ks, Math.abs(cdf(a1) - cdf(a2)));
    }
    // The 0.1% critical value for n = m = 4000 is 1.95·√(2/4000) ≈ 0.044.
    assert.ok(ks < 0.044, `KS distance ${ks.toFixed(4)}`);
    const mean = (a: number[]): number => a.reduce((s, v) => s + v, 0) / a.length;
    assert.ok(Math.abs(mean(a1) - mean(a2)) < 0.02, `mean area ${mean(a1)} vs torchvision ${mean(a2)}`);
  });

  test('finetuneBatch: flips (p 0.5) and label dropout to the null class', () => {
    torch.tidy(() => {
      const g = new torch.Generator('cpu', 9);
      const imgs = torch.zeros([N, 1, 4, 4], { dtype: 'uint8' });
      imgs.index(':', ':', ':', 0).fill_(255);
      const labels = torch.arange(0, N, 1, { dtype: 'int64' }).remainder(10);
      const { x, y } = finetuneBatch(imgs, labels, { generator: g, norm: 'gray', labelDropout: 0.1, nullClass: 10 });
      assert.deepEqual(x.shape, [N, 1, 4, 4]);
      assertRate(x.select(3, 3).select(2, 0).select(1, 0).gt(0).sum().item(), N, 0.5, 'flips');
      const dropped = y.eq(10);
      assertRate(dropped.sum().item(), N, 0.1, 'label dropout');
      assert.ok(torch.where(dropped, labels, y).equal(labels), 'kept labels are unchanged');
      const none0 = finetuneBatch(imgs, labels, { generator: g, norm: 'gray', labelDropout: 0, nullClass: 10 });
      assert.ok(none0.y.equal(labels));
    });
  });

  test('determinism: the same generator state gives the same views; a sample does not depend on the batch size', () => {
    torch.tidy(() => {
      const imgs = torch.randint(0, 256, [6, 3, 12, 12], { dtype: 'uint8', generator: new torch.Generator('cpu', 1) });
      const run = (n: number): { x: Tensor; xAug: Tensor; xAug2: Tensor } =>
        pretrainViews(imgs.narrow(0, 0, n), { generator: new torch.Generator('cpu', 42), norm: 'imagenet' });
      const a = run(6);
      const b = run(6);
      const c = run(3);
      for (const k of ['x', 'xAug', 'xAug2'] as const) {
        assert.ok(a[k].equal(b[k]), `${k} repeats`);
        assert.ok(a[k].narrow(0, 0, 3).equal(c[k]), `${k} of the first 3 samples with batch 3`);
      }
      assert.equal(blurKernelSize(256), 25);
      assert.equal(blurKernelSize(224), 23);
      assert.equal(blurKernelSize(32), 3);
      assert.equal(blurKernelSize(512), 51);
    });
  });
});

describe('saveImageGrid', () => {
  test('torchvision make_grid layout, written as PNG', () => {
    gridLayouts.forEach(([n, c, nrow], k) => {
      const images = torch.fromTypedArray(gridInputs[k]!.px, gridInputs[k]!.shape, { dtype: 'uint8' });
      const g = makeImageGrid(images, nrow, 2);
      assert.deepEqual(g.pixels, unb64(grids[k]!), `grid of ${n}×${c}`);
      const path = join(tmp.dir, `grid-${n}.png`);
      saveImageGrid(path, images, nrow, 2);
      const back = decodeImage(readFileSync(path));
      assert.deepEqual(back.pixels, g.pixels);
      assert.equal(back.channels, c);
      images.dispose();
    });
    const f = torch.zeros([1, 3, 4, 4]);
    assert.throws(() => makeImageGrid(f), /expected uint8/);
    f.dispose();
  });
});
