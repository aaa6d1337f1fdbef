// CUDA services. On a machine without CUDA these answer plainly: isAvailable()
// is false, deviceCount() is 0, synchronize() does nothing; the rest throw an
// error saying CUDA is absent.
import { rethrowNative } from './errors.js';
import { native, type CudaMemoryStats } from './native.js';

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
