// The tiny networks the model, checkpoint and distributed tests share (8×8 images, patch 4).
import type { EncoderConfig, EPGConfig } from '../src/index.js';

/** The encoder trunk both networks share. */
const TRUNK = {
  imageSize: 8,
  patchSize: 4,
  inChannels: 2,
  embedDim: 16,
  depth: 2,
  numHeads: 2,
  mlpRatio: 4,
};
export const ENC: EncoderConfig = { ...TRUNK, projLayers: 3, projHiddenDim: 24, projOutputDim: 12 };
export const DEC: EPGConfig = {
  ...TRUNK,
  decoderDepth: 2,
  decoderEmbedDim: 24,
  decoderNumHeads: 3,
  numClasses: 5,
  drop: 0,
};
