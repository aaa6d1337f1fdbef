// Neural-network functions (torch.nn.functional), each one ATen operator or a
// short composition of them, with PyTorch's defaults.
import type { DType } from './dtype.js';
import { dtypeCode } from './dtype.js';
import type { Generator } from './random.js';
import type { NativeArg } from './native.js';
import { callNative, opRef } from './ops.js';
import { Tensor, _wrap as wrap, _wrapList as wrapList } from './tensor.js';

function op(name: string, overload: string, ...args: NativeArg[]): Tensor {
  return wrap(callNative(opRef(name, overload), ...args));
}

type Pair = number | readonly [number, number];

function pair(v: Pair): number[] {
  return typeof v === 'number' ? [v, v] : [v[0], v[1]];
}

function opt(t: Tensor | null | undefined): number | null {
  return t == null ? null : t.id;
}

export function linear(input: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return op('linear', '', input.id, weight.id, opt(bias));
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
    return op(
      'conv2d',
      'padding',
      input.id,
      weight.id,
      opt(bias),
      pair(o.stride ?? 1),
      padding,
      pair(o.dilation ?? 1),
      o.groups ?? 1,
    );
  return op(
    'conv2d',
    '',
    input.id,
    weight.id,
    opt(bias),
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
  return op(
    'conv_transpose2d',
    'input',
    input.id,
    weight.id,
    opt(bias),
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
  return op('layer_norm', '', input.id, [...normalizedShape], opt(weight), opt(bias), eps, true);
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
  return op(
    'batch_norm',
    '',
    input.id,
    opt(o.weight),
    opt(o.bias),
    opt(runningMean),
    opt(runningVar),
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
  return op('group_norm', '', input.id, numGroups, opt(weight), opt(bias), eps, true);
}

/** GELU, exact (erf) by default or with the tanh approximation. */
export function gelu(input: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  return op('gelu', '', input.id, approximate);
}

export function silu(input: Tensor): Tensor {
  return op('silu', '', input.id);
}

export function relu(input: Tensor): Tensor {
  return op('relu', '', input.id);
}

export function leakyRelu(input: Tensor, negativeSlope = 0.01): Tensor {
  return op('leaky_relu', '', input.id, negativeSlope);
}

export function sigmoid(input: Tensor): Tensor {
  return op('sigmoid', '', input.id);
}

export function tanh(input: Tensor): Tensor {
  return op('tanh', '', input.id);
}

export function softplus(input: Tensor, beta = 1, threshold = 20): Tensor {
  return op('softplus', '', input.id, beta, threshold);
}

export function softmax(input: Tensor, dim: number, dtype?: DType): Tensor {
  return op('softmax', 'int', input.id, dim, dtype === undefined ? null : dtypeCode(dtype));
}

export function logSoftmax(input: Tensor, dim: number, dtype?: DType): Tensor {
  return op('log_softmax', 'int', input.id, dim, dtype === undefined ? null : dtypeCode(dtype));
}

/** Zeroes elements with probability p and scales the rest by 1/(1-p) when training. */
export function dropout(input: Tensor, p = 0.5, training = true): Tensor {
  if (p < 0 || p > 1) throw new RangeError(`dropout: p must be in [0, 1], got ${p}`);
  return op('dropout', '', input.id, p, training);
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
  return op(
    'scaled_dot_product_attention',
    '',
    q.id,
    k.id,
    v.id,
    opt(o.attnMask),
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
  return op('embedding', '', weight.id, input.id, pad, false, false);
}

/** x / max(‖x‖_p, eps) along dim. */
export function normalize(input: Tensor, p = 2, dim = 1, eps = 1e-12): Tensor {
  const norm = op('linalg_vector_norm', '', input.id, p, [dim], true, null);
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
    return op(mode === 'nearest' ? 'upsample_nearest2d' : '_upsample_nearest_exact2d', 'vec', input.id, size, scales);
  }
  const name = `${o.antialias ? '_' : ''}upsample_${mode}2d${o.antialias ? '_aa' : ''}`;
  return op(name, 'vec', input.id, size, o.alignCorners ?? false, scales);
}

/** Pads the last dims: pad = [left, right, top, bottom, ...]. */
export function pad(
  input: Tensor,
  padding: readonly number[],
  mode: 'constant' | 'reflect' | 'replicate' | 'circular' = 'constant',
  value = 0,
): Tensor {
  return op('pad', '', input.id, [...padding], mode, mode === 'constant' ? value : null);
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
  return op(
    'avg_pool2d',
    '',
    input.id,
    pair(kernelSize),
    o.stride === undefined ? [] : pair(o.stride),
    pair(o.padding ?? 0),
    o.ceilMode ?? false,
    o.countIncludePad ?? true,
    o.divisorOverride ?? null,
  );
}

export function maxPool2d(input: Tensor, kernelSize: Pair, o: Pool2dOptions & { dilation?: Pair } = {}): Tensor {
  return op(
    'max_pool2d',
    '',
    input.id,
    pair(kernelSize),
    o.stride === undefined ? [] : pair(o.stride),
    pair(o.padding ?? 0),
    pair(o.dilation ?? 1),
    o.ceilMode ?? false,
  );
}

export function adaptiveAvgPool2d(input: Tensor, outputSize: Pair): Tensor {
  return op('adaptive_avg_pool2d', '', input.id, pair(outputSize));
}

/** Sliding local blocks (im2col): [N, C·kh·kw, L]. */
export function unfold(
  input: Tensor,
  kernelSize: Pair,
  o: { dilation?: Pair; padding?: Pair; stride?: Pair } = {},
): Tensor {
  return op('im2col', '', input.id, pair(kernelSize), pair(o.dilation ?? 1), pair(o.padding ?? 0), pair(o.stride ?? 1));
}

export function oneHot(input: Tensor, numClasses = -1): Tensor {
  return op('one_hot', '', input.id, numClasses);
}

export type Reduction = 'none' | 'mean' | 'sum';
const REDUCTION: Record<Reduction, number> = { none: 0, mean: 1, sum: 2 };

export function crossEntropy(
  input: Tensor,
  target: Tensor,
  o: { weight?: Tensor; reduction?: Reduction; ignoreIndex?: number; labelSmoothing?: number } = {},
): Tensor {
  return op(
    'cross_entropy_loss',
    '',
    input.id,
    target.id,
    opt(o.weight),
    REDUCTION[o.reduction ?? 'mean'],
    o.ignoreIndex ?? -100,
    o.labelSmoothing ?? 0,
  );
}

export function mseLoss(input: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  return op('mse_loss', '', input.id, target.id, REDUCTION[reduction]);
}

/** Draws dropout-style masks etc. with an explicit generator: bernoulli(p) of a shape. */
export function bernoulliLike(input: Tensor, p: number, generator?: Generator): Tensor {
  return op('bernoulli', 'p', input.id, p, generator?.handle);
}

export { wrapList as _wrapList };
