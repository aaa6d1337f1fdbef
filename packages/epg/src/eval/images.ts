// Image files for evaluation: PNG and JPEG decoded by the data pipeline's
// codecs (src/data/codecs.ts: PNG exactly as PIL; JPEG through jpeg-js with
// libjpeg's fancy chroma upsampling and YCbCr tables, within a few levels of
// PIL, where plain jpeg-js is off by 1.5 levels on average and up to ~65 at
// colour edges) to RGB uint8 channel-major [3, H, W], and folders of samples.
// Alpha is dropped without compositing and grey is repeated to RGB, as PIL's
// convert('RGB') does.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative } from 'node:path';

import { decodeImage as decodeHwc, hwcToChw } from '../data/codecs.js';

/** A decoded image: RGB, uint8, channel-major [3, H, W]. */
export interface DecodedImage {
  pixels: Uint8Array;
  height: number;
  width: number;
}

export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg'] as const;

/** Decodes a PNG or JPEG (told apart by their signatures) to RGB CHW uint8. */
export function decodeImage(bytes: Uint8Array, name = 'image'): DecodedImage {
  const img = decodeHwc(bytes, { name, channels: 3 });
  return { pixels: hwcToChw(img.pixels, img.height, img.width, 3), height: img.height, width: img.width };
}

/** Image files under dir (recursively), sorted by their path relative to dir. */
export function listImages(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      if (name.startsWith('.')) continue;
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if ((IMAGE_EXTENSIONS as readonly string[]).includes(extname(name).toLowerCase())) out.push(p);
    }
  };
  walk(dir);
  return out.sort((a, b) => (relative(dir, a) < relative(dir, b) ? -1 : 1));
}

/** Reads and decodes one image file. */
export function readImage(path: string): DecodedImage {
  return decodeImage(readFileSync(path), path);
}
