// Creating tensors: from JS data, filled, ranges, random; and joining them.
import { checkCaptureSafe } from './capture.js';
import { checkDevice, type Device } from './device.js';
import { dtypeCode, dtypeOfTypedArray, float32ToBfloat16Bits, type AnyTypedArray, type DType } from './dtype.js';
import { rethrowNative } from './errors.js';
import { native } from './native.js';
import * as aten from './generated/aten.js';
import { Generator } from './random.js';
import { Tensor, flatShape } from './tensor.js';

export interface TensorOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

export interface RandomOptions extends TensorOptions {
  generator?: Generator;
}

function finish(t: Tensor, opts: TensorOptions): Tensor {
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

function dev(opts: TensorOptions): Device | undefined {
  return opts.device === undefined ? undefined : checkDevice(opts.device);
}

function checkShape(shape: readonly number[], what: string): number[] {
  for (const s of shape)
    if (!Number.isInteger(s) || s < 0)
      throw new TypeError(`${what}: sizes must be non-negative integers, got [${shape.join(', ')}]`);
  return [...shape];
}

type Nested = number | boolean | readonly Nested[];

function inferShape(data: Nested): number[] {
  const shape: number[] = [];
  let cur: Nested = data;
  while (Array.isArray(cur)) {
    // A cyclic array would otherwise grow `shape` until the heap runs out.
    if (shape.length >= 64) throw new TypeError('tensor: nested more than 64 levels deep (a cyclic array?)');
    shape.push(cur.length);
    cur = (cur as readonly Nested[])[0] as Nested;
  }
  return shape;
}

function flatten(data: Nested, shape: number[], depth: number, out: (number | boolean)[]): void {
  if (depth === shape.length) {
    if (typeof data !== 'number' && typeof data !== 'boolean')
      throw new TypeError('tensor: ragged nested array (all rows must have the same length)');
    out.push(data);
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[depth])
    throw new TypeError('tensor: ragged nested array (all rows must have the same length)');
  for (const d of data as readonly Nested[]) flatten(d, shape, depth + 1, out);
}

const INT_RANGE = {
  int8: [-128, 127],
  uint8: [0, 255],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
  // 2^63 itself is a double; everything below it fits.
  int64: [-(2 ** 63), 2 ** 63 - 1024],
} as const;

/**
 * A tensor from nested arrays, a TypedArray (with opts.shape) or a number.
 * JS has one number type, so numbers give float32 (not int64 as integral
 * Python ints would): pass { dtype: 'int64' } for integers. Booleans give
 * bool; a TypedArray keeps its own dtype. opts.dtype converts.
 */
export function tensor(data: Nested | AnyTypedArray, opts: TensorOptions & { shape?: readonly number[] } = {}): Tensor {
  if (ArrayBuffer.isView(data)) {
    const shape = opts.shape ?? [data.length];
    // A Uint16Array holds 16-bit float bits: the dtype says which format.
    const bits = data instanceof Uint16Array && (opts.dtype === 'float16' || opts.dtype === 'bfloat16');
    const t = fromTypedArray(data, shape, bits ? { dtype: opts.dtype, copy: true } : { copy: true });
    return convert(t, opts);
  }
  const shape = inferShape(data as Nested);
  const flat: (number | boolean)[] = [];
  flatten(data as Nested, shape, 0, flat);
  if (opts.shape !== undefined) throw new TypeError('tensor: shape is only for TypedArray data');
  let t: Tensor;
  if (flat.length > 0 && flat.every((v) => typeof v === 'boolean')) {
    t = fromTypedArray(
      Uint8Array.from(flat as boolean[], (b) => (b ? 1 : 0)),
      shape,
      { dtype: 'bool' },
    );
  } else {
    const nums = flat as number[];
    if (nums.some((v) => typeof v !== 'number')) throw new TypeError('tensor: mixed numbers and booleans');
    if (
      opts.dtype === 'int64' ||
      opts.dtype === 'int32' ||
      opts.dtype === 'int16' ||
      opts.dtype === 'int8' ||
      opts.dtype === 'uint8'
    ) {
      const bad = nums.find((v) => !Number.isInteger(v));
      if (bad !== undefined) throw new TypeError(`tensor: ${bad} is not an integer (dtype ${opts.dtype})`);
      // Out-of-range values would wrap silently; PyTorch refuses them.
      const [lo, hi] = INT_RANGE[opts.dtype];
      const out = nums.find((v) => v < lo || v > hi);
      if (out !== undefined) throw new RangeError(`tensor: ${out} overflows dtype ${opts.dtype}`);
    }
    if (opts.dtype === 'int64')
      t = fromTypedArray(
        BigInt64Array.from(nums, (v) => BigInt(v)),
        shape,
        {},
      );
    else if (
      opts.dtype === undefined ||
      opts.dtype === 'float32' ||
      opts.dtype === 'float16' ||
      opts.dtype === 'bfloat16'
    )
      t = fromTypedArray(Float32Array.from(nums), shape, {});
    // float64, the other integer types and bool go through float64, which holds
    // every int32 exactly (float32 rounds beyond 2^24).
    else t = fromTypedArray(Float64Array.from(nums), shape, {});
  }
  return convert(t, opts);
}

function convert(t: Tensor, opts: TensorOptions): Tensor {
  let out = t;
  if ((opts.dtype !== undefined && opts.dtype !== out.dtype) || (opts.device !== undefined && opts.device !== 'cpu')) {
    const next = out.to({ dtype: opts.dtype ?? out.dtype, device: opts.device ?? 'cpu' });
    if (next !== out) out.dispose();
    out = next;
  }
  return finish(out, opts);
}

/**
 * A CPU tensor over a TypedArray. With copy false it is a zero-copy view: the
 * tensor and the array share memory, and the array's buffer is kept alive while
 * the tensor lives (do not transfer or detach it meanwhile).
 * Uint16Array data needs dtype 'float16' or 'bfloat16'.
 */
export function fromTypedArray(
  data: AnyTypedArray,
  shape: readonly number[],
  opts: { dtype?: DType; copy?: boolean } = {},
): Tensor {
  checkCaptureSafe('creating a tensor from host data (tensor/fromTypedArray)');
  const dtype = opts.dtype ?? dtypeOfTypedArray(data);
  try {
    return new Tensor(
      native.fromBuffer(data, dtypeCode(dtype), checkShape(shape, 'fromTypedArray'), opts.copy ?? true),
    );
  } catch (e) {
    rethrowNative(e);
  }
}

/** bfloat16 tensor from float32 values (rounded to nearest even). */
export function bfloat16From(values: ArrayLike<number>, shape: readonly number[]): Tensor {
  const bits = Uint16Array.from({ length: values.length }, (_, i) => float32ToBfloat16Bits(values[i]!));
  return fromTypedArray(bits, shape, { dtype: 'bfloat16' });
}

export function zeros(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return finish(aten.zeros(checkShape(shape, 'zeros'), opts.dtype, undefined, dev(opts)), opts);
}

export function ones(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return finish(aten.ones(checkShape(shape, 'ones'), opts.dtype, undefined, dev(opts)), opts);
}

export function empty(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return finish(aten.empty$memory_format(checkShape(shape, 'empty'), opts.dtype, undefined, dev(opts)), opts);
}

/** Filled with value: float32 for a number and bool for a boolean unless dtype is given. */
export function full(shape: readonly number[], value: number | boolean, opts: TensorOptions = {}): Tensor {
  const dtype = opts.dtype ?? (typeof value === 'boolean' ? 'bool' : 'float32');
  return finish(aten.full(checkShape(shape, 'full'), value, dtype, undefined, dev(opts)), opts);
}

/** A 0-d tensor holding value. */
export function scalarTensor(value: number, opts: TensorOptions = {}): Tensor {
  return finish(aten.scalar_tensor(value, opts.dtype ?? 'float32', undefined, dev(opts)), opts);
}

export function eye(n: number, opts: TensorOptions = {}): Tensor {
  return finish(aten.eye(n, opts.dtype, undefined, dev(opts)), opts);
}

/** arange(end), arange(start, end), arange(start, end, step). Integral arguments give int64, as in PyTorch. */
export function arange(start: number, end?: number, step?: number, opts: TensorOptions = {}): Tensor {
  if (end === undefined) return finish(aten.arange(start, opts.dtype, undefined, dev(opts)), opts);
  return finish(aten.arange$start_step(start, end, step ?? 1, opts.dtype, undefined, dev(opts)), opts);
}

export function linspace(start: number, end: number, steps: number, opts: TensorOptions = {}): Tensor {
  return finish(aten.linspace(start, end, steps, opts.dtype, undefined, dev(opts)), opts);
}

export function randn(shape: readonly number[], opts: RandomOptions = {}): Tensor {
  const s = checkShape(shape, 'randn');
  const t = opts.generator
    ? aten.randn$generator(s, opts.generator, opts.dtype, undefined, dev(opts))
    : aten.randn(s, opts.dtype, undefined, dev(opts));
  return finish(t, opts);
}

export function rand(shape: readonly number[], opts: RandomOptions = {}): Tensor {
  const s = checkShape(shape, 'rand');
  const t = opts.generator
    ? aten.rand$generator(s, opts.generator, opts.dtype, undefined, dev(opts))
    : aten.rand(s, opts.dtype, undefined, dev(opts));
  return finish(t, opts);
}

/** Integers uniform in [low, high) (int64 unless told otherwise). */
export function randint(low: number, high: number, shape: readonly number[], opts: RandomOptions = {}): Tensor {
  const s = checkShape(shape, 'randint');
  const t = opts.generator
    ? aten.randint$low_generator(low, high, s, opts.generator, opts.dtype ?? 'int64', undefined, dev(opts))
    : aten.randint$low(low, high, s, opts.dtype ?? 'int64', undefined, dev(opts));
  return finish(t, opts);
}

export function randperm(n: number, opts: RandomOptions = {}): Tensor {
  const t = opts.generator
    ? aten.randperm$generator(n, opts.generator, opts.dtype ?? 'int64', undefined, dev(opts))
    : aten.randperm(n, opts.dtype ?? 'int64', undefined, dev(opts));
  return finish(t, opts);
}

function likeOpts(t: Tensor, opts: TensorOptions): [DType, Device] {
  return [opts.dtype ?? t.dtype, opts.device ?? t.device];
}

export function zerosLike(t: Tensor, opts: TensorOptions = {}): Tensor {
  return zeros(t.shape, {
    dtype: opts.dtype ?? t.dtype,
    device: opts.device ?? t.device,
    requiresGrad: opts.requiresGrad ?? false,
  });
}

export function onesLike(t: Tensor, opts: TensorOptions = {}): Tensor {
  return ones(t.shape, {
    dtype: opts.dtype ?? t.dtype,
    device: opts.device ?? t.device,
    requiresGrad: opts.requiresGrad ?? false,
  });
}

export function emptyLike(t: Tensor, opts: TensorOptions = {}): Tensor {
  return empty(t.shape, {
    dtype: opts.dtype ?? t.dtype,
    device: opts.device ?? t.device,
    requiresGrad: opts.requiresGrad ?? false,
  });
}

export function fullLike(t: Tensor, value: number, opts: TensorOptions = {}): Tensor {
  const [c, d] = likeOpts(t, opts);
  return finish(aten.full_like(t, value, c, undefined, d), opts);
}

export function randnLike(t: Tensor, opts: RandomOptions = {}): Tensor {
  return randn(t.shape, { ...opts, dtype: opts.dtype ?? t.dtype, device: opts.device ?? t.device });
}

export function randLike(t: Tensor, opts: RandomOptions = {}): Tensor {
  return rand(t.shape, { ...opts, dtype: opts.dtype ?? t.dtype, device: opts.device ?? t.device });
}

/** Concatenates along an existing dim. */
export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  return aten.cat(tensors, dim);
}

