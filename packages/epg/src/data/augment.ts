// Augmentations (spec §1), batched on the images' device: every sample draws
// its own parameters, but the pixels only ever pass through tensor ops.
// Each op follows torchvision.transforms.v1's tensor implementation
// (functional_tensor.py) on float images in [0, 1], with per-sample factors:
//   pre-training   x     = flip(p 0.5)                                      -> normalise
//                  xAug  = RandomResizedCrop(scale (0.08, 1), ratio (3/4, 4/3))
//                          -> ColorJitter(0.4, 0.4, 0.2, 0.1) with p 0.8
//                          -> RandomGrayscale(p 0.2) -> GaussianBlur(σ ~ U[0.1, 2], p 1.0)
//                          -> flip(p 0.5)                                  -> normalise
//                  xAug2 = the same with blur p 0.1, then Solarize(p 0.2) before the flip
//   fine-tuning    flip(p 0.5) -> normalise; label dropout to the null class.
// Where this differs from the official per-image PIL pipeline:
//   - Float throughout: no uint8 rounding between steps (PIL rounds after each).
//   - ColorJitter's random order of the four adjustments is drawn per sample
//     (as the per-image pipeline does; on an accelerator all four adjustments
//     then run at each of the four steps and are selected per sample, 4× the
//     work, without synchronising; on the CPU each runs on its samples only),
//     or once per batch ({ jitterOrder: 'per-batch' }: torchvision's order per
//     call, 4 adjustments; the order is read back, one sync per view).
//   - GaussianBlur is torchvision's (a kernel of about 10% of the image size,
//     rounded to odd, reflect padding), not the PIL GaussianBlur(radius=σ) that
//     the MoCo v3 / BYOL code (which this recipe comes from) uses, an
//     extended-box approximation without a kernel size.
//   - Solarize inverts values ≥ 0.5 (PIL ImageOps.solarize's threshold 128 is
//     ≥ 128/255 = 0.502 on uint8; here the images are float).
//   - The resized crop samples with bilinear weights through grid_sample,
//     clamped to the crop box: torchvision's bilinear interpolate (antialias
//     only matters when shrinking, and a crop is never shrunk here).
import * as torch from '@epg/torch';
import type { Device, Generator, Tensor } from '@epg/torch';

import { normalizeUnit, type Normalization, type NormalizationName } from './normalize.js';

/** A per-sample mask or factor tensor [B] broadcast against NCHW. */
function perSample(t: Tensor): Tensor {
  return t.view(-1, 1, 1, 1);
}

/** Horizontal flip of the samples where mask [B] (bool) is true. */
export function hflip(x: Tensor, mask: Tensor): Tensor {
  return torch.tidy(() => torch.where(perSample(mask), x.flip([3]), x));
}

/** torchvision's _blend: (ratio·a + (1 − ratio)·b) clamped to [0, 1]; ratio [B]. */
function blend(a: Tensor, b: Tensor | null, ratio: Tensor): Tensor {
  const r = perSample(ratio);
  const first = a.mul(r);
  return (b === null ? first : first.add(b.mul(r.rsub(1)))).clamp(0, 1);
}

/** rgb_to_grayscale: 0.2989 R + 0.587 G + 0.114 B, [B, 1, H, W] (a 1-channel input is returned as is). */
export function rgbToGrayscale(x: Tensor): Tensor {
  if (x.shape[1] === 1) return x.clone();
  return torch.tidy(() => {
    const [r, g, b] = x.unbind(1) as [Tensor, Tensor, Tensor];
    return r.mul(0.2989).add(g.mul(0.587)).add(b.mul(0.114)).unsqueeze(1);
  });
}

/** adjust_brightness with per-sample factors [B]. */
export function adjustBrightness(x: Tensor, factor: Tensor): Tensor {
  return torch.tidy(() => blend(x, null, factor));
}

/** adjust_contrast with per-sample factors [B]: blend with the mean of the grayscale image. */
export function adjustContrast(x: Tensor, factor: Tensor): Tensor {
  return torch.tidy(() => {
    const mean = rgbToGrayscale(x).mean([1, 2, 3], { keepdim: true });
    return blend(x, mean, factor);
  });
}

/** adjust_saturation with per-sample factors [B]: blend with the grayscale image (1 channel: no-op). */
export function adjustSaturation(x: Tensor, factor: Tensor): Tensor {
  if (x.shape[1] === 1) return x.clone();
  return torch.tidy(() => blend(x, rgbToGrayscale(x), factor));
}

