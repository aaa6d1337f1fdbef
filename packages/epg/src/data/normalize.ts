// Pixel normalisation (spec §1): x = (img/255 − mean) / (2·std), so that the
// data has roughly zero mean and std 0.5 per channel (σ_data = 0.5). EPG uses
// std="imagenet" in every config; std="simple" is x·2 − 1.
import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

/** Per-channel mean and std of images in [0, 1]; one entry applies to every channel. */
export interface Normalization {
  mean: number[];
  std: number[];
}

/** The presets of spec §1. */
export const NORMALIZATIONS = {
  /** ImageNet statistics: divisor 2·std = (0.458, 0.448, 0.450). */
  imagenet: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
  /** x·2 − 1. */
  simple: { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] },
  /** Grayscale: x·2 − 1 (the same as simple, one channel). */
  gray: { mean: [0.5], std: [0.25] },
} as const satisfies Record<string, Normalization>;

export type NormalizationName = keyof typeof NORMALIZATIONS;

/** A preset by name, or the normalisation itself. */
export function resolveNormalization(norm: Normalization | NormalizationName): Normalization {
  if (typeof norm !== 'string') return norm;
  const n = NORMALIZATIONS[norm];
  if (n === undefined) throw new RangeError(`unknown normalization ${JSON.stringify(norm)} (imagenet, simple, gray)`);
  return { mean: [...n.mean], std: [...n.std] };
}

/** mean and std with one entry per channel (a single entry is repeated). */
export function perChannel(norm: Normalization | NormalizationName, channels: number): Normalization {
  const n = resolveNormalization(norm);
  const expand = (v: number[], what: string): number[] => {
    if (v.length === channels) return [...v];
    if (v.length === 1) return Array.from({ length: channels }, () => v[0]!);
    throw new RangeError(`normalization: ${v.length} ${what} values for ${channels}-channel images`);
  };
  const out = { mean: expand(n.mean, 'mean'), std: expand(n.std, 'std') };
  if (out.std.some((s) => !(s > 0))) throw new RangeError('normalization: std must be positive');
  return out;
}

function channelTensor(values: number[], like: Tensor): Tensor {
  return torch.tensor(values, { device: like.device }).view(1, values.length, 1, 1);
}

/** [0, 1] floats -> normalised floats: (x − mean) / (2·std). NCHW. */
export function normalizeUnit(x: Tensor, norm: Normalization | NormalizationName): Tensor {
  return torch.tidy(() => {
    const n = perChannel(norm, x.shape[1]!);
    return x.sub(channelTensor(n.mean, x)).div(
      channelTensor(
        n.std.map((s) => 2 * s),
        x,
      ),
    );
  });
}

/** uint8 NCHW images -> float32 (img/255 − mean) / (2·std), on the images' device. */
export function normalize(images: Tensor, norm: Normalization | NormalizationName): Tensor {
  if (images.ndim !== 4) throw new TypeError(`normalize: expected NCHW images, got shape [${images.shape}]`);
  return torch.tidy(() => normalizeUnit(images.float().div(255), norm));
}

/**
 * Normalised floats -> uint8: x·2·std + mean in [0, 1], then as torchvision's
 * save_image: ⌊255·v + 0.5⌋ clamped to [0, 255].
 */
export function denormalize(x: Tensor, norm: Normalization | NormalizationName): Tensor {
  if (x.ndim !== 4) throw new TypeError(`denormalize: expected NCHW, got shape [${x.shape}]`);
  return torch.tidy(() => {
    const n = perChannel(norm, x.shape[1]!);
    const unit = x
      .float()
      .mul(
        channelTensor(
          n.std.map((s) => 2 * s),
          x,
        ),
      )
      .add(channelTensor(n.mean, x));
    return unit.mul(255).add(0.5).clamp(0, 255).to('uint8');
  });
}

/**
 * The range of normalised data per channel, (0 − mean)/(2·std) to
 * (1 − mean)/(2·std): for imagenet R [−1.059, 1.124], G [−1.018, 1.214],
 * B [−0.902, 1.320] (spec §1). Samplers clamp to it.
 */
export function clampRange(
  norm: Normalization | NormalizationName,
  channels?: number,
): { min: number[]; max: number[] } {
  const n0 = resolveNormalization(norm);
  const n = perChannel(n0, channels ?? n0.mean.length);
  return {
    min: n.mean.map((m, c) => (0 - m) / (2 * n.std[c]!)),
    max: n.mean.map((m, c) => (1 - m) / (2 * n.std[c]!)),
  };
}
