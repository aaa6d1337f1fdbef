// Sampling does not depend on the hardware layout: the label and the noise of
// sample i depend only on (seed, i), so a sample set is bit for bit the same
// whatever the batch size (7 vs 64) and the number of processes (one vs two under
// `epg launch`, rank 0 writing one .npz in index order). The model: EPG-S/4 with
// random weights written by PyTorch in the official layout (a state dict in .pth).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';
import { testing } from '@epg/torch';

import { buildEPG, perIndexInitialNoise, perIndexLabels, rankBatches } from '../src/index.js';
import { loadNpz } from '../src/eval/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, '..', 'src', 'cli.js');
const SCRIPT = join(here, '..', '..', 'test', 'ref', 'epg_ref.py');
const root = mkdtempSync(join(tmpdir(), 'epg-sample-inv-'));
after(() => rmSync(root, { recursive: true, force: true }));

function epg(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, OMP_NUM_THREADS: '1' } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

const weights = join(root, 'nnet_ema.pth');
{
  const model = buildEPG('EPG-S/4', { numClasses: 1000, device: 'meta' });
  const config = model.config;
  model.dispose();
  const [r] = testing.runPython(SCRIPT, [
    {
      kind: 'save_official',
      model: 'epg',
      config,
      seed: 5,
      path: weights,
      x: { shape: [1, 3, 32, 32], dtype: 'float64', data: Array<number>(3072).fill(0) },
      t: { shape: [1], dtype: 'float64', data: [0] },
      y: { shape: [1], dtype: 'int64', data: [0] },
    },
  ]) as { error?: string }[];
  assert.equal(r!.error, undefined, r!.error);
}

function samples(dir: string): Uint8Array {
  return torch.tidy(() => {
    const { arr_0: a } = loadNpz(join(dir, 'samples.npz'), ['arr_0']);
    return a!.toTypedArray() as Uint8Array;
  });
}

const N = 20;
for (const sampler of ['heun', 'multistep'] as const) {
  test(`epg sample --sampler ${sampler}: batch 7, batch 64 and two processes give the same samples`, async () => {
    const common = ['--checkpoint', weights, '--preset', 'EPG-S/4', '--num', String(N), '--sampler', sampler];
    const extra = [...(sampler === 'heun' ? ['--steps', '4', '--cfg', '2'] : []), '--labels', 'random', '--no-png'];
    const runs = {
      b7: ['sample', ...common, ...extra, '--batch', '7', '--out', join(root, `${sampler}-b7`)],
      b64: ['sample', ...common, ...extra, '--batch', '64', '--out', join(root, `${sampler}-b64`)],
      two: [
        'launch',
        '--nproc-per-node',
        '2',
        'sample',
        ...common,
        ...extra,
        '--batch',
        '7',
        '--out',
        join(root, `${sampler}-two`),
      ],
    };
    for (const [name, args] of Object.entries(runs)) {
      const r = await epg(args);
      assert.equal(r.code, 0, `${name}: ${r.err}`);
    }
    const b7 = samples(join(root, `${sampler}-b7`));
    assert.equal(b7.length, N * 32 * 32 * 3, 'N RGB images');
    const px = 32 * 32 * 3;
    assert.notDeepEqual(b7.slice(0, px), b7.slice(px, 2 * px), 'two samples differ');
    assert.deepEqual(samples(join(root, `${sampler}-b64`)), b7, 'batch 64 vs batch 7');
    assert.deepEqual(samples(join(root, `${sampler}-two`)), b7, 'two processes vs one');
  });
}

test('per-index draws: a slice of the set is drawn alone', () => {
  torch.tidy(() => {
    const all = perIndexInitialNoise(0, 9, [1, 4, 4], { seed: 3 });
    const part = perIndexInitialNoise(5, 3, [1, 4, 4], { seed: 3 });
    assert.deepEqual(part.toTypedArray(), all.slice(0, 5, 8).toTypedArray());
    assert.notDeepEqual(perIndexInitialNoise(5, 3, [1, 4, 4], { seed: 4 }).toTypedArray(), part.toTypedArray());
    const labels = perIndexLabels(50, 10, 'random', 1).toArray() as number[];
    assert.ok(new Set(labels).size > 5, `labels vary: ${labels.join(',')}`);
    assert.deepEqual(perIndexLabels(50, 10, 'random', 1).toArray(), labels);
  });
});

test('rankBatches: every index once, in rounds, the same number of batches on every rank', () => {
  for (const [num, bs, world] of [
    [20, 7, 2],
    [5, 7, 3],
    [64, 8, 4],
  ] as const) {
    const per = Array.from({ length: world }, (_, r) => rankBatches(num, bs, r, world));
    assert.ok(per.every((b) => b.length === per[0]!.length));
    const seen = per.flatMap((bs_) => bs_.flatMap((b) => Array.from({ length: b.count }, (_, j) => b.start + j)));
    assert.deepEqual(
      seen.sort((a, b) => a - b),
      Array.from({ length: num }, (_, i) => i),
    );
  }
});
