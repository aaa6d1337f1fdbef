#!/usr/bin/env node
// The `epg` command line: prepare | pretrain | finetune | sample | eval | demo | info | launch.
// Every command has --help; training commands take --config (a file or a
// shipped preset name) and type-checked --set key=value overrides.
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';

import { ImageFolder, prepareShards } from './data/index.js';
import { runDemo } from './demo.js';
import { runEval } from './eval/index.js';
import { buildEncoder, buildEPG, ENCODER_PRESETS, PRESETS } from './models/presets.js';
import { sampleFromCheckpoint, type SamplerName } from './sample.js';
import { ConfigError, configKeys, loadConfig, type TrainConfig } from './train/config.js';
import { createDataPipeline, openDataset } from './train/data.js';
import { interruptedExitCode, train, TrainingInterrupted } from './train/trainer.js';

const EPG_COMMANDS = new Set(['prepare', 'pretrain', 'finetune', 'sample', 'eval', 'demo', 'info']);

/** A CLI usage error: exit code 2 and the command's help. */
class UsageError extends Error {}

interface Parsed {
  positionals: string[];
  values: Map<string, string[]>;
  flags: Set<string>;
}

function parse(argv: string[], valueFlags: readonly string[], boolFlags: readonly string[]): Parsed {
  const out: Parsed = { positionals: [], values: new Map(), flags: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) {
      out.positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    if (boolFlags.includes(name)) {
      out.flags.add(name);
    } else if (valueFlags.includes(name)) {
      const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new UsageError(`--${name} needs a value`);
      out.values.set(name, [...(out.values.get(name) ?? []), v]);
    } else {
      throw new UsageError(`unknown option --${name}`);
    }
  }
  return out;
}

const one = (p: Parsed, name: string): string | undefined => p.values.get(name)?.at(-1);

