// `epg export`: a trained generator as a self-describing folder that runs
// without this code base. The sampler travels inside the ONNX graph (one-step
// consistency sampling, or Heun with CFG unrolled for N steps): standard-normal
// noise and labels in, images in [0, 1] out. Beside the model: config.json
// (preset, resolution, channels, normalisation and its inverse, class names,
// the sampler and its σ grid, which weights) and MODEL_CARD.md. With
// --format safetensors the folder holds model.safetensors instead (the weights
// for other frameworks; the sampler is then described, not included).
// Everything is written into a staging folder first and moved into place at
// the end, so a failed export leaves no half-written model behind.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

import { clampRange, perChannel, type NormalizationName } from './data/normalize.js';
import { FASHION_MNIST_CLASSES } from './data/idx.js';
import type { CmPrecond } from './diffusion/denoiser.js';
import { resolutionShift, SIGMA_MAX } from './diffusion/edm.js';
import { GUIDANCE_INTERVAL } from './diffusion/samplers.js';
import { loadModel, samplerFunction, samplerSigmas, type SamplerSettings } from './sample.js';
import { readCheckpointMeta } from './checkpoint.js';

export type ExportFormat = 'onnx' | 'safetensors';
export type ExportSampler = 'onestep' | 'heun';

export interface ExportOptions {
  /** A run folder or a checkpoint file (dm or cm fine-tuning). */
  checkpoint: string;
  out: string;
  format?: ExportFormat;
  /** Default: onestep for a cm checkpoint, heun for a dm one. */
  sampler?: ExportSampler;
  steps?: number;
  cfgScale?: number;
  guidanceInterval?: readonly [number, number];
  appendZero?: boolean;
  noEma?: boolean;
  /** FID measured for this model, for the model card. */
  fid?: number;
  classNames?: string[];
  /** For an official .pt checkpoint, which carries no config: its preset and class count. */
  preset?: string;
  numClasses?: number;
  /** Overwrite files of an earlier export in out. */
  overwrite?: boolean;
  log?: (line: string) => void;
}

export interface ExportReport {
  out: string;
  files: string[];
  modelFile: string;
  modelBytes: number;
  seconds: number;
  nfePerImage: number;
}

/** The schema of config.json (format epg-export-v1). */
export interface ExportConfig {
  format: 'epg-export-v1';
  model: { file: string; format: ExportFormat; opset?: number };
  preset: string;
  stage: 'dm' | 'cm';
  imageSize: number;
  channels: number;
  numClasses: number;
  nullClass: number;
  classNames: string[];
  normalization: { name: NormalizationName; mean: number[]; std: number[]; forward: string; inverse: string };
  sampler: {
    name: ExportSampler;
    steps: number;
    nfePerImage: number;
    cfgScale: number;
    guidanceInterval: [number, number];
    /** The shifted σ grid the graph steps through (one-step: [σ_max·H/64]). */
    sigmas: number[];
    /** The noise input is N(0, 1); the graph multiplies it by this (σ_max·H/64). */
    noiseScale: number;
    /** One-step only: how the consistency function reads the network (diffusion/denoiser.ts CmPrecond). */
    consistency?: { precond: CmPrecond; formula: string };
  };
  weights: 'ema' | 'online';
  inputs: { name: string; dtype: string; shape: (number | string)[]; meaning: string }[];
  outputs: { name: string; dtype: string; shape: (number | string)[]; meaning: string }[];
  source: { checkpoint: string; step: number | null; data: string | null; trainingSteps: number | null };
  fid: number | null;
  exportedAt: string;
}

const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

function defaultClassNames(source: string | null, numClasses: number): string[] {
  if (source === 'fashion-mnist' && numClasses === 10) return [...FASHION_MNIST_CLASSES];
  if (source === 'cifar10' && numClasses === 10) return [...CIFAR10_CLASSES];
  return Array.from({ length: numClasses }, (_, i) => `class ${i}`);
}

