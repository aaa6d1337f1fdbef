// One trainer for the three stages, read top to bottom in nanoGPT's order
// (STYLE.md habit 8): LR → checkpoint/samples → batch → forward/backward →
// unscale + clip → step → zero grads → EMA/target → log.
import { mkdirSync, readdirSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';

import * as torch from '@epg/torch';
import { dist, nn, optim, type Tensor } from '@epg/torch';

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
import { loadInitCheckpoint } from './official-init.js';
import { removingUnstartedRun, type RunStart } from './run-cleanup.js';
import { rankSeed } from './seeds.js';
import {
  CmStage,
  DmStage,
  PretrainStage,
  type FinetuneInit,
  type StageBatch,
  type StageContext,
  type TrainingStage,
} from './stages.js';
import type { ClampRange } from '../diffusion/samplers.js';

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

function createStage(cfg: TrainConfig, ctx: StageContext): TrainingStage {
  if (cfg.stage === 'pretrain') return new PretrainStage(ctx);
  const f = cfg.finetune;
  // A pre-training checkpoint has no 'ema.' tensors; a diffusion one's are its best weights.
  const init = f.init ? loadInitCheckpoint(f.init, ctx.device, ['ema.', 'model.'], cfg) : null;
  // Consistency tuning may also start from a whole diffusion model (ECT's recipe).
  const fromDiffusion = cfg.stage === 'cm' && init?.meta.stage === 'dm';
  try {
    if (init && init.meta.stage !== 'pretrain' && !fromDiffusion)
      throw new Error(
        `finetune.init must be a pre-training checkpoint${cfg.stage === 'cm' ? ' (or, for consistency tuning, a diffusion one)' : ''}; ` +
          `${init.path} is a '${init.meta.stage}' checkpoint`,
      );
    if (init && init.meta.preset !== cfg.preset)
      throw new Error(
        `finetune.init ${init.path} was trained with preset ${init.meta.preset}, this run uses ${cfg.preset}`,
      );
    if (cfg.stage === 'dm') return new DmStage(ctx, init?.tensors ?? null);
    // The perceptual encoder of L_aux is a pre-training checkpoint: finetune.perceptual, else the init when it is one.
    const percSource = f.perceptual === 'none' ? null : f.perceptual || (fromDiffusion ? null : f.init);
    const perc = percSource
      ? percSource === f.init
        ? init
        : loadInitCheckpoint(percSource, ctx.device, ['model.'], cfg)
      : null;
    try {
      if (perc && perc.meta.stage !== 'pretrain')
        throw new Error(
          `finetune.perceptual must be a pre-training checkpoint; ${perc.path} is a '${perc.meta.stage}' checkpoint`,
        );
      const start: FinetuneInit | null = init
        ? fromDiffusion
          ? { kind: 'diffusion', tensors: init.tensors, path: init.path }
          : { kind: 'encoder', tensors: init.tensors }
        : null;
      return new CmStage(ctx, start, perc?.tensors ?? null);
    } finally {
      if (perc && perc !== init) disposeAll(perc.tensors.values());
    }
  } finally {
    if (init) disposeAll(init.tensors.values());
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
  let cfg = config;
  if (cfg.batchSize % worldSize !== 0)
    throw new Error(`batchSize ${cfg.batchSize} (global) is not divisible by the ${worldSize} ranks`);
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
      cudaGraph: config.cudaGraph,
    };
    resumeMeta = meta;
    runDir = join(path, '..');
    log(`resuming ${meta.stage} from ${path} at step ${meta.step}`);
  } else if (group) {
    // Rank 0 names the run; the others learn the name through the store.
    const key = `epg/run_dir/${runDirRequests++}`;
    if (isMain) group.store.set(key, (runDir = newRunDir(cfg)));
    else runDir = group.store.get(key);
  } else {
    runDir = newRunDir(cfg);
  }
  if (isMain && !opts.resume) start.createdDir = runDir;
  if (isMain) writeFileAtomic(join(runDir, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');

  // One GPU per rank: cuda means cuda:LOCAL_RANK in a data-parallel run.
  const localRank = dist.distEnv()?.localRank ?? 0;
  const device = (group && cfg.device === 'cuda' ? `cuda:${localRank}` : cfg.device) as torch.Device;
  if (device.startsWith('cuda') && !torch.cuda.isAvailable())
    throw new Error(`device '${cfg.device}' requested but CUDA is not available; use --set device=cpu`);
  if (group && device.startsWith('cuda')) torch.cuda.setDevice(localRank);
  torch.manualSeed(cfg.seed);
  const data = await opts.data(cfg, device, cfg.seed, { rank, worldSize });
  const ctx: StageContext = {
    cfg,
    device,
    imageSize: data.imageSize,
    inChannels: data.channels,
    clamp: data.clamp,
    log,
    // NT-Xent over the global batch (spec §4.2): the targets of all ranks, this
    // rank's block first. They are stop-gradient, so a plain gather suffices.
    ...(group ? { gather: (t: Tensor) => torch.tidy(() => group.allGather(t).roll(-rank * t.shape[0]!, 0)) } : {}),
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
  let ddp: dist.DistributedDataParallel | null = null;
  if (group) {
    // Every rank draws its own noise and augmentations: a stream of (seed, rank, step).
    torch.manualSeed(rankSeed(cfg.seed, rank, startStep));
    // BatchNorm statistics over the global batch (spec §3: SyncBatchNorm on the model and the target).
    for (const m of [stage.model, ...(stage instanceof PretrainStage ? [stage.target] : [])])
      nn.convertSyncBatchNorm(m, group);
    // Buffers are not broadcast each step: every rank computes identical ones
    // (global BatchNorm statistics, fixed position embeddings).
    ddp = new dist.DistributedDataParallel(stage.model, { group, broadcastBuffers: false });
  }
  log(
    `${cfg.stage}: ${cfg.preset} (${(stage.model.numParameters() / 1e6).toFixed(2)}M parameters), ` +
      `${data.imageSize}×${data.imageSize}×${data.channels}, batch ${cfg.batchSize}, ${cfg.steps} steps on ${device}${worldSize > 1 ? ` × ${worldSize} ranks` : ''}, ${cfg.precision}; run ${runDir}`,
  );

  const jsonl = isMain ? new JsonlWriter(join(runDir, 'stats.jsonl')) : null;
  const tb = isMain ? new TensorBoardWriter(runDir) : null;
  const progress = isMain ? new Progress(cfg.stage, cfg.steps, startStep) : null;
  let stopRequested: 'SIGINT' | 'SIGTERM' | null = null;
  const onSignal = (sig: 'SIGINT' | 'SIGTERM') => () => {
    stopRequested = sig;
  };
  const sigint = onSignal('SIGINT');
  const sigterm = onSignal('SIGTERM');
  process.on('SIGINT', sigint);
  process.on('SIGTERM', sigterm);

  const checkpoint = (step: number): string => {
    if (!isMain) return '';
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

  // One update, in nanoGPT's order: forward → backward → unscale + clip → step →
  // zero grads → EMA/target. Returns the loss and metrics as 0-d device tensors.
  const update = (batch: StageBatch, step: number, clip: boolean): [string, Tensor][] => {
    const autocast =
      cfg.precision === 'fp32'
        ? null
        : torch.autocastGuard(device.startsWith('cuda') ? 'cuda' : 'cpu', {
            dtype: cfg.precision === 'bf16' ? 'bfloat16' : 'float16',
          });
    let r;
    ddp?.beginStep();
    try {
      r = stage.step(batch, step);
    } finally {
      autocast?.[Symbol.dispose]();
    }
    const scaled = scaler ? scaler.scale(r.loss) : r.loss;
    // With DDP the gradients arrive averaged over ranks, bucket by bucket during the backward pass.
    if (ddp) ddp.backward(scaled);
    else scaled.backward();
    if (scaler) scaler.unscale_(stage.optimizer);
    const gradNorm = clip ? optim.clipGradNorm_(stage.model.parameters(), cfg.optim.gradClip) : null;
    if (scaler) {
      scaler.step(stage.optimizer);
      scaler.update();
    } else {
      stage.optimizer.step();
    }
    stage.optimizer.zeroGrad();
    stage.afterStep(step);
    const named: [string, Tensor][] = [['loss', r.loss.detach()], ...Object.entries(r.metrics)];
    if (gradNorm) named.push(['grad_norm', gradNorm]);
    return named;
  };
  const graphs = cfg.cudaGraph === 'on' ? StepGraphs.open(cfg, device, worldSize, stage, update, log) : null;

  const losses = new Map<number, number>();
  const t0 = performance.now();
  let lastFile = '';
  let imagesSeen = 0;
  let lastLogTime = performance.now();
  let step = startStep;
  // The metric reads in flight (see below), chained so lines keep their order.
  let logged: Promise<void> = Promise.resolve();
  let logError: unknown;
  const stopAt = opts.stopAfter !== undefined ? Math.min(cfg.steps, startStep + opts.stopAfter) : cfg.steps;
  try {
    while (step < stopAt) {
      // Learning rate: a pure function of the step.
      const factor = lrFactor(cfg, step);
      optim.setLr(stage.optimizer, cfg.optim.lr * factor);

      // Periodic samples.
      if (isMain && cfg.sampleEvery > 0 && step > 0 && step % cfg.sampleEvery === 0 && stage.name !== 'pretrain')
        saveSamples(stage, data, cfg, sampleGen, join(runDir, `samples-${String(step).padStart(7, '0')}.png`));

      // Let signal handlers and other macrotasks run: an in-memory data source
      // resolves at once, so without this the loop would never yield to them.
      await new Promise((resolve) => setImmediate(resolve));
      const batch = await data.next(step);
      const readLoss = opts.lossEveryStep === true || (step + 1) % cfg.logEvery === 0 || step + 1 === stopAt;
      // Clip only after warm-up (spec §5.3).
      const clip = cfg.optim.gradClip > 0 && step >= cfg.optim.warmupSteps;
      // A capture must not meet another thread's device sync (a metric read in flight).
      if (graphs?.capturesNext(step, clip)) await logged;
      const metrics = torch.tidy(() => {
        const named = graphs ? graphs.step(batch, step, clip) : update(batch, step, clip);
        if (!readLoss) return null;
        // All metrics in one tensor, on the device; in a data-parallel run, their mean over ranks.
        const packed = torch.stack(named.map(([, t]) => t.to({ dtype: 'float64', device })));
        group?.allReduce(packed, 'avg');
        return { names: named.map(([k]) => k), packed };
      });
      disposeAll([batch.x, batch.labels, ...(batch.xAug ? [batch.xAug] : []), ...(batch.xAug2 ? [batch.xAug2] : [])]);
      step++;
      start.updated = true;
      imagesSeen += cfg.batchSize;

      // All ranks stop together: a signal seen by any rank stops every rank at this
      // step, and each reports that signal (its number travels: SIGTERM wins over SIGINT).
      if (group) {
        const flag = torch.tensor([stopRequested ? constants.signals[stopRequested] : 0], { dtype: 'int32' });
        group.allReduce(flag, 'max');
        const seen = flag.item();
        flag.dispose();
        if (seen === constants.signals.SIGTERM) stopRequested = 'SIGTERM';
        else if (seen === constants.signals.SIGINT) stopRequested ??= 'SIGINT';
      }

      if (metrics) {
        const now = performance.now();
        const at = {
          step,
          lr: stage.optimizer.paramGroups[0]!.lr,
          ips: (imagesSeen * 1000) / Math.max(1, now - lastLogTime),
          time: (now - t0) / 1000,
          last: step === stopAt,
        };
        lastLogTime = now;
        imagesSeen = 0;
        // Read without waiting here: the copy (and its wait for the device) runs
        // on a worker thread; the line is written, in order, when it lands.
        const read = metrics.packed.toTypedArrayAsync();
        metrics.packed.dispose();
        logged = Promise.all([logged, read])
          .then(([, values]) => {
            const out = Object.fromEntries(metrics.names.map((k, i) => [k, Number(values[i])]));
            losses.set(at.step, out.loss!);
            opts.onLoss?.(at.step, out.loss!);
            jsonl?.write({ step: at.step, ...out, lr: at.lr, images_per_sec: at.ips, time: at.time });
            tb?.scalars(at.step, {
              ...Object.fromEntries(Object.entries(out).map(([k, v]) => [`train/${k}`, v])),
              'train/lr': at.lr,
              'perf/images_per_sec': at.ips,
            });
            progress?.update(at.step, { loss: out.loss!, lr: at.lr, 'img/s': at.ips }, at.last);
          })
          .catch((e: unknown) => {
            logError ??= e;
          });
      }
      if (logError !== undefined) throw logError;
      if (cfg.checkpointEvery > 0 && step % cfg.checkpointEvery === 0 && step < stopAt) lastFile = checkpoint(step);
      if (stopRequested) {
        log(`\n${stopRequested}: saving a checkpoint at step ${step} before exiting`);
        break;
      }
    }
    await logged;
    if (logError !== undefined) throw logError;
    progress?.done();
    lastFile = checkpoint(step);
    if (isMain && stage.name !== 'pretrain' && step === cfg.steps && cfg.sampleCount > 0)
      saveSamples(stage, data, cfg, sampleGen, join(runDir, `samples-${String(step).padStart(7, '0')}.png`));
  } finally {
    await logged; // never rejects (errors go to logError): the writers close after the last line
    process.off('SIGINT', sigint);
    process.off('SIGTERM', sigterm);
    tb?.close();
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
    losses,
    seconds: (performance.now() - t0) / 1000,
    // A signal that came after the last step (during the final checkpoint) stopped nothing.
    interrupted: step < stopAt ? stopRequested : null,
  };
}

let runDirRequests = 0;

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

type Update = (batch: StageBatch, step: number, clip: boolean) => [string, Tensor][];

/**
 * The training step as CUDA graphs (cfg.cudaGraph 'on'): one graph per
 * stage.graphKey and clipping state, captured after two eager warm-up steps
 * and replayed on static copies of each batch. The lr reaches the graph
 * through AdamW's capturable lr tensor. Off CUDA the same path runs eagerly
 * with the capture checks, which is how the CPU tests check it for host transfers.
 */
class StepGraphs {
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
            const named = this.update({ x: x!, labels: labels! }, this.#step, clip);
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
