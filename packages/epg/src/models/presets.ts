// Model presets (spec §10): the paper's EPG-L/XL/XXL/G and the pre-training
// encoders RCM-B/L, plus small presets for 28–64 px images that train on a CPU
// in minutes and on one GPU in hours.
import { EPGViT, RCMViT, type EncoderConfig, type EPGConfig, type FactoryOptions } from './vit.js';

interface Widths {
  depth: number;
  embedDim: number;
  numHeads: number;
  decoderEmbedDim: number;
  decoderNumHeads: number;
}

export interface Preset {
  name: string;
  description: string;
  imageSize: number;
  patchSize: number;
  inChannels: number;
  widths: Widths;
  /** The projector of the matching pre-training encoder (spec §3.2). */
  projector: { layers: number; hiddenDim: number; outputDim: number };
  /** Parameter count the paper states for the fine-tuning model (spec §10), in millions. */
  paperParamsM?: number;
}

const PAPER_PROJECTOR = { layers: 3, hiddenDim: 4096, outputDim: 256 };

export const PRESETS: Record<string, Preset> = {
  'EPG-L/16': {
    name: 'EPG-L/16',
    description: 'paper, 256 px: enc 16/1024/16, dec 16/1024/16 (RCM-L encoder); the CM model',
    imageSize: 256,
    patchSize: 16,
    inChannels: 3,
    widths: { depth: 16, embedDim: 1024, numHeads: 16, decoderEmbedDim: 1024, decoderNumHeads: 16 },
    projector: PAPER_PROJECTOR,
    paperParamsM: 540.2,
  },
  'EPG-XL/16': {
    name: 'EPG-XL/16',
    description: 'paper, 256 px: enc 12/768/12 (RCM-B), dec 12/1584/22; FID 2.04',
    imageSize: 256,
    patchSize: 16,
    inChannels: 3,
    widths: { depth: 12, embedDim: 768, numHeads: 12, decoderEmbedDim: 1584, decoderNumHeads: 22 },
    projector: PAPER_PROJECTOR,
    paperParamsM: 583.0,
  },
  'EPG-XXL/16': {
    name: 'EPG-XXL/16',
    description: 'paper, 256 px: enc 12/768/12, dec 12/1920/16; FID 1.87',
    imageSize: 256,
    patchSize: 16,
    inChannels: 3,
    widths: { depth: 12, embedDim: 768, numHeads: 12, decoderEmbedDim: 1920, decoderNumHeads: 16 },
    projector: PAPER_PROJECTOR,
    paperParamsM: 788.9,
  },
  'EPG-G/16': {
    name: 'EPG-G/16',
    description: 'paper, 256 px: enc 12/768/12, dec 12/2688/21; FID 1.58',
    imageSize: 256,
    patchSize: 16,
    inChannels: 3,
    widths: { depth: 12, embedDim: 768, numHeads: 12, decoderEmbedDim: 2688, decoderNumHeads: 21 },
    projector: PAPER_PROJECTOR,
    paperParamsM: 1391.9,
  },
  'EPG-L/32': {
    name: 'EPG-L/32',
    description: 'paper, 512 px: enc 16/1024/16, dec 16/1024/16, patch 32; FID 2.35',
    imageSize: 512,
    patchSize: 32,
    inChannels: 3,
    widths: { depth: 16, embedDim: 1024, numHeads: 16, decoderEmbedDim: 1024, decoderNumHeads: 16 },
    projector: PAPER_PROJECTOR,
    paperParamsM: 544.9,
  },
  'EPG-T/4': {
    name: 'EPG-T/4',
    description: 'tiny, 28 px grayscale (Fashion-MNIST): enc/dec 4/128/4, patch 4 (49 tokens); CPU minutes',
    imageSize: 28,
    patchSize: 4,
    inChannels: 1,
    widths: { depth: 4, embedDim: 128, numHeads: 4, decoderEmbedDim: 128, decoderNumHeads: 4 },
    projector: { layers: 3, hiddenDim: 512, outputDim: 128 },
  },
  'EPG-S/4': {
    name: 'EPG-S/4',
    description: 'small, 32 px RGB (CIFAR-10): enc/dec 6/256/4, patch 4 (64 tokens); one GPU, hours',
    imageSize: 32,
    patchSize: 4,
    inChannels: 3,
    widths: { depth: 6, embedDim: 256, numHeads: 4, decoderEmbedDim: 256, decoderNumHeads: 4 },
    projector: { layers: 3, hiddenDim: 1024, outputDim: 256 },
  },
  'EPG-B/4': {
    name: 'EPG-B/4',
    description: 'base, 64 px RGB: enc 8/384/6, dec 8/384/6, patch 4 (256 tokens); one GPU',
    imageSize: 64,
    patchSize: 4,
    inChannels: 3,
    widths: { depth: 8, embedDim: 384, numHeads: 6, decoderEmbedDim: 384, decoderNumHeads: 6 },
    projector: { layers: 3, hiddenDim: 2048, outputDim: 256 },
  },
};

/** The pre-training encoders (spec §3.2, §10): RCM-B (EPG-XL/XXL/G) and RCM-L (EPG-L). */
export const ENCODER_PRESETS: Record<string, string> = {
  'RCM-B': 'EPG-XL/16',
  'RCM-L': 'EPG-L/16',
};

export function getPreset(name: string): Preset {
  const p = PRESETS[name] ?? (ENCODER_PRESETS[name] ? PRESETS[ENCODER_PRESETS[name]!] : undefined);
  if (!p)
    throw new RangeError(
      `unknown preset '${name}'; known: ${[...Object.keys(PRESETS), ...Object.keys(ENCODER_PRESETS)].join(', ')}`,
    );
  return p;
}

export interface PresetOverrides {
  imageSize?: number;
  inChannels?: number;
  numClasses?: number;
  /** Decoder attention-output dropout (0.5 in the CM recipe). */
  drop?: number;
}

export function encoderConfig(p: Preset, o: PresetOverrides = {}): EncoderConfig {
  return {
    imageSize: o.imageSize ?? p.imageSize,
    patchSize: p.patchSize,
    inChannels: o.inChannels ?? p.inChannels,
    embedDim: p.widths.embedDim,
    depth: p.widths.depth,
    numHeads: p.widths.numHeads,
    mlpRatio: 4,
    projLayers: p.projector.layers,
    projHiddenDim: p.projector.hiddenDim,
    projOutputDim: p.projector.outputDim,
  };
}

export function epgConfig(p: Preset, o: PresetOverrides = {}): EPGConfig {
  const { projLayers: _l, projHiddenDim: _h, projOutputDim: _o, ...enc } = encoderConfig(p, o);
  return {
    ...enc,
    decoderDepth: p.widths.depth,
    decoderEmbedDim: p.widths.decoderEmbedDim,
    decoderNumHeads: p.widths.decoderNumHeads,
    numClasses: o.numClasses ?? 1000,
    drop: o.drop ?? 0,
  };
}

export function buildEncoder(name: string, o: PresetOverrides & FactoryOptions = {}): RCMViT {
  return new RCMViT(encoderConfig(getPreset(name), o), { device: o.device, dtype: o.dtype });
}

export function buildEPG(name: string, o: PresetOverrides & FactoryOptions = {}): EPGViT {
  return new EPGViT(epgConfig(getPreset(name), o), { device: o.device, dtype: o.dtype });
}
