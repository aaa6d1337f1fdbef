// Post-hoc EMA with power-function profiles (Karras et al. 2024, "Analyzing and
// Improving the Training Dynamics of Diffusion Models", EDM2 §3 and appendix C):
// during training a few power-function EMAs are tracked, each defined by its
// relative standard deviation σ_rel; their snapshots at several steps span a
// space of averaging profiles, and any other σ_rel (at any snapshot step) is
// reconstructed after training as the least-squares combination of them.
//
// Symbols: a power-function EMA of exponent γ at step t averages the weights
// θ(τ), τ ∈ [0, t], with the density p_t(τ) = (γ+1)/t · (τ/t)^γ. Its width
// relative to t is σ_rel (EDM2 eq. 123); tracking it step by step uses
// β_t = (1 − 1/t)^(γ+1) (eq. 127). All host arithmetic here is float64.
import { noGrad } from '../autograd.js';
import * as aten from '../generated/aten.js';
import type { Module } from '../nn/module.js';
import { keep, tidy } from '../scope.js';
import type { DType } from '../dtype.js';
import type { Tensor } from '../tensor.js';

/** σ_rel of γ = 0 (a plain average of all weights so far): the widest profile, √(1/12). */
export const MAX_STD_REL = Math.sqrt(1 / 12);

/** Throws a RangeError unless 0 < σ_rel < √(1/12) ≈ 0.2887 (γ > 0). */
export function checkStdRel(stdRel: number, what = 'σ_rel'): void {
  if (!(Number.isFinite(stdRel) && stdRel > 0 && stdRel < MAX_STD_REL))
    throw new RangeError(
      `${what} must be in (0, ${MAX_STD_REL.toFixed(4)}) (a power-function EMA with exponent γ > 0), got ${stdRel}; ` +
        'EDM2 tracks 0.05 and 0.10 and reconstructs between about 0.01 and 0.25',
    );
}

/** σ_rel of the power function of exponent γ: √((γ+1) / ((γ+2)²(γ+3))) (EDM2 eq. 123). */
export function expToStd(gamma: number): number {
  if (!(gamma > -1)) throw new RangeError(`power-function exponent γ must be > -1, got ${gamma}`);
  return Math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)));
}

/**
 * γ of σ_rel: the largest real root of γ³ + 7γ² + (16 − σ⁻²)γ + (12 − σ⁻²)
 * (EDM2 eq. 126, algorithm 2). For 0 < σ_rel < √(1/12) the cubic is negative
 * at γ = 0 and increasing beyond max(0, its local minimum), so that root is the
 * only one there: bisection brackets it and Newton polishes it to the last bit.
 */
export function stdToExp(stdRel: number): number {
  checkStdRel(stdRel);
  const s = stdRel ** -2;
  const f = (g: number): number => ((g + 7) * g + (16 - s)) * g + (12 - s);
  const df = (g: number): number => (3 * g + 14) * g + (16 - s);
  // f'(γ) = 0 at its local minimum γ_c (the larger root of the quadratic).
  const gammaMin = (-14 + Math.sqrt(196 - 12 * (16 - s))) / 6;
  let lo = Math.max(0, gammaMin);
  let hi = 1 + Math.max(7, Math.abs(16 - s), Math.abs(12 - s)); // Cauchy's bound on the roots.
  for (let i = 0; i < 200 && hi - lo > 1e-12 * hi; i++) {
    const mid = 0.5 * (lo + hi);
    if (f(mid) < 0) lo = mid;
    else hi = mid;
  }
  let g = 0.5 * (lo + hi);
  for (let i = 0; i < 3; i++) {
    const d = df(g);
    if (d > 0) g -= f(g) / d;
  }
  return g;
}

/** β_t = (1 − 1/t)^(γ+1) of the shadow update after step t (1-based; β_1 = 0) (EDM2 eq. 127). */
export function powerFunctionBeta(stdRel: number, t: number): number {
  if (!(Number.isInteger(t) && t >= 1)) throw new RangeError(`PowerEMA: step t must be an integer >= 1, got ${t}`);
  return (1 - 1 / t) ** (stdToExp(stdRel) + 1);
}

/**
 * ⟨p_a, p_b⟩ = ∫ p_a(τ) p_b(τ) dτ of two power-function profiles ending at
 * steps tA, tB with relative widths stdA, stdB (EDM2 eq. 151, algorithm 3):
 * (γa+1)(γb+1) / (γa+γb+1) · (t_min / t_other)^γ_other / t_max, where the
 * exponent is that of the profile ending later.
 */
