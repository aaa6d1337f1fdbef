// Gradient accumulation (cfg.accumulate): N micro-batches per optimizer step
// give the update of one N× batch for diffusion and consistency fine-tuning
// (float64, one process), with clipping on the accumulated gradient; and a
// training run counts optimizer steps.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

import * as torch from '@epg/torch';
import { testing, type Tensor } from '@epg/torch';

import { EPGViT } from '../src/index.js';
import { readCheckpointMeta } from '../src/train/checkpoint.js';
import { loadConfig } from '../src/train/config.js';
import { createDataPipeline } from '../src/train/data.js';
import { train } from '../src/train/trainer.js';
import { makeUpdate } from '../src/train/update.js';
import { ACCUMULATE_BATCH, accumulateProblem, givenDrawsStage, microBatches } from './accumulate-setup.js';
import { DEC } from './tiny-configs.js';

const root = mkdtempSync(join(tmpdir(), 'epg-accumulate-'));
after(() => rmSync(root, { recursive: true, force: true }));
const B = ACCUMULATE_BATCH;
const MICRO = 4;

for (const kind of ['dm', 'cm'] as const) {
  test(`accumulate: ${B / MICRO} micro-batches of ${MICRO} give the ${kind} update of one batch of ${B} (float64, clipped)`, () => {
    torch.tidy(() => {
      const p = accumulateProblem(kind);
      const one = p.model;
      const accumulated = new EPGViT(DEC, { dtype: 'float64' });
      accumulated.loadStateDict(one.stateDict());
      const { x, labels } = p;
      const draws = new Map<Tensor, Record<string, Tensor>>([[x, p.draws]]);
      const parts = microBatches(p, draws, [0, B], B / MICRO);
      // Clipping at 0.5 applies to the accumulated gradient (the global norm is larger here).
      const cfg = loadConfig(`fashion-mnist-${kind}`, [`accumulate=${B / MICRO}`, 'optim.gradClip=0.5']);
      const ref = givenDrawsStage(kind, one, draws);
      const acc = givenDrawsStage(kind, accumulated, draws);
      const updateOne = makeUpdate(cfg, 'cpu', ref.stage, null, null);
      const updateAcc = makeUpdate(cfg, 'cpu', acc.stage, null, null);
      for (let step = 0; step < 2; step++) {
        const m1 = new Map(updateOne([{ x, labels }], step, true).map(([k, t]) => [k, t.item()]));
        const m2 = new Map(updateAcc(parts, step, true).map(([k, t]) => [k, t.item()]));
        assert.ok(m1.get('grad_norm')! > 0.5, `the clip is active (‖g‖ = ${m1.get('grad_norm')})`);
        testing.assertClose([m2.get('loss')!], [m1.get('loss')!], 1e-10, 0, `${kind} loss, step ${step}`);
        testing.assertClose([m2.get('grad_norm')!], [m1.get('grad_norm')!], 1e-10, 0, `${kind} ‖g‖, step ${step}`);
        testing.assertClose(acc.grads[step]!, ref.grads[step]!, 1e-10, 1e-14, `${kind} gradient, step ${step}`);
      }
      const flat = (m: EPGViT): number[] => m.parameters().flatMap((p) => Array.from(p.toTypedArray() as Float64Array));
      testing.assertClose(flat(accumulated), flat(one), 1e-10, 1e-14, `${kind} parameters after two updates`);
      ref.stage.optimizer.dispose();
      acc.stage.optimizer.dispose();
      one.dispose();
      accumulated.dispose();
    });
  });
}

test('accumulate: a run counts optimizer steps (logging, checkpoints, data position) and rejects a bad value', async () => {
  const cfg = loadConfig('fashion-mnist-dm', [
    `runDir=${root}`,
    'batchSize=4',
    'accumulate=3',
    'steps=2',
    'logEvery=1',
    'checkpointEvery=0',
    'sampleCount=0',
  ]);
  const lines: string[] = [];
  const r = await train(cfg, { data: createDataPipeline, log: (l) => lines.push(l) });
  assert.deepEqual([...r.losses.keys()], [1, 2]);
  assert.match(lines.join('\n'), /batch 4 × 3 micro-batches, 2 steps/);
  const data = readCheckpointMeta(r.checkpoint).meta.extra.data as { loader: { position: number } };
  assert.equal(data.loader.position, 2 * 3, 'the loader moved three batches per step');
  assert.throws(() => loadConfig('fashion-mnist-dm', ['accumulate=0']), /accumulate must be a positive integer/);
});
