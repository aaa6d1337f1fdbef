#!/usr/bin/env node
// The `epg` command line: prepare | pretrain | finetune | sample | eval | sweep | phema | export | serve | demo | experiment |
// info | launch.
// Each command is one flag table (torch.cli: flag, type, default, help; the
// --help text is generated from it) and one function; COMMANDS lists them.
// Training commands take --config (a file or a shipped preset name) and
// type-checked --set key=value overrides.
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';
import { cli } from '@epg/torch';

import { ImageFolder, prepareShards } from './data/index.js';
import { runDemo } from './demo.js';
import { EVERY_SIGMA, isGuidanceInterval } from './diffusion/samplers.js';
import { runEval } from './eval/index.js';
import {
  EXPERIMENTS_DIR,
  ExperimentError,
  resolveExperimentFile,
  runExperiment,
  shippedExperiments,
} from './experiment.js';
import { exportModel } from './export.js';
import { runPhema } from './phema.js';
import { serve } from './serve.js';
import { runSweep, type SweepWeights } from './sweep.js';
import { buildEncoder, buildEPG, ENCODER_PRESETS, PRESETS } from './models/presets.js';
import { sampleFromCheckpoint, type SamplerName } from './sample.js';
import { ConfigError, configKeys, loadConfig, type TrainConfig } from './train/config.js';
import { createDataPipeline, openDataset } from './train/data.js';
import { interruptedExitCode, train, TrainingInterrupted } from './train/trainer.js';

const { defineCommand, formatHelp, formatProgramHelp, parseCommand, UsageError } = cli;

/** One epg command: its flag table and the function that runs it with the parsed values. */
interface EpgCommand {
  command: cli.Command;
  run(argv: string[]): Promise<number>;
}

/** Pairs a table with its function; --help and usage errors are handled here, once for all commands. */
function epgCommand<const F extends cli.Flags>(
  command: cli.Command<F>,
  run: (p: cli.Parsed<F>, argv: string[]) => Promise<number> | number,
): EpgCommand {
  return {
    command,
    run: async (argv) => {
      const p = parseCommand(command, argv);
      if (p.help) {
        console.log(formatHelp(command));
        return 0;
      }
      return run(p, argv);
    },
  };
}

const CONFIG_FLAGS = {
  config: {
    type: 'string',
    value: 'FILE|PRESET',
    help: 'a config file or a shipped preset name (packages/epg/configs)',
  },
  set: { type: 'list', value: 'key=value', help: 'a type-checked config override' },
  resume: { type: 'string', value: 'RUN_DIR|CHECKPOINT', help: 'continue a run from its latest (or this) checkpoint' },
  'dry-run': { type: 'boolean', help: 'print the resolved config and exit' },
  keys: { type: 'boolean', help: 'list every config key with its default and exit' },
} as const satisfies cli.Flags;

const DEVICE_FLAG = {
  type: 'string',
  value: 'D',
  default: 'cpu',
  help: 'cpu, cuda, cuda:1, ...',
} as const satisfies cli.Flag;

/** The sampling flags `epg sample` and `epg sweep` share (one definition, one help text). */
const SAMPLING_FLAGS = {
  sampler: {
    type: 'string',
    choices: ['heun', 'euler', 'onestep', 'multistep'],
    help: 'default: heun for a diffusion model, onestep for a consistency model',
  },
  seed: { type: 'integer', default: 0, help: 'noise and label seed' },
  batch: { type: 'integer', default: 64, help: 'samples per batch' },
  device: DEVICE_FLAG,
} as const satisfies cli.Flags;

