// One trainer for the three stages, read top to bottom in nanoGPT's order
// (STYLE.md habit 8): LR → checkpoint/samples → batch → forward/backward →
// unscale + clip → step → zero grads → EMA/target → log. The parts around the
// loop live beside it: the run and its config (resume.ts), the update with its
// micro-batches (update.ts), checkpoints (checkpointing.ts), metric reads
// (metrics.ts), the stop signal (stop-signal.ts) and CUDA graphs (step-graphs.ts).
import { constants } from 'node:os';
import { join } from 'node:path';

import * as torch from '@epg/torch';
import { dist, nn, optim, type Tensor } from '@epg/torch';

import type { TrainConfig } from './config.js';
import { disposeAll, writeFileAtomic } from './checkpoint.js';
import { evalRefusal, evaluateFid } from './evaluation.js';
import { restoreTrainingState, saveTrainingCheckpoint, type TrainingState } from './checkpointing.js';
import { MetricsReader, packMetrics } from './metrics.js';
import { planRun } from './resume.js';
import { removingUnstartedRun, type RunStart } from './run-cleanup.js';
import { rankSeed } from './seeds.js';
import {
  CmStage,
  createStage,
  PretrainStage,
  type StageBatch,
  type StageContext,
  type TrainingStage,
} from './stages.js';
import { StepGraphs } from './step-graphs.js';
import { makeUpdate } from './update.js';
import { StopSignal } from './stop-signal.js';
import type { ClampRange } from '../diffusion/samplers.js';
import { trainingFlopsPerImage } from '../models/flops.js';
import { writePhemaSnapshot } from '../phema.js';

export { newRunDir } from './resume.js';

/** What the trainer needs from the data pipeline. */
export interface DataPipeline {
  imageSize: number;
  channels: number;
  numClasses: number;
  clamp: ClampRange;
  /** The next batch for `step`, on the device, as the stage expects it (this rank's share of the global batch). */
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
  data: (cfg: TrainConfig, device: torch.Device, seed: number, ranks?: RankInfo) => Promise<DataPipeline>;
  /** Where a pre-training checkpoint for fine-tuning comes from (resolved path or run dir). */
}

/** This process's place in a data-parallel run (rank 0 of 1 when alone). */
export interface RankInfo {
  rank: number;
  worldSize: number;
}

export interface TrainResult {
  runDir: string;
  step: number;
  /** The last checkpoint written (rank 0 writes them; '' on the other ranks). */
  checkpoint: string;
  /** Losses read during the run, by step. */
  losses: Map<number, number>;
  seconds: number;
  /** The signal that stopped the run early, after saving its checkpoint (on any rank: all stop together); null when it ran to its end. */
  interrupted: 'SIGINT' | 'SIGTERM' | null;
}

/** Thrown by callers that go on after a stage (the demo) when that stage was interrupted. */
export class TrainingInterrupted extends Error {
  override name = 'TrainingInterrupted';
  constructor(
    readonly signal: 'SIGINT' | 'SIGTERM',
    message: string,
  ) {
    super(message);
  }
}

/** The exit status of a process stopped by `signal` (128 + its number, as a shell reports it). */
export function interruptedExitCode(signal: 'SIGINT' | 'SIGTERM'): number {
  return 128 + constants.signals[signal];
}

