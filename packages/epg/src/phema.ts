// Post-hoc EMA (EDM2, Karras et al. 2024, §3): the snapshots a fine-tuning run
// writes of its power-function EMAs (cfg.phema), and the reconstruction of the
// EMA of any σ_rel from them after training, written as a checkpoint that
// `epg sample`, `epg sweep` and `finetune.init` read like any other (its
// weights under 'ema.').
//
// A snapshot is <run>/phema-<step>.safetensors: the shadow of each tracked
// σ_rel under '<index>.<name>', and in the header ('epg-phema') the step, the
// σ_rel list, the stage, preset and config of the run. Written atomically.
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';

import * as torch from '@epg/torch';
import { io, optim, type Tensor } from '@epg/torch';

import { CHECKPOINT_FORMAT, disposeAll, withPrefix, type CheckpointMeta } from './checkpoint.js';
import type { TrainConfig } from './train/config.js';

export const PHEMA_FORMAT = 'epg-phema-v1';

/** What a snapshot's header says. */
export interface PhemaSnapshotMeta {
  format: typeof PHEMA_FORMAT;
  step: number;
  /** The σ_rel of each shadow, by index ('<index>.<name>'). */
  stds: number[];
  stage: TrainConfig['stage'];
  preset: string;
  config: TrainConfig;
}

export interface PhemaSnapshot {
  path: string;
  meta: PhemaSnapshotMeta;
}

export function phemaSnapshotName(step: number): string {
  return `phema-${String(step).padStart(7, '0')}.safetensors`;
}

/** Writes the shadows of `phema` at `step` into the run folder; returns the file. */
export function writePhemaSnapshot(runDir: string, phema: optim.PowerEMA, cfg: TrainConfig, step: number): string {
  const file = join(runDir, phemaSnapshotName(step));
  const meta: PhemaSnapshotMeta = {
    format: PHEMA_FORMAT,
    step,
    stds: [...phema.stdRels],
    stage: cfg.stage,
    preset: cfg.preset,
    config: cfg,
  };
  const { tensors } = phema.stateDict();
  try {
    io.saveSafetensors(file, tensors, { 'epg-phema': JSON.stringify(meta) });
  } catch (e) {
    throw new Error(`cannot write the post-hoc EMA snapshot ${file}: ${(e as Error).message}`);
  } finally {
    disposeAll(tensors.values());
  }
  return file;
}

/** The snapshots in a run folder, by step. */
export function listPhemaSnapshots(runDir: string): PhemaSnapshot[] {
  if (!existsSync(runDir) || !statSync(runDir).isDirectory())
    throw new Error(`'${runDir}' is not a folder: give the run folder of a fine-tuning run trained with phema.stds`);
  return readdirSync(runDir)
    .filter((f) => /^phema-\d+\.safetensors$/.test(f))
    .map((f) => {
      const path = join(runDir, f);
      const raw = io.readSafetensorsHeader(path).metadata['epg-phema'];
      if (raw === undefined) throw new Error(`${path} is not a post-hoc EMA snapshot (no 'epg-phema' metadata)`);
      const meta = JSON.parse(raw) as PhemaSnapshotMeta;
      if (meta.format !== PHEMA_FORMAT)
        throw new Error(`${path}: unsupported snapshot format '${String(meta.format)}'`);
      return { path, meta };
    })
    .sort((a, b) => a.meta.step - b.meta.step);
}

export interface PhemaOptions {
  runDir: string;
  /** The σ_rel to reconstruct, each in (0, √(1/12)). */
  stds: number[];
  /** The step to reconstruct at: a snapshot's step (default: the last snapshot's). */
  step?: number;
  /** Use only the snapshots' shadows of these tracked σ_rel (default: all). */
  inputStds?: number[];
}

export interface PhemaResult {
  stdRel: number;
  step: number;
  /** The reconstructed weights by parameter name (owned by the caller's scope). */
  weights: Map<string, Tensor>;
  /** The snapshot profiles combined and their coefficients (summing to 1). */
  inputs: (optim.PowerProfile & { coefficient: number })[];
  /** The snapshot at `step` (its stage, preset and config describe the model). */
  source: PhemaSnapshot;
}

/**
 * Reconstructs the power-function EMA of each σ_rel in `stds` at `step` from a
 * run's snapshots (EDM2 algorithm 3: least squares over the snapshot profiles
 * up to `step`, columns summing to 1), streaming one snapshot file at a time.
 */
