// Closed forms and the spec's golden values (§2, §5, §6, §7, §10, §11.2): grids,
// preconditioning, time input, curricula, weights, ECT pairs, LR factors,
// parameter counts of the paper's presets.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as torch from '@epg/torch';
import { optim, testing, type Tensor } from '@epg/torch';

import {
  buildEncoder,
  buildEPG,
  consistencyFunction,
  edm,
  PRESETS,
  schedules,
  timestepEmbedding,
} from '../src/index.js';

const close = (a: number, b: number, rtol: number, what: string): void => testing.assertClose([a], [b], rtol, 0, what);

test('edm.samplingSigmas: the 32-step 256 px grid of spec §11.2', () => {
  const golden = [
    320.0, 267.723, 222.945, 184.746, 152.3, 124.866, 101.781, 82.456, 66.365, 53.045, 42.085, 33.126, 25.855, 19.996,
    15.315, 11.606, 8.695, 6.434, 4.697, 3.378, 2.391, 1.662, 1.132, 0.754, 0.49, 0.31, 0.189, 0.112, 0.063, 0.034,
    0.017, 0.008,
  ];
  const g = edm.samplingSigmas(32, 256);
  assert.equal(g.length, 32);
  // The spec rounds to 3 decimals (or 3-4 significant digits for small values).
  golden.forEach((v, i) => assert.ok(Math.abs(g[i]! - v) <= 5e-4 + 1e-9, `σ_${i} = ${g[i]} vs ${v}`));
  const z = edm.samplingSigmas(4, 64, { appendZero: true });
  assert.equal(z.length, 5);
  assert.equal(z[4], 0);
});

test('edm.karrasSigmas: N = 41 pre-training grid endpoints and closed form', () => {
  const g = edm.karrasSigmas(41);
  [80.0, 69.6993, 60.5571, 52.4626, 45.3137].forEach((v, i) => close(g[i]!, v, 2e-6, `σ_${i}`));
  close(g[38]!, 0.00627, 1e-3, 'σ_38');
  close(g[39]!, 0.00362, 2e-3, 'σ_39');
  close(g[40]!, 0.002, 1e-12, 'σ_min');
  close(g[0]!, 80, 1e-12, 'σ_max');
  // Monotone decreasing.
  for (let i = 1; i < g.length; i++) assert.ok(g[i]! < g[i - 1]!);
});

test('edm.preconditioning and timeInput (the tensors training uses): golden values at σ = 6.434 and 1.0 (256 px), and the extremes', () => {
  torch.tidy(() => {
    const sigma = torch.tensor([6.434, 1.0, 320, 0.008], { dtype: 'float64' });
    const p = edm.preconditioning(sigma, 256, 'float64');
    assert.deepEqual(p.cSkip.shape, [4, 1, 1, 1], 'per-sample coefficients broadcast over C, H, W');
    const values = (t: Tensor): number[] => Array.from(t.toTypedArray() as Float64Array);
    const [cSkip, cOut, cIn] = [values(p.cSkip), values(p.cOut), values(p.cIn)];
    const tIn = Array.from(edm.timeInput(sigma).toTypedArray() as Float32Array);
    close(cSkip[0]!, 0.00601779, 1e-5, 'c_skip(6.434)');
    close(cOut[0]!, 0.497877, 1e-5, 'c_out(6.434)');
    close(cIn[0]!, 0.154957, 1e-5, 'c_in(6.434)');
    close(tIn[0]!, 465.3991, 1e-6, 't_in(6.434)');
    close(cSkip[1]!, 0.202583, 1e-5, 'c_skip(1)');
    close(cOut[1]!, 0.443636, 1e-5, 'c_out(1)');
    close(cIn[1]!, 0.894427, 1e-5, 'c_in(1)');
    assert.equal(tIn[1], 0);
    close(cSkip[2]!, 2.44e-6, 1e-2, 'c_skip(320)');
    close(cOut[2]!, 0.499987, 1e-5, 'c_out(320)');
    close(cIn[2]!, 0.003125, 1e-4, 'c_in(320)');
    close(tIn[2]!, 1442.08, 1e-5, 't_in(320)');
    close(tIn[3]!, -1207.08, 1e-5, 't_in(0.008)');
    assert.equal(cSkip[3], 1, 'boundary condition: c_skip(σ_min′) = 1');
    assert.equal(cOut[3], 0, 'boundary condition: c_out(σ_min′) = 0');
    close(cIn[3]!, 1.99974, 1e-5, 'c_in(0.008)');
    // The closed forms at σ_d = 0.5, in float64 to rounding, and another σ_d through the signature.
    const sd = 0.25;
    const q = edm.preconditioning(sigma, 256, 'float64', sd);
    [6.434, 1.0, 320, 0.008].forEach((s, i) => {
      const d = s - 0.008;
      close(q.cSkip.toTypedArray()[i] as number, sd ** 2 / (d * d + sd ** 2), 1e-14, `c_skip(${s}; σ_d ${sd})`);
      close(q.cOut.toTypedArray()[i] as number, (d * sd) / Math.sqrt(s * s + sd ** 2), 1e-14, `c_out(${s}; σ_d ${sd})`);
      close(q.cIn.toTypedArray()[i] as number, 1 / Math.sqrt(s * s + sd ** 2), 1e-14, `c_in(${s}; σ_d ${sd})`);
    });
    assert.equal(edm.preconditioning(sigma, 256).cIn.dtype, 'float32', 'applied in float32 by default');
  });
});