const info = epgCommand(
  defineCommand({
    name: 'epg info',
    summary: 'libtorch build, devices, presets and their parameter counts',
    flags: { json: { type: 'boolean', help: 'print JSON' } },
  }),
  ({ values }) => {
    const i = torch.info();
    const count = (build: () => torch.nn.Module): number => {
      const m = build();
      const n = m.numParameters();
      m.dispose();
      return n;
    };
    const presets = Object.fromEntries(
      Object.entries(PRESETS).map(([name, pr]) => [
        name,
        {
          params: count(() => buildEPG(name, { device: 'meta' })),
          imageSize: pr.imageSize,
          description: pr.description,
        },
      ]),
    );
    const encoders = Object.fromEntries(
      Object.keys(ENCODER_PRESETS).map((name) => [
        name,
        { params: count(() => buildEncoder(name, { device: 'meta' })) },
      ]),
    );
    const devices = ['cpu', ...Array.from({ length: i.cudaDeviceCount }, (_, k) => `cuda:${k}`)];
    if (values.json) {
      console.log(
        JSON.stringify(
          {
            libtorch: i.torchVersion,
            cudaCompiled: i.cudaCompiled,
            cudaAvailable: i.cudaAvailable,
            devices,
            threads: i.numThreads,
            presets,
            encoders,
          },
          null,
          2,
        ),
      );
    } else {
      console.log(
        `libtorch ${i.torchVersion} (${i.cudaCompiled ? 'CUDA' : 'CPU'} addon); devices: ${devices.join(', ')}; ${i.numThreads} threads`,
      );
      for (const [n, v] of Object.entries({ ...presets, ...encoders }))
        console.log(`  ${n.padEnd(11)} ${(v.params / 1e6).toFixed(1).padStart(7)}M`);
    }
    return 0;
    return 0;
  },
);

const prepare = epgCommand(
  defineCommand({
    name: 'epg prepare',
    summary: 'pack a folder/zip of class folders into uint8 shards (ADM centre crop)',
    positionals: '<source folder or zip> <output folder>',
    maxPositionals: 2,
    flags: {
      resolution: { type: 'number', help: 'centre-crop every image to N×N (ADM); default: keep the size' },
      subdir: { type: 'string', value: 'S', help: 'the class folders are under S (e.g. train)' },
      'shard-size': { type: 'number', help: 'images per shard file (default 4096)' },
      overwrite: { type: 'boolean', help: 'replace an existing output folder' },
    },
  }),
  async ({ values, positionals }) => {
    const [src, out] = positionals;
    if (!src || !out) throw new UsageError('prepare needs a source and an output folder');
    const { resolution, subdir } = values;
    const shardSize = values['shard-size'];
    const ds = ImageFolder.open({ root: src, ...(subdir ? { subdir } : {}), ...(resolution ? { resolution } : {}) });
    const idx = await prepareShards(ds, out, {
      ...(resolution ? { resolution } : {}),
      ...(shardSize ? { shardSize } : {}),
      overwrite: values.overwrite,
    });
    console.log(`prepared ${idx.count} images into ${out}`);
    return 0;
  },
);

const pretrain = epgCommand(
  defineCommand({
    name: 'epg pretrain',
    summary: 'stage 1: self-supervised pre-training of the encoder',
    flags: CONFIG_FLAGS,
    notes: 'presets: fashion-mnist-pretrain, cifar10-pretrain, imagenet256-pretrain (packages/epg/configs)',
  }),
  (p, argv) => trainCommand('pretrain', p, argv),
);

const finetune = epgCommand(
  defineCommand({
    name: 'epg finetune',
    summary: 'stage 2: end-to-end fine-tuning as a diffusion (dm) or consistency (cm) model',
    flags: {
      mode: {
        type: 'string',
        choices: ['dm', 'cm'],
        help: "diffusion or consistency fine-tuning (else the config's stage)",
      },
      ...CONFIG_FLAGS,
    },
    notes: `start from a pre-training checkpoint with --set finetune.init=RUN_DIR (else from scratch); consistency
tuning (cm) may also start from a diffusion run (ECT's recipe), with finetune.perceptual=PRETRAIN_RUN for L_aux
presets: fashion-mnist-dm, fashion-mnist-cm, cifar10-dm, cifar10-cm, imagenet256-dm, imagenet256-dm-1gpu (the same
on one 80 GB GPU: 64 × 16 accumulated), imagenet256-cm, imagenet512-dm`,
  }),
  (p, argv) => trainCommand('finetune', p, argv),
);

