// Sampling from a trained checkpoint (epg sample): the EMA weights of a
// fine-tuning checkpoint (or an official .pt), a chosen sampler, CFG with a
// guidance interval, random or balanced labels; writes PNGs, a grid and the
// ADM evaluator's .npz, and reports the NFE.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

import { clampRange, denormalize, encodePng, saveImageGrid, type NormalizationName } from './data/index.js';
import { perIndexInitialNoise, perIndexLabels, perIndexNormal, SAMPLE_STREAM } from './diffusion/sample-noise.js';
import { saveImagesNpz } from './eval/index.js';
import { loadOfficialCheckpoint } from './models/checkpoints.js';
import { officialFolder } from './models/official-folders.js';
import { buildEPG } from './models/presets.js';
import type { EPGViT } from './models/vit.js';
import { disposeAll, loadCheckpoint, modelWeights } from './checkpoint.js';
import { gatherRound, joinSamplingGroup, leaveSamplingGroup, rankBatches, rankDevice } from './sample-parallel.js';

import type { CmPrecond } from './diffusion/denoiser.js';
import { samplerFunction, type SamplerName } from './diffusion/sampler.js';
import { concreteCmPrecond } from './train/config.js';
import { GUIDANCE_INTERVAL } from './diffusion/samplers.js';

// The sampler builder lives with the samplers (training's periodic grids use it too); re-exported for export.ts and users.
export { samplerFunction, samplerSigmas, type SamplerName, type SamplerSettings } from './diffusion/sampler.js';

export interface SampleOptions {
  checkpoint: string;
  out: string;
  num: number;
  sampler?: SamplerName;
  steps?: number;
  cfgScale?: number;
  guidanceInterval?: readonly [number, number];
  labels?: 'random' | 'balanced' | number;
  seed?: number;
  batchSize?: number;
  device?: torch.Device;
  /** Use the online weights instead of the EMA ones. */
  noEma?: boolean;
  /** For official .pt checkpoints, which carry no config. */
  preset?: string;
  numClasses?: number;
  normalization?: NormalizationName;
  /** Append σ = 0 to the Heun/Euler grid (EDM's convention; off: the official grid). */
  appendZero?: boolean;
  writePngs?: boolean;
  /**
   * Capture the sampler for one batch as a CUDA graph and replay it for the
   * others (heun, euler, onestep; off CUDA it runs eagerly with the capture checks).
   */
  cudaGraph?: boolean;
  log?: (line: string) => void;
}

export interface SampleReport {
  num: number;
  nfePerImage: number;
  sampler: SamplerName;
  seconds: number;
  grid: string;
  npz: string;
}

/**
 * Labels for n samples: balanced (sample i gets class i mod K: counts differ by
 * at most one, and a grid K wide shows one class per column), random, or one class.
 */
export function sampleLabels(
  n: number,
  numClasses: number,
  how: 'random' | 'balanced' | number,
  gen: torch.Generator,
): Tensor {
  if (typeof how === 'number') return torch.full([n], how, { dtype: 'int64' });
  if (how === 'balanced') return torch.tidy(() => torch.arange(0, n, 1).remainder(numClasses));
  return torch.randint(0, numClasses, [n], { generator: gen });
}

/**
 * The model of a checkpoint (EMA weights unless noEma), its stage, its data
 * normalisation and how a consistency sampler reads it (finetune.cmPrecond);
 * `checkpoint` may also be a released folder (models/official-folders.ts).
 */
export function loadModel(
  opts: Pick<SampleOptions, 'checkpoint' | 'noEma' | 'preset' | 'numClasses' | 'normalization'>,
  device: torch.Device,
): { model: EPGViT; stage: 'dm' | 'cm'; norm: NormalizationName; cmPrecond: CmPrecond } {
  // A released folder (nnet_ema.pth): its weights, with the preset and stage its name or shapes give.
  const folder = officialFolder(opts.checkpoint);
  if (folder?.stage === 'pretrain')
    throw new Error(
      `sample: ${folder.dir} holds a pre-trained encoder (${folder.preset}); sample from a dm or cm model`,
    );
  const o = folder ? { ...opts, checkpoint: folder.weights, preset: opts.preset ?? folder.preset } : opts;
  if (o.checkpoint.endsWith('.pt') || o.checkpoint.endsWith('.pth')) {
    if (!o.preset) throw new Error('sample: an official .pt checkpoint needs --preset (e.g. EPG-XL/16)');
    const model = buildEPG(o.preset, { numClasses: o.numClasses ?? 1000, device });
    loadOfficialCheckpoint(model, o.checkpoint);
    return {
      model,
      stage: folder?.stage === 'cm' ? 'cm' : 'dm',
      norm: o.normalization ?? 'imagenet',
      cmPrecond: 'edm',
    };
  }
  const ck = loadCheckpoint(o.checkpoint, device);
  try {
    const { meta } = ck;
    if (meta.stage === 'pretrain')
      throw new Error(`sample: ${ck.path} is a pre-training checkpoint; sample from a dm or cm checkpoint`);
    const cfg = meta.config;
    const { weights } = modelWeights(ck.tensors, { ema: !o.noEma });
    // A post-hoc EMA reconstruction (epg phema) holds only EMA weights.
    if (weights.size === 0)
      throw new Error(`sample: ${ck.path} holds no online ('model.') weights; sample its EMA weights (drop --no-ema)`);
    const model = buildEPG(cfg.preset, {
      numClasses: cfg.numClasses,
      imageSize: inferImageSize(weights, cfg.preset),
      inChannels: inferChannels(weights),
      device,
    });
    model.loadStateDict(weights);
    const norm = cfg.data.normalization;
    // Runs from before finetune.cmPrecond existed read the network the released way.
    const cmPrecond = concreteCmPrecond(cfg.finetune.cmPrecond ?? 'edm', false);
    return { model, stage: meta.stage, norm, cmPrecond };
  } finally {
    disposeAll(ck.tensors.values());
  }
}

