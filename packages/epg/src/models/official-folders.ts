// The released official checkpoints (AMAP-ML/EPG's README; HF jiachenlei/EPG):
// folders holding nnet_ema.pth (the EMA weights used for sampling, spec §7) or
// nnet.pth, named for their model: EPG-XL16-imagenet256/,
// EPG-L16-imagenet256-onestep/ (a consistency model), RCM-B-IN256/ (a
// pre-trained encoder). The preset comes from the folder name, else from the
// weights' shapes; the stage from the name (RCM: pre-training; onestep: a
// consistency model), else from the weights (no decoder: pre-training).
import { existsSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';

import { io, type Device, type Tensor } from '@epg/torch';

import { mapOfficialStateDict } from './checkpoints.js';
import { ENCODER_PRESETS, PRESETS, getPreset } from './presets.js';

/** The weight files of an official folder, in order of preference. */
export const OFFICIAL_WEIGHT_FILES = ['nnet_ema.pth', 'nnet.pth'] as const;

export interface OfficialFolder {
  dir: string;
  /** The weights file (nnet_ema.pth, else nnet.pth). */
  weights: string;
  /** Our preset name (e.g. 'EPG-XL/16', 'RCM-B'). */
  preset: string;
  stage: 'pretrain' | 'dm' | 'cm';
}

/** The preset and stage a released folder's name states, or null. */
export function parseOfficialFolderName(name: string): { preset: string; stage: OfficialFolder['stage'] } | null {
  const rcm = /^RCM-([BL])(?:[-_]|$)/i.exec(name);
  if (rcm) return { preset: `RCM-${rcm[1]!.toUpperCase()}`, stage: 'pretrain' };
  const epg = /^EPG-(XXL|XL|L|G|T|S|B)(\d+)(?:[-_]|$)/i.exec(name);
  if (!epg) return null;
  const preset = `EPG-${epg[1]!.toUpperCase()}/${epg[2]}`;
  if (!(preset in PRESETS)) return null;
  return { preset, stage: /(^|[-_])(onestep|one-step|cm|consistency)([-_]|$)/i.test(name) ? 'cm' : 'dm' };
}

/** Count of `prefix.N.` module indices in a state dict (depth of a ModuleList). */
function countIndexed(keys: readonly string[], prefix: string): number {
  const ids = new Set<number>();
  for (const k of keys) {
    const m = new RegExp(`^${prefix}\\.(\\d+)\\.`).exec(k);
    if (m) ids.add(Number(m[1]));
  }
  return ids.size;
}

/**
 * The preset whose shapes the (mapped) official state dict has: patch size,
 * channels, widths, depths and image size; encoder-only weights give the
 * encoder's name (RCM-B, RCM-L) when one fits. null when none fits.
 */
export function presetFromWeights(sd: ReadonlyMap<string, Tensor>): { preset: string; hasDecoder: boolean } | null {
  const patch = sd.get('patch_embed.proj.weight')?.shape;
  const pos = sd.get('pos_embed')?.shape;
  if (!patch || !pos) return null;
  const keys = [...sd.keys()];
  const [embedDim, inChannels, patchSize] = [patch[0]!, patch[1]!, patch[2]!];
  const imageSize = Math.round(Math.sqrt(pos[1]! - 2)) * patchSize;
  const depth = countIndexed(keys, 'blocks');
  const decoderDepth = countIndexed(keys, 'decoder_blocks');
  const decoderDim = sd.get('decoder_blocks.0.norm1.weight')?.shape[0];
  const fits = Object.values(PRESETS).filter(
    (p) =>
      p.patchSize === patchSize &&
      p.inChannels === inChannels &&
      p.imageSize === imageSize &&
      p.widths.embedDim === embedDim &&
      p.widths.depth === depth &&
      (decoderDepth === 0 || (p.widths.depth === decoderDepth && p.widths.decoderEmbedDim === decoderDim)),
  );
  if (fits.length === 0) return null;
  if (decoderDepth === 0) {
    const named = Object.entries(ENCODER_PRESETS).find(([, full]) => fits.some((p) => p.name === full));
    return { preset: named ? named[0] : fits[0]!.name, hasDecoder: false };
  }
  return { preset: fits[0]!.name, hasDecoder: true };
}

function loadMapped(weights: string): Map<string, Tensor> {
  return mapOfficialStateDict(io.loadStateDict(weights), false).mapped;
}

/**
 * Recognises a released folder (a directory holding nnet_ema.pth or nnet.pth);
 * null for anything else (our run folders, files). Throws when the folder's
 * model cannot be told from its name or its weights.
 */
export function officialFolder(path: string): OfficialFolder | null {
  if (!existsSync(path) || !statSync(path).isDirectory()) return null;
  const file = OFFICIAL_WEIGHT_FILES.find((f) => existsSync(join(path, f)));
  if (file === undefined) return null;
  const dir = resolve(path);
  const weights = join(dir, file);
  const named = parseOfficialFolderName(basename(dir));
  if (named) return { dir, weights, ...named };
  const sd = loadMapped(weights);
  try {
    const found = presetFromWeights(sd);
    if (!found)
      throw new Error(
        `${weights}: an official checkpoint whose model is neither in its folder name (e.g. EPG-XL16-imagenet256, ` +
          `RCM-B-IN256) nor fits a preset's shapes; pass --preset`,
      );
    return { dir, weights, preset: found.preset, stage: found.hasDecoder ? 'dm' : 'pretrain' };
  } finally {
    for (const t of sd.values()) t.dispose();
  }
}

/** Whether two presets share the encoder (so a pre-trained encoder of one initialises the other). */
export function sameEncoder(a: string, b: string): boolean {
  const [p, q] = [getPreset(a), getPreset(b)];
  return (
    p.imageSize === q.imageSize &&
    p.patchSize === q.patchSize &&
    p.inChannels === q.inChannels &&
    p.widths.embedDim === q.widths.embedDim &&
    p.widths.depth === q.widths.depth &&
    p.widths.numHeads === q.widths.numHeads
  );
}

/**
 * An official folder's weights as our checkpoint tensors: every (mapped) tensor
 * under 'model.' (the projector kept: a perceptual encoder needs it), on `device`.
 */
export function loadOfficialFolderTensors(folder: OfficialFolder, device: Device): Map<string, Tensor> {
  const sd = loadMapped(folder.weights);
  const out = new Map<string, Tensor>();
  for (const [k, t] of sd) {
    out.set(`model.${k}`, device === 'cpu' ? t : t.to({ device }));
    if (device !== 'cpu') t.dispose();
  }
  return out;
}