export function lrFactor(cfg: TrainConfig, step: number): number {
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

/**
 * Joins the data-parallel run the launcher described (`epg launch`, torchrun:
 * WORLD_SIZE > 1 in the environment), or null when running alone.
 */
function joinProcessGroup(device: string): { group: dist.ProcessGroup; owned: boolean } | null {
  if (dist.isInitialized()) return { group: dist.getDefaultGroup(), owned: false };
  const env = dist.distEnv();
  if (!env || env.worldSize === 1) return null;
  const backend = device.startsWith('cuda') && dist.isNcclAvailable() ? 'nccl' : 'gloo';
  return { group: dist.initProcessGroup({ backend }), owned: true };
}

/** Trains one stage; resumable, interruptible (SIGINT/SIGTERM save a checkpoint first). */
export async function train(config: TrainConfig, opts: TrainOptions): Promise<TrainResult> {
  const joined = joinProcessGroup(config.device);
  try {
    return await removingUnstartedRun((start) => trainOnRank(config, opts, joined?.group ?? null, start));
  } finally {
    if (joined?.owned) dist.destroyProcessGroup();
  }
}

async function trainOnRank(
  config: TrainConfig,
  opts: TrainOptions,
  group: dist.ProcessGroup | null,
  start: RunStart,
): Promise<TrainResult> {
  const rank = group?.rank ?? 0;
  const worldSize = group?.size ?? 1;
  const isMain = rank === 0;
  // Logs and files come from rank 0 only.
  const log = isMain ? (opts.log ?? ((l: string) => console.log(l))) : () => {};
  if (config.batchSize % worldSize !== 0)
    throw new Error(`batchSize ${config.batchSize} (global) is not divisible by the ${worldSize} ranks`);
  const { cfg, runDir, resume } = planRun(config, opts.resume, group, log);
  if (isMain && !resume) start.createdDir = runDir;
  if (isMain) writeFileAtomic(join(runDir, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');

  const device = trainingDevice(cfg, group);
  torch.manualSeed(cfg.seed);
  const data = await opts.data(cfg, device, cfg.seed, { rank, worldSize });
  const stage = createStage(cfg, stageContext(cfg, device, data, log, group));
  const scaler = gradScaler(cfg, device);
  const sampleGen = new torch.Generator(device, cfg.seed + 1);
  const state: TrainingState = { cfg, runDir, device, stage, scaler, sampleGen, data };
  const startStep = resume ? restoreTrainingState(state, resume.source, resume.meta) : 0;
  const ddp = group ? wrapDataParallel(stage, group, cfg.seed, startStep) : null;
  log(
    `${cfg.stage}: ${cfg.preset} (${(stage.model.numParameters() / 1e6).toFixed(2)}M parameters), ` +
      `${data.imageSize}×${data.imageSize}×${data.channels}, batch ${cfg.batchSize}${cfg.accumulate > 1 ? ` × ${cfg.accumulate} micro-batches` : ''}, ${cfg.steps} steps on ${device}${worldSize > 1 ? ` × ${worldSize} ranks` : ''}, ${cfg.precision}; run ${runDir}`,
  );

  const stopSignal = new StopSignal(group);
  const update = makeUpdate(cfg, device, stage, ddp, scaler);
  const graphs = cfg.cudaGraph === 'on' ? StepGraphs.open(cfg, device, worldSize, stage, update, log) : null;
  const metrics = new MetricsReader({
    runDir: isMain ? runDir : null,
    stage: cfg.stage,
    steps: cfg.steps,
    startStep,
    device,
    flopsPerImage: trainingFlopsPerImage(cfg.stage, cfg.preset, {
      imageSize: data.imageSize,
      inChannels: data.channels,
      numClasses: cfg.numClasses,
      perceptual: stage instanceof CmStage && stage.perceptual !== null,
    }),
    // images/s counts the global batch: the peak is that of all ranks.
    peakTflops: cfg.peakTflops * worldSize,
    ...(opts.onLoss ? { onLoss: opts.onLoss } : {}),
  });
  const refusal = evalRefusal(cfg);
  if (refusal !== null) log(refusal);
  const evalDue = (step: number): boolean =>
    isMain && refusal === null && cfg.evalEvery > 0 && step % cfg.evalEvery === 0;
  const checkpoint = (step: number): string => (isMain ? saveTrainingCheckpoint(state, step) : '');
  const samplesPath = (step: number): string => join(runDir, `samples-${String(step).padStart(7, '0')}.png`);
  const stopAt = opts.stopAfter !== undefined ? Math.min(cfg.steps, startStep + opts.stopAfter) : cfg.steps;
  let step = startStep;
  let stopped: 'SIGINT' | 'SIGTERM' | null = null;
  let lastFile = '';
  try {
    while (step < stopAt) {
      // Learning rate: a pure function of the step.
      optim.setLr(stage.optimizer, cfg.optim.lr * lrFactor(cfg, step));

      if (isMain && cfg.sampleEvery > 0 && step > 0 && step % cfg.sampleEvery === 0 && stage.name !== 'pretrain')
        saveSamples(stage, data, cfg, sampleGen, samplesPath(step));

      // Let signal handlers and other macrotasks run: an in-memory data source
      // resolves at once, so without this the loop would never yield to them.
      await new Promise((resolve) => setImmediate(resolve));
      // cfg.accumulate micro-batches make one optimizer step.
      const batches: StageBatch[] = [];
      for (let i = 0; i < cfg.accumulate; i++) batches.push(await data.next(step));
      const logStep = opts.lossEveryStep === true || (step + 1) % cfg.logEvery === 0 || step + 1 === stopAt;
      // Clip only after warm-up (spec §5.3).
      const clip = cfg.optim.gradClip > 0 && step >= cfg.optim.warmupSteps;
      // A capture must not meet another thread's device sync (a metric read in flight).
      if (graphs?.capturesNext(step, clip)) await metrics.settled();
      const packed = torch.tidy(() => {
        const named = graphs ? graphs.step(batches[0]!, step, clip) : update(batches, step, clip);
        return logStep ? packMetrics(named, device, group) : null;
      });
      batches.forEach(disposeBatch);
      step++;
      start.updated = true;
      // Post-hoc EMA, outside a captured graph: its β changes with the step, on the host.
      if (stage.phema) {
        stage.phema.update();
        if (isMain && (step % cfg.phema.snapshotEvery === 0 || step === cfg.steps))
          writePhemaSnapshot(runDir, stage.phema, cfg, step);
      }

      metrics.countImages(cfg.batchSize * cfg.accumulate);
      if (packed) metrics.read(step, stage.optimizer.paramGroups[0]!.lr, step === stopAt, packed);
      metrics.throwIfFailed();
      if (evalDue(step)) {
        const r = await evaluateFid(cfg, stage, device, data.imageSize);
        log(
          `eval at step ${step}: ${r.label} ${r.fid.toFixed(2)} against ${r.numReference ?? '?'} ${cfg.data.source} test images, ${r.seconds.toFixed(1)} s`,
        );
        metrics.excludeTime(r.seconds);
        metrics.extra(step, { fid: r.fid, eval_sec: r.seconds }, { fid: 'eval/fid', eval_sec: 'eval/seconds' });
      }
      if (cfg.checkpointEvery > 0 && step % cfg.checkpointEvery === 0 && step < stopAt) lastFile = checkpoint(step);
      // Data-parallel ranks agree on a stop at log steps only (a host round trip).
      stopped = stopSignal.poll(logStep);
      if (stopped) {
        log(`\n${stopped}: saving a checkpoint at step ${step} before exiting`);
        break;
      }
    }
    await metrics.finish();
    lastFile = checkpoint(step);
    if (isMain && stage.name !== 'pretrain' && step === cfg.steps && cfg.sampleCount > 0)
      saveSamples(stage, data, cfg, sampleGen, samplesPath(step));
  } finally {
    await metrics.close();
    stopSignal[Symbol.dispose]();
    graphs?.dispose();
    ddp?.dispose();
    await data.close();
    stage.dispose();
    scaler?.dispose();
    sampleGen.dispose();
  }
  return {
    runDir,
    step,
    checkpoint: lastFile,
    losses: metrics.losses,
    seconds: metrics.seconds,
    // A signal that came after the last step (during the final checkpoint) stopped nothing.
    interrupted: step < stopAt ? stopped : null,
  };
}

/** One GPU per rank: cuda means cuda:LOCAL_RANK in a data-parallel run. */
function trainingDevice(cfg: TrainConfig, group: dist.ProcessGroup | null): torch.Device {
  const localRank = dist.distEnv()?.localRank ?? 0;
  const device = (group && cfg.device === 'cuda' ? `cuda:${localRank}` : cfg.device) as torch.Device;
  if (device.startsWith('cuda') && !torch.cuda.isAvailable())
    throw new Error(`device '${cfg.device}' requested but CUDA is not available; use --set device=cpu`);
  if (group && device.startsWith('cuda')) torch.cuda.setDevice(localRank);
  return device;
}

function stageContext(
  cfg: TrainConfig,
  device: torch.Device,
  data: DataPipeline,
  log: (line: string) => void,
  group: dist.ProcessGroup | null,
): StageContext {
  return {
    cfg,
    device,
    imageSize: data.imageSize,
    inChannels: data.channels,
    clamp: data.clamp,
    log,
    // NT-Xent over the global batch (spec §4.2): the targets of all ranks, this
    // rank's block first. They are stop-gradient, so a plain gather suffices.
    ...(group
      ? { gather: (t: Tensor) => torch.tidy(() => group.allGather(t).roll(-group.rank * t.shape[0]!, 0)) }
      : {}),
  };
}

/** fp16's dynamic loss scaling (the other precisions need none). */
function gradScaler(cfg: TrainConfig, device: torch.Device): optim.GradScaler | null {
  return cfg.precision === 'fp16'
    ? new optim.GradScaler({
        device: device as 'cpu' | 'cuda',
        initScale: 2 ** 14,
        growthFactor: 2 ** (1 / 1000),
        growthInterval: 1,
      })
    : null;
}

/** Data parallel: per-rank random streams, global BatchNorm statistics, gradients averaged over ranks. */
function wrapDataParallel(
  stage: TrainingStage,
  group: dist.ProcessGroup,
  seed: number,
  startStep: number,
): dist.DistributedDataParallel {
  // Every rank draws its own noise and augmentations: a stream of (seed, rank, step).
  torch.manualSeed(rankSeed(seed, group.rank, startStep));
  // BatchNorm statistics over the global batch (spec §3: SyncBatchNorm on the model and the target).
  for (const m of [stage.model, ...(stage instanceof PretrainStage ? [stage.target] : [])])
    nn.convertSyncBatchNorm(m, group);
  // Buffers are not broadcast each step: every rank computes identical ones
  // (global BatchNorm statistics, fixed position embeddings).
  return new dist.DistributedDataParallel(stage.model, { group, broadcastBuffers: false });
}

function disposeBatch(batch: StageBatch): void {
  disposeAll([batch.x, batch.labels, ...(batch.xAug ? [batch.xAug] : []), ...(batch.xAug2 ? [batch.xAug2] : [])]);
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
