// `epg experiment FILE`: a declared set of arms (ordinary training runs with
// config overrides), each trained for every seed, sampled and evaluated with the
// Inception FID against the test split at the steps the arm names, beside the
// floor of as many real training images. Every run and every evaluation is
// resumable: stopping and rerunning continues where it stopped. Writes
// results.json, results.md and FID plots against images seen, counted training
// compute (FLOPs, which other work on the machine cannot move) and wall-clock.
//
// The file (JSON; see packages/epg/experiments/ for real ones):
//   { "name": "...", "description": "...", "dataset": "fashion-mnist", "seeds": [0, 1],
//     "set": ["device=cpu"],                          // overrides for every run
//     "eval": { "num": 1000, "refImages": 10000 },
//     "arms": [
//       { "name": "pre", "config": "fashion-mnist-pretrain", "set": ["steps=600"] },
//       { "name": "dm", "config": "fashion-mnist-dm", "init": "pre", "evalAt": [700, 1400],
//         "sample": { "sampler": "heun", "steps": 18, "cfg": 1.5 } } ] }
// An arm with `init` starts from that arm's run of the same seed (its images and
// training time count towards this arm's compute unless "countInit": false);
// `perceptual` names the arm whose encoder is the consistency loss's frozen
// perceptual network. Arms without `sample` are trained, not evaluated.
// `--reuse DIR` lets an arm use another experiment's run instead of training its
// own, where that run has the same training config (seed and init run included).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';

import { writeRealImagesNpz } from './demo.js';
import { EVERY_SIGMA, isGuidanceInterval } from './diffusion/samplers.js';
import { runEval, type EvalResult } from './eval/index.js';
import { trainingFlopsPerImage } from './models/flops.js';
import { writeLineChart, type LineSeries } from './plot.js';
import { sampleFromCheckpoint, type SamplerName } from './sample.js';
import { checkpointFile, readCheckpointMeta } from './train/checkpoint.js';
import { loadConfig, type TrainConfig } from './train/config.js';
import { createDataPipeline, openDataset } from './train/data.js';
import { resolveCmPrecond } from './train/resume.js';
import { train, TrainingInterrupted } from './train/trainer.js';

export interface ArmSampling {
  sampler: SamplerName;
  /** Sampler steps (heun/euler). */
  steps?: number;
  /** Classifier-free guidance scale. */
  cfg?: number;
  /** Guidance interval in unshifted σ, or 'all' (a one-step sampler's σ_max′ lies outside the released one). */
  interval?: [number, number] | 'all';
}

export interface ArmSpec {
  /** Lower-case letters, digits and dashes: it names the arm's folders. */
  name: string;
  /** Legend and table text (default: the name). */
  label?: string;
  /** A shipped config name (fashion-mnist-dm) or a path to a config file. */
  config: string;
  set?: string[];
  /** The arm whose run (same seed) this one starts from: finetune.init. */
  init?: string;
  /** The arm whose pre-trained encoder is the consistency loss's perceptual network: finetune.perceptual. */
  perceptual?: string;
  /** Count the init arm's images and training time in this arm's compute (default true). */
  countInit?: boolean;
  /** Steps at which to sample and evaluate (default: the last step); only with `sample`. */
  evalAt?: number[];
  sample?: ArmSampling;
}

export interface ExperimentSpec {
  name: string;
  description?: string;
  /** The built-in dataset: its train split trains, its test split is the FID reference. */
  dataset: 'fashion-mnist' | 'cifar10';
  seeds: number[];
  /** Overrides for every run, before each arm's own. */
  set?: string[];
  eval: {
    /** Samples per evaluation (and real training images of the floor). */
    num: number;
    /** Test images behind the reference statistics (default: all of them, 10,000). */
    refImages?: number;
    batchSize?: number;
  };
  arms: ArmSpec[];
}

/** One evaluation of one seed of one arm at one step. */
export interface Evaluation {
  arm: string;
  seed: number;
  step: number;
  /** Images this arm's optimizer has seen (plus its init's when countInit). */
  images: number;
  /** Training wall-clock in seconds (plus its init's when countInit). */
  seconds: number;
  fid: number;
  precision: number | null;
  recall: number | null;
  label: string;
}

