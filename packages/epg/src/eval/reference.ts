// Reference statistics and sample batches in the ADM evaluator's formats
// (spec §8): a reference batch is an .npz holding `mu` and `sigma` (float64;
// ADM's VIRTUAL_imagenet256_labeled.npz also holds `arr_0` images and the sFID
// statistics `mu_s`, `sigma_s`, which we ignore); a sample batch is an .npz
// whose `arr_0` is uint8 [N, H, W, 3]. Files we write also carry `epg_meta`
// (JSON as uint8 bytes: preprocessing, image count, network hash, source) and,
// for reference caches, the float32 features `feats` (for precision/recall and
// KID); the ADM evaluator ignores both.
import { existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

import { FEATURE_DIM, INCEPTION_SHA1, InceptionFeatures, type PreprocessName } from './inception.js';
import { statistics, type FeatureStats } from './metrics.js';
import { NpzError, NpzReader, NpzWriter } from './npz.js';

/**
 * What the evaluation needs of a dataset: a structural subset of the data
 * pipeline's ImageDataset (pixels are uint8, channel-major [C, H, W], C = 1 or 3).
 */
export interface ImageSource {
  readonly length: number;
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  get(i: number): Promise<{ readonly pixels: Uint8Array }>;
}

/** Provenance written beside statistics we compute. */
export interface StatsMeta {
  /** Preprocessing recipe of the features. */
  preprocess: PreprocessName | 'custom';
  /** Images the statistics were computed from. */
  numImages: number;
  /** SHA-1 of the feature network. */
  inceptionSha1: string;
  /** Free-form description of the source (dataset name, file). */
  source?: string;
  height?: number;
  width?: number;
}

export interface LoadedStats extends FeatureStats {
  /** Our provenance record, absent in foreign files (ADM's reference batches). */
  meta: StatsMeta | null;
}

const META_KEY = 'epg_meta';

function encodeMeta(meta: StatsMeta): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(meta));
}

function readMeta(r: NpzReader): StatsMeta | null {
  if (!r.has(META_KEY)) return null;
  using t = r.read(META_KEY);
  const bytes = t.toTypedArray() as Uint8Array;
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as StatsMeta;
  } catch {
    throw new NpzError(r.path, `'${META_KEY}' is not valid JSON`);
  }
}

function checkStats(path: string, mu: Tensor, sigma: Tensor): void {
  const d = mu.shape[0];
  if (mu.ndim !== 1 || sigma.ndim !== 2 || sigma.shape[0] !== d || sigma.shape[1] !== d)
    throw new NpzError(path, `mu [${mu.shape}] and sigma [${sigma.shape}] are not a mean and covariance of one size`);
}

/** Writes {mu, sigma} (float64) as an .npz the ADM evaluator reads; with features, also `feats` (float32). */
export function saveStats(path: string, stats: FeatureStats, opts: { meta?: StatsMeta; features?: Tensor } = {}): void {
  checkStats(path, stats.mu, stats.sigma);
  using w = new NpzWriter(path);
  torch.tidy(() => {
    w.add('mu', stats.mu.to('float64'));
    w.add('sigma', stats.sigma.to('float64'));
    if (opts.features !== undefined) w.add('feats', opts.features.to('float32'));
  });
  if (opts.meta !== undefined) {
    const bytes = encodeMeta(opts.meta);
    w.addBytes(META_KEY, 'uint8', [bytes.length], bytes);
  }
  w.close();
}

/** Reads `mu` and `sigma` (as float64) of an .npz, ours or ADM's; other arrays are ignored. */
export function loadStats(path: string): LoadedStats {
  using r = new NpzReader(path);
  if (!r.has('mu') || !r.has('sigma'))
    throw new NpzError(path, `has no 'mu' and 'sigma' arrays (it has: ${r.keys().join(', ')})`);
  const { mu, sigma } = torch.tidy(() => ({ mu: r.read('mu').to('float64'), sigma: r.read('sigma').to('float64') }));
  checkStats(path, mu, sigma);
  return { mu, sigma, meta: readMeta(r) };
}

/** Writes images (uint8 [N, H, W, 3]) as `arr_0`, the layout of ADM's prepare_npz / evaluator. */
export function saveSamplesNpz(path: string, images: Tensor): void {
  if (images.dtype !== 'uint8' || images.ndim !== 4 || images.shape[3] !== 3)
    throw new TypeError(`saveSamplesNpz: expected uint8 [N, H, W, 3], got ${images.dtype} [${images.shape}]`);
  using w = new NpzWriter(path);
  w.add('arr_0', images);
  w.close();
}

