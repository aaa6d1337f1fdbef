// The training step as CUDA graphs (cfg.cudaGraph 'on'), one per graph key.
import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

import type { TrainConfig } from './config.js';
import type { StageBatch, TrainingStage } from './stages.js';
import type { Update } from './update.js';

/**
 * The training step as CUDA graphs (cfg.cudaGraph 'on'): one graph per
 * stage.graphKey and clipping state, captured after two eager warm-up steps
 * and replayed on static copies of each batch. The lr reaches the graph
 * through AdamW's capturable lr tensor. Off CUDA the same path runs eagerly
 * with the capture checks, which is how the CPU tests check it for host transfers.
 */
export class StepGraphs {
  #current: { key: string; fn: torch.cuda.GraphedFunction; names: string[] } | null = null;
  #eager = false;
  /** The step being run: eager calls see it; a replay repeats what its capture step computed (graphKey covers that). */
  #step = 0;

  private constructor(
    private readonly stage: TrainingStage,
    private readonly update: Update,
    private readonly log: (line: string) => void,
  ) {}

  /** The graphs of a run, or null (with the reason logged) when its step cannot be captured. */
  static open(
    cfg: TrainConfig,
    device: torch.Device,
    worldSize: number,
    stage: TrainingStage,
    update: Update,
    log: (line: string) => void,
  ): StepGraphs | null {
    const refusal =
      worldSize > 1
        ? `a data-parallel run (${worldSize} ranks) all-reduces from autograd hooks on the host`
        : cfg.activationCheckpointing === 'on'
          ? 'activation checkpointing runs one backward pass per transformer block, driven from the host'
          : cfg.accumulate > 1
            ? `gradient accumulation (accumulate ${cfg.accumulate}) would need a static copy of every micro-batch`
            : cfg.precision === 'fp16'
              ? "fp16's loss scaler decides on the host whether to step (use bf16)"
              : stage.graphRefusal;
    if (refusal) {
      log(`cudaGraph on, but the step runs eagerly: ${refusal}`);
      return null;
    }
    if (!device.startsWith('cuda'))
      log(`cudaGraph on ${device}: the step runs eagerly through static buffers, with the capture checks`);
    return new StepGraphs(stage, update, log);
  }

  /** Whether the update of `step` will be captured (rather than run or replayed). */
  capturesNext(step: number, clip: boolean): boolean {
    return this.#current?.key === this.#key(step, clip) && this.#current.fn.capturesOnNextCall;
  }

  #key(step: number, clip: boolean): string {
    return `${this.stage.graphKey(step)}, clip ${clip ? 'on' : 'off'}`;
  }

  /** One update through the graph of this step's key; the metrics it returns live until the next call. */
  step(batch: StageBatch, step: number, clip: boolean): [string, Tensor][] {
    const key = this.#key(step, clip);
    if (this.#current?.key !== key) {
      this.#current?.fn.dispose();
      const current: { key: string; fn: torch.cuda.GraphedFunction; names: string[] } = {
        key,
        names: [],
        fn: new torch.cuda.GraphedFunction(
          ([x, labels]) => {
            const named = this.update([{ x: x!, labels: labels! }], this.#step, clip);
            current.names = named.map(([k]) => k);
            return named.map(([, t]) => t);
          },
          {
            name: `the ${this.stage.name} step (${key})`,
            capture: !this.#eager,
            onCapture: () =>
              this.log(`cudaGraph: captured the ${this.stage.name} step (${key}); later steps replay it`),
            onFallback: (reason) => {
              // Off CUDA this was said once already; a failed capture is news.
              if (/capture failed/.test(reason)) {
                this.#eager = true;
                // A capture that failed part-way may have left never-computed gradients behind.
                this.stage.optimizer.zeroGrad();
                this.log(`cudaGraph: ${reason}; later steps run eagerly`);
              }
            },
          },
        ),
      };
      this.#current = current;
    }
    // The lr changed on the host (the schedule): write it where the graph reads it.
    this.stage.optimizer.syncLr();
    this.#step = step;
    const current = this.#current;
    const outputs = current.fn.call([batch.x, batch.labels]);
    // The names are known once the body has run (at the first call of a key).
    return current.names.map((k, i) => [k, outputs[i]!]);
  }

  dispose(): void {
    this.#current?.fn.dispose();
    this.#current = null;
  }
}