/** One training run of an experiment: how far it got, at what cost, and where. */
export interface RunProgress {
  step: number;
  seconds: number;
  images: number;
  runDir: string;
  /** Set when the run is another experiment's (--reuse): `OTHER_OUT/results.json#KEY`. Never trained here. */
  reusedFrom?: string;
}

/** What `results.json` holds, and what a rerun reads to continue. */
export interface ExperimentState {
  name: string;
  /** Training progress per run `${arm}-s${seed}`: the step reached and its wall-clock. */
  runs: Record<string, RunProgress>;
  evaluations: Evaluation[];
  floor: { fid: number; precision: number | null; recall: number | null; label: string } | null;
}

export interface ExperimentOptions {
  file: string;
  /** Output folder (default experiments-output/NAME). */
  out?: string;
  /** Device for sampling and evaluation (training uses each run's config). */
  device?: torch.Device;
  /** Only write results.md and the plots from what results.json holds (nothing is trained or evaluated). */
  reportOnly?: boolean;
  /**
   * Output folders of other experiments whose finished runs this one may use
   * instead of training its own: a run with the same training config (seed and
   * init run included) that reached every step this arm needs, with a kept
   * checkpoint at each step to evaluate.
   */
  reuse?: string[];
  log?: (line: string) => void;
}

export class ExperimentError extends Error {
  override name = 'ExperimentError';
}

const NAME = /^[a-z0-9][a-z0-9-]*$/;
const SAMPLERS: readonly SamplerName[] = ['heun', 'euler', 'onestep', 'multistep'];

function checkKeys(where: string, o: object, allowed: readonly string[]): void {
  for (const k of Object.keys(o))
    if (!allowed.includes(k))
      throw new ExperimentError(`${where}: unknown key '${k}' (valid keys: ${allowed.join(', ')})`);
}

const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');
const isSteps = (v: unknown): v is number[] =>
  Array.isArray(v) && v.every((s) => Number.isInteger(s) && (s as number) > 0);

