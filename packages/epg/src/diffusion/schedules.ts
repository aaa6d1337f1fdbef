// How training draws noise levels in each stage (spec §2, §5, §6): the
// pre-training step curriculum N(k) with one grid index per global batch, the
// diffusion fine-tuning log-normal σ quantised to the 1280-point grid with its
// 1/Δσ weight, and the ECT (t, r) pairs of consistency fine-tuning. The
// per-sample draws are float64 tensors on the training device (no host sync);
// the paper's settings are the named constants that the signatures default to
// and train/config.ts's DEFAULTS are built from.
import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

import { karrasSigmas, SIGMA_MAX, SIGMA_MIN } from './edm.js';

export interface IctCurriculum {
  totalSteps: number;
  startScales: number;
  endScales: number;
}

/** The released pre-training curriculum (spec §2): K = 600k, start 20, end 1280. */
export const PRETRAIN_CURRICULUM: IctCurriculum = { totalSteps: 600000, startScales: 20, endScales: 1280 };

/**
 * iCT step-doubling curriculum as the official code computes it (spec §2):
 * K' = ⌈K / log2(⌈end/start⌉ + 1)⌉ and N(k) = min(start·2^⌈k/K'⌉, end) + 1.
 * (The code uses ⌈·⌉ where iCT uses ⌊·⌋, so the first doubling is at step 1.)
 */
export function ictNumScales(step: number, c: IctCurriculum = PRETRAIN_CURRICULUM): number {
  const kPrime = Math.ceil(c.totalSteps / Math.log2(Math.ceil(c.endScales / c.startScales) + 1));
  return Math.min(c.startScales * 2 ** Math.ceil(step / kPrime), c.endScales) + 1;
}

/**
 * One noise index n ∈ {0, …, N−2} for the whole global batch (spec §4.1 step 2,
 * UniqueSampler): every sample (on every rank) uses the adjacent pair σ_n, σ_{n+1}.
 * u is a uniform draw in [0, 1) (from rank 0's generator in data parallel).
 */
export function pretrainNoiseIndex(numScales: number, u: number): number {
  return Math.min(Math.floor(u * (numScales - 1)), numScales - 2);
}

/** The diffusion fine-tuning grid: 1280 Karras points (spec §5.2, ema_scale.start_scales). */
export const DM_GRID_SIZE = 1280;

/** Index of the grid point nearest to each σ [B] (spec §5.2, find_nearest; ties go to the lower index). */
export function nearestGridIndex(sigma: Tensor, grid: Tensor): Tensor {
  return sigma.unsqueeze(1).sub(grid.unsqueeze(0)).abs().argmin(1);
}

/**
 * Diffusion loss weight of each grid index [B] (spec §5.2): w(i) = 1/(σ_i − σ_{i+1})
 * on the unshifted grid, 0 where the two are equal; the grid is padded with its last
 * point, so the last index has weight 0.
 */
export function dmWeight(index: Tensor, grid: Tensor): Tensor {
  const gap = grid.sub(torch.cat([grid.slice(0, 1), grid.slice(0, -1)]));
  return torch.where(gap.gt(0), gap.reciprocal(), 0).indexSelect(0, index);
}

export interface LogNormal {
  pMean: number;
  pStd: number;
}

/** Diffusion fine-tuning σ distribution (spec §5.2): log-normal(−1.2, 1.6), unshifted. */
export const DM_LOGNORMAL: LogNormal = { pMean: -1.2, pStd: 1.6 };
/** Consistency fine-tuning t distribution (spec §6.1): log-normal(−0.4, 1.6), unshifted. */
export const CM_LOGNORMAL: LogNormal = { pMean: -0.4, pStd: 1.6 };

/** σ̃ = exp(P_mean + P_std·z) for standard normal draws z [B]. */
export function logNormalSigma(z: Tensor, p: LogNormal): Tensor {
  return z.mul(p.pStd).add(p.pMean).exp();
}

/** Diffusion noise levels (spec §5.2 steps 1–2): the index of the grid point nearest to a log-normal σ̃. */
export function dmSigmaIndex(z: Tensor, grid: Tensor, p: LogNormal = DM_LOGNORMAL): Tensor {
  return nearestGridIndex(logNormalSigma(z, p), grid);
}

export interface EctSchedule {
  q: number;
  k: number;
  b: number;
  /** Steps per stage (100k in the released config). */
  stageSteps: number;
}

/** The released ECT settings (spec §6.1). */
export const ECT_SCHEDULE: EctSchedule = { q: 2, k: 8, b: 1, stageSteps: 100000 };

/** ECT stage (spec §6.1): ⌊step / stageSteps⌋ + 1 (delta = 1: stage ≥ 1 from step 0). */
export function ectStage(step: number, s: EctSchedule = ECT_SCHEDULE): number {
  return Math.floor(step / s.stageSteps) + 1;
}

/** The (q, k, b) of ECT's r(t) (spec §6.1). */
export type EctShape = Pick<EctSchedule, 'q' | 'k' | 'b'>;

/** ECT t (spec §6.1): t = max(exp(P_mean + P_std·z), σ_min), unshifted, for standard normal draws z [B]. */
export function ectT(z: Tensor, p: LogNormal = CM_LOGNORMAL): Tensor {
  return logNormalSigma(z, p).clampMin(SIGMA_MIN);
}

/** ECT's r(t) on unshifted t [B] (spec §6.1): r = max(t·(1 − q^{−stage}·(1 + k·sigmoid(−b·t))), σ_min). */
export function ectR(t: Tensor, stage: number, s: EctShape = ECT_SCHEDULE): Tensor {
  return t
    .mul(
      t
        .mul(-s.b)
        .sigmoid()
        .mul(s.k)
        .add(1)
        .mul(s.q ** -stage)
        .rsub(1),
    )
    .clampMin(SIGMA_MIN);
}

/** Cached Karras grids by size. */
const grids = new Map<number, Float64Array>();
export function gridOf(n: number): Float64Array {
  let g = grids.get(n);
  if (g === undefined) {
    g = karrasSigmas(n);
    grids.set(n, g);
  }
  return g;
}

/**
 * Temperature of the representation-consistency loss (spec §4.3). 'constant'
 * (released config): τ_min. 'interpolated' (the paper's schedule, off in the
 * release): τ(σ) = τ_min·(σ_max−σ)/(σ_max−σ_min) + τ_max(k)·(σ−σ_min)/(σ_max−σ_min)
 * with σ unshifted and τ_max(k) cosine-annealed (cosineTauMax).
 */
export function rcTemperature(
  sigma: number,
  o: { schedule: 'constant' | 'interpolated'; tauMin: number; tauMax?: number },
): number {
  if (o.schedule === 'constant') return o.tauMin;
  const tauMax = o.tauMax ?? o.tauMin;
  const span = SIGMA_MAX - SIGMA_MIN;
  return (o.tauMin * (SIGMA_MAX - sigma)) / span + (tauMax * (sigma - SIGMA_MIN)) / span;
}

/**
 * τ_max(k) of the interpolated schedule (spec §4.3, utils.cosine_tau):
 * startTau + endTau·cos(π/2·(1.5k/K + 1)) while 1.5k/K + 1 ≤ 2, then endTau.
 */
export function cosineTauMax(step: number, totalSteps: number, startTau: number, endTau: number): number {
  const phase = (1.5 * step) / totalSteps + 1;
  if (phase > 2) return endTau;
  return startTau + endTau * Math.cos((Math.PI / 2) * phase);
}
