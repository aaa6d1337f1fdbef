// SGD with momentum (optionally Nesterov), dampening and L2 weight decay, as torch.optim.SGD.
import { emptyLike } from '../creation.js';
import * as aten from '../generated/aten.js';
import type { Tensor } from '../tensor.js';
import { Optimizer, type GroupHyper, type ParamGroup, type ParamsInput } from './optimizer.js';

export interface SGDHyper extends GroupHyper {
  momentum: number;
  dampening: number;
  nesterov: boolean;
  maximize: boolean;
}

export interface SGDOptions extends Partial<SGDHyper> {
  /** 'fused' (default): libtorch's _fused_sgd_; 'forloop': one op per tensor. */
  impl?: 'fused' | 'forloop';
}

export class SGD extends Optimizer<SGDHyper> {
  readonly impl: 'fused' | 'forloop';

  constructor(params: ParamsInput<SGDHyper>, opts: SGDOptions = {}) {
    const { impl, ...hyper } = opts;
    super(params, { lr: 1e-3, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, maximize: false, ...hyper });
    this.impl = impl ?? 'fused';
    for (const g of this.paramGroups) {
      if (!(g.lr >= 0)) throw new RangeError(`SGD: invalid lr ${g.lr}`);
      if (g.nesterov && (g.momentum <= 0 || g.dampening !== 0))
        throw new RangeError('SGD: Nesterov momentum requires a momentum and zero dampening');
    }
  }

  protected fusedStep(g: ParamGroup<SGDHyper>, ps: Tensor[]): void {
    const hasMomentum = g.momentum !== 0;
    const firstStep = hasMomentum && ps.every((p) => !this.state.get(p)?.has('momentum_buffer'));
    const bufs = hasMomentum ? ps.map((p) => this.stateOf(p, 'momentum_buffer', () => emptyLike(p))) : [];
    aten._fused_sgd_(
      ps,
      ps.map((p) => p.grad!),
      bufs,
      g.weightDecay,
      g.momentum,
      g.lr,
      g.dampening,
      g.nesterov,
      g.maximize,
      firstStep,
    );
  }

  // torch.optim.SGD's single-tensor update, written out.
  protected singleStep(g: ParamGroup<SGDHyper>, p: Tensor): void {
    let d = g.maximize ? p.grad!.neg() : p.grad!;
    if (g.weightDecay !== 0) d = d.add(p, g.weightDecay);
    if (g.momentum !== 0) {
      const has = this.state.get(p)?.has('momentum_buffer') ?? false;
      const buf = this.stateOf(p, 'momentum_buffer', () => d.clone());
      if (has) buf.mul_(g.momentum).add_(d, 1 - g.dampening);
      d = g.nesterov ? d.add(buf, g.momentum) : buf;
    }
    p.add_(d, -g.lr);
  }
}
