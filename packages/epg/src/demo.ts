// The demo (`npm run demo` / `epg demo`): the whole two-stage EPG pipeline at
// small scale — pre-train an encoder, fine-tune a diffusion model and a
// consistency model from it (and a diffusion baseline from scratch with the
// same budget), sample all of them, evaluate, and write a report with grids
// and loss curves. Fashion-MNIST on the CPU by default; CIFAR-10 on CUDA with --gpu.
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

import * as torch from '@epg/torch';

import type { ImageDataset } from './data/index.js';
import { EVERY_SIGMA } from './diffusion/samplers.js';
import { npzPatchEdgeRatio, runEval, saveImagesNpz, type EvalResult } from './eval/index.js';
import { getPreset } from './models/presets.js';
import { type LineSeries, smooth, writeLineChart } from './plot.js';
import { sampleFromCheckpoint, type SampleReport } from './sample.js';
import { loadConfig } from './train/config.js';
import { createDataPipeline, openDataset } from './train/data.js';
import { train, TrainingInterrupted, type TrainResult } from './train/trainer.js';

/** The one-step sampler's CFG scale for the CM tuned from the diffusion model (measured: docs/RESULTS.md). */
const ECT_CFG = 8;

export interface DemoOptions {
  out: string;
  /** A one-minute smoke run (tests, CI). */
  quick: boolean;
  /** CIFAR-10 on CUDA instead of Fashion-MNIST on the CPU. */
  gpu: boolean;
  /** Config overrides (`key=value`) for every training stage, after the demo's own; `device=…` also moves sampling and evaluation. */
  set?: string[];
  /** Evaluate FID proxies (needs the Inception network; default true unless quick). */
  evaluate?: boolean;
  /** Also train a diffusion model from scratch with the same budget, for comparison. */
  baseline?: boolean;
  log?: (line: string) => void;
}

export interface DemoResult {
  seconds: number;
  report: string;
  fid: Record<string, EvalResult | null>;
}

function readStats(runDir: string): Record<string, number>[] {
  const p = join(runDir, 'stats.jsonl');
  if (!existsSync(p)) return [];
  return readFileSync(p, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, number>);
}

/**
 * n training images in the samples' label order (class i mod K at position i),
 * written as an ADM .npz. Their FID proxy against the same reference is what a
 * perfect model would score with this many samples: the proxy's floor.
 */