/** The batch padded with zeros to `size` rows (a graph's static shape). */
function padBatch(t: Tensor, size: number): Tensor {
  const n = t.shape[0]!;
  if (n === size) return t;
  return torch.cat([t, torch.zeros([size - n, ...t.shape.slice(1)], { dtype: t.dtype, device: t.device })]);
}

function inferChannels(t: Map<string, Tensor>): number {
  return t.get('patch_embed.proj.weight')!.shape[1]!;
}

function inferImageSize(t: Map<string, Tensor>, _preset: string): number {
  const pos = t.get('pos_embed')!.shape[1]! - 2;
  const p = t.get('patch_embed.proj.weight')!.shape[2]!;
  return Math.round(Math.sqrt(pos)) * p;
}

export function sampleFromCheckpoint(o: SampleOptions): SampleReport {
  const log = o.log ?? (() => undefined);
  const device = rankDevice(o.device ?? 'cpu');
  const t0 = performance.now();
  const { model, stage, norm, cmPrecond } = loadModel(o, device);
  model.eval().requiresGrad_(false);
  const sampler: SamplerName = o.sampler ?? (stage === 'cm' ? 'onestep' : 'heun');
  const H = model.config.imageSize;
  const C = model.config.inChannels;
  const clamp = clampRange(norm, C);
  // The label and the noise of sample i depend only on (seed, i) (sample-noise.ts).
  const seed = o.seed ?? 0;
  const ranks = joinSamplingGroup();
  const all: Tensor[] = [];
  let nfePerImage = 0;
  let batchStart = 0;
  try {
    const labels = perIndexLabels(o.num, model.config.numClasses, o.labels ?? 'random', seed);
    const bs = o.batchSize ?? 64;
    const sampleBatch = samplerFunction(model, {
      sampler,
      steps: o.steps ?? 32,
      cmPrecond,
      cfgScale: o.cfgScale ?? 1,
      guidanceInterval: o.guidanceInterval ?? GUIDANCE_INTERVAL,
      appendZero: o.appendZero ?? false,
      clamp,
      // The injected noise of sample i depends only on (seed, i, step), as its x_T.
      noise: (x, j) =>
        perIndexNormal(batchStart, x.shape[0]!, x.shape.slice(1), {
          seed,
          stream: SAMPLE_STREAM.multistep + j,
          device,
        }),
      onNfe: (nfe) => {
        nfePerImage = nfe;
      },
    });
    if (o.cudaGraph && sampler === 'multistep')
      log('cudaGraph: the multistep sampler draws noise between its steps from its own generator; it runs eagerly');
    // One graph of the whole sampler for a full batch (a short last batch is padded).
    const graphBatch = Math.min(bs, o.num);
    const graph =
      o.cudaGraph && sampler !== 'multistep'
        ? new torch.cuda.GraphedFunction(([xT, y]) => [sampleBatch(xT!, y!)], {
            name: `the ${sampler} sampler`,
            warmup: 1,
            onFallback: (reason) => log(`cudaGraph: ${reason}`),
          })
        : null;
    try {
      // Under `epg launch`, each rank samples its blocks of indices and rank 0 gathers them in index order.
      for (const b of rankBatches(o.num, bs, ranks.rank, ranks.worldSize)) {
        const { start, count: n } = b;
        batchStart = start;
        const images = torch.inferenceMode(() =>
          torch.tidy(() => {
            if (n === 0) return torch.zeros([0, C, H, H], { dtype: 'uint8' });
            const y = labels.slice(0, start, start + n).to({ device });
            const xT = perIndexInitialNoise(start, n, [C, H, H], { seed, device });
            const samples = graph
              ? graph.call([padBatch(xT, graphBatch), padBatch(y, graphBatch)])[0]!.slice(0, 0, n)
              : sampleBatch(xT, y);
            return denormalize(samples.cpu(), norm);
          }),
        );
        const gathered = gatherRound(images, b, bs, ranks);
        if (gathered !== images) images.dispose();
        if (gathered) all.push(gathered);
        log(`sampled ${Math.min(b.roundStart + b.roundCount, o.num)}/${o.num}`);
      }
    } finally {
      graph?.dispose();
    }
    labels.dispose();
    const grid = join(o.out, 'grid.png');
    const npz = join(o.out, 'samples.npz');
    const report = { num: o.num, nfePerImage, sampler, seconds: 0, grid, npz };
    // Rank 0 writes; the output folder is made only now, when there is something to write.
    if (ranks.rank !== 0) return { ...report, seconds: (performance.now() - t0) / 1000 };
    mkdirSync(o.out, { recursive: true });
    torch.tidy(() => {
      const batch = torch.cat(all);
      const show = batch.slice(0, 0, Math.min(o.num, 100));
      saveImageGrid(grid, show, Math.ceil(Math.sqrt(show.shape[0]!)));
      saveImagesNpz(npz, batch);
      if (o.writePngs ?? true) {
        const hwc = batch.permute(0, 2, 3, 1).contiguous();
        for (let i = 0; i < batch.shape[0]!; i++) {
          const px = torch.tidy(() => hwc.select(0, i).toTypedArray() as Uint8Array);
          torch.io.writeFileAtomic(join(o.out, `${String(i).padStart(6, '0')}.png`), encodePng(px, H, H, C));
        }
      }
    });
    return { ...report, seconds: (performance.now() - t0) / 1000 };
  } finally {
    disposeAll(all);
    model.dispose();
    leaveSamplingGroup(ranks);
  }
}
