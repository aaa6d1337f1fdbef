// Samplers (spec §7): Euler and Heun on the PF-ODE (Karras et al. 2022,
// Algorithm 2, with EDM's stochastic churn as a working option), classifier-free
// guidance with a guidance interval on the x̂₀ output, and consistency-model
// one-step and multistep sampling. Every sampler counts its network evaluations
// (NFE): a guided evaluation counts 2 (conditional and unconditional).
// Grid arithmetic runs in float64 (STYLE.md habit 6).
import * as torch from '@epg/torch';
import type { Generator, Tensor } from '@epg/torch';

import { resolutionShift, SIGMA_MAX, SIGMA_MIN } from './edm.js';

/** x̂₀ = D(x, σ) for a batch at one (shifted) σ; reports how many network evaluations it used. */
export interface Denoiser {
  (x: Tensor, sigma: number): { x0: Tensor; nfe: number };
}

export interface SampleResult {
  samples: Tensor;
  nfe: number;
}

/** Per-channel bounds of valid data in normalised space (e.g. the ImageNet-normalised range, spec §1). */
export interface ClampRange {
  min: readonly number[];
  max: readonly number[];
}

/** The released guidance interval (spec §7): CFG only while σ_shift ∈ (0.19·H/64, 1.61·H/64], unshifted bounds. */
export const GUIDANCE_INTERVAL: readonly [number, number] = [0.19, 1.61];

/** Guidance at every σ: an interval that holds them all (a one-step sampler's σ_max′ lies outside the released one). */
export const EVERY_SIGMA: readonly [number, number] = [0, Number.MAX_VALUE];

/** Whether `x` is a guidance interval [LO, HI] in unshifted σ: finite, 0 ≤ LO < HI. */
export function isGuidanceInterval(x: unknown): x is readonly [number, number] {
  return (
    Array.isArray(x) &&
    x.length === 2 &&
    x.every((v) => typeof v === 'number' && Number.isFinite(v) && v >= 0) &&
    (x[0] as number) < (x[1] as number)
  );
}

/**
 * Wraps a model's x̂₀ as a Denoiser with CFG and clamping (spec §7):
 * D = D_u + s·(D_c − D_u) only while σ ∈ (lo·H/64, hi·H/64], in one batched forward
 * of [conditional; unconditional]; outside the interval (or with s = 1) one
 * conditional evaluation. x̂₀ is clamped to the data's valid range (not to
 * [−1, 1] as the official sampler does, spec §12.2 item 7).
 */
export function guidedDenoiser(
  x0Fn: (x: Tensor, sigma: Tensor, y: Tensor) => Tensor,
  o: {
    labels: Tensor;
    nullClass: number;
    imageSize: number;
    cfgScale?: number;
    /** Unshifted guidance interval (GUIDANCE_INTERVAL in the released scripts; default: guide at every σ). */
    guidanceInterval?: readonly [number, number];
    clamp?: ClampRange | null;
  },
): Denoiser {
  const scale = o.cfgScale ?? 1;
  const shift = resolutionShift(o.imageSize);
  const [lo, hi] = o.guidanceInterval ?? [0, Infinity];
  return (x, sigma) =>
    torch.tidy(() => {
      const B = x.shape[0]!;
      const guided = scale !== 1 && sigma > lo * shift && sigma <= hi * shift;
      let x0: Tensor;
      if (guided) {
        const s = torch.full([2 * B], sigma, { dtype: 'float64', device: x.device });
        const y = torch.cat([o.labels, torch.fullLike(o.labels, o.nullClass)]);
        const [dc, du] = x0Fn(torch.cat([x, x]), s, y).chunk(2) as [Tensor, Tensor];
        x0 = du.add(dc.sub(du).mul(scale));
      } else {
        const s = torch.full([B], sigma, { dtype: 'float64', device: x.device });
        x0 = x0Fn(x, s, o.labels);
      }
      if (o.clamp) x0 = clampChannels(x0, o.clamp);
      return { x0, nfe: guided ? 2 : 1 };
    });
}

/** Clamps each channel to its own [min, max]. */
export function clampChannels(x: Tensor, range: ClampRange): Tensor {
  return torch.tidy(() => {
    const C = x.shape[1]!;
    if (range.min.length !== C || range.max.length !== C)
      throw new RangeError(`clamp range has ${range.min.length} channels, images have ${C}`);
    // Filled on the device rather than copied from the host, so a CUDA graph can hold it.
    const bound = (v: readonly number[]): Tensor =>
      torch.stack(v.map((b) => torch.scalarTensor(b, { dtype: x.dtype, device: x.device }))).reshape(1, C, 1, 1);
    return x.clamp(bound(range.min).expandAs(x), bound(range.max).expandAs(x));
  });
}

/** Initial noise x_T ~ N(0, (σ_max·H/64)²) (spec §7). */
export function initialNoise(shape: number[], o: { generator?: Generator; device?: torch.Device } = {}): Tensor {
  return torch.tidy(() =>
    torch.randn(shape, { generator: o.generator, device: o.device }).mul(SIGMA_MAX * resolutionShift(shape[2]!)),
  );
}

