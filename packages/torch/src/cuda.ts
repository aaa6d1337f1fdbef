// CUDA services. On a machine without CUDA these answer plainly: isAvailable()
// is false, deviceCount() is 0, synchronize() does nothing; the rest throw an
// error saying CUDA is absent.
import { noGrad } from './autograd.js';
import { CaptureError, captureRegion, inCaptureRegion, withCaptureChecks } from './capture.js';
import { rethrowNative } from './errors.js';
import { native, type CudaMemoryStats } from './native.js';
import { keep, tidy } from './scope.js';
import type { Tensor } from './tensor.js';

export { CaptureError } from './capture.js';

function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    rethrowNative(e);
  }
}

export function isAvailable(): boolean {
  return native.info().cudaAvailable;
}

export function deviceCount(): number {
  return native.info().cudaDeviceCount;
}

/** Waits for all queued work on a device (the current one by default). */
export function synchronize(device?: number): void {
  guard(() => native.cudaSynchronize(device ?? null));
}

/** Makes `device` this process's current CUDA device (torch.cuda.set_device). */
export function setDevice(device: number): void {
  native.cudaSetDevice(device);
}

/** This thread's current CUDA device (torch.cuda.current_device). */
export function currentDevice(): number {
  return guard(() => native.cudaCurrentDevice());
}

/** Runs fn with `device` as the current CUDA device, then restores the previous one (torch.cuda.device). */
export function withDevice<T>(device: number, fn: () => T): T {
  const previous = currentDevice();
  if (previous === device) return fn();
  setDevice(device);
  try {
    return fn();
  } finally {
    setDevice(previous);
  }
}

export function memoryStats(device?: number): CudaMemoryStats {
  return guard(() => native.cudaMemoryStats(device ?? null));
}

export function memoryAllocated(device?: number): number {
  return memoryStats(device).allocatedBytes;
}

export function maxMemoryAllocated(device?: number): number {
  return memoryStats(device).allocatedBytesPeak;
}

export function resetPeakMemoryStats(device?: number): void {
  guard(() => native.cudaResetPeakStats(device ?? null));
}

/** Returns cached, unused blocks to the driver. */
export function emptyCache(): void {
  guard(() => native.cudaEmptyCache());
}

/** A CUDA stream. */
export class Stream implements Disposable {
  #handle: number;
  /** @internal */
  constructor(handle: number) {
    this.#handle = handle;
  }

  /** A new stream from libtorch's pool. */
  static create(device?: number, highPriority = false): Stream {
    return new Stream(guard(() => native.streamCreate(device ?? null, highPriority)));
  }

  static current(device?: number): Stream {
    return new Stream(guard(() => native.streamCurrent(device ?? null)));
  }

