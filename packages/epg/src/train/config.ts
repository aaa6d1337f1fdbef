// Typed training configs with defaults, JSON preset files, and `--set key=value`
// overrides that are type-checked against the defaults: an unknown key or a
// value of the wrong type is an error that lists the valid keys (STYLE.md 10).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { optim } from '@epg/torch';

import type { CmPrecond } from '../diffusion/denoiser.js';
import { GUIDANCE_INTERVAL } from '../diffusion/samplers.js';
import { CM_LOGNORMAL, DM_GRID_SIZE, DM_LOGNORMAL, ECT_SCHEDULE, PRETRAIN_CURRICULUM } from '../diffusion/schedules.js';
import { PSEUDO_HUBER_C, TAU_AUX, TAU_CON, TAU_RC } from '../losses/objectives.js';

export type Stage = 'pretrain' | 'dm' | 'cm';
export type Precision = 'fp32' | 'bf16' | 'fp16';

export interface DataConfig {
  /** 'fashion-mnist', 'cifar10', a folder or zip of class sub-folders, or a shard folder from `epg prepare`. */
  source: string;
  /** Sub-folder inside a zip or folder (e.g. 'train'). */
  subdir: string;
  split: 'train' | 'test';
  /** 'imagenet' (mean/std, σ_data 0.5), 'simple' (2x − 1) or 'gray'. */
  normalization: 'imagenet' | 'simple' | 'gray';
  workers: number;
}

export interface OptimConfig {
  lr: number;
  beta1: number;
  beta2: number;
  weightDecay: number;
  /** Exclude pos_embed, cls_token (and norms/biases if noDecayNormsBiases) from weight decay (spec §5.3). */
  noDecayTokens: boolean;
  warmupSteps: number;
  /** 'cosine': warm-up then cosine to 0 at `steps`; 'piecewise': warm-up then lrFactors at lrMilestones. */
  schedule: 'cosine' | 'piecewise' | 'constant';
  lrMilestones: number[];
  lrFactors: number[];
  /** Global-norm clip (0: off), applied only after warm-up (spec §5.3). */
  gradClip: number;
}