async function trainCommand(
  cmd: 'pretrain' | 'finetune',
  { values }: { values: cli.FlagValues<typeof CONFIG_FLAGS> & { mode?: 'dm' | 'cm' | undefined } },
  argv: string[],
): Promise<number> {
  if (values.keys) {
    for (const [k, v] of configKeys()) console.log(`${k} = ${JSON.stringify(v)}`);
    return 0;
  }
  const overrides = [...values.set];
  if (cmd === 'finetune') {
    if (values.mode) overrides.unshift(`stage=${values.mode}`);
  } else {
    overrides.unshift('stage=pretrain');
  }
  const cfg: TrainConfig = loadConfig(values.config, overrides);
  if (cmd === 'finetune' && cfg.stage === 'pretrain') throw new UsageError('finetune needs --mode dm or --mode cm');
  if (values['dry-run']) {
    console.log(JSON.stringify(cfg, null, 2));
    return 0;
  }
  const r = await train(cfg, { resume: values.resume, data: createDataPipeline });
  if (r.interrupted) {
    // Rank 0 writes checkpoints (the others have none to name). The same command with
    // --resume continues the run: run length and logging come from the command line.
    if (r.checkpoint)
      console.log(
        `${cfg.stage}: stopped by ${r.interrupted} at step ${r.step} of ${cfg.steps}; checkpoint ${r.checkpoint}\n` +
          `continue with: epg ${[cmd, ...withoutResume(argv), '--resume', r.runDir].map(shellQuote).join(' ')}`,
      );
    return interruptedExitCode(r.interrupted);
  }
  if (r.checkpoint)
    console.log(`${cfg.stage}: ${r.step} steps in ${r.seconds.toFixed(1)} s; checkpoint ${r.checkpoint}`);
  return 0;
}

const sample = epgCommand(
  defineCommand({
    name: 'epg sample',
    summary: 'draw samples from a checkpoint: PNGs, a grid and an ADM .npz',
    flags: {
      checkpoint: {
        type: 'string',
        value: 'RUN_DIR|FILE',
        help: 'a fine-tuning run or checkpoint, an official .pt, or a released folder',
      },
      out: { type: 'string', value: 'DIR', default: 'samples', help: 'where the PNGs, grid.png and samples.npz go' },
      num: { type: 'number', default: 64, help: 'samples to draw' },
      ...SAMPLING_FLAGS,
      steps: { type: 'number', default: 32, help: 'Heun/Euler steps' },
      cfg: { type: 'number', value: 'S', default: 1, help: 'classifier-free guidance scale' },
      interval: {
        type: 'string',
        value: 'LO,HI|all',
        help: 'guidance interval in unshifted σ, or all σ (one-step CFG needs all) (default 0.19,1.61)',
      },
      labels: { type: 'string', value: 'random|balanced|K', default: 'random', help: 'class labels of the samples' },
      preset: { type: 'string', value: 'P', help: 'the architecture of an official .pt checkpoint (e.g. EPG-XL/16)' },
      'no-ema': { type: 'boolean', help: 'use the online weights instead of the EMA ones' },
      'append-zero': { type: 'boolean', help: "append σ = 0 to the Heun/Euler grid (EDM's convention)" },
      'no-png': { type: 'boolean', help: 'write only grid.png and samples.npz, not one PNG per sample' },
      'cuda-graph': {
        type: 'boolean',
        help: 'capture the sampler for one batch as a CUDA graph and replay it for the others',
      },
    },
    notes: `--checkpoint may be a released folder (EPG-XL16-imagenet256/ with nnet_ema.pth): preset from its name or shapes.
Sample i's label and noise depend only on (--seed, i); under epg launch the ranks share the indices and
rank 0 writes one .npz in index order.`,
  }),
  ({ values: v }) => {
    if (!v.checkpoint) throw new UsageError('sample needs --checkpoint RUN_DIR|FILE');
    const interval = v.interval === undefined ? undefined : guidanceInterval(v.interval);
    const r = sampleFromCheckpoint({
      checkpoint: v.checkpoint,
      out: v.out,
      num: v.num,
      ...(v.sampler ? { sampler: v.sampler as SamplerName } : {}),
      steps: v.steps,
      cfgScale: v.cfg,
      ...(interval ? { guidanceInterval: interval } : {}),
      labels: v.labels === 'random' || v.labels === 'balanced' ? v.labels : Number(v.labels),
      seed: v.seed,
      batchSize: v.batch,
      device: v.device as torch.Device,
      noEma: v['no-ema'],
      appendZero: v['append-zero'],
      writePngs: !v['no-png'],
      cudaGraph: v['cuda-graph'],
      ...(v.preset ? { preset: v.preset } : {}),
      log: (l) => process.stderr.write(`${l}\n`),
    });
    console.log(
      `${r.num} samples with ${r.sampler}: ${r.nfePerImage} NFE per image, ${r.seconds.toFixed(1)} s; grid ${r.grid}, npz ${r.npz}`,
    );
    return 0;
  },
);

