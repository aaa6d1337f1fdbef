// What a run leaves behind to study it: checkpoint retention (keepLast,
// keepEvery), images/s, MFU and peak memory in stats.jsonl, and the FID-proxy
// curve of evalEvery (tiny runs on Fashion-MNIST, CPU).
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

import * as torch from '@epg/torch';

import { checkpointsToDrop } from '../src/train/checkpoint.js';
import { loadConfig, type TrainConfig } from '../src/train/config.js';
import { createDataPipeline } from '../src/train/data.js';
import { evalRefusal } from '../src/train/evaluation.js';
import { train } from '../src/train/trainer.js';

const root = mkdtempSync(join(tmpdir(), 'epg-curves-'));
// The FID reference statistics are cached here, not in the user's cache.
const previousCache = process.env['EPG_CACHE'];
process.env['EPG_CACHE'] = join(root, 'cache');
after(() => {
  if (previousCache === undefined) delete process.env['EPG_CACHE'];
  else process.env['EPG_CACHE'] = previousCache;
  rmSync(root, { recursive: true, force: true });
});

const tiny = (stage: string, extra: string[]): TrainConfig =>
  loadConfig(`fashion-mnist-${stage}`, [
    `runDir=${root}`,
    'preset=EPG-T/4',
    'batchSize=8',
    'logEvery=1',
    'optim.warmupSteps=1',
    'sampleCount=0',
    'sampleSteps=4',
    ...extra,
  ]);

async function run(cfg: TrainConfig): Promise<{ runDir: string; lines: string[]; stats: Record<string, number>[] }> {
  const lines: string[] = [];
  const r = await train(cfg, { data: createDataPipeline, log: (l) => lines.push(l) });
  const stats = readFileSync(join(r.runDir, 'stats.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>);
  return { runDir: r.runDir, lines, stats };
}

const name = (step: number): string => `checkpoint-${String(step).padStart(7, '0')}.safetensors`;

test('checkpointsToDrop: the newest keepLast and the multiples of keepEvery stay', () => {
  const files = [1, 2, 3, 4, 5, 6, 7].map(name).concat(['latest.json', 'config.json']);
  assert.deepEqual(checkpointsToDrop(files, { keepLast: 2, keepEvery: 3 }), [1, 2, 4, 5].map(name));
  assert.deepEqual(checkpointsToDrop(files, { keepLast: 3, keepEvery: 0 }), [1, 2, 3, 4].map(name));
  // Steps sort as numbers, not names (a step past the 7-digit padding).
  assert.deepEqual(
    checkpointsToDrop([name(9_999_999), 'checkpoint-10000000.safetensors'], { keepLast: 1, keepEvery: 0 }),
    [name(9_999_999)],
  );
  assert.throws(() => loadConfig('fashion-mnist-dm', ['keepLast=0']), /keepLast must be an integer >= 1/);
  assert.throws(() => loadConfig('fashion-mnist-dm', ['keepEvery=-1']), /keepEvery must be an integer >= 0/);
});

test('keepLast=2, keepEvery=3, a checkpoint every step over 7 steps: steps 3, 6 and 7 remain; latest.json names 7', async () => {
  const { runDir, stats } = await run(
    tiny('pretrain', ['steps=7', 'checkpointEvery=1', 'keepLast=2', 'keepEvery=3', 'peakTflops=0']),
  );
  const kept = readdirSync(runDir)
    .filter((f) => f.startsWith('checkpoint-'))
    .sort();
  // Newest two {6, 7} ∪ multiples of 3 {3, 6}.
  assert.deepEqual(kept, [3, 6, 7].map(name));
  assert.deepEqual(JSON.parse(readFileSync(join(runDir, 'latest.json'), 'utf8')), { file: name(7), step: 7 });
  // Without a peak there is no MFU; images/s and peak memory are always logged.
  assert.equal(stats.length, 7);
  for (const s of stats) {
    assert.equal(s.mfu, undefined);
    assert.ok(s.images_per_sec! > 0 && s.peak_mem_gb! > 0.01, JSON.stringify(s));
  }
});

test('evalEvery=2 on a dm run: fid at steps 2 and 4 in stats.jsonl, the cost in the log; MFU with a peak', async () => {
  const { stats, lines } = await run(
    tiny('dm', ['steps=4', 'checkpointEvery=0', 'evalEvery=2', 'evalSamples=8', 'evalRefImages=16', 'peakTflops=1']),
  );
  const fids = stats.filter((s) => s.fid !== undefined);
  assert.deepEqual(
    fids.map((s) => s.step),
    [2, 4],
  );
  for (const s of fids) assert.ok(Number.isFinite(s.fid) && s.fid! > 0 && s.eval_sec! > 0, JSON.stringify(s));
  const evalLines = lines.filter((l) => l.startsWith('eval at step'));
  assert.equal(evalLines.length, 2);
  assert.match(evalLines[0]!, /FID-8 proxy \d+\.\d+ against 16 fashion-mnist test images, \d+\.\d s$/);
  // MFU = FLOPs/image × images/s / 1e12 at a 1 TFLOP/s peak.
  const losses = stats.filter((s) => s.loss !== undefined);
  assert.equal(losses.length, 4);
  for (const s of losses) assert.ok(s.mfu! > 0 && s.mfu! < 1, JSON.stringify(s));
  // The reference statistics were cached in $EPG_CACHE.
  assert.ok(readdirSync(join(root, 'cache', 'fid')).some((f) => f.startsWith('fashion-mnist-test-16-')));
  assert.equal(torch.liveTensors(), 0, 'no native tensors left');
});

test('evalRefusal: pre-training and datasets without a built-in test split are skipped with a reason', () => {
  assert.equal(evalRefusal(tiny('dm', ['evalEvery=0'])), null);
  assert.equal(evalRefusal(tiny('cm', ['evalEvery=5'])), null);
  assert.match(evalRefusal(tiny('pretrain', ['evalEvery=5']))!, /does not generate/);
  assert.match(evalRefusal(tiny('dm', ['evalEvery=5', 'data.source=/data/faces']))!, /built-in dataset.*skipped/);
});
