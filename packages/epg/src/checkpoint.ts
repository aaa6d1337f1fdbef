// The checkpoint format, shared by the trainer (which writes and resumes),
// sampling and fine-tuning initialisation (which read): everything needed to
// resume a run exactly (STYLE.md habit 12) in one safetensors file written
// atomically (io.AtomicFile: temp file, fsync, rename): module
// weights under prefixes ('model.', 'ema.', 'target.'), optimizer state under
// 'optim.', and in the header's metadata the step, the resolved config, the
// optimizer's groups, the loss-scaler state, generator states and the data
// position. `latest.json` names the newest checkpoint and is replaced atomically
// after it, so a crash at any moment leaves the last good checkpoint in place.
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

import * as torch from '@epg/torch';
import { io, type Tensor } from '@epg/torch';

import type { TrainConfig } from './train/config.js';

export const CHECKPOINT_FORMAT = 'epg-checkpoint-v1';

export interface CheckpointMeta {
  format: typeof CHECKPOINT_FORMAT;
  step: number;
  stage: TrainConfig['stage'];
  preset: string;
  config: TrainConfig;
  optimizer: Omit<torch.optim.OptimizerState, 'tensors'> | null;
  scaler: { scale: number; growthTracker: number } | null;
  /** Generator states, base64. */
  rng: Record<string, string>;
  /** Data position and anything else the stage needs. */
  extra: Record<string, unknown>;
  savedAt: string;
}

export interface Checkpoint {
  path: string;
  meta: CheckpointMeta;
  tensors: Map<string, Tensor>;
}

/** Writes a file atomically (see io.AtomicFile). */
export const writeFileAtomic = io.writeFileAtomic;

/**
 * Which checkpoints a run keeps: the newest `keepLast`, and in addition every
 * one whose step is a multiple of `keepEvery` (0: none), so a run's history
 * can be revisited without keeping every checkpoint.
 */
export interface CheckpointRetention {
  keepLast: number;
  keepEvery: number;
}

/** The checkpoint files of `files` (checkpoint-<step>.safetensors) that `retention` drops. */
export function checkpointsToDrop(files: readonly string[], retention: CheckpointRetention): string[] {
  const byStep = files
    .map((f) => ({ f, m: /^checkpoint-(\d+)\.safetensors$/.exec(f) }))
    .filter((e): e is { f: string; m: RegExpExecArray } => e.m !== null)
    .map(({ f, m }) => ({ f, step: Number(m[1]) }))
    .sort((a, b) => a.step - b.step);
  const newest = new Set(byStep.slice(Math.max(0, byStep.length - Math.max(1, retention.keepLast))).map((e) => e.f));
  const milestone = (step: number): boolean => retention.keepEvery > 0 && step % retention.keepEvery === 0;
  return byStep.filter((e) => !newest.has(e.f) && !milestone(e.step)).map((e) => e.f);
}

/** The file a run folder's checkpoint of `step` is saved as. */
export function checkpointFile(dir: string, step: number): string {
  return join(dir, `checkpoint-${String(step).padStart(7, '0')}.safetensors`);
}

/**
 * Saves a checkpoint as <dir>/checkpoint-<step>.safetensors and points
 * latest.json at it, then drops the older ones that `retention` does not keep
 * (the one just written is always kept).
 */
export function saveCheckpoint(
  dir: string,
  tensors: Map<string, Tensor>,
  meta: Omit<CheckpointMeta, 'format' | 'savedAt'>,
  retention: CheckpointRetention = { keepLast: 3, keepEvery: 0 },
): string {
  const file = checkpointFile(dir, meta.step);
  const full: CheckpointMeta = { format: CHECKPOINT_FORMAT, savedAt: new Date().toISOString(), ...meta };
  try {
    io.saveSafetensors(file, tensors, { epg: JSON.stringify(full) });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const hint =
      code === 'ENOSPC' ? ' (the disk is full: free space and resume; the previous checkpoint is intact)' : '';
    throw new Error(`cannot write checkpoint ${file}: ${(e as Error).message}${hint}`);
  }
  writeFileAtomic(join(dir, 'latest.json'), JSON.stringify({ file: basename(file), step: meta.step }) + '\n');
  for (const old of checkpointsToDrop(readdirSync(dir), retention))
    if (old !== basename(file)) rmSync(join(dir, old), { force: true });
  return file;
}