test("consistencyFunction: 'edm' reads F with EDM's c_skip/c_out, 'x0' as x̂₀ with the skip confined to σ_min′: closed forms, boundary condition, the dm's denoiser above σ_min′", () => {
  torch.tidy(() => {
    const H = 28;
    const sigmaMin = 0.002 * (H / 64);
    const sigmas = [sigmaMin, 2 * sigmaMin, 0.35, 1.0, 80 * (H / 64)];
    const B = sigmas.length;
    const sigma = torch.tensor(sigmas, { dtype: 'float64' });
    const gen = new torch.Generator('cpu', 3);
    const x = torch.randn([B, 1, H, H], { dtype: 'float64', generator: gen });
    const F = torch.randn([B, 1, H, H], { dtype: 'float64', generator: gen });
    gen.dispose();
    // A network that returns F whatever its input: the formulas are then the only thing under test.
    const net = { forward: (): Tensor => F.alias() };
    const y = torch.zeros([B], { dtype: 'int64' });
    const arr = (t: Tensor): Float64Array => t.contiguous().toTypedArray() as Float64Array;
    // 'x0' closed form: c_skip = σ_min′²/((σ−σ_min′)² + σ_min′²), c_out = 1 − c_skip, computed as (σ−σ_min′)²/(…).
    const q = edm.x0BoundaryScalings(sigma, H, 'float64');
    sigmas.forEach((s, i) => {
      const d2 = (s - sigmaMin) ** 2;
      close(arr(q.cSkip)[i]!, sigmaMin ** 2 / (d2 + sigmaMin ** 2), 1e-14, `x0 c_skip(${s})`);
      close(arr(q.cOut)[i]!, d2 / (d2 + sigmaMin ** 2), 1e-14, `x0 c_out(${s})`);
    });
    assert.equal(arr(q.cSkip)[1], 0.5, 'half-way one σ_min′ above the boundary');
    const p = edm.preconditioning(sigma, H, 'float64');
    const want = (c: { cSkip: Tensor; cOut: Tensor }): Float64Array => arr(x.mul(c.cSkip).add(F.mul(c.cOut)));
    const edmF = consistencyFunction(net, x, sigma, y);
    const x0F = consistencyFunction(net, x, sigma, y, 'x0');
    testing.assertClose(arr(edmF), want(p), 1e-14, 1e-14, "'edm' (the default)");
    testing.assertClose(arr(x0F), want(q), 1e-14, 1e-14, "'x0'");
    // The boundary condition f(x, σ_min′) = x holds exactly for both.
    testing.assertClose(arr(x0F.select(0, 0)), arr(x.select(0, 0)), 0, 0, "'x0' at σ_min′");
    testing.assertClose(arr(edmF.select(0, 0)), arr(x.select(0, 0)), 0, 0, "'edm' at σ_min′");
    // From σ = 0.35 up, 'x0' is the network's x̂₀ (a diffusion model's denoiser, where ECT starts) to
    // c_skip·|x − F| < 1e-4; 'edm' there still keeps 67% of x at 0.35 and halves F at σ_max′.
    for (const i of [2, 3, 4])
      testing.assertClose(arr(x0F.select(0, i)), arr(F.select(0, i)), 0, 1e-4, `'x0' at σ = ${sigmas[i]}`);
    close(arr(p.cSkip)[2]!, 0.672, 1e-3, "'edm' c_skip(0.35)");
    testing.assertClose(arr(edmF.select(0, 4)), arr(F.select(0, 4).mul(0.5)), 0, 5e-3, "'edm' at σ_max′");
  });
});