const evaluate = epgCommand(
  defineCommand({
    name: 'epg eval',
    summary: 'FID / precision / recall of samples against reference statistics',
    flags: {
      samples: { type: 'string', value: 'DIR|NPZ', help: 'a folder of images or an .npz of samples' },
      ref: { type: 'string', value: 'STATS.npz', help: 'reference statistics (ADM or ours)' },
      'ref-dataset': {
        type: 'string',
        value: 'fashion-mnist|cifar10|PATH',
        help: 'compute the reference statistics from a dataset (cached)',
      },
      split: {
        type: 'string',
        choices: ['train', 'test'],
        help: 'the split of a built-in --ref-dataset (default train)',
      },
      num: { type: 'number', help: 'use the first N samples' },
      preprocess: { type: 'string', value: 'clean-fid|pytorch-fid|adm', help: 'the Inception preprocessing' },
      kid: { type: 'boolean', help: 'also the kernel inception distance' },
      device: DEVICE_FLAG,
      json: { type: 'boolean', help: 'print JSON' },
    },
  }),
  async ({ values: v }) => {
    const { samples, split } = v;
    if (!samples) throw new UsageError('eval needs --samples DIR|NPZ');
    const refDs = v['ref-dataset'];
    // --split picks a split of the built-in datasets; a folder or zip is used whole.
    const named = refDs === 'fashion-mnist' || refDs === 'cifar10';
    if (split !== undefined && !named)
      throw new UsageError('--split applies to --ref-dataset fashion-mnist or cifar10 (a folder or zip is used whole)');
    const r = await runEval({
      samples,
      ...(v.ref ? { ref: v.ref } : {}),
      ...(refDs
        ? {
            refDataset: {
              source: openDataset({
                source: refDs,
                subdir: '',
                split: split ?? 'train',
                normalization: 'simple',
                workers: 0,
              }),
              // The split is part of the statistics' cache key.
              name: named ? `${refDs}-${split ?? 'train'}` : refDs,
            },
          }
        : {}),
      ...(v.num ? { numSamples: v.num } : {}),
      ...(v.preprocess ? { preprocess: v.preprocess as 'clean-fid' } : {}),
      kid: v.kid,
      device: v.device as torch.Device,
      log: (l) => process.stderr.write(`${l}\n`),
    });
    if (v.json) console.log(JSON.stringify(r, null, 2));
    else
      console.log(
        `${r.label}: ${r.fid.toFixed(3)}` +
          (r.precision !== null ? `  precision ${r.precision.toFixed(3)}  recall ${r.recall!.toFixed(3)}` : '') +
          (r.kid ? `  KID ${r.kid.mean.toExponential(3)} ± ${r.kid.std.toExponential(2)}` : '') +
          `  (${r.numSamples} samples, ${r.preprocess})`,
      );
    return 0;
  },
);

const demo = epgCommand(
  defineCommand({
    name: 'epg demo',
    summary: 'the whole two-stage pipeline on Fashion-MNIST (CPU) or CIFAR-10 (--gpu)',
    flags: {
      quick: { type: 'boolean', help: 'a minute-long smoke run' },
      gpu: { type: 'boolean', help: 'CIFAR-10 on CUDA' },
      baseline: { type: 'boolean', help: 'also a diffusion model from scratch with the same budget' },
      'no-eval': { type: 'boolean', help: 'skip FID' },
      out: { type: 'string', value: 'DIR', default: 'demo-output', help: 'where the runs and report.md go' },
      set: {
        type: 'list',
        value: 'key=value',
        help: 'a config override for every training stage (e.g. device=cuda:1, precision=fp32, cudaGraph=on)',
      },
    },
    notes:
      'Runs pre-training, diffusion and consistency fine-tuning, sampling and evaluation, and writes DIR/report.md.',
  }),
  async ({ values: v }) => {
    const r = await runDemo({
      out: v.out,
      set: v.set,
      quick: v.quick,
      gpu: v.gpu,
      baseline: v.baseline,
      ...(v['no-eval'] ? { evaluate: false } : {}),
    });
    console.log(`demo finished in ${(r.seconds / 60).toFixed(1)} min; report: ${r.report}`);
    return 0;
  },
);

