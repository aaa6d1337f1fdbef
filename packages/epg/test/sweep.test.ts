// epg sweep on a tiny diffusion checkpoint: every setting of the grid sampled
// and evaluated once against one cached reference, the table and plot written,
// a rerun reusing what is done; the grid's checks; the command's usage errors.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { runSweep, settingName, sweepGrid } from '../src/sweep.js';
import { loadConfig } from '../src/train/config.js';
import { createDataPipeline, openDataset } from '../src/train/data.js';
import { train } from '../src/train/trainer.js';

const root = mkdtempSync(join(tmpdir(), 'epg-sweep-'));
after(() => rmSync(root, { recursive: true, force: true }));
process.env['EPG_CACHE'] = join(root, 'cache');
const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli.js');

test('sweepGrid: the cartesian product in a stable order, and bad values refused', () => {
  const grid = sweepGrid({ cfg: [1, 2], intervals: [[0.19, 1.61], null], steps: [4], weights: ['ema', 'online'] });
  assert.equal(grid.length, 8);
  assert.deepEqual(grid.map(settingName).slice(0, 3), [
    'cfg1-int0.19-1.61-steps4-ema',
    'cfg2-int0.19-1.61-steps4-ema',
    'cfg1-intall-steps4-ema',
  ]);
  assert.throws(() => sweepGrid({ cfg: [Number.NaN] }), /CFG scale NaN/);
  assert.throws(() => sweepGrid({ steps: [0] }), /steps 0 is not a positive integer/);
  assert.throws(() => sweepGrid({ intervals: [[2, 1]] }), /not LO,HI with LO < HI/);
});

test('runSweep samples and evaluates each setting once, writes the table and the plot, and resumes', async () => {
  const cfg = loadConfig('fashion-mnist-dm', [
    `runDir=${root}`,
    'batchSize=8',
    'steps=2',
    'logEvery=1',
    'checkpointEvery=0',
    'optim.warmupSteps=1',
    'sampleCount=0',
  ]);
  const run = await train(cfg, { data: createDataPipeline, log: () => undefined });
  const source = openDataset({
    source: 'fashion-mnist',
    subdir: '',
    split: 'test',
    normalization: 'simple',
    workers: 0,
  });
  const out = join(root, 'sweep');
  const options = {
    checkpoint: run.runDir,
    out,
    num: 6,
    reference: { source, name: 'fashion-mnist-test', numImages: 12 },
    sampler: 'euler' as const,
    cfg: [1, 3],
    // Euler over 2 σ points evaluates the network once, at σ_max' (outside the default interval): guide at every σ.
    intervals: [null],
    steps: [2],
    weights: ['ema' as const, 'online' as const],
  };
  try {
    const first = await runSweep(options);
    assert.equal(first.rows.length, 4);
    for (const r of first.rows) {
      assert.ok(Number.isFinite(r.fid) && r.fid > 0, `${r.name}: FID ${r.fid}`);
      assert.equal(r.nfe, r.cfg === 1 ? 1 : 2, `${r.name}: one evaluation, two with guidance`);
    }
    // The settings change the samples: guidance and the weights each move the FID.
    const fid = (name: string) => first.rows.find((r) => r.name === name)!.fid;
    assert.notEqual(fid('cfg1-intall-steps2-ema'), fid('cfg3-intall-steps2-ema'));
    assert.notEqual(fid('cfg1-intall-steps2-ema'), fid('cfg1-intall-steps2-online'));
    const md = readFileSync(first.table, 'utf8');
    assert.match(md, /\| CFG \| guidance interval \| steps \| weights \| NFE \| FID-6 proxy \|/);
    assert.equal((md.match(/\*\*/g) ?? []).length, 2, 'one best row in bold');
    assert.ok(existsSync(first.plot));
    const lines: string[] = [];
    const again = await runSweep({ ...options, log: (l) => lines.push(l) });
    assert.deepEqual(again.rows, first.rows);
    assert.equal(lines.filter((l) => l.startsWith('[')).length, 0, 'nothing sampled again');
  } finally {
    source.close?.();
  }
});

test('epg sweep: usage errors name the flag', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [CLI, 'sweep', ...args], { encoding: 'utf8' });
  let r = run('--ref-dataset', 'fashion-mnist');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /sweep needs --checkpoint/);
  r = run('--checkpoint', root, '--ref-dataset', 'fashion-mnist', '--cfg', '1,x');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--cfg expects comma-separated numbers/);
  r = run('--checkpoint', root, '--ref-dataset', 'fashion-mnist', '--weights', 'ema,best');
  assert.match(r.stderr, /--weights takes ema, online or both, got 'best'/);
});
