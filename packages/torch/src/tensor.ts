// The Tensor class: a handle on a libtorch tensor, with PyTorch's methods
// (camelCased). Each method is a thin typed call of one ATen operator.
import { checkDevice, type Device } from './device.js';
import {
  bfloat16BitsToFloat32,
  dtypeCode,
  dtypeFromCode,
  float16BitsToNumber,
  isFloatingDtype,
  typedArrayOf,
  type AnyTypedArray,
  type DType,
} from './dtype.js';
import { checkCaptureSafe, inCaptureRegion } from './capture.js';
import { DisposedTensorError, rethrowNative } from './errors.js';
import { native, type NativeArg, type NativeResult } from './native.js';
import { callNative, opRef, type OpRef } from './ops.js';
import { TRACKED, track, type Tracked } from './scope.js';

/** Nested arrays of numbers or booleans, as toArray() returns them. */
export type NestedArray = number | boolean | NestedArray[];

/** An index item for Tensor.index(): see its documentation. */
export type IndexItem = number | null | '...' | ':' | Slice | Tensor;

/** A slice start:stop:step (negative start/stop count from the end). */
export interface Slice {
  readonly start?: number | undefined;
  readonly stop?: number | undefined;
  readonly step?: number | undefined;
}

/** slice(1, 3) is Python's 1:3; slice(undefined, undefined, 2) is ::2. */
export function slice(start?: number, stop?: number, step?: number): Slice {
  return { start, stop, step };
}

// Backstop only: scopes, `using` and dispose() are the release path. The
// registry frees tensors that were dropped without either.
const finalizer = new FinalizationRegistry<number>((id) => {
  try {
    native.dispose(id);
  } catch {
    // Never throw from a finalizer.
  }
});

let finalizerEnabled = true;
/** Turns the GC backstop off (a little faster; leaks are then real leaks). */
export function setFinalizerBackstop(enabled: boolean): void {
  finalizerEnabled = enabled;
}

/** Number of live native tensors (created and not yet freed). */
export function liveTensors(): number {
  return native.liveTensors();
}

function wrap(r: NativeResult): Tensor {
  return new Tensor(r as number);
}

function wrapMaybe(r: NativeResult): Tensor | null {
  return typeof r === 'number' && r >= 0 ? new Tensor(r) : null;
}

function wrapList(r: NativeResult): Tensor[] {
  return (r as number[]).map((id) => new Tensor(id));
}

function call(ref: OpRef, ...args: NativeArg[]): NativeResult {
  return callNative(ref, ...args);
}

function ids(ts: readonly Tensor[]): number[] {
  return ts.map((t) => t.id);
}

function optCode(dtype: DType | undefined): number | undefined {
  return dtype === undefined ? undefined : dtypeCode(dtype);
}