/** torchvision's _rgb2hsv: [B, 3, H, W] -> h, s, v. */
function rgbToHsv(x: Tensor): [Tensor, Tensor, Tensor] {
  const [r, g, b] = x.unbind(1) as [Tensor, Tensor, Tensor];
  const maxc = x.amax(1);
  const minc = x.amin(1);
  const eqc = maxc.eq(minc);
  const cr = maxc.sub(minc);
  const ones = torch.onesLike(maxc);
  const s = cr.div(torch.where(eqc, ones, maxc));
  const crDivisor = torch.where(eqc, ones, cr);
  const rc = maxc.sub(r).div(crDivisor);
  const gc = maxc.sub(g).div(crDivisor);
  const bc = maxc.sub(b).div(crDivisor);
  const isR = maxc.eq(r);
  const isG = maxc.eq(g);
  const hr = isR.float().mul(bc.sub(gc));
  const hg = isG.logicalAnd(isR.logicalNot()).float().mul(rc.add(2).sub(bc));
  const hb = isG.logicalNot().logicalAnd(isR.logicalNot()).float().mul(gc.add(4).sub(rc));
  const h = hr.add(hg).add(hb).div(6).add(1).fmod(1);
  return [h, s, maxc];
}

/** torchvision's _hsv2rgb: h, s, v [B, H, W] -> [B, 3, H, W]. */
function hsvToRgb(h: Tensor, s: Tensor, v: Tensor): Tensor {
  const h6 = h.mul(6);
  const iF = h6.floor();
  const f = h6.sub(iF);
  const i = iF.to('int64').remainder(6);
  const p = v.mul(s.rsub(1)).clamp(0, 1);
  const q = v.mul(s.mul(f).rsub(1)).clamp(0, 1);
  const t = v.mul(s.mul(f.rsub(1)).rsub(1)).clamp(0, 1);
  // torchvision stacks the six candidates per channel and selects with a one-hot
  // einsum; selecting with where picks the same elements.
  const e = [0, 1, 2, 3, 4, 5].map((k) => i.eq(k));
  const pick = (c: readonly Tensor[]): Tensor =>
    c.slice(1).reduce((acc, cand, k) => torch.where(e[k + 1]!, cand, acc), c[0]!);
  return torch.stack([pick([v, q, p, p, t, v]), pick([t, v, v, q, p, p]), pick([p, p, t, v, v, q])], 1);
}

/** adjust_hue with per-sample shifts [B] in [−0.5, 0.5] (1 channel: no-op). */
export function adjustHue(x: Tensor, factor: Tensor): Tensor {
  if (x.shape[1] === 1) return x.clone();
  return torch.tidy(() => {
    const [h, s, v] = rgbToHsv(x);
    const shifted = h.add(factor.view(-1, 1, 1)).remainder(1);
    return hsvToRgb(shifted, s, v);
  });
}

/** Grayscale (replicated to the input's channels) where mask [B] is true. */
export function randomGrayscale(x: Tensor, mask: Tensor): Tensor {
  if (x.shape[1] === 1) return x.clone();
  return torch.tidy(() => torch.where(perSample(mask), rgbToGrayscale(x).expandAs(x), x));
}

/** Solarize where mask [B]: values ≥ threshold become 1 − value. */
export function solarize(x: Tensor, mask: Tensor, threshold = 0.5): Tensor {
  return torch.tidy(() => torch.where(perSample(mask).logicalAnd(x.ge(threshold)), x.rsub(1), x));
}

/** GaussianBlur's kernel size for an image side: about 10% of it, the nearest odd number, at least 3. */
export function blurKernelSize(side: number): number {
  return Math.max(3, 2 * Math.round((0.1 * side - 1) / 2) + 1);
}

/**
 * Gaussian blur with a per-sample σ [B] (torchvision's gaussian_blur:
 * linspace kernel, reflect padding), separable; where apply [B] is false
 * the kernel is a unit impulse, which leaves the sample exactly as it was.
 */