export function powerFunctionCorrelation(tA: number, stdA: number, tB: number, stdB: number): number {
  const gA = stdToExp(stdA);
  const gB = stdToExp(stdB);
  const ratio = tA < tB ? (tA / tB) ** gB : (tB / tA) ** gA;
  return ((gA + 1) * (gB + 1) * ratio) / ((gA + gB + 1) * Math.max(tA, tB));
}

/**
 * Solves A·X = B in place by Gaussian elimination with partial pivoting
 * (A: n×n, B: n×m, row-major arrays of rows); returns X. Throws when A is singular.
 */
export function solveLinear(A: number[][], B: number[][]): number[][] {
  const n = A.length;
  const a = A.map((row) => [...row]);
  const b = B.map((row) => [...row]);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(a[r]![col]!) > Math.abs(a[pivot]![col]!)) pivot = r;
    if (a[pivot]![col] === 0 || !Number.isFinite(a[pivot]![col]!))
      throw new RangeError(`solveLinear: the matrix is singular (column ${col}); are two inputs the same profile?`);
    [a[col], a[pivot]] = [a[pivot]!, a[col]!];
    [b[col], b[pivot]] = [b[pivot]!, b[col]!];
    const pr = a[col]!;
    const pb = b[col]!;
    for (let r = col + 1; r < n; r++) {
      const ar = a[r]!;
      const factor = ar[col]! / pr[col]!;
      if (factor === 0) continue;
      for (let c = col; c < n; c++) ar[c]! -= factor * pr[c]!;
      const br = b[r]!;
      for (let c = 0; c < br.length; c++) br[c]! -= factor * pb[c]!;
    }
  }
  const x = b.map((row) => row.map(() => 0));
  for (let r = n - 1; r >= 0; r--) {
    const ar = a[r]!;
    for (let c = 0; c < x[r]!.length; c++) {
      let v = b[r]![c]!;
      for (let k = r + 1; k < n; k++) v -= ar[k]! * x[k]![c]!;
      x[r]![c] = v / ar[r]!;
    }
  }
  return x;
}

/** One tracked profile a snapshot holds: its step and σ_rel. */
export interface PowerProfile {
  step: number;
  stdRel: number;
}

/**
 * The coefficients X[i][j] that combine the input profiles i (snapshots) into
 * the output profiles j with the least L2 error between densities (EDM2
 * algorithm 3): A X = B with A = ⟨p_i, p_k⟩, B = ⟨p_i, p_j⟩, then each column
 * scaled to sum 1 so the result is an average of the snapshots.
 */
export function solvePosthocCoefficients(
  inputs: readonly PowerProfile[],
  outputs: readonly PowerProfile[],
): number[][] {
  if (inputs.length === 0) throw new RangeError('solvePosthocCoefficients: no input profiles (snapshots)');
  for (const p of [...inputs, ...outputs]) {
    checkStdRel(p.stdRel);
    if (!(p.step > 0)) throw new RangeError(`solvePosthocCoefficients: a profile's step must be > 0, got ${p.step}`);
  }
  const A = inputs.map((a) => inputs.map((b) => powerFunctionCorrelation(a.step, a.stdRel, b.step, b.stdRel)));
  const B = inputs.map((a) => outputs.map((b) => powerFunctionCorrelation(a.step, a.stdRel, b.step, b.stdRel)));
  const X = solveLinear(A, B);
  for (let j = 0; j < outputs.length; j++) {
    const sum = X.reduce((acc, row) => acc + row[j]!, 0);
    for (const row of X) row[j]! /= sum;
  }
  return X;
}

/**
 * Σ_i c_i · weights_i over sets of tensors with the same names, accumulated in
 * float64 one set at a time (so a reconstruction holds one snapshot in memory,
 * not all of them) and returned in each tensor's own dtype.
 */
export class WeightedSum {
  readonly #acc = new Map<string, Tensor>();
  readonly #dtypes = new Map<string, DType>();
  #count = 0;