export function reconstructPhema(opts: PhemaOptions): PhemaResult[] {
  const all = listPhemaSnapshots(opts.runDir);
  if (all.length === 0)
    throw new Error(
      `no post-hoc EMA snapshots (phema-*.safetensors) in ${opts.runDir}: fine-tune with ` +
        '--set phema.stds=0.05,0.1 (and phema.snapshotEvery=N) to write them',
    );
  if (opts.stds.length === 0) throw new RangeError('give at least one σ_rel to reconstruct');
  opts.stds.forEach((s) => optim.checkStdRel(s, 'the σ_rel to reconstruct'));
  const last = all[all.length - 1]!;
  const step = opts.step ?? last.meta.step;
  if (step > last.meta.step)
    throw new RangeError(`step ${step} is past the last snapshot (step ${last.meta.step}) in ${opts.runDir}`);
  const source = all.find((s) => s.meta.step === step);
  if (source === undefined)
    throw new RangeError(
      `no snapshot at step ${step}: the reconstruction needs the weights up to that step; ` +
        `snapshots are at steps ${all.map((s) => s.meta.step).join(', ')}`,
    );
  const used = all.filter((s) => s.meta.step <= step);
  const inputStds = opts.inputStds;
  if (inputStds) {
    const tracked = new Set(used.flatMap((s) => s.meta.stds));
    const unknown = inputStds.filter((s) => !tracked.has(s));
    if (unknown.length)
      throw new RangeError(
        `σ_rel ${unknown.join(', ')} not tracked by the snapshots (they hold ${[...tracked].join(', ')})`,
      );
  }
  // Every (snapshot, shadow index) that enters the least squares.
  const slots = used.flatMap((snap) =>
    snap.meta.stds
      .map((stdRel, index) => ({ snap, index, stdRel }))
      .filter((x) => inputStds === undefined || inputStds.includes(x.stdRel)),
  );
  const X = optim.solvePosthocCoefficients(
    slots.map((x) => ({ step: x.snap.meta.step, stdRel: x.stdRel })),
    opts.stds.map((stdRel) => ({ step, stdRel })),
  );
  const sums = opts.stds.map(() => new optim.WeightedSum());
  try {
    for (const snap of used) {
      const mine = slots.map((x, i) => ({ ...x, row: i })).filter((x) => x.snap === snap);
      if (mine.length === 0) continue;
      const tensors = io.loadSafetensors(snap.path);
      try {
        for (const x of mine) {
          const shadow = withPrefix(tensors, `${x.index}.`);
          sums.forEach((sum, j) => sum.add(shadow, X[x.row]![j]!));
        }
      } finally {
        disposeAll(tensors.values());
      }
    }
    return opts.stds.map((stdRel, j) => ({
      stdRel,
      step,
      weights: sums[j]!.result(),
      inputs: slots.map((x, i) => ({ step: x.snap.meta.step, stdRel: x.stdRel, coefficient: X[i]![j]! })),
      source,
    }));
  } finally {
    for (const s of sums) s.dispose();
  }
}

/** The file name of a reconstruction: phema-<step>-<σ_rel>.safetensors (EDM2's naming). */
export function posthocCheckpointName(step: number, stdRel: number): string {
  return `phema-${String(step).padStart(7, '0')}-${stdRel.toFixed(3)}.safetensors`;
}

/**
 * Writes a reconstruction as an EPG checkpoint holding its weights under
 * 'ema.' (what sampling and fine-tuning initialisation read first) and the
 * snapshot's stage, preset and config; no optimizer state (it does not resume).
 */
export function writePosthocCheckpoint(file: string, r: PhemaResult): string {
  mkdirSync(dirname(file), { recursive: true });
  const { meta: snap } = r.source;
  const meta: CheckpointMeta = {
    format: CHECKPOINT_FORMAT,
    step: r.step,
    stage: snap.stage,
    preset: snap.preset,
    config: snap.config,
    optimizer: null,
    scaler: null,
    rng: {},
    extra: { phema: { stdRel: r.stdRel, step: r.step, inputs: r.inputs } },
    savedAt: new Date().toISOString(),
  };
  const tensors = new Map([...r.weights].map(([k, t]) => [`ema.${k}`, t]));
  io.saveSafetensors(file, tensors, { epg: JSON.stringify(meta) });
  return file;
}

/** Reconstructs and writes each σ_rel: to `out` (a .safetensors file for one σ_rel, else a folder). */
export function runPhema(opts: PhemaOptions & { out?: string; log?: (line: string) => void }): string[] {
  const out = opts.out ?? join(opts.runDir, 'posthoc');
  const single = opts.stds.length === 1 && out.endsWith('.safetensors');
  if (!single && out.endsWith('.safetensors'))
    throw new RangeError(`--out ${out} names one file, but ${opts.stds.length} σ_rel are reconstructed: give a folder`);
  return torch.tidy(() => {
    const results = reconstructPhema(opts);
    return results.map((r) => {
      const file = single ? out : join(out, posthocCheckpointName(r.step, r.stdRel));
      writePosthocCheckpoint(file, r);
      opts.log?.(
        `σ_rel ${r.stdRel} at step ${r.step} from ${r.inputs.length} snapshot profiles ` +
          `(coefficients ${Math.min(...r.inputs.map((x) => x.coefficient)).toFixed(3)} … ${Math.max(...r.inputs.map((x) => x.coefficient)).toFixed(3)}): ${file}`,
      );
      disposeAll(r.weights.values());
      return file;
    });
  });
}
