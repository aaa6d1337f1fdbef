// Samplers against closed forms: for Gaussian data N(μ, s²) the ideal denoiser
// is D(x, σ) = (s²x + σ²μ)/(s² + σ²) and the PF-ODE has the exact solution
// x(σ) = μ + (x_T − μ)·√(s² + σ²)/√(s² + σ_T²). Heun must follow it closely,
// samplers must produce the right mean and variance, and NFE counts must match
// spec §7 (74 forward passes for 32 Heun steps with CFG at 256 px).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as torch from '@epg/torch';
import { testing, type Tensor } from '@epg/torch';

import {
  edm,
  guidedDenoiser,
  initialNoise,
  sampleEuler,
  sampleHeun,
  sampleMultistep,
  sampleOneStep,
  type Denoiser,
} from '../src/index.js';
import { EVERY_SIGMA, GUIDANCE_INTERVAL, isGuidanceInterval } from '../src/diffusion/samplers.js';

const MU = 0.3;
const S = 0.5;
const H = 16; // shift H/64 = 0.25: σ from 20 down to 0.0005
const SHAPE = [64, 1, H, H];

const ideal: Denoiser = (x, sigma) => ({
  x0: torch.tidy(() =>
    x
      .mul(S * S)
      .add(sigma * sigma * MU)
      .div(S * S + sigma * sigma),
  ),
  nfe: 1,
});

/** The exact PF-ODE transport from σ_T to σ. */
function exact(xT: Tensor, sigmaT: number, sigma: number): Tensor {
  return torch.tidy(() =>
    xT
      .sub(MU)
      .mul(Math.sqrt(S * S + sigma * sigma) / Math.sqrt(S * S + sigmaT * sigmaT))
      .add(MU),
  );
}

function stats(x: Tensor): { mean: number; std: number } {
  return torch.tidy(() => ({ mean: x.mean().item(), std: x.std().item() }));
}

/** Max over samples of |x − exact| / (s·|x_T − μ|/σ_T): the error per unit of initial deviation. */
function normalizedError(x: Tensor, xT: Tensor, sigmas: Float64Array, last: number): number {
  return torch.tidy(() => {
    const want = exact(xT, sigmas[0]!, sigmas[last]!);
    const scale = xT
      .sub(MU)
      .abs()
      .mul(S / sigmas[0]!)
      .clampMin(1e-3);
    return x.sub(want).abs().div(scale).max().item();
  });
}

/** With x_T ~ N(0, σ_T²) (not the true marginal N(μ, s² + σ_T²)), the exact map gives mean μ(1 − √(s²+σ_min²)/√(s²+σ_T²)). */
function expectedMean(sigmaT: number, sigmaEnd: number): number {
  return MU * (1 - Math.sqrt(S * S + sigmaEnd * sigmaEnd) / Math.sqrt(S * S + sigmaT * sigmaT));
}

test('sampleHeun follows the exact PF-ODE solution, with second-order convergence', () => {
  torch.tidy(() => {
    const xT = initialNoise(SHAPE, { generator: new torch.Generator('cpu', 1) }).double();
    const errs = [32, 64, 128].map((steps) => {
      const sigmas = edm.samplingSigmas(steps, H);
      const { samples, nfe } = sampleHeun(ideal, xT, sigmas);
      assert.equal(nfe, 2 * (steps - 1));
      return normalizedError(samples, xT, sigmas, steps - 1);
    });
    assert.ok(errs[0]! < 0.012, `32 steps: ${errs[0]}`);
    assert.ok(errs[1]! < errs[0]! / 3.5 && errs[2]! < errs[1]! / 3.5, `not second order: ${errs.join(', ')}`);
  });
});

test('sampleHeun with a trailing σ = 0 ends on x̂₀ (Euler last step) with the expected mean and variance', () => {
  torch.tidy(() => {
    const xT = initialNoise([256, 1, H, H], { generator: new torch.Generator('cpu', 2) }).double();
    const sigmas = edm.samplingSigmas(40, H, { appendZero: true });
    const { samples, nfe } = sampleHeun(ideal, xT, sigmas);
    assert.equal(nfe, 2 * 39 + 1);
    const { mean, std } = stats(samples);
    const n = samples.numel();
    const wantMean = expectedMean(sigmas[0]!, 0);
    assert.ok(Math.abs(mean - wantMean) < (4 * S) / Math.sqrt(n) + 1e-3, `mean ${mean} vs ${wantMean}`);
    assert.ok(Math.abs(std - S) / S < 0.01, `std ${std}`);
  });
});

test('sampleEuler converges to the same solution at first order', () => {
  torch.tidy(() => {
    const xT = initialNoise(SHAPE, { generator: new torch.Generator('cpu', 3) }).double();
    const errs = [100, 200].map((steps) => {
      const sigmas = edm.samplingSigmas(steps, H);
      const { samples, nfe } = sampleEuler(ideal, xT, sigmas);
      assert.equal(nfe, steps - 1);
      return normalizedError(samples, xT, sigmas, steps - 1);
    });
    assert.ok(errs[1]! < 0.02, `200 steps: ${errs[1]}`);
    assert.ok(errs[1]! < errs[0]! / 1.8 && errs[1]! > errs[0]! / 2.2, `not first order: ${errs.join(', ')}`);
  });
});

