// The FID curve of a fine-tuning run (--set evalEvery=K): every K optimizer
// steps, evalSamples class-balanced samples from the EMA weights — the sampler
// of the periodic grids (heun with sampleSteps and cfgScale for dm, one step
// for cm; spec §7) — scored by runEval (spec §8) against the test split of the
// built-in dataset the run trains on, with cached reference statistics. The
// result is an FID-N proxy: biased upwards at small N, comparable along one
// run's curve, not with FID-50K.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as torch from '@epg/torch';

import { denormalize } from '../data/index.js';
import { runEval, SamplesNpzWriter } from '../eval/index.js';
import type { TrainConfig } from './config.js';
import { openDataset } from './data.js';
import type { TrainingStage } from './stages.js';

/** The datasets with a test split to score against. */
const BUILT_IN = new Set(['fashion-mnist', 'cifar10']);

/** Why a run cannot be evaluated (a line for the log), or null when it can. */
export function evalRefusal(cfg: TrainConfig): string | null {
  if (cfg.evalEvery === 0) return null;
  if (cfg.stage === 'pretrain') return 'evalEvery: the pre-training stage does not generate; no FID evaluation';
  if (!BUILT_IN.has(cfg.data.source))
    return `evalEvery: FID evaluation needs a built-in dataset's test split (fashion-mnist, cifar10), not '${cfg.data.source}'; skipped`;
  return null;
}

export interface FidPoint {
  fid: number;
  label: string;
  seconds: number;
  numReference: number | null;
}

/**
 * Samples cfg.evalSamples images (labels cycling through the classes) and
 * scores them. The noise comes from its own generator with a fixed seed, the
 * same at every evaluation, so the curve follows the weights, and the grids'
 * generator (saved in checkpoints) is left alone.
 */
export async function evaluateFid(
  cfg: TrainConfig,
  stage: TrainingStage,
  device: torch.Device,
  imageSize: number,
): Promise<FidPoint> {
  const t0 = performance.now();
  const dir = mkdtempSync(join(tmpdir(), 'epg-eval-'));
  try {
    const npz = join(dir, 'samples.npz');
    // Batches of whole label cycles keep the classes balanced across batches.
    const perBatch = cfg.numClasses * Math.max(1, Math.floor(64 / cfg.numClasses));
    {
      using gen = new torch.Generator(device, cfg.seed + 3);
      using writer = new SamplesNpzWriter(npz, cfg.evalSamples, imageSize, imageSize);
      for (let done = 0; done < cfg.evalSamples; done += perBatch) {
        const n = Math.min(perBatch, cfg.evalSamples - done);
        torch.tidy(() => {
          const images = denormalize(stage.sample(n, gen).cpu(), cfg.data.normalization);
          writer.append(images.shape[1] === 1 ? images.expand(-1, 3, -1, -1) : images, 'NCHW');
        });
      }
      writer.close();
    }
    const r = await runEval({
      samples: npz,
      refDataset: {
        source: openDataset({ ...cfg.data, split: 'test', normalization: 'simple', workers: 0 }),
        // The split is part of the statistics' cache key (as `epg eval --split test` names it).
        name: `${cfg.data.source}-test`,
        numImages: cfg.evalRefImages,
      },
      precisionRecall: false,
      device,
    });
    return { fid: r.fid, label: r.label, seconds: (performance.now() - t0) / 1000, numReference: r.numReference };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
