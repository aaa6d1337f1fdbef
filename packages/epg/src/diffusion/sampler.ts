// The whole sampler over a model as one function of (x_T, labels): the
// network (x0-prediction for Heun/Euler, the consistency function for one-step
// and multistep), CFG over the guidance interval, clamping, the σ grid. One
// builder for everything that samples a model: epg sample, the training run's
// periodic grids and FID (train/stages.ts), and epg export, which traces it.
import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

import type { EPGViT } from '../models/vit.js';
import { consistencyFunction, denoiseX0, type CmPrecond } from './denoiser.js';
import { resolutionShift, samplingSigmas } from './edm.js';
import {
  guidedDenoiser,
  type ClampRange,
  sampleEuler,
  sampleHeun,
  sampleMultistep,
  sampleOneStep,
} from './samplers.js';

export type SamplerName = 'heun' | 'euler' | 'onestep' | 'multistep';

export interface SamplerSettings {
  sampler: SamplerName;
  steps: number;
  cfgScale: number;
  guidanceInterval: readonly [number, number];
  appendZero: boolean;
  clamp: ClampRange | null;
  /** How the consistency samplers read the network (the run's finetune.cmPrecond); 'edm' when absent. */
  cmPrecond?: CmPrecond;
  /** The multistep sampler's noise between steps (used when `noise` is not given). */
  generator?: torch.Generator;
  /**
   * The multistep sampler's noise before intermediate step j, shaped like x
   * (epg sample: per-index draws, diffusion/sample-noise.ts); else randn(generator).
   */
  noise?: (x: Tensor, step: number) => Tensor;
  onNfe?: (nfePerImage: number) => void;
}

/** The σ grid of the Heun and Euler samplers (shifted; the official grid unless appendZero). */
export function samplerSigmas(s: Pick<SamplerSettings, 'steps' | 'appendZero'>, imageSize: number): Float64Array {
  return samplingSigmas(s.steps, imageSize, { appendZero: s.appendZero });
}

/** x_T and labels → samples: the whole sampler over the model, device work only (also what `epg export` traces). */
export function samplerFunction(model: EPGViT, s: SamplerSettings): (xT: Tensor, y: Tensor) => Tensor {
  const H = model.config.imageSize;
  const x0Fn =
    s.sampler === 'onestep' || s.sampler === 'multistep'
      ? (x: Tensor, sg: Tensor, yy: Tensor) => consistencyFunction(model, x, sg, yy, s.cmPrecond)
      : (x: Tensor, sg: Tensor, yy: Tensor) => denoiseX0(model, x, sg, yy);
  // The grid of the Heun and Euler samplers (the consistency samplers have their own σs).
  const sigmas = s.sampler === 'heun' || s.sampler === 'euler' ? samplerSigmas(s, H) : new Float64Array(0);
  return (xT, y) => {
    const D = guidedDenoiser(x0Fn, {
      labels: y,
      nullClass: model.nullClass,
      imageSize: H,
      cfgScale: s.cfgScale,
      guidanceInterval: s.guidanceInterval,
      clamp: s.clamp,
    });
    const r =
      s.sampler === 'heun'
        ? sampleHeun(D, xT, sigmas)
        : s.sampler === 'euler'
          ? sampleEuler(D, xT, sigmas)
          : s.sampler === 'onestep'
            ? sampleOneStep(D, xT)
            : sampleMultistep(D, xT, [0.8 * resolutionShift(H)], { generator: s.generator, noise: s.noise });
    s.onNfe?.(r.nfe);
    return r.samples;
  };
}