export interface TrainConfig {
  stage: Stage;
  preset: string;
  numClasses: number;
  data: DataConfig;
  optim: OptimConfig;
  /** The global batch of one forward/backward pass (split over the ranks of a data-parallel run). */
  batchSize: number;
  /**
   * Gradient accumulation: micro-batches of batchSize per optimizer step (1: none).
   * The lr, clipping, EMA, logging and checkpoints count optimizer steps. For dm,
   * and cm without L_aux (finetune.perceptual=none), the update equals that of one
   * accumulate×batchSize batch; pre-training's BatchNorm statistics and NT-Xent
   * negatives, and cm's L_aux negatives, see one micro-batch at a time.
   */
  accumulate: number;
  steps: number;
  seed: number;
  device: string;
  precision: Precision;
  /**
   * CUDA-graph capture of the fine-tuning step (forward, backward, clipping,
   * AdamW, EMA as one replayed graph): 'on' captures on CUDA in a one-process
   * dm/cm run in bf16/fp32 (others say why they run eagerly); 'off' never does.
   */
  cudaGraph: 'off' | 'on';
  /**
   * Activation checkpointing of the transformer blocks ('on'): each block's
   * activations are recomputed in the backward pass instead of stored. Same
   * gradients; the memory of the blocks' activations (most of a ViT's) for
   * about one more forward pass of compute (BENCHMARKS.md, "Activation checkpointing").
   */
  activationCheckpointing: 'off' | 'on';
  /** EMA of the weights used for sampling (fine-tuning; 0 disables). */
  emaDecay: number;
  /**
   * Post-hoc EMA (EDM2, Karras et al. 2024): power-function EMAs of the
   * fine-tuned weights tracked beside emaDecay's, from whose snapshots
   * `epg phema RUN --std S` reconstructs the EMA of any σ_rel afterwards.
   */
  phema: {
    /**
     * The relative widths σ_rel tracked, each in (0, 0.2887) (EDM2: 0.05,0.1);
     * empty: off. Each costs one more copy of the model in memory (dm and cm only).
     */
    stds: number[];
    /**
     * Optimizer steps between snapshots (and the last step): phema-<step>.safetensors
     * in the run folder, one copy of the weights per σ_rel; all are kept.
     */
    snapshotEvery: number;
  };
  runDir: string;
  logEvery: number;
  checkpointEvery: number;
  /** Checkpoints kept: the newest keepLast (at least 1)… */
  keepLast: number;
  /** …and every one whose step is a multiple of keepEvery (0: none), to revisit a run's history. */
  keepEvery: number;
  sampleEvery: number;
  /**
   * The device's peak dense TFLOP/s at the run's precision (e.g. 989 for an
   * H100 SXM in bf16), for MFU in the progress line and logs; 0: MFU not shown.
   * A data-parallel run's peak is this × the number of ranks.
   */
  peakTflops: number;
  /**
   * Every evalEvery optimizer steps of a dm or cm run (0: never), an FID proxy:
   * evalSamples class-balanced samples from the EMA weights (the sampler of the
   * periodic grids) against the training dataset's test split (fashion-mnist,
   * cifar10; other datasets are skipped with a log line), logged as `fid`.
   */
  evalEvery: number;
  evalSamples: number;
  /** Test-split images behind the eval's reference statistics (cached under $EPG_CACHE/fid). */
  evalRefImages: number;
  /** Images in the periodic sample grid. */
  sampleCount: number;
  sampleSteps: number;
  pretrain: {
    /** θ⁻ momentum of the contrastive target (spec §4.1 step 8). */
    targetEma: number;
    tauCon: number;
    tauRc: number;
    tauSchedule: 'constant' | 'interpolated';
    tauMaxStart: number;
    tauMaxEnd: number;
    /** iCT curriculum: N(k) from startScales to endScales over curriculumSteps (0: use `steps`). */
    startScales: number;
    endScales: number;
    curriculumSteps: number;
  };
  finetune: {
    /** Pre-training checkpoint to start from ('' trains from scratch); for cm also a dm checkpoint (ECT's consistency tuning). */
    init: string;
    labelDropout: number;
    /** Decoder attention-output dropout (0.5 in the CM recipe). */
    drop: number;
    dmPMean: number;
    dmPStd: number;
    dmGridSize: number;
    cmPMean: number;
    cmPStd: number;
    cmC: number;
    cmQ: number;
    cmK: number;
    cmB: number;
    cmStageSteps: number;
    /**
     * How the consistency function reads the network (diffusion/denoiser.ts CmPrecond):
     * 'edm' as the released code (spec §6.2); 'x0' as the diffusion model's x̂₀, so
     * ECT from a diffusion checkpoint starts at that model; 'auto' (the default)
     * resolves to 'x0' when finetune.init is a diffusion checkpoint and 'edm'
     * otherwise, and the run's config.json records the resolved value.
     */
    cmPrecond: 'auto' | CmPrecond;
    /** The frozen pre-trained encoder of the CM auxiliary loss ('' reuses `init` when it is a pre-training checkpoint; 'none' disables it). */
    perceptual: string;
    tauAux: number;
    /** Sampling for periodic grids: CFG scale and guidance interval. */
    cfgScale: number;
    guidanceLow: number;
    guidanceHigh: number;
  };
}

