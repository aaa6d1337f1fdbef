// Random number generators: the global seed, and independent seedable generators
// whose state can be saved and restored (for exact resumption).
import { checkCaptureSafe } from './capture.js';
import { checkDevice, type Device } from './device.js';
import { rethrowNative } from './errors.js';
import { native } from './native.js';

/** Seeds the default generators of every device (torch.manual_seed). */
export function manualSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0)
    throw new TypeError(`manualSeed: expected a non-negative integer, got ${seed}`);
  native.manualSeed(seed);
}

/**
 * A random generator. `new Generator('cpu', seed)` is independent of all others;
 * Generator.default(device) is the device's global one.
 */
export class Generator implements Disposable {
  #handle: number;
  readonly device: Device;

  /** Set only while default() constructs: the handle to wrap instead of a new generator. */
  static #wrapping: number | null = null;

  constructor(device: Device = 'cpu', seed = 0) {
    this.device = checkDevice(device);
    const existing = Generator.#wrapping;
    if (existing !== null) {
      this.#handle = existing;
      return;
    }
    try {
      this.#handle = native.generatorCreate(device, seed);
    } catch (e) {
      rethrowNative(e);
    }
  }

  static default(device: Device = 'cpu'): Generator {
    // Through the constructor: private fields exist only on constructed objects.
    Generator.#wrapping = native.generatorDefault(checkDevice(device));
    try {
      return new Generator(device);
    } finally {
      Generator.#wrapping = null;
    }
  }

  /** @internal The native handle, for operator calls. */
  get handle(): number {
    if (this.#handle < 0) throw new Error('Generator was disposed');
    return this.#handle;
  }

  manualSeed(seed: number): this {
    checkCaptureSafe("seeding a generator (a CUDA graph replays the generator's offsets; it cannot reseed)");
    native.generatorSeed(this.handle, seed);
    return this;
  }

  /** The state as bytes (save it to resume the exact stream later). */
  getState(): Uint8Array {
    checkCaptureSafe("reading a generator's state");
    const id = native.generatorGetState(this.handle);
    try {
      return new Uint8Array(native.toBuffer(id));
    } finally {
      native.dispose(id);
    }
  }

  setState(state: Uint8Array): void {
    checkCaptureSafe("setting a generator's state");
    const id = native.fromBuffer(state, 0, [state.length], true);
    try {
      native.generatorSetState(this.handle, id);
    } catch (e) {
      rethrowNative(e);
    } finally {
      native.dispose(id);
    }
  }

  dispose(): void {
    if (this.#handle >= 0) native.generatorDispose(this.#handle);
    this.#handle = -1;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
