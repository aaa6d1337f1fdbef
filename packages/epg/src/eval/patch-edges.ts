// The patch-edge ratio: how visible a ViT's patch grid is in its samples. The
// decoder's last layer writes each p×p patch from its own token, so a model
// early in training leaves steps between neighbouring patches that real images
// do not have. The ratio is the mean absolute difference of horizontally and
// vertically adjacent pixels across a patch boundary over the same within
// patches: about 1 for natural images, above 1 where the grid shows.
import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

import { NpzReader } from './npz.js';

/**
 * Patch-edge ratio of images [N, H, W, C] (the ADM .npz layout, uint8 or float)
 * for patches of `patch` pixels: mean |Δ| across patch boundaries / mean |Δ| within
 * patches, over both axes and all channels (channels averaged first).
 */
export function patchEdgeRatio(images: Tensor, patch: number): number {
  if (images.dim() !== 4)
    throw new RangeError(`patchEdgeRatio: images must be [N, H, W, C], got [${images.shape.join(', ')}]`);
  const [, H, W] = images.shape as [number, number, number, number];
  if (!Number.isInteger(patch) || patch < 2 || H % patch !== 0 || W % patch !== 0)
    throw new RangeError(`patchEdgeRatio: patch ${patch} must be an integer ≥ 2 that divides ${H}×${W}`);
  return torch.tidy(() => {
    const x = images.to({ dtype: 'float64' }).mean([3]);
    let edge = 0;
    let edgeCount = 0;
    let inner = 0;
    let innerCount = 0;
    // |Δ| of pixels i and i + 1 along W (dim 2), then H (dim 1); pair i crosses a boundary when i % p = p − 1.
    for (const [dim, n] of [
      [2, W],
      [1, H],
    ] as const) {
      const d = x
        .slice(dim, 1, n)
        .sub(x.slice(dim, 0, n - 1))
        .abs();
      const boundary = d.slice(dim, patch - 1, n - 1, patch);
      const all = d.sum().item();
      const atEdges = boundary.sum().item();
      edge += atEdges;
      edgeCount += boundary.numel();
      inner += all - atEdges;
      innerCount += d.numel() - boundary.numel();
    }
    return edge / edgeCount / (inner / innerCount);
  });
}

/** patchEdgeRatio of the images in an ADM-style .npz (arr_0). */
export function npzPatchEdgeRatio(path: string, patch: number): number {
  using r = new NpzReader(path);
  const images = r.read('arr_0');
  try {
    return patchEdgeRatio(images, patch);
  } finally {
    images.dispose();
  }
}