/** The defaults: the paper's settings come from the constants the formulas default to (spec §2–§7). */
export const DEFAULTS: TrainConfig = {
  stage: 'pretrain',
  preset: 'EPG-T/4',
  numClasses: 10,
  data: { source: 'fashion-mnist', subdir: '', split: 'train', normalization: 'gray', workers: 2 },
  optim: {
    lr: 2e-4,
    beta1: 0.9,
    beta2: 0.95,
    weightDecay: 0.03,
    noDecayTokens: false,
    warmupSteps: 100,
    schedule: 'cosine',
    lrMilestones: [],
    lrFactors: [],
    gradClip: 0,
  },
  batchSize: 64,
  accumulate: 1,
  steps: 1000,
  seed: 0,
  device: 'cpu',
  precision: 'fp32',
  cudaGraph: 'off',
  activationCheckpointing: 'off',
  emaDecay: 0.9999,
  phema: { stds: [], snapshotEvery: 500 },
  runDir: 'runs',
  logEvery: 10,
  checkpointEvery: 500,
  keepLast: 3,
  keepEvery: 0,
  sampleEvery: 0,
  peakTflops: 0,
  evalEvery: 0,
  evalSamples: 256,
  evalRefImages: 10000,
  sampleCount: 64,
  sampleSteps: 32,
  pretrain: {
    targetEma: 0.99,
    tauCon: TAU_CON,
    tauRc: TAU_RC,
    tauSchedule: 'constant',
    tauMaxStart: 0.2,
    tauMaxEnd: 0.1,
    startScales: PRETRAIN_CURRICULUM.startScales,
    endScales: PRETRAIN_CURRICULUM.endScales,
    curriculumSteps: 0,
  },
  finetune: {
    init: '',
    labelDropout: 0.1,
    drop: 0,
    dmPMean: DM_LOGNORMAL.pMean,
    dmPStd: DM_LOGNORMAL.pStd,
    dmGridSize: DM_GRID_SIZE,
    cmPMean: CM_LOGNORMAL.pMean,
    cmPStd: CM_LOGNORMAL.pStd,
    cmC: PSEUDO_HUBER_C,
    cmQ: ECT_SCHEDULE.q,
    cmK: ECT_SCHEDULE.k,
    cmB: ECT_SCHEDULE.b,
    cmStageSteps: ECT_SCHEDULE.stageSteps,
    cmPrecond: 'auto',
    perceptual: '',
    tauAux: TAU_AUX,
    cfgScale: 1,
    guidanceLow: GUIDANCE_INTERVAL[0],
    guidanceHigh: GUIDANCE_INTERVAL[1],
  },
};

/** A configuration error: names the key and lists what is valid. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Json = string | number | boolean | null | Json[] | { [k: string]: Json };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Every dotted key of a config, with its default value. */
export function configKeys(
  obj: Record<string, unknown> = DEFAULTS as unknown as Record<string, unknown>,
  prefix = '',
): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const [k, v] of Object.entries(obj)) {
    if (isObject(v)) out.push(...configKeys(v, `${prefix}${k}.`));
    else out.push([`${prefix}${k}`, v]);
  }
  return out;
}

/**
 * finetune.cmPrecond as a run applies it: 'auto' is 'x0' for consistency tuning
 * from a diffusion checkpoint (ECT) and 'edm' otherwise; the other values stand.
 */
export function concreteCmPrecond(setting: TrainConfig['finetune']['cmPrecond'], fromDiffusion: boolean): CmPrecond {
  return setting === 'auto' ? (fromDiffusion ? 'x0' : 'edm') : setting;
}

const ENUMS: Record<string, readonly string[]> = {
  stage: ['pretrain', 'dm', 'cm'],
  precision: ['fp32', 'bf16', 'fp16'],
  cudaGraph: ['off', 'on'],
  activationCheckpointing: ['off', 'on'],
  'data.split': ['train', 'test'],
  'data.normalization': ['imagenet', 'simple', 'gray'],
  'optim.schedule': ['cosine', 'piecewise', 'constant'],
  'pretrain.tauSchedule': ['constant', 'interpolated'],
  'finetune.cmPrecond': ['auto', 'edm', 'x0'],
};