export function gaussianBlur(x: Tensor, sigma: Tensor, kernelSize: number, apply?: Tensor): Tensor {
  if (!Number.isInteger(kernelSize) || kernelSize < 1 || kernelSize % 2 === 0)
    throw new RangeError(`gaussianBlur: kernel size must be odd and positive, got ${kernelSize}`);
  const [B, C, H, W] = x.shape as [number, number, number, number];
  return torch.tidy(() => {
    const half = (kernelSize - 1) / 2;
    const pos = torch.linspace(-half, half, kernelSize, { device: x.device }).view(1, -1);
    const pdf = pos.div(sigma.float().view(-1, 1)).pow(2).mul(-0.5).exp();
    let k = pdf.div(pdf.sum(1, { keepdim: true })); // [B, k]
    if (apply !== undefined) {
      const impulse = torch.zeros([1, kernelSize], { device: x.device });
      impulse.index(0, half).fill_(1);
      k = torch.where(apply.view(-1, 1), k, impulse);
    }
    const kc = k.repeatInterleave(C, 0); // [B·C, k]
    const padded = torch.F.pad(x.reshape(1, B * C, H, W), [half, half, half, half], 'reflect');
    const v = torch.F.conv2d(padded, kc.view(B * C, 1, kernelSize, 1), null, { groups: B * C });
    const hz = torch.F.conv2d(v, kc.view(B * C, 1, 1, kernelSize), null, { groups: B * C });
    return hz.view(B, C, H, W);
  });
}

/** A crop box per sample, in pixels: [B] float tensors. */
export interface CropBoxes {
  top: Tensor;
  left: Tensor;
  height: Tensor;
  width: Tensor;
}

/**
 * Crops boxes out of x and resizes them to x's size (torchvision's
 * resized_crop with bilinear sampling), through affine_grid + grid_sample
 * with the sample positions clamped to each box, as interpolate clamps
 * to the cropped image's border.
 */
export function resizedCrop(x: Tensor, boxes: CropBoxes): Tensor {
  const [B, C, H, W] = x.shape as [number, number, number, number];
  return torch.tidy(() => {
    const f = (t: Tensor): Tensor => t.to('float32').view(-1);
    const top = f(boxes.top);
    const left = f(boxes.left);
    const h = f(boxes.height);
    const w = f(boxes.width);
    const zeros = torch.zeros([B], { device: x.device });
    // x_in = x_out·w/W + (2j + w)/W − 1 (normalised coordinates, align_corners false)
    const theta = torch
      .stack([w.div(W), zeros, left.mul(2).add(w).div(W).sub(1), zeros, h.div(H), top.mul(2).add(h).div(H).sub(1)], 1)
      .view(B, 2, 3);
    const grid = torch.aten.affine_grid_generator(theta, [B, C, H, W], false);
    // Clamp to the centres of the box's first and last pixels: (2p + 1)/W − 1.
    const lo = torch.stack([left.mul(2).add(1).div(W).sub(1), top.mul(2).add(1).div(H).sub(1)], 1).view(B, 1, 1, 2);
    const hi = torch
      .stack([left.add(w).mul(2).sub(1).div(W).sub(1), top.add(h).mul(2).sub(1).div(H).sub(1)], 1)
      .view(B, 1, 1, 2);
    const clamped = grid.clamp(lo, hi);
    // interpolation 0: bilinear; padding 1: border (never reached after the clamp)
    return torch.aten.grid_sampler(x.contiguous(), clamped, 0, 1, false);
  });
}

export interface ResizedCropParams {
  scale: readonly [number, number];
  ratio: readonly [number, number];
}

/** Uniform columns of the parameter draw that sampleResizedCrop consumes. */
export const RESIZED_CROP_DRAWS = 22;

/**
 * RandomResizedCrop.get_params for every sample from u [B, 22] uniforms:
 * 10 attempts of (area fraction ~ U(scale), log aspect ~ U(log ratio)),
 * w = round(√(area·ar)), h = round(√(area/ar)) (half to even, as Python),
 * the first attempt that fits; its position uniform over the valid ones;
 * torchvision's central-crop fallback when none fits. Float64 math.
 */