/** The ATen operators used by Tensor's methods, resolved on first use. */
const A = {
  add: opRef('add', 'Tensor'),
  addS: opRef('add', 'Scalar'),
  add_: opRef('add_', 'Tensor'),
  addS_: opRef('add_', 'Scalar'),
  sub: opRef('sub', 'Tensor'),
  subS: opRef('sub', 'Scalar'),
  sub_: opRef('sub_', 'Tensor'),
  subS_: opRef('sub_', 'Scalar'),
  rsubS: opRef('rsub', 'Scalar'),
  mul: opRef('mul', 'Tensor'),
  mulS: opRef('mul', 'Scalar'),
  mul_: opRef('mul_', 'Tensor'),
  mulS_: opRef('mul_', 'Scalar'),
  div: opRef('div', 'Tensor'),
  divS: opRef('div', 'Scalar'),
  divMode: opRef('div', 'Tensor_mode'),
  divSMode: opRef('div', 'Scalar_mode'),
  div_: opRef('div_', 'Tensor'),
  divS_: opRef('div_', 'Scalar'),
  pow: opRef('pow', 'Tensor_Tensor'),
  powS: opRef('pow', 'Tensor_Scalar'),
  powSelfS: opRef('pow', 'Scalar'),
  remainder: opRef('remainder', 'Tensor'),
  remainderS: opRef('remainder', 'Scalar'),
  fmod: opRef('fmod', 'Tensor'),
  fmodS: opRef('fmod', 'Scalar'),
  atan2: opRef('atan2'),
  maximum: opRef('maximum'),
  minimum: opRef('minimum'),
  clamp: opRef('clamp'),
  clampT: opRef('clamp', 'Tensor'),
  clamp_: opRef('clamp_'),
  lerp: opRef('lerp', 'Scalar'),
  lerpT: opRef('lerp', 'Tensor'),
  lerp_: opRef('lerp_', 'Scalar'),
  lerpT_: opRef('lerp_', 'Tensor'),
  addcmul: opRef('addcmul'),
  addcdiv: opRef('addcdiv'),
  eq: opRef('eq', 'Tensor'),
  eqS: opRef('eq', 'Scalar'),
  ne: opRef('ne', 'Tensor'),
  neS: opRef('ne', 'Scalar'),
  lt: opRef('lt', 'Tensor'),
  ltS: opRef('lt', 'Scalar'),
  le: opRef('le', 'Tensor'),
  leS: opRef('le', 'Scalar'),
  gt: opRef('gt', 'Tensor'),
  gtS: opRef('gt', 'Scalar'),
  ge: opRef('ge', 'Tensor'),
  geS: opRef('ge', 'Scalar'),
  logicalAnd: opRef('logical_and'),
  logicalOr: opRef('logical_or'),
  logicalXor: opRef('logical_xor'),
  logicalNot: opRef('logical_not'),
  bitwiseAnd: opRef('bitwise_and', 'Tensor'),
  bitwiseOr: opRef('bitwise_or', 'Tensor'),
  isnan: opRef('isnan'),
  isinf: opRef('isinf'),
  isfinite: opRef('isfinite'),
  whereSelf: opRef('where', 'self'),
  whereScalarOther: opRef('where', 'ScalarOther'),
  whereScalarSelf: opRef('where', 'ScalarSelf'),
  whereScalar: opRef('where', 'Scalar'),
  equal: opRef('equal'),
  allclose: opRef('allclose'),
  sum: opRef('sum'),
  sumDim: opRef('sum', 'dim_IntList'),
  mean: opRef('mean'),
  meanDim: opRef('mean', 'dim'),
  prod: opRef('prod'),
  prodDim: opRef('prod', 'dim_int'),
  varCorr: opRef('var', 'correction'),
  stdCorr: opRef('std', 'correction'),
  varMean: opRef('var_mean', 'correction'),
  max: opRef('max'),
  maxDim: opRef('max', 'dim'),
  min: opRef('min'),
  minDim: opRef('min', 'dim'),
  amax: opRef('amax'),
  amin: opRef('amin'),
  argmax: opRef('argmax'),
  argmin: opRef('argmin'),
  logsumexp: opRef('logsumexp'),
  norm: opRef('linalg_vector_norm'),
  cumsum: opRef('cumsum'),
  cumprod: opRef('cumprod'),
  all: opRef('all'),
  allDim: opRef('all', 'dim'),
  any: opRef('any'),
  anyDim: opRef('any', 'dim'),
  sort: opRef('sort'),
  argsort: opRef('argsort'),
  topk: opRef('topk'),
  reshape: opRef('reshape'),
  view: opRef('view'),
  viewDtype: opRef('view', 'dtype'),
  permute: opRef('permute'),
  transpose: opRef('transpose', 'int'),
  t: opRef('t'),
  flatten: opRef('flatten', 'using_ints'),
  unflatten: opRef('unflatten', 'int'),
  squeeze: opRef('squeeze'),
  squeezeDims: opRef('squeeze', 'dims'),
  unsqueeze: opRef('unsqueeze'),
  expand: opRef('expand'),
  expandAs: opRef('expand_as'),
  repeat: opRef('repeat'),
  repeatInterleave: opRef('repeat_interleave', 'self_int'),
  slice: opRef('slice', 'Tensor'),
  select: opRef('select', 'int'),
  narrow: opRef('narrow'),
  indexSelect: opRef('index_select'),
  index: opRef('index', 'Tensor'),
  indexPut: opRef('index_put'),
  indexPut_: opRef('index_put_'),
  gather: opRef('gather'),
  scatter: opRef('scatter', 'src'),
  scatterValue: opRef('scatter', 'value'),
  scatterReduce: opRef('scatter_reduce', 'two'),
  scatterAdd: opRef('scatter_add'),
  maskedFill: opRef('masked_fill', 'Scalar'),
  maskedFillT: opRef('masked_fill', 'Tensor'),
  maskedFill_: opRef('masked_fill_', 'Scalar'),
  maskedSelect: opRef('masked_select'),
  chunk: opRef('chunk'),
  split: opRef('split', 'Tensor'),
  splitSizes: opRef('split_with_sizes'),
  unbind: opRef('unbind', 'int'),
  flip: opRef('flip'),
  roll: opRef('roll'),
  movedim: opRef('movedim', 'int'),
  tril: opRef('tril'),
  triu: opRef('triu'),
  diagonal: opRef('diagonal'),
  matmul: opRef('matmul'),
  mm: opRef('mm'),
  bmm: opRef('bmm'),
  outer: opRef('outer'),
  contiguous: opRef('contiguous'),
  pinMemory: opRef('pin_memory'),
  isPinned: opRef('is_pinned'),
  clone: opRef('clone'),
  detach: opRef('detach'),
  detach_: opRef('detach_'),
  toDtype: opRef('to', 'dtype'),
  toDevice: opRef('to', 'device'),
  copy_: opRef('copy_'),
  fill_: opRef('fill_', 'Scalar'),
  zero_: opRef('zero_'),
  normal_: opRef('normal_'),
  uniform_: opRef('uniform_'),
  bernoulli_: opRef('bernoulli_', 'float'),
  exponential_: opRef('exponential_'),
  item: opRef('item'),
  typeAs: opRef('type_as'),
};

const UNARY = [
  'abs',
  'neg',
  'sqrt',
  'rsqrt',
  'exp',
  'exp2',
  'log',
  'log2',
  'log10',
  'log1p',
  'expm1',
  'sin',
  'cos',
  'tan',
  'asin',
  'acos',
  'atan',
  'sinh',
  'cosh',
  'tanh',
  'sigmoid',
  'sign',
  'floor',
  'ceil',
  'round',
  'trunc',
  'frac',
  'reciprocal',
  'square',
  'erf',
  'erfc',
  'erfinv',
  'relu',
  'logit',
] as const;
type UnaryName = (typeof UNARY)[number];
const UNARY_REFS = Object.fromEntries(UNARY.map((n) => [n, opRef(n)])) as Record<UnaryName, OpRef>;
const UNARY_INPLACE_REFS = Object.fromEntries(UNARY.map((n) => [n, opRef(`${n}_`)])) as Record<UnaryName, OpRef>;

export interface ToOptions {
  dtype?: DType;
  device?: Device;
  nonBlocking?: boolean;
  copy?: boolean;
}

/** A reduction's options: dims (all when absent) and whether to keep them as size 1. */
export interface ReduceOptions {
  keepdim?: boolean;
  dtype?: DType;
}

export interface VarOptions {
  /** Bessel's correction: 1 (default) for the unbiased estimate, 0 for the population one. */
  correction?: number;
  keepdim?: boolean;
}

type Dims = number | readonly number[];

function dimList(dim: Dims | undefined): number[] | undefined {
  if (dim === undefined) return undefined;
  return typeof dim === 'number' ? [dim] : [...dim];
}

/**
 * A tensor: a handle on native memory. Free it deterministically: inside a
 * tidy() scope, with `using`, or with dispose().
 */
export class Tensor implements Tracked {
  readonly [TRACKED] = true;
  /** Set by keep(): no scope will free this tensor. */
  kept = false;
  #id: number;
  #registered = false;

  /** @internal Wraps a native tensor id; use the creation functions instead. */
  constructor(id: number) {
    if (!Number.isInteger(id) || id < 0 || id > 0x7fffffff) throw new TypeError('Tensor: not a native tensor id');
    this.#id = id;
    // The GC backstop costs ~0.4 µs per tensor: armed only for tensors no
    // scope owns (scoped ones are armed if they outlive their scope).
    if (!track(this)) this.unscoped();
  }

