// FID statistics and Fréchet distance against numpy/scipy (pytorch-fid's
// calculate_frechet_distance), improved precision/recall against a numpy
// reimplementation of the ADM evaluator's ManifoldEstimator, KID against
// clean-fid's kernel_distance. References: test/eval-ref.py.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as torch from '@epg/torch';
import { testing, type Tensor } from '@epg/torch';

import { fid, frechetDistance, kid, manifoldRadii, precisionRecall, statistics } from '../src/eval/index.js';

import { relDiff, runRef } from './eval-helpers.js';

/** Features [n, d] with a decaying spectrum: X = Z · diag(s) · Q, s_i = scale · decay^i. */
function features(gen: torch.Generator, n: number, d: number, decay: number, shift = 0): Tensor {
  return torch.tidy(() => {
    const z = torch.randn([n, d], { dtype: 'float64', generator: gen });
    const q = torch.linalg.eigh(
      torch
        .randn([d, d], { dtype: 'float64', generator: gen })
        .matmul(torch.randn([d, d], { dtype: 'float64', generator: gen }).t()),
    ).eigenvectors;
    const s = torch.arange(0, d, 1, { dtype: 'float64' }).mul(Math.log(decay)).exp();
    return z.mul(s.unsqueeze(0)).matmul(q).add(shift);
  });
}

test('statistics: mu and unbiased sigma equal numpy mean and np.cov', () => {
  torch.tidy(() => {
    using gen = new torch.Generator('cpu', 1);
    const x = features(gen, 300, 48, 0.95, 0.7);
    const ours = statistics(x, 64); // several row chunks
    const ref = runRef('stats', { feats: x });
    testing.assertClose(
      ours.mu.toTypedArray() as Float64Array,
      ref['mu']!.toTypedArray() as Float64Array,
      1e-12,
      1e-14,
      'mu',
    );
    testing.assertClose(
      ours.sigma.toTypedArray() as Float64Array,
      ref['sigma']!.toTypedArray() as Float64Array,
      1e-10,
      1e-14,
      'sigma',
    );
  });
});

test('frechetDistance: equals scipy.linalg.sqrtm-based FID to 1e-6 on random, rank-deficient and near-singular covariances', () => {
  torch.tidy(() => {
    using gen = new torch.Generator('cpu', 2);
    const cases: { name: string; a: Tensor; b: Tensor }[] = [
      // Well conditioned, different means and spreads.
      { name: 'random d=128', a: features(gen, 2000, 128, 0.99), b: features(gen, 2000, 128, 0.98, 0.1) },
      // Fewer samples than dimensions: both covariances singular (rank 99 and 149 of 256).
      { name: 'rank-deficient d=256', a: features(gen, 100, 256, 0.99), b: features(gen, 150, 256, 0.99, 0.05) },
      // Spectrum spanning ~1e-13 (condition ~1e13 in sigma), like real Inception features.
      { name: 'near-singular d=192', a: features(gen, 4000, 192, 0.855), b: features(gen, 4000, 192, 0.86, 0.02) },
      // Nearly equal distributions: FID small compared with the traces.
      { name: 'close d=160', a: features(gen, 3000, 160, 0.97), b: features(gen, 3000, 160, 0.97) },
    ];
    const inputs: Record<string, Tensor> = {};
    const ours: number[] = [];
    cases.forEach(({ a, b }, i) => {
      const sa = statistics(a);
      const sb = statistics(b);
      Object.assign(inputs, {
        [`mu1_${i}`]: sa.mu,
        [`sigma1_${i}`]: sa.sigma,
        [`mu2_${i}`]: sb.mu,
        [`sigma2_${i}`]: sb.sigma,
      });
      ours.push(frechetDistance(sa.mu, sa.sigma, sb.mu, sb.sigma));
    });
    const ref = runRef('fid', inputs, { cases: cases.length });
    cases.forEach(({ name }, i) => {
      const scipy = ref[`scipy${i}`]!.item();
      const eig = ref[`eig${i}`]!.item();
      assert.ok(
        relDiff(ours[i]!, scipy) < 1e-6,
        `${name}: ours ${ours[i]} vs scipy ${scipy} (rel ${relDiff(ours[i]!, scipy)})`,
      );
      assert.ok(relDiff(ours[i]!, eig) < 1e-7, `${name}: ours ${ours[i]} vs numpy eigh form ${eig}`);
    });
  });
});

