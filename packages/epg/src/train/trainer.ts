// One trainer for the three stages, read top to bottom in nanoGPT's order
// (STYLE.md habit 8): LR → checkpoint/samples → batch → forward/backward →
// unscale + clip → step → zero grads → EMA/target → log.
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import * as torch from '@epg/torch';
import { optim, type Tensor } from '@epg/torch';

import type { TrainConfig } from './config.js';
import {
  disposeAll,
  loadCheckpoint,
  readCheckpointMeta,
  saveCheckpoint,
  writeFileAtomic,
  type CheckpointMeta,
} from './checkpoint.js';
import { JsonlWriter, Progress, TensorBoardWriter } from './logging.js';
import { CmStage, DmStage, PretrainStage, type StageBatch, type StageContext, type TrainingStage } from './stages.js';
import type { ClampRange } from '../diffusion/samplers.js';

/** What the trainer needs from the data pipeline. */
export interface DataPipeline {
  imageSize: number;
  channels: number;
  numClasses: number;
  clamp: ClampRange;
  /** The next batch for `step`, on the device, as the stage expects it. */
  next(step: number): Promise<StageBatch>;
  /** Data position, for exact resumption. */
  state(): Record<string, unknown>;
  restore(state: Record<string, unknown>): void;
  /** Normalised images [N, C, H, W] → uint8 grid PNG. */
  saveGrid(path: string, images: Tensor, nrow: number): void;
  close(): Promise<void> | void;
}

export interface TrainOptions {
  /** Resume from a run directory or a checkpoint file (the architecture comes from it). */
  resume?: string;
  log?: (line: string) => void;
  /** Stop (with a checkpoint) after this many steps of this call, as if interrupted. */
  stopAfter?: number;
  /** Called with each step's loss when it is read (every logEvery steps and the last step). */
  onLoss?: (step: number, loss: number) => void;
  /** Read the loss every step (tests of exact resumption). */
  lossEveryStep?: boolean;
  /** Builds the data pipeline for a config (the default opens cfg.data). */
  data: (cfg: TrainConfig, device: torch.Device, seed: number) => Promise<DataPipeline>;
  /** Where a pre-training checkpoint for fine-tuning comes from (resolved path or run dir). */
}

export interface TrainResult {
  runDir: string;
  step: number;
  checkpoint: string;
  /** Losses read during the run, by step. */
  losses: Map<number, number>;
  seconds: number;
}