test('sampleHeun with EDM churn keeps the right marginal distribution', () => {
  torch.tidy(() => {
    const gen = new torch.Generator('cpu', 4);
    const xT = initialNoise([256, 1, H, H], { generator: gen }).double();
    const sigmas = edm.samplingSigmas(64, H, { appendZero: true });
    const { samples } = sampleHeun(ideal, xT, sigmas, { sChurn: 40, sTmin: 0.01, sTmax: 1, generator: gen });
    const deterministic = sampleHeun(ideal, xT, sigmas).samples;
    assert.ok(!samples.allclose(deterministic), 'churn must change the trajectory (the official switch had no effect)');
    const { mean, std } = stats(samples);
    assert.ok(Math.abs(mean - expectedMean(sigmas[0]!, 0)) < 0.01, `mean ${mean}`);
    assert.ok(Math.abs(std - S) / S < 0.02, `std ${std}`);
    gen.dispose();
  });
});

// The ideal consistency function for Gaussian data maps (x, σ) to the ODE state at σ_min'.
const sigmaMinShifted = edm.SIGMA_MIN * edm.resolutionShift(H);
const idealConsistency: Denoiser = (x, sigma) => ({
  x0: torch.tidy(() =>
    x
      .sub(MU)
      .mul(Math.sqrt(S * S + sigmaMinShifted ** 2) / Math.sqrt(S * S + sigma * sigma))
      .add(MU),
  ),
  nfe: 1,
});

test('sampleOneStep and sampleMultistep with the ideal consistency function give the data distribution', () => {
  torch.tidy(() => {
    const gen = new torch.Generator('cpu', 5);
    const xT = initialNoise([256, 1, H, H], { generator: gen });
    const one = sampleOneStep(idealConsistency, xT);
    assert.equal(one.nfe, 1);
    const s1 = stats(one.samples);
    assert.ok(Math.abs(s1.mean - MU) < 0.01 && Math.abs(s1.std - S) / S < 0.01, `one-step ${JSON.stringify(s1)}`);
    const two = sampleMultistep(idealConsistency, xT, [0.8 * edm.resolutionShift(H)], { generator: gen });
    assert.equal(two.nfe, 2);
    const s2 = stats(two.samples);
    assert.ok(Math.abs(s2.mean - MU) < 0.01 && Math.abs(s2.std - S) / S < 0.01, `two-step ${JSON.stringify(s2)}`);
    assert.throws(() => sampleMultistep(idealConsistency, xT, [sigmaMinShifted / 2]), /must exceed/);
    gen.dispose();
  });
});

test('guidedDenoiser: 32 Heun steps with CFG 2.5 on [0.19, 1.61] at 256 px take 74 forward passes (spec §7)', () => {
  torch.tidy(() => {
    let calls = 0;
    let guidedCalls = 0;
    const x0Fn = (x: Tensor, sigma: Tensor, y: Tensor): Tensor => {
      calls++;
      if (x.shape[0] === 4) guidedCalls++;
      assert.equal(sigma.shape[0], y.shape[0]);
      // A class-dependent dummy prediction: conditional 1, unconditional 0.
      return y.eq(10).logicalNot().to({ dtype: x.dtype }).reshape(-1, 1, 1, 1).expandAs(x).contiguous();
    };
    const D = guidedDenoiser(x0Fn, {
      labels: torch.tensor([3, 7], { dtype: 'int64' }),
      nullClass: 10,
      imageSize: 256,
      cfgScale: 2.5,
      guidanceInterval: [0.19, 1.61],
    });
    const sigmas = edm.samplingSigmas(32, 256);
    const inside = Array.from(sigmas).filter((s) => s > 0.76 && s <= 6.44);
    assert.deepEqual(
      inside.map((s) => s.toFixed(3)),
      ['6.434', '4.697', '3.378', '2.391', '1.662', '1.132'],
    );
    const xT = torch.zeros([2, 3, 4, 4]);
    const { nfe } = sampleHeun(D, xT, sigmas);
    assert.equal(nfe, 74);
    assert.equal(calls, 62, 'one batched call per evaluation');
    assert.equal(guidedCalls, 12);
    // Guidance arithmetic: D = D_u + s·(D_c − D_u) = 0 + 2.5·(1 − 0).
    const g = D(torch.zeros([2, 3, 4, 4]), 2.0);
    assert.equal(g.nfe, 2);
    assert.equal(g.x0.max().item(), 2.5);
    const u = D(torch.zeros([2, 3, 4, 4]), 10.0);
    assert.equal(u.nfe, 1);
    assert.equal(u.x0.max().item(), 1);
  });
});

test('guidedDenoiser clamps x̂₀ per channel to the data range (not [−1, 1])', () => {
  torch.tidy(() => {
    const D = guidedDenoiser((x) => x.mul(10), {
      labels: torch.tensor([0], { dtype: 'int64' }),
      nullClass: 1,
      imageSize: 64,
      clamp: { min: [-1.059, -1.018, -0.902], max: [1.124, 1.214, 1.32] },
    });
    const { x0 } = D(torch.ones([1, 3, 2, 2]), 1);
    testing.assertClose(
      Array.from(x0.amax([0, 2, 3]).toTypedArray() as Float32Array),
      [1.124, 1.214, 1.32],
      1e-6,
      0,
      'per-channel max',
    );
  });
  assert.equal(torch.liveTensors(), 0);
});

test('isGuidanceInterval: [LO, HI] with 0 ≤ LO < HI, finite; the released interval and EVERY_SIGMA are ones', () => {
  for (const ok of [GUIDANCE_INTERVAL, EVERY_SIGMA, [0, 1], [0.19, 1.61]])
    assert.ok(isGuidanceInterval(ok), String(ok));
  for (const bad of [[1, 1], [2, 1], [-0.1, 1], [0, Infinity], [0, NaN], [0], [0, 1, 2], ['0', 1], 'all', null, {}])
    assert.ok(!isGuidanceInterval(bad), JSON.stringify(bad));
});
