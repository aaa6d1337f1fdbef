// Image files <-> uint8 pixels: PNG through pngjs, JPEG through jpeg-js. The
// pixels match what Python's PIL gives for img.convert('RGB' or 'L'):
//   - PNG exactly: gray, gray+alpha, RGB, RGBA, palette, 1/2/4/8/16-bit
//     (16-bit samples keep their high byte, as PIL does for RGB;16B); alpha
//     and tRNS transparency are dropped (not composited), as convert() does.
//   - JPEG: jpeg-js does the entropy decoding and the IDCT; the chroma
//     upsampling and the YCbCr -> RGB conversion are libjpeg(-turbo)'s own
//     (fancy upsampling, 16-bit fixed-point tables), which PIL uses. jpeg-js's
//     IDCT (poppler's Loeffler) rounds differently from libjpeg's ISLOW, so
//     pixels differ from PIL by at most a few levels (on CIFAR-10: mean 0.14,
//     max 3), against mean 1.4 and max 63 for jpeg-js's own nearest-neighbour
//     chroma upsampling.
// No @epg/torch here: decode workers load this module.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { runInThisContext } from 'node:vm';

import jpeg from 'jpeg-js';
import pngjs from 'pngjs';

import { DataError, describeError } from './types.js';

/** A decoded image: uint8 pixels, row-major, channels interleaved (H×W×C). */
export interface DecodedImage {
  width: number;
  height: number;
  /** 1 (grayscale) or 3 (RGB). */
  channels: number;
  pixels: Uint8Array;
}

export type ImageFormat = 'png' | 'jpeg';

