// The tiny networks the model and distributed tests share (8×8×2 images, patch 4).
import type { EncoderConfig, EPGConfig } from '../src/index.js';

export const ENC: EncoderConfig = {
  imageSize: 8,
  patchSize: 4,
  inChannels: 2,
  embedDim: 16,
  depth: 2,
  numHeads: 2,
  mlpRatio: 4,
  projLayers: 3,
  projHiddenDim: 24,
  projOutputDim: 12,
};
export const DEC: EPGConfig = {
  imageSize: 8,
  patchSize: 4,
  inChannels: 2,
  embedDim: 16,
  depth: 2,
  numHeads: 2,
  mlpRatio: 4,
  decoderDepth: 2,
  decoderEmbedDim: 24,
  decoderNumHeads: 3,
  numClasses: 5,
  drop: 0,
};