function coerce(key: string, raw: unknown, like: unknown): unknown {
  const fail = (why: string): never => {
    throw new ConfigError(`config key '${key}': ${why}`);
  };
  if (typeof like === 'number') {
    const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
    if (!Number.isFinite(n)) fail(`expected a number, got ${JSON.stringify(raw)}`);
    return n;
  }
  if (typeof like === 'boolean') {
    if (typeof raw === 'boolean') return raw;
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    return fail(`expected true or false, got ${JSON.stringify(raw)}`);
  }
  if (typeof like === 'string') {
    if (typeof raw !== 'string') fail(`expected a string, got ${JSON.stringify(raw)}`);
    const allowed = ENUMS[key];
    if (allowed && !allowed.includes(raw as string))
      fail(`expected one of ${allowed.join(', ')}, got '${String(raw)}'`);
    return raw;
  }
  if (Array.isArray(like)) {
    const arr = Array.isArray(raw)
      ? raw
      : typeof raw === 'string'
        ? raw.trim() === ''
          ? []
          : raw.split(',')
        : fail(`expected a list (comma-separated), got ${JSON.stringify(raw)}`);
    return (arr as unknown[]).map((x, i) => coerce(`${key}[${i}]`, x, 0));
  }
  return fail('unsupported type');
}

function setPath(obj: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let cur = obj;
  for (const p of parts.slice(0, -1)) cur = cur[p] as Record<string, unknown>;
  cur[parts[parts.length - 1]!] = value;
}

function knownKeys(): Map<string, unknown> {
  return new Map(configKeys());
}

/** Applies a (possibly nested, possibly partial) object of settings, checking every key and type. */
export function applySettings(base: TrainConfig, settings: Record<string, unknown>, origin: string): TrainConfig {
  const out = structuredClone(base) as unknown as Record<string, unknown>;
  const keys = knownKeys();
  const flat: [string, unknown][] = [];
  const walk = (o: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(o)) {
      const key = prefix + k;
      if (isObject(v) && !keys.has(key)) walk(v, `${key}.`);
      else flat.push([key, v]);
    }
  };
  walk(settings, '');
  for (const [key, v] of flat) {
    if (key.startsWith('$') || key === 'description') continue;
    if (!keys.has(key))
      throw new ConfigError(`${origin}: unknown config key '${key}'. Valid keys:\n  ${[...keys.keys()].join('\n  ')}`);
    setPath(out, key, coerce(key, v, keys.get(key)));
  }
  return out as unknown as TrainConfig;
}