/** The checkpoint file named by a run directory's latest.json, or the file itself. */
export function resolveCheckpoint(pathOrDir: string): string {
  if (!existsSync(pathOrDir)) throw new Error(`checkpoint '${pathOrDir}' does not exist`);
  if (!statSync(pathOrDir).isDirectory()) return pathOrDir;
  const latest = join(pathOrDir, 'latest.json');
  if (existsSync(latest)) {
    let name: string;
    try {
      name = (JSON.parse(readFileSync(latest, 'utf8')) as { file: string }).file;
    } catch {
      throw new Error(`${latest} is corrupt; pass a checkpoint file (checkpoint-*.safetensors) instead`);
    }
    const file = join(pathOrDir, name);
    if (existsSync(file)) return file;
  }
  const files = readdirSync(pathOrDir)
    .filter((f) => /^checkpoint-\d+\.safetensors$/.test(f))
    .sort();
  if (files.length === 0)
    throw new Error(`no checkpoint in ${pathOrDir} (expected latest.json or checkpoint-*.safetensors)`);
  return join(pathOrDir, files[files.length - 1]!);
}

/** Reads a checkpoint's metadata without loading tensors. */
export function readCheckpointMeta(pathOrDir: string): { path: string; meta: CheckpointMeta } {
  const path = resolveCheckpoint(pathOrDir);
  const header = io.readSafetensorsHeader(path);
  const raw = header.metadata.epg;
  if (raw === undefined)
    throw new Error(`${path} is not an EPG checkpoint (no 'epg' metadata); is it a plain weights file?`);
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(raw) as CheckpointMeta;
  } catch {
    throw new Error(`${path}: corrupt checkpoint metadata`);
  }
  if (meta.format !== CHECKPOINT_FORMAT)
    throw new Error(`${path}: unsupported checkpoint format '${String(meta.format)}'`);
  return { path, meta };
}

/** Loads a checkpoint (tensors on the given device). */
export function loadCheckpoint(pathOrDir: string, device: torch.Device = 'cpu', prefixes?: string[]): Checkpoint {
  const { path, meta } = readCheckpointMeta(pathOrDir);
  const names = prefixes
    ? io
        .readSafetensorsHeader(path)
        .tensors.map((t) => t.name)
        .filter((n) => prefixes.some((p) => n.startsWith(p)))
    : undefined;
  return { path, meta, tensors: io.loadSafetensors(path, { device, names }) };
}

/**
 * The weights to sample from or start from: the EMA ones ('ema.') when the
 * checkpoint has them and `ema` is not false, else the online ones ('model.').
 * `fromEma` says which were taken.
 */
export function modelWeights(
  tensors: Map<string, Tensor>,
  opts: { ema?: boolean } = {},
): { weights: Map<string, Tensor>; fromEma: boolean } {
  const ema = withPrefix(tensors, 'ema.');
  if (ema.size > 0 && opts.ema !== false) return { weights: ema, fromEma: true };
  return { weights: withPrefix(tensors, 'model.'), fromEma: false };
}

/** The tensors under `prefix` (e.g. 'model.') with the prefix removed. */
export function withPrefix(tensors: Map<string, Tensor>, prefix: string): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [k, t] of tensors) if (k.startsWith(prefix)) out.set(k.slice(prefix.length), t);
  return out;
}

/** Module state dict entries under a prefix (new handles: dispose after saving). */
export function prefixed(prefix: string, sd: Map<string, Tensor>): [string, Tensor][] {
  return [...sd].map(([k, t]) => [`${prefix}${k}`, t]);
}

export function disposeAll(tensors: Iterable<Tensor>): void {
  for (const t of tensors) t.dispose();
}
