// Activation checkpointing of the transformer blocks (cfg.activationCheckpointing):
// the trainer's update gives the same gradients and parameters with it as
// without it for diffusion and consistency fine-tuning (float64, with gradient
// accumulation too), EPGViT with decoder dropout and RCMViT give the same
// gradients, and a training run with it on logs the losses of one with it off.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

import * as torch from '@epg/torch';
import { testing, type Tensor } from '@epg/torch';

import { EPGViT, RCMViT } from '../src/index.js';
import { loadConfig } from '../src/train/config.js';
import { createDataPipeline } from '../src/train/data.js';
import { train } from '../src/train/trainer.js';
import { makeUpdate } from '../src/train/update.js';
import { ACCUMULATE_BATCH, accumulateProblem, givenDrawsStage, microBatches } from './accumulate-setup.js';
import { DEC, ENC } from './tiny-configs.js';

const root = mkdtempSync(join(tmpdir(), 'epg-checkpointing-'));
after(() => rmSync(root, { recursive: true, force: true }));
const flat = (ts: Tensor[]): number[] => ts.flatMap((t) => Array.from(t.toTypedArray() as Float64Array));

for (const kind of ['dm', 'cm'] as const) {
  for (const micro of [1, 2]) {
    test(`activation checkpointing: the ${kind} update equals the plain one (float64, ${micro} micro-batch${micro > 1 ? 'es' : ''}, clipped)`, () => {
      torch.tidy(() => {
        const p = accumulateProblem(kind);
        const plain = p.model;
        const checkpointed = new EPGViT(DEC, { dtype: 'float64' });
        checkpointed.loadStateDict(plain.stateDict());
        checkpointed.activationCheckpointing = true;
        const draws = new Map<Tensor, Record<string, Tensor>>([[p.x, p.draws]]);
        const batches = micro === 1 ? [{ x: p.x, labels: p.labels }] : microBatches(p, draws, [0, ACCUMULATE_BATCH], 2);
        const common = [`accumulate=${micro}`, 'optim.gradClip=0.5'];
        const ref = givenDrawsStage(kind, plain, draws);
        const ckpt = givenDrawsStage(kind, checkpointed, draws);
        const step = ckpt.stage.step.bind(ckpt.stage);
        let recorded = 0;
        ckpt.stage.step = (b, s) => {
          recorded += torch.isCheckpointing() ? 1 : 0;
          return step(b, s);
        };
        const updatePlain = makeUpdate(loadConfig(`fashion-mnist-${kind}`, common), 'cpu', ref.stage, null, null);
        const updateCkpt = makeUpdate(
          loadConfig(`fashion-mnist-${kind}`, [...common, 'activationCheckpointing=on']),
          'cpu',
          ckpt.stage,
          null,
          null,
        );
        for (let step = 0; step < 2; step++) {
          const m1 = new Map(updatePlain(batches, step, true).map(([k, t]) => [k, t.item()]));
          const m2 = new Map(updateCkpt(batches, step, true).map(([k, t]) => [k, t.item()]));
          testing.assertClose([m2.get('loss')!], [m1.get('loss')!], 1e-12, 0, `${kind} loss, step ${step}`);
          testing.assertClose(ckpt.grads[step]!, ref.grads[step]!, 1e-10, 1e-14, `${kind} gradient, step ${step}`);
        }
        assert.equal(recorded, 2 * micro, 'every micro-batch ran under a recording tape');
        testing.assertClose(
          flat(checkpointed.parameters()),
          flat(plain.parameters()),
          1e-10,
          1e-14,
          `${kind} parameters after two updates`,
        );
        ref.stage.optimizer.dispose();
        ckpt.stage.optimizer.dispose();
        plain.dispose();
        checkpointed.dispose();
      });
    });
  }
}

/** Gradients of the parameters and the input of one backward pass, with or without a tape. */
function gradientsOf(
  model: EPGViT | RCMViT,
  forward: (x: Tensor) => Tensor,
  x: Tensor,
  checkpointing: boolean,
  seed: number,
  segments = 0,
): number[] {
  return torch.tidy(() => {
    model.activationCheckpointing = checkpointing;
    for (const p of model.parameters()) p.grad = null;
    const input = x.detach().requiresGrad_(true);
    torch.manualSeed(seed);
    const tape = checkpointing ? new torch.CheckpointTape() : null;
    try {
      const loss = tape ? tape.record(() => forward(input)) : forward(input);
      if (tape) {
        assert.equal(tape.segments, segments, 'one checkpointed segment per transformer block');
        tape.backward(loss);
      } else loss.backward();
    } finally {
      tape?.dispose();
    }
    return flat([input.grad!, ...model.parameters().map((p) => p.grad!)]);
  });
}

