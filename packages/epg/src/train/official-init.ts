// finetune.init and finetune.perceptual may name a released official folder
// (RCM-B-IN256/ with nnet_ema.pth, a pre-trained encoder; or a fine-tuned
// EPG-…/ folder): its weights are read as a checkpoint of ours would be, under
// 'model.', with a stand-in metadata record (stage and preset from the folder).
import type { Device } from '@epg/torch';

import { loadOfficialFolderTensors, officialFolder, sameEncoder } from '../models/official-folders.js';
import { CHECKPOINT_FORMAT, loadCheckpoint, type Checkpoint } from '../checkpoint.js';
import type { TrainConfig } from './config.js';

/**
 * loadCheckpoint, or an official folder's weights. A released encoder (RCM-B)
 * counts as the run's preset when their encoders are the same (RCM-B is the
 * encoder of EPG-XL/16, XXL/16 and G/16).
 */
export function loadInitCheckpoint(path: string, device: Device, prefixes: string[], cfg: TrainConfig): Checkpoint {
  const folder = officialFolder(path);
  if (!folder) return loadCheckpoint(path, device, prefixes);
  const preset = folder.stage === 'pretrain' && sameEncoder(folder.preset, cfg.preset) ? cfg.preset : folder.preset;
  return {
    path: folder.weights,
    meta: {
      format: CHECKPOINT_FORMAT,
      step: 0,
      stage: folder.stage,
      preset,
      config: cfg,
      optimizer: null,
      scaler: null,
      rng: {},
      extra: { official: folder.weights },
      savedAt: '',
    },
    tensors: loadOfficialFolderTensors(folder, device),
  };
}