test('schedules.ictNumScales: the N(k) table of spec §2', () => {
  const rows: [number, number][] = [
    [0, 21],
    [1, 41],
    [99629, 41],
    [99630, 81],
    [199258, 81],
    [199259, 161],
    [298887, 161],
    [298888, 321],
    [398516, 321],
    [398517, 641],
    [498145, 641],
    [498146, 1281],
    [600000, 1281],
  ];
  for (const [k, n] of rows) assert.equal(schedules.ictNumScales(k), n, `N(${k})`);
  assert.equal(schedules.pretrainNoiseIndex(41, 0), 0);
  assert.equal(schedules.pretrainNoiseIndex(41, 0.999999), 39, 'n ≤ N − 2');
});

test('schedules.dmWeight: w ≈ 125.7·σ^(−6/7) at the spec §5.2 points, 0 at the last index', () => {
  torch.tidy(() => {
    const grid = torch.tensor(schedules.gridOf(schedules.DM_GRID_SIZE), { dtype: 'float64' });
    const N = schedules.DM_GRID_SIZE;
    const f64 = (v: number[]): Tensor => torch.tensor(v, { dtype: 'float64' });
    const index = schedules.nearestGridIndex(f64([0.1, 1, 10, 80, 1000, 1e-6]), grid);
    const w = Array.from(schedules.dmWeight(index, grid).toTypedArray() as Float64Array);
    close(w[0]!, 907.5, 5e-3, 'w(0.1)');
    close(w[1]!, 125.7, 5e-3, 'w(1)');
    close(w[2]!, 17.4, 1e-2, 'w(10)');
    close(w[3]!, 2.93, 1e-2, 'w(80)');
    const at = Array.from(index.toTypedArray() as BigInt64Array, Number);
    assert.equal(at[4], 0, 'above σ_max maps to 80');
    assert.equal(at[5], N - 1, 'below σ_min maps to 0.002');
    assert.equal(w[5], 0, 'the last index has weight 0');
    // The spec quotes w(0.002) ≈ 25,993 from the continuous fit; on the grid, σ = 0.002 is the last
    // point (weight 0, as the code pads the grid with its last value) and its neighbour has 1/Δσ:
    const last = schedules.dmWeight(torch.tensor([N - 2], { dtype: 'int64' }), grid).item();
    close(last, 25564.5696, 1e-8, 'w one index above σ_min');
    // Ties go to the lower index: the midpoint of two grid points.
    const g = schedules.gridOf(N);
    const mid = schedules.nearestGridIndex(f64([(g[10]! + g[11]!) / 2]), grid).item();
    assert.equal(mid, 10);
    // dmSigmaIndex draws σ̃ = exp(P_mean + P_std·z): z = (ln σ − P_mean)/P_std lands on σ's index.
    const z = f64([1, 10].map((s) => (Math.log(s) - schedules.DM_LOGNORMAL.pMean) / schedules.DM_LOGNORMAL.pStd));
    assert.deepEqual(
      Array.from(schedules.dmSigmaIndex(z, grid).toTypedArray() as BigInt64Array, Number),
      at.slice(1, 3),
    );
  });
});

test('schedules ECT: stages and r(t) examples of spec §6.1', () => {
  assert.equal(schedules.ectStage(0), 1);
  assert.equal(schedules.ectStage(99999), 1);
  assert.equal(schedules.ectStage(100000), 2);
  assert.equal(schedules.ectStage(650000), 7);
  torch.tidy(() => {
    const r = (t: number[], stage: number): number[] =>
      Array.from(schedules.ectR(torch.tensor(t, { dtype: 'float64' }), stage).toTypedArray() as Float64Array);
    const [r1, rHalf, r2, r5, r40] = r([1, 0.5, 2, 5, 40], 1) as [number, number, number, number, number];
    assert.equal(r1, 0.002);
    assert.equal(rHalf, 0.002);
    close(r2, 0.046, 2e-2, 'r(2), stage 1');
    close(r5, 2.37, 2e-3, 'r(5), stage 1');
    close(r40, 20, 1e-6, 'r(40), stage 1');
    const [r1s3, r5s3] = r([1, 5], 3) as [number, number];
    close(r1s3, 0.61, 1e-2, 'r(1), stage 3');
    close(r5s3, 4.34, 2e-3, 'r(5), stage 3');
    close(r([1], 7)[0]!, 0.975, 1e-3, 'r(1), stage 7');
    // The closed form at t = 5, stage 2: 5·(1 − ¼·(1 + 8/(1 + e⁵))).
    close(r([5], 2)[0]!, 5 * (1 - 0.25 * (1 + 8 / (1 + Math.exp(5)))), 1e-14, 'r(5), stage 2, closed form');
    const t = Array.from(schedules.ectT(torch.tensor([-100, 0], { dtype: 'float64' })).toTypedArray() as Float64Array);
    assert.equal(t[0], 0.002, 't clamped at σ_min');
    close(t[1]!, Math.exp(schedules.CM_LOGNORMAL.pMean), 1e-15, 't(z = 0) = exp(P_mean)');
  });
});