test('fid: a set against itself is 0, symmetric, and grows with a mean shift', () => {
  torch.tidy(() => {
    using gen = new torch.Generator('cpu', 3);
    const x = features(gen, 500, 96, 0.9);
    const y = features(gen, 500, 96, 0.9);
    const sx = statistics(x);
    const sy = statistics(y);
    const trace = sx.sigma.diagonal().sum().item();
    const self = fid(sx, sx);
    assert.ok(Math.abs(self) < 1e-12 * trace, `FID(x, x) = ${self} (tr Σ = ${trace})`);
    const xy = fid(sx, sy);
    assert.ok(relDiff(xy, fid(sy, sx)) < 1e-9, 'symmetric');
    const shifted = statistics(x.add(0.5));
    const d = fid(sx, shifted);
    assert.ok(relDiff(d, 96 * 0.25) < 1e-8, `pure mean shift: ${d} vs ${96 * 0.25}`);
    assert.throws(() => frechetDistance(sx.mu, sx.sigma, sx.mu.narrow(0, 0, 10), sx.sigma), /mu2 has shape \[10\]/);
  });
});

test('precisionRecall: equals the ADM ManifoldEstimator (numpy) in float64 exactly and in float32 to one point', () => {
  torch.tidy(() => {
    using gen = new torch.Generator('cpu', 4);
    // Overlapping clouds of different spread, so that neither number is 0 or 1.
    const ref = torch.randn([700, 32], { dtype: 'float64', generator: gen });
    const smp = torch.randn([600, 32], { dtype: 'float64', generator: gen }).mul(1.08).add(0.12);
    const py64 = runRef('pr', { ref, smp }, { k: 3, bs: 256, dtype: 'float64' });
    const ours64 = precisionRecall(ref, smp, { k: 3, batchSize: 256, dtype: 'float64' });
    assert.equal(ours64.precision, py64['precision']!.item(), 'precision (float64)');
    assert.equal(ours64.recall, py64['recall']!.item(), 'recall (float64)');
    assert.ok(ours64.precision > 0.2 && ours64.precision < 0.95 && ours64.recall > 0.2 && ours64.recall < 0.99);
    testing.assertClose(
      manifoldRadii(ref, { k: 3, batchSize: 200, dtype: 'float64' }).toTypedArray() as Float64Array,
      py64['radii_ref']!.toTypedArray() as Float64Array,
      1e-12,
      1e-12,
      'k-NN radii',
    );
    const py32 = runRef('pr', { ref, smp }, { k: 3, bs: 10000, dtype: 'float32' });
    const ours32 = precisionRecall(ref, smp); // defaults: k = 3, float32
    assert.ok(Math.abs(ours32.precision - py32['precision']!.item()) <= 1 / 600 + 1e-12, 'precision (float32)');
    assert.ok(Math.abs(ours32.recall - py32['recall']!.item()) <= 1 / 700 + 1e-12, 'recall (float32)');
    // A set against itself: every point is inside its own radius.
    const same = precisionRecall(ref, ref, { k: 3 });
    assert.deepEqual(same, { precision: 1, recall: 1 });
  });
});

test('kid: equals clean-fid kernel_distance on one full subset; near 0 for one distribution', () => {
  torch.tidy(() => {
    using gen = new torch.Generator('cpu', 5);
    const a = torch.rand([200, 64], { dtype: 'float64', generator: gen });
    const b = torch.rand([200, 64], { dtype: 'float64', generator: gen }).mul(1.2);
    // One subset of all 200: a permutation, which leaves the estimate unchanged.
    const ours = kid(a, b, { numSubsets: 1, maxSubsetSize: 200 });
    const ref = runRef('kid', { ref: a, smp: b })['kid']!.item();
    assert.ok(relDiff(ours.mean, ref) < 1e-9, `KID ${ours.mean} vs ${ref}`);
    const c = torch.rand([200, 64], { dtype: 'float64', generator: gen });
    const near = kid(a, c, { numSubsets: 20, maxSubsetSize: 100, seed: 1 });
    assert.ok(Math.abs(near.mean) < 0.2 * ref, `KID of one distribution ${near.mean} vs ${ref}`);
    assert.deepEqual(kid(a, c, { numSubsets: 3, seed: 7 }), kid(a, c, { numSubsets: 3, seed: 7 }), 'seeded');
  });
});