  /** Adds coefficient · tensors (every set must hold the same names and shapes). */
  add(tensors: ReadonlyMap<string, Tensor>, coefficient: number): void {
    if (this.#count > 0) {
      const missing = [...this.#acc.keys()].filter((k) => !tensors.has(k));
      const extra = [...tensors.keys()].filter((k) => !this.#acc.has(k));
      if (missing.length || extra.length)
        throw new TypeError(
          `WeightedSum: the tensor sets differ (missing ${missing.join(', ') || '-'}; unexpected ${extra.join(', ') || '-'})`,
        );
    }
    noGrad(() => {
      for (const [name, t] of tensors) {
        const acc = this.#acc.get(name);
        if (acc === undefined) {
          this.#dtypes.set(name, t.dtype);
          this.#acc.set(name, keep(tidy(() => t.double().mul(coefficient))));
        } else {
          tidy(() => {
            acc.add_(t.double(), coefficient);
          });
        }
      }
    });
    this.#count++;
  }

  /** The sum, each tensor cast back to the dtype it came in (new tensors, owned by the caller's scope). */
  result(): Map<string, Tensor> {
    if (this.#count === 0) throw new RangeError('WeightedSum: nothing was added');
    return new Map([...this.#acc].map(([k, t]) => [k, tidy(() => t.to(this.#dtypes.get(k)!).clone())]));
  }

  dispose(): void {
    for (const t of this.#acc.values()) t.dispose();
    this.#acc.clear();
  }
}

/** What PowerEMA.stateDict holds: the step counter, the σ_rel list and the shadows by `${index}.${name}`. */
export interface PowerEMAState {
  step: number;
  stdRels: number[];
  tensors: Map<string, Tensor>;
}

/**
 * Power-function EMAs of a model's parameters, one shadow per σ_rel, each
 * updated with one foreach lerp after every optimizer step t (1-based):
 * shadow ← shadow + (1 − β_t)·(θ − shadow), β_t = (1 − 1/t)^(γ+1). At t = 1
 * the shadow becomes the weights. Unrolled, the shadow at step t is
 * Σ_τ≤t ((τ/t)^(γ+1) − ((τ−1)/t)^(γ+1)) θ_τ: the continuous power-function
 * profile integrated over each step, so snapshots of it reconstruct exactly
 * in the sense of solvePosthocCoefficients' inner products.
 */
export class PowerEMA {
  /** One shadow per σ_rel (in the order of `stdRels`), by the model's parameter names. */
  readonly shadows: Map<string, Tensor>[];
  readonly stdRels: readonly number[];
  readonly exponents: readonly number[];
  /** Optimizer steps averaged so far (t of the last update; 0 before the first). */
  step = 0;
  readonly #params: Tensor[];
  readonly #shadowParams: Tensor[][];

  constructor(model: Module, opts: { stdRels: readonly number[] }) {
    if (opts.stdRels.length === 0) throw new RangeError('PowerEMA: give at least one σ_rel (EDM2: 0.05 and 0.10)');
    opts.stdRels.forEach((s, i) => checkStdRel(s, `PowerEMA σ_rel[${i}]`));
    if (new Set(opts.stdRels).size !== opts.stdRels.length)
      throw new RangeError(`PowerEMA: σ_rel values repeat (${opts.stdRels.join(', ')})`);
    this.stdRels = [...opts.stdRels];
    this.exponents = this.stdRels.map(stdToExp);
    const params = model.namedParameters();
    this.#params = params.map(([, t]) => t);
    this.shadows = noGrad(() =>
      this.stdRels.map(() => new Map(params.map(([n, t]) => [n, keep(t.clone())] as [string, Tensor]))),
    );
    this.#shadowParams = this.shadows.map((m) => params.map(([n]) => m.get(n)!));
  }

  /** Averages in the weights after one more optimizer step. */
  update(): void {
    const t = ++this.step;
    noGrad(() => {
      this.exponents.forEach((gamma, i) => {
        const beta = (1 - 1 / t) ** (gamma + 1);
        if (this.#params.length) aten._foreach_lerp_$Scalar(this.#shadowParams[i]!, this.#params, 1 - beta);
      });
    });
  }

  /** The step counter and the shadows as `${index}.${name}` (new handles; dispose when done). */
  stateDict(): PowerEMAState {
    const tensors = new Map<string, Tensor>();
    this.shadows.forEach((m, i) => {
      for (const [k, t] of m) tensors.set(`${i}.${k}`, t.detach());
    });
    return { step: this.step, stdRels: [...this.stdRels], tensors };
  }

  loadStateDict(state: PowerEMAState): void {
    if (state.stdRels.length !== this.stdRels.length || state.stdRels.some((s, i) => s !== this.stdRels[i]))
      throw new TypeError(
        `PowerEMA state: it tracks σ_rel ${state.stdRels.join(', ')}, this one ${this.stdRels.join(', ')}`,
      );
    const missing = this.shadows
      .flatMap((m, i) => [...m.keys()].map((k) => `${i}.${k}`))
      .filter((k) => !state.tensors.has(k));
    if (missing.length) throw new TypeError(`PowerEMA state: missing keys ${missing.join(', ')}`);
    noGrad(() => {
      this.shadows.forEach((m, i) => {
        for (const [k, t] of m) t.copy_(state.tensors.get(`${i}.${k}`)!);
      });
    });
    this.step = state.step;
  }

  dispose(): void {
    for (const m of this.shadows) {
      for (const t of m.values()) t.dispose();
      m.clear();
    }
  }
}