  /** @internal Arms the GC backstop (see scope.ts, Tracked.unscoped). */
  unscoped(): void {
    if (this.#registered || !finalizerEnabled || this.#id < 0) return;
    finalizer.register(this, this.#id, this);
    this.#registered = true;
  }

  /** The native id; throws once disposed. */
  get id(): number {
    const id = this.#id;
    if (id < 0) throw new DisposedTensorError();
    return id;
  }

  get isDisposed(): boolean {
    return this.#id < 0;
  }

  /** Frees the native tensor now. Safe to call twice. */
  dispose(): void {
    const id = this.#id;
    if (id < 0) return;
    this.#id = -1;
    if (this.#registered) finalizer.unregister(this);
    native.dispose(id);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  // ---------------------------------------------------------------- metadata

  get shape(): number[] {
    return native.shape(this.id);
  }

  get dtype(): DType {
    return dtypeFromCode(native.dtype(this.id));
  }

  get device(): Device {
    return native.device(this.id) as Device;
  }

  get ndim(): number {
    return native.shape(this.id).length;
  }

  dim(): number {
    return this.ndim;
  }

  /** size() is the shape; size(d) the length of dimension d (negative counts from the end). */
  size(): number[];
  size(dim: number): number;
  size(dim?: number): number | number[] {
    const s = this.shape;
    if (dim === undefined) return s;
    const d = dim < 0 ? dim + s.length : dim;
    const n = s[d];
    if (n === undefined) throw new RangeError(`size: dim ${dim} out of range for a ${s.length}-d tensor`);
    return n;
  }

  numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  stride(): number[] {
    return native.strides(this.id);
  }

  isContiguous(): boolean {
    return (native.flags(this.id) & 2) !== 0;
  }

  get isLeaf(): boolean {
    return (native.flags(this.id) & 4) !== 0;
  }

  get isFloatingPoint(): boolean {
    return isFloatingDtype(this.dtype);
  }

  get requiresGrad(): boolean {
    return (native.flags(this.id) & 1) !== 0;
  }

  set requiresGrad(flag: boolean) {
    this.requiresGrad_(flag);
  }

  requiresGrad_(flag = true): this {
    // The native side checks turning it on; a non-leaf cannot turn it off either
    // (it would silently stay on), as PyTorch says.
    if (!flag && !this.isLeaf)
      throw new TypeError('requiresGrad can only be changed on leaf tensors; use detach() for a tensor without grad');
    try {
      native.setRequiresGrad(this.id, flag);
    } catch (e) {
      rethrowNative(e);
    }
    return this;
  }

  /** The accumulated gradient (a new handle each read), or null. */
  get grad(): Tensor | null {
    if ((native.flags(this.id) & 8) === 0) return null;
    return wrapMaybe(native.getGrad(this.id));
  }

  set grad(g: Tensor | null) {
    if (g !== null && !(g instanceof Tensor)) throw new TypeError('grad: expected a Tensor or null');
    native.setGrad(this.id, g === null ? null : g.id);
  }

  /** Name of the autograd node that created this tensor, or null for a leaf. */
  get gradFn(): string | null {
    return native.gradFnName(this.id);
  }

  retainGrad(): this {
    native.retainGrad(this.id);
    return this;
  }

  /** Backpropagates from this tensor (a scalar unless gradient is given). */
  backward(gradient?: Tensor, options: { retainGraph?: boolean; createGraph?: boolean; inputs?: Tensor[] } = {}): void {
    try {
      native.backward(
        [this.id],
        gradient ? [gradient.id] : null,
        options.retainGraph ?? null,
        options.createGraph ?? false,
        options.inputs ? ids(options.inputs) : null,
      );
    } catch (e) {
      rethrowNative(e);
    }
  }

  // ------------------------------------------------------------------- data

  /** The elements in row-major order (int64 as BigInt64Array; 16-bit floats widened to Float32Array). */
  toTypedArray(): AnyTypedArray {
    checkCaptureSafe('reading a tensor to the host (toTypedArray/toArray)');
    try {
      return this.#decode(native.toBuffer(this.id));
    } catch (e) {
      rethrowNative(e);
    }
  }

  /** As toTypedArray, without blocking the event loop on a device copy. */
  toTypedArrayAsync(): Promise<AnyTypedArray> {
    // Checked before the promise exists, so that a graphed body stops here.
    checkCaptureSafe('reading a tensor to the host (toTypedArrayAsync)');
    return this.#readAsync();
  }

  async #readAsync(): Promise<AnyTypedArray> {
    const dtype = this.dtype;
    let buffer: ArrayBuffer;
    try {
      buffer = await native.toBufferAsync(this.id);
    } catch (e) {
      rethrowNative(e);
    }
    return this.#decodeAs(dtype, buffer);
  }

  #decode(buffer: ArrayBuffer): AnyTypedArray {
    return this.#decodeAs(this.dtype, buffer);
  }

  #decodeAs(dtype: DType, buffer: ArrayBuffer): AnyTypedArray {
    const raw = typedArrayOf(dtype, buffer);
    if (dtype === 'float16' || dtype === 'bfloat16') {
      const f = dtype === 'float16' ? float16BitsToNumber : bfloat16BitsToFloat32;
      const out = new Float32Array(raw.length);
      for (let i = 0; i < raw.length; i++) out[i] = f(raw[i] as number);
      return out;
    }
    return raw;
  }

  /** Nested arrays of numbers (booleans for bool tensors), as PyTorch's tolist(). */
  toArray(): NestedArray {
    return this.#nest(this.toTypedArray(), this.shape, this.dtype);
  }

  toArrayAsync(): Promise<NestedArray> {
    const shape = this.shape;
    const dtype = this.dtype;
    return this.toTypedArrayAsync().then((data) => this.#nest(data, shape, dtype));
  }

  #nest(data: AnyTypedArray, shape: number[], dtype: DType): NestedArray {
    const at = (i: number): number | boolean => {
      const v = data[i] as number | bigint;
      if (dtype === 'bool') return v !== 0;
      return typeof v === 'bigint' ? Number(v) : v;
    };
    if (shape.length === 0) return at(0);
    let offset = 0;
    const build = (d: number): NestedArray[] => {
      const n = shape[d]!;
      const out: NestedArray[] = new Array<NestedArray>(n);
      for (let i = 0; i < n; i++) out[i] = d === shape.length - 1 ? at(offset++) : build(d + 1);
      return out;
    };
    return build(0);
  }

  /** The single element of a one-element tensor, as a number (or boolean). */
  item(): number {
    checkCaptureSafe('item()');
    const r = call(A.item, this.id);
    return typeof r === 'boolean' ? Number(r) : (r as number);
  }

  itemAsync(): Promise<number> {
    if (this.numel() !== 1)
      return Promise.reject(new TypeError(`item: tensor has ${this.numel()} elements, expected 1`));
    return this.toTypedArrayAsync().then((data) => {
      const v = data[0] as number | bigint;
      return typeof v === 'bigint' ? Number(v) : v;
    });
  }

  toString(): string {
    if (this.isDisposed) return 'Tensor(<disposed>)';
    const head = `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}, device=${this.device}`;
    if (this.numel() > 64) return `${head})`;
    return `${head}, ${JSON.stringify(this.toArray())})`;
  }

  // ------------------------------------------------------------ conversions

  /** to('cuda'), to('float16'), or to({ device, dtype }). Returns this tensor when nothing changes. */
  to(target: Device | DType | ToOptions): Tensor {
    const opts: ToOptions =
      typeof target === 'string'
        ? isDeviceString(target)
          ? { device: target as Device }
          : { dtype: target as DType }
        : target;
    if (opts.device !== undefined) {
      checkDevice(opts.device);
      if (inCaptureRegion() && opts.device.split(':')[0] !== this.device.split(':')[0])
        checkCaptureSafe(`copying a tensor from ${this.device} to ${opts.device}`);
      return wrap(
        call(
          A.toDevice,
          this.id,
          opts.device,
          optCode(opts.dtype ?? this.dtype),
          opts.nonBlocking ?? false,
          opts.copy ?? false,
        ),
      );
    }
    if (opts.dtype !== undefined)
      return wrap(call(A.toDtype, this.id, dtypeCode(opts.dtype), opts.nonBlocking ?? false, opts.copy ?? false));
    return wrap(call(A.toDtype, this.id, dtypeCode(this.dtype), false, opts.copy ?? false));
  }

  cpu(): Tensor {
    return this.to({ device: 'cpu' });
  }

  cuda(index?: number): Tensor {
    return this.to({ device: index === undefined ? 'cuda' : `cuda:${index}` });
  }

  float(): Tensor {
    return this.to({ dtype: 'float32' });
  }

  double(): Tensor {
    return this.to({ dtype: 'float64' });
  }

  half(): Tensor {
    return this.to({ dtype: 'float16' });
  }

  bfloat16(): Tensor {
    return this.to({ dtype: 'bfloat16' });
  }

  long(): Tensor {
    return this.to({ dtype: 'int64' });
  }

  int(): Tensor {
    return this.to({ dtype: 'int32' });
  }

  bool(): Tensor {
    return this.to({ dtype: 'bool' });
  }

  typeAs(other: Tensor): Tensor {
    return wrap(call(A.typeAs, this.id, other.id));
  }

  contiguous(): Tensor {
    return wrap(call(A.contiguous, this.id));
  }

  /**
   * A copy in page-locked host memory (needs CUDA): copies from it to a GPU
   * with { nonBlocking: true } do not wait for the device.
   */
  pinMemory(): Tensor {
    return wrap(call(A.pinMemory, this.id, null));
  }

  /** Whether this tensor lives in page-locked host memory. */
  isPinned(): boolean {
    return call(A.isPinned, this.id, null) as boolean;
  }

  clone(): Tensor {
    return wrap(call(A.clone, this.id));
  }

  /** A new handle on the same data, cut from the autograd graph. */
  detach(): Tensor {
    return wrap(call(A.detach, this.id));
  }

  detach_(): this {
    return this.#inplace(call(A.detach_, this.id));
  }

  // In-place ops return an alias handle of self: free it and return this.
  #inplace(r: NativeResult): this {
    if (typeof r === 'number' && r >= 0) native.dispose(r);
    return this;
  }

