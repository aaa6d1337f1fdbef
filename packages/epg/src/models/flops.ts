// Model FLOPs, counted analytically from the architecture (spec §3) for MFU:
// the matrix multiplies only — patch embedding (a strided conv, i.e. one
// matmul per patch), q/k/v and output projections, the two attention products,
// the MLPs, the decoder's long-skip Linear and adaLN modulation, the head and
// the projector. Norms, activations, softmax and embedding lookups are left
// out (a few per cent at these widths), as PaLM's MFU and nanoGPT's
// estimate_mfu leave them out. A multiply-add counts as 2 FLOPs.
import type { Stage } from '../train/config.js';
import { encoderConfig, epgConfig, getPreset, type PresetOverrides } from './presets.js';
import type { EncoderConfig, EPGConfig } from './vit.js';

/** Token layout of both models: [CLS, time, patches] (vit.ts EXTRAS). */
const EXTRA_TOKENS = 2;

/** One pre-norm transformer block over `tokens` tokens of width `dim`: attention and MLP. */
function blockFlops(tokens: number, dim: number, mlpHidden: number): number {
  const qkv = 2 * tokens * dim * 3 * dim;
  const scores = 2 * tokens * tokens * dim; // Q·Kᵀ over all heads
  const mix = 2 * tokens * tokens * dim; // softmax(·)·V
  const proj = 2 * tokens * dim * dim;
  const mlp = 2 * tokens * dim * mlpHidden * 2;
  return qkv + scores + mix + proj + mlp;
}

/** Patch embedding and the encoder blocks, per image. */
function encoderTrunkFlops(c: Omit<EncoderConfig, 'projLayers' | 'projHiddenDim' | 'projOutputDim'>): number {
  const patches = (c.imageSize / c.patchSize) ** 2;
  const tokens = patches + EXTRA_TOKENS;
  const patchEmbed = 2 * patches * c.inChannels * c.patchSize ** 2 * c.embedDim;
  return patchEmbed + c.depth * blockFlops(tokens, c.embedDim, Math.floor(c.embedDim * c.mlpRatio));
}

/** Forward FLOPs of one image through the pre-training encoder RCMViT (trunk and projector on CLS). */
export function encoderForwardFlops(c: EncoderConfig): number {
  let projector = 0;
  for (let l = 0; l < c.projLayers; l++) {
    const dIn = l === 0 ? c.embedDim : c.projHiddenDim;
    const dOut = l === c.projLayers - 1 ? c.projOutputDim : c.projHiddenDim;
    projector += 2 * dIn * dOut;
  }
  return encoderTrunkFlops(c) + projector;
}

/** Forward FLOPs of one image through the fine-tuning model EPGViT (encoder, decoder with skips and adaLN, head). */
export function epgForwardFlops(c: EPGConfig): number {
  const patches = (c.imageSize / c.patchSize) ** 2;
  const tokens = patches + EXTRA_TOKENS;
  const d = c.decoderEmbedDim;
  const e = c.embedDim;
  const toDecoder = d !== e ? 2 * tokens * e * d : 0;
  const decoderBlock =
    2 * tokens * (e + d) * d + // long skip: Linear(concat(x, skip))
    2 * e * 6 * d + // adaLN modulation of the one conditioning token c
    blockFlops(tokens, d, Math.floor(d * c.mlpRatio));
  const head = 2 * patches * d * c.patchSize ** 2 * c.inChannels; // the CLS and time tokens are dropped first
  return encoderTrunkFlops(c) + toDecoder + c.decoderDepth * decoderBlock + head;
}

/**
 * Model FLOPs of one training image of a stage, from the forward counts: a
 * pass with gradients to the weights costs 3× its forward (forward, and the
 * backward's two products per matmul), one with gradients to its input only
 * 2×, a no-grad pass 1× (spec §4.1, §5, §6.2, as losses/objectives.ts runs them):
 * - pretrain: online encoder on the two views and at t (3 × 3), the target on the two views and the online at t' (3 × 1);
 * - dm: one model pass (3);
 * - cm: the online pass (3) and the no-grad target (1), and with L_aux the
 *   frozen encoder on f_θ (2, gradients to its input) and on x₀ (1).
 */
export function trainingFlopsPerImage(
  stage: Stage,
  preset: string,
  o: PresetOverrides & { perceptual?: boolean } = {},
): number {
  const p = getPreset(preset);
  const enc = encoderForwardFlops(encoderConfig(p, o));
  if (stage === 'pretrain') return 9 * enc + 3 * enc;
  const model = epgForwardFlops(epgConfig(p, o));
  if (stage === 'dm') return 3 * model;
  return 3 * model + model + (o.perceptual === true ? 2 * enc + enc : 0);
}

/** Model FLOPs utilisation: achieved FLOP/s over the device's peak (TFLOP/s); NaN without a peak. */
export function mfu(flopsPerImage: number, imagesPerSecond: number, peakTflops: number): number {
  return peakTflops > 0 ? (flopsPerImage * imagesPerSecond) / (peakTflops * 1e12) : NaN;
}