test('activation checkpointing: EPGViT with decoder dropout and RCMViT give the plain gradients (float64)', () => {
  torch.tidy(() => {
    torch.manualSeed(5);
    const dt = { dtype: 'float64' as const };
    const epg = new EPGViT({ ...DEC, drop: 0.3 }, dt);
    const enc = new RCMViT(ENC, dt);
    torch.noGrad(() => {
      for (const p of [...epg.parameters(), ...enc.parameters()])
        torch.tidy(() => p.copy_(torch.randnLike(p).mul(0.3)));
    });
    const x = torch.randn([4, 2, 8, 8], dt);
    const tIn = torch.tensor([0.1, 0.5, 1.3, 2.0], dt);
    const y = torch.tensor([0, 3, 1, 5], { dtype: 'int64' });
    const epgLoss = (input: Tensor): Tensor => epg.forward(input, tIn, y).square().mean();
    const encLoss = (input: Tensor): Tensor => {
      const { proj, rep } = enc.forward(input, tIn);
      return proj.square().sum().add(rep.sum());
    };
    const plainEpg = gradientsOf(epg, epgLoss, x, false, 11);
    testing.assertClose(
      gradientsOf(epg, epgLoss, x, true, 11, DEC.depth + DEC.decoderDepth),
      plainEpg,
      1e-10,
      1e-14,
      'EPGViT gradients',
    );
    // Another dropout seed gives other gradients: the comparison above can fail.
    const other = gradientsOf(epg, epgLoss, x, false, 12);
    assert.ok(
      other.some((g, i) => Math.abs(g - plainEpg[i]!) > 1e-8),
      'dropout masks move the gradient',
    );
    testing.assertClose(
      gradientsOf(enc, encLoss, x, true, 0, ENC.depth),
      gradientsOf(enc, encLoss, x, false, 0),
      1e-10,
      1e-14,
      'RCMViT gradients',
    );
    epg.dispose();
    enc.dispose();
  });
});

for (const stage of ['pretrain', 'dm'] as const) {
  test(`activation checkpointing: a ${stage} run logs the losses of the plain run`, async () => {
    const run = async (ac: 'on' | 'off'): Promise<number[]> => {
      const cfg = loadConfig(`fashion-mnist-${stage}`, [
        `runDir=${join(root, `${stage}-${ac}`)}`,
        'batchSize=4',
        'steps=3',
        'logEvery=1',
        'checkpointEvery=0',
        'sampleCount=0',
        `activationCheckpointing=${ac}`,
      ]);
      const r = await train(cfg, { data: createDataPipeline, log: () => undefined });
      return [...r.losses.values()];
    };
    const plain = await run('off');
    const checkpointed = await run('on');
    assert.equal(checkpointed.length, 3);
    // float32: the blocks' gradients are summed in another order, so the updates differ in the last bits.
    testing.assertClose(checkpointed, plain, 1e-4, 0, `${stage} losses of three steps`);
  });
}

test('activationCheckpointing takes off or on', () => {
  assert.throws(
    () => loadConfig('fashion-mnist-dm', ['activationCheckpointing=yes']),
    /activationCheckpointing.*(off|on)/,
  );
});

test('imagenet256-dm-1gpu is the paper recipe with 1024 images per optimizer step, in 16 micro-batches of 64', () => {
  const paper = loadConfig('imagenet256-dm');
  const oneGpu = loadConfig('imagenet256-dm-1gpu');
  assert.equal(oneGpu.batchSize * oneGpu.accumulate, paper.batchSize * paper.accumulate);
  assert.deepEqual([oneGpu.batchSize, oneGpu.accumulate], [64, 16]);
  const { batchSize: _b, accumulate: _a, ...rest } = oneGpu;
  const { batchSize: _pb, accumulate: _pa, ...paperRest } = paper;
  assert.deepEqual(rest, paperRest, 'every other setting is the paper config');
});