/** Stacks along a new dim. */
export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  return aten.stack(tensors, dim);
}

/** where(cond, a, b): elements of a where cond is true, else of b (either may be a number). */
export function where(condition: Tensor, a: Tensor | number, b: Tensor | number): Tensor {
  if (typeof a === 'number' && typeof b === 'number') return aten.where$Scalar(condition, a, b);
  if (typeof a === 'number') return aten.where$ScalarSelf(condition, a, b as Tensor);
  if (typeof b === 'number') return aten.where$ScalarOther(condition, a, b);
  return aten.where$self(condition, a, b);
}

/** Einstein summation, as torch.einsum('ij,jk->ik', a, b). */
export function einsum(equation: string, ...operands: Tensor[]): Tensor {
  return aten.einsum(equation, operands, null);
}

/** beta * input + alpha * (m1 @ m2). */
export function addmm(input: Tensor, m1: Tensor, m2: Tensor, opts: { beta?: number; alpha?: number } = {}): Tensor {
  return aten.addmm(input, m1, m2, opts.beta ?? 1, opts.alpha ?? 1);
}

/** Draws sample indices from each row of probability weights. */
export function multinomial(probs: Tensor, numSamples: number, replacement = false, generator?: Generator): Tensor {
  return aten.multinomial(probs, numSamples, replacement, generator);
}

/** Bernoulli draws with probabilities p (a tensor). */
export function bernoulli(p: Tensor, generator?: Generator): Tensor {
  return aten.bernoulli(p, generator);
}

/** Normal draws with per-element mean and std tensors. */
export function normal(mean: Tensor, std: Tensor, generator?: Generator): Tensor {
  return aten.normal$Tensor_Tensor(mean, std, generator);
}

export { flatShape };
