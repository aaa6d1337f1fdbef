// The gradient-accumulation problem that train-accumulate.test.ts (one process)
// and dist-worker.ts (two Gloo ranks) share: a float64 EPGViT trained through the
// trainer's update on fine-tuning losses whose noise draws are given per batch.
import * as torch from '@epg/torch';
import { dist, optim, type Tensor } from '@epg/torch';

import { cmLoss, dmLoss, EPGViT, sampleDmSigmas, sampleEctPairs, schedules } from '../src/index.js';
import type { TrainConfig } from '../src/train/config.js';
import type { StageBatch, StepOutput, TrainingStage } from '../src/train/stages.js';
import { makeUpdate } from '../src/train/update.js';
import { DEC } from './tiny-configs.js';

export const ACCUMULATE_BATCH = 8;
const dt = { dtype: 'float64' as const };

/** The parts of a fine-tuning stage the update uses, with the noise draws of each batch given (keyed by its images). */
export function givenDrawsStage(
  kind: 'dm' | 'cm',
  model: EPGViT,
  draws: Map<Tensor, Record<string, Tensor>>,
): { stage: TrainingStage; grads: number[][] } {
  const optimizer = new optim.AdamW(model.parameters(), { lr: 1e-3, betas: [0.9, 0.99] });
  const grads: number[][] = [];
  const step = optimizer.step.bind(optimizer);
  // The gradient the optimizer sees (AdamW's first step is nearly sign(g): its result alone would hide a scale).
  optimizer.step = () => {
    grads.push(model.parameters().flatMap((p) => Array.from(p.grad!.toTypedArray() as Float64Array)));
    step();
  };
  const stage = {
    model,
    optimizer,
    step(batch: StageBatch): StepOutput {
      const d = draws.get(batch.x)!;
      const common = { net: model, x0: batch.x, y: batch.labels, noise: d.noise! };
      const loss =
        kind === 'dm'
          ? dmLoss({ ...common, sigma: d.sigma!, weight: d.weight! })
          : cmLoss({ ...common, t: d.t!, r: d.r!, perceptual: null }).loss;
      return { loss: loss.mean(), metrics: {} };
    },
    afterStep() {},
  };
  return { stage: stage as unknown as TrainingStage, grads };
}

/** A seeded model with random weights (the zero-initialised head would hide errors), and one global batch with its draws. */
export function accumulateProblem(kind: 'dm' | 'cm'): {
  model: EPGViT;
  x: Tensor;
  labels: Tensor;
  draws: Record<string, Tensor>;
} {
  torch.manualSeed(3);
  const model = new EPGViT(DEC, dt);
  torch.noGrad(() => {
    for (const p of model.parameters()) torch.tidy(() => p.copy_(torch.randnLike(p).mul(0.3)));
  });
  const g = new torch.Generator('cpu', 7);
  const x = torch.randn([ACCUMULATE_BATCH, 2, 8, 8], { ...dt, generator: g });
  const labels = torch.tensor([1, 4, 0, 2, 3, 1, 5, 2], { dtype: 'int64' });
  const noise = torch.randn([ACCUMULATE_BATCH, 2, 8, 8], { ...dt, generator: g });
  const levels =
    kind === 'dm'
      ? sampleDmSigmas(ACCUMULATE_BATCH, schedules.gridOf(schedules.DM_GRID_SIZE), { generator: g })
      : sampleEctPairs(ACCUMULATE_BATCH, 2, { generator: g });
  return { model, x, labels, draws: { noise, ...levels } };
}

/** Rows [start, start + length) of the global batch as `micro` micro-batches, their draws registered. */
export function microBatches(
  p: ReturnType<typeof accumulateProblem>,
  draws: Map<Tensor, Record<string, Tensor>>,
  [start, length]: [number, number],
  micro: number,
): StageBatch[] {
  const size = length / micro;
  return Array.from({ length: micro }, (_, i) => {
    const part = (t: Tensor): Tensor => t.narrow(0, start + i * size, size);
    const b = { x: part(p.x), labels: part(p.labels) };
    draws.set(b.x, Object.fromEntries(Object.entries(p.draws).map(([k, t]) => [k, part(t)])));
    return b;
  });
}

/**
 * The gradient of one dm update over rows [start, start + length) in `micro`
 * micro-batches; with a group, through DDP (which averages over ranks), counting
 * the backward passes that went through it.
 */
export function accumulatedGradient(
  cfg: TrainConfig,
  rows: [number, number],
  micro: number,
  group: dist.ProcessGroup | null,
): { grad: number[]; syncedBackwards: number } {
  return torch.tidy(() => {
    const p = accumulateProblem('dm');
    const draws = new Map<Tensor, Record<string, Tensor>>();
    const batches = microBatches(p, draws, rows, micro);
    p.model.activationCheckpointing = cfg.activationCheckpointing === 'on';
    const { stage, grads } = givenDrawsStage('dm', p.model, draws);
    let syncedBackwards = 0;
    const ddp = group ? new dist.DistributedDataParallel(p.model, { group, broadcastBuffers: false }) : null;
    if (ddp) {
      const backward = ddp.backward.bind(ddp);
      ddp.backward = (loss: Tensor) => {
        syncedBackwards++;
        backward(loss);
      };
      // Activation checkpointing's path: the tape's backward passes, then one all-reduce.
      const allReduce = ddp.allReduceGradients.bind(ddp);
      ddp.allReduceGradients = () => {
        syncedBackwards++;
        allReduce();
      };
    }
    makeUpdate(cfg, 'cpu', stage, ddp, null)(batches, 0, false);
    ddp?.dispose();
    stage.optimizer.dispose();
    p.model.dispose();
    return { grad: grads[0]!, syncedBackwards };
  });
}
