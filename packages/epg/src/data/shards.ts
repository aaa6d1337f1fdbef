// Packed uint8 shards: a dataset preprocessed once (ADM centre crop, spec §1)
// and stored as raw C×H×W bytes, read back with positioned reads.
//   <dir>/index.json        { format, version, count, channels, height, width,
//                             numClasses, classNames, shardSize, labels, shards }
//   <dir>/labels.i32        count int32 labels, little-endian
//   <dir>/shard-00000.u8    shardSize images of C·H·W bytes (the last shard may hold fewer)
// The directory is written under a temporary name and renamed into place
// (writeDirAtomic), so it either exists complete or not at all.
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';

import { writeDirAtomic, writeFileSynced } from '@epg/torch/io/atomic';
import { writeAll } from '@epg/torch/io/fs';

import { chwToHwc, hwcToChw } from './codecs.js';
import { BatchReader, defaultNumWorkers } from './pool.js';
import { centerCropArr } from './preprocess.js';
import { checkIndex, DataError, describeError, type ImageDataset, type ImageItem } from './types.js';

export const SHARD_FORMAT = 'epg-image-shards';
export const SHARD_VERSION = 1;

export interface ShardIndex {
  format: typeof SHARD_FORMAT;
  version: number;
  count: number;
  channels: number;
  height: number;
  width: number;
  numClasses: number;
  classNames: string[];
  /** Images per shard (all but the last shard hold exactly this many). */
  shardSize: number;
  /** The labels file, relative to the directory. */
  labels: string;
  shards: { file: string; count: number }[];
  /** ADM centre-crop resolution applied while preparing, or null. */
  resolution: number | null;
}

