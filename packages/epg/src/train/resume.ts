// Where a run lives and which config it runs: a new, auto-numbered run
// directory, or — on resume — the checkpoint's run with the checkpoint's
// architecture and stage (STYLE.md 11, 12).
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import type { dist } from '@epg/torch';

import { officialFolder } from '../models/official-folders.js';
import { concreteCmPrecond, type TrainConfig } from './config.js';
import { readCheckpointMeta, type CheckpointMeta } from './checkpoint.js';

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

/** The run a training call works in. */
export interface RunPlan {
  /** The config that runs: on resume, the checkpoint's, with this call's run length and logging. */
  cfg: TrainConfig;
  runDir: string;
  /** The checkpoint to restore (as given: a run directory or file) and its metadata, or null for a new run. */
  resume: { source: string; meta: CheckpointMeta } | null;
}

let runDirRequests = 0;

/**
 * Resolves `resume` (a run directory or checkpoint) or names a new run. In a
 * data-parallel run, rank 0 names it and the others learn the name through the store.
 */
export function planRun(
  config: TrainConfig,
  resume: string | undefined,
  group: dist.ProcessGroup | null,
  log: (line: string) => void,
): RunPlan {
  if (resume) {
    const { path, meta } = readCheckpointMeta(resume);
    // The architecture and stage come from the checkpoint; run length, logging,
    // checkpoint retention and evaluation may change.
    if (meta.preset !== config.preset)
      log(`note: the checkpoint is a ${meta.preset} model; the configured preset ${config.preset} is ignored`);
    // Checkpoints written before gradient accumulation or post-hoc EMA existed trained without them.
    // The post-hoc EMA settings are the run's: its snapshots must share one set of σ_rel.
    const absent: Pick<TrainConfig, 'accumulate' | 'phema'> = {
      accumulate: 1,
      phema: { stds: [], snapshotEvery: 500 },
    };
    const cfg: TrainConfig = {
      ...absent,
      ...meta.config,
      // Consistency runs written before finetune.cmPrecond existed used the released 'edm' form.
      finetune: { ...meta.config.finetune, cmPrecond: meta.config.finetune.cmPrecond ?? 'edm' },
      steps: config.steps,
      logEvery: config.logEvery,
      checkpointEvery: config.checkpointEvery,
      sampleEvery: config.sampleEvery,
      keepLast: config.keepLast,
      keepEvery: config.keepEvery,
      peakTflops: config.peakTflops,
      evalEvery: config.evalEvery,
      evalSamples: config.evalSamples,
      evalRefImages: config.evalRefImages,
      cudaGraph: config.cudaGraph,
      // How the step is computed, not what: a resumed run may turn it on or off (e.g. on a smaller GPU).
      activationCheckpointing: config.activationCheckpointing,
    };
    log(`resuming ${meta.stage} from ${path} at step ${meta.step}`);
    return { cfg, runDir: join(path, '..'), resume: { source: resume, meta } };
  }
  const cfg = resolveCmPrecond(config);
  if (!group) return { cfg, runDir: newRunDir(cfg), resume: null };
  const key = `epg/run_dir/${runDirRequests++}`;
  let runDir: string;
  if (group.rank === 0) group.store.set(key, (runDir = newRunDir(cfg)));
  else runDir = group.store.get(key);
  return { cfg, runDir, resume: null };
}

/**
 * The config with finetune.cmPrecond 'auto' made concrete, so that config.json
 * and every checkpoint say how a sampler must read the network: 'x0' when
 * consistency tuning starts from a diffusion checkpoint (ECT), else 'edm'.
 */
export function resolveCmPrecond(cfg: TrainConfig): TrainConfig {
  const f = cfg.finetune;
  if (f.cmPrecond !== 'auto') return cfg;
  const fromDiffusion = cfg.stage === 'cm' && f.init !== '' && initStage(f.init) === 'dm';
  return { ...cfg, finetune: { ...f, cmPrecond: concreteCmPrecond(f.cmPrecond, fromDiffusion) } };
}

/** The stage of finetune.init: a released folder's, or an EPG checkpoint's. */
function initStage(init: string): string {
  return officialFolder(init)?.stage ?? readCheckpointMeta(init).meta.stage;
}