test('schedules.rcTemperature and cosineTauMax', () => {
  assert.equal(schedules.rcTemperature(3, { schedule: 'constant', tauMin: 0.1 }), 0.1);
  close(schedules.rcTemperature(80, { schedule: 'interpolated', tauMin: 0.1, tauMax: 0.3 }), 0.3, 1e-12, 'τ(σ_max)');
  close(schedules.rcTemperature(0.002, { schedule: 'interpolated', tauMin: 0.1, tauMax: 0.3 }), 0.1, 1e-12, 'τ(σ_min)');
  close(schedules.cosineTauMax(0, 600000, 0.2, 0.1), 0.2, 1e-12, 'τ_max(0) = start');
  close(schedules.cosineTauMax(400000, 600000, 0.2, 0.1), 0.1, 1e-12, 'τ_max(2K/3) = start − end');
  assert.equal(schedules.cosineTauMax(500000, 600000, 0.2, 0.1), 0.1);
});

test('LR factors of spec §11.2 (fine-tuning and pre-training warm-up cosine)', () => {
  const ft = { warmupSteps: 10000, totalSteps: 1000000 };
  close(optim.warmupCosineFactor(5000, ft), 0.5, 1e-12, '0.5 at 5k');
  close(optim.warmupCosineFactor(10000, ft), 1, 1e-12, '1.0 at 10k');
  close(optim.warmupCosineFactor(505000, ft), 0.5, 1e-12, '0.5 at 505k');
  close(optim.warmupCosineFactor(1000000, ft), 0, 1e-12, '0 at 1M');
  close(optim.warmupCosineFactor(305000, { warmupSteps: 10000, totalSteps: 600000 }), 0.5, 1e-12, '0.5 at 305k');
  const cm = { warmupSteps: 10000, milestones: [400000, 500000], factors: [0.3, 0.08] };
  assert.deepEqual(
    [10000, 399999, 400000, 400001, 500000, 500001].map((s) => optim.warmupPiecewiseFactor(s, cm)),
    [1, 1, 1, 0.3, 0.3, 0.08],
  );
});

test('timestepEmbedding: cos first, closed form, odd widths padded', () => {
  torch.tidy(() => {
    const e = timestepEmbedding(torch.tensor([0, 465.3991]), 6);
    const v = Array.from(e.toTypedArray() as Float32Array);
    const f = [0, 1, 2].map((i) => Math.exp((-Math.log(10000) * i) / 3));
    const expected = [0, 465.3991].flatMap((t) => [...f.map((x) => Math.cos(t * x)), ...f.map((x) => Math.sin(t * x))]);
    testing.assertClose(v, expected, 1e-4, 2e-5, 'embedding');
    assert.deepEqual(timestepEmbedding(torch.tensor([1]), 5).shape, [1, 5]);
  });
});

test('parameter counts of the paper presets (spec §10), built on the meta device', () => {
  const expectM: Record<string, number> = {
    'EPG-L/16': 540.2,
    'EPG-XL/16': 583.0,
    'EPG-XXL/16': 788.9,
    'EPG-G/16': 1391.9,
    'EPG-L/32': 544.9,
  };
  for (const [name, m] of Object.entries(expectM)) {
    assert.equal(PRESETS[name]!.paperParamsM, m);
    const model = buildEPG(name, { device: 'meta' });
    assert.equal((model.numParameters() / 1e6).toFixed(1), m.toFixed(1), name);
    model.dispose();
  }
  const b = buildEncoder('RCM-B', { device: 'meta' });
  const l = buildEncoder('RCM-L', { device: 'meta' });
  assert.equal((b.numParameters() / 1e6).toFixed(1), '106.8');
  assert.equal((l.numParameters() / 1e6).toFixed(1), '224.6');
  b.dispose();
  l.dispose();
  assert.equal(torch.liveTensors(), 0);
});