const experiment = epgCommand(
  defineCommand({
    name: 'epg experiment',
    summary: 'train, sample and evaluate a declared set of arms over seeds; resumable',
    positionals: '<name|file.json>',
    maxPositionals: 1,
    flags: {
      out: {
        type: 'string',
        value: 'DIR',
        help: 'where runs, samples and results go (default experiments-output/NAME)',
      },
      device: {
        type: 'string',
        value: 'D',
        default: 'cpu',
        help: "device for sampling and evaluation (training: each run's config)",
      },
      report: {
        type: 'boolean',
        help: 'only write results.md and the plots from what DIR/results.json holds so far',
      },
      reuse: {
        type: 'list',
        value: 'DIR',
        help: "another experiment's output folder whose identical runs (same config and seed) to use, not retrain",
      },
    },
    notes:
      `Shipped experiments (packages/epg/experiments): ${shippedExperiments().join(', ')}.\n` +
      'Writes DIR/results.json (the state a rerun continues from), results.md and FID plots against images seen,\n' +
      'counted training compute and wall-clock. Stopping it (Ctrl-C) writes the report of what finished;\n' +
      'rerunning continues where it stopped.',
  }),
  async ({ values: v, positionals }) => {
    const [name] = positionals;
    if (name === undefined) throw new UsageError('experiment needs a shipped experiment name or a .json file');
    await runExperiment({
      file: resolveExperimentFile(name, EXPERIMENTS_DIR),
      ...(v.out ? { out: v.out } : {}),
      device: v.device as torch.Device,
      reportOnly: v.report,
      reuse: v.reuse,
    });
    return 0;
  },
);

/** --interval LO,HI (unshifted σ, LO < HI) or all. */
function guidanceInterval(text: string): readonly [number, number] {
  if (text.trim() === 'all') return EVERY_SIGMA;
  const xs = text.split(',').map((x) => Number(x.trim()));
  if (!isGuidanceInterval(xs))
    throw new UsageError(`--interval expects LO,HI (unshifted σ, 0 ≤ LO < HI), e.g. 0.19,1.61, or all; got '${text}'`);
  return xs;
}

/** A comma-separated list of numbers ('1,1.5,2'), each checked. */
function numberList(flag: string, text: string | undefined, fallback: number[]): number[] {
  if (text === undefined) return fallback;
  const xs = text.split(',').map((x) => Number(x.trim()));
  if (xs.length === 0 || xs.some((x) => !Number.isFinite(x)))
    throw new UsageError(`--${flag} expects comma-separated numbers (e.g. 1,1.5,2), got '${text}'`);
  return xs;
}

