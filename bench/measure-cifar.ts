// Measurement (not a test): FID between CIFAR-10 train and test images of
// /work/shared/datasets/cifar10-jpeg.zip (JPEG members train/<class>/NNNN.jpg,
// test/<class>/NNNN.jpg, stored), decoded by the data pipeline's codec
// (jpeg-js + libjpeg's chroma upsampling, within 3 levels of PIL), through our whole
// pipeline (preprocess → Inception → statistics → FID, precision/recall, KID).
// Two samples of one distribution: the FID is the metric's floor at that N
// (≈ 3 for 10k vs 10k on the original CIFAR-10 in the literature; larger for
// smaller N, as the estimator is biased upwards ~ 1/N).
//
//   node bench/dist/measure-cifar.js [--train 10000] [--test 10000]
//        [--preprocess clean-fid] [--batch 50] [--out /tmp/cifar-fid] [--zip PATH]   (--help)
//
// Features are saved per split in --out (reused by a rerun), so an interrupted
// run loses at most one split. Train images are taken class-balanced (the
// first N/10 of each class in file-name order); test images likewise.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';
import { evaluation } from 'epg';

const {
  decodeImage,
  extractFeatures,
  fid,
  fidLabel,
  InceptionFeatures,
  kid,
  loadNpz,
  precisionRecall,
  saveNpz,
  statistics,
} = evaluation;
type InceptionFeatures = evaluation.InceptionFeatures;

export const CIFAR_ZIP = '/work/shared/datasets/cifar10-jpeg.zip';

/** Member names of a split, class-balanced: the first perClass of each class folder, sorted. */
export function cifarMembers(zip: torch.io.ZipReader, split: 'train' | 'test', count: number): string[] {
  const byClass = new Map<string, string[]>();
  for (const e of zip.entries()) {
    const m = /^(train|test)\/([^/]+)\/[^/]+\.jpe?g$/i.exec(e.name);
    if (m === null || m[1] !== split) continue;
    const list = byClass.get(m[2]!) ?? [];
    list.push(e.name);
    byClass.set(m[2]!, list);
  }
  const classes = [...byClass.keys()].sort();
  const perClass = Math.ceil(count / classes.length);
  const out: string[] = [];
  for (const c of classes) out.push(...byClass.get(c)!.sort().slice(0, perClass));
  return out.slice(0, count);
}

function* jpegBatches(zip: torch.io.ZipReader, names: readonly string[], batchSize: number): Generator<Tensor> {
  for (let s = 0; s < names.length; s += batchSize) {
    const chunk = names.slice(s, s + batchSize);
    const first = decodeImage(zip.read(chunk[0]!), chunk[0]);
    const { height: h, width: w } = first;
    const buf = new Uint8Array(chunk.length * 3 * h * w);
    buf.set(first.pixels, 0);
    for (let i = 1; i < chunk.length; i++) {
      const img = decodeImage(zip.read(chunk[i]!), chunk[i]);
      if (img.height !== h || img.width !== w)
        throw new Error(`${chunk[i]}: ${img.height}×${img.width}, expected ${h}×${w}`);
      buf.set(img.pixels, i * 3 * h * w);
    }
    yield torch.fromTypedArray(buf, [chunk.length, 3, h, w], { copy: false });
  }
}

const COMMAND = torch.cli.defineCommand({
  name: 'node bench/dist/measure-cifar.js',
  summary: "FID between CIFAR-10 train and test images (the metric's floor at that N)",
  flags: {
    train: { type: 'integer', default: 10000, help: 'train images (class-balanced)' },
    test: { type: 'integer', default: 10000, help: 'test images (class-balanced)' },
    preprocess: {
      type: 'string',
      choices: ['clean-fid', 'pytorch-fid', 'adm'],
      default: 'clean-fid',
      help: 'the Inception preprocessing',
    },
    batch: { type: 'integer', default: 50, help: 'Inception batch size' },
    out: { type: 'string', value: 'DIR', default: '/tmp/cifar-fid', help: 'where the features of each split are kept' },
    zip: { type: 'string', value: 'PATH', default: CIFAR_ZIP, help: 'the CIFAR-10 JPEG zip' },
  },
});