export async function writeRealImagesNpz(ds: ImageDataset, n: number, path: string): Promise<void> {
  const K = ds.numClasses;
  const perClass = Math.ceil(n / K);
  const byClass: Uint8Array[][] = Array.from({ length: K }, () => []);
  let short = K;
  for (let i = 0; i < ds.length && short > 0; i++) {
    const item = await ds.get(i);
    const bucket = byClass[item.label];
    if (bucket === undefined)
      throw new Error(`writeRealImagesNpz: image ${i} has label ${item.label}, outside 0..${K - 1}`);
    if (bucket.length < perClass && bucket.push(item.pixels) === perClass) short--;
  }
  const size = ds.channels * ds.height * ds.width;
  const pixels = new Uint8Array(n * size);
  for (let i = 0; i < n; i++) {
    const image = byClass[i % K]![Math.floor(i / K)];
    if (image === undefined)
      throw new Error(`writeRealImagesNpz: the dataset has fewer than ${perClass} images of class ${i % K}`);
    pixels.set(image, i * size);
  }
  torch.tidy(() => saveImagesNpz(path, torch.tensor(pixels, { shape: [n, ds.channels, ds.height, ds.width] })));
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const log = o.log ?? ((l: string) => console.log(l));
  const t0 = performance.now();
  mkdirSync(o.out, { recursive: true });
  const dataset = o.gpu ? 'cifar10' : 'fashion-mnist';
  // The device, as the stages will resolve it (a `--set device=…` wins); bad overrides fail here, before any training.
  const device = loadConfig(`${dataset}-pretrain`, [`device=${o.gpu ? 'cuda' : 'cpu'}`, ...(o.set ?? [])])
    .device as torch.Device;
  if (device.startsWith('cuda') && !torch.cuda.isAvailable())
    throw new Error(`demo: device ${device} requested but CUDA is not available on this machine`);
  const common = [`runDir=${join(o.out, 'runs')}`, `device=${device}`, 'sampleCount=0'];
  const quick = o.quick ? ['steps=6', 'logEvery=2', 'checkpointEvery=0', 'optim.warmupSteps=2', 'batchSize=16'] : [];
  const steps: Record<string, number> = {};
  const timings: Record<string, number> = {};
  const configs: Record<string, string> = {};
  const runs: Record<string, string> = {};
  const stage = async (name: string, config: string, extra: string[]): Promise<TrainResult> => {
    log(`\n== ${name} ==`);
    const cfg = loadConfig(config, [...common, ...extra, ...quick, ...(o.set ?? [])]);
    const r = await train(cfg, { data: createDataPipeline, log });
    // A signal stops the demo, not just this stage: the next stage would start from a half-trained model.
    if (r.interrupted)
      throw new TrainingInterrupted(
        r.interrupted,
        `demo stopped by ${r.interrupted} during ${name}, at step ${r.step} of ${cfg.steps}; its checkpoint: ${r.checkpoint}`,
      );
    steps[name] = r.step;
    timings[name] = r.seconds;
    configs[name] = config;
    runs[name] = r.runDir;
    return r;
  };

  const pre = await stage('pre-training', `${dataset}-pretrain`, []);
  const dm = await stage('diffusion fine-tuning (from the pre-trained encoder)', `${dataset}-dm`, [
    `finetune.init=${pre.runDir}`,
  ]);
  const scratch = o.baseline
    ? await stage('diffusion baseline (from scratch, same budget)', `${dataset}-dm`, [])
    : null;
  const cm = await stage('consistency fine-tuning (from the pre-trained encoder)', `${dataset}-cm`, [
    `finetune.init=${pre.runDir}`,
  ]);
  // ECT's recipe beside the paper's: consistency tuning that starts from the
  // diffusion model just trained (with the pre-trained encoder for L_aux), the
  // network read as that model's x̂₀ (finetune.cmPrecond 'auto' → 'x0'). On the
  // CPU budget this is the one-step model that draws the classes.
  const ect = o.gpu
    ? null
    : await stage('consistency tuning from the diffusion model (ECT)', `${dataset}-cm`, [
        `finetune.init=${dm.runDir}`,
        `finetune.perceptual=${pre.runDir}`,
        // 120 steps in 200-step ECT stages, so the whole tuning stays in the first stage, where
        // Δt is widest (docs/RESULTS.md, experiments ect-schedule and demo-one-step: 50-step stages
        // degrade past 120 steps; 200-step stages scored 5-10 better unguided and 1-3 better at the
        // CFG below, on both seeds). lr 2e-4 or EMA 0.99 move it by 1-2; the sampler's CFG is what
        // moves the one-step FID.
        'finetune.cmStageSteps=200',
        ...(o.quick ? [] : ['steps=120', 'checkpointEvery=0']),
      ]);

  log('\n== sampling ==');
  // FID proxies on the CPU are costly (Inception-v3 at 299 px): a few hundred samples.
  const n = o.quick ? 16 : o.gpu ? 5000 : 200;
  const heunSteps = o.quick ? 4 : 18;
  const sample = (
    name: string,
    ck: string,
    opts: Partial<Parameters<typeof sampleFromCheckpoint>[0]>,
  ): SampleReport => {
    const r = sampleFromCheckpoint({
      checkpoint: ck,
      out: join(o.out, 'samples', name),
      num: n,
      device,
      labels: 'balanced',
      writePngs: false,
      batchSize: 250,
      ...opts,
    });
    copyFileSync(r.grid, join(o.out, `${name}.png`));
    log(`${name}: ${n} samples, ${r.nfePerImage} NFE each, ${r.seconds.toFixed(1)} s`);
    return r;
  };
  const samples: Record<string, SampleReport> = {
    'dm-heun': sample('dm-heun', dm.runDir, { sampler: 'heun', steps: heunSteps, cfgScale: 1.5 }),
    ...(scratch
      ? {
          'dm-scratch-heun': sample('dm-scratch-heun', scratch.runDir, {
            sampler: 'heun',
            steps: heunSteps,
            cfgScale: 1.5,
          }),
        }
      : {}),
    'cm-1step': sample('cm-1step', cm.runDir, { sampler: 'onestep' }),
    // The paper's two-step sample only where the CM trains long enough for a second step to help: on
    // the CPU budget both grids are noise (FID-200 388 / 397), and the second cost about half a minute
    // of the demo's budget, mostly its FID proxy.
    ...(o.gpu ? { 'cm-2step': sample('cm-2step', cm.runDir, { sampler: 'multistep' }) } : {}),
    // One step with CFG 8 over every σ (σ_max′ lies outside the released guidance interval):
    // 2 NFE per image. FID-1000 on two seeds (experiment demo-one-step): 206.4 / 223.1 at CFG 8; with
    // 50-step stages 209.5 / 224.2 at CFG 8, 214.7 / 226.8 at CFG 6, 267.0 / 298.0 unguided.
    ...(ect
      ? {
          'cm-from-dm-1step': sample('cm-from-dm-1step', ect.runDir, {
            sampler: 'onestep',
            cfgScale: ECT_CFG,
            guidanceInterval: EVERY_SIGMA,
          }),
        }
      : {}),
  };

  const fid: Record<string, EvalResult | null> = {};
  const realNpz = join(o.out, 'samples', 'real-train.npz');
  const realName = 'real training images';
  if (o.evaluate ?? !o.quick) {
    log('\n== evaluation (FID proxy against the test split) ==');
    const ref = openDataset({ source: dataset, subdir: '', split: 'test', normalization: 'simple', workers: 0 });
    try {
      // The floor is a reading aid: without it (too few images of a class) the models are still evaluated.
      let floor: [string, string][] = [];
      try {
        const trainSplit = openDataset({
          source: dataset,
          subdir: '',
          split: 'train',
          normalization: 'simple',
          workers: 0,
        });
        try {
          mkdirSync(dirname(realNpz), { recursive: true });
          await writeRealImagesNpz(trainSplit, n, realNpz);
          floor = [[realName, realNpz]];
        } finally {
          trainSplit.close?.();
        }
      } catch (e) {
        log(`${realName}: skipped (${(e as Error).message})`);
      }
      const toEvaluate: [string, string][] = [
        ...floor,
        ...Object.entries(samples).map(([k, s]): [string, string] => [k, s.npz]),
      ];
      for (const [name, npz] of toEvaluate) {
        try {
          fid[name] = await runEval({
            samples: npz,
            refDataset: { source: ref, name: `${dataset}-test`, numImages: o.gpu ? 10000 : 500 },
            device,
            log,
          });
          log(`${name}: ${fid[name]!.label} ${fid[name]!.fid.toFixed(2)}`);
        } catch (e) {
          log(`${name}: evaluation skipped (${(e as Error).message})`);
          fid[name] = null;
        }
      }
    } finally {
      ref.close?.();
    }
  }

  // Loss curves.
  const curves: string[] = [];
  for (const [name, run, keys] of [
    ['pretrain', pre, ['loss', 'l_con', 'l_rc']],
    ['dm', dm, ['loss']],
    ['cm', cm, ['loss', 'l_cm', 'l_aux']],
    ...(ect ? ([['cm-from-dm', ect, ['loss', 'l_cm', 'l_aux']]] as const) : []),
  ] as const) {
    const stats = readStats(run.runDir);
    if (stats.length < 2) continue;
    const series: LineSeries[] = keys
      .filter((k) => stats.some((s) => k in s))
      .map((k) => ({
        name: k,
        points: smooth(
          stats.map((s) => [s.step!, s[k]!] as const),
          0.3,
        ),
      }));
    if (scratch && name === 'dm') {
      const base = readStats(scratch.runDir);
      series.push({
        name: 'loss, from scratch (baseline)',
        points: smooth(
          base.map((s) => [s.step!, s.loss!] as const),
          0.3,
        ),
        dashed: true,
      });
    }
    await writeLineChart(join(o.out, `loss-${name}.png`), {
      title: `${name}: training losses (EMA-smoothed, α = 0.3)`,
      x: { title: 'optimizer step', scale: 'linear' },
      y: { title: 'loss' },
      series,
    });
    curves.push(`![${name} loss](loss-${name}.png)`);
  }

  const seconds = (performance.now() - t0) / 1000;
  const fmt = (r: EvalResult | null | undefined): string => (r ? `${r.fid.toFixed(2)} (${r.label})` : 'not evaluated');
  const report = join(o.out, 'report.md');
  const rel = (p: string): string => relative(o.out, p);
  const patch = getPreset(loadConfig(`${dataset}-dm`).preset).patchSize;
  const edges = (npz: string): string => (existsSync(npz) ? npzPatchEdgeRatio(npz, patch).toFixed(2) : '—');
  // The paper's consistency samples this run drew (the two-step one only with --gpu).
  const paperCm = ['cm-1step', 'cm-2step'].filter((k) => k in samples);
  const lines = [
    `# EPG demo report`,
    '',
    `${o.gpu ? 'CIFAR-10, 32 px RGB' : 'Fashion-MNIST, 28 px grayscale'}, on ${device === 'cpu' ? 'the CPU' : device}${o.quick ? ' (quick smoke run: the numbers mean nothing)' : ''}; ` +
      `libtorch ${torch.info().torchVersion}; total ${(seconds / 60).toFixed(1)} min; ${new Date().toISOString()}.`,
    '',
    '## What ran',
    '',
    '| stage | config | steps | time | run |',
    '|---|---|---|---|---|',
    ...Object.entries(steps).map(
      ([k, v]) =>
        `| ${k} | \`${configs[k]}\` | ${v} | ${timings[k]!.toFixed(0)} s (${((timings[k]! * 1000) / Math.max(1, v)).toFixed(0)} ms/step) | ${rel(runs[k]!)} |`,
    ),
    '',
    `Runs (configs, checkpoints, stats.jsonl, TensorBoard events): ${rel(join(o.out, 'runs'))}/. ` +
      `Pre-training: ${rel(pre.runDir)}; diffusion: ${rel(dm.runDir)}; consistency: ${rel(cm.runDir)}` +
      (ect ? `; consistency from the diffusion model: ${rel(ect.runDir)}` : '') +
      (scratch ? `; baseline: ${rel(scratch.runDir)}.` : '.'),
    '',
    '## Samples',
    '',
    `Class-balanced labels (each row of a grid runs through the classes, one class per column); ${n} samples per model.`,
    '',
    `| model | sampler | NFE | FID proxy vs the test split | patch-edge ratio (${patch} px) |`,
    '|---|---|---|---|---|',
    ...Object.entries(samples).map(
      ([k, s]) => `| ${k} | ${s.sampler} | ${s.nfePerImage} | ${fmt(fid[k])} | ${edges(s.npz)} |`,
    ),
    ...(realName in fid
      ? [`| ${realName} (the proxy's floor) | — | — | ${fmt(fid[realName])} | ${edges(realNpz)} |`]
      : []),
    '',
    `The patch-edge ratio is the mean |Δ| of adjacent pixels across the ${patch}-px patch grid over that within patches ` +
      "(eval/patch-edges.ts): about 1 for real images; above 1 where the decoder's per-patch outputs do not yet join. " +
      'It falls with training (docs/RESULTS.md: about 3.5–4.0 at 700 diffusion steps, 2.7–3.3 at 1,400).',
    '',
    ...Object.keys(samples).flatMap((k) => [`### ${k}`, '', `![${k}](${k}.png)`, '']),
    '## Loss curves',
    '',
    ...curves.flatMap((c) => [c, '']),
    '## Notes',
    '',
    '- FID here is a proxy: the standard Inception network on upsampled small images, with few samples (biased upwards); compare numbers within this report only. ' +
      `The row "${realName}" is ${n} class-balanced images of the training split against the same reference: what a perfect model would score here.`,
    '- The baseline has the same architecture, data, steps and optimizer as the diffusion model, without the pre-trained encoder.',
    `- ${paperCm.join(' / ')} follow${paperCm.length > 1 ? '' : 's'} the paper: consistency training from the pre-trained encoder, which needs far more steps than a CPU demo affords. cm-from-dm-1step follows ECT: consistency tuning from the diffusion model above, read as its x̂₀, sampled in one step with CFG ${ECT_CFG} (2 network evaluations).`,
    '- Reproduce: `npm run demo` (or `node packages/epg/dist/src/cli.js demo`).',
    '',
    '## In the browser',
    '',
    // The one-step model to open: the ECT one (the better one-step FID here) when it ran, else the paper's CM.
    // Paths from the directory the demo ran in, where the commands are typed.
    `Export the one-step model and open it in the browser demo (needs \`npm run setup:web\` once): ` +
      `\`epg export ${relative(process.cwd(), (ect ?? cm).runDir)}${ect ? ` --cfg ${ECT_CFG} --interval all` : ''} --out ${relative(process.cwd(), join(o.out, 'exported'))}\`, then ` +
      `\`epg serve ${relative(process.cwd(), join(o.out, 'exported'))}\` and open http://127.0.0.1:8080/ (pick a class and a seed).`,
  ];
  writeFileSync(report, lines.join('\n') + '\n');
  return { seconds, report, fid };
}