/** Parses `key=value` overrides (from --set). */
export function parseOverrides(pairs: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--set expects key=value, got '${p}'`);
    out[p.slice(0, eq).trim()] = p.slice(eq + 1);
  }
  return out;
}

const CONFIG_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'configs');

/** The preset config files shipped in packages/epg/configs. */
export function presetConfigPath(name: string): string | undefined {
  const p = join(CONFIG_DIR, name.endsWith('.json') ? name : `${name}.json`);
  return existsSync(p) ? p : undefined;
}

/** Loads a config: defaults ← file (a path or a shipped preset name, which may `$extends` another) ← overrides. */
export function loadConfig(file: string | undefined, overrides: string[] = []): TrainConfig {
  let cfg = DEFAULTS;
  if (file !== undefined) cfg = applyFile(cfg, file, new Set());
  return validate(applySettings(cfg, parseOverrides(overrides), '--set'));
}

function applyFile(base: TrainConfig, file: string, seen: Set<string>): TrainConfig {
  const path = existsSync(file) ? file : presetConfigPath(file);
  if (path === undefined)
    throw new ConfigError(`config '${file}' is neither a file nor a shipped preset (packages/epg/configs/*.json)`);
  if (seen.has(path)) throw new ConfigError(`config ${path}: circular $extends`);
  seen.add(path);
  let json: Json;
  try {
    json = JSON.parse(readFileSync(path, 'utf8')) as Json;
  } catch (e) {
    throw new ConfigError(`config ${path}: invalid JSON (${(e as Error).message})`);
  }
  if (!isObject(json)) throw new ConfigError(`config ${path}: expected a JSON object`);
  const parent = json.$extends;
  const start = typeof parent === 'string' ? applyFile(base, parent, seen) : base;
  return applySettings(start, json, path);
}

/** Cross-field checks. */
export function validate(c: TrainConfig): TrainConfig {
  const must = (ok: boolean, msg: string): void => {
    if (!ok) throw new ConfigError(msg);
  };
  must(Number.isInteger(c.batchSize) && c.batchSize >= 2, `batchSize must be an integer >= 2 (got ${c.batchSize})`);
  must(
    Number.isInteger(c.accumulate) && c.accumulate >= 1,
    `accumulate must be a positive integer: micro-batches per optimizer step (got ${c.accumulate})`,
  );
  must(Number.isInteger(c.steps) && c.steps >= 1, `steps must be a positive integer (got ${c.steps})`);
  must(
    Number.isInteger(c.keepLast) && c.keepLast >= 1,
    `keepLast must be an integer >= 1: the newest checkpoints kept (got ${c.keepLast})`,
  );
  must(
    Number.isInteger(c.keepEvery) && c.keepEvery >= 0,
    `keepEvery must be an integer >= 0: also keep checkpoints at multiples of this step, 0 for none (got ${c.keepEvery})`,
  );
  must(c.peakTflops >= 0, `peakTflops must be >= 0: the device's peak TFLOP/s, 0 to hide MFU (got ${c.peakTflops})`);
  must(
    Number.isInteger(c.evalEvery) && c.evalEvery >= 0,
    `evalEvery must be an integer >= 0: optimizer steps between FID evaluations, 0 for none (got ${c.evalEvery})`,
  );
  must(
    Number.isInteger(c.evalSamples) && c.evalSamples >= 2,
    `evalSamples must be an integer >= 2: samples per FID evaluation (got ${c.evalSamples})`,
  );
  must(
    Number.isInteger(c.evalRefImages) && c.evalRefImages >= 2,
    `evalRefImages must be an integer >= 2: reference images of the FID evaluation (got ${c.evalRefImages})`,
  );
  must(c.optim.lr > 0, `optim.lr must be positive (got ${c.optim.lr})`);
  must(
    c.optim.lrMilestones.length === c.optim.lrFactors.length,
    'optim.lrMilestones and optim.lrFactors need the same length',
  );
  must(c.finetune.labelDropout >= 0 && c.finetune.labelDropout <= 1, 'finetune.labelDropout must be in [0, 1]');
  must(c.emaDecay >= 0 && c.emaDecay < 1, 'emaDecay must be in [0, 1)');
  for (const s of c.phema.stds)
    must(
      s > 0 && s < optim.MAX_STD_REL,
      `phema.stds: each σ_rel must be in (0, ${optim.MAX_STD_REL.toFixed(4)}) (got ${s}); EDM2 tracks 0.05,0.1`,
    );
  must(
    new Set(c.phema.stds).size === c.phema.stds.length,
    `phema.stds: a σ_rel is listed twice (${c.phema.stds.join(',')})`,
  );
  must(
    Number.isInteger(c.phema.snapshotEvery) && c.phema.snapshotEvery >= 1,
    `phema.snapshotEvery must be a positive integer: optimizer steps between post-hoc EMA snapshots (got ${c.phema.snapshotEvery})`,
  );
  must(
    c.phema.stds.length === 0 || c.stage !== 'pretrain',
    'phema.stds: post-hoc EMA tracks the fine-tuned model (stage dm or cm); pre-training has none (set phema.stds=)',
  );
  must(/^(cpu|cuda(:\d+)?)$/.test(c.device), `device must be cpu, cuda or cuda:N (got '${c.device}')`);
  return c;
}