export function sampleResizedCrop(u: Tensor, H: number, W: number, p: ResizedCropParams): CropBoxes {
  return torch.tidy(() => {
    const u64 = u.to('float64');
    const B = u.shape[0]!;
    const area = H * W;
    const us = u64.narrow(1, 0, 10);
    const ur = u64.narrow(1, 10, 10);
    const lr0 = Math.log(p.ratio[0]);
    const lr1 = Math.log(p.ratio[1]);
    const target = us
      .mul(p.scale[1] - p.scale[0])
      .add(p.scale[0])
      .mul(area);
    const ar = ur
      .mul(lr1 - lr0)
      .add(lr0)
      .exp();
    const w = target.mul(ar).sqrt().round();
    const h = target.div(ar).sqrt().round();
    const ok = w.gt(0).logicalAnd(w.le(W)).logicalAnd(h.gt(0)).logicalAnd(h.le(H));
    // The first attempt that fits: argmax of ok·(10 − k).
    const rank = torch.arange(10, 0, -1, { device: u.device, dtype: 'float64' });
    const first = ok.to('float64').mul(rank).argmax(1, true);
    const any = ok.any(1);
    // Fallback (central crop with the ratio clamped), the same for every sample.
    const inRatio = W / H;
    let fw = W;
    let fh = H;
    if (inRatio < Math.min(...p.ratio)) fh = Math.round(fw / Math.min(...p.ratio));
    else if (inRatio > Math.max(...p.ratio)) fw = Math.round(fh * Math.max(...p.ratio));
    const pick = (t: Tensor, fallback: number): Tensor => torch.where(any, t.gather(1, first).view(B), fallback);
    const hh = pick(h, fh);
    const ww = pick(w, fw);
    const ui = u64.select(1, 20);
    const uj = u64.select(1, 21);
    const top = torch.where(any, ui.mul(hh.rsub(H + 1)).floor(), Math.floor((H - fh) / 2));
    const left = torch.where(any, uj.mul(ww.rsub(W + 1)).floor(), Math.floor((W - fw) / 2));
    return { top, left, height: hh, width: ww };
  }) as CropBoxes;
}

export interface ColorJitterParams {
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
  /** Probability of applying the jitter at all (RandomApply). */
  p: number;
}

/** Per-sample factors for ColorJitter's four adjustments (identity where not applied). */
export interface JitterFactors {
  brightness: Tensor;
  contrast: Tensor;
  saturation: Tensor;
  hue: Tensor;
  /** [B, 4]: the order of the adjustments (0 brightness, 1 contrast, 2 saturation, 3 hue). */
  order: Tensor;
  /** [B] bool: samples the jitter applies to. */
  apply: Tensor;
  /** One order for the whole batch (torchvision's per-call order), or null: per sample. */
  batchOrder: number[] | null;
}

/** Uniform columns of the parameter draw that sampleColorJitter consumes. */
export const COLOR_JITTER_DRAWS = 9;

/** ColorJitter.get_params for every sample from u [B, 9]: apply, 4 factors, 4 order keys. */
export function sampleColorJitter(u: Tensor, j: ColorJitterParams, perBatchOrder = false): JitterFactors {
  return torch.tidy(() => {
    const col = (k: number): Tensor => u.select(1, k).to('float32');
    const range = (v: number, k: number, center = 1): Tensor =>
      col(k)
        .mul(2 * v)
        .add(Math.max(center - v, 0));
    const apply = col(0).lt(j.p);
    const keys = u.narrow(1, 5, 4);
    const order = perBatchOrder ? keys.narrow(0, 0, 1).argsort(1).expand(u.shape[0]!, 4).contiguous() : keys.argsort(1);
    // The batch order is read back (4 numbers): one synchronisation per call on an accelerator.
    const batchOrder = perBatchOrder ? Array.from(order.select(0, 0).toTypedArray() as BigInt64Array, Number) : null;
    return {
      batchOrder,
      apply,
      brightness: range(j.brightness, 1),
      contrast: range(j.contrast, 2),
      saturation: range(j.saturation, 3),
      hue: col(4)
        .mul(2 * j.hue)
        .sub(j.hue),
      order,
    };
  }) as JitterFactors;
}

/**
 * y with op applied to the samples where sel [B] (bool) is true. On the CPU
 * only those samples are computed (index_select, op, index_copy: reading the
 * count costs nothing there); on an accelerator every sample is computed and
 * the result selected, which needs no synchronisation. Both give the same values.
 */
