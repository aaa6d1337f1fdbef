// Image files for evaluation: PNG (pngjs) and JPEG (jpeg-js) decoding to RGB
// uint8 CHW, and folders of samples. Alpha is dropped without compositing and
// grey is repeated to RGB, as PIL's convert('RGB') does; 16-bit PNGs are
// rescaled to 8 bits by pngjs. jpeg-js is not libjpeg: its IDCT and chroma
// upsampling differ from PIL's libjpeg-turbo: on CIFAR-10's 32×32 JPEGs, 69% of
// values differ, by 1.5 grey levels on average (up to 65 at colour edges), so
// statistics of jpeg-js-decoded images are comparable only with statistics of
// jpeg-js-decoded references (measure-cifar.ts reports the effect on FID).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative } from 'node:path';

import jpeg from 'jpeg-js';
import pngjs from 'pngjs';

const { PNG } = pngjs;

/** A decoded image: RGB, uint8, channel-major [3, H, W]. */
export interface DecodedImage {
  pixels: Uint8Array;
  height: number;
  width: number;
}

export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg'] as const;

function isPng(b: Uint8Array): boolean {
  return b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47;
}

function isJpeg(b: Uint8Array): boolean {
  return b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;
}

/** Interleaved [H, W, C] → RGB planes [3, H, W] (C = 3 or 4: alpha dropped; 1 or 2: grey repeated). */
export function interleavedToChw(data: Uint8Array, height: number, width: number, channels: number): Uint8Array {
  const hw = height * width;
  const out = new Uint8Array(3 * hw);
  if (channels >= 3) {
    for (let i = 0, p = 0; i < hw; i++, p += channels) {
      out[i] = data[p]!;
      out[hw + i] = data[p + 1]!;
      out[2 * hw + i] = data[p + 2]!;
    }
  } else {
    for (let i = 0, p = 0; i < hw; i++, p += channels) {
      const v = data[p]!;
      out[i] = v;
      out[hw + i] = v;
      out[2 * hw + i] = v;
    }
  }
  return out;
}

/** Decodes a PNG or JPEG (told apart by their signatures) to RGB CHW uint8. */
export function decodeImage(bytes: Uint8Array, name = 'image'): DecodedImage {
  if (isPng(bytes)) {
    let png;
    try {
      png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    } catch (e) {
      throw new Error(`${name}: cannot decode PNG: ${e instanceof Error ? e.message : String(e)}`);
    }
    // pngjs always hands back 8-bit RGBA.
    return {
      pixels: interleavedToChw(png.data, png.height, png.width, 4),
      height: png.height,
      width: png.width,
    };
  }
  if (isJpeg(bytes)) {
    let img;
    try {
      img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxMemoryUsageInMB: 2048 });
    } catch (e) {
      throw new Error(`${name}: cannot decode JPEG: ${e instanceof Error ? e.message : String(e)}`);
    }
    return { pixels: interleavedToChw(img.data, img.height, img.width, 3), height: img.height, width: img.width };
  }
  throw new Error(`${name}: not a PNG or JPEG file`);
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
