// The three training objectives of EPG (spec §4–§6), each returning per-sample
// terms (STYLE.md habit 4): the training stage averages them; the trainer scales
// the mean and accumulates it over micro-batches (cfg.accumulate).
// Randomness (the noise ε, noise levels) is drawn by the caller and passed in
// (habit 5), so a test can feed the same draws to a reference implementation.
import * as torch from '@epg/torch';
import type { Generator, Tensor } from '@epg/torch';

import { consistencyFunction, denoiseX0, type CmPrecond, type Network } from '../diffusion/denoiser.js';
import { preconditioning, resolutionShift, SIGMA_MIN, timeInput } from '../diffusion/edm.js';
import {
  CM_LOGNORMAL,
  dmSigmaIndex,
  dmWeight,
  DM_LOGNORMAL,
  ectR,
  ectT,
  ECT_SCHEDULE,
} from '../diffusion/schedules.js';
import type { RCMViT } from '../models/vit.js';
import { ntXent } from './ntxent.js';

/** RCMViT evaluated as a denoiser would see it (spec §4.1, denoise): input scaled by c_in(σ), time 250 ln σ. */
function encode(model: RCMViT, x: Tensor, sigma: number): { proj: Tensor; rep: Tensor } {
  return torch.tidy(() => {
    const B = x.shape[0]!;
    const s = torch.full([B], sigma, { dtype: 'float64', device: x.device });
    const dtype = x.dtype === 'float64' ? 'float64' : 'float32';
    const { cIn } = preconditioning(s, x.shape[2]!, dtype);
    return model.forward(x.mul(cIn), timeInput(s, dtype));
  });
}

/** Temperature of the contrastive loss L_con (spec §4.1, hard-coded in contrastive_loss). */
export const TAU_CON = 0.2;
/** Temperature of the representation-consistency loss L_rc (spec §4.3, released config: constant). */
export const TAU_RC = 0.1;
/** Pseudo-Huber c of the consistency loss (spec §6.2, pseudo_huber_c). */
export const PSEUDO_HUBER_C = 0.06;
/** Temperature of the consistency auxiliary loss L_aux (spec §6.2, get_tau = tmin_tau). */
export const TAU_AUX = 0.1;

export interface PretrainBatch {
  /** Clean image (centre crop + flip), for the trajectory branch. */
  x: Tensor;
  /** The two augmented views, for the contrastive branch. */
  xAug: Tensor;
  xAug2: Tensor;
}

export interface PretrainInputs extends PretrainBatch {
  online: RCMViT;
  /** EMA target θ⁻ (momentum 0.99) for the contrastive branch. */
  target: RCMViT;
  /** ε ~ N(0, I), shared by every view (spec §4.1 step 4). */
  noise: Tensor;
  /** Grid index n ∈ {0…N−2}, the same for the whole global batch. */
  n: number;
  /** The unshifted Karras grid of N(k) points. */
  grid: Float64Array;
  /** Temperatures: contrastive TAU_CON, representation consistency τ_rc (TAU_RC in the released config). */
  tauCon?: number;
  tauRc: number;
  /** Gathers targets across ranks with the local block first (identity on one process). */
  gather?: (t: Tensor) => Tensor;
}

/**
 * Pre-training objective (spec §4.1): L = L_con + L_rc per sample.
 * L_con = NCE(P_θ(v1), sg P_θ⁻(v2); 0.2) + NCE(P_θ(v2), sg P_θ⁻(v1); 0.2), v = view + ε·σ_min'.
 * L_rc = NCE(R_θ(x + ε·σ_n), sg R_θ(x + ε·σ_{n+1}); τ_rc): the noisier point is pulled
 * toward its cleaner neighbour on the same trajectory; the target is the online
 * network under stop-gradient, not the EMA.
 */
