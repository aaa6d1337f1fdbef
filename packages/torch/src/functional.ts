// Neural-network functions (torch.nn.functional), each one ATen operator or a
// short composition of them, with PyTorch's defaults.
import type { DType } from './dtype.js';
import * as aten from './generated/aten.js';
import type { Generator } from './random.js';
import { Tensor, _wrapList as wrapList } from './tensor.js';

type Pair = number | readonly [number, number];

function pair(v: Pair): number[] {
  return typeof v === 'number' ? [v, v] : [v[0], v[1]];
}

export function linear(input: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return aten.linear(input, weight, bias ?? null);
}

export interface Conv2dOptions {
  stride?: Pair;
  /** A size, or 'same' / 'valid'. */
  padding?: Pair | 'same' | 'valid';
  dilation?: Pair;
  groups?: number;
}

export function conv2d(input: Tensor, weight: Tensor, bias?: Tensor | null, o: Conv2dOptions = {}): Tensor {
  const padding = o.padding ?? 0;
  if (typeof padding === 'string')
    return aten.conv2d$padding(
      input,
      weight,
      bias ?? null,
      pair(o.stride ?? 1),
      padding,
      pair(o.dilation ?? 1),
      o.groups ?? 1,
    );
  return aten.conv2d(
    input,
    weight,
    bias ?? null,
    pair(o.stride ?? 1),
    pair(padding),
    pair(o.dilation ?? 1),
    o.groups ?? 1,
  );
}

export interface ConvTranspose2dOptions {
  stride?: Pair;
  padding?: Pair;
  outputPadding?: Pair;
  groups?: number;
  dilation?: Pair;
}

export function convTranspose2d(
  input: Tensor,
  weight: Tensor,
  bias?: Tensor | null,
  o: ConvTranspose2dOptions = {},
): Tensor {
  return aten.conv_transpose2d$input(
    input,
    weight,
    bias ?? null,
    pair(o.stride ?? 1),
    pair(o.padding ?? 0),
    pair(o.outputPadding ?? 0),
    o.groups ?? 1,
    pair(o.dilation ?? 1),
  );
}

export function layerNorm(
  input: Tensor,
  normalizedShape: readonly number[],
  weight?: Tensor | null,
  bias?: Tensor | null,
  eps = 1e-5,
): Tensor {
  return aten.layer_norm(input, [...normalizedShape], weight ?? null, bias ?? null, eps, true);
}

export interface BatchNormOptions {
  weight?: Tensor | null;
  bias?: Tensor | null;
  training?: boolean;
  momentum?: number;
  eps?: number;
}

/** Batch norm; in training mode the running statistics (if given) are updated in place. */
export function batchNorm(
  input: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  o: BatchNormOptions = {},
): Tensor {
  return aten.batch_norm(
    input,
    o.weight ?? null,
    o.bias ?? null,
    runningMean,
    runningVar,
    o.training ?? false,
    o.momentum ?? 0.1,
    o.eps ?? 1e-5,
    true,
  );
}

export function groupNorm(
  input: Tensor,
  numGroups: number,
  weight?: Tensor | null,
  bias?: Tensor | null,
  eps = 1e-5,
): Tensor {
  return aten.group_norm(input, numGroups, weight ?? null, bias ?? null, eps, true);
}

/** GELU, exact (erf) by default or with the tanh approximation. */
export function gelu(input: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  return aten.gelu(input, approximate);
}

export function silu(input: Tensor): Tensor {
  return aten.silu(input);
}

export function relu(input: Tensor): Tensor {
  return aten.relu(input);
}

export function leakyRelu(input: Tensor, negativeSlope = 0.01): Tensor {
  return aten.leaky_relu(input, negativeSlope);
}

export function sigmoid(input: Tensor): Tensor {
  return aten.sigmoid(input);
}

export function tanh(input: Tensor): Tensor {
  return aten.tanh(input);
}

export function softplus(input: Tensor, beta = 1, threshold = 20): Tensor {
  return aten.softplus(input, beta, threshold);
}

export function softmax(input: Tensor, dim: number, dtype?: DType): Tensor {
  return aten.softmax$int(input, dim, dtype ?? null);
}

export function logSoftmax(input: Tensor, dim: number, dtype?: DType): Tensor {
  return aten.log_softmax$int(input, dim, dtype ?? null);
}

/** Zeroes elements with probability p and scales the rest by 1/(1-p) when training. */
export function dropout(input: Tensor, p = 0.5, training = true): Tensor {
  if (p < 0 || p > 1) throw new RangeError(`dropout: p must be in [0, 1], got ${p}`);
  return aten.dropout(input, p, training);
}

export interface AttentionOptions {
  attnMask?: Tensor | null;
  dropoutP?: number;
  isCausal?: boolean;
  scale?: number | null;
  enableGqa?: boolean;
}

/** softmax(q kᵀ · scale + mask) v, with the fused kernels libtorch picks. */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions = {}): Tensor {
  return aten.scaled_dot_product_attention(
    q,
    k,
    v,
    o.attnMask ?? null,
    o.dropoutP ?? 0,
    o.isCausal ?? false,
    o.scale ?? null,
    o.enableGqa ?? false,
  );
}

/** Rows of weight at input's indices; paddingIdx (negative counts from the end) gets no gradient. */
export function embedding(input: Tensor, weight: Tensor, paddingIdx?: number): Tensor {
  let pad = -1; // ATen's "no padding index"
  if (paddingIdx !== undefined) {
    const n = weight.size(0);
    if (!Number.isInteger(paddingIdx) || paddingIdx >= n || paddingIdx < -n)
      throw new RangeError(`embedding: paddingIdx ${paddingIdx} is outside [-${n}, ${n})`);
    pad = paddingIdx < 0 ? paddingIdx + n : paddingIdx;
  }
  return aten.embedding(weight, input, pad, false, false);
}

