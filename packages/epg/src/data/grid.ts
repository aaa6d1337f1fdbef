// Sample grids as PNG files, laid out as torchvision's make_grid/save_image
// (nrow images per row, `padding` pixels of padValue around each).
import { io, type Tensor } from '@epg/torch';

import { encodePng, type DecodedImage } from './codecs.js';

/** uint8 images [N, C, H, W] (C 1 or 3) tiled into one H×W×C image. */
export function makeImageGrid(images: Tensor, nrow = 8, padding = 2, padValue = 0): DecodedImage {
  if (images.ndim !== 4 || images.dtype !== 'uint8')
    throw new TypeError(
      `makeImageGrid: expected uint8 [N, C, H, W] images, got ${images.dtype} [${images.shape}] (denormalize() gives uint8)`,
    );
  const [N, C, H, W] = images.shape as [number, number, number, number];
  if (C !== 1 && C !== 3) throw new RangeError(`makeImageGrid: images must have 1 or 3 channels, got ${C}`);
  if (N < 1) throw new RangeError('makeImageGrid: no images');
  if (!Number.isInteger(nrow) || nrow < 1) throw new RangeError(`makeImageGrid: nrow must be a positive integer`);
  const src = images.toTypedArray() as Uint8Array; // row-major NCHW
  const xmaps = Math.min(nrow, N);
  const ymaps = Math.ceil(N / xmaps);
  const cellH = H + padding;
  const cellW = W + padding;
  const GH = cellH * ymaps + padding;
  const GW = cellW * xmaps + padding;
  const out = new Uint8Array(GH * GW * C).fill(padValue);
  for (let k = 0; k < N; k++) {
    const y0 = Math.floor(k / xmaps) * cellH + padding;
    const x0 = (k % xmaps) * cellW + padding;
    for (let c = 0; c < C; c++) {
      const plane = (k * C + c) * H * W;
      for (let y = 0; y < H; y++) {
        const row = plane + y * W;
        let o = ((y0 + y) * GW + x0) * C + c;
        for (let x = 0; x < W; x++, o += C) out[o] = src[row + x]!;
      }
    }
  }
  return { width: GW, height: GH, channels: C, pixels: out };
}

/** Saves uint8 images [N, C, H, W] as one PNG grid (see makeImageGrid), atomically. */
export function saveImageGrid(path: string, images: Tensor, nrow = 8, padding = 2, padValue = 0): void {
  const g = makeImageGrid(images, nrow, padding, padValue);
  io.writeFileAtomic(path, encodePng(g.pixels, g.width, g.height, g.channels));
}