/** Reads and checks an experiment file; every problem names the key and what would be valid. */
export function loadExperiment(file: string): ExperimentSpec {
  if (!existsSync(file)) throw new ExperimentError(`experiment file '${file}' does not exist`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ExperimentError(`${file}: invalid JSON (${(e as Error).message})`);
  }
  const bad = (what: string): never => {
    throw new ExperimentError(`${file}: ${what}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return bad('expected a JSON object');
  const spec = raw as ExperimentSpec;
  checkKeys(file, spec, ['name', 'description', 'dataset', 'seeds', 'set', 'eval', 'arms']);
  if (typeof spec.name !== 'string' || !NAME.test(spec.name))
    bad(`'name' must be lower-case letters, digits and dashes (got ${JSON.stringify(spec.name)})`);
  if (spec.dataset !== 'fashion-mnist' && spec.dataset !== 'cifar10')
    bad(`'dataset' must be 'fashion-mnist' or 'cifar10' (got ${JSON.stringify(spec.dataset)})`);
  if (!Array.isArray(spec.seeds) || spec.seeds.length === 0 || !spec.seeds.every((s) => Number.isInteger(s)))
    bad(`'seeds' must be a non-empty list of integers`);
  if (new Set(spec.seeds).size !== spec.seeds.length) bad(`'seeds' has duplicates`);
  if (spec.set !== undefined && !isStrings(spec.set)) bad(`'set' must be a list of "key=value" strings`);
  if (typeof spec.eval !== 'object' || spec.eval === null) bad(`'eval' must be an object ({ "num": 1000 })`);
  checkKeys(`${file}: eval`, spec.eval, ['num', 'refImages', 'batchSize']);
  if (!Number.isInteger(spec.eval.num) || spec.eval.num < 2) bad(`'eval.num' must be an integer ≥ 2`);
  if (!Array.isArray(spec.arms) || spec.arms.length === 0) bad(`'arms' must be a non-empty list`);
  const names = new Set<string>();
  for (const [i, arm] of spec.arms.entries()) {
    const where = `arms[${i}]${typeof arm?.name === 'string' ? ` (${arm.name})` : ''}`;
    if (typeof arm !== 'object' || arm === null) bad(`${where} must be an object`);
    checkKeys(`${file}: ${where}`, arm, [
      'name',
      'label',
      'config',
      'set',
      'init',
      'perceptual',
      'countInit',
      'evalAt',
      'sample',
    ]);
    if (typeof arm.name !== 'string' || !NAME.test(arm.name))
      bad(`${where}: 'name' must be lower-case letters, digits and dashes`);
    if (names.has(arm.name)) bad(`${where}: the name '${arm.name}' is used twice`);
    if (typeof arm.config !== 'string') bad(`${where}: 'config' must be a config name or file`);
    if (arm.set !== undefined && !isStrings(arm.set)) bad(`${where}: 'set' must be a list of "key=value" strings`);
    for (const key of ['init', 'perceptual'] as const) {
      const ref = arm[key];
      if (ref !== undefined && !names.has(ref))
        bad(`${where}: '${key}' names '${ref}', which is not an arm declared before it`);
    }
    if (arm.evalAt !== undefined && !isSteps(arm.evalAt)) bad(`${where}: 'evalAt' must be a list of positive steps`);
    if (arm.evalAt !== undefined && arm.sample === undefined)
      bad(`${where}: 'evalAt' needs 'sample' (how to sample the model)`);
    if (arm.sample !== undefined) {
      checkKeys(`${file}: ${where}: sample`, arm.sample, ['sampler', 'steps', 'cfg', 'interval']);
      if (!SAMPLERS.includes(arm.sample.sampler))
        bad(`${where}: 'sample.sampler' must be one of ${SAMPLERS.join(', ')}`);
      const iv: unknown = arm.sample.interval;
      if (iv !== undefined && iv !== 'all' && !isGuidanceInterval(iv))
        bad(`${where}: 'sample.interval' must be [LO, HI] in unshifted σ (0 ≤ LO < HI) or "all"`);
    }
    // The arm's config and overrides resolve now, not when the run reaches the arm hours later.
    try {
      armConfig(spec, arm, spec.seeds[0]!, []);
    } catch (e) {
      bad(`${where}: ${(e as Error).message}`);
    }
    names.add(arm.name);
  }
  return spec;
}

/** The key of one arm's run of one seed in results.json's `runs` and under DIR/runs/. */
const runKey = (arm: string, seed: number): string => `${arm}-s${seed}`;

/** The resolved training config of one arm and seed (without init/perceptual, which need the other runs). */
function armConfig(spec: ExperimentSpec, arm: ArmSpec, seed: number, extra: string[]): TrainConfig {
  return loadConfig(arm.config, [...(spec.set ?? []), ...(arm.set ?? []), `seed=${seed}`, ...extra]);
}

/** Image size and channels of the built-in datasets (the model's input; the configs leave them to the data). */
const DATASET_SHAPE = {
  'fashion-mnist': { imageSize: 28, inChannels: 1 },
  cifar10: { imageSize: 32, inChannels: 3 },
} as const;

/** Counted training FLOPs per image of an arm's stage (models/flops.ts), L_aux included where the arm has it. */
export function armFlopsPerImage(spec: ExperimentSpec, arm: ArmSpec): number {
  const cfg = armConfig(spec, arm, spec.seeds[0] ?? 0, []);
  const initArm = spec.arms.find((a) => a.name === arm.init);
  // L_aux's frozen encoder: finetune.perceptual, else the init when it is a pre-training run (createStage's rule).
  const perceptual =
    cfg.stage === 'cm' &&
    (arm.perceptual !== undefined ||
      (initArm !== undefined && armConfig(spec, initArm, spec.seeds[0] ?? 0, []).stage === 'pretrain'));
  return trainingFlopsPerImage(cfg.stage, cfg.preset, {
    ...DATASET_SHAPE[spec.dataset],
    numClasses: cfg.numClasses,
    perceptual,
  });
}

/**
 * What an arm's run cost by the end of training, with its whole init chain
 * where countInit (ECT from a diffusion model from an encoder counts all three).
 */
function initChain(
  spec: ExperimentSpec,
  state: ExperimentState,
  armName: string,
  seed: number,
): { images: number; seconds: number; flops: number } {
  const arm = spec.arms.find((a) => a.name === armName)!;
  const run = state.runs[runKey(armName, seed)];
  if (!run) throw new ExperimentError(`${runKey(armName, seed)} has not been trained`);
  const own = { images: run.images, seconds: run.seconds, flops: run.images * armFlopsPerImage(spec, arm) };
  if (!(arm.countInit ?? true) || !arm.init) return own;
  const before = initChain(spec, state, arm.init, seed);
  return {
    images: own.images + before.images,
    seconds: own.seconds + before.seconds,
    flops: own.flops + before.flops,
  };
}

/** Counted training FLOPs behind an evaluation: the arm's own steps and, where countInit, its init chain. */
function evaluationFlops(spec: ExperimentSpec, state: ExperimentState, e: Evaluation): number {
  const arm = spec.arms.find((a) => a.name === e.arm)!;
  const cfg = armConfig(spec, arm, e.seed, []);
  const own = e.step * cfg.batchSize * cfg.accumulate * armFlopsPerImage(spec, arm);
  return own + ((arm.countInit ?? true) && arm.init ? initChain(spec, state, arm.init, e.seed).flops : 0);
}

/** The one run folder the trainer made under `parent`, if any. */
function findRunDir(parent: string): string | null {
  if (!existsSync(parent)) return null;
  const dirs = readdirSync(parent).filter((d) => /^\d{5}-/.test(d));
  if (dirs.length > 1)
    throw new ExperimentError(
      `${parent} holds ${dirs.length} runs (${dirs.join(', ')}); expected one: remove the extra`,
    );
  return dirs.length === 1 ? join(parent, dirs[0]!) : null;
}

function stepOf(runDir: string | null): number {
  if (runDir === null) return 0;
  try {
    return readCheckpointMeta(runDir).meta.step;
  } catch {
    return 0; // a run folder without a checkpoint yet: start it again
  }
}

/** Config keys that say how a run is logged and kept, not what it trains. */
const BOOKKEEPING_KEYS = ['runDir', 'logEvery', 'checkpointEvery', 'keepLast', 'keepEvery', 'peakTflops'] as const;

/** JSON text with object keys sorted, so equal values give equal text. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object')
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(value);
}

/**
 * What decides a run's weights, as comparable text: the config without its
 * bookkeeping, with init/perceptual paths absolute. finetune.cmPrecond counts
 * only for the consistency stage, the one that reads it (other stages' config.json
 * holds whatever 'auto' resolved to, or nothing in runs older than the key).
 */
export function trainingIdentity(cfg: TrainConfig): string {
  const keep = ([k]: [string, unknown]): boolean => !(BOOKKEEPING_KEYS as readonly string[]).includes(k);
  const c: Record<string, unknown> = Object.fromEntries(Object.entries(cfg).filter(keep));
  const { cmPrecond, ...finetune } = cfg.finetune;
  c['finetune'] = {
    ...finetune,
    ...(cfg.stage === 'cm' ? { cmPrecond } : {}),
    init: finetune.init && resolve(finetune.init),
    perceptual: finetune.perceptual && resolve(finetune.perceptual),
  };
  return canonicalJson(c);
}

/** The state of another experiment's output folder named by --reuse. */
function readReusableState(dir: string): ExperimentState {
  const path = join(dir, 'results.json');
  if (!existsSync(path))
    throw new ExperimentError(`--reuse ${dir}: no results.json there; name an experiment's output folder`);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as ExperimentState;
  } catch (e) {
    throw new ExperimentError(`--reuse ${dir}: ${path} is corrupt (${(e as Error).message})`);
  }
}

/**
 * A finished run of another experiment's output folder that is this run: the
 * same training identity, trained at least to `targets`' last step, with a
 * checkpoint kept at each target. Null when none is.
 */
function findReusableRun(
  cfg: TrainConfig,
  targets: number[],
  dirs: readonly string[],
  log: (line: string) => void,
): RunProgress | null {
  // Compared as the trainer writes it: finetune.cmPrecond 'auto' made concrete, as in the other run's config.json.
  const want = trainingIdentity(resolveCmPrecond(cfg));
  const last = targets[targets.length - 1]!;
  for (const dir of dirs) {
    const path = join(dir, 'results.json');
    for (const [key, run] of Object.entries(readReusableState(dir).runs ?? {})) {
      const configPath = join(run.runDir, 'config.json');
      if (run.step < last || !existsSync(configPath)) continue;
      let theirs: TrainConfig;
      try {
        theirs = loadConfig(configPath);
      } catch {
        continue; // written by a version whose keys this one does not know: not comparable
      }
      if (trainingIdentity(theirs) !== want) continue;
      const missing = targets.filter((t) => t !== run.step && !existsSync(checkpointFile(run.runDir, t)));
      if (missing.length > 0) {
        log(`${path}#${key} is the same run but kept no checkpoint of step ${missing.join(', ')}: not reusing it`);
        continue;
      }
      return { ...run, reusedFrom: run.reusedFrom ?? `${path}#${key}` };
    }
  }
  return null;
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]): number =>
  xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1));