/** Writes uint8 images [N, C, H, W] (C = 1 is repeated to RGB) as saveSamplesNpz does, in ADM's layout. */
export function saveImagesNpz(path: string, images: Tensor): void {
  if (images.ndim !== 4 || (images.shape[1] !== 1 && images.shape[1] !== 3))
    throw new TypeError(`saveImagesNpz: expected uint8 [N, 1 or 3, H, W], got ${images.dtype} [${images.shape}]`);
  torch.tidy(() => {
    const rgb = images.shape[1] === 1 ? images.expand(-1, 3, -1, -1) : images;
    saveSamplesNpz(path, rgb.permute(0, 2, 3, 1).contiguous());
  });
}

/**
 * Streams a sample batch to an .npz as `arr_0` (uint8 [N, H, W, 3]) without
 * holding all N images: append() batches (NHWC, or NCHW with layout 'NCHW';
 * uint8, or float in [0, 255], rounded), then close().
 */
export class SamplesNpzWriter implements Disposable {
  readonly count: number;
  #written = 0;
  #w: NpzWriter;
  readonly #h: number;
  readonly #wd: number;

  constructor(path: string, count: number, height: number, width: number) {
    this.count = count;
    this.#h = height;
    this.#wd = width;
    this.#w = new NpzWriter(path);
    this.#w.begin('arr_0', 'uint8', [count, height, width, 3]);
  }

  get written(): number {
    return this.#written;
  }

