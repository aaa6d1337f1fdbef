// Exponential moving average of a model's parameters (and optionally buffers),
// updated with one foreach lerp: shadow ← shadow + (1 − decay)·(param − shadow).
import { noGrad } from '../autograd.js';
import type { Module } from '../nn/module.js';
import * as aten from '../generated/aten.js';
import { keep } from '../scope.js';
import type { Tensor } from '../tensor.js';

export class EMA {
  /** Shadow tensors by the model's state-dict names. */
  readonly shadow = new Map<string, Tensor>();
  readonly #params: Tensor[];
  readonly #shadowParams: Tensor[];
  readonly #buffers: Tensor[];
  readonly #shadowBuffers: Tensor[];

  constructor(
    model: Module,
    readonly opts: { decay: number; includeBuffers?: boolean } = { decay: 0.9999 },
  ) {
    if (!(opts.decay >= 0 && opts.decay <= 1)) throw new RangeError(`EMA: decay must be in [0, 1], got ${opts.decay}`);
    const params = model.namedParameters();
    const buffers = opts.includeBuffers ? model.namedBuffers() : [];
    this.#params = params.map(([, t]) => t);
    this.#buffers = buffers.map(([, t]) => t);
    noGrad(() => {
      for (const [n, t] of [...params, ...buffers]) this.shadow.set(n, keep(t.clone()));
    });
    this.#shadowParams = params.map(([n]) => this.shadow.get(n)!);
    this.#shadowBuffers = buffers.map(([n]) => this.shadow.get(n)!);
  }

  /** One EMA step (decay overrides the configured one, e.g. for a warm-up ramp). Buffers are copied. */
  update(decay = this.opts.decay): void {
    noGrad(() => {
      if (this.#params.length) aten._foreach_lerp_$Scalar(this.#shadowParams, this.#params, 1 - decay);
      if (this.#buffers.length) aten._foreach_copy_(this.#shadowBuffers, this.#buffers, false);
    });
  }

  /** Writes the averaged values into a module of the same architecture (e.g. a copy for sampling). */
  copyTo(model: Module): void {
    model.loadStateDict(this.shadow, { strict: false });
  }

  /** The shadow as a state dict (new handles; dispose when done). */
  stateDict(): Map<string, Tensor> {
    return new Map([...this.shadow].map(([k, t]) => [k, t.detach()]));
  }

  loadStateDict(sd: Map<string, Tensor>): void {
    const missing = [...this.shadow.keys()].filter((k) => !sd.has(k));
    if (missing.length) throw new TypeError(`EMA state: missing keys ${missing.join(', ')}`);
    noGrad(() => {
      for (const [k, t] of this.shadow) t.copy_(sd.get(k)!);
    });
  }

  dispose(): void {
    for (const t of this.shadow.values()) t.dispose();
    this.shadow.clear();
  }
}