/** What a file's first bytes say: format, size and natural channel count (without decoding). */
export interface ImageHeader {
  format: ImageFormat;
  width: number;
  height: number;
  channels: number;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** The format by magic bytes: PNG's 8-byte signature, JPEG's SOI marker FF D8 FF. */
export function detectImageFormat(bytes: Uint8Array): ImageFormat | null {
  if (bytes.length >= 8 && PNG_SIGNATURE.every((b, i) => bytes[i] === b)) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return null;
}

function fail(name: string, problem: string, cause?: unknown): never {
  throw new DataError(`${name}: ${problem}`, cause === undefined ? undefined : { cause });
}

function u32be(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

interface PngHeader {
  width: number;
  height: number;
  depth: number;
  colorType: number;
}

function pngHeader(bytes: Uint8Array, name: string): PngHeader {
  if (bytes.length < 33) fail(name, `truncated PNG (${bytes.length} bytes, too short for its header)`);
  if (u32be(bytes, 8) !== 13 || String.fromCharCode(...bytes.subarray(12, 16)) !== 'IHDR')
    fail(name, 'corrupt PNG (the first chunk is not a 13-byte IHDR)');
  const h = { width: u32be(bytes, 16), height: u32be(bytes, 20), depth: bytes[24]!, colorType: bytes[25]! };
  const depths: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
  if (!(h.colorType in depths)) fail(name, `corrupt PNG (unknown colour type ${h.colorType})`);
  if (!depths[h.colorType]!.includes(h.depth))
    fail(name, `corrupt PNG (bit depth ${h.depth} is not allowed for colour type ${h.colorType})`);
  if (h.width === 0 || h.height === 0) fail(name, `corrupt PNG (size ${h.width}×${h.height})`);
  return h;
}

const JPEG_SOF = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

function jpegHeader(bytes: Uint8Array, name: string): ImageHeader | null {
  let p = 2;
  while (p + 4 <= bytes.length) {
    if (bytes[p] !== 0xff) fail(name, `corrupt JPEG (no marker at byte ${p})`);
    const marker = bytes[p + 1]!;
    if (marker === 0xff) {
      p++; // fill byte
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      p += 2;
      continue;
    }
    const len = (bytes[p + 2]! << 8) | bytes[p + 3]!;
    if (JPEG_SOF.has(marker)) {
      if (p + 10 > bytes.length) return null;
      const height = (bytes[p + 5]! << 8) | bytes[p + 6]!;
      const width = (bytes[p + 7]! << 8) | bytes[p + 8]!;
      const comps = bytes[p + 9]!;
      return { format: 'jpeg', width, height, channels: comps === 1 ? 1 : 3 };
    }
    if (marker === 0xd9 || marker === 0xda) fail(name, 'corrupt JPEG (no frame header before the image data)');
    p += 2 + len;
  }
  return null;
}

/**
 * Format, size and channels from the first bytes of a file (a PNG needs 33,
 * a JPEG up to its frame header); null when the bytes end before that.
 */
export function readImageHeader(bytes: Uint8Array, name = 'image'): ImageHeader | null {
  const format = detectImageFormat(bytes);
  if (format === 'png') {
    if (bytes.length < 33) return null;
    const h = pngHeader(bytes, name);
    return { format, width: h.width, height: h.height, channels: h.colorType === 0 || h.colorType === 4 ? 1 : 3 };
  }
  if (format === 'jpeg') return jpegHeader(bytes, name);
  return fail(name, describeUnknown(bytes));
}

function describeUnknown(bytes: Uint8Array): string {
  if (bytes.length === 0) return 'empty file (expected a PNG or JPEG image)';
  const head = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
  return `not a PNG or JPEG image (it starts with bytes ${head})`;
}

/** Options of decodeImage. */
export interface DecodeOptions {
  /** Named in error messages (a file name). */
  name?: string;
  /** Convert to this many channels (gray -> RGB replicates; RGB -> gray as PIL's convert('L')). */
  channels?: 1 | 3;
}

/** Decodes a PNG or JPEG (detected by magic bytes) to H×W×C uint8; throws a DataError naming the problem. */
export function decodeImage(bytes: Uint8Array, opts: DecodeOptions = {}): DecodedImage {
  const name = opts.name ?? 'image';
  const format = detectImageFormat(bytes);
  let img: DecodedImage;
  if (format === 'png') img = decodePng(bytes, name);
  else if (format === 'jpeg') img = decodeJpeg(bytes, name);
  else return fail(name, describeUnknown(bytes));
  return opts.channels === undefined ? img : toChannels(img, opts.channels);
}

// ---------------------------------------------------------------- PNG

/** The PNG without its tRNS chunks: pngjs would zero the colour of transparent pixels, PIL keeps it. */
function withoutTransparency(bytes: Uint8Array, name: string): Uint8Array {
  const chunks: [number, number][] = [];
  let found = false;
  let p = 8;
  while (p + 12 <= bytes.length) {
    const len = u32be(bytes, p);
    const type = String.fromCharCode(...bytes.subarray(p + 4, p + 8));
    const end = p + 12 + len;
    if (end > bytes.length) break; // truncated: pngjs reports it
    if (type === 'tRNS') found = true;
    else chunks.push([p, end]);
    p = end;
    if (type === 'IEND') break;
  }
  if (!found) return bytes;
  if (p < bytes.length && chunks.length > 0) chunks.push([p, bytes.length]);
  const out = new Uint8Array(8 + chunks.reduce((s, [a, b]) => s + b - a, 0));
  out.set(bytes.subarray(0, 8));
  let o = 8;
  for (const [a, b] of chunks) {
    out.set(bytes.subarray(a, b), o);
    o += b - a;
  }
  if (out.length < 8) fail(name, 'corrupt PNG');
  return out;
}

function decodePng(bytes: Uint8Array, name: string): DecodedImage {
  const h = pngHeader(bytes, name);
  const buf = withoutTransparency(bytes, name);
  let data: Uint8Array | Uint16Array;
  try {
    const png = pngjs.PNG.sync.read(Buffer.from(buf.buffer, buf.byteOffset, buf.length), {
      skipRescale: h.depth === 16,
    });
    data = png.data as Uint8Array | Uint16Array;
  } catch (e) {
    return fail(name, `corrupt or truncated PNG (${describeError(e)})`, e);
  }
  const n = h.width * h.height;
  if (data.length !== n * 4) fail(name, `corrupt PNG (decoded ${data.length} samples, expected ${n * 4})`);
  const channels = h.colorType === 0 || h.colorType === 4 ? 1 : 3;
  const pixels = new Uint8Array(n * channels);
  // pngjs gives RGBA; 16-bit samples (skipRescale) keep their high byte.
  const shift = h.depth === 16 ? 8 : 0;
  if (channels === 1) for (let i = 0; i < n; i++) pixels[i] = data[4 * i]! >> shift;
  else
    for (let i = 0; i < n; i++) {
      pixels[3 * i] = data[4 * i]! >> shift;
      pixels[3 * i + 1] = data[4 * i + 1]! >> shift;
      pixels[3 * i + 2] = data[4 * i + 2]! >> shift;
    }
  return { width: h.width, height: h.height, channels, pixels };
}

/** PNG file bytes of H×W×C uint8 pixels (C = 1 gray, 3 RGB, 4 RGBA), 8-bit. */
export function encodePng(pixels: Uint8Array, width: number, height: number, channels: number): Uint8Array {
  const colorTypes: Record<number, 0 | 2 | 6> = { 1: 0, 3: 2, 4: 6 };
  const colorType = colorTypes[channels];
  if (colorType === undefined) throw new RangeError(`encodePng: channels must be 1, 3 or 4, got ${channels}`);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new RangeError(`encodePng: bad size ${width}×${height}`);
  if (pixels.length !== width * height * channels)
    throw new RangeError(
      `encodePng: ${pixels.length} bytes for a ${width}×${height}×${channels} image (expected ${width * height * channels})`,
    );
  const png = new pngjs.PNG({ width, height, colorType, inputColorType: colorType, bitDepth: 8 });
  png.data = Buffer.from(pixels.buffer, pixels.byteOffset, pixels.length);
  const out = pngjs.PNG.sync.write(png, { colorType, inputColorType: colorType, bitDepth: 8, deflateLevel: 6 });
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

// ---------------------------------------------------------------- JPEG

/** The parts of jpeg-js's (internal) decoder class used here. */
interface JpegComponent {
  lines: Uint8Array[];
  scaleX: number;
  scaleY: number;
}

interface JpegImageInternal {
  opts: Record<string, unknown>;
  width: number;
  height: number;
  components: JpegComponent[];
  adobe: { transformCode: number } | null;
  jfif: unknown;
  parse(data: Uint8Array): void;
}

interface JpegImageClass {
  new (): JpegImageInternal;
  resetMaxMemoryUsage(bytes: number): void;
}

let jpegImageClass: JpegImageClass | null | undefined;

/**
 * jpeg-js's JpegImage class, which its module keeps private: the module's
 * source, run in a function scope that returns it (jpeg-js is pinned, see
 * package.json). Null if that fails; decoding then uses jpeg-js's public
 * decode (nearest-neighbour chroma upsampling).
 */
function jpegImage(): JpegImageClass | null {
  if (jpegImageClass !== undefined) return jpegImageClass;
  try {
    const file = createRequire(import.meta.url).resolve('jpeg-js/lib/decoder.js');
    const src = readFileSync(file, 'utf8');
    const fn = runInThisContext(`(function (module) {${src}\nreturn JpegImage;\n})`, { filename: file }) as (m: {
      exports: unknown;
    }) => JpegImageClass;
    const cls = fn({ exports: {} });
    jpegImageClass = typeof cls === 'function' && typeof cls.resetMaxMemoryUsage === 'function' ? cls : null;
  } catch {
    jpegImageClass = null;
  }
  return jpegImageClass;
}

const MAX_JPEG_MEGAPIXELS = 250;
const MAX_JPEG_MEMORY_MB = 2048;

// libjpeg's YCbCr -> RGB tables (jdcolor.c build_ycc_rgb_table: SCALEBITS 16, FIX(x) = round(x·2^16)).
const CR_R = new Int32Array(256);
const CB_B = new Int32Array(256);
const CR_G = new Int32Array(256);
const CB_G = new Int32Array(256);
{
  const fix = (x: number): number => Math.floor(x * 65536 + 0.5);
  for (let i = 0; i < 256; i++) {
    const x = i - 128;
    CR_R[i] = (fix(1.402) * x + 32768) >> 16;
    CB_B[i] = (fix(1.772) * x + 32768) >> 16;
    CR_G[i] = -fix(0.71414) * x;
    CB_G[i] = -fix(0.34414) * x + 32768;
  }
}

/**
 * One component upsampled to W×H as libjpeg does it (jdsample.c with
 * do_fancy_upsampling): triangle filters for 2h1v, 1h2v and 2h2v with
 * libjpeg's rounding biases, edge rows and columns replicated, and plain
 * replication for other integral factors.
 */
function upsample(c: JpegComponent, W: number, H: number, maxH: number, maxV: number): Uint8Array {
  const hs = Math.round(c.scaleX * maxH);
  const vs = Math.round(c.scaleY * maxV);
  const hx = maxH / hs; // horizontal expansion
  const vx = maxV / vs;
  const dw = Math.ceil((W * hs) / maxH); // libjpeg's downsampled_width
  const dh = Math.ceil((H * vs) / maxV);
  const out = new Uint8Array(W * H);
  const L = c.lines;
  const line = (r: number): Uint8Array => L[r < 0 ? 0 : r >= dh ? dh - 1 : r]!;
  if (hx === 1 && vx === 1) {
    for (let y = 0; y < H; y++) out.set(L[y]!.subarray(0, W), y * W);
    return out;
  }
  if (hx === 2 && vx === 1 && dw > 2) {
    const row = new Uint8Array(2 * dw);
    for (let y = 0; y < H; y++) {
      const a = L[y]!;
      let o = 0;
      row[o++] = a[0]!;
      row[o++] = (a[0]! * 3 + a[1]! + 2) >> 2;
      for (let i = 1; i < dw - 1; i++) {
        const v = a[i]! * 3;
        row[o++] = (v + a[i - 1]! + 1) >> 2;
        row[o++] = (v + a[i + 1]! + 2) >> 2;
      }
      row[o++] = (a[dw - 1]! * 3 + a[dw - 2]! + 1) >> 2;
      row[o++] = a[dw - 1]!;
      out.set(row.subarray(0, W), y * W);
    }
    return out;
  }
  if (hx === 1 && vx === 2) {
    for (let y = 0; y < H; y++) {
      const r = y >> 1;
      const a = line(r);
      const b = line(y & 1 ? r + 1 : r - 1);
      const bias = y & 1 ? 2 : 1;
      for (let x = 0; x < W; x++) out[y * W + x] = (a[x]! * 3 + b[x]! + bias) >> 2;
    }
    return out;
  }
  if (hx === 2 && vx === 2 && dw > 2) {
    const row = new Uint8Array(2 * dw);
    for (let y = 0; y < H; y++) {
      const r = y >> 1;
      const a = line(r);
      const b = line(y & 1 ? r + 1 : r - 1);
      let o = 0;
      let last = a[0]! * 3 + b[0]!;
      let cur = last;
      let next = a[1]! * 3 + b[1]!;
      row[o++] = (cur * 4 + 8) >> 4;
      row[o++] = (cur * 3 + next + 7) >> 4;
      last = cur;
      cur = next;
      for (let i = 2; i < dw; i++) {
        next = a[i]! * 3 + b[i]!;
        row[o++] = (cur * 3 + last + 8) >> 4;
        row[o++] = (cur * 3 + next + 7) >> 4;
        last = cur;
        cur = next;
      }
      row[o++] = (cur * 3 + last + 8) >> 4;
      row[o++] = (cur * 4 + 7) >> 4;
      out.set(row.subarray(0, W), y * W);
    }
    return out;
  }
  if (Number.isInteger(hx) && Number.isInteger(vx)) {
    for (let y = 0; y < H; y++) {
      const a = L[Math.floor(y / vx)]!;
      for (let x = 0; x < W; x++) out[y * W + x] = a[Math.floor(x / hx)]!;
    }
    return out;
  }
  throw new Error(`unsupported sampling factors ${hs}×${vs} of ${maxH}×${maxV}`);
}

/** A JPEG that would not decode: truncated if its end-of-image marker is missing, else corrupt. */
function failJpeg(bytes: Uint8Array, name: string, e: unknown): never {
  let eoi = false;
  for (let i = bytes.length - 2; i >= Math.max(0, bytes.length - 4096) && !eoi; i--)
    eoi = bytes[i] === 0xff && bytes[i + 1] === 0xd9;
  if (!eoi)
    fail(name, `truncated JPEG (${bytes.length} bytes and no end-of-image marker; decoder: ${describeError(e)})`, e);
  return fail(name, `corrupt JPEG (${describeError(e)})`, e);
}

function decodeJpeg(bytes: Uint8Array, name: string): DecodedImage {
  const Cls = jpegImage();
  if (Cls === null) return decodeJpegPublic(bytes, name);
  const d = new Cls();
  d.opts = { tolerantDecoding: false, maxResolutionInMP: MAX_JPEG_MEGAPIXELS, maxMemoryUsageInMB: MAX_JPEG_MEMORY_MB };
  Cls.resetMaxMemoryUsage(MAX_JPEG_MEMORY_MB * 1024 * 1024);
  try {
    d.parse(bytes);
  } catch (e) {
    return failJpeg(bytes, name, e);
  }
  const W = d.width;
  const H = d.height;
  const comps = d.components;
  if (!(W > 0 && H > 0) || comps.length === 0) fail(name, 'corrupt JPEG (no image data)');
  if (comps.length === 4) return decodeJpegPublic(bytes, name); // CMYK / YCCK: jpeg-js's conversion
  if (comps.length !== 1 && comps.length !== 3)
    fail(name, `unsupported JPEG with ${comps.length} components (expected 1 gray or 3 colour)`);
  for (const c of comps)
    if (c.lines.length < Math.ceil(H * c.scaleY)) fail(name, 'truncated JPEG (image data ends early)');
  const maxH = Math.round(1 / Math.min(...comps.map((c) => c.scaleX)));
  const maxV = Math.round(1 / Math.min(...comps.map((c) => c.scaleY)));
  let planes: Uint8Array[];
  try {
    planes = comps.map((c) => upsample(c, W, H, maxH, maxV));
  } catch (e) {
    return fail(name, `unsupported JPEG (${describeError(e)})`, e);
  }
  if (comps.length === 1) return { width: W, height: H, channels: 1, pixels: planes[0]! };
  // libjpeg: Adobe marker decides; otherwise three components are YCbCr.
  const transform = d.adobe ? d.adobe.transformCode !== 0 : true;
  const [p0, p1, p2] = planes as [Uint8Array, Uint8Array, Uint8Array];
  const n = W * H;
  const pixels = new Uint8Array(n * 3);
  if (!transform) {
    for (let i = 0; i < n; i++) {
      pixels[3 * i] = p0[i]!;
      pixels[3 * i + 1] = p1[i]!;
      pixels[3 * i + 2] = p2[i]!;
    }
  } else {
    const clamp = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : v);
    for (let i = 0; i < n; i++) {
      const y = p0[i]!;
      const cb = p1[i]!;
      const cr = p2[i]!;
      pixels[3 * i] = clamp(y + CR_R[cr]!);
      pixels[3 * i + 1] = clamp(y + ((CB_G[cb]! + CR_G[cr]!) >> 16));
      pixels[3 * i + 2] = clamp(y + CB_B[cb]!);
    }
  }
  return { width: W, height: H, channels: 3, pixels };
}

/** jpeg-js's public decoder (RGB out; gray files are detected from the frame header). */
function decodeJpegPublic(bytes: Uint8Array, name: string): DecodedImage {
  let img: { width: number; height: number; data: Uint8Array };
  try {
    img = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: false,
      tolerantDecoding: false,
      maxResolutionInMP: MAX_JPEG_MEGAPIXELS,
      maxMemoryUsageInMB: MAX_JPEG_MEMORY_MB,
    });
  } catch (e) {
    return failJpeg(bytes, name, e);
  }
  const rgb: DecodedImage = { width: img.width, height: img.height, channels: 3, pixels: img.data };
  const header = jpegHeader(bytes, name);
  if (header?.channels !== 1) return rgb;
  const n = img.width * img.height;
  const gray = new Uint8Array(n);
  for (let i = 0; i < n; i++) gray[i] = img.data[3 * i]!;
  return { width: img.width, height: img.height, channels: 1, pixels: gray };
}