/** Runs (or continues) an experiment; returns its state, also written to OUT/results.json. */
export async function runExperiment(o: ExperimentOptions): Promise<ExperimentState> {
  const spec = loadExperiment(o.file);
  const log = o.log ?? ((l: string) => console.log(l));
  const out = o.out ?? join('experiments-output', spec.name);
  const device = o.device ?? 'cpu';
  mkdirSync(out, { recursive: true });
  const statePath = join(out, 'results.json');
  let state: ExperimentState = { name: spec.name, runs: {}, evaluations: [], floor: null };
  if (existsSync(statePath)) {
    try {
      state = JSON.parse(readFileSync(statePath, 'utf8')) as ExperimentState;
    } catch (e) {
      throw new ExperimentError(`${statePath} is corrupt (${(e as Error).message}); move it away to start over`);
    }
    if (state.name !== spec.name)
      throw new ExperimentError(`${out} holds experiment '${state.name}', not '${spec.name}': use another --out`);
    if (!o.reportOnly) log(`continuing ${spec.name}: ${state.evaluations.length} evaluations done`);
  } else if (o.reportOnly) {
    throw new ExperimentError(`${statePath} does not exist: nothing to report yet (run the experiment first)`);
  }
  if (o.reportOnly) {
    await writeReport(spec, state, out);
    log(`results so far (${state.evaluations.length} evaluations): ${join(out, 'results.md')}`);
    return state;
  }
  const save = (): void => torch.io.writeFileAtomic(statePath, JSON.stringify(state, null, 2) + '\n');
  for (const dir of o.reuse ?? []) readReusableState(dir); // a bad folder fails now, not hours later

  const ref = openDataset({ source: spec.dataset, subdir: '', split: 'test', normalization: 'simple', workers: 0 });
  const evaluate = (npz: string): Promise<EvalResult> =>
    runEval({
      samples: npz,
      refDataset: { source: ref, name: `${spec.dataset}-test`, numImages: spec.eval.refImages ?? ref.length },
      device,
      log,
    });
  try {
    if (state.floor === null) {
      log(`\n== floor: ${spec.eval.num} real training images ==`);
      const trainSplit = openDataset({
        source: spec.dataset,
        subdir: '',
        split: 'train',
        normalization: 'simple',
        workers: 0,
      });
      const npz = join(out, 'samples', 'real-train.npz');
      mkdirSync(join(out, 'samples'), { recursive: true });
      try {
        await writeRealImagesNpz(trainSplit, spec.eval.num, npz);
      } finally {
        trainSplit.close?.();
      }
      const r = await evaluate(npz);
      state.floor = { fid: r.fid, precision: r.precision, recall: r.recall, label: r.label };
      save();
    }

    for (const seed of spec.seeds) {
      for (const arm of spec.arms) {
        const key = runKey(arm.name, seed);
        const initKey = arm.init ? runKey(arm.init, seed) : null;
        const init = initKey ? state.runs[initKey] : undefined;
        if (initKey && !init) throw new ExperimentError(`${key}: its init run ${initKey} has not been trained`);
        const perceptual = arm.perceptual ? state.runs[runKey(arm.perceptual, seed)] : undefined;
        const extra = [
          `runDir=${join(out, 'runs', key)}`,
          ...(init ? [`finetune.init=${init.runDir}`] : []),
          ...(perceptual ? [`finetune.perceptual=${perceptual.runDir}`] : []),
        ];
        const cfg = armConfig(spec, arm, seed, extra);
        const targets = arm.sample ? [...new Set(arm.evalAt ?? [cfg.steps])].sort((a, b) => a - b) : [cfg.steps];
        if (targets[targets.length - 1]! > cfg.steps)
          throw new ExperimentError(`${key}: evalAt ${targets.join(', ')} goes past the run's ${cfg.steps} steps`);
        const count = arm.countInit ?? true;
        if (o.reuse?.length && state.runs[key] === undefined) {
          // A finished run of the same identity beats this folder's own unfinished one (say, one
          // stopped minutes in before --reuse was given): the same run, without the training.
          const found = findReusableRun(cfg, targets, o.reuse, log);
          if (found) {
            const partial = findRunDir(join(out, 'runs', key));
            if (partial)
              log(`${key}: ${partial} (step ${stepOf(partial)}) is set aside, not deleted; remove it when not wanted`);
            log(`\n== ${key}: reusing ${found.reusedFrom} (${found.runDir}), the same run ==`);
            state.runs[key] = found;
            save();
          }
        }
        for (const target of targets) {
          const done = state.evaluations.some((e) => e.arm === arm.name && e.seed === seed && e.step === target);
          if (done || (!arm.sample && (state.runs[key]?.step ?? 0) >= target)) continue;
          const reused = state.runs[key]?.reusedFrom !== undefined;
          if (reused && !existsSync(state.runs[key]!.runDir))
            throw new ExperimentError(
              `${key} reuses ${state.runs[key]!.runDir}, which no longer exists: restore it, ` +
                `or delete runs["${key}"] from ${statePath} to train the run here`,
            );
          if (!reused) {
            // Train up to the target step: start, or resume the run's latest checkpoint.
            let runDir = findRunDir(join(out, 'runs', key));
            const at = stepOf(runDir);
            if (runDir && at === 0) {
              // Stopped before its first checkpoint: nothing to resume, start it again.
              rmSync(runDir, { recursive: true, force: true });
              runDir = null;
            }
            if (at > target)
              throw new ExperimentError(
                `${key} is at step ${at}, past the unevaluated step ${target}; remove ${runDir} to rerun it`,
              );
            if (at < target) {
              log(`\n== ${key}: steps ${at} → ${target} of ${cfg.steps} ==`);
              const r = await train(cfg, {
                data: createDataPipeline,
                log,
                stopAfter: target - at,
                ...(runDir ? { resume: runDir } : {}),
              });
              if (r.interrupted)
                throw new TrainingInterrupted(r.interrupted, `experiment stopped by ${r.interrupted} in ${key}`);
              const before = at > 0 ? (state.runs[key]?.seconds ?? 0) : 0;
              state.runs[key] = {
                step: r.step,
                seconds: before + r.seconds,
                images: r.step * cfg.batchSize,
                runDir: r.runDir,
              };
              save();
            }
          }
          if (!arm.sample) continue;
          const run = state.runs[key]!;
          // A reused run may have gone past this target: its checkpoint of the step, and its cost prorated.
          const past = run.step > target;
          const trained = past
            ? { images: target * cfg.batchSize, seconds: (run.seconds * target) / run.step }
            : { images: run.images, seconds: run.seconds };
          log(`\n== ${key}: sampling and evaluating step ${target} ==`);
          const samples = sampleFromCheckpoint({
            checkpoint: past ? checkpointFile(run.runDir, target) : run.runDir,
            out: join(out, 'samples', `${key}-${String(target).padStart(7, '0')}`),
            num: spec.eval.num,
            sampler: arm.sample.sampler,
            ...(arm.sample.steps !== undefined ? { steps: arm.sample.steps } : {}),
            ...(arm.sample.cfg !== undefined ? { cfgScale: arm.sample.cfg } : {}),
            ...(arm.sample.interval !== undefined
              ? { guidanceInterval: arm.sample.interval === 'all' ? EVERY_SIGMA : arm.sample.interval }
              : {}),
            labels: 'balanced',
            seed,
            device,
            writePngs: false,
            batchSize: spec.eval.batchSize ?? 250,
            log,
          });
          const r = await evaluate(samples.npz);
          const before = count && arm.init ? initChain(spec, state, arm.init, seed) : null;
          state.evaluations.push({
            arm: arm.name,
            seed,
            step: target,
            images: trained.images + (before?.images ?? 0),
            seconds: trained.seconds + (before?.seconds ?? 0),
            fid: r.fid,
            precision: r.precision,
            recall: r.recall,
            label: r.label,
          });
          save();
          log(`${key} step ${target}: ${r.label} ${r.fid.toFixed(2)}`);
        }
      }
    }
  } catch (e) {
    // Stopped (Ctrl-C) or failed: the report still shows what was finished.
    if (state.evaluations.length > 0) {
      await writeReport(spec, state, out).catch(() => undefined);
      log(`\nresults so far (${state.evaluations.length} evaluations): ${join(out, 'results.md')}`);
    }
    throw e;
  } finally {
    ref.close?.();
  }
  await writeReport(spec, state, out);
  log(`\nresults: ${join(out, 'results.md')}`);
  return state;
}

