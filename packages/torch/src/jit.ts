// TorchScript modules (torch.jit.load), e.g. the FID Inception network.
import { existsSync } from 'node:fs';

import { checkDevice, type Device } from './device.js';
import { rethrowNative, TorchError } from './errors.js';
import { native, type UntypedValue } from './native.js';
import { Tensor } from './tensor.js';

/** What a TorchScript method takes and returns: tensors, numbers, strings, lists, tuples, dicts. */
export type ScriptValue = Tensor | number | boolean | string | null | ScriptValue[] | { [key: string]: ScriptValue };

function toNative(v: ScriptValue): UntypedValue {
  if (v instanceof Tensor) return { tensor: v.id };
  if (Array.isArray(v)) return v.map(toNative);
  if (v !== null && typeof v === 'object') throw new TypeError('TorchScript inputs: dicts are not supported as inputs');
  return v;
}

function fromNative(v: UntypedValue): ScriptValue {
  if (Array.isArray(v)) return v.map(fromNative);
  if (v !== null && typeof v === 'object') {
    if ('tensor' in v && typeof v.tensor === 'number' && Object.keys(v).length === 1) return new Tensor(v.tensor);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromNative(x as UntypedValue)]));
  }
  return v;
}

export class ScriptModule implements Disposable {
  #handle: number;
  readonly path: string;

  /** @internal */
  constructor(handle: number, path: string) {
    this.#handle = handle;
    this.path = path;
  }

  get handle(): number {
    if (this.#handle < 0) throw new Error(`ScriptModule ${this.path} was disposed`);
    return this.#handle;
  }

  /** Calls forward(...inputs). */
  forward(...inputs: ScriptValue[]): ScriptValue {
    return this.call('forward', ...inputs);
  }

  /** Calls a named method. */
  call(method: string, ...inputs: ScriptValue[]): ScriptValue {
    try {
      return fromNative(native.jitCall(this.handle, method, inputs.map(toNative)));
    } catch (e) {
      rethrowNative(e);
    }
  }

  to(device: Device): this {
    try {
      native.jitTo(this.handle, checkDevice(device));
    } catch (e) {
      rethrowNative(e);
    }
    return this;
  }

  dispose(): void {
    if (this.#handle >= 0) native.jitDispose(this.#handle);
    this.#handle = -1;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Loads a TorchScript file (torch.jit.save output), in eval mode. */
export function load(path: string, device?: Device): ScriptModule {
  if (!existsSync(path)) throw new TorchError(`jit.load: no such file '${path}'`);
  try {
    return new ScriptModule(native.jitLoad(path, device === undefined ? null : checkDevice(device)), path);
  } catch (e) {
    rethrowNative(e);
  }
}
