// What a training checkpoint holds and how a run returns to it (STYLE.md 12):
// the stage's tensors (model, EMA or target), the optimizer, the loss scaler,
// every random generator and the data position, so that a resumed run repeats
// the losses of an uninterrupted one bit for bit.
import * as torch from '@epg/torch';
import { optim } from '@epg/torch';

import type { TrainConfig } from './config.js';
import { disposeAll, loadCheckpoint, saveCheckpoint, type CheckpointMeta } from './checkpoint.js';
import type { TrainingStage } from './stages.js';
import type { DataPipeline } from './trainer.js';

/** The parts of a run that a checkpoint saves and restores. */
export interface TrainingState {
  cfg: TrainConfig;
  runDir: string;
  device: torch.Device;
  stage: TrainingStage;
  scaler: optim.GradScaler | null;
  /** The generator of the periodic sample grids. */
  sampleGen: torch.Generator;
  data: DataPipeline;
}

/** Writes the checkpoint of `step` into the run directory (atomically); returns its path. */
export function saveTrainingCheckpoint(s: TrainingState, step: number): string {
  const tensors = s.stage.stateTensors();
  const os = s.stage.optimizer.stateDict();
  for (const [k, t] of os.tensors) tensors.set(`optim.${k}`, t);
  try {
    return saveCheckpoint(
      s.runDir,
      tensors,
      {
        step,
        stage: s.cfg.stage,
        preset: s.cfg.preset,
        config: s.cfg,
        optimizer: { groups: os.groups, scalars: os.scalars },
        scaler: s.scaler?.stateDict() ?? null,
        rng: {
          cpu: Buffer.from(torch.Generator.default('cpu').getState()).toString('base64'),
          ...(s.device !== 'cpu'
            ? { device: Buffer.from(torch.Generator.default(s.device).getState()).toString('base64') }
            : {}),
          sample: Buffer.from(s.sampleGen.getState()).toString('base64'),
        },
        extra: { data: s.data.state() },
      },
      { keepLast: s.cfg.keepLast, keepEvery: s.cfg.keepEvery },
    );
  } finally {
    disposeAll(tensors.values());
  }
}

/**
 * Restores everything saveTrainingCheckpoint wrote, from `source` (a run
 * directory or checkpoint file) whose metadata is `meta`; returns the step to go on from.
 */
export function restoreTrainingState(s: TrainingState, source: string, meta: CheckpointMeta): number {
  const ck = loadCheckpoint(source, s.device);
  try {
    s.stage.loadStateTensors(ck.tensors);
    const optTensors = new Map(
      [...ck.tensors].filter(([k]) => k.startsWith('optim.')).map(([k, t]) => [k.slice(6), t]),
    );
    if (meta.optimizer) s.stage.optimizer.loadStateDict({ ...meta.optimizer, tensors: optTensors });
    if (s.scaler && meta.scaler) s.scaler.loadStateDict(meta.scaler);
    for (const [name, state] of Object.entries(meta.rng))
      generatorFor(name, s.device, s.sampleGen).setState(Buffer.from(state, 'base64'));
    s.data.restore(meta.extra.data as Record<string, unknown>);
    return meta.step;
  } finally {
    disposeAll(ck.tensors.values());
  }
}

function generatorFor(name: string, device: torch.Device, sampleGen: torch.Generator): torch.Generator {
  if (name === 'cpu') return torch.Generator.default('cpu');
  if (name === 'device') return torch.Generator.default(device);
  if (name === 'sample') return sampleGen;
  throw new Error(`checkpoint has state for an unknown generator '${name}'`);
}
