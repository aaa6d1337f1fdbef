// ADM centre-crop preprocessing (spec §1, prepare_dataset/process.py::
// center_crop_arr, from guided-diffusion):
//   while min(W, H) >= 2·res: resize to (W//2, H//2) with BOX
//   resize so the short side is res (sizes rounded as Python's round), BICUBIC
//   crop the centre res×res.
// The resizes are Pillow's (Resample.c) reproduced exactly: separable
// filters with Pillow's support and coefficient normalisation, 22-bit
// fixed-point weights, a horizontal then a vertical pass with the uint8
// rounding between them. So this equals the Python preprocessing bit for bit,
// also for odd sizes, where BOX to W//2 is not a 2×2 mean. (It runs in decode
// workers, which cannot use @epg/torch; torch's bicubic with antialias, the
// same a = -0.5 kernel in floating point, differs by at most 1-2 levels.)
import type { DecodedImage } from './codecs.js';

export type ResampleFilter = 'box' | 'bilinear' | 'bicubic';

const PRECISION_BITS = 32 - 8 - 2;

const FILTERS: Record<ResampleFilter, { support: number; fn: (x: number) => number }> = {
  box: { support: 0.5, fn: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  bilinear: {
    support: 1,
    fn: (x) => {
      const a = Math.abs(x);
      return a < 1 ? 1 - a : 0;
    },
  },
  bicubic: {
    support: 2,
    fn: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
};

interface Coeffs {
  ksize: number;
  /** [xmin, count] per output pixel. */
  bounds: Int32Array;
  /** Fixed-point weights, ksize per output pixel. */
  kk: Int32Array;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for the box [0, inSize). */
function coefficients(inSize: number, outSize: number, filter: ResampleFilter): Coeffs {
  const f = FILTERS[filter];
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = f.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = f.fn((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x]! / ww : k[x]!;
      kk[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(v: number): number {
  if (v >= 1 << (PRECISION_BITS + 8)) return 255;
  if (v <= 0) return 0;
  return v >> PRECISION_BITS;
}

const HALF = 1 << (PRECISION_BITS - 1);

/** Resamples rows [first, first + rows) of src (W×·×C) horizontally to outW columns. */
function horizontalPass(
  src: Uint8Array,
  W: number,
  C: number,
  first: number,
  rows: number,
  ch: Coeffs,
  outW: number,
): Uint8Array {
  const out = new Uint8Array(rows * outW * C);
  for (let y = 0; y < rows; y++) {
    const rowIn = (y + first) * W * C;
    const rowOut = y * outW * C;
    for (let xx = 0; xx < outW; xx++) {
      const xmin = ch.bounds[2 * xx]!;
      const xmax = ch.bounds[2 * xx + 1]!;
      const kOff = xx * ch.ksize;
      for (let c = 0; c < C; c++) {
        let ss = HALF;
        for (let x = 0; x < xmax; x++) ss += src[rowIn + (x + xmin) * C + c]! * ch.kk[kOff + x]!;
        out[rowOut + xx * C + c] = clip8(ss);
      }
    }
  }
  return out;
}

/** Resamples src (W×·×C) vertically to outH rows, bounds relative to src's first row. */
function verticalPass(src: Uint8Array, W: number, C: number, cv: Coeffs, outH: number): Uint8Array {
  const stride = W * C;
  const out = new Uint8Array(outH * stride);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = cv.bounds[2 * yy]!;
    const ymax = cv.bounds[2 * yy + 1]!;
    const kOff = yy * cv.ksize;
    const rowOut = yy * stride;
    for (let i = 0; i < stride; i++) {
      let ss = HALF;
      for (let y = 0; y < ymax; y++) ss += src[(y + ymin) * stride + i]! * cv.kk[kOff + y]!;
      out[rowOut + i] = clip8(ss);
    }
  }
  return out;
}

/**
 * Resizes H×W×C uint8 pixels to outWidth×outHeight exactly as Pillow's
 * Image.resize(size, filter) does for 8-bit images (no reducing_gap). When
 * both directions change, Pillow 13 runs the vertical pass first if
 * max(H − h, 0) > 2·max(W − w, 0), else the horizontal one (determined
 * against Pillow 13.0; the intermediate image is rounded to uint8, so the
 * order shows in the last bit).
 */
export function resizePil(
  img: DecodedImage,
  outWidth: number,
  outHeight: number,
  filter: ResampleFilter,
): DecodedImage {
  const { width: W, height: H, channels: C } = img;
  if (!Number.isInteger(outWidth) || !Number.isInteger(outHeight) || outWidth < 1 || outHeight < 1)
    throw new RangeError(`resize: bad output size ${outWidth}×${outHeight}`);
  if (outWidth === W && outHeight === H) return { ...img, pixels: img.pixels.slice() };
  const out = (pixels: Uint8Array): DecodedImage => ({ width: outWidth, height: outHeight, channels: C, pixels });
  if (outHeight === H) return out(horizontalPass(img.pixels, W, C, 0, H, coefficients(W, outWidth, filter), outWidth));
  const cv = coefficients(H, outHeight, filter);
  if (outWidth === W) return out(verticalPass(img.pixels, W, C, cv, outHeight));
  const ch = coefficients(W, outWidth, filter);
  if (Math.max(H - outHeight, 0) > 2 * Math.max(W - outWidth, 0)) {
    const v = verticalPass(img.pixels, W, C, cv, outHeight);
    return out(horizontalPass(v, W, C, 0, outHeight, ch, outWidth));
  }
  // Horizontal first, over the rows the vertical pass uses.
  const first = cv.bounds[0]!;
  const last = cv.bounds[2 * outHeight - 2]! + cv.bounds[2 * outHeight - 1]!;
  for (let i = 0; i < outHeight; i++) cv.bounds[2 * i] = cv.bounds[2 * i]! - first;
  const h = horizontalPass(img.pixels, W, C, first, last - first, ch, outWidth);
  return out(verticalPass(h, outWidth, C, cv, outHeight));
}

/** Python 3's round(): halves go to the even neighbour. */
export function pyRound(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * ADM's center_crop_arr (spec §1): BOX halvings while the short side is at
 * least 2·res, a BICUBIC resize of the short side to res, the central res×res
 * crop. H×W×C uint8 in and out.
 */
export function centerCropArr(img: DecodedImage, res: number): DecodedImage {
  if (!Number.isInteger(res) || res < 1) throw new RangeError(`centerCropArr: resolution must be a positive integer`);
  let cur = img;
  while (Math.min(cur.width, cur.height) >= 2 * res)
    cur = resizePil(cur, Math.floor(cur.width / 2), Math.floor(cur.height / 2), 'box');
  const scale = res / Math.min(cur.width, cur.height);
  cur = resizePil(cur, pyRound(cur.width * scale), pyRound(cur.height * scale), 'bicubic');
  return cropHwc(cur, Math.floor((cur.height - res) / 2), Math.floor((cur.width - res) / 2), res, res);
}

/** The h×w window at (top, left) of H×W×C pixels. */
export function cropHwc(img: DecodedImage, top: number, left: number, h: number, w: number): DecodedImage {
  const { width: W, height: H, channels: C } = img;
  if (top < 0 || left < 0 || top + h > H || left + w > W)
    throw new RangeError(`crop: window ${h}×${w} at (${top}, ${left}) is outside the ${H}×${W} image`);
  if (top === 0 && left === 0 && h === H && w === W) return img;
  const out = new Uint8Array(h * w * C);
  for (let y = 0; y < h; y++)
    out.set(img.pixels.subarray(((top + y) * W + left) * C, ((top + y) * W + left + w) * C), y * w * C);
  return { width: w, height: h, channels: C, pixels: out };
}