const sweep = epgCommand(
  defineCommand({
    name: 'epg sweep',
    summary: 'sample and evaluate a checkpoint over CFG scales, guidance intervals, steps and EMA/online weights',
    flags: {
      checkpoint: { type: 'string', value: 'RUN_DIR|FILE', help: 'a fine-tuning run or checkpoint (required)' },
      out: { type: 'string', value: 'DIR', default: 'sweep-output', help: 'samples, sweep.json, sweep.md, sweep.png' },
      num: { type: 'integer', default: 1000, help: 'samples per setting' },
      'ref-dataset': {
        type: 'string',
        value: 'NAME|DIR',
        help: 'the reference images: fashion-mnist, cifar10, or a folder/zip (required)',
      },
      split: { type: 'string', choices: ['train', 'test'], default: 'test', help: 'the split of a built-in dataset' },
      'ref-images': { type: 'integer', help: 'use the first N reference images (default all)' },
      ...SAMPLING_FLAGS,
      seed: { ...SAMPLING_FLAGS.seed, help: 'noise and label seed (the same for every setting)' },
      cfg: { type: 'string', value: 'S,S,...', help: 'CFG scales (default 1)' },
      steps: { type: 'string', value: 'N,N,...', help: 'Heun/Euler steps (default 32)' },
      interval: {
        type: 'list',
        value: 'LO,HI|all',
        help: 'a guidance interval in unshifted σ, or all σ; repeat for several (default 0.19,1.61)',
      },
      weights: { type: 'string', value: 'ema,online', default: 'ema', help: 'which weights: ema, online or both' },
    },
    notes:
      'Every setting is sampled with the same seed and class-balanced labels, evaluated against one reference (its\n' +
      'statistics cached) and added to DIR/sweep.json; a rerun skips the settings already there.',
  }),
  async ({ values: v }) => {
    if (!v.checkpoint) throw new UsageError('sweep needs --checkpoint RUN_DIR|FILE');
    const refName = v['ref-dataset'];
    if (!refName) throw new UsageError('sweep needs --ref-dataset fashion-mnist|cifar10|DIR');
    const builtIn = refName === 'fashion-mnist' || refName === 'cifar10';
    // The sweep names 'all' as null (its folders read "intall").
    const intervals = (v.interval.length ? v.interval : ['0.19,1.61']).map((text): [number, number] | null =>
      text === 'all' ? null : [...guidanceInterval(text)],
    );
    const weights = v.weights.split(',').map((w) => w.trim());
    for (const w of weights)
      if (w !== 'ema' && w !== 'online') throw new UsageError(`--weights takes ema, online or both, got '${w}'`);
    const source = openDataset({
      source: refName,
      subdir: '',
      split: builtIn ? v.split : 'train',
      normalization: 'simple',
      workers: 0,
    });
    try {
      const r = await runSweep({
        checkpoint: v.checkpoint,
        out: v.out,
        num: v.num,
        reference: {
          source,
          name: builtIn ? `${refName}-${v.split}` : refName,
          ...(v['ref-images'] !== undefined ? { numImages: v['ref-images'] } : {}),
        },
        ...(v.sampler ? { sampler: v.sampler as SamplerName } : {}),
        cfg: numberList('cfg', v.cfg, [1]),
        steps: numberList('steps', v.steps, [32]),
        intervals,
        weights: weights as SweepWeights[],
        seed: v.seed,
        batchSize: v.batch,
        device: v.device as torch.Device,
        log: (l) => process.stderr.write(`${l}\n`),
      });
      const best = [...r.rows].sort((a, b) => a.fid - b.fid)[0];
      console.log(
        `${r.rows.length} settings; best ${best ? `${best.name}: ${best.label} ${best.fid.toFixed(2)}` : '—'}; table: ${r.table}`,
      );
    } finally {
      source.close?.();
    }
    return 0;
  },
);

const exportCmd = epgCommand(
  defineCommand({
    name: 'epg export',
    summary: 'a trained generator as ONNX (sampler inside) or safetensors, with config.json and a model card',
    positionals: '<run dir|checkpoint>',
    maxPositionals: 1,
    flags: {
      out: { type: 'string', value: 'DIR', help: 'the export folder (required)' },
      format: { type: 'string', choices: ['onnx', 'safetensors'], default: 'onnx', help: 'the model file' },
      sampler: {
        type: 'string',
        choices: ['onestep', 'heun'],
        help: 'the sampler inside the graph (default: onestep for a cm checkpoint, heun for dm)',
      },
      steps: { type: 'integer', help: 'heun: σ points, unrolled (default 32)' },
      cfg: { type: 'number', value: 'S', help: 'classifier-free guidance scale (one step and CFG: 2 NFE per image)' },
      interval: {
        type: 'string',
        value: 'LO,HI|all',
        help: 'guidance interval in unshifted σ, or all σ (one-step CFG needs all) (default 0.19,1.61)',
      },
      'append-zero': { type: 'boolean', help: "heun: append σ = 0 to the grid (EDM's convention)" },
      'no-ema': { type: 'boolean', help: 'export the online weights instead of the EMA ones' },
      fid: { type: 'number', value: 'F', help: 'an FID measured for this model, for the model card' },
      'class-names': { type: 'string', value: 'A,B,...', help: 'class names for config.json' },
      preset: { type: 'string', value: 'P', help: 'the preset of an official .pt checkpoint' },
      'num-classes': { type: 'integer', help: 'the class count of an official .pt checkpoint' },
      overwrite: { type: 'boolean', help: 'replace the files of an earlier export in DIR' },
    },
    notes:
      'Writes DIR/model.onnx (N(0,1) noise and labels in, images in [0,1] out), DIR/config.json and DIR/MODEL_CARD.md;\n' +
      '--format safetensors writes model.safetensors (the weights) instead of the graph. A failed export leaves nothing.',
  }),
  ({ values: v, positionals }) => {
    const [checkpoint] = positionals;
    if (checkpoint === undefined) throw new UsageError('export needs one RUN_DIR or CHECKPOINT');
    if (!v.out) throw new UsageError('export needs --out DIR');
    const interval = v.interval === undefined ? undefined : guidanceInterval(v.interval);
    const r = exportModel({
      checkpoint,
      out: v.out,
      format: v.format as 'onnx' | 'safetensors',
      ...(v.sampler ? { sampler: v.sampler as 'onestep' | 'heun' } : {}),
      ...(v.steps !== undefined ? { steps: v.steps } : {}),
      ...(v.cfg !== undefined ? { cfgScale: v.cfg } : {}),
      ...(v.fid !== undefined ? { fid: v.fid } : {}),
      ...(v.preset ? { preset: v.preset } : {}),
      ...(v['num-classes'] !== undefined ? { numClasses: v['num-classes'] } : {}),
      ...(interval ? { guidanceInterval: interval } : {}),
      ...(v['class-names'] ? { classNames: v['class-names'].split(',') } : {}),
      appendZero: v['append-zero'],
      noEma: v['no-ema'],
      overwrite: v.overwrite,
      log: (l) => process.stderr.write(`${l}\n`),
    });
    console.log(
      `exported ${r.modelFile} (${(r.modelBytes / 1e6).toFixed(1)} MB, ${r.nfePerImage} NFE per image) in ${r.seconds.toFixed(1)} s; files: ${r.files.join(', ')}`,
    );
    return 0;
  },
);