function num(p: Parsed, name: string, fallback?: number): number | undefined {
  const v = one(p, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got '${v}'`);
  return n;
}

const HELP: Record<string, string> = {
  main: `usage: epg <command> [options]   (epg <command> --help for details)

  info       libtorch build, devices, presets and their parameter counts
  prepare    pack a folder/zip of class folders into uint8 shards (ADM centre crop)
  pretrain   stage 1: self-supervised pre-training of the encoder
  finetune   stage 2: end-to-end fine-tuning as a diffusion (dm) or consistency (cm) model
  sample     draw samples from a checkpoint: PNGs, a grid and an ADM .npz
  eval       FID / precision / recall of samples against reference statistics
  demo       the whole two-stage pipeline on Fashion-MNIST (CPU) or CIFAR-10 (--gpu)
  launch     run a command as a data-parallel job over several processes (torchrun's contract)`,
  launch:
    `usage: epg ${torch.dist.LAUNCH_USAGE}\n` +
    '  <command> is an epg command (e.g. pretrain --config cifar10-pretrain), a .js file or a program; training\n' +
    '  commands then train data-parallel (Gloo on CPU, NCCL on GPUs, one GPU per process), and --set batchSize is\n' +
    '  the global batch.',
  info: 'usage: epg info [--json]',
  prepare: `usage: epg prepare <source folder or zip> <output folder> [--resolution N] [--subdir S] [--shard-size N] [--overwrite]`,
  pretrain: `usage: epg pretrain [--config FILE|PRESET] [--set key=value ...] [--resume RUN_DIR|CHECKPOINT] [--dry-run]
  presets: fashion-mnist-pretrain, cifar10-pretrain, imagenet256-pretrain (packages/epg/configs)
  --dry-run prints the resolved config and exits; epg pretrain --keys lists every key`,
  finetune: `usage: epg finetune --mode dm|cm [--config FILE|PRESET] [--set key=value ...] [--resume ...] [--dry-run]
  start from a pre-training checkpoint with --set finetune.init=RUN_DIR (else from scratch); consistency
  tuning (cm) may also start from a diffusion run (ECT's recipe), with finetune.perceptual=PRETRAIN_RUN for L_aux
  presets: fashion-mnist-dm, fashion-mnist-cm, cifar10-dm, cifar10-cm, imagenet256-dm, imagenet256-cm, imagenet512-dm`,
  sample: `usage: epg sample --checkpoint RUN_DIR|FILE [--out DIR] [--num N] [--sampler heun|euler|onestep|multistep]
                  [--steps N] [--cfg S] [--interval LO,HI] [--labels random|balanced|K] [--seed N]
                  [--batch N] [--device D] [--no-ema] [--append-zero] [--cuda-graph] [--preset P (official .pt)]
  --cuda-graph: capture the sampler for one batch as a CUDA graph and replay it for the others
  --checkpoint may be a released folder (EPG-XL16-imagenet256/ with nnet_ema.pth): preset from its name or shapes.
  Sample i's label and noise depend only on (--seed, i); under epg launch the ranks share the indices and
  rank 0 writes one .npz in index order.`,
  eval: `usage: epg eval --samples DIR|NPZ (--ref STATS.npz | --ref-dataset fashion-mnist|cifar10 [--split train|test] | --ref-dataset PATH) [--num N]
                [--preprocess clean-fid|pytorch-fid|adm] [--kid] [--device D] [--json]`,
  demo: `usage: epg demo [--quick] [--gpu] [--baseline] [--no-eval] [--out DIR] [--set key=value ...]
  Runs pre-training, diffusion and consistency fine-tuning, sampling and evaluation, and writes
  DIR/report.md (default demo-output). --quick: a minute-long smoke run. --gpu: CIFAR-10 on CUDA.
  --baseline: also a diffusion model from scratch with the same budget. --no-eval: skip FID.
  --set: a config override for every training stage (e.g. device=cuda:1, precision=fp32, cudaGraph=on).`,
};

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

async function trainCommand(cmd: 'pretrain' | 'finetune', argv: string[]): Promise<number> {
  const p = parse(argv, ['config', 'set', 'resume', 'mode'], ['dry-run', 'help', 'keys']);
  if (p.flags.has('help')) return help(cmd);
  if (p.flags.has('keys')) {
    for (const [k, v] of configKeys()) console.log(`${k} = ${JSON.stringify(v)}`);
    return 0;
  }
  const overrides = p.values.get('set') ?? [];
  if (cmd === 'finetune') {
    const mode = one(p, 'mode');
    if (mode !== undefined && mode !== 'dm' && mode !== 'cm')
      throw new UsageError(`--mode must be dm or cm, got '${mode}'`);
    if (mode) overrides.unshift(`stage=${mode}`);
  } else {
    overrides.unshift('stage=pretrain');
  }
  const cfg: TrainConfig = loadConfig(one(p, 'config'), overrides);
  if (cmd === 'finetune' && cfg.stage === 'pretrain') throw new UsageError('finetune needs --mode dm or --mode cm');
  if (p.flags.has('dry-run')) {
    console.log(JSON.stringify(cfg, null, 2));
    return 0;
  }
  const r = await train(cfg, { resume: one(p, 'resume'), data: createDataPipeline });
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

/** epg launch [options] <command ...>: an epg command, a .js file or a program on every rank. */
async function launchCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = torch.dist.parseLaunchArgs(argv);
  } catch (e) {
    if (e instanceof torch.dist.LaunchUsageError) throw new UsageError(e.message);
    throw e;
  }
  if (parsed === null) return help('launch');
  const [first, ...rest] = parsed.command;
  // epg commands run through this CLI on the same Node.
  const command = EPG_COMMANDS.has(first!) ? [fileURLToPath(import.meta.url), first!, ...rest] : parsed.command;
  return (await torch.dist.launch({ ...parsed, command })).exitCode;
}

function help(cmd: string): number {
  console.log(HELP[cmd] ?? HELP.main);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(HELP.main);
    return cmd === undefined ? 2 : 0;
  }
  // Training and sampling are data-parallel; the other commands would run once per rank, writing the same files.
  const ranks = torch.dist.distEnv()?.worldSize ?? 1;
  if (ranks > 1 && ['prepare', 'eval', 'demo', 'launch'].includes(cmd))
    throw new UsageError(
      `epg ${cmd} runs in one process (WORLD_SIZE is ${ranks}); only pretrain, finetune and sample run under epg launch`,
    );
  switch (cmd) {
    case 'launch':
      return launchCommand(rest);
    case 'info': {
      const p = parse(rest, [], ['json', 'help']);
      if (p.flags.has('help')) return help('info');
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
      if (p.flags.has('json')) {
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
    }
    case 'pretrain':
    case 'finetune':
      return trainCommand(cmd, rest);
    case 'prepare': {
      const p = parse(rest, ['resolution', 'subdir', 'shard-size'], ['overwrite', 'help']);
      if (p.flags.has('help')) return help('prepare');
      const [src, out] = p.positionals;
      if (!src || !out) throw new UsageError('prepare needs a source and an output folder');
      const subdir = one(p, 'subdir');
      const ds = ImageFolder.open({
        root: src,
        ...(subdir ? { subdir } : {}),
        ...(num(p, 'resolution') ? { resolution: num(p, 'resolution')! } : {}),
      });
      const idx = await prepareShards(ds, out, {
        ...(num(p, 'resolution') ? { resolution: num(p, 'resolution')! } : {}),
        ...(num(p, 'shard-size') ? { shardSize: num(p, 'shard-size')! } : {}),
        overwrite: p.flags.has('overwrite'),
      });
      console.log(`prepared ${idx.count} images into ${out}`);
      return 0;
    }
    case 'sample': {
      const p = parse(
        rest,
        [
          'checkpoint',
          'out',
          'num',
          'sampler',
          'steps',
          'cfg',
          'interval',
          'labels',
          'seed',
          'batch',
          'device',
          'preset',
        ],
        ['no-ema', 'append-zero', 'help', 'no-png', 'cuda-graph'],
      );
      if (p.flags.has('help')) return help('sample');
      const checkpoint = one(p, 'checkpoint');
      if (!checkpoint) throw new UsageError('sample needs --checkpoint RUN_DIR|FILE');
      const sampler = one(p, 'sampler') as SamplerName | undefined;
      if (sampler && !['heun', 'euler', 'onestep', 'multistep'].includes(sampler))
        throw new UsageError(`--sampler must be heun, euler, onestep or multistep, got '${sampler}'`);
      const interval = one(p, 'interval')?.split(',').map(Number);
      if (interval && (interval.length !== 2 || interval.some((x) => !Number.isFinite(x))))
        throw new UsageError('--interval expects LO,HI (unshifted σ), e.g. 0.19,1.61');
      const labels = one(p, 'labels') ?? 'random';
      const r = sampleFromCheckpoint({
        checkpoint,
        out: one(p, 'out') ?? 'samples',
        num: num(p, 'num', 64)!,
        ...(sampler ? { sampler } : {}),
        steps: num(p, 'steps', 32)!,
        cfgScale: num(p, 'cfg', 1)!,
        ...(interval ? { guidanceInterval: interval as [number, number] } : {}),
        labels: labels === 'random' || labels === 'balanced' ? labels : Number(labels),
        seed: num(p, 'seed', 0)!,
        batchSize: num(p, 'batch', 64)!,
        device: (one(p, 'device') ?? 'cpu') as torch.Device,
        noEma: p.flags.has('no-ema'),
        appendZero: p.flags.has('append-zero'),
        writePngs: !p.flags.has('no-png'),
        cudaGraph: p.flags.has('cuda-graph'),
        ...(one(p, 'preset') ? { preset: one(p, 'preset')! } : {}),
        log: (l) => process.stderr.write(`${l}\n`),
      });
      console.log(
        `${r.num} samples with ${r.sampler}: ${r.nfePerImage} NFE per image, ${r.seconds.toFixed(1)} s; grid ${r.grid}, npz ${r.npz}`,
      );
      return 0;
    }
    case 'eval': {
      const p = parse(
        rest,
        ['samples', 'ref', 'ref-dataset', 'num', 'preprocess', 'device', 'split'],
        ['kid', 'json', 'help'],
      );
      if (p.flags.has('help')) return help('eval');
      const samples = one(p, 'samples');
      if (!samples) throw new UsageError('eval needs --samples DIR|NPZ');
      const refDs = one(p, 'ref-dataset');
      // --split picks a split of the built-in datasets; a folder or zip is used whole.
      const split = one(p, 'split');
      if (split !== undefined && split !== 'train' && split !== 'test')
        throw new UsageError(`--split must be train or test, got '${split}'`);
      const named = refDs === 'fashion-mnist' || refDs === 'cifar10';
      if (split !== undefined && !named)
        throw new UsageError(
          '--split applies to --ref-dataset fashion-mnist or cifar10 (a folder or zip is used whole)',
        );
      const r = await runEval({
        samples,
        ...(one(p, 'ref') ? { ref: one(p, 'ref')! } : {}),
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
        ...(num(p, 'num') ? { numSamples: num(p, 'num')! } : {}),
        ...(one(p, 'preprocess') ? { preprocess: one(p, 'preprocess') as 'clean-fid' } : {}),
        kid: p.flags.has('kid'),
        device: (one(p, 'device') ?? 'cpu') as torch.Device,
        log: (l) => process.stderr.write(`${l}\n`),
      });
      if (p.flags.has('json')) console.log(JSON.stringify(r, null, 2));
      else
        console.log(
          `${r.label}: ${r.fid.toFixed(3)}` +
            (r.precision !== null ? `  precision ${r.precision.toFixed(3)}  recall ${r.recall!.toFixed(3)}` : '') +
            (r.kid ? `  KID ${r.kid.mean.toExponential(3)} ± ${r.kid.std.toExponential(2)}` : '') +
            `  (${r.numSamples} samples, ${r.preprocess})`,
        );
      return 0;
    }
    case 'demo': {
      const p = parse(rest, ['out', 'set'], ['quick', 'gpu', 'baseline', 'no-eval', 'help']);
      if (p.flags.has('help')) return help('demo');
      const r = await runDemo({
        out: one(p, 'out') ?? 'demo-output',
        set: p.values.get('set') ?? [],
        quick: p.flags.has('quick'),
        gpu: p.flags.has('gpu'),
        baseline: p.flags.has('baseline'),
        ...(p.flags.has('no-eval') ? { evaluate: false } : {}),
      });
      console.log(`demo finished in ${(r.seconds / 60).toFixed(1)} min; report: ${r.report}`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command '${cmd}'`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof UsageError) {
      console.error(`epg: ${e.message}\n`);
      console.error(HELP[process.argv[2] ?? 'main'] ?? HELP.main);
      process.exitCode = 2;
    } else if (e instanceof TrainingInterrupted) {
      console.error(`epg: ${e.message}`);
      process.exitCode = interruptedExitCode(e.signal);
    } else if (e instanceof ConfigError) {
      console.error(`epg: ${e.message}`);
      process.exitCode = 2;
    } else {
      console.error(`epg: ${e instanceof Error ? e.message : String(e)}`);
      if (process.env.EPG_DEBUG) console.error(e);
      process.exitCode = 1;
    }
  },
);
