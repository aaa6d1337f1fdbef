// The optimizer base: parameter groups with per-group hyper-parameters, lazily
// created per-parameter state, and a state dict that saves and loads.
import { noGrad } from '../autograd.js';
import { keep, tidy } from '../scope.js';
import type { Tensor } from '../tensor.js';

/** Hyper-parameters common to every optimizer's groups. */
export interface GroupHyper {
  lr: number;
  weightDecay: number;
}

/** A parameter group: its parameters and hyper-parameters (H). */
export type ParamGroup<H extends GroupHyper> = H & { params: Tensor[] };

/** What the constructor accepts: parameters, or groups that override the defaults. */
export type ParamsInput<H extends GroupHyper> = Tensor[] | (Partial<H> & { params: Tensor[] })[];

/** Saved optimizer state: tensors by dotted key ('state.3.exp_avg') and the groups' hyper-parameters. */
export interface OptimizerState {
  tensors: Map<string, Tensor>;
  /** Per group: hyper-parameters and the indices of its parameters (PyTorch's layout). */
  groups: (Record<string, number | boolean | number[]> & { params: number[] })[];
  /** Per parameter index: numbers kept with the state (e.g. the step count). */
  scalars: Record<string, Record<string, number>>;
}

export abstract class Optimizer<H extends GroupHyper> {
  readonly paramGroups: ParamGroup<H>[];
  /** Per-parameter state tensors, created on the first step. */
  protected readonly state = new Map<Tensor, Map<string, Tensor>>();
  /** Per-parameter numbers (e.g. step counts). */
  protected readonly scalarState = new Map<Tensor, Map<string, number>>();

  constructor(params: ParamsInput<H>, defaults: H) {
    if (params.length === 0) throw new TypeError('optimizer got an empty parameter list');
    const groups = isTensorList(params) ? [{ params }] : params;
    const seen = new Set<Tensor>();
    this.paramGroups = groups.map((g, i) => {
      if (g.params.length === 0) throw new TypeError(`parameter group ${i} is empty`);
      for (const p of g.params) {
        if (seen.has(p)) throw new TypeError(`a parameter appears in more than one group (group ${i})`);
        seen.add(p);
      }
      return { ...defaults, ...g, params: [...g.params] } as ParamGroup<H>;
    });
  }

  /**
   * 'fused' (default): one libtorch fused kernel per group and device;
   * 'forloop': the textbook update with one op per tensor (the reference).
   */
  abstract readonly impl: 'fused' | 'forloop';

  /** The fused update of one group's parameters, all on one device. */
  protected abstract fusedStep(group: ParamGroup<H>, params: Tensor[]): void;

  /** The per-tensor update of one parameter. */
  protected abstract singleStep(group: ParamGroup<H>, p: Tensor): void;

  /** One update of every parameter that has a gradient (parameters without one are skipped, as PyTorch does). */
  step(): void {
    noGrad(() => {
      for (const g of this.paramGroups) {
        tidy(() => {
          const active = g.params.filter((p) => p.grad !== null);
          if (this.impl === 'forloop') {
            for (const p of active) this.singleStep(g, p);
            return;
          }
          // The fused kernels need every list on one device.
          const byDevice = new Map<string, Tensor[]>();
          for (const p of active) byDevice.set(p.device, [...(byDevice.get(p.device) ?? []), p]);
          for (const ps of byDevice.values()) this.fusedStep(g, ps);
        });
      }
    });
  }

  /** Frees the gradients (PyTorch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const g of this.paramGroups)
      for (const p of g.params) {
        const grad = p.grad;
        if (grad !== null) {
          p.grad = null;
          grad.dispose();
        }
      }
  }

  /** The state tensor `name` of p, created with init() on first use. */
  protected stateOf(p: Tensor, name: string, init: () => Tensor): Tensor {
    let s = this.state.get(p);
    if (s === undefined) {
      s = new Map();
      this.state.set(p, s);
    }
    let t = s.get(name);
    if (t === undefined) {
      t = keep(noGrad(init));
      s.set(name, t);
    }
    return t;
  }

  protected scalarOf(p: Tensor, name: string, initial = 0): number {
    return this.scalarState.get(p)?.get(name) ?? initial;
  }

  protected setScalar(p: Tensor, name: string, value: number): void {
    let s = this.scalarState.get(p);
    if (s === undefined) {
      s = new Map();
      this.scalarState.set(p, s);
    }
    s.set(name, value);
  }

  #allParams(): Tensor[] {
    return this.paramGroups.flatMap((g) => g.params);
  }

  /** The state: tensors are new handles sharing memory (dispose them when saved). */
  stateDict(): OptimizerState {
    const params = this.#allParams();
    const tensors = new Map<string, Tensor>();
    const scalars: Record<string, Record<string, number>> = {};
    params.forEach((p, i) => {
      for (const [name, t] of this.state.get(p) ?? []) tensors.set(`state.${i}.${name}`, t.detach());
      const sc = this.scalarState.get(p);
      if (sc) scalars[String(i)] = Object.fromEntries(sc);
    });
    let offset = 0;
    const groups = this.paramGroups.map((g) => {
      const { params: ps, ...hyper } = g;
      const idx = ps.map((_, j) => offset + j);
      offset += ps.length;
      return { ...(hyper as unknown as Record<string, number | boolean | number[]>), params: idx };
    });
    return { tensors, groups, scalars };
  }

  /** Restores a state dict saved from an optimizer over the same parameters, in the same groups. */
  loadStateDict(sd: OptimizerState): void {
    const params = this.#allParams();
    if (sd.groups.length !== this.paramGroups.length)
      throw new TypeError(`optimizer state has ${sd.groups.length} groups, this optimizer ${this.paramGroups.length}`);
    sd.groups.forEach((g, i) => {
      const mine = this.paramGroups[i]!;
      if (g.params.length !== mine.params.length)
        throw new TypeError(
          `optimizer state group ${i} has ${g.params.length} parameters, this one ${mine.params.length}`,
        );
    });
    for (const [key] of sd.tensors) {
      const m = /^state\.(\d+)\.(.+)$/.exec(key);
      if (!m || Number(m[1]) >= params.length) throw new TypeError(`optimizer state: unexpected key '${key}'`);
    }
    sd.groups.forEach((g, i) => {
      const mine = this.paramGroups[i]! as unknown as Record<string, unknown>;
      for (const [k, v] of Object.entries(g)) if (k !== 'params') mine[k] = Array.isArray(v) ? [...v] : v;
    });
    for (const s of this.state.values()) for (const t of s.values()) t.dispose();
    this.state.clear();
    this.scalarState.clear();
    noGrad(() => {
      for (const [key, t] of sd.tensors) {
        const [, idx, name] = /^state\.(\d+)\.(.+)$/.exec(key)!;
        const p = params[Number(idx)]!;
        this.stateOf(p, name!, () => tidy(() => t.to({ device: p.device, dtype: t.dtype }).clone()));
      }
    });
    for (const [idx, sc] of Object.entries(sd.scalars)) {
      const p = params[Number(idx)];
      if (p === undefined) throw new TypeError(`optimizer state: scalars for unknown parameter ${idx}`);
      for (const [k, v] of Object.entries(sc)) this.setScalar(p, k, v);
    }
  }

  /** Frees all state tensors. */
  dispose(): void {
    for (const s of this.state.values()) for (const t of s.values()) t.dispose();
    this.state.clear();
  }
}

function isTensorList<H extends GroupHyper>(p: ParamsInput<H>): p is Tensor[] {
  return !('params' in (p[0] as object));
}