// ---------------------------------------------------------------- layouts

/** The image with `channels` channels: gray -> RGB replicates, RGB -> gray is PIL's convert('L') (ITU-R 601-2, rounded). */
export function toChannels(img: DecodedImage, channels: 1 | 3): DecodedImage {
  if (img.channels === channels) return img;
  const n = img.width * img.height;
  const src = img.pixels;
  const out = new Uint8Array(n * channels);
  if (channels === 3 && img.channels === 1) {
    for (let i = 0; i < n; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = src[i]!;
  } else if (channels === 1 && img.channels === 3) {
    // PIL Convert.c: L = (R·19595 + G·38470 + B·7471 + 0x8000) >> 16
    for (let i = 0; i < n; i++)
      out[i] = (src[3 * i]! * 19595 + src[3 * i + 1]! * 38470 + src[3 * i + 2]! * 7471 + 0x8000) >>> 16;
  } else throw new RangeError(`toChannels: cannot convert ${img.channels} channels to ${channels}`);
  return { width: img.width, height: img.height, channels, pixels: out };
}

/** H×W×C -> C×H×W. */
export function hwcToChw(pixels: Uint8Array, height: number, width: number, channels: number): Uint8Array {
  if (channels === 1) return pixels;
  const n = height * width;
  const out = new Uint8Array(n * channels);
  for (let c = 0; c < channels; c++) {
    const o = c * n;
    for (let i = 0; i < n; i++) out[o + i] = pixels[i * channels + c]!;
  }
  return out;
}

/** C×H×W -> H×W×C. */
export function chwToHwc(pixels: Uint8Array, height: number, width: number, channels: number): Uint8Array {
  if (channels === 1) return pixels;
  const n = height * width;
  const out = new Uint8Array(n * channels);
  for (let c = 0; c < channels; c++) {
    const o = c * n;
    for (let i = 0; i < n; i++) out[i * channels + c] = pixels[o + i]!;
  }
  return out;
}
