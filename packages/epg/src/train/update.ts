// One optimizer step of the trainer, in nanoGPT's order (STYLE.md habit 8):
// forward and backward for each micro-batch (the gradients of a data-parallel
// run all-reduced on the last one only) → unscale + clip → step → zero grads →
// EMA/target.
import * as torch from '@epg/torch';
import { dist, optim, type Tensor } from '@epg/torch';

import type { TrainConfig } from './config.js';
import type { StageBatch, TrainingStage } from './stages.js';

/**
 * One optimizer step over `batches` (cfg.accumulate micro-batches; one without
 * accumulation); returns the loss and metrics (their mean over the micro-batches)
 * as 0-d device tensors.
 */
export type Update = (batches: StageBatch[], step: number, clip: boolean) => [string, Tensor][];

export function makeUpdate(
  cfg: TrainConfig,
  device: torch.Device,
  stage: TrainingStage,
  ddp: dist.DistributedDataParallel | null,
  scaler: optim.GradScaler | null,
): Update {
  return (batches, step, clip) => {
    const micro = batches.length;
    const named: [string, Tensor][][] = batches.map((batch, i) => {
      const last = i === micro - 1;
      const autocast =
        cfg.precision === 'fp32'
          ? null
          : torch.autocastGuard(device.startsWith('cuda') ? 'cuda' : 'cpu', {
              dtype: cfg.precision === 'bf16' ? 'bfloat16' : 'float16',
            });
      // Activation checkpointing: the tape records the forward pass and drives the backward one.
      // EPG's models feed nothing that precedes their blocks to the code after them, so the loss's
      // graph (with L_aux, the frozen encoder's activations) is freed before the blocks replay.
      const tape = cfg.activationCheckpointing === 'on' ? new torch.CheckpointTape({ retainLossGraph: false }) : null;
      try {
        let r;
        // Earlier micro-batches accumulate their gradients locally (DDP's no_sync).
        if (last) ddp?.beginStep();
        try {
          r = tape ? tape.record(() => stage.step(batch, step)) : stage.step(batch, step);
        } finally {
          autocast?.[Symbol.dispose]();
        }
        // The mean over all micro-batches: each contributes 1/micro of its batch mean.
        const loss = micro === 1 ? r.loss : r.loss.div(micro);
        const scaled = scaler ? scaler.scale(loss) : loss;
        if (tape) {
          // One backward pass per block, outside DDP's hooks: then one all-reduce of every gradient.
          tape.backward(scaled);
          if (ddp && last) ddp.allReduceGradients();
        } else if (ddp && last) {
          // With DDP the gradients arrive averaged over ranks, bucket by bucket during the backward pass.
          ddp.backward(scaled);
        } else {
          scaled.backward();
        }
        return [['loss', r.loss.detach()], ...Object.entries(r.metrics)];
      } finally {
        tape?.dispose();
      }
    });
    if (scaler) scaler.unscale_(stage.optimizer);
    const gradNorm = clip ? optim.clipGradNorm_(stage.model.parameters(), cfg.optim.gradClip) : null;
    if (scaler) {
      scaler.step(stage.optimizer);
      scaler.update();
    } else {
      stage.optimizer.step();
    }
    stage.optimizer.zeroGrad();
    stage.afterStep(step);
    const metrics = micro === 1 ? named[0]! : meanOverMicroBatches(named);
    if (gradNorm) metrics.push(['grad_norm', gradNorm]);
    return metrics;
  };
}

/** Each metric's mean over the micro-batches (the loss: the mean over the whole batch). */
function meanOverMicroBatches(named: [string, Tensor][][]): [string, Tensor][] {
  return named[0]!.map(([k], j) => [k, torch.stack(named.map((m) => m[j]![1])).mean()]);
}