  append(batch: Tensor, layout: 'NHWC' | 'NCHW' = 'NHWC'): void {
    const bytes = torch.tidy(() => {
      let x = layout === 'NCHW' ? batch.permute(0, 2, 3, 1) : batch;
      if (x.ndim !== 4 || x.shape[1] !== this.#h || x.shape[2] !== this.#wd || x.shape[3] !== 3)
        throw new TypeError(
          `SamplesNpzWriter: expected a batch [B, ${this.#h}, ${this.#wd}, 3] (${layout}), got [${batch.shape}]`,
        );
      if (x.dtype !== 'uint8') x = x.round().clamp(0, 255).to('uint8');
      const a = x.contiguous().cpu().toTypedArray() as Uint8Array;
      return a;
    });
    const n = batch.shape[0]!;
    if (this.#written + n > this.count)
      throw new RangeError(`SamplesNpzWriter: ${this.#written + n} images appended, ${this.count} declared`);
    this.#w.write(bytes);
    this.#written += n;
  }

  close(): void {
    if (this.#written !== this.count) {
      this.#w.abort();
      throw new RangeError(`SamplesNpzWriter: ${this.#written} of ${this.count} images written; file discarded`);
    }
    this.#w.end();
    this.#w.close();
  }

  [Symbol.dispose](): void {
    this.#w[Symbol.dispose]();
  }
}

// ---------------------------------------------------------------------------
// Feature extraction over streams of image batches.

/** A batch of images: uint8 [B, C, H, W]. */
export type ImageBatches = AsyncIterable<Tensor> | Iterable<Tensor>;

export interface ExtractOptions {
  /** Called after each batch with the images done so far. */
  onProgress?: (done: number) => void;
}

/** Features (float32 [N, 2048], CPU) of a stream of uint8 [B, C, H, W] batches; each batch is disposed after use. */
export async function extractFeatures(
  net: InceptionFeatures,
  batches: ImageBatches,
  opts: ExtractOptions = {},
): Promise<Tensor> {
  const parts: Tensor[] = [];
  let done = 0;
  try {
    for await (const batch of batches) {
      try {
        parts.push(torch.tidy(() => net.features(batch).to('float32')));
        done += batch.shape[0]!;
      } finally {
        batch.dispose();
      }
      opts.onProgress?.(done);
    }
    if (parts.length === 0) return torch.zeros([0, FEATURE_DIM]);
    return torch.cat(parts, 0);
  } finally {
    for (const p of parts) p.dispose();
  }
}

/** Batches of uint8 [B, C, H, W] from an ImageSource (images [0, count)). */
export async function* sourceBatches(source: ImageSource, count: number, batchSize: number): AsyncGenerator<Tensor> {
  const { channels: c, height: h, width: w } = source;
  const size = c * h * w;
  for (let s = 0; s < count; s += batchSize) {
    const n = Math.min(batchSize, count - s);
    const items = await Promise.all(Array.from({ length: n }, (_, i) => source.get(s + i)));
    const buf = new Uint8Array(n * size);
    items.forEach((it, i) => {
      if (it.pixels.length !== size)
        throw new RangeError(`image ${s + i}: ${it.pixels.length} bytes, expected ${c}×${h}×${w} = ${size}`);
      buf.set(it.pixels, i * size);
    });
    yield torch.fromTypedArray(buf, [n, c, h, w], { copy: false });
  }
}

/** Batches of uint8 [B, 3, H, W] from the `arr_0` (uint8 [N, H, W, C]) of a sample .npz, read in place. */
export function* npzImageBatches(r: NpzReader, count: number, batchSize: number, key = 'arr_0'): Generator<Tensor> {
  const h = r.header(key);
  if (h.dtype !== 'uint8' || h.shape.length !== 4 || (h.shape[3] !== 3 && h.shape[3] !== 1))
    throw new NpzError(r.path, `'${key}' must be uint8 [N, H, W, 3] images, got ${h.descr} [${h.shape}]`);
  for (let s = 0; s < count; s += batchSize) {
    const n = Math.min(batchSize, count - s);
    yield torch.tidy(() => {
      const rows = r.readRows(key, s, n);
      return rows.permute(0, 3, 1, 2).contiguous();
    });
  }
}

// ---------------------------------------------------------------------------

export interface ReferenceStatsOptions {
  /** A name for the dataset, part of the cache key (no caching without one). */
  name?: string;
  /** Images to use, the first ones (default all). */
  numImages?: number;
  /** Cache folder (default $EPG_CACHE/fid or ~/.cache/epg/fid); null disables the cache. */
  cacheDir?: string | null;
  /** Keep the features in the cache (default true; needed for precision/recall and KID). */
  keepFeatures?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface ReferenceStats extends FeatureStats {
  meta: StatsMeta;
  /** float32 [N, 2048], when computed now or cached. */
  features: Tensor | null;
  /** The cache file used or written, if any. */
  cachePath: string | null;
  fromCache: boolean;
}

export function defaultCacheDir(): string {
  return join(process.env['EPG_CACHE'] ?? join(homedir(), '.cache', 'epg'), 'fid');
}

function sanitize(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, '_');
}

/**
 * FID reference statistics of a dataset (the first numImages images), cached
 * as `<cacheDir>/<name>-<N>-<HxW>-<preprocess>.npz` (mu, sigma, feats,
 * epg_meta); a cache whose meta does not match is recomputed.
 */
export async function referenceStats(
  source: ImageSource,
  net: InceptionFeatures,
  opts: ReferenceStatsOptions = {},
): Promise<ReferenceStats> {
  const n = Math.min(opts.numImages ?? source.length, source.length);
  if (n < 2) throw new RangeError(`referenceStats: need at least 2 images, the source has ${source.length}`);
  const meta: StatsMeta = {
    preprocess: net.preprocessName,
    numImages: n,
    inceptionSha1: INCEPTION_SHA1,
    source: opts.name ?? 'unnamed',
    height: source.height,
    width: source.width,
  };
  const dir = opts.cacheDir === undefined ? defaultCacheDir() : opts.cacheDir;
  const cachePath =
    dir !== null && opts.name !== undefined
      ? join(dir, `${sanitize(opts.name)}-${n}-${source.height}x${source.width}-${net.preprocessName}.npz`)
      : null;
  if (cachePath !== null && existsSync(cachePath) && net.preprocessName !== 'custom') {
    try {
      using r = new NpzReader(cachePath);
      const m = readMeta(r);
      if (
        m !== null &&
        m.preprocess === meta.preprocess &&
        m.numImages === n &&
        m.inceptionSha1 === INCEPTION_SHA1 &&
        m.source === meta.source
      ) {
        const { mu, sigma } = loadStats(cachePath);
        const features = r.has('feats') ? r.read('feats') : null;
        return { mu, sigma, meta: m, features, cachePath, fromCache: true };
      }
    } catch {
      // An unreadable cache is recomputed and overwritten.
    }
  }
  const bs = net.batchSize;
  const features = await extractFeatures(net, sourceBatches(source, n, bs), {
    onProgress: (done) => opts.onProgress?.(done, n),
  });
  const { mu, sigma } = statistics(features);
  if (cachePath !== null) {
    mkdirSync(dir!, { recursive: true });
    saveStats(cachePath, { mu, sigma }, { meta, ...((opts.keepFeatures ?? true) ? { features } : {}) });
  }
  return { mu, sigma, meta, features, cachePath, fromCache: false };
}