/** Per arm and step: the seeds' FIDs, their mean and spread, and the compute behind them. */
export function summarise(
  spec: ExperimentSpec,
  state: ExperimentState,
): {
  arm: ArmSpec;
  step: number;
  images: number;
  seconds: number;
  /** Counted training FLOPs (mean over seeds). */
  flops: number;
  fids: number[];
  precision: number[];
  recall: number[];
}[] {
  const rows = [];
  for (const arm of spec.arms) {
    const steps = [...new Set(state.evaluations.filter((e) => e.arm === arm.name).map((e) => e.step))].sort(
      (a, b) => a - b,
    );
    for (const step of steps) {
      const es = state.evaluations.filter((e) => e.arm === arm.name && e.step === step);
      rows.push({
        arm,
        step,
        images: mean(es.map((e) => e.images)),
        seconds: mean(es.map((e) => e.seconds)),
        flops: mean(es.map((e) => evaluationFlops(spec, state, e))),
        fids: es.map((e) => e.fid),
        precision: es.flatMap((e) => (e.precision === null ? [] : [e.precision])),
        recall: es.flatMap((e) => (e.recall === null ? [] : [e.recall])),
      });
    }
  }
  return rows;
}

/** The report's list of runs another experiment trained (--reuse), if any. */
function reusedRunsNote(state: ExperimentState): string[] {
  const reused = Object.entries(state.runs).filter(([, r]) => r.reusedFrom !== undefined);
  if (reused.length === 0) return [];
  const prorated = reused.some(([key, r]) =>
    state.evaluations.some((e) => runKey(e.arm, e.seed) === key && e.step < r.step),
  );
  return [
    'Runs trained by another experiment with the same training config and seed, and reused here (`--reuse`): ' +
      reused.map(([key, r]) => `${key} = \`${r.reusedFrom}\``).join(', ') +
      '.' +
      (prorated ? ' Where one is evaluated before the step it reached, its training time there is prorated.' : ''),
    '',
  ];
}