export function pretrainLoss({ tauCon = TAU_CON, ...p }: PretrainInputs): { loss: Tensor; lCon: Tensor; lRc: Tensor } {
  const shift = resolutionShift(p.x.shape[2]!);
  const N = p.grid.length;
  if (!(p.n >= 0 && p.n <= N - 2)) throw new RangeError(`pretrainLoss: n = ${p.n} outside 0…${N - 2}`);
  const t = p.grid[p.n]! * shift;
  const t2 = p.grid[p.n + 1]! * shift;
  const t0 = p.grid[N - 1]! * shift;
  const gather = p.gather ?? ((x: Tensor) => x.alias());
  return torch.tidy(() => {
    const v1 = p.xAug.add(p.noise.mul(t0));
    const v2 = p.xAug2.add(p.noise.mul(t0));
    const q1 = encode(p.online, v1, t0).proj;
    const q2 = encode(p.online, v2, t0).proj;
    const [k1, k2] = torch.noGrad(() => [encode(p.target, v1, t0).proj, encode(p.target, v2, t0).proj]);
    const lCon = ntXent(q1, gather(k2!), tauCon).add(ntXent(q2, gather(k1!), tauCon));
    const xt = p.x.add(p.noise.mul(t));
    const xt2 = p.x.add(p.noise.mul(t2));
    const r = encode(p.online, xt, t).rep;
    const rTarget = torch.noGrad(() => encode(p.online, xt2, t2).rep);
    const lRc = ntXent(r, gather(rTarget), p.tauRc);
    return { loss: lCon.add(lRc), lCon, lRc };
  });
}

/**
 * Draws diffusion noise levels (spec §5.2 steps 1–2) on the device, without a
 * host sync: σ = the point of the unshifted grid nearest to exp(P_mean + P_std·z),
 * with its weight 1/(σ_i − σ_{i+1}).
 */
export function sampleDmSigmas(
  batch: number,
  grid: Float64Array | Tensor,
  {
    pMean = DM_LOGNORMAL.pMean,
    pStd = DM_LOGNORMAL.pStd,
    generator,
    device = 'cpu',
  }: { pMean?: number; pStd?: number; generator?: Generator; device?: torch.Device } = {},
): { sigma: Tensor; weight: Tensor; index: Tensor } {
  return torch.tidy(() => {
    // A grid already on the device (float64) keeps the draw free of host copies (CUDA-graph capture).
    const g =
      grid instanceof Float64Array
        ? torch.tensor(grid, { dtype: 'float64' }).to({ device })
        : grid.to({ device, dtype: 'float64' });
    const z = torch.randn([batch], { dtype: 'float64', device, generator });
    const index = dmSigmaIndex(z, g, { pMean, pStd });
    return { sigma: g.indexSelect(0, index), weight: dmWeight(index, g), index };
  });
}

export interface DmInputs {
  net: Network;
  x0: Tensor;
  y: Tensor;
  /** Unshifted σ per sample, on the grid, and its weight (sampleDmSigmas). */
  sigma: Tensor;
  weight: Tensor;
  noise: Tensor;
}

/**
 * Diffusion objective (spec §5.2): w(σ)·mean_{C,H,W}(D_θ(x₀ + ε·σ_s) − x₀)² with
 * σ_s = σ·H/64 and D the direct x₀ prediction. Per sample.
 */
export function dmLoss(p: DmInputs): Tensor {
  return torch.tidy(() => {
    const shift = resolutionShift(p.x0.shape[2]!);
    const sigmaS = p.sigma.mul(shift);
    const xs = p.x0.add(p.noise.mul(sigmaS.reshape(-1, 1, 1, 1).to(p.x0.dtype)));
    const D = denoiseX0(p.net, xs, sigmaS, p.y);
    const err = D.to(p.x0.dtype).sub(p.x0).square().flatten(1).mean(1);
    return err.mul(p.weight.to(err.dtype));
  });
}