export interface PrepareShardsOptions {
  /**
   * ADM centre crop (spec §1) of every image that is not resolution×resolution
   * already. For an ImageFolder of mixed sizes, open it with { resolution }
   * instead, so that the crop runs in the decode workers.
   */
  resolution?: number;
  /** Images per shard file (default 4096). */
  shardSize?: number;
  /** Decode workers for sources that need decoding (default min(4, cores)). */
  numWorkers?: number;
  /** Replace outDir if it exists (default false: an existing outDir is an error). */
  overwrite?: boolean;
  /** Called after every batch with the number of images written so far. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Writes every image of dataset, in order, as packed uint8 shards in outDir
 * (see the format above); returns the index.
 */
export async function prepareShards(
  dataset: ImageDataset,
  outDir: string,
  opts: PrepareShardsOptions = {},
): Promise<ShardIndex> {
  const shardSize = opts.shardSize ?? 4096;
  if (!Number.isInteger(shardSize) || shardSize < 1)
    throw new RangeError(`prepareShards: shardSize must be a positive integer, got ${shardSize}`);
  const res = opts.resolution ?? null;
  if (res !== null && !(Number.isInteger(res) && res > 0))
    throw new RangeError(`prepareShards: resolution must be a positive integer, got ${res}`);
  if (dataset.length === 0) throw new DataError('prepareShards: the dataset is empty');
  if (existsSync(outDir) && !opts.overwrite)
    throw new DataError(`prepareShards: ${outDir} exists (pass overwrite: true to replace it)`);
  const C = dataset.channels;
  const crop = res !== null && (dataset.height !== res || dataset.width !== res);
  const H = res ?? dataset.height;
  const W = res ?? dataset.width;
  const reader = new BatchReader(dataset, opts.numWorkers ?? defaultNumWorkers());
  const labels = new Int32Array(dataset.length);
  const shards: ShardIndex['shards'] = [];
  const chunk = Math.min(shardSize, 256);
  try {
    return await writeDirAtomic(outDir, async (tmp) => {
      for (let start = 0, s = 0; start < dataset.length; start += shardSize, s++) {
        const count = Math.min(shardSize, dataset.length - start);
        const file = `shard-${String(s).padStart(5, '0')}.u8`;
        const fd = openSync(join(tmp, file), 'w');
        try {
          // Read ahead one chunk while the current one is written.
          const readChunk = (k: number): Promise<{ pixels: Uint8Array; labels: Int32Array; count: number }> => {
            const n = Math.min(chunk, count - k);
            return reader.read(Int32Array.from({ length: n }, (_, j) => start + k + j));
          };
          let next = readChunk(0);
          for (let k = 0; k < count; k += chunk) {
            const batch = await next;
            if (k + chunk < count) next = readChunk(k + chunk);
            for (let j = 0; j < batch.count; j++) {
              const px = batch.pixels.subarray(j * reader.itemBytes, (j + 1) * reader.itemBytes);
              writeAll(fd, crop ? cropChw(px, dataset, res!) : px);
              labels[start + k + j] = batch.labels[j]!;
            }
            reader.recycle(batch);
            opts.onProgress?.(start + k + batch.count, dataset.length);
          }
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
        shards.push({ file, count });
      }
      const labelsFile = 'labels.i32';
      const le = new Uint8Array(labels.length * 4);
      const dv = new DataView(le.buffer);
      labels.forEach((l, i) => dv.setInt32(4 * i, l, true));
      writeFileSynced(join(tmp, labelsFile), le);
      const index: ShardIndex = {
        format: SHARD_FORMAT,
        version: SHARD_VERSION,
        count: dataset.length,
        channels: C,
        height: H,
        width: W,
        numClasses: dataset.numClasses,
        classNames: dataset.classNames,
        shardSize,
        labels: labelsFile,
        shards,
        resolution: res,
      };
      writeFileSynced(join(tmp, 'index.json'), new TextEncoder().encode(JSON.stringify(index, null, 1) + '\n'));
      return index;
    });
  } finally {
    await reader.close();
  }
}

function cropChw(px: Uint8Array, ds: ImageDataset, res: number): Uint8Array {
  const img = {
    width: ds.width,
    height: ds.height,
    channels: ds.channels,
    pixels: chwToHwc(px, ds.height, ds.width, ds.channels),
  };
  const out = centerCropArr(img, res);
  return hwcToChw(out.pixels, res, res, ds.channels);
}

/** A directory written by prepareShards, read image by image with positioned reads. */
export class ShardDataset implements ImageDataset {
  readonly dir: string;
  readonly length: number;
  readonly numClasses: number;
  readonly classNames: string[];
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly index: ShardIndex;
  readonly labels: Int32Array;
  #fds: number[];

  private constructor(dir: string, index: ShardIndex, labels: Int32Array) {
    this.dir = dir;
    this.index = index;
    this.length = index.count;
    this.numClasses = index.numClasses;
    this.classNames = index.classNames;
    this.channels = index.channels;
    this.height = index.height;
    this.width = index.width;
    this.labels = labels;
    this.#fds = index.shards.map(() => -1);
  }

  /** Opens a shard directory; checks the index and every file's size. */
  static open(dir: string): ShardDataset {
    const indexPath = join(dir, 'index.json');
    if (!existsSync(indexPath))
      throw new DataError(`ShardDataset: ${indexPath} not found (expected a directory written by prepareShards)`);
    let index: ShardIndex;
    try {
      index = JSON.parse(readFileSync(indexPath, 'utf8')) as ShardIndex;
    } catch (e) {
      throw new DataError(`${indexPath}: not valid JSON (${describeError(e)})`, { cause: e });
    }
    const bad = (problem: string): never => {
      throw new DataError(`${indexPath}: ${problem}`);
    };
    if (index.format !== SHARD_FORMAT) bad(`format is ${JSON.stringify(index.format)}, expected "${SHARD_FORMAT}"`);
    if (index.version !== SHARD_VERSION)
      bad(`version ${index.version} is not supported (this reader: ${SHARD_VERSION})`);
    for (const k of ['count', 'channels', 'height', 'width', 'numClasses', 'shardSize'] as const)
      if (!Number.isInteger(index[k]) || index[k] < 0) bad(`${k} must be a non-negative integer`);
    if (!Array.isArray(index.shards) || !Array.isArray(index.classNames)) bad('shards and classNames must be arrays');
    const item = index.channels * index.height * index.width;
    let total = 0;
    index.shards.forEach((s, k) => {
      const last = k === index.shards.length - 1;
      if (!(s.count > 0 && (last ? s.count <= index.shardSize : s.count === index.shardSize)))
        bad(`shard ${s.file} holds ${s.count} images, expected ${last ? `1..${index.shardSize}` : index.shardSize}`);
      total += s.count;
      const path = join(dir, s.file);
      let size: number;
      try {
        const fd = openSync(path, 'r');
        size = fstatSync(fd).size;
        closeSync(fd);
      } catch (e) {
        throw new DataError(`ShardDataset: cannot open shard ${path} (${describeError(e)})`, { cause: e });
      }
      if (size !== s.count * item)
        throw new DataError(
          `ShardDataset: ${path} has ${size} bytes, expected ${s.count * item} (${s.count} images of ${index.channels}×${index.height}×${index.width}); truncated or corrupt`,
        );
    });
    if (total !== index.count) bad(`the shards hold ${total} images, count says ${index.count}`);
    const labelsPath = join(dir, index.labels);
    let lb: Uint8Array;
    try {
      lb = readFileSync(labelsPath);
    } catch (e) {
      throw new DataError(`ShardDataset: cannot read ${labelsPath} (${describeError(e)})`, { cause: e });
    }
    if (lb.length !== 4 * index.count)
      throw new DataError(`ShardDataset: ${labelsPath} has ${lb.length} bytes, expected ${4 * index.count}`);
    const dv = new DataView(lb.buffer, lb.byteOffset, lb.length);
    const labels = new Int32Array(index.count);
    for (let i = 0; i < index.count; i++) {
      const l = dv.getInt32(4 * i, true);
      if (l < 0 || l >= index.numClasses)
        throw new DataError(
          `ShardDataset: ${labelsPath}: label ${l} of image ${i} is outside [0, ${index.numClasses})`,
        );
      labels[i] = l;
    }
    return new ShardDataset(dir, index, labels);
  }

  /** Reads image i into dest (C·H·W bytes) and returns its label. */
  readInto(i: number, dest: Uint8Array): number {
    checkIndex(i, this.length, 'ShardDataset');
    const item = this.channels * this.height * this.width;
    if (dest.length !== item)
      throw new RangeError(`ShardDataset.readInto: dest has ${dest.length} bytes, need ${item}`);
    const s = Math.floor(i / this.index.shardSize);
    const shard = this.index.shards[s]!;
    let fd = this.#fds[s]!;
    if (fd < 0) {
      fd = openSync(join(this.dir, shard.file), 'r');
      this.#fds[s] = fd;
    }
    const pos = (i - s * this.index.shardSize) * item;
    let done = 0;
    while (done < item) {
      const n = readSync(fd, dest, done, item - done, pos + done);
      if (n === 0) throw new DataError(`ShardDataset: ${join(this.dir, shard.file)} is truncated at image ${i}`);
      done += n;
    }
    return this.labels[i]!;
  }

  getSync(i: number): ImageItem {
    const pixels = new Uint8Array(this.channels * this.height * this.width);
    return { pixels, label: this.readInto(i, pixels) };
  }

  get(i: number): Promise<ImageItem> {
    return Promise.resolve(this.getSync(i));
  }

  close(): void {
    for (const fd of this.#fds) if (fd >= 0) closeSync(fd);
    this.#fds = this.#fds.map(() => -1);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
