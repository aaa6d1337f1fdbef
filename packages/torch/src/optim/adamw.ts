// AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay.
import { callNative, opRef } from '../ops.js';
import { zeros, zerosLike } from '../creation.js';
import type { Tensor } from '../tensor.js';
import { Optimizer, type GroupHyper, type ParamGroup, type ParamsInput } from './optimizer.js';

export interface AdamWHyper extends GroupHyper {
  betas: [number, number];
  eps: number;
  amsgrad: boolean;
  maximize: boolean;
}

export interface AdamWOptions extends Partial<AdamWHyper> {
  /**
   * 'fused' (default): libtorch's _fused_adamw_ kernel, one call per group and
   * device; 'forloop': the textbook update with one op per tensor (reference).
   */
  impl?: 'fused' | 'forloop';
}

const fusedAdamW = opRef('_fused_adamw_');
const foreachAdd = opRef('_foreach_add_', 'Scalar');

export class AdamW extends Optimizer<AdamWHyper> {
  readonly impl: 'fused' | 'forloop';

  constructor(params: ParamsInput<AdamWHyper>, opts: AdamWOptions = {}) {
    const { impl, ...hyper } = opts;
    super(params, {
      lr: 1e-3,
      betas: [0.9, 0.999],
      eps: 1e-8,
      weightDecay: 1e-2,
      amsgrad: false,
      maximize: false,
      ...hyper,
    });
    this.impl = impl ?? 'fused';
    for (const g of this.paramGroups) {
      if (!(g.lr >= 0)) throw new RangeError(`AdamW: invalid lr ${g.lr}`);
      if (!(g.betas[0] >= 0 && g.betas[0] < 1 && g.betas[1] >= 0 && g.betas[1] < 1))
        throw new RangeError(`AdamW: invalid betas [${g.betas.join(', ')}]`);
      if (!(g.eps >= 0)) throw new RangeError(`AdamW: invalid eps ${g.eps}`);
    }
  }

  #states(p: Tensor): { step: Tensor; expAvg: Tensor; expAvgSq: Tensor; maxExpAvgSq: Tensor | null } {
    return {
      // PyTorch keeps the step as a float32 tensor for the fused kernel.
      step: this.stateOf(p, 'step', () => zeros([], { dtype: 'float32', device: p.device })),
      expAvg: this.stateOf(p, 'exp_avg', () => zerosLike(p)),
      expAvgSq: this.stateOf(p, 'exp_avg_sq', () => zerosLike(p)),
      maxExpAvgSq: null,
    };
  }

  protected fusedStep(g: ParamGroup<AdamWHyper>, ps: Tensor[]): void {
    const s = ps.map((p) => this.#states(p));
    const max = g.amsgrad ? ps.map((p) => this.stateOf(p, 'max_exp_avg_sq', () => zerosLike(p))) : [];
    const steps = s.map((x) => x.step.id);
    callNative(foreachAdd, steps, 1);
    callNative(
      fusedAdamW,
      ps.map((p) => p.id),
      ps.map((p) => p.grad!.id),
      s.map((x) => x.expAvg.id),
      s.map((x) => x.expAvgSq.id),
      max.map((t) => t.id),
      steps,
      g.lr,
      g.betas[0],
      g.betas[1],
      g.weightDecay,
      g.eps,
      g.amsgrad,
      g.maximize,
    );
  }

  // The update of torch.optim.AdamW (single-tensor path), written out.
  protected singleStep(g: ParamGroup<AdamWHyper>, p: Tensor): void {
    const { step, expAvg, expAvgSq } = this.#states(p);
    const [beta1, beta2] = g.betas;
    let grad = p.grad!;
    if (g.maximize) grad = grad.neg();
    step.add_(1);
    const t = step.item();
    p.mul_(1 - g.lr * g.weightDecay);
    expAvg.lerp_(grad, 1 - beta1);
    expAvgSq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
    const biasCorrection1 = 1 - beta1 ** t;
    const biasCorrection2 = 1 - beta2 ** t;
    const stepSize = g.lr / biasCorrection1;
    let second = expAvgSq;
    if (g.amsgrad) {
      const max = this.stateOf(p, 'max_exp_avg_sq', () => zerosLike(p));
      const m = max.maximum(expAvgSq);
      max.copy_(m);
      second = max;
    }
    const denom = second.sqrt().div(Math.sqrt(biasCorrection2)).add(g.eps);
    p.addcdiv_(expAvg, denom, -stepSize);
  }
}
