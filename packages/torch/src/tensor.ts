// The Tensor class: a handle on a libtorch tensor, with PyTorch's methods
// (camelCased). The methods that are one ATen call by the naming rule are
// generated (generated/tensor-methods.ts, the base class); what is here is not
// mechanical: metadata, data access, conversions, options objects, indexing, and
// ops whose overload depends on more than one argument.
import { checkDevice, type Device } from './device.js';
import {
  bfloat16BitsToFloat32,
  dtypeFromCode,
  float16BitsToNumber,
  isFloatingDtype,
  typedArrayOf,
  type AnyTypedArray,
  type DType,
} from './dtype.js';
import { checkCaptureSafe, inCaptureRegion } from './capture.js';
import { DisposedTensorError, rethrowNative } from './errors.js';
import * as aten from './generated/aten.js';
import { TensorMethods } from './generated/tensor-methods.js';
import { native, type NativeResult } from './native.js';
import { TRACKED, _setReleaseId, track, type Tracked } from './scope.js';

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

function ids(ts: readonly Tensor[]): number[] {
  return ts.map((t) => t.id);
}

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
export class Tensor extends TensorMethods implements Tracked {
  readonly [TRACKED] = true;
  /** Set by keep(): no scope will free this tensor. */
  kept = false;
  #id: number;
  /** The GC backstop: 0 not armed, 1 waiting in Tensor.#pending, 2 registered. */
  #backstop = 0;