/** ECT (t, r) pairs on the device (spec §6.1), unshifted: t = ectT(z), r = ectR(t, stage). */
export function sampleEctPairs(
  batch: number,
  stage: number,
  {
    pMean = CM_LOGNORMAL.pMean,
    pStd = CM_LOGNORMAL.pStd,
    q = ECT_SCHEDULE.q,
    k = ECT_SCHEDULE.k,
    b = ECT_SCHEDULE.b,
    generator,
    device = 'cpu',
  }: {
    pMean?: number;
    pStd?: number;
    q?: number;
    k?: number;
    b?: number;
    generator?: Generator;
    device?: torch.Device;
  } = {},
): { t: Tensor; r: Tensor } {
  return torch.tidy(() => {
    const z = torch.randn([batch], { dtype: 'float64', device, generator });
    const t = ectT(z, { pMean, pStd });
    return { t, r: ectR(t, stage, { q, k, b }) };
  });
}

export interface CmInputs {
  net: Network;
  x0: Tensor;
  y: Tensor;
  /** Unshifted t and r per sample (sampleEctPairs). */
  t: Tensor;
  r: Tensor;
  noise: Tensor;
  /** Pseudo-Huber c (PSEUDO_HUBER_C in the released config). */
  c?: number;
  /** How f reads the network output: 'edm' (spec §6.2, default) or 'x0' (tuning from a diffusion model). */
  precond?: CmPrecond;
  /** The frozen pre-trained encoder for the auxiliary loss (eval mode), or null to skip it. */
  perceptual: RCMViT | null;
  tauAux?: number;
  gather?: (t: Tensor) => Tensor;
  /**
   * The generator that dropout draws from (the device's default one): its state
   * is saved before the online pass and restored before the target pass, so
   * both see identical dropout masks (spec §6.2 step 3).
   */
  rng?: { getState(): Uint8Array; setState(state: Uint8Array): void };
}

/**
 * Consistency objective (spec §6.2), per sample:
 * w·s/√(sg(s) + c²) + L_aux, s = Σ_{C,H,W}(f_θ(x_t, t_s) − sg f_θ(x_r, r_s))², w = 1/(t_s − r_s)
 * (shifted; 0 where t = r), L_aux = NCE(P(f_θ(x_t, t_s)), sg P(x₀); τ 0.1) with P the
 * frozen encoder's projector output at σ_min'.
 */
export function cmLoss({ c = PSEUDO_HUBER_C, tauAux = TAU_AUX, ...p }: CmInputs): {
  loss: Tensor;
  lCm: Tensor;
  lAux: Tensor | null;
} {
  return torch.tidy(() => {
    const H = p.x0.shape[2]!;
    const shift = resolutionShift(H);
    const ts = p.t.mul(shift);
    const rs = p.r.mul(shift);
    const bcast = (s: Tensor): Tensor => s.reshape(-1, 1, 1, 1).to(p.x0.dtype);
    const xt = p.x0.add(p.noise.mul(bcast(ts)));
    const xr = p.x0.add(p.noise.mul(bcast(rs)));
    const state = p.rng?.getState();
    const fOnline = consistencyFunction(p.net, xt, ts, p.y, p.precond);
    if (state !== undefined) p.rng!.setState(state);
    const fTarget = torch.noGrad(() => consistencyFunction(p.net, xr, rs, p.y, p.precond));
    const s = fOnline.sub(fTarget).square().flatten(1).sum(1);
    const huber = s.div(
      s
        .detach()
        .add(c * c)
        .sqrt(),
    );
    const gap = ts.sub(rs);
    const w = torch.where(gap.gt(0), gap.reciprocal(), 0).to(huber.dtype);
    const lCm = huber.mul(w);
    if (p.perceptual === null) return { loss: lCm, lCm, lAux: null };
    const sigmaMin = SIGMA_MIN * shift;
    const f1 = encode(p.perceptual, fOnline, sigmaMin).proj;
    const f2 = torch.noGrad(() => encode(p.perceptual!, p.x0, sigmaMin).proj);
    const gather = p.gather ?? ((x: Tensor) => x.alias());
    const lAux = ntXent(f1, gather(f2), tauAux);
    return { loss: lCm.add(lAux), lCm, lAux };
  });
}
