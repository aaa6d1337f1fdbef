// `epg eval`: FID (and precision/recall, KID) of a sample batch against
// reference statistics (spec §8). Samples: a folder of PNG/JPEG files or an
// .npz whose `arr_0` is uint8 [N, H, W, 3] (ADM's layout). Reference: an .npz
// with mu/sigma (ours or ADM's reference batch) or a dataset, whose statistics
// are computed and cached. The paper's numbers are FID-50K; with fewer samples
// the result is labelled "FID-N proxy" (FID is biased upwards at small N, so a
// proxy is not comparable with FID-50K), and the label is part of every result.
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

import * as torch from '@epg/torch';
import type { Device, Tensor } from '@epg/torch';

import { listImages, readImage } from './images.js';
import { InceptionFeatures, isPreprocessName, type PreprocessName } from './inception.js';
import { fid, kid as kernelInceptionDistance, precisionRecall, statistics, type FeatureStats } from './metrics.js';
import { loadNpz, NpzReader, saveNpz } from './npz.js';
import {
  defaultCacheDir,
  extractFeatures,
  loadStats,
  npzImageBatches,
  referenceStats,
  type ImageBatches,
  type ImageSource,
  type StatsMeta,
} from './reference.js';

/** The sample count of the paper's metric (FID-50K). */
export const FULL_EVAL_SAMPLES = 50_000;