async function writeReport(spec: ExperimentSpec, state: ExperimentState, out: string): Promise<void> {
  const rows = summarise(spec, state);
  const label = state.evaluations[0]?.label ?? `FID-${spec.eval.num} proxy`;
  const f2 = (xs: number[]): string => (xs.length ? mean(xs).toFixed(2) : '—');
  // One seed has no spread to show (a stopped run may not have reached the others yet).
  const fidCell = (fids: number[]): string =>
    fids.length < 2
      ? `${mean(fids).toFixed(2)} (1 seed)`
      : `${mean(fids).toFixed(2)} ± ${sd(fids).toFixed(2)} (${fids.map((f) => f.toFixed(1)).join(' / ')})`;
  const seedsDone = spec.seeds.filter((seed) => state.evaluations.some((e) => e.seed === seed));
  const lines = [
    `# Experiment: ${spec.name}`,
    '',
    ...(spec.description ? [spec.description, ''] : []),
    `${spec.dataset}; seeds ${spec.seeds.join(', ')}` +
      (seedsDone.length < spec.seeds.length ? ` (evaluated so far: ${seedsDone.join(', ') || 'none'})` : '') +
      `; ${label} against the test split ` +
      `(${spec.eval.refImages ?? 'all'} images), ${spec.eval.num} class-balanced samples per evaluation.`,
    '',
    `| arm | step | images seen | training compute | training time | ${label}: mean ± sd (per seed) | precision | recall |`,
    '|---|---:|---:|---:|---:|---|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.arm.label ?? r.arm.name} | ${r.step} | ${Math.round(r.images).toLocaleString('en')} | ` +
        `${(r.flops / 1e15).toFixed(2)} PFLOP | ${(r.seconds / 60).toFixed(1)} min | ${fidCell(r.fids)} | ` +
        `${f2(r.precision)} | ${f2(r.recall)} |`,
    ),
    ...(state.floor
      ? [
          `| floor: ${spec.eval.num} real training images | — | — | — | — | ${state.floor.fid.toFixed(2)} | ` +
            `${state.floor.precision?.toFixed(2) ?? '—'} | ${state.floor.recall?.toFixed(2) ?? '—'} |`,
        ]
      : []),
    '',
    ...reusedRunsNote(state),
    'Images seen, compute and training time include the init runs\' where an arm starts from another ("countInit"), ' +
      'so arms compare at equal compute along the x axes of the plots. Compute is the counted FLOPs of the ' +
      'matrix products (models/flops.ts), which other work on the machine cannot move; wall-clock can.',
    '',
    '![FID against images seen](fid-vs-images.png)',
    '',
    '![FID against training compute](fid-vs-compute.png)',
    '',
    '![FID against wall-clock](fid-vs-time.png)',
    '',
    `Reproduce: \`epg experiment ${spec.name}\` (continues where it stopped).`,
  ];
  torch.io.writeFileAtomic(join(out, 'results.md'), lines.join('\n') + '\n');
  const arms = spec.arms.filter((a) => rows.some((r) => r.arm === a));
  if (arms.length === 0) return;
  const series = (x: (r: (typeof rows)[number]) => number): LineSeries[] => [
    ...arms.map((a) => ({
      name: a.label ?? a.name,
      points: rows.filter((r) => r.arm === a).map((r) => [x(r), mean(r.fids)] as const),
    })),
  ];
  const floor = (xs: number[]): LineSeries[] =>
    state.floor
      ? [
          {
            name: 'floor (real images)',
            points: [
              [Math.min(...xs), state.floor.fid],
              [Math.max(...xs), state.floor.fid],
            ],
            dashed: true,
          },
        ]
      : [];
  const images = rows.map((r) => r.images / 1000);
  const minutes = rows.map((r) => r.seconds / 60);
  const chart = { width: 520, height: 280, points: true } as const;
  await writeLineChart(join(out, 'fid-vs-images.png'), {
    ...chart,
    title: `${spec.name}: ${label} (mean over seeds)`,
    x: { title: 'images seen (thousands)', scale: 'linear' },
    y: { title: label, scale: 'linear' },
    series: [...series((r) => r.images / 1000), ...floor(images)],
  });
  await writeLineChart(join(out, 'fid-vs-compute.png'), {
    ...chart,
    title: `${spec.name}: ${label} (mean over seeds)`,
    x: { title: 'training compute (PFLOP, counted)', scale: 'linear' },
    y: { title: label, scale: 'linear' },
    series: [...series((r) => r.flops / 1e15), ...floor(rows.map((r) => r.flops / 1e15))],
  });
  await writeLineChart(join(out, 'fid-vs-time.png'), {
    ...chart,
    title: `${spec.name}: ${label} (mean over seeds)`,
    x: { title: 'training wall-clock (min)', scale: 'linear' },
    y: { title: label, scale: 'linear' },
    series: [...series((r) => r.seconds / 60), ...floor(minutes)],
  });
}

/** The shipped experiments' folder (packages/epg/experiments; dist/src/ → ../../experiments). */
export const EXPERIMENTS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'experiments');

/** The names of the shipped experiments. */
export function shippedExperiments(dir = EXPERIMENTS_DIR): string[] {
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith('.json'))
        .map((f) => f.slice(0, -5))
        .sort()
    : [];
}

/** A shipped experiment's name (packages/epg/experiments/NAME.json) or a path. */
export function resolveExperimentFile(nameOrPath: string, shippedDir: string): string {
  if (existsSync(nameOrPath)) return nameOrPath;
  const shipped = join(shippedDir, `${nameOrPath}.json`);
  if (existsSync(shipped)) return shipped;
  const known = shippedExperiments(shippedDir);
  throw new ExperimentError(
    `experiment '${nameOrPath}' is neither a file nor a shipped experiment (shipped: ${known.join(', ') || 'none'})`,
  );
}
