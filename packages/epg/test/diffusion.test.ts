// Closed forms and the spec's golden values (§2, §5, §6, §7, §10, §11.2): grids,
// preconditioning, time input, curricula, weights, ECT pairs, LR factors,
// parameter counts of the paper's presets.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as torch from '@epg/torch';
import { optim, testing } from '@epg/torch';

import { buildEncoder, buildEPG, edm, PRESETS, schedules, timestepEmbedding } from '../src/index.js';

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

test('edm.preconditioning and timeInput: golden values at σ = 6.434 and 1.0 (256 px), and the extremes', () => {
  const a = edm.preconditioning(6.434, 256);
  close(a.cSkip, 0.00601779, 1e-5, 'c_skip(6.434)');
  close(a.cOut, 0.497877, 1e-5, 'c_out(6.434)');
  close(a.cIn, 0.154957, 1e-5, 'c_in(6.434)');
  close(edm.timeInput(6.434), 465.3991, 1e-6, 't_in(6.434)');
  const b = edm.preconditioning(1.0, 256);
  close(b.cSkip, 0.202583, 1e-5, 'c_skip(1)');
  close(b.cOut, 0.443636, 1e-5, 'c_out(1)');
  close(b.cIn, 0.894427, 1e-5, 'c_in(1)');
  assert.equal(edm.timeInput(1), 0);
  const hi = edm.preconditioning(320, 256);
  close(hi.cSkip, 2.44e-6, 1e-2, 'c_skip(320)');
  close(hi.cOut, 0.499987, 1e-5, 'c_out(320)');
  close(hi.cIn, 0.003125, 1e-4, 'c_in(320)');
  close(edm.timeInput(320), 1442.08, 1e-5, 't_in(320)');
  close(edm.timeInput(0.008), -1207.08, 1e-5, 't_in(0.008)');
  const lo = edm.preconditioning(0.008, 256);
  assert.equal(lo.cSkip, 1, 'boundary condition: c_skip(σ_min′) = 1');
  assert.equal(lo.cOut, 0, 'boundary condition: c_out(σ_min′) = 0');
  close(lo.cIn, 1.99974, 1e-5, 'c_in(0.008)');
  close(edm.sigmaFromTimeInput(edm.timeInput(3.7)), 3.7, 1e-12, 'round trip');
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
  const grid = schedules.gridOf(schedules.DM_GRID_SIZE);
  const at = (s: number): number => schedules.dmWeight(schedules.nearestGridIndex(s, grid), grid);
  close(at(0.1), 907.5, 5e-3, 'w(0.1)');
  close(at(1), 125.7, 5e-3, 'w(1)');
  close(at(10), 17.4, 1e-2, 'w(10)');
  close(at(80), 2.93, 1e-2, 'w(80)');
  assert.equal(schedules.dmWeight(grid.length - 1, grid), 0);
  // The spec quotes w(0.002) ≈ 25,993 from the continuous fit; on the grid, σ = 0.002 is the last
  // point (weight 0, as the code pads the grid with its last value) and its neighbour has 1/Δσ:
  close(schedules.dmWeight(grid.length - 2, grid), 25564.5696, 1e-8, 'w one index above σ_min');
  assert.equal(schedules.nearestGridIndex(1000, grid), 0, 'above σ_max maps to 80');
  assert.equal(schedules.nearestGridIndex(1e-6, grid), grid.length - 1, 'below σ_min maps to 0.002');
});

test('schedules ECT: stages and r(t) examples of spec §6.1', () => {
  assert.equal(schedules.ectStage(0), 1);
  assert.equal(schedules.ectStage(99999), 1);
  assert.equal(schedules.ectStage(100000), 2);
  assert.equal(schedules.ectStage(650000), 7);
  assert.equal(schedules.ectR(1, 1), 0.002);
  assert.equal(schedules.ectR(0.5, 1), 0.002);
  close(schedules.ectR(2, 1), 0.046, 2e-2, 'r(2), stage 1');
  close(schedules.ectR(5, 1), 2.37, 2e-3, 'r(5), stage 1');
  close(schedules.ectR(40, 1), 20, 1e-6, 'r(40), stage 1');
  close(schedules.ectR(1, 3), 0.61, 1e-2, 'r(1), stage 3');
  close(schedules.ectR(5, 3), 4.34, 2e-3, 'r(5), stage 3');
  close(schedules.ectR(1, 7), 0.975, 1e-3, 'r(1), stage 7');
  assert.equal(schedules.ectT(-100), 0.002, 't clamped at σ_min');
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