function onSamples(
  y: Tensor,
  sel: Tensor,
  op: (sub: Tensor, pick: (t: Tensor) => Tensor) => Tensor,
  subsets: boolean,
): Tensor {
  if (!subsets)
    return torch.where(
      perSample(sel),
      op(y, (t) => t),
      y,
    );
  const idx = torch.aten.nonzero(sel).view(-1);
  const n = idx.shape[0]!;
  if (n === 0) return y;
  if (n === y.shape[0]) return op(y, (t) => t);
  const sub = op(y.indexSelect(0, idx), (t) => t.indexSelect(0, idx));
  return torch.aten.index_copy(y, 0, idx, sub);
}

/**
 * ColorJitter with per-sample factors and order: at each of the four steps
 * every sample gets the adjustment its order names (or, with batchOrder, the
 * four adjustments run once in that order); samples with apply false are
 * left as they are. subsets (default: on the CPU) computes each adjustment
 * only on the samples it applies to; both ways give the same values.
 */
export function colorJitter(x: Tensor, f: JitterFactors, o: { subsets?: boolean } = {}): Tensor {
  const subsets = o.subsets ?? x.device === 'cpu';
  const adjust = [adjustBrightness, adjustContrast, adjustSaturation, adjustHue];
  const factors = [f.brightness, f.contrast, f.saturation, f.hue];
  const ops = x.shape[1] === 3 ? [0, 1, 2, 3] : [0, 1]; // saturation and hue need colour
  return torch.tidy(() => {
    let y = x;
    const run = (k: number, sel: Tensor): void => {
      y = onSamples(y, sel, (sub, pick) => adjust[k]!(sub, pick(factors[k]!)), subsets);
    };
    if (f.batchOrder !== null) {
      for (const k of f.batchOrder) if (ops.includes(k)) run(k, f.apply);
      return y;
    }
    for (let step = 0; step < 4; step++) {
      const op = f.order.select(1, step);
      for (const k of ops) run(k, op.eq(k).logicalAnd(f.apply));
    }
    return y;
  });
}

/** One SSL view's recipe (spec §1). */
export interface ViewRecipe {
  crop: ResizedCropParams;
  jitter: ColorJitterParams;
  grayscaleP: number;
  blurP: number;
  blurSigma: readonly [number, number];
  solarizeP: number;
  flipP: number;
}

/** x_aug: crop, jitter (p 0.8), grayscale (p 0.2), blur (p 1.0), flip. */
export const VIEW1: ViewRecipe = {
  crop: { scale: [0.08, 1], ratio: [3 / 4, 4 / 3] },
  jitter: { brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1, p: 0.8 },
  grayscaleP: 0.2,
  blurP: 1.0,
  blurSigma: [0.1, 2.0],
  solarizeP: 0,
  flipP: 0.5,
};

/** x_aug2: as VIEW1 with blur p 0.1 and solarize p 0.2. */
export const VIEW2: ViewRecipe = { ...VIEW1, blurP: 0.1, solarizeP: 0.2 };

/** Uniform columns one view consumes per sample. */
export const VIEW_DRAWS = RESIZED_CROP_DRAWS + COLOR_JITTER_DRAWS + 5;

/** One augmented view of [0, 1] images from u [B, VIEW_DRAWS] uniforms; [0, 1] out. */
export function augmentView(
  x: Tensor,
  u: Tensor,
  r: ViewRecipe,
  o: { kernelSize?: number; jitterOrder?: 'per-sample' | 'per-batch' } = {},
): Tensor {
  const [, , H, W] = x.shape as [number, number, number, number];
  return torch.tidy(() => {
    let c = RESIZED_CROP_DRAWS;
    const next = (n: number): Tensor => {
      const t = u.narrow(1, c, n);
      c += n;
      return t;
    };
    let y = resizedCrop(x, sampleResizedCrop(u.narrow(1, 0, RESIZED_CROP_DRAWS), H, W, r.crop));
    const uj = next(COLOR_JITTER_DRAWS);
    // Steps with probability 0 are skipped (their draws are still consumed).
    if (r.jitter.p > 0) y = colorJitter(y, sampleColorJitter(uj, r.jitter, o.jitterOrder === 'per-batch'));
    const [ug, ubp, ubs, uso, uf] = next(5).unbind(1) as [Tensor, Tensor, Tensor, Tensor, Tensor];
    if (r.grayscaleP > 0) y = randomGrayscale(y, ug.lt(r.grayscaleP));
    if (r.blurP > 0) {
      const sigma = ubs.mul(r.blurSigma[1] - r.blurSigma[0]).add(r.blurSigma[0]);
      y = gaussianBlur(y, sigma, o.kernelSize ?? blurKernelSize(Math.min(H, W)), ubp.lt(r.blurP));
    }
    if (r.solarizeP > 0) y = solarize(y, uso.lt(r.solarizeP));
    if (r.flipP === 0) return y;
    return hflip(y, uf.lt(r.flipP));
  });
}

