// One rank of the data-parallel tests (dist.test.ts starts ranks through
// `epg launch`, so the launcher's environment contract is exercised too).
// argv: scenario, output JSON path.
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

import * as torch from '@epg/torch';
import { dist, nn, type Tensor } from '@epg/torch';

import { pretrainLoss, RCMViT, schedules } from '../src/index.js';
import { loadConfig } from '../src/train/config.js';
import { accumulatedGradient, ACCUMULATE_BATCH } from './accumulate-setup.js';
import { ENC } from './tiny-configs.js';

export const GLOBAL_BATCH = 8;
const dt = { dtype: 'float64' as const };

/** Online and target encoders with seeded weights, and one global pre-training batch. */
export function pretrainSetup(): {
  online: RCMViT;
  target: RCMViT;
  batch: Record<'x' | 'xAug' | 'xAug2' | 'noise', Tensor>;
} {
  torch.manualSeed(11);
  const online = new RCMViT(ENC, dt);
  const target = new RCMViT(ENC, dt);
  target.eval();
  const g = new torch.Generator('cpu', 5);
  const img = (): Tensor => torch.randn([GLOBAL_BATCH, 2, 8, 8], { ...dt, generator: g });
  return { online, target, batch: { x: img(), xAug: img(), xAug2: img(), noise: img() } };
}

/**
 * The pre-training loss (mean over `rows` of the global batch) and its
 * parameter gradients; with a group, the targets are gathered over the ranks
 * (this rank's block first) and DDP averages the gradients.
 */
export function pretrainGradients(
  rows: [number, number],
  group: dist.ProcessGroup | null,
): { loss: number; grads: Record<string, number[]> } {
  const { online, target, batch } = pretrainSetup();
  const part = (t: Tensor): Tensor => t.narrow(0, rows[0], rows[1]);
  let ddp: dist.DistributedDataParallel | null = null;
  if (group) {
    nn.convertSyncBatchNorm(online, group);
    ddp = new dist.DistributedDataParallel(online, { group });
    ddp.beginStep();
  }
  const grid = schedules.gridOf(schedules.ictNumScales(1));
  const out = pretrainLoss({
    online,
    target,
    x: part(batch.x),
    xAug: part(batch.xAug),
    xAug2: part(batch.xAug2),
    noise: part(batch.noise),
    n: 17,
    grid,
    tauRc: 0.1,
    ...(group ? { gather: (t: Tensor) => group.allGather(t).roll(-group.rank * t.shape[0]!, 0) } : {}),
  });
  const loss = out.loss.mean();
  if (ddp) ddp.backward(loss);
  else loss.backward();
  const grads: Record<string, number[]> = {};
  for (const [k, p] of online.namedParameters())
    if (p.grad) grads[k] = Array.from(p.grad.toTypedArray() as Float64Array);
  ddp?.dispose();
  return { loss: loss.item(), grads };
}

function main(scenario: string): Record<string, unknown> {
  const group = dist.initProcessGroup();
  const { rank, size } = group;
  if (scenario === 'pretrain-grad') {
    const per = GLOBAL_BATCH / size;
    return { rank, ...pretrainGradients([rank * per, per], group) };
  }
  if (scenario === 'accumulate-grad' || scenario === 'checkpointing-grad') {
    // Two micro-batches of this rank's share of the global batch (with activation checkpointing in the second).
    const per = ACCUMULATE_BATCH / size;
    const set = ['accumulate=2', ...(scenario === 'checkpointing-grad' ? ['activationCheckpointing=on'] : [])];
    return { rank, ...accumulatedGradient(loadConfig('fashion-mnist-dm', set), [rank * per, per], 2, group) };
  }
  if (scenario === 'crash' || scenario === 'killed') {
    const t = torch.ones([4]);
    for (let step = 0; ; step++) {
      group.allReduce(t);
      if (rank === 1 && step === 3) {
        if (scenario === 'crash') throw new Error('boom from rank 1 at step 3');
        process.kill(process.pid, 'SIGKILL');
      }
    }
  }
  throw new Error(`unknown scenario ${scenario}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [scenario, outPattern] = process.argv.slice(2) as [string, string];
  const result = main(scenario);
  // One file per rank: RANK in the path becomes the rank.
  if (outPattern) writeFileSync(outPattern.replace('RANK', String(result.rank)), JSON.stringify(result));
  dist.destroyProcessGroup();
}