/** Creates out (and a staging folder inside it) or says clearly why it cannot. */
function prepareOut(out: string, overwrite: boolean, files: readonly string[]): { staging: string; created: boolean } {
  try {
    const created = !existsSync(out);
    if (!created && !statSync(out).isDirectory()) throw new Error('it is a file, not a folder');
    mkdirSync(out, { recursive: true });
    const staging = join(out, `.export-${process.pid}`);
    mkdirSync(staging);
    if (!overwrite) {
      const clash = files.filter((f) => existsSync(join(out, f)));
      if (clash.length) {
        rmSync(staging, { recursive: true, force: true });
        if (created) rmSync(out, { recursive: true, force: true });
        throw new Error(`it already holds ${clash.join(', ')} (pass --overwrite to replace them)`);
      }
    }
    return { staging, created };
  } catch (e) {
    throw new Error(`export: cannot write to ${out}: ${(e as Error).message}; choose a writable --out folder`);
  }
}

function modelCard(c: ExportConfig, o: ExportOptions): string {
  const lines = [
    `# ${c.preset} ${c.stage === 'cm' ? 'consistency' : 'diffusion'} model (${c.imageSize}×${c.imageSize}, ${c.channels} channel${c.channels > 1 ? 's' : ''})`,
    '',
    'Exported by `epg export` from the EPG TypeScript implementation (pixel-space generative pre-training, arXiv 2510.12586).',
    '',
    `- Training data: ${c.source.data ?? 'unknown (an official checkpoint)'}; ${c.numClasses} classes (${c.classNames.slice(0, 10).join(', ')}${c.numClasses > 10 ? ', …' : ''}).`,
    `- Training: ${c.source.step !== null ? `${c.source.step} fine-tuning steps` : 'steps unknown'} (checkpoint ${c.source.checkpoint}); ${c.weights === 'ema' ? 'EMA' : 'online'} weights.`,
    `- Sampler in the graph: ${c.sampler.name === 'onestep' ? `one-step consistency sampling, ${c.sampler.consistency?.formula ?? ''}${c.sampler.nfePerImage > 1 ? `, CFG ${c.sampler.cfgScale}` : ''}` : `Heun, ${c.sampler.steps} σ points, CFG ${c.sampler.cfgScale} on σ ∈ (${c.sampler.guidanceInterval[0]}, ${c.sampler.guidanceInterval[1]}]·H/64`}; ${c.sampler.nfePerImage} network evaluations per image.`,
    `- FID: ${o.fid !== undefined ? `${o.fid} (measured before export)` : 'not measured at export'}.`,
    '',
    `Use: feed \`noise\` [batch, ${c.channels}, ${c.imageSize}, ${c.imageSize}] float32 drawn from N(0, 1) and \`labels\` [batch] int64`,
    `(0…${c.numClasses - 1}; ${c.nullClass} is the unconditional class); \`images\` comes back in [0, 1], NCHW.`,
    'The folder is what `epg serve` and the browser demo load; config.json describes everything above.',
    '',
  ];
  return lines.join('\n');
}