/** runs/00003-dm-fashion-mnist-EPG-T-4-b64-fp32: auto-numbered and self-describing (STYLE.md 11). */
export function newRunDir(cfg: TrainConfig): string {
  mkdirSync(cfg.runDir, { recursive: true });
  const ids = readdirSync(cfg.runDir)
    .map((d) => /^(\d{5})-/.exec(d)?.[1])
    .filter((x): x is string => x !== undefined)
    .map(Number);
  const next = ids.length ? Math.max(...ids) + 1 : 0;
  const source = cfg.data.source
    .replace(/[^A-Za-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(-24);
  const name = `${String(next).padStart(5, '0')}-${cfg.stage}-${source}-${cfg.preset.replace(/\//g, '-')}-b${cfg.batchSize}-${cfg.precision}`;
  const dir = join(cfg.runDir, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function lrFactor(cfg: TrainConfig, step: number): number {
  const o = cfg.optim;
  switch (o.schedule) {
    case 'cosine':
      return optim.warmupCosineFactor(step, { warmupSteps: o.warmupSteps, totalSteps: cfg.steps });
    case 'piecewise':
      return optim.warmupPiecewiseFactor(step, {
        warmupSteps: o.warmupSteps,
        milestones: o.lrMilestones,
        factors: o.lrFactors,
      });
    default:
      return optim.warmupConstantFactor(step, { warmupSteps: o.warmupSteps });
  }
}

function createStage(cfg: TrainConfig, ctx: StageContext): TrainingStage {
  if (cfg.stage === 'pretrain') return new PretrainStage(ctx);
  const f = cfg.finetune;
  const init = f.init ? loadCheckpoint(f.init, ctx.device, ['model.']) : null;
  try {
    if (init && init.meta.stage !== 'pretrain')
      throw new Error(
        `finetune.init must be a pre-training checkpoint; ${init.path} is a '${init.meta.stage}' checkpoint`,
      );
    if (init && init.meta.preset !== cfg.preset)
      throw new Error(
        `finetune.init ${init.path} was trained with preset ${init.meta.preset}, this run uses ${cfg.preset}`,
      );
    if (cfg.stage === 'dm') return new DmStage(ctx, init?.tensors ?? null);
    const percSource = f.perceptual === 'none' ? null : f.perceptual || f.init;
    const perc = percSource
      ? percSource === f.init
        ? init
        : loadCheckpoint(percSource, ctx.device, ['model.'])
      : null;
    try {
      return new CmStage(ctx, init?.tensors ?? null, perc?.tensors ?? null);
    } finally {
      if (perc && perc !== init) disposeAll(perc.tensors.values());
    }
  } finally {
    if (init) disposeAll(init.tensors.values());
  }
}

/** Trains one stage; resumable, interruptible (SIGINT/SIGTERM save a checkpoint first). */
export async function train(config: TrainConfig, opts: TrainOptions): Promise<TrainResult> {
  const log = opts.log ?? ((l: string) => console.log(l));
  let cfg = config;
  let resumeMeta: CheckpointMeta | null = null;
  let runDir: string;
  if (opts.resume) {
    const { path, meta } = readCheckpointMeta(opts.resume);
    // The architecture and stage come from the checkpoint; run length and logging may change.
    if (meta.preset !== cfg.preset)
      log(`note: the checkpoint is a ${meta.preset} model; the configured preset ${cfg.preset} is ignored`);
    cfg = {
      ...meta.config,
      steps: config.steps,
      logEvery: config.logEvery,
      checkpointEvery: config.checkpointEvery,
      sampleEvery: config.sampleEvery,
    };
    resumeMeta = meta;
    runDir = join(path, '..');
    log(`resuming ${meta.stage} from ${path} at step ${meta.step}`);
  } else {
    runDir = newRunDir(cfg);
  }
  writeFileAtomic(join(runDir, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');

  const device = cfg.device as torch.Device;
  if (device.startsWith('cuda') && !torch.cuda.isAvailable())
    throw new Error(`device '${cfg.device}' requested but CUDA is not available; use --set device=cpu`);
  torch.manualSeed(cfg.seed);
  const data = await opts.data(cfg, device, cfg.seed);
  const ctx: StageContext = {
    cfg,
    device,
    imageSize: data.imageSize,
    inChannels: data.channels,
    clamp: data.clamp,
    log,
  };
  const stage = createStage(cfg, ctx);
  const scaler =
    cfg.precision === 'fp16'
      ? new optim.GradScaler({
          device: device as 'cpu' | 'cuda',
          initScale: 2 ** 14,
          growthFactor: 2 ** (1 / 1000),
          growthInterval: 1,
        })
      : null;
  const sampleGen = new torch.Generator(device, cfg.seed + 1);
  let startStep = 0;
  if (resumeMeta) {
    const ck = loadCheckpoint(opts.resume!, device);
    try {
      stage.loadStateTensors(ck.tensors);
      const optTensors = new Map(
        [...ck.tensors].filter(([k]) => k.startsWith('optim.')).map(([k, t]) => [k.slice(6), t]),
      );
      if (resumeMeta.optimizer) stage.optimizer.loadStateDict({ ...resumeMeta.optimizer, tensors: optTensors });
      if (scaler && resumeMeta.scaler) scaler.loadStateDict(resumeMeta.scaler);
      for (const [name, state] of Object.entries(resumeMeta.rng))
        generatorFor(name, device, sampleGen).setState(Buffer.from(state, 'base64'));
      data.restore(resumeMeta.extra.data as Record<string, unknown>);
      startStep = resumeMeta.step;
    } finally {
      disposeAll(ck.tensors.values());
    }
  }
  log(
    `${cfg.stage}: ${cfg.preset} (${(stage.model.numParameters() / 1e6).toFixed(2)}M parameters), ` +
      `${data.imageSize}×${data.imageSize}×${data.channels}, batch ${cfg.batchSize}, ${cfg.steps} steps on ${device}, ${cfg.precision}; run ${runDir}`,
  );

  const jsonl = new JsonlWriter(join(runDir, 'stats.jsonl'));
  const tb = new TensorBoardWriter(runDir);
  const progress = new Progress(cfg.stage, cfg.steps, startStep);
  let stopRequested: string | null = null;
  const onSignal = (sig: string) => () => {
    stopRequested = sig;
  };
  const sigint = onSignal('SIGINT');
  const sigterm = onSignal('SIGTERM');
  process.on('SIGINT', sigint);
  process.on('SIGTERM', sigterm);

  const checkpoint = (step: number): string => {
    const tensors = stage.stateTensors();
    const os = stage.optimizer.stateDict();
    for (const [k, t] of os.tensors) tensors.set(`optim.${k}`, t);
    try {
      return saveCheckpoint(runDir, tensors, {
        step,
        stage: cfg.stage,
        preset: cfg.preset,
        config: cfg,
        optimizer: { groups: os.groups, scalars: os.scalars },
        scaler: scaler?.stateDict() ?? null,
        rng: {
          cpu: Buffer.from(torch.Generator.default('cpu').getState()).toString('base64'),
          ...(device !== 'cpu'
            ? { device: Buffer.from(torch.Generator.default(device).getState()).toString('base64') }
            : {}),
          sample: Buffer.from(sampleGen.getState()).toString('base64'),
        },
        extra: { data: data.state() },
      });
    } finally {
      disposeAll(tensors.values());
    }
  };

  const losses = new Map<number, number>();
  const t0 = performance.now();
  let lastFile = '';
  let imagesSeen = 0;
  let lastLogTime = performance.now();
  let step = startStep;
  const stopAt = opts.stopAfter !== undefined ? Math.min(cfg.steps, startStep + opts.stopAfter) : cfg.steps;
  try {
    while (step < stopAt) {
      // Learning rate: a pure function of the step.
      const factor = lrFactor(cfg, step);
      optim.setLr(stage.optimizer, cfg.optim.lr * factor);

      // Periodic samples.
      if (cfg.sampleEvery > 0 && step > 0 && step % cfg.sampleEvery === 0 && stage.name !== 'pretrain')
        saveSamples(stage, data, cfg, sampleGen, join(runDir, `samples-${String(step).padStart(7, '0')}.png`));

      // Let signal handlers and other macrotasks run: an in-memory data source
      // resolves at once, so without this the loop would never yield to them.
      await new Promise((resolve) => setImmediate(resolve));
      const batch = await data.next(step);
      const readLoss = opts.lossEveryStep === true || (step + 1) % cfg.logEvery === 0 || step + 1 === stopAt;
      const out = torch.tidy(() => {
        const autocast =
          cfg.precision === 'fp32'
            ? null
            : torch.autocastGuard(device.startsWith('cuda') ? 'cuda' : 'cpu', {
                dtype: cfg.precision === 'bf16' ? 'bfloat16' : 'float16',
              });
        let r;
        try {
          r = stage.step(batch, step);
        } finally {
          autocast?.[Symbol.dispose]();
        }
        const scaled = scaler ? scaler.scale(r.loss) : r.loss;
        scaled.backward();
        if (scaler) scaler.unscale_(stage.optimizer);
        // Clip only after warm-up (spec §5.3).
        const gradNorm =
          cfg.optim.gradClip > 0 && step >= cfg.optim.warmupSteps
            ? optim.clipGradNorm_(stage.model.parameters(), cfg.optim.gradClip)
            : null;
        if (scaler) {
          scaler.step(stage.optimizer);
          scaler.update();
        } else {
          stage.optimizer.step();
        }
        stage.optimizer.zeroGrad();
        if (!readLoss) return null;
        const metrics: Record<string, number> = { loss: r.loss.item() };
        for (const [k, t] of Object.entries(r.metrics)) metrics[k] = t.item();
        if (gradNorm) metrics.grad_norm = gradNorm.item();
        return metrics;
      });
      disposeAll([batch.x, batch.labels, ...(batch.xAug ? [batch.xAug] : []), ...(batch.xAug2 ? [batch.xAug2] : [])]);
      stage.afterStep(step);
      step++;
      imagesSeen += cfg.batchSize;

      if (out) {
        const now = performance.now();
        const ips = (imagesSeen * 1000) / Math.max(1, now - lastLogTime);
        lastLogTime = now;
        imagesSeen = 0;
        const lr = stage.optimizer.paramGroups[0]!.lr;
        losses.set(step, out.loss!);
        opts.onLoss?.(step, out.loss!);
        jsonl.write({ step, ...out, lr, images_per_sec: ips, time: (now - t0) / 1000 });
        tb.scalars(step, {
          ...Object.fromEntries(Object.entries(out).map(([k, v]) => [`train/${k}`, v])),
          'train/lr': lr,
          'perf/images_per_sec': ips,
        });
        progress.update(step, { loss: out.loss!, lr, 'img/s': ips }, step === stopAt);
      }
      if (cfg.checkpointEvery > 0 && step % cfg.checkpointEvery === 0 && step < stopAt) lastFile = checkpoint(step);
      if (stopRequested) {
        log(`\n${stopRequested}: saving a checkpoint at step ${step} before exiting`);
        break;
      }
    }
    progress.done();
    lastFile = checkpoint(step);
    if (stage.name !== 'pretrain' && step === cfg.steps && cfg.sampleCount > 0)
      saveSamples(stage, data, cfg, sampleGen, join(runDir, `samples-${String(step).padStart(7, '0')}.png`));
  } finally {
    process.off('SIGINT', sigint);
    process.off('SIGTERM', sigterm);
    tb.close();
    await data.close();
    stage.dispose();
    scaler?.dispose();
    sampleGen.dispose();
  }
  return { runDir, step, checkpoint: lastFile, losses, seconds: (performance.now() - t0) / 1000 };
}

function generatorFor(name: string, device: torch.Device, sampleGen: torch.Generator): torch.Generator {
  if (name === 'cpu') return torch.Generator.default('cpu');
  if (name === 'device') return torch.Generator.default(device);
  if (name === 'sample') return sampleGen;
  throw new Error(`checkpoint has state for an unknown generator '${name}'`);
}

function saveSamples(
  stage: TrainingStage,
  data: DataPipeline,
  cfg: TrainConfig,
  gen: torch.Generator,
  path: string,
): void {
  torch.tidy(() => {
    const x = stage.sample(cfg.sampleCount, gen);
    data.saveGrid(path, x, Math.ceil(Math.sqrt(cfg.sampleCount)));
  });
}