const serveCmd = epgCommand(
  defineCommand({
    name: 'epg serve',
    summary: 'the browser demo with an exported model, on this machine',
    positionals: '<export dir>',
    maxPositionals: 1,
    flags: {
      port: { type: 'integer', default: 8080, help: 'the port (0 picks a free one)' },
      host: { type: 'string', value: 'H', help: 'the address to listen on (default 127.0.0.1)' },
    },
    notes: 'Serves the page (packages/web; npm run setup:web builds it) and the folder written by epg export.',
  }),
  async ({ values: v, positionals }) => {
    const [dir] = positionals;
    if (dir === undefined) throw new UsageError('serve needs the folder written by epg export');
    if (!(v.port >= 0 && v.port < 65536)) throw new UsageError(`--port must be in 0…65535, got ${v.port}`);
    const { server, url } = await serve({ dir, port: v.port, ...(v.host ? { host: v.host } : {}) });
    console.log(`serving ${dir} at ${url} (Ctrl-C stops)`);
    await new Promise<void>((done) => {
      const stop = (): void => {
        server.close(() => done());
        server.closeAllConnections();
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    return 0;
  },
);

/** epg launch [options] <command ...>: an epg command, a .js file or a program on every rank. */
const launch = epgCommand(
  {
    ...torch.dist.launchCommand('epg'),
    notes:
      torch.dist.launchCommand('epg').notes +
      '\n<command> is an epg command (e.g. pretrain --config cifar10-pretrain), a .js file or a program; training\n' +
      'commands then train data-parallel (Gloo on CPU, NCCL on GPUs, one GPU per process), and --set batchSize is\n' +
      'the global batch.',
  },
  async (_, argv) => {
    const parsed = torch.dist.parseLaunchArgs(argv)!;
    const [first, ...rest] = parsed.command;
    // epg commands run through this CLI on the same Node.
    const command =
      first !== 'launch' && Object.hasOwn(COMMANDS, first!)
        ? [fileURLToPath(import.meta.url), first!, ...rest]
        : parsed.command;
    return (await torch.dist.launch({ ...parsed, command })).exitCode;
  },
);

const phema = epgCommand(
  defineCommand({
    name: 'epg phema',
    summary: "post-hoc EMA: the EMA of any σ_rel, reconstructed from a run's power-function EMA snapshots",
    positionals: '<run folder>',
    maxPositionals: 1,
    flags: {
      std: { type: 'string', value: 'S,S,...', help: 'the σ_rel to reconstruct, each in (0, 0.2887) (required)' },
      step: {
        type: 'integer',
        value: 'N',
        help: "the training step to reconstruct at: a snapshot's (default the last)",
      },
      out: {
        type: 'string',
        value: 'FILE|DIR',
        help: 'a .safetensors file (one σ_rel) or a folder (default RUN/posthoc/phema-<step>-<σ_rel>.safetensors)',
      },
      'in-std': { type: 'string', value: 'S,S,...', help: "use only the snapshots' shadows of these tracked σ_rel" },
    },
    notes: `The run must be a dm or cm fine-tuning run trained with --set phema.stds=0.05,0.1 (EDM2's choice), which
writes phema-<step>.safetensors every phema.snapshotEvery steps. Each output is a checkpoint with the
reconstructed weights as its EMA weights: epg sample / sweep --checkpoint FILE and finetune.init read it.`,
  }),
  ({ values: v, positionals }) => {
    const [runDir] = positionals;
    if (!runDir) throw new UsageError('phema needs a run folder: epg phema RUN_DIR --std 0.08');
    if (!v.std) throw new UsageError('phema needs --std S[,S,...]: the σ_rel to reconstruct, e.g. --std 0.08');
    const stds = numberList('std', v.std, []);
    for (const s of stds)
      if (!(s > 0 && s < torch.optim.MAX_STD_REL))
        throw new UsageError(
          `--std ${s}: σ_rel must be in (0, ${torch.optim.MAX_STD_REL.toFixed(4)}) (a power-function EMA with γ > 0)`,
        );
    if (v.step !== undefined && !(v.step >= 1)) throw new UsageError(`--step must be a positive step, got ${v.step}`);
    const files = runPhema({
      runDir,
      stds,
      ...(v.step !== undefined ? { step: v.step } : {}),
      ...(v['in-std'] !== undefined ? { inputStds: numberList('in-std', v['in-std'], []) } : {}),
      ...(v.out !== undefined ? { out: v.out } : {}),
      log: (l) => process.stderr.write(`${l}\n`),
    });
    console.log(files.join('\n'));
    return 0;
  },
);

/** Every command, in the order of the program's help. A new command: one table and one function, listed here. */
const COMMANDS: Record<string, EpgCommand> = {
  info,
  prepare,
  pretrain,
  finetune,
  sample,
  eval: evaluate,
  sweep,
  phema,
  export: exportCmd,
  serve: serveCmd,
  demo,
  experiment,
  launch,
};

/** Training and sampling are data-parallel; the other commands would run once per rank, writing the same files. */
const DATA_PARALLEL = new Set(['pretrain', 'finetune', 'sample', 'info']);

function helpOf(cmd: string | undefined): string {
  const c = cmd === undefined ? undefined : COMMANDS[cmd];
  return c
    ? formatHelp(c.command)
    : formatProgramHelp(
        'epg',
        Object.values(COMMANDS).map((c) => c.command),
      );
}

/** The arguments without any --resume (and its value). */
function withoutResume(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--resume') i++;
    else if (!argv[i]!.startsWith('--resume=')) out.push(argv[i]!);
  }
  return out;
}

/** An argument as a POSIX shell reads it back. */
function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(helpOf(undefined));
    return cmd === undefined ? 2 : 0;
  }
  const command = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (command === undefined) throw new UsageError(`unknown command '${cmd}'`);
  const ranks = torch.dist.distEnv()?.worldSize ?? 1;
  if (ranks > 1 && !DATA_PARALLEL.has(cmd))
    throw new UsageError(
      `epg ${cmd} runs in one process (WORLD_SIZE is ${ranks}); only pretrain, finetune and sample run under epg launch`,
    );
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof UsageError) {
      console.error(`epg: ${e.message}\n`);
      console.error(helpOf(process.argv[2]));
      process.exitCode = 2;
    } else if (e instanceof TrainingInterrupted) {
      console.error(`epg: ${e.message}`);
      process.exitCode = interruptedExitCode(e.signal);
    } else if (e instanceof ConfigError || e instanceof ExperimentError) {
      console.error(`epg: ${e.message}`);
      process.exitCode = 2;
    } else {
      console.error(`epg: ${e instanceof Error ? e.message : String(e)}`);
      if (process.env.EPG_DEBUG) console.error(e);
      process.exitCode = 1;
    }
  },
);