export function exportModel(o: ExportOptions): ExportReport {
  const t0 = performance.now();
  const log = o.log ?? (() => undefined);
  const format = o.format ?? 'onnx';
  if (format !== 'onnx' && format !== 'safetensors')
    throw new RangeError(`export: --format must be onnx or safetensors, got '${String(format)}'`);
  if (o.sampler !== undefined && o.sampler !== 'onestep' && o.sampler !== 'heun')
    throw new RangeError(`export: --sampler must be onestep or heun, got '${String(o.sampler)}'`);
  const checkpointPath = resolve(o.checkpoint);
  if (!existsSync(checkpointPath))
    throw new Error(
      `export: checkpoint '${o.checkpoint}' does not exist (pass a run folder or a checkpoint-*.safetensors file)`,
    );
  const meta = o.checkpoint.endsWith('.pt') ? null : readCheckpointMeta(checkpointPath);
  if (meta?.meta.stage === 'pretrain')
    throw new Error(`export: ${meta.path} is a pre-training checkpoint; export a dm or cm fine-tuning checkpoint`);
  const modelFile = format === 'onnx' ? 'model.onnx' : 'model.safetensors';
  const files = [modelFile, 'config.json', 'MODEL_CARD.md'];
  const { staging, created } = prepareOut(o.out, o.overwrite ?? false, files);
  let done = false;
  try {
    const { model, stage, norm, cmPrecond } = loadModel(
      {
        checkpoint: checkpointPath,
        noEma: o.noEma,
        ...(o.preset ? { preset: o.preset } : {}),
        ...(o.numClasses ? { numClasses: o.numClasses } : {}),
      },
      'cpu',
    );
    try {
      model.eval().requiresGrad_(false);
      const sampler: ExportSampler = o.sampler ?? (stage === 'cm' ? 'onestep' : 'heun');
      const H = model.config.imageSize;
      const C = model.config.inChannels;
      const settings: SamplerSettings = {
        sampler,
        steps: o.steps ?? (sampler === 'onestep' ? 1 : 32),
        cmPrecond,
        cfgScale: o.cfgScale ?? 1,
        guidanceInterval: o.guidanceInterval ?? GUIDANCE_INTERVAL,
        appendZero: o.appendZero ?? false,
        clamp: clampRange(norm, C),
      };
      if (sampler === 'heun' && !(Number.isInteger(settings.steps) && settings.steps >= 2))
        throw new RangeError(`export: --steps must be an integer ≥ 2 for heun, got ${settings.steps}`);
      let nfePerImage = 0;
      // The time embedding caches its frequencies on its first call (models/vit.ts): made before the
      // traces, they are one constant of the graph and every trace makes the same operator calls.
      torch.tidy(() => model.timeEmbedding(torch.zeros([1], { device: model.pos_embed.device })));
      const sample = samplerFunction(model, { ...settings, onNfe: (n) => (nfePerImage = n) });
      const noiseScale = SIGMA_MAX * resolutionShift(H);
      const n = perChannel(norm, C);
      // images = clamp(x·2·std + mean, 0, 1): the inverse of the normalisation (spec §1), in the graph.
      const toImages = (x: Tensor): Tensor =>
        torch.tidy(() => {
          const scale = torch.tensor(n.std.map((s) => 2 * s)).view(1, C, 1, 1);
          const mean = torch.tensor(n.mean).view(1, C, 1, 1);
          return x.mul(scale).add(mean).clamp(0, 1);
        });
      const graphFn = ([noise, labels]: Tensor[]): Tensor[] =>
        torch.tidy(() => [toImages(sample(noise!.mul(noiseScale), labels!))]);
      const weights = o.noEma ? 'online' : 'ema';
      const numClasses = model.config.numClasses;
      const sigmas = sampler === 'onestep' ? [noiseScale] : [...samplerSigmas(settings, H)];
      const classNames = o.classNames ?? defaultClassNames(meta?.meta.config.data.source ?? null, numClasses);
      if (classNames.length !== numClasses)
        throw new RangeError(`export: ${classNames.length} class names for a model of ${numClasses} classes`);

      let modelBytes: number;
      let opset: number | undefined;
      if (format === 'onnx') {
        const gen = new torch.Generator('cpu', 0);
        try {
          const rep = torch.onnx.exportOnnx(graphFn, join(staging, modelFile), {
            exampleInputs: (b) => [
              torch.randn([b, C, H, H], { generator: gen }),
              torch.randint(0, numClasses, [b], { generator: gen }),
            ],
            inputNames: ['noise', 'labels'],
            outputNames: ['images'],
            namedTensors: [...model.namedParameters(), ...model.namedBuffers()],
            docString: `EPG ${meta?.meta.config.preset ?? ''} ${stage} with the ${sampler} sampler; see config.json`,
            metadata: { 'epg.sampler': sampler, 'epg.steps': String(settings.steps), 'epg.weights': weights },
          });
          modelBytes = rep.bytes;
          opset = torch.onnx.OPSET;
          log(
            `traced ${rep.mappedCalls + rep.foldedCalls} operator calls: ${rep.nodes} ONNX nodes, ${rep.initializers} initializers`,
          );
        } finally {
          gen.dispose();
        }
      } else {
        // Run the sampler once so the NFE is known, then write the weights.
        torch.inferenceMode(() =>
          torch.tidy(() => graphFn([torch.zeros([1, C, H, H]), torch.zeros([1], { dtype: 'int64' })])),
        );
        torch.io.saveSafetensors(join(staging, modelFile), model.stateDict(), { format: 'epg-export-v1' });
        modelBytes = statSync(join(staging, modelFile)).size;
      }

      const config: ExportConfig = {
        format: 'epg-export-v1',
        model: { file: modelFile, format, ...(opset !== undefined ? { opset } : {}) },
        preset: meta?.meta.config.preset ?? o.preset ?? 'unknown',
        stage,
        imageSize: H,
        channels: C,
        numClasses,
        nullClass: model.nullClass,
        classNames,
        normalization: {
          name: norm,
          mean: n.mean,
          std: n.std,
          forward: 'x = (pixel/255 − mean) / (2·std)',
          inverse: 'pixel/255 = clamp(x·2·std + mean, 0, 1) (applied inside the ONNX graph)',
        },
        sampler: {
          name: sampler,
          steps: sampler === 'onestep' ? 1 : settings.steps,
          nfePerImage,
          cfgScale: settings.cfgScale,
          guidanceInterval: [settings.guidanceInterval[0], settings.guidanceInterval[1]],
          sigmas,
          noiseScale,
          ...(sampler === 'onestep'
            ? {
                consistency: {
                  precond: cmPrecond,
                  formula:
                    cmPrecond === 'edm'
                      ? 'f(x, σ) = c_skip·x + c_out·F(c_in·x, 250 ln σ, y), c_skip = σ_d²/((σ−σ_min′)² + σ_d²), ' +
                        'c_out = (σ−σ_min′)·σ_d/√(σ² + σ_d²), σ_d = 0.5'
                      : 'f(x, σ) = c_skip·x + (1 − c_skip)·F(c_in·x, 250 ln σ, y), c_skip = σ_min′²/((σ−σ_min′)² + σ_min′²)',
                },
              }
            : {}),
        },
        weights,
        inputs: [
          {
            name: 'noise',
            dtype: 'float32',
            shape: ['batch', C, H, H],
            meaning: 'N(0, 1) noise; the graph scales it by noiseScale',
          },
          {
            name: 'labels',
            dtype: 'int64',
            shape: ['batch'],
            meaning: `class index 0…${numClasses - 1}, ${model.nullClass}: unconditional`,
          },
        ],
        outputs: [{ name: 'images', dtype: 'float32', shape: ['batch', C, H, H], meaning: 'images in [0, 1], NCHW' }],
        source: {
          checkpoint: meta?.path ?? checkpointPath,
          step: meta?.meta.step ?? null,
          data: meta?.meta.config.data.source ?? null,
          trainingSteps: meta?.meta.config.steps ?? null,
        },
        fid: o.fid ?? null,
        exportedAt: new Date().toISOString(),
      };
      writeFileSync(join(staging, 'config.json'), JSON.stringify(config, null, 2) + '\n');
      writeFileSync(join(staging, 'MODEL_CARD.md'), modelCard(config, o));
      // Move into place: the model last, so a folder with a model always has its config.
      const written = readdirSync(staging);
      for (const f of [
        ...written.filter((f) => !f.startsWith('model.')),
        ...written.filter((f) => f.startsWith('model.')),
      ])
        renameSync(join(staging, f), join(o.out, f));
      done = true;
      return {
        out: o.out,
        files: written.sort(),
        modelFile: join(o.out, modelFile),
        modelBytes,
        seconds: (performance.now() - t0) / 1000,
        nfePerImage,
      };
    } finally {
      model.dispose();
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
    // A failed export into a folder it created removes that folder too.
    if (!done && created) rmSync(o.out, { recursive: true, force: true });
  }
}
