// AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay.
import { noGrad } from '../autograd.js';
import { CaptureError, captureRegion, inCaptureRegion } from '../capture.js';
import { scalarTensor, zeros, zerosLike } from '../creation.js';
import * as aten from '../generated/aten.js';
import { keep } from '../scope.js';
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
  /**
   * Keeps each group's lr in a device tensor that the fused kernel reads
   * (PyTorch's capturable AdamW with a tensor lr), so that a CUDA graph of the
   * step follows lr changes: syncLr() writes them, outside the graph.
   */
  capturable?: boolean;
}

export class AdamW extends Optimizer<AdamWHyper> {
  readonly impl: 'fused' | 'forloop';
  readonly capturable: boolean;
  /** Capturable: per group and device, the lr tensor and the value written into it. */
  readonly #lrTensors = new Map<ParamGroup<AdamWHyper>, Map<string, { tensor: Tensor; value: number }>>();

  constructor(params: ParamsInput<AdamWHyper>, opts: AdamWOptions = {}) {
    const { impl, capturable, ...hyper } = opts;
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
    this.capturable = capturable ?? false;
    if (this.capturable && this.impl !== 'fused')
      throw new TypeError(
        "AdamW: capturable needs impl 'fused' (the for-loop update reads the step count on the host)",
      );
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
    const steps = s.map((x) => x.step);
    aten._foreach_add_$Scalar(steps, 1);
    const grads = ps.map((p) => p.grad!);
    const expAvgs = s.map((x) => x.expAvg);
    const expAvgSqs = s.map((x) => x.expAvgSq);
    const [b1, b2] = g.betas;
    if (this.capturable) {
      const lr = this.#lrTensor(g, ps[0]!);
      aten._fused_adamw_$tensor_lr(
        ps,
        grads,
        expAvgs,
        expAvgSqs,
        max,
        steps,
        lr,
        b1,
        b2,
        g.weightDecay,
        g.eps,
        g.amsgrad,
        g.maximize,
      );
    } else {
      aten._fused_adamw_(
        ps,
        grads,
        expAvgs,
        expAvgSqs,
        max,
        steps,
        g.lr,
        b1,
        b2,
        g.weightDecay,
        g.eps,
        g.amsgrad,
        g.maximize,
      );
    }
  }

  /**
   * Capturable: writes each group's lr into its device tensor where it
   * changed. step() does it itself; before replaying a captured step (which
   * does not run step()), call it after changing the lr.
   */
  syncLr(): void {
    noGrad(() => {
      for (const [g, byDevice] of this.#lrTensors)
        for (const slot of byDevice.values())
          if (slot.value !== g.lr) {
            if (inCaptureRegion())
              throw new CaptureError(
                `AdamW: the lr changed (to ${g.lr}) inside ${captureRegion()}: a graph would replay that value for ever; ` +
                  'change it before the call and call syncLr() there',
              );
            slot.tensor.fill_(g.lr);
            slot.value = g.lr;
          }
    });
  }

  #lrTensor(g: ParamGroup<AdamWHyper>, p: Tensor): Tensor {
    let byDevice = this.#lrTensors.get(g);
    if (byDevice === undefined) this.#lrTensors.set(g, (byDevice = new Map()));
    let slot = byDevice.get(p.device);
    if (slot === undefined) {
      // float32: the CUDA kernel reads the lr through a float pointer (as PyTorch's capturable AdamW).
      slot = { tensor: keep(scalarTensor(g.lr, { dtype: 'float32', device: p.device })), value: g.lr };
      byDevice.set(p.device, slot);
    }
    if (slot.value !== g.lr) this.syncLr();
    return slot.tensor;
  }

  override dispose(): void {
    super.dispose();
    for (const byDevice of this.#lrTensors.values()) for (const slot of byDevice.values()) slot.tensor.dispose();
    this.#lrTensors.clear();
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
