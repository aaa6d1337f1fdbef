// Dynamic loss scaling for float16 training (torch.amp.GradScaler): scale the
// loss up, unscale gradients before the step, skip steps whose gradients have
// inf/NaN, and grow or back off the scale. bfloat16 needs none of this.
import { noGrad } from '../autograd.js';
import { full } from '../creation.js';
import * as aten from '../generated/aten.js';
import { keep, tidy } from '../scope.js';
import type { Tensor } from '../tensor.js';
import type { GroupHyper, Optimizer } from './optimizer.js';

export interface GradScalerOptions {
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
  enabled?: boolean;
  device?: 'cpu' | 'cuda' | `cuda:${number}`;
}

export class GradScaler {
  readonly #scale: Tensor;
  readonly #growthTracker: Tensor;
  #foundInf: Tensor | null = null;
  #unscaled = false;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  readonly enabled: boolean;

  constructor(o: GradScalerOptions = {}) {
    this.growthFactor = o.growthFactor ?? 2;
    this.backoffFactor = o.backoffFactor ?? 0.5;
    this.growthInterval = o.growthInterval ?? 2000;
    this.enabled = o.enabled ?? true;
    const device = o.device ?? 'cpu';
    this.#scale = keep(full([], o.initScale ?? 65536, { dtype: 'float32', device }));
    this.#growthTracker = keep(full([], 0, { dtype: 'int32', device }));
  }

  /** The current scale (synchronises a GPU). */
  getScale(): number {
    return this.#scale.item();
  }

  /** loss × scale (the loss itself when disabled). */
  scale(loss: Tensor): Tensor {
    return this.enabled ? loss.mul(this.#scale.to(loss.dtype)) : loss.alias();
  }

  /** Divides the gradients by the scale in place and records whether any is inf/NaN. */
  unscale_<H extends GroupHyper>(opt: Optimizer<H>): void {
    if (!this.enabled || this.#unscaled) return;
    noGrad(() => {
      this.#foundInf?.dispose();
      this.#foundInf = keep(full([], 0, { dtype: 'float32', device: this.#scale.device }));
      tidy(() => {
        const inv = this.#scale.double().reciprocal().float();
        const byKey = new Map<string, Tensor[]>();
        for (const g of opt.paramGroups)
          for (const p of g.params) {
            const grad = p.grad;
            if (grad === null) continue;
            const key = `${grad.device}/${grad.dtype}`;
            byKey.set(key, [...(byKey.get(key) ?? []), grad]);
          }
        for (const grads of byKey.values())
          aten._amp_foreach_non_finite_check_and_unscale_(grads, this.#foundInf!, inv);
      });
    });
    this.#unscaled = true;
  }

  /** Unscales (if not done yet) and steps unless a gradient was inf/NaN. Returns whether it stepped. */
  step<H extends GroupHyper>(opt: Optimizer<H>): boolean {
    if (!this.enabled) {
      opt.step();
      return true;
    }
    this.unscale_(opt);
    const skip = this.#foundInf!.item() !== 0;
    if (!skip) opt.step();
    return !skip;
  }

  /** Grows the scale after growthInterval clean steps, backs off after a step with inf/NaN. */
  update(): void {
    if (!this.enabled) return;
    if (this.#foundInf === null) throw new Error('GradScaler.update: call step() (or unscale_()) first');
    noGrad(() => {
      aten._amp_update_scale_(
        this.#scale,
        this.#growthTracker,
        this.#foundInf!,
        this.growthFactor,
        this.backoffFactor,
        this.growthInterval,
      );
    });
    this.#foundInf.dispose();
    this.#foundInf = null;
    this.#unscaled = false;
  }

  stateDict(): { scale: number; growthTracker: number } {
    return { scale: this.getScale(), growthTracker: this.#growthTracker.item() };
  }

  loadStateDict(s: { scale: number; growthTracker: number }): void {
    noGrad(() => {
      this.#scale.fill_(s.scale);
      this.#growthTracker.fill_(s.growthTracker);
    });
  }

  dispose(): void {
    this.#scale.dispose();
    this.#growthTracker.dispose();
    this.#foundInf?.dispose();
  }
}