export interface EvalOptions {
  /** Folder of PNG/JPEG samples (recursive, sorted by path) or an .npz with `arr_0` uint8 [N, H, W, 3]. */
  samples: string;
  /** Reference .npz: `mu`/`sigma`, plus `feats` (ours) or `arr_0` images (ADM's) for precision/recall. */
  ref?: string;
  /** Reference dataset instead of ref: statistics computed and cached (see referenceStats). */
  refDataset?: { source: ImageSource; name: string; numImages?: number; cacheDir?: string | null };
  /** Use the first N samples (default all). */
  numSamples?: number;
  /**
   * Preprocessing recipe. Default: the one recorded in the reference (our
   * files), 'adm' for a foreign reference .npz (ADM's reference batches were
   * made by its TF graph), else 'clean-fid'.
   */
  preprocess?: PreprocessName;
  /** Improved precision/recall, k = 3 (default: when the reference has features or images). */
  precisionRecall?: boolean;
  /** KID (default false; needs reference features or images). */
  kid?: boolean;
  device?: Device;
  batchSize?: number;
  /** The Inception TorchScript file (default: $EPG_INCEPTION or the pip package's). */
  inceptionPath?: string;
  /** Cache folder for reference features computed from an .npz's images (default defaultCacheDir(); null: no cache). */
  cacheDir?: string | null;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface EvalResult {
  /** "FID-50K", or "FID-N proxy" with fewer than 50,000 samples. */
  label: string;
  proxy: boolean;
  fid: number;
  precision: number | null;
  recall: number | null;
  kid: { mean: number; std: number } | null;
  numSamples: number;
  /** Images behind the reference statistics, when known. */
  numReference: number | null;
  preprocess: PreprocessName;
  samples: string;
  reference: string;
  seconds: number;
}

/** The label that must accompany an FID: "FID-50K", or "FID-N proxy" below 50k samples. */
export function fidLabel(numSamples: number): string {
  return numSamples >= FULL_EVAL_SAMPLES
    ? `FID-${numSamples % 1000 === 0 ? `${numSamples / 1000}K` : numSamples}`
    : `FID-${numSamples} proxy`;
}

/** One line for logs and the terminal; always carries the label. */
export function formatEvalResult(r: EvalResult): string {
  const parts = [`${r.label}: ${r.fid.toFixed(3)}`];
  if (r.precision !== null && r.recall !== null)
    parts.push(`precision ${r.precision.toFixed(4)}, recall ${r.recall.toFixed(4)}`);
  if (r.kid !== null) parts.push(`KID ${r.kid.mean.toExponential(3)} ± ${r.kid.std.toExponential(2)}`);
  parts.push(
    `${r.numSamples} samples vs ${r.numReference ?? '?'} reference images, ${r.preprocess} preprocessing, ${r.seconds.toFixed(0)} s`,
  );
  return parts.join(' | ');
}

interface SampleInput {
  count: number;
  batches: (batchSize: number) => ImageBatches;
  close: () => void;
}

function* folderBatches(files: readonly string[], batchSize: number): Generator<Tensor> {
  // Consecutive images of one size form a batch; a size change starts a new one.
  let pending: { pixels: Uint8Array; h: number; w: number }[] = [];
  const flush = (): Tensor => {
    const { h, w } = pending[0]!;
    const buf = new Uint8Array(pending.length * 3 * h * w);
    pending.forEach((p, i) => buf.set(p.pixels, i * 3 * h * w));
    const t = torch.fromTypedArray(buf, [pending.length, 3, h, w], { copy: false });
    pending = [];
    return t;
  };
  for (const f of files) {
    const img = readImage(f);
    if (pending.length > 0 && (pending[0]!.h !== img.height || pending[0]!.w !== img.width)) yield flush();
    pending.push({ pixels: img.pixels, h: img.height, w: img.width });
    if (pending.length === batchSize) yield flush();
  }
  if (pending.length > 0) yield flush();
}

function openSamples(path: string, limit: number | undefined): SampleInput {
  if (!existsSync(path)) throw new Error(`eval: samples '${path}' do not exist (give a folder of PNG/JPEG or an .npz)`);
  if (statSync(path).isDirectory()) {
    const files = listImages(path);
    if (files.length === 0) throw new Error(`eval: no .png/.jpg/.jpeg files under '${path}'`);
    const use = files.slice(0, limit ?? files.length);
    return { count: use.length, batches: (bs) => folderBatches(use, bs), close: () => undefined };
  }
  const r = new NpzReader(path);
  if (!r.has('arr_0')) {
    r.close();
    throw new Error(`eval: '${path}' has no 'arr_0' images (expected uint8 [N, H, W, 3], as ADM's sample batches)`);
  }
  const n = Math.min(r.header('arr_0').shape[0]!, limit ?? Infinity);
  return { count: n, batches: (bs) => npzImageBatches(r, n, bs), close: () => r.close() };
}

interface Reference {
  stats: FeatureStats;
  features: Tensor | null;
  numImages: number | null;
  meta: StatsMeta | null;
  /** ADM reference batch images, for features computed on demand. */
  images: NpzReader | null;
  describe: string;
}

/** Computes the metrics; see EvalOptions. The result's label says "proxy" below 50k samples. */
export async function runEval(opts: EvalOptions): Promise<EvalResult> {
  const t0 = performance.now();
  const log = opts.log ?? (() => undefined);
  if ((opts.ref === undefined) === (opts.refDataset === undefined))
    throw new Error('eval: give exactly one reference, ref (an .npz of statistics) or refDataset');
  if (opts.preprocess !== undefined && !isPreprocessName(opts.preprocess))
    throw new Error(`eval: unknown preprocess '${String(opts.preprocess)}' (clean-fid, pytorch-fid or adm)`);

  // Reference statistics from a file: read now (they decide the default preprocessing).
  let ref: Reference | null = null;
  if (opts.ref !== undefined) {
    const loaded = loadStats(opts.ref);
    const r = new NpzReader(opts.ref);
    const hasFeats = r.has('feats');
    const hasImages = r.has('arr_0');
    ref = {
      stats: loaded,
      features: null,
      numImages:
        loaded.meta?.numImages ??
        (hasFeats ? r.header('feats').shape[0]! : hasImages ? r.header('arr_0').shape[0]! : null),
      meta: loaded.meta,
      images: hasImages && !hasFeats ? r : null,
      describe: opts.ref,
    };
    if (hasFeats) ref.features = r.read('feats');
    if (ref.images === null) r.close();
  }
  const preprocess: PreprocessName =
    opts.preprocess ??
    (ref === null
      ? 'clean-fid'
      : ref.meta === null
        ? 'adm'
        : ref.meta.preprocess === 'custom'
          ? 'clean-fid'
          : ref.meta.preprocess);
  if (ref?.meta && ref.meta.preprocess !== preprocess)
    log(
      `warning: the reference was computed with '${ref.meta.preprocess}' preprocessing, the samples use '${preprocess}'; FID is then not meaningful`,
    );

  let samples: SampleInput | null = null;
  try {
    using net = new InceptionFeatures({
      ...(opts.inceptionPath !== undefined ? { path: opts.inceptionPath } : {}),
      ...(opts.device !== undefined ? { device: opts.device } : {}),
      ...(opts.batchSize !== undefined ? { batchSize: opts.batchSize } : {}),
      preprocess,
    });
    samples = openSamples(opts.samples, opts.numSamples);
    if (opts.refDataset !== undefined) {
      const d = opts.refDataset;
      log(`reference: ${d.name}, ${d.numImages ?? d.source.length} images`);
      const rs = await referenceStats(d.source, net, {
        name: d.name,
        ...(d.numImages !== undefined ? { numImages: d.numImages } : {}),
        ...(d.cacheDir !== undefined ? { cacheDir: d.cacheDir } : {}),
        onProgress: (done, total) => log(`reference features ${done}/${total}`),
      });
      log(rs.fromCache ? `reference statistics from cache ${rs.cachePath}` : `reference statistics computed`);
      ref = {
        stats: rs,
        features: rs.features,
        numImages: rs.meta.numImages,
        meta: rs.meta,
        images: null,
        describe: rs.cachePath ?? d.name,
      };
    }
    const reference = ref!;
    const wantPr = opts.precisionRecall ?? (reference.features !== null || reference.images !== null);
    const wantKid = opts.kid ?? false;
    if ((wantPr || wantKid) && reference.features === null) {
      if (reference.images === null)
        throw new Error(
          `eval: precision/recall and KID need reference features or images; '${reference.describe}' has only mu/sigma (pass precisionRecall: false)`,
        );
      const n = reference.images.header('arr_0').shape[0]!;
      // Cached by file name, size and modification time, and preprocessing (ADM's batches hold 10k images).
      const st = statSync(reference.describe);
      const cachePath = join(
        opts.cacheDir === undefined ? defaultCacheDir() : (opts.cacheDir ?? ''),
        `${basename(reference.describe).replace(/[^A-Za-z0-9._-]+/g, '_')}-${st.size}-${Math.round(st.mtimeMs)}-${preprocess}-feats.npz`,
      );
      if (opts.cacheDir !== null && existsSync(cachePath)) {
        log(`reference features from cache ${cachePath}`);
        reference.features = loadNpz(cachePath, ['feats'])['feats']!;
      } else {
        log(`reference features from ${n} reference images (arr_0)`);
        reference.features = await extractFeatures(net, npzImageBatches(reference.images, n, net.batchSize), {
          onProgress: (done) => log(`reference features ${done}/${n}`),
        });
        if (opts.cacheDir !== null) {
          mkdirSync(dirname(cachePath), { recursive: true });
          saveNpz(cachePath, { feats: reference.features });
        }
      }
    }

    const count = samples.count;
    log(`samples: ${count} from ${opts.samples}`);
    const feats = await extractFeatures(net, samples.batches(net.batchSize), {
      onProgress: (done) => log(`sample features ${done}/${count}`),
    });
    try {
      if (samples.count < 2) throw new Error(`eval: need at least 2 samples, got ${samples.count}`);
      const stats = statistics(feats);
      const value = fid(stats, reference.stats);
      stats.mu.dispose();
      stats.sigma.dispose();
      const pr = wantPr ? precisionRecall(reference.features!, feats, { k: 3 }) : null;
      const k = wantKid ? kernelInceptionDistance(reference.features!, feats) : null;
      return {
        label: fidLabel(samples.count),
        proxy: samples.count < FULL_EVAL_SAMPLES,
        fid: value,
        precision: pr?.precision ?? null,
        recall: pr?.recall ?? null,
        kid: k,
        numSamples: samples.count,
        numReference: reference.numImages,
        preprocess,
        samples: opts.samples,
        reference: reference.describe,
        seconds: (performance.now() - t0) / 1000,
      };
    } finally {
      feats.dispose();
    }
  } finally {
    samples?.close();
    ref?.images?.close();
    ref?.features?.dispose();
    ref?.stats.mu.dispose();
    ref?.stats.sigma.dispose();
  }
}
