// How training draws noise levels in each stage (spec §2, §5, §6): the
// pre-training step curriculum N(k) with one grid index per global batch, the
// diffusion fine-tuning log-normal σ quantised to the 1280-point grid with its
// 1/Δσ weight, and the ECT (t, r) pairs of consistency fine-tuning.
import { karrasSigmas, SIGMA_MIN } from './edm.js';

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

/** Index of the grid point nearest to σ (spec §5.2, find_nearest; ties go to the lower index). */
export function nearestGridIndex(sigma: number, grid: Float64Array): number {
  let best = 0;
  let bestErr = Infinity;
  for (let i = 0; i < grid.length; i++) {
    const err = Math.abs(sigma - grid[i]!);
    if (err < bestErr) {
      best = i;
      bestErr = err;
    }
  }
  return best;
}

/**
 * Diffusion loss weight (spec §5.2): w(i) = 1/(σ_i − σ_{i+1}) on the unshifted
 * grid; 0 where the two are equal (and at the last index, which has no successor).
 */
export function dmWeight(index: number, grid: Float64Array): number {
  const a = grid[index];
  const b = grid[index + 1];
  if (a === undefined || b === undefined || a === b) return 0;
  return 1 / (a - b);
}

export interface LogNormal {
  pMean: number;
  pStd: number;
}

/** Diffusion fine-tuning σ distribution (spec §5.2): log-normal(−1.2, 1.6), unshifted. */
export const DM_LOGNORMAL: LogNormal = { pMean: -1.2, pStd: 1.6 };
/** Consistency fine-tuning t distribution (spec §6.1): log-normal(−0.4, 1.6), unshifted. */
export const CM_LOGNORMAL: LogNormal = { pMean: -0.4, pStd: 1.6 };

/** σ̃ = exp(P_mean + P_std·z) for a standard normal draw z. */
export function logNormalSigma(z: number, p: LogNormal): number {
  return Math.exp(p.pMean + p.pStd * z);
}

/** Draws a diffusion noise level (spec §5.2 steps 1–2): the nearest point of the 1280-grid to a log-normal σ̃. */
export function dmSigmaIndex(z: number, grid: Float64Array, p: LogNormal = DM_LOGNORMAL): number {
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

/**
 * ECT's r(t) on unshifted σ (spec §6.1):
 * r = max(t·(1 − q^{−stage}·(1 + k·sigmoid(−b·t))), σ_min).
 */
export function ectR(t: number, stage: number, s: EctSchedule = ECT_SCHEDULE): number {
  const sigmoidMinusBt = 1 / (1 + Math.exp(s.b * t));
  return Math.max(t * (1 - s.q ** -stage * (1 + s.k * sigmoidMinusBt)), SIGMA_MIN);
}

/** ECT t (spec §6.1): max(exp(P_mean + P_std·z), σ_min), unshifted. */
export function ectT(z: number, p: LogNormal = CM_LOGNORMAL): number {
  return Math.max(logNormalSigma(z, p), SIGMA_MIN);
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
  const span = 80 - SIGMA_MIN;
  return (o.tauMin * (80 - sigma)) / span + (tauMax * (sigma - SIGMA_MIN)) / span;
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