  // ------------------------------------------------------------- arithmetic

  add(other: Tensor | number, alpha?: number): Tensor {
    return typeof other === 'number'
      ? wrap(call(A.addS, this.id, other, alpha))
      : wrap(call(A.add, this.id, other.id, alpha));
  }

  add_(other: Tensor | number, alpha?: number): this {
    return this.#inplace(
      typeof other === 'number' ? call(A.addS_, this.id, other, alpha) : call(A.add_, this.id, other.id, alpha),
    );
  }

  sub(other: Tensor | number, alpha?: number): Tensor {
    return typeof other === 'number'
      ? wrap(call(A.subS, this.id, other, alpha))
      : wrap(call(A.sub, this.id, other.id, alpha));
  }

  sub_(other: Tensor | number, alpha?: number): this {
    return this.#inplace(
      typeof other === 'number' ? call(A.subS_, this.id, other, alpha) : call(A.sub_, this.id, other.id, alpha),
    );
  }

  /** other - this (Python's `other - t` for a number other). */
  rsub(other: number): Tensor {
    return wrap(call(A.rsubS, this.id, other));
  }

  mul(other: Tensor | number): Tensor {
    return typeof other === 'number' ? wrap(call(A.mulS, this.id, other)) : wrap(call(A.mul, this.id, other.id));
  }

  mul_(other: Tensor | number): this {
    return this.#inplace(typeof other === 'number' ? call(A.mulS_, this.id, other) : call(A.mul_, this.id, other.id));
  }

  /** True division, or rounded with roundingMode 'trunc' | 'floor'. */
  div(other: Tensor | number, roundingMode?: 'trunc' | 'floor'): Tensor {
    if (roundingMode !== undefined)
      return typeof other === 'number'
        ? wrap(call(A.divSMode, this.id, other, roundingMode))
        : wrap(call(A.divMode, this.id, other.id, roundingMode));
    return typeof other === 'number' ? wrap(call(A.divS, this.id, other)) : wrap(call(A.div, this.id, other.id));
  }

  div_(other: Tensor | number): this {
    return this.#inplace(typeof other === 'number' ? call(A.divS_, this.id, other) : call(A.div_, this.id, other.id));
  }

  pow(exponent: Tensor | number): Tensor {
    return typeof exponent === 'number'
      ? wrap(call(A.powS, this.id, exponent))
      : wrap(call(A.pow, this.id, exponent.id));
  }

  remainder(other: Tensor | number): Tensor {
    return typeof other === 'number'
      ? wrap(call(A.remainderS, this.id, other))
      : wrap(call(A.remainder, this.id, other.id));
  }

  fmod(other: Tensor | number): Tensor {
    return typeof other === 'number' ? wrap(call(A.fmodS, this.id, other)) : wrap(call(A.fmod, this.id, other.id));
  }

  atan2(other: Tensor): Tensor {
    return wrap(call(A.atan2, this.id, other.id));
  }

  maximum(other: Tensor): Tensor {
    return wrap(call(A.maximum, this.id, other.id));
  }

  minimum(other: Tensor): Tensor {
    return wrap(call(A.minimum, this.id, other.id));
  }

  /** Clamps to [min, max]; either bound may be null (numbers or tensors). */
  clamp(min?: number | Tensor | null, max?: number | Tensor | null): Tensor {
    if (min instanceof Tensor || max instanceof Tensor) {
      const lo = min instanceof Tensor ? min.id : min == null ? null : undefined;
      const hi = max instanceof Tensor ? max.id : max == null ? null : undefined;
      if (lo === undefined || hi === undefined) throw new TypeError('clamp: give both bounds as tensors (or null)');
      return wrap(call(A.clampT, this.id, lo, hi));
    }
    return wrap(call(A.clamp, this.id, min ?? null, max ?? null));
  }

  clamp_(min?: number | null, max?: number | null): this {
    return this.#inplace(call(A.clamp_, this.id, min ?? null, max ?? null));
  }

  clampMin(min: number): Tensor {
    return this.clamp(min, null);
  }

  clampMax(max: number): Tensor {
    return this.clamp(null, max);
  }

  /** this + weight * (end - this). */
  lerp(end: Tensor, weight: number | Tensor): Tensor {
    return typeof weight === 'number'
      ? wrap(call(A.lerp, this.id, end.id, weight))
      : wrap(call(A.lerpT, this.id, end.id, weight.id));
  }

  lerp_(end: Tensor, weight: number | Tensor): this {
    return this.#inplace(
      typeof weight === 'number' ? call(A.lerp_, this.id, end.id, weight) : call(A.lerpT_, this.id, end.id, weight.id),
    );
  }

  /** this + value * t1 * t2. */
  addcmul(t1: Tensor, t2: Tensor, value = 1): Tensor {
    return wrap(call(A.addcmul, this.id, t1.id, t2.id, value));
  }

  /** In place: this += value * t1 * t2. */
  addcmul_(t1: Tensor, t2: Tensor, value = 1): this {
    return this.#inplace(call(opRef('addcmul_'), this.id, t1.id, t2.id, value));
  }

  /** In place: this += value * t1 / t2. */
  addcdiv_(t1: Tensor, t2: Tensor, value = 1): this {
    return this.#inplace(call(opRef('addcdiv_'), this.id, t1.id, t2.id, value));
  }

  /** this + value * t1 / t2. */
  addcdiv(t1: Tensor, t2: Tensor, value = 1): Tensor {
    return wrap(call(A.addcdiv, this.id, t1.id, t2.id, value));
  }

  #unary(name: UnaryName): Tensor {
    return wrap(call(UNARY_REFS[name], this.id));
  }

  #unary_(name: UnaryName): this {
    return this.#inplace(call(UNARY_INPLACE_REFS[name], this.id));
  }

  abs(): Tensor {
    return this.#unary('abs');
  }
  neg(): Tensor {
    return this.#unary('neg');
  }
  neg_(): this {
    return this.#unary_('neg');
  }
  sqrt(): Tensor {
    return this.#unary('sqrt');
  }
  sqrt_(): this {
    return this.#unary_('sqrt');
  }
  rsqrt(): Tensor {
    return this.#unary('rsqrt');
  }
  exp(): Tensor {
    return this.#unary('exp');
  }
  exp_(): this {
    return this.#unary_('exp');
  }
  exp2(): Tensor {
    return this.#unary('exp2');
  }
  log(): Tensor {
    return this.#unary('log');
  }
  log_(): this {
    return this.#unary_('log');
  }
  log2(): Tensor {
    return this.#unary('log2');
  }
  log10(): Tensor {
    return this.#unary('log10');
  }
  log1p(): Tensor {
    return this.#unary('log1p');
  }
  expm1(): Tensor {
    return this.#unary('expm1');
  }
  sin(): Tensor {
    return this.#unary('sin');
  }
  cos(): Tensor {
    return this.#unary('cos');
  }
  tan(): Tensor {
    return this.#unary('tan');
  }
  asin(): Tensor {
    return this.#unary('asin');
  }
  acos(): Tensor {
    return this.#unary('acos');
  }
  atan(): Tensor {
    return this.#unary('atan');
  }
  sinh(): Tensor {
    return this.#unary('sinh');
  }
  cosh(): Tensor {
    return this.#unary('cosh');
  }
  tanh(): Tensor {
    return this.#unary('tanh');
  }
  sigmoid(): Tensor {
    return this.#unary('sigmoid');
  }
  sign(): Tensor {
    return this.#unary('sign');
  }
  floor(): Tensor {
    return this.#unary('floor');
  }
  ceil(): Tensor {
    return this.#unary('ceil');
  }
  round(): Tensor {
    return this.#unary('round');
  }
  trunc(): Tensor {
    return this.#unary('trunc');
  }
  frac(): Tensor {
    return this.#unary('frac');
  }
  reciprocal(): Tensor {
    return this.#unary('reciprocal');
  }
  square(): Tensor {
    return this.#unary('square');
  }
  erf(): Tensor {
    return this.#unary('erf');
  }
  erfc(): Tensor {
    return this.#unary('erfc');
  }
  erfinv(): Tensor {
    return this.#unary('erfinv');
  }
  relu(): Tensor {
    return this.#unary('relu');
  }
  relu_(): this {
    return this.#unary_('relu');
  }
  logit(): Tensor {
    return this.#unary('logit');
  }

  // ------------------------------------------------------------ comparisons

  eq(other: Tensor | number): Tensor {
    return typeof other === 'number' ? wrap(call(A.eqS, this.id, other)) : wrap(call(A.eq, this.id, other.id));
  }
  ne(other: Tensor | number): Tensor {
    return typeof other === 'number' ? wrap(call(A.neS, this.id, other)) : wrap(call(A.ne, this.id, other.id));
  }
  lt(other: Tensor | number): Tensor {
    return typeof other === 'number' ? wrap(call(A.ltS, this.id, other)) : wrap(call(A.lt, this.id, other.id));
  }
  le(other: Tensor | number): Tensor {
    return typeof other === 'number' ? wrap(call(A.leS, this.id, other)) : wrap(call(A.le, this.id, other.id));
  }
  gt(other: Tensor | number): Tensor {
    return typeof other === 'number' ? wrap(call(A.gtS, this.id, other)) : wrap(call(A.gt, this.id, other.id));
  }
  ge(other: Tensor | number): Tensor {
    return typeof other === 'number' ? wrap(call(A.geS, this.id, other)) : wrap(call(A.ge, this.id, other.id));
  }
  logicalAnd(other: Tensor): Tensor {
    return wrap(call(A.logicalAnd, this.id, other.id));
  }
  logicalOr(other: Tensor): Tensor {
    return wrap(call(A.logicalOr, this.id, other.id));
  }
  logicalXor(other: Tensor): Tensor {
    return wrap(call(A.logicalXor, this.id, other.id));
  }
  logicalNot(): Tensor {
    return wrap(call(A.logicalNot, this.id));
  }
  bitwiseAnd(other: Tensor): Tensor {
    return wrap(call(A.bitwiseAnd, this.id, other.id));
  }
  bitwiseOr(other: Tensor): Tensor {
    return wrap(call(A.bitwiseOr, this.id, other.id));
  }
  isnan(): Tensor {
    return wrap(call(A.isnan, this.id));
  }
  isinf(): Tensor {
    return wrap(call(A.isinf, this.id));
  }
  isfinite(): Tensor {
    return wrap(call(A.isfinite, this.id));
  }
  /** True when both have the same shape and elements. */
  equal(other: Tensor): boolean {
    return call(A.equal, this.id, other.id) as boolean;
  }
  allclose(other: Tensor, rtol = 1e-5, atol = 1e-8, equalNan = false): boolean {
    return call(A.allclose, this.id, other.id, rtol, atol, equalNan) as boolean;
  }

  // ------------------------------------------------------------- reductions

  /** Sum of all elements, or over dim(s). */
  sum(dim?: Dims, options: ReduceOptions = {}): Tensor {
    if (dim === undefined) return wrap(call(A.sum, this.id, optCode(options.dtype)));
    return wrap(call(A.sumDim, this.id, dimList(dim), options.keepdim ?? false, optCode(options.dtype)));
  }

  mean(dim?: Dims, options: ReduceOptions = {}): Tensor {
    if (dim === undefined) return wrap(call(A.mean, this.id, optCode(options.dtype)));
    return wrap(call(A.meanDim, this.id, dimList(dim), options.keepdim ?? false, optCode(options.dtype)));
  }

  prod(dim?: number, options: ReduceOptions = {}): Tensor {
    if (dim === undefined) return wrap(call(A.prod, this.id, optCode(options.dtype)));
    return wrap(call(A.prodDim, this.id, dim, options.keepdim ?? false, optCode(options.dtype)));
  }

  /** Variance with Bessel's correction (correction 1) unless told otherwise. */
  var(dim?: Dims, options: VarOptions = {}): Tensor {
    return wrap(call(A.varCorr, this.id, dimList(dim) ?? null, options.correction ?? 1, options.keepdim ?? false));
  }

  std(dim?: Dims, options: VarOptions = {}): Tensor {
    return wrap(call(A.stdCorr, this.id, dimList(dim) ?? null, options.correction ?? 1, options.keepdim ?? false));
  }

  /** [variance, mean] in one pass. */
  varMean(dim?: Dims, options: VarOptions = {}): [Tensor, Tensor] {
    const r = call(A.varMean, this.id, dimList(dim) ?? null, options.correction ?? 1, options.keepdim ?? false);
    return wrapList(r) as [Tensor, Tensor];
  }

  /** max() of all elements; max(dim) gives { values, indices }. */
  max(): Tensor;
  max(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  max(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return wrap(call(A.max, this.id));
    const [values, indices] = wrapList(call(A.maxDim, this.id, dim, keepdim)) as [Tensor, Tensor];
    return { values, indices };
  }

  min(): Tensor;
  min(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  min(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return wrap(call(A.min, this.id));
    const [values, indices] = wrapList(call(A.minDim, this.id, dim, keepdim)) as [Tensor, Tensor];
    return { values, indices };
  }

  amax(dim: Dims = [], keepdim = false): Tensor {
    return wrap(call(A.amax, this.id, dimList(dim), keepdim));
  }

  amin(dim: Dims = [], keepdim = false): Tensor {
    return wrap(call(A.amin, this.id, dimList(dim), keepdim));
  }

  argmax(dim?: number, keepdim = false): Tensor {
    return wrap(call(A.argmax, this.id, dim ?? null, keepdim));
  }

  argmin(dim?: number, keepdim = false): Tensor {
    return wrap(call(A.argmin, this.id, dim ?? null, keepdim));
  }

  logsumexp(dim: Dims, keepdim = false): Tensor {
    return wrap(call(A.logsumexp, this.id, dimList(dim), keepdim));
  }

  /** Vector p-norm over all elements or dim(s) (torch.linalg.vector_norm). */
  norm(p = 2, dim?: Dims, keepdim = false): Tensor {
    return wrap(call(A.norm, this.id, p, dimList(dim) ?? null, keepdim));
  }

  cumsum(dim: number, dtype?: DType): Tensor {
    return wrap(call(A.cumsum, this.id, dim, optCode(dtype)));
  }

  cumprod(dim: number, dtype?: DType): Tensor {
    return wrap(call(A.cumprod, this.id, dim, optCode(dtype)));
  }

  all(dim?: number, keepdim = false): Tensor {
    return dim === undefined ? wrap(call(A.all, this.id)) : wrap(call(A.allDim, this.id, dim, keepdim));
  }

  any(dim?: number, keepdim = false): Tensor {
    return dim === undefined ? wrap(call(A.any, this.id)) : wrap(call(A.anyDim, this.id, dim, keepdim));
  }

  sort(dim = -1, descending = false): { values: Tensor; indices: Tensor } {
    const [values, indices] = wrapList(call(A.sort, this.id, dim, descending)) as [Tensor, Tensor];
    return { values, indices };
  }

  argsort(dim = -1, descending = false): Tensor {
    return wrap(call(A.argsort, this.id, dim, descending));
  }

  topk(k: number, dim = -1, largest = true, sorted = true): { values: Tensor; indices: Tensor } {
    const [values, indices] = wrapList(call(A.topk, this.id, k, dim, largest, sorted)) as [Tensor, Tensor];
    return { values, indices };
  }

  // -------------------------------------------------------- shape and views

  reshape(...shape: number[] | [readonly number[]]): Tensor {
    return wrap(call(A.reshape, this.id, flatShape(shape)));
  }

  view(...shape: number[] | [readonly number[]]): Tensor {
    return wrap(call(A.view, this.id, flatShape(shape)));
  }

  /** Reinterprets the bytes as another dtype of the same element size. */
  viewAs(dtype: DType): Tensor {
    return wrap(call(A.viewDtype, this.id, dtypeCode(dtype)));
  }

  permute(...dims: number[] | [readonly number[]]): Tensor {
    return wrap(call(A.permute, this.id, flatShape(dims)));
  }

  transpose(dim0: number, dim1: number): Tensor {
    return wrap(call(A.transpose, this.id, dim0, dim1));
  }

  /** Transpose of a matrix (0-d and 1-d tensors are returned as they are). */
  t(): Tensor {
    return wrap(call(A.t, this.id));
  }

  /** The matrix transpose of the last two dimensions (PyTorch's .mT). */
  get mT(): Tensor {
    return this.transpose(-2, -1);
  }

  flatten(startDim = 0, endDim = -1): Tensor {
    return wrap(call(A.flatten, this.id, startDim, endDim));
  }

  unflatten(dim: number, sizes: readonly number[]): Tensor {
    return wrap(call(A.unflatten, this.id, dim, [...sizes]));
  }

  squeeze(dim?: Dims): Tensor {
    return dim === undefined ? wrap(call(A.squeeze, this.id)) : wrap(call(A.squeezeDims, this.id, dimList(dim)));
  }

  unsqueeze(dim: number): Tensor {
    return wrap(call(A.unsqueeze, this.id, dim));
  }

  /** Broadcasts to shape (-1 keeps a dimension). */
  expand(...shape: number[] | [readonly number[]]): Tensor {
    return wrap(call(A.expand, this.id, flatShape(shape), false));
  }

  expandAs(other: Tensor): Tensor {
    return wrap(call(A.expandAs, this.id, other.id));
  }

  repeat(...repeats: number[] | [readonly number[]]): Tensor {
    return wrap(call(A.repeat, this.id, flatShape(repeats)));
  }

  repeatInterleave(repeats: number, dim?: number): Tensor {
    return wrap(call(A.repeatInterleave, this.id, repeats, dim ?? null));
  }

  /** Python's t[..., start:stop:step, ...] along one dim (a view). */
  slice(dim: number, start?: number | null, stop?: number | null, step = 1): Tensor {
    if (step <= 0) throw new RangeError('slice: step must be positive (PyTorch has no negative steps; use flip)');
    return wrap(call(A.slice, this.id, dim, start ?? null, stop ?? null, step));
  }

  /** t[..., index, ...] along one dim: removes the dim (a view). */
  select(dim: number, index: number): Tensor {
    return wrap(call(A.select, this.id, dim, index));
  }

  narrow(dim: number, start: number, length: number): Tensor {
    return wrap(call(A.narrow, this.id, dim, start, length));
  }

  /**
   * NumPy/PyTorch indexing, one item per dimension: a number selects (removing
   * the dim), ':' or slice(a, b, s) slices, null inserts a new dim, '...' skips
   * the dims needed, and a Tensor (int64 indices or a bool mask) indexes
   * advanced-style. t.index(0, ':', slice(1, -1)) is Python's t[0, :, 1:-1].
   */
  index(...items: IndexItem[]): Tensor {
    const { view, advanced, temps } = this.#basicIndex(items);
    if (advanced.length === 0) return view;
    try {
      const list: (number | null)[] = [];
      for (const { dim, index } of advanced) {
        while (list.length < dim) list.push(null);
        list[dim] = index.id;
      }
      return wrap(call(A.index, view.id, list));
    } finally {
      view.dispose();
      for (const t of temps) t.dispose();
    }
  }

  /** Python's t[items] = value, in place. */
  indexPut_(items: IndexItem[], value: Tensor | number): this {
    const { view, advanced, temps } = this.#basicIndex(items);
    try {
      if (advanced.length === 0) {
        if (typeof value === 'number') view.fill_(value);
        else view.copy_(value);
        return this;
      }
      const list: (number | null)[] = [];
      for (const { dim, index } of advanced) {
        while (list.length < dim) list.push(null);
        list[dim] = index.id;
      }
      if (typeof value === 'number') {
        const v = new Tensor(
          call(opRef('scalar_tensor'), value, dtypeCode(view.dtype), undefined, view.device) as number,
        );
        try {
          this.#inplace(call(A.indexPut_, view.id, list, v.id, false));
        } finally {
          v.dispose();
        }
      } else {
        this.#inplace(call(A.indexPut_, view.id, list, value.id, false));
      }
      return this;
    } finally {
      view.dispose();
      for (const t of temps) t.dispose();
    }
  }

  #basicIndex(items: IndexItem[]): { view: Tensor; advanced: { dim: number; index: Tensor }[]; temps: Tensor[] } {
    const ndim = this.ndim;
    // A bool mask consumes as many dims as it has; a 0-d bool mask consumes none.
    const consumed = items.reduce<number>(
      (n, it) => n + (it === null || it === '...' ? 0 : it instanceof Tensor && it.dtype === 'bool' ? it.ndim : 1),
      0,
    );
    if (items.filter((it) => it === '...').length > 1) throw new TypeError("index: at most one '...'");
    if (consumed > ndim) throw new RangeError(`index: ${consumed} indices for a ${ndim}-d tensor`);
    let view = this.alias();
    let dim = 0;
    let maskExtra = 0;
    const advanced: { dim: number; index: Tensor }[] = [];
    const temps: Tensor[] = [];
    const replace = (next: Tensor): void => {
      view.dispose();
      view = next;
    };
    try {
      for (const it of items) {
        if (it === '...') {
          dim += ndim - consumed;
        } else if (it === null) {
          replace(view.unsqueeze(dim));
          dim++;
        } else if (typeof it === 'number') {
          if (!Number.isInteger(it)) throw new TypeError(`index: ${it} is not an integer`);
          replace(view.select(dim, it));
        } else if (it === ':') {
          dim++;
        } else if (it instanceof Tensor && it.dtype === 'bool' && it.ndim === 0) {
          // Python's t[True] / t[False]: a new dim of size 1, kept or emptied
          // by a 1-element mask (ATen's index does not take a 0-d mask).
          replace(view.unsqueeze(dim));
          const m = it.reshape(1);
          temps.push(m);
          advanced.push({ dim: dim - maskExtra, index: m });
          dim++;
        } else if (it instanceof Tensor) {
          // ATen's index list has one entry per index, and expands a k-d bool
          // mask into k index tensors: its position is dim less the extra dims
          // of the masks before it.
          advanced.push({ dim: dim - maskExtra, index: it });
          const used = it.dtype === 'bool' ? it.ndim : 1;
          maskExtra += used - 1;
          dim += used;
        } else {
          replace(view.slice(dim, it.start, it.stop, it.step ?? 1));
          dim++;
        }
      }
    } catch (e) {
      view.dispose();
      for (const t of temps) t.dispose();
      throw e;
    }
    return { view, advanced, temps };
  }

  /** A new handle on the same data that stays in the autograd graph (aten::alias). */
  alias(): Tensor {
    return wrap(call(opRef('alias'), this.id));
  }

  indexSelect(dim: number, index: Tensor): Tensor {
    return wrap(call(A.indexSelect, this.id, dim, index.id));
  }

  gather(dim: number, index: Tensor): Tensor {
    return wrap(call(A.gather, this.id, dim, index.id, false));
  }

  /** Out-of-place scatter: src (or a number) written at index along dim. */
  scatter(dim: number, index: Tensor, src: Tensor | number): Tensor {
    return typeof src === 'number'
      ? wrap(call(A.scatterValue, this.id, dim, index.id, src))
      : wrap(call(A.scatter, this.id, dim, index.id, src.id));
  }

  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    return wrap(call(A.scatterAdd, this.id, dim, index.id, src.id));
  }

  scatterReduce(
    dim: number,
    index: Tensor,
    src: Tensor,
    reduce: 'sum' | 'prod' | 'mean' | 'amax' | 'amin',
    includeSelf = true,
  ): Tensor {
    return wrap(call(A.scatterReduce, this.id, dim, index.id, src.id, reduce, includeSelf));
  }

  maskedFill(mask: Tensor, value: number | Tensor): Tensor {
    return typeof value === 'number'
      ? wrap(call(A.maskedFill, this.id, mask.id, value))
      : wrap(call(A.maskedFillT, this.id, mask.id, value.id));
  }

  maskedFill_(mask: Tensor, value: number): this {
    return this.#inplace(call(A.maskedFill_, this.id, mask.id, value));
  }

  maskedSelect(mask: Tensor): Tensor {
    return wrap(call(A.maskedSelect, this.id, mask.id));
  }

  chunk(chunks: number, dim = 0): Tensor[] {
    return wrapList(call(A.chunk, this.id, chunks, dim));
  }

  /** Splits into pieces of splitSize (or of the given sizes) along dim. */
  split(splitSize: number | readonly number[], dim = 0): Tensor[] {
    return typeof splitSize === 'number'
      ? wrapList(call(A.split, this.id, splitSize, dim))
      : wrapList(call(A.splitSizes, this.id, [...splitSize], dim));
  }

  unbind(dim = 0): Tensor[] {
    return wrapList(call(A.unbind, this.id, dim));
  }

  flip(dims: Dims): Tensor {
    return wrap(call(A.flip, this.id, dimList(dims)));
  }

  roll(shifts: Dims, dims?: Dims): Tensor {
    return wrap(call(A.roll, this.id, dimList(shifts), dimList(dims) ?? []));
  }

  movedim(source: number, destination: number): Tensor {
    return wrap(call(A.movedim, this.id, source, destination));
  }

  tril(diagonal = 0): Tensor {
    return wrap(call(A.tril, this.id, diagonal));
  }

  triu(diagonal = 0): Tensor {
    return wrap(call(A.triu, this.id, diagonal));
  }

  diagonal(offset = 0, dim1 = 0, dim2 = 1): Tensor {
    return wrap(call(A.diagonal, this.id, offset, dim1, dim2));
  }

  // --------------------------------------------------------- linear algebra

  matmul(other: Tensor): Tensor {
    return wrap(call(A.matmul, this.id, other.id));
  }

  mm(other: Tensor): Tensor {
    return wrap(call(A.mm, this.id, other.id));
  }

  bmm(other: Tensor): Tensor {
    return wrap(call(A.bmm, this.id, other.id));
  }

  outer(other: Tensor): Tensor {
    return wrap(call(A.outer, this.id, other.id));
  }

  // ------------------------------------------------------------ in place

  copy_(src: Tensor, nonBlocking = false): this {
    if (inCaptureRegion() && src.device.split(':')[0] !== this.device.split(':')[0])
      checkCaptureSafe(`copying a tensor from ${src.device} into one on ${this.device}`);
    return this.#inplace(call(A.copy_, this.id, src.id, nonBlocking));
  }

  fill_(value: number): this {
    return this.#inplace(call(A.fill_, this.id, value));
  }

  zero_(): this {
    return this.#inplace(call(A.zero_, this.id));
  }

  normal_(mean = 0, std = 1, generator?: { readonly handle: number }): this {
    return this.#inplace(call(A.normal_, this.id, mean, std, generator?.handle));
  }

  uniform_(from = 0, to = 1, generator?: { readonly handle: number }): this {
    return this.#inplace(call(A.uniform_, this.id, from, to, generator?.handle));
  }

  bernoulli_(p = 0.5, generator?: { readonly handle: number }): this {
    return this.#inplace(call(A.bernoulli_, this.id, p, generator?.handle));
  }

  exponential_(lambd = 1, generator?: { readonly handle: number }): this {
    return this.#inplace(call(A.exponential_, this.id, lambd, generator?.handle));
  }
}

function isDeviceString(s: string): boolean {
  return s === 'cpu' || s === 'meta' || s === 'cuda' || s.startsWith('cuda:');
}

/** Accepts f(2, 3) and f([2, 3]). */
export function flatShape(args: number[] | [readonly number[]]): number[] {
  if (args.length === 1 && Array.isArray(args[0])) return [...(args[0] as readonly number[])];
  return args as number[];
}

export { wrap as _wrap, wrapList as _wrapList, wrapMaybe as _wrapMaybe, ids as _ids };