/** x / max(‖x‖_p, eps) along dim. */
export function normalize(input: Tensor, p = 2, dim = 1, eps = 1e-12): Tensor {
  const norm = aten.linalg_vector_norm(input, p, [dim], true, null);
  try {
    const denom = norm.clampMin(eps);
    try {
      return input.div(denom);
    } finally {
      denom.dispose();
    }
  } finally {
    norm.dispose();
  }
}

export interface InterpolateOptions {
  size?: Pair;
  scaleFactor?: number | readonly [number, number];
  mode?: 'nearest' | 'nearest-exact' | 'bilinear' | 'bicubic';
  alignCorners?: boolean;
  antialias?: boolean;
}

// Bilinear and bicubic resizing, without and with antialiasing.
const UPSAMPLE = {
  bilinear: [aten.upsample_bilinear2d$vec, aten._upsample_bilinear2d_aa$vec],
  bicubic: [aten.upsample_bicubic2d$vec, aten._upsample_bicubic2d_aa$vec],
} as const;

/** Resizes NCHW images (torch.nn.functional.interpolate). */
export function interpolate(input: Tensor, o: InterpolateOptions): Tensor {
  const mode = o.mode ?? 'nearest';
  if ((o.size === undefined) === (o.scaleFactor === undefined))
    throw new TypeError('interpolate: give exactly one of size and scaleFactor');
  if (input.ndim !== 4) throw new TypeError(`interpolate: expected a 4-d NCHW tensor, got ${input.ndim}-d`);
  const size = o.size === undefined ? null : pair(o.size);
  const scales =
    o.scaleFactor === undefined
      ? null
      : typeof o.scaleFactor === 'number'
        ? [o.scaleFactor, o.scaleFactor]
        : [...o.scaleFactor];
  if (mode === 'nearest' || mode === 'nearest-exact') {
    if (o.alignCorners !== undefined)
      throw new TypeError(`interpolate: alignCorners is not allowed with mode '${mode}'`);
    if (o.antialias) throw new TypeError(`interpolate: antialias is only for bilinear and bicubic`);
    const nearest = mode === 'nearest' ? aten.upsample_nearest2d$vec : aten._upsample_nearest_exact2d$vec;
    return nearest(input, size, scales);
  }
  const resize = UPSAMPLE[mode][o.antialias ? 1 : 0];
  return resize(input, size, o.alignCorners ?? false, scales);
}

/** Pads the last dims: pad = [left, right, top, bottom, ...]. */
export function pad(
  input: Tensor,
  padding: readonly number[],
  mode: 'constant' | 'reflect' | 'replicate' | 'circular' = 'constant',
  value = 0,
): Tensor {
  return aten.pad(input, [...padding], mode, mode === 'constant' ? value : null);
}

export interface Pool2dOptions {
  stride?: Pair;
  padding?: Pair;
  ceilMode?: boolean;
}

export function avgPool2d(
  input: Tensor,
  kernelSize: Pair,
  o: Pool2dOptions & { countIncludePad?: boolean; divisorOverride?: number } = {},
): Tensor {
  return aten.avg_pool2d(
    input,
    pair(kernelSize),
    o.stride === undefined ? [] : pair(o.stride),
    pair(o.padding ?? 0),
    o.ceilMode ?? false,
    o.countIncludePad ?? true,
    o.divisorOverride ?? null,
  );
}

export function maxPool2d(input: Tensor, kernelSize: Pair, o: Pool2dOptions & { dilation?: Pair } = {}): Tensor {
  return aten.max_pool2d(
    input,
    pair(kernelSize),
    o.stride === undefined ? [] : pair(o.stride),
    pair(o.padding ?? 0),
    pair(o.dilation ?? 1),
    o.ceilMode ?? false,
  );
}

export function adaptiveAvgPool2d(input: Tensor, outputSize: Pair): Tensor {
  return aten.adaptive_avg_pool2d(input, pair(outputSize));
}

/** Sliding local blocks (im2col): [N, C·kh·kw, L]. */
export function unfold(
  input: Tensor,
  kernelSize: Pair,
  o: { dilation?: Pair; padding?: Pair; stride?: Pair } = {},
): Tensor {
  return aten.im2col(input, pair(kernelSize), pair(o.dilation ?? 1), pair(o.padding ?? 0), pair(o.stride ?? 1));
}

export function oneHot(input: Tensor, numClasses = -1): Tensor {
  return aten.one_hot(input, numClasses);
}

export type Reduction = 'none' | 'mean' | 'sum';
const REDUCTION: Record<Reduction, number> = { none: 0, mean: 1, sum: 2 };

export function crossEntropy(
  input: Tensor,
  target: Tensor,
  o: { weight?: Tensor; reduction?: Reduction; ignoreIndex?: number; labelSmoothing?: number } = {},
): Tensor {
  return aten.cross_entropy_loss(
    input,
    target,
    o.weight ?? null,
    REDUCTION[o.reduction ?? 'mean'],
    o.ignoreIndex ?? -100,
    o.labelSmoothing ?? 0,
  );
}

export function mseLoss(input: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  return aten.mse_loss(input, target, REDUCTION[reduction]);
}

/** Draws dropout-style masks etc. with an explicit generator: bernoulli(p) of a shape. */
export function bernoulliLike(input: Tensor, p: number, generator?: Generator): Tensor {
  return aten.bernoulli$p(input, p, generator);
}

export { wrapList as _wrapList };
