// The EDM variance-exploding noise process as EPG uses it (spec §2): x_σ = x₀ + σ·ε,
// the Karras grid, the resolution shift σ·H/64, the consistency-model
// preconditioning and the time input. Each is one short unit in the paper's
// symbols; grid arithmetic in float64 on the host, the per-sample coefficients
// in float64 on the device (the trainer and the samplers call these).
import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

/** Constants of every EPG config (spec §2). */
export const SIGMA_MIN = 0.002;
export const SIGMA_MAX = 80;
export const RHO = 7;
export const SIGMA_DATA = 0.5;

/**
 * The resolution shift (spec §2, "shift sigma w.r.t image size 64"): every σ
 * that touches data is multiplied by H/64 (4 at 256 px, 8 at 512 px).
 */
export function resolutionShift(imageSize: number): number {
  return imageSize / 64;
}

/**
 * Karras grid of N points (spec §2): σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,
 * i = 0…N−1; index 0 is σ_max, index N−1 is σ_min. Unshifted.
 */
export function karrasSigmas(n: number, sigmaMin = SIGMA_MIN, sigmaMax = SIGMA_MAX, rho = RHO): Float64Array {
  if (!Number.isInteger(n) || n < 2) throw new RangeError(`karrasSigmas: need at least 2 points, got ${n}`);
  const maxInv = sigmaMax ** (1 / rho);
  const minInv = sigmaMin ** (1 / rho);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = (maxInv + (i / (n - 1)) * (minInv - maxInv)) ** rho;
  return out;
}

/** Per-sample coefficient tensors [B, 1, 1, 1], in the network's dtype. */
export interface Preconditioning {
  cSkip: Tensor;
  cOut: Tensor;
  cIn: Tensor;
}

/**
 * Consistency-model preconditioning with the boundary condition at σ_min'
 * (spec §2, get_scalings_for_boundary_condition), at shifted σ [B] and
 * σ_min' = σ_min·H/64; computed in float64, returned in `dtype`:
 *   c_skip = σ_d² / ((σ−σ_min')² + σ_d²),  c_out = (σ−σ_min')·σ_d / √(σ² + σ_d²),  c_in = 1/√(σ² + σ_d²).
 * The diffusion model uses c_in only (it predicts x₀ directly, spec §5.2).
 */
export function preconditioning(
  sigma: Tensor,
  imageSize: number,
  dtype: 'float32' | 'float64' = 'float32',
  sigmaData = SIGMA_DATA,
): Preconditioning {
  return torch.tidy(() => {
    const s = sigma.double();
    const sd2 = sigmaData * sigmaData;
    const d = s.sub(SIGMA_MIN * resolutionShift(imageSize));
    const norm = s.square().add(sd2).sqrt();
    const shape = (t: Tensor): Tensor => t.reshape(-1, 1, 1, 1).to(dtype);
    return {
      cSkip: shape(d.square().add(sd2).reciprocal().mul(sd2)),
      cOut: shape(d.mul(sigmaData).div(norm)),
      cIn: shape(norm.reciprocal()),
    };
  });
}

/**
 * The boundary scalings of a consistency function whose network predicts x₀
 * (finetune.cmPrecond 'x0', not in the released code): f = c_skip·x + c_out·F with
 *   c_skip = σ_min'² / ((σ−σ_min')² + σ_min'²),  c_out = 1 − c_skip = (σ−σ_min')² / ((σ−σ_min')² + σ_min'²),
 * at shifted σ [B]; float64, returned in `dtype`. The boundary condition f(x, σ_min') = x holds
 * exactly, and above it f departs from F by c_skip·(x − F), at most σ_min'/2 per unit of noise: a
 * diffusion model's denoiser read this way is already a consistency function at every σ, which
 * is where ECT's tuning starts (with EDM's σ_d in this c_skip, f would keep 67% of the noisy x at σ = 0.35).
 */
export function x0BoundaryScalings(
  sigma: Tensor,
  imageSize: number,
  dtype: 'float32' | 'float64' = 'float32',
): { cSkip: Tensor; cOut: Tensor } {
  return torch.tidy(() => {
    const sigmaMin = SIGMA_MIN * resolutionShift(imageSize);
    const d2 = sigma.double().sub(sigmaMin).square();
    const width2 = sigmaMin * sigmaMin;
    const shape = (t: Tensor): Tensor => t.reshape(-1, 1, 1, 1).to(dtype);
    return {
      cSkip: shape(d2.add(width2).reciprocal().mul(width2)),
      cOut: shape(d2.div(d2.add(width2))),
    };
  });
}

/**
 * Time input of the network (spec §2): t_in = 1000·¼·ln(σ + 1e-44) = 250·ln σ at shifted σ [B],
 * computed in float64 and returned in `dtype`: the model's dtype when that is float64, float32
 * otherwise (the official code; the time embedding is then computed in the same dtype, vit.ts).
 */
export function timeInput(sigma: Tensor, dtype: 'float32' | 'float64' = 'float32'): Tensor {
  return torch.tidy(() => sigma.double().add(1e-44).log().mul(250).to(dtype));
}

/**
 * Sampling grid (spec §7): Karras with n points between σ_min and σ_max, shifted
 * by H/64. The official sampler appends no σ = 0 (its last point is σ_min'); with
 * appendZero the grid ends with 0 as in EDM, and the last step is an Euler step
 * to the denoised image.
 */
export function samplingSigmas(steps: number, imageSize: number, opts: { appendZero?: boolean } = {}): Float64Array {
  const shift = resolutionShift(imageSize);
  const grid = karrasSigmas(steps).map((s) => s * shift);
  if (!opts.appendZero) return grid;
  const out = new Float64Array(steps + 1);
  out.set(grid);
  return out;
}