export interface PretrainViewOptions {
  /** The source of every random draw (on any device; draws move to the images' device). */
  generator: Generator;
  norm: Normalization | NormalizationName;
  views?: readonly [ViewRecipe, ViewRecipe];
  /** GaussianBlur kernel size (default blurKernelSize(min(H, W))). */
  kernelSize?: number;
  /** Draw ColorJitter's order per sample (default) or once per batch. */
  jitterOrder?: 'per-sample' | 'per-batch';
}

/** Uniforms [B, n] from the generator, on `device`, float64 (parameters are drawn in double, as Python's). */
function uniforms(B: number, n: number, g: Generator, device: Device): Tensor {
  return torch.tidy(() => {
    const u = torch.rand([B, n], { generator: g, device: g.device, dtype: 'float64' });
    return u.device === device ? u : u.to(device);
  });
}

/**
 * The three pre-training inputs of spec §1 from uint8 images [B, C, H, W]:
 * x (flip), xAug (VIEW1), xAug2 (VIEW2), normalised float32 on the images'
 * device. All parameters come from one [B, 1 + 2·VIEW_DRAWS] uniform draw, a row per
 * sample; with a CPU generator (which fills rows in order) sample b's
 * augmentation is the same whatever the batch size.
 */
export function pretrainViews(images: Tensor, o: PretrainViewOptions): { x: Tensor; xAug: Tensor; xAug2: Tensor } {
  if (images.ndim !== 4) throw new TypeError(`pretrainViews: expected [B, C, H, W], got [${images.shape}]`);
  const [v1, v2] = o.views ?? [VIEW1, VIEW2];
  return torch.tidy(() => {
    const B = images.shape[0]!;
    const dev = images.device;
    const x01 = images.float().div(255);
    // One draw, a row per sample: [flip | view 1 | view 2].
    const u = uniforms(B, 1 + 2 * VIEW_DRAWS, o.generator, dev);
    const uFlip = u.select(1, 0);
    const u1 = u.narrow(1, 1, VIEW_DRAWS);
    const u2 = u.narrow(1, 1 + VIEW_DRAWS, VIEW_DRAWS);
    const vo = { kernelSize: o.kernelSize, jitterOrder: o.jitterOrder };
    return {
      x: normalizeUnit(hflip(x01, uFlip.lt(0.5)), o.norm),
      xAug: normalizeUnit(augmentView(x01, u1, v1, vo), o.norm),
      xAug2: normalizeUnit(augmentView(x01, u2, v2, vo), o.norm),
    };
  });
}

export interface FinetuneBatchOptions {
  generator: Generator;
  norm: Normalization | NormalizationName;
  /** Probability of replacing a label by nullClass (spec §1: cfg_drop_rate, 0.1 for denoising). */
  labelDropout: number;
  /** The unconditional class index (num_classes). */
  nullClass: number;
  /** Horizontal flip probability (default 0.5). */
  flipP?: number;
}

/** Fine-tuning batch (spec §1): flip (p 0.5), normalise, label dropout to nullClass. */
export function finetuneBatch(images: Tensor, labels: Tensor, o: FinetuneBatchOptions): { x: Tensor; y: Tensor } {
  if (images.ndim !== 4) throw new TypeError(`finetuneBatch: expected [B, C, H, W], got [${images.shape}]`);
  if (!(o.labelDropout >= 0 && o.labelDropout <= 1))
    throw new RangeError(`finetuneBatch: labelDropout must be in [0, 1], got ${o.labelDropout}`);
  return torch.tidy(() => {
    const B = images.shape[0]!;
    const u = uniforms(B, 2, o.generator, images.device);
    const x = normalizeUnit(hflip(images.float().div(255), u.select(1, 0).lt(o.flipP ?? 0.5)), o.norm);
    const drop = u.select(1, 1).lt(o.labelDropout).to(labels.device);
    const y = torch.where(drop, torch.fullLike(labels, o.nullClass), labels);
    return { x, y };
  });
}