  // Arming the backstop (register, then unregister at dispose) costs ~0.3 µs, as
  // much as a small op, and most tensors made outside a scope are disposed in the
  // same synchronous run of JS (x.add(y).dispose()). So arming waits: #pending
  // holds them (none can be collected unarmed) until the next microtask or until
  // it fills; those disposed by then never touch the registry.
  static #pending: Tensor[] = [];
  static #armQueued = false;
  static {
    // A closing scope frees its tensors in one native call (scope.ts): this
    // marks one freed and hands over its id, without a public method to misuse.
    _setReleaseId((t) => {
      if (!(t instanceof Tensor) || t.#id < 0) return -1;
      const id = t.#id;
      t.#id = -1;
      if (t.#backstop === 2) finalizer.unregister(t);
      return id;
    });
  }

  static #armPending = (): void => {
    Tensor.#armQueued = false;
    for (const t of Tensor.#pending) {
      if (t.#id >= 0 && t.#backstop === 1) {
        finalizer.register(t, t.#id, t);
        t.#backstop = 2;
      }
    }
    Tensor.#pending.length = 0;
  };

  /** @internal Wraps a native tensor id; use the creation functions instead. */
  constructor(id: number) {
    super();
    if (!Number.isInteger(id) || id < 0 || id > 0x7fffffff) throw new TypeError('Tensor: not a native tensor id');
    this.#id = id;
    // The GC backstop is armed only for tensors no scope owns (scoped ones are
    // armed if they outlive their scope).
    if (!track(this)) this.unscoped();
  }

  /** @internal Arms the GC backstop (see scope.ts, Tracked.unscoped). */
  unscoped(): void {
    if (this.#backstop !== 0 || !finalizerEnabled || this.#id < 0) return;
    this.#backstop = 1;
    const pending = Tensor.#pending;
    pending.push(this);
    if (pending.length >= 1024) {
      Tensor.#armPending();
    } else if (!Tensor.#armQueued) {
      Tensor.#armQueued = true;
      queueMicrotask(Tensor.#armPending);
    }
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
    if (this.#backstop === 2) finalizer.unregister(this);
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
    const r = aten.item(this);
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

  override toString(): string {
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
      return aten.to$device(this, opts.device, opts.dtype ?? this.dtype, opts.nonBlocking ?? false, opts.copy ?? false);
    }
    if (opts.dtype !== undefined) return aten.to$dtype(this, opts.dtype, opts.nonBlocking ?? false, opts.copy ?? false);
    return aten.to$dtype(this, this.dtype, false, opts.copy ?? false);
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

  // ------------------------------------------------------------- arithmetic

  /** True division, or rounded with roundingMode 'trunc' | 'floor'. */
  div(other: Tensor | number, roundingMode?: 'trunc' | 'floor'): Tensor {
    if (roundingMode !== undefined)
      return typeof other === 'number'
        ? aten.div$Scalar_mode(this, other, roundingMode)
        : aten.div$Tensor_mode(this, other, roundingMode);
    return typeof other === 'number' ? aten.div$Scalar(this, other) : aten.div$Tensor(this, other);
  }

  /** Clamps to [min, max]; either bound may be null (numbers or tensors). */
  clamp(min?: number | Tensor | null, max?: number | Tensor | null): Tensor {
    if (min instanceof Tensor || max instanceof Tensor) {
      const lo = min instanceof Tensor ? min : min == null ? null : undefined;
      const hi = max instanceof Tensor ? max : max == null ? null : undefined;
      if (lo === undefined || hi === undefined) throw new TypeError('clamp: give both bounds as tensors (or null)');
      return aten.clamp$Tensor(this, lo, hi);
    }
    return aten.clamp(this, min ?? null, max ?? null);
  }

  clampMin(min: number): Tensor {
    return this.clamp(min, null);
  }

  clampMax(max: number): Tensor {
    return this.clamp(null, max);
  }

  // ------------------------------------------------------------ comparisons

  // ------------------------------------------------------------- reductions

  /** Sum of all elements, or over dim(s). */
  sum(dim?: Dims, options: ReduceOptions = {}): Tensor {
    if (dim === undefined) return aten.sum(this, options.dtype);
    return aten.sum$dim_IntList(this, dimList(dim)!, options.keepdim ?? false, options.dtype);
  }

  mean(dim?: Dims, options: ReduceOptions = {}): Tensor {
    if (dim === undefined) return aten.mean(this, options.dtype);
    return aten.mean$dim(this, dimList(dim)!, options.keepdim ?? false, options.dtype);
  }

  prod(dim?: number, options: ReduceOptions = {}): Tensor {
    if (dim === undefined) return aten.prod(this, options.dtype);
    return aten.prod$dim_int(this, dim, options.keepdim ?? false, options.dtype);
  }

  /** Variance with Bessel's correction (correction 1) unless told otherwise. */
  var(dim?: Dims, options: VarOptions = {}): Tensor {
    return aten.var$correction(this, dimList(dim) ?? null, options.correction ?? 1, options.keepdim ?? false);
  }

  std(dim?: Dims, options: VarOptions = {}): Tensor {
    return aten.std$correction(this, dimList(dim) ?? null, options.correction ?? 1, options.keepdim ?? false);
  }

  /** [variance, mean] in one pass. */
  varMean(dim?: Dims, options: VarOptions = {}): [Tensor, Tensor] {
    return aten.var_mean$correction(this, dimList(dim) ?? null, options.correction ?? 1, options.keepdim ?? false);
  }

  /** max() of all elements; max(dim) gives { values, indices }. */
  max(): Tensor;
  max(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  max(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return aten.max(this);
    const [values, indices] = aten.max$dim(this, dim, keepdim);
    return { values, indices };
  }

  min(): Tensor;
  min(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  min(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return aten.min(this);
    const [values, indices] = aten.min$dim(this, dim, keepdim);
    return { values, indices };
  }

  all(dim?: number, keepdim = false): Tensor {
    return dim === undefined ? aten.all(this) : aten.all$dim(this, dim, keepdim);
  }

  any(dim?: number, keepdim = false): Tensor {
    return dim === undefined ? aten.any(this) : aten.any$dim(this, dim, keepdim);
  }

  // -------------------------------------------------------- shape and views

  reshape(...shape: number[] | [readonly number[]]): Tensor {
    return aten.reshape(this, flatShape(shape));
  }

  view(...shape: number[] | [readonly number[]]): Tensor {
    return aten.view(this, flatShape(shape));
  }

  permute(...dims: number[] | [readonly number[]]): Tensor {
    return aten.permute(this, flatShape(dims));
  }

  /** The matrix transpose of the last two dimensions (PyTorch's .mT). */
  get mT(): Tensor {
    return this.transpose(-2, -1);
  }

  squeeze(dim?: Dims): Tensor {
    return dim === undefined ? aten.squeeze(this) : aten.squeeze$dims(this, dimList(dim)!);
  }

  /** Broadcasts to shape (-1 keeps a dimension). */
  expand(...shape: number[] | [readonly number[]]): Tensor {
    return aten.expand(this, flatShape(shape), false);
  }

  repeat(...repeats: number[] | [readonly number[]]): Tensor {
    return aten.repeat(this, flatShape(repeats));
  }

  /** Python's t[..., start:stop:step, ...] along one dim (a view). */
  slice(dim: number, start?: number | null, stop?: number | null, step = 1): Tensor {
    if (step <= 0) throw new RangeError('slice: step must be positive (PyTorch has no negative steps; use flip)');
    return aten.slice$Tensor(this, dim, start ?? null, stop ?? null, step);
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
      const list: (Tensor | null)[] = [];
      for (const { dim, index } of advanced) {
        while (list.length < dim) list.push(null);
        list[dim] = index;
      }
      return aten.index$Tensor(view, list);
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
      const list: (Tensor | null)[] = [];
      for (const { dim, index } of advanced) {
        while (list.length < dim) list.push(null);
        list[dim] = index;
      }
      if (typeof value === 'number') {
        const v = aten.scalar_tensor(value, view.dtype, undefined, view.device);
        try {
          aten.index_put_(view, list, v, false);
        } finally {
          v.dispose();
        }
      } else {
        aten.index_put_(view, list, value, false);
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

  /** Splits into pieces of splitSize (or of the given sizes) along dim. */
  split(splitSize: number | readonly number[], dim = 0): Tensor[] {
    return typeof splitSize === 'number'
      ? aten.split$Tensor(this, splitSize, dim)
      : aten.split_with_sizes(this, [...splitSize], dim);
  }

  // --------------------------------------------------------- linear algebra

  // ------------------------------------------------------------ in place

  copy_(src: Tensor, nonBlocking = false): this {
    if (inCaptureRegion() && src.device.split(':')[0] !== this.device.split(':')[0])
      checkCaptureSafe(`copying a tensor from ${src.device} into one on ${this.device}`);
    aten.copy_(this, src, nonBlocking);
    return this;
  }
}

aten._setTensorClass(Tensor);

function isDeviceString(s: string): boolean {
  return s === 'cpu' || s === 'meta' || s === 'cuda' || s.startsWith('cuda:');
}

/** Accepts f(2, 3) and f([2, 3]). */
export function flatShape(args: number[] | [readonly number[]]): number[] {
  if (args.length === 1 && Array.isArray(args[0])) return [...(args[0] as readonly number[])];
  return args as number[];
}

export { wrap as _wrap, wrapList as _wrapList, wrapMaybe as _wrapMaybe, ids as _ids };
