// runEval against an ADM-style reference batch (numpy-written .npz with arr_0
// images, mu, sigma and the sFID keys, no epg_meta): the 'adm' preprocessing is
// chosen, reference features for precision/recall come from arr_0 (and are
// cached), and samples equal to the reference images give FID ≈ 0 and
// precision = recall = 1.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import * as torch from '@epg/torch';

import { InceptionFeatures, runEval, saveNpz, saveSamplesNpz, statistics } from '../src/eval/index.js';

import { tempDir } from './eval-helpers.js';

test('runEval: ADM reference batch (arr_0 + mu/sigma + sFID keys) → adm preprocessing, FID ≈ 0 on its own images', async () => {
  using tmp = tempDir();
  const imgs = torch.tidy(() => {
    using gen = new torch.Generator('cpu', 9);
    return torch.F.interpolate(torch.rand([5, 3, 6, 6], { generator: gen }).mul(255), {
      size: [24, 24],
      mode: 'bilinear',
    })
      .round()
      .to('uint8')
      .permute(0, 2, 3, 1)
      .contiguous(); // NHWC, as ADM stores arr_0
  });
  // mu/sigma as ADM's TF graph would give them (our 'adm' recipe), written by numpy with its extra keys.
  const stats = torch.tidy(() => {
    using net = new InceptionFeatures({ preprocess: 'adm' });
    return statistics(net.features(imgs.permute(0, 3, 1, 2)));
  });
  const mine = join(tmp.dir, 'mine.npz');
  saveNpz(mine, { arr_0: imgs, mu: stats.mu, sigma: stats.sigma });
  const ref = join(tmp.dir, 'VIRTUAL_tiny.npz');
  const py = spawnSync(
    'python3',
    [
      '-c',
      'import numpy as np, sys\nz = np.load(sys.argv[1])\n' +
        'np.savez(sys.argv[2], arr_0=z["arr_0"], mu=z["mu"], sigma=z["sigma"], mu_s=np.zeros(7), sigma_s=np.eye(7))',
      mine,
      ref,
    ],
    { encoding: 'utf8' },
  );
  assert.equal(py.status, 0, py.stderr);
  const samples = join(tmp.dir, 'samples.npz');
  saveSamplesNpz(samples, imgs);
  const cacheDir = join(tmp.dir, 'cache');

  const r = await runEval({ samples, ref, cacheDir, batchSize: 5 });
  assert.equal(r.preprocess, 'adm', 'a foreign reference batch implies the ADM recipe');
  assert.equal(r.label, 'FID-5 proxy');
  assert.equal(r.numReference, 5);
  const trace = stats.sigma.diagonal().sum().item();
  assert.ok(Math.abs(r.fid) < 1e-9 * trace, `FID of the reference images against themselves: ${r.fid}`);
  assert.equal(r.precision, 1);
  assert.equal(r.recall, 1);
  const cached = readdirSync(cacheDir);
  assert.equal(cached.length, 1);
  assert.match(cached[0]!, /^VIRTUAL_tiny\.npz-\d+-\d+-adm-feats\.npz$/);
  assert.ok(existsSync(join(cacheDir, cached[0]!)));
  stats.mu.dispose();
  stats.sigma.dispose();
});