/** Features of one split; saved at the end, and every `chunk` images to a .partial.npz that a rerun resumes from. */
async function splitFeatures(
  net: InceptionFeatures,
  zip: torch.io.ZipReader,
  split: 'train' | 'test',
  n: number,
  out: string,
  chunk = 250,
): Promise<{ features: Tensor; seconds: number; cached: boolean; resumedFrom: number }> {
  const path = join(out, `${split}-${n}-${net.preprocessName}.npz`);
  const partial = `${path.slice(0, -4)}.partial.npz`;
  if (existsSync(path)) return { features: loadNpz(path)['feats']!, seconds: 0, cached: true, resumedFrom: n };
  const names = cifarMembers(zip, split, n);
  if (names.length < n) throw new Error(`${split}: only ${names.length} images in the zip`);
  let features = existsSync(partial) ? loadNpz(partial)['feats']! : torch.zeros([0, 2048]);
  const resumedFrom = features.shape[0]!;
  const t0 = performance.now();
  let last = t0;
  for (let s = resumedFrom; s < n; s += chunk) {
    const part = await extractFeatures(net, jpegBatches(zip, names.slice(s, s + chunk), net.batchSize), {
      onProgress: (done) => {
        const now = performance.now();
        const total = s + done;
        if (now - last > 30_000 || total === n) {
          last = now;
          const rate = (total - resumedFrom) / ((now - t0) / 1000);
          console.error(
            `${split}: ${total}/${n} images, ${rate.toFixed(1)} img/s, ETA ${((n - total) / rate / 60).toFixed(1)} min`,
          );
        }
      },
    });
    const next = torch.cat([features, part], 0);
    features.dispose();
    part.dispose();
    features = next;
    if (features.shape[0]! < n) saveNpz(partial, { feats: features });
  }
  const seconds = (performance.now() - t0) / 1000;
  saveNpz(path, { feats: features });
  rmSync(partial, { force: true });
  return { features, seconds, cached: false, resumedFrom };
}

export async function main(argv: string[]): Promise<void> {
  const p = torch.cli.parseCommand(COMMAND, argv);
  if (p.help) {
    console.log(torch.cli.formatHelp(COMMAND));
    return;
  }
  const { train: nTrain, test: nTest, preprocess: pre, out } = p.values;
  mkdirSync(out, { recursive: true });
  const t0 = performance.now();
  using zip = torch.io.ZipReader.open(p.values.zip);
  using net = new InceptionFeatures({ preprocess: pre, batchSize: p.values.batch });
  const train = await splitFeatures(net, zip, 'train', nTrain, out);
  const test = await splitFeatures(net, zip, 'test', nTest, out);
  const tStats = performance.now();
  const sTrain = statistics(train.features);
  const sTest = statistics(test.features);
  const value = fid(sTest, sTrain);
  const fidSeconds = (performance.now() - tStats) / 1000;
  const pr = precisionRecall(train.features, test.features, { k: 3 });
  const k = kid(train.features, test.features);
  // The same two sets at smaller N (nested prefixes, class-balanced order is kept by taking every m-th).
  const smaller: { n: number; fid: number }[] = [];
  for (const n of [1000, 2000, 5000]) {
    if (n >= Math.min(nTrain, nTest)) continue;
    const pick = (f: Tensor, total: number): Tensor =>
      f.indexSelect(
        0,
        torch
          .arange(0, n, 1)
          .mul(total / n)
          .floor()
          .to('int64'),
      );
    const v = torch.tidy(() => fid(statistics(pick(test.features, nTest)), statistics(pick(train.features, nTrain))));
    smaller.push({ n, fid: v });
  }
  const result = {
    label: fidLabel(Math.min(nTrain, nTest)),
    what: 'CIFAR-10 test vs train (cifar10-jpeg.zip; src/data/codecs.ts JPEG decode)',
    preprocess: pre,
    numTrain: nTrain,
    numTest: nTest,
    fid: value,
    precision: pr.precision,
    recall: pr.recall,
    kid: k,
    smallerN: smaller,
    featureSeconds: { train: train.seconds, test: test.seconds, cached: train.cached || test.cached },
    resumedFrom: { train: train.resumedFrom, test: test.resumedFrom },
    imagesPerSecond: (nTrain - train.resumedFrom + nTest - test.resumedFrom) / (train.seconds + test.seconds || 1),
    fidSeconds,
    wallSeconds: (performance.now() - t0) / 1000,
    threads: torch.getNumThreads(),
  };
  console.log(JSON.stringify(result, null, 2));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    await main(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof torch.cli.UsageError)) throw e;
    console.error(`measure-cifar: ${e.message}\n\n${torch.cli.formatHelp(COMMAND)}`);
    process.exitCode = 2;
  }
}
