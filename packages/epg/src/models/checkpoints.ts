// Loading the official PyTorch checkpoints (AMAP-ML/EPG: nnet.pth, nnet_ema.pth,
// target_model.pth) into our models. Our module names are the official ones,
// so the mapping is a short, named list of transforms (STYLE.md habit 13),
// each with its reason, and the result must have no missing or unexpected keys.
import { io, type Tensor } from '@epg/torch';

import type { EPGViT, RCMViT } from './vit.js';

interface Transform {
  name: string;
  apply(key: string): string | null;
}

/** Transforms for both releases (DMViT, Dec 2025; EPGViT, 2026): same tensor names, different wrappers. */
export const OFFICIAL_TRANSFORMS: readonly Transform[] = [
  // DistributedDataParallel and torch.compile wrap the model and prefix its keys.
  { name: 'strip module./_orig_mod. prefixes', apply: (k) => k.replace(/^(module\.|_orig_mod\.)+/, '') },
  // time_embed is nn.Identity in every released config (no parameters); an
  // mlp_time_embed model would not fit our architecture and fails below.
  { name: 'drop time_embed (Identity)', apply: (k) => (k.startsWith('time_embed.') ? null : k) },
];

/** Fine-tuning models drop the pre-training projector (spec §5.1: ignored with strict=False). */
const DROP_PROJECTOR: Transform = {
  name: 'drop projection_head (fine-tuning from a pre-training checkpoint)',
  apply: (k) => (k.startsWith('projection_head.') ? null : k),
};

export function mapOfficialStateDict(
  sd: Map<string, Tensor>,
  forFinetuning: boolean,
): { mapped: Map<string, Tensor>; dropped: string[] } {
  const transforms = forFinetuning ? [...OFFICIAL_TRANSFORMS, DROP_PROJECTOR] : OFFICIAL_TRANSFORMS;
  const mapped = new Map<string, Tensor>();
  const dropped: string[] = [];
  for (const [key, t] of sd) {
    let k: string | null = key;
    for (const tr of transforms) {
      k = tr.apply(k);
      if (k === null) break;
    }
    if (k === null) {
      dropped.push(key);
      t.dispose();
    } else {
      if (mapped.has(k)) throw new Error(`official checkpoint: two tensors map to '${k}'`);
      mapped.set(k, t);
    }
  }
  return { mapped, dropped };
}

/**
 * Loads an official .pt (or .safetensors) state dict into `model`. For an
 * EPGViT, a full fine-tuned checkpoint must match exactly; a pre-training
 * checkpoint (encoder only) is accepted with `encoderOnly`, leaving the decoder
 * at its initialisation. Throws a StateDictError listing every problem otherwise.
 */
export function loadOfficialCheckpoint(
  model: EPGViT | RCMViT,
  path: string,
  opts: { encoderOnly?: boolean; key?: string } = {},
): { loaded: number; dropped: string[]; missing: string[] } {
  const sd = path.endsWith('.safetensors')
    ? io.loadSafetensors(path)
    : io.loadStateDict(path, opts.key === undefined ? {} : { key: opts.key });
  const isFinetune = 'decoder_blocks' in model;
  const { mapped, dropped } = mapOfficialStateDict(sd, isFinetune);
  try {
    if (isFinetune && opts.encoderOnly) {
      const r = model.loadStateDict(mapped, { strict: false });
      if (r.unexpected.length || r.mismatched.length) model.loadStateDict(mapped); // strict: throws the full list
      return { loaded: mapped.size, dropped, missing: r.missing };
    }
    model.loadStateDict(mapped);
    return { loaded: mapped.size, dropped, missing: [] };
  } finally {
    for (const t of mapped.values()) t.dispose();
  }
}