/** d = (x − x̂₀)/σ: the PF-ODE derivative dx/dσ. */
function odeDerivative(x: Tensor, x0: Tensor, sigma: number): Tensor {
  return x.sub(x0).div(sigma);
}

/** Euler steps along sigmas (descending; may end with 0). */
export function sampleEuler(D: Denoiser, xT: Tensor, sigmas: Float64Array): SampleResult {
  let nfe = 0;
  let x = xT.clone();
  for (let i = 0; i < sigmas.length - 1; i++) {
    const next = torch.tidy(() => {
      const { x0, nfe: n } = D(x, sigmas[i]!);
      nfe += n;
      return x.add(odeDerivative(x, x0, sigmas[i]!).mul(sigmas[i + 1]! - sigmas[i]!));
    });
    x.dispose();
    x = next;
  }
  return { samples: x, nfe };
}

export interface HeunOptions {
  /** EDM stochasticity (off by default: the released sampler is deterministic, spec §12.2 item 9). */
  sChurn?: number;
  sTmin?: number;
  sTmax?: number;
  sNoise?: number;
  generator?: Generator;
}

/**
 * Heun's 2nd-order method (Karras Algorithm 2) with optional churn: at each step
 * σ̂ = σ_i(1 + γ), γ = min(S_churn/(n−1), √2 − 1) inside [S_tmin, S_tmax], x̂ = x + √(σ̂² − σ_i²)·S_noise·z;
 * an Euler step to σ_{i+1}, corrected by the trapezoid rule unless σ_{i+1} = 0.
 */
export function sampleHeun(D: Denoiser, xT: Tensor, sigmas: Float64Array, o: HeunOptions = {}): SampleResult {
  const steps = sigmas.length - 1;
  const churn = o.sChurn ?? 0;
  let nfe = 0;
  let x = xT.clone();
  for (let i = 0; i < steps; i++) {
    const next = torch.tidy(() => {
      const sigma = sigmas[i]!;
      const sigmaNext = sigmas[i + 1]!;
      const gamma =
        churn > 0 && sigma >= (o.sTmin ?? 0) && sigma <= (o.sTmax ?? Infinity)
          ? Math.min(churn / steps, Math.SQRT2 - 1)
          : 0;
      const sigmaHat = sigma * (1 + gamma);
      let xHat = x;
      if (gamma > 0) {
        const z = torch.randn(x.shape, { dtype: x.dtype, device: x.device, generator: o.generator });
        xHat = x.add(z.mul(Math.sqrt(sigmaHat * sigmaHat - sigma * sigma) * (o.sNoise ?? 1)));
      }
      const first = D(xHat, sigmaHat);
      nfe += first.nfe;
      const d = odeDerivative(xHat, first.x0, sigmaHat);
      const dt = sigmaNext - sigmaHat;
      const xEuler = xHat.add(d.mul(dt));
      if (sigmaNext === 0) return xEuler;
      const second = D(xEuler, sigmaNext);
      nfe += second.nfe;
      const d2 = odeDerivative(xEuler, second.x0, sigmaNext);
      return xHat.add(d.add(d2).mul(0.5 * dt));
    });
    x.dispose();
    x = next;
  }
  return { samples: x, nfe };
}

/** One-step consistency sampling (spec §7): f(x_T, σ_max·H/64). */
export function sampleOneStep(f: Denoiser, xT: Tensor): SampleResult {
  const { x0, nfe } = f(xT, SIGMA_MAX * resolutionShift(xT.shape[2]!));
  return { samples: x0, nfe };
}

/**
 * Multistep consistency sampling (Song et al. 2023, Algorithm 1; absent from
 * the official code, spec §7): x = f(x_T, σ_max'); then for each intermediate
 * σ_i (shifted, descending): x ← f(x + √(σ_i² − σ_min'²)·z, σ_i).
 */
export function sampleMultistep(
  f: Denoiser,
  xT: Tensor,
  intermediateSigmas: readonly number[],
  o: {
    generator?: Generator;
    /** Draws z ~ N(0, I) like x before intermediate step j (per-sample streams, sample-noise.ts); else randn(generator). */
    noise?: (x: Tensor, step: number) => Tensor;
  } = {},
): SampleResult {
  const shift = resolutionShift(xT.shape[2]!);
  const sigmaMin = SIGMA_MIN * shift;
  let { x0: x, nfe } = f(xT, SIGMA_MAX * shift);
  for (const [step, sigma] of intermediateSigmas.entries()) {
    if (!(sigma > sigmaMin)) throw new RangeError(`multistep: σ ${sigma} must exceed σ_min' = ${sigmaMin}`);
    const next = torch.tidy(() => {
      const z = o.noise
        ? o.noise(x, step).to({ dtype: x.dtype, device: x.device })
        : torch.randn(x.shape, { dtype: x.dtype, device: x.device, generator: o.generator });
      const r = f(x.add(z.mul(Math.sqrt(sigma * sigma - sigmaMin * sigmaMin))), sigma);
      nfe += r.nfe;
      return r.x0;
    });
    x.dispose();
    x = next;
  }
  return { samples: x, nfe };
}