  get handle(): number {
    if (this.#handle < 0) throw new Error('Stream was disposed');
    return this.#handle;
  }

  synchronize(): void {
    guard(() => native.streamSynchronize(this.handle));
  }

  /** Makes this stream wait for the work queued on `other` so far. */
  waitStream(other: Stream): void {
    guard(() => native.streamWait(this.handle, other.handle));
  }

  dispose(): void {
    if (this.#handle >= 0) native.streamDispose(this.#handle);
    this.#handle = -1;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Runs fn with `stream` as the current stream, then restores the previous one. */
export function withStream<T>(stream: Stream, fn: () => T): T {
  const prev = new Stream(guard(() => native.streamSetCurrent(stream.handle)));
  try {
    return fn();
  } finally {
    native.streamSetCurrent(prev.handle);
    prev.dispose();
  }
}

/**
 * A CUDA graph: capture a sequence of kernels once, replay it with one launch.
 * Inputs and outputs must live in tensors allocated before capture (static
 * buffers): replay reads and writes the same memory.
 */
export class CUDAGraph implements Disposable {
  #handle: number;
  constructor() {
    this.#handle = guard(() => native.graphCreate());
  }

  get handle(): number {
    if (this.#handle < 0) throw new Error('CUDAGraph was disposed');
    return this.#handle;
  }

  /** Captures the kernels fn launches (fn runs once, on a side stream). */
  capture<T>(fn: () => T): T {
    guard(() => native.graphCaptureBegin(this.handle));
    let ended = false;
    try {
      const r = fn();
      ended = true;
      guard(() => native.graphCaptureEnd(this.handle));
      return r;
    } finally {
      if (!ended) {
        try {
          native.graphCaptureEnd(this.handle);
        } catch {
          // The capture already failed; its error is the one to report.
        }
      }
    }
  }

  replay(): void {
    guard(() => native.graphReplay(this.handle));
  }

  dispose(): void {
    if (this.#handle >= 0) native.graphDispose(this.#handle);
    this.#handle = -1;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Whether a graphed function's body is running now (being captured, or checked as if it were). */
export function isCapturing(): boolean {
  return inCaptureRegion();
}

/**
 * Runs fn with the capture checks of a graphed function: creating tensors
 * from host data, reading tensors back and copies between devices throw a
 * CaptureError. On any device: a CPU test of a step proves it capturable.
 */
export function captureChecked<T>(what: string, fn: () => T): T {
  return withCaptureChecks(what, fn);
}

export interface GraphedOptions {
  /** Names the function in messages ('the training step'). */
  name?: string;
  /**
   * Eager calls before the capture, on a side stream: they create the lazy
   * state a capture must not (optimizer moments, cuBLAS workspaces, the
   * autograd engine's device threads). PyTorch's examples use 3; default 2.
   */
  warmup?: number;
  /** false: never capture; the body still runs through the static buffers, with the capture checks. */
  capture?: boolean;
  /** Told once why the function runs eagerly (not CUDA, capture off, or the capture failed). */
  onFallback?: (reason: string) => void;
  /** Told when the capture succeeded (later calls replay it). */
  onCapture?: () => void;
}

/**
 * A function of tensors captured once as a CUDA graph and replayed on every
 * later call: one launch for the whole body (PyTorch's torch.cuda.graph with
 * static inputs, as in its "whole network capture" recipe).
 *
 * call(inputs) copies the inputs into static buffers (made at the first call:
 * the shapes, dtypes and devices are fixed from then on), runs the body on
 * them and returns its outputs, which this object owns: they are valid until
 * the next call, overwritten by it, and freed by dispose(). The body must do
 * only device work: host transfers throw a CaptureError (see captureChecked);
 * its side effects on tensors (parameters, optimizer state) are replayed too,
 * and host-side logic runs once, at capture: a value that changes between
 * calls must reach the body in a tensor (e.g. optim.AdamW's capturable lr).
 *
 * Off CUDA, or when the capture fails, every call runs the body eagerly on the
 * same static buffers, so both paths compute the same thing.
 */
export class GraphedFunction implements Disposable {
  readonly name: string;
  readonly #fn: (inputs: readonly Tensor[]) => Tensor[];
  readonly #warmup: number;
  readonly #opts: GraphedOptions;
  #static: Tensor[] | null = null;
  #signature = '';
  /** The CUDA device of the inputs: warm-up, capture and replay run with it current. */
  #device = -1;
  #graph: CUDAGraph | null = null;
  #outputs: Tensor[] = [];
  #calls = 0;
  #fallback: string | null = null;
  #disposed = false;

  constructor(fn: (inputs: readonly Tensor[]) => Tensor[], opts: GraphedOptions = {}) {
    this.#fn = fn;
    this.name = opts.name ?? 'a graphed function';
    this.#warmup = opts.warmup ?? 2;
    // A capture records without running: state the body creates lazily (optimizer
    // moments, a capturable lr) must exist before it, or every replay would re-create it.
    const least = opts.capture === false ? 0 : 1;
    if (!(Number.isInteger(this.#warmup) && this.#warmup >= least))
      throw new RangeError(
        `GraphedFunction: warmup must be an integer >= ${least} (lazily created state must exist before the capture), got ${this.#warmup}`,
      );
    this.#opts = opts;
    if (opts.capture === false) this.#fallback = 'capture is off';
  }

  /** Whether the body is a captured graph (later calls replay it). */
  get isCaptured(): boolean {
    return this.#graph !== null;
  }

  /** Why every call runs eagerly; null while the function is captured or may still be. */
  get fallbackReason(): string | null {
    return this.#fallback;
  }

  /** Calls so far. */
  get calls(): number {
    return this.#calls;
  }

  /**
   * Whether the next call will capture: other threads must not synchronise
   * with the device meanwhile (e.g. an async tensor read), or the capture fails.
   */
  get capturesOnNextCall(): boolean {
    return this.#graph === null && this.#fallback === null && this.#static !== null && this.#calls >= this.#warmup;
  }

  call(inputs: readonly Tensor[]): readonly Tensor[] {
    if (this.#disposed) throw new Error(`${this.name}: the GraphedFunction was disposed`);
    if (inCaptureRegion())
      throw new CaptureError(`${this.name} was called inside ${captureRegion()}: graphed functions do not nest`);
    this.#copyIn(inputs);
    this.#calls++;
    if (this.#fallback !== null) {
      this.#runEager();
      return this.#outputs;
    }
    withDevice(this.#device, () => {
      if (this.#graph) this.#graph.replay();
      else if (this.#calls > this.#warmup) this.#capture();
      else this.#onSideStream(() => this.#runEager());
    });
    return this.#outputs;
  }

  #copyIn(inputs: readonly Tensor[]): void {
    const signature = inputs.map((t) => `${t.dtype}[${t.shape.join(',')}]@${t.device}`).join(', ');
    if (this.#static === null) {
      this.#signature = signature;
      this.#static = tidy(() => noGrad(() => inputs.map((t) => keep(t.detach().clone()))));
      const devices = new Set(inputs.map((t) => t.device));
      const [device] = devices;
      if (this.#fallback !== null) return;
      if (device === undefined) this.#fallBack('it has no tensor inputs');
      else if (!device.startsWith('cuda')) this.#fallBack(`its inputs are on ${device}; CUDA graphs need CUDA tensors`);
      else if (devices.size > 1) this.#fallBack(`its inputs are on several devices (${[...devices].join(', ')})`);
      else this.#device = device === 'cuda' ? currentDevice() : Number(device.slice('cuda:'.length));
      return;
    }
    if (signature !== this.#signature)
      throw new TypeError(
        `${this.name}: called with (${signature}) but its static buffers are (${this.#signature}); ` +
          'a graphed function keeps the shapes, dtypes and devices of its first call (pad the batch, or make another one)',
      );
    const buffers = this.#static;
    noGrad(() => inputs.forEach((t, i) => t !== buffers[i] && buffers[i]!.copy_(t)));
  }

  #body(): Tensor[] {
    const buffers = this.#static!;
    return tidy(() => withCaptureChecks(this.name, () => this.#fn(buffers)));
  }

  #setOutputs(outputs: Tensor[]): void {
    for (const t of this.#outputs) t.dispose();
    // Owned handles: an output that is a static buffer or a tensor someone else
    // keeps (a parameter, an EMA shadow) is returned as an alias, not taken over.
    const statics = new Set(this.#static ?? []);
    this.#outputs = outputs.map((t) => keep(t.kept || statics.has(t) ? t.alias() : t));
  }

  #runEager(): void {
    this.#setOutputs(this.#body());
  }

  // Warm-up runs on a side stream, as the capture will (PyTorch's recipe).
  #onSideStream(fn: () => void): void {
    const current = Stream.current();
    const side = Stream.create();
    try {
      side.waitStream(current);
      withStream(side, fn);
    } finally {
      current.waitStream(side);
      side.dispose();
      current.dispose();
    }
  }

  #capture(): void {
    const graph = new CUDAGraph();
    let outputs: Tensor[];
    try {
      outputs = graph.capture(() => this.#body());
    } catch (e) {
      graph.dispose();
      if (e instanceof CaptureError) throw e;
      this.#fallBack(`the capture failed (${e instanceof Error ? e.message : String(e)})`);
      // This call's work was not done: do it eagerly (onFallback may have reset state first).
      this.#runEager();
      return;
    }
    this.#setOutputs(outputs);
    this.#graph = graph;
    // A capture records without running: this call's work is the first replay.
    graph.replay();
    this.#opts.onCapture?.();
  }

  #fallBack(reason: string): void {
    this.#fallback = reason;
    this.#opts.onFallback?.(`${this.name} runs eagerly: ${reason}`);
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#graph?.dispose();
    this.#graph = null;
    for (const t of [...this.#outputs, ...(this.#static ?? [])]) t.dispose();
    this.#outputs = [];
    this.#static = null;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
