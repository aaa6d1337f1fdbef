// The Loader (spec §1: shuffle=True, drop_last=True): an endless stream of
// batches, epoch after epoch, each epoch a permutation fixed by (seed, epoch),
// so a run resumed at (epoch, position) gets exactly the batches the
// uninterrupted run would have had. Sources that need decoding are decoded in
// worker threads, k batches ahead; in-memory ones are read synchronously.
// With worldSize > 1 the batch size is global and each rank takes its slice
// (Accelerate's split_batches=True).
import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

import { BatchReader, defaultNumWorkers, type RawBatch, type ReadMode } from './pool.js';
import { DataError, type ImageDataset } from './types.js';

/** Where the stream is: the next batch is batch `position` of epoch `epoch`. */
export interface LoaderState {
  epoch: number;
  position: number;
}

export interface LoaderOptions {
  /** Images per batch, across all ranks (default worldSize 1: this process's batch). */
  batchSize: number;
  /** Permute every epoch (default true); false keeps dataset order. */
  shuffle?: boolean;
  /** The permutation of epoch e depends on (seed, e) only (default 0). */
  seed?: number;
  /** Drop the last partial batch of an epoch (default true). */
  dropLast?: boolean;
  /** Decode worker threads for sources that need decoding (default min(4, cores); 0: on this thread). */
  numWorkers?: number;
  /** Batches decoded ahead (default 2). */
  prefetch?: number;
  /** Resume here (default epoch 0, position 0). */
  start?: LoaderState;
  rank?: number;
  worldSize?: number;
}

export interface Batch {
  /** uint8 [B, C, H, W] on the CPU. */
  images: Tensor;
  /** int64 [B] on the CPU. */
  labels: Tensor;
  epoch: number;
  /** This batch's index within its epoch. */
  position: number;
  /** The dataset indices of the images. */
  indices: Int32Array;
}

/** A 32-bit mix (murmur3's finaliser). */
function mix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * A random permutation of 0..n−1 determined by (seed, epoch): Fisher–Yates
 * driven by xoshiro128** seeded from both, with unbiased bounded draws.
 */
export function epochPermutation(n: number, seed: number, epoch: number): Int32Array {
  if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(epoch))
    throw new TypeError('seed and epoch must be integers');
  // Hash (seed, epoch) into one word, then spread it over the four state words.
  let h = mix32(Math.floor(epoch / 2 ** 32) >>> 0);
  h = mix32(h ^ (epoch >>> 0));
  h = mix32(h ^ (Math.floor(seed / 2 ** 32) >>> 0));
  h = mix32(h ^ (seed >>> 0));
  let s0 = mix32((h + 0x9e3779b9) >>> 0);
  let s1 = mix32((h + 0x3c6ef372) >>> 0);
  let s2 = mix32((h + 0xdaa66d2b) >>> 0);
  let s3 = mix32((h + 0x78dde6e4) >>> 0);
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1;
  const nextU32 = (): number => {
    const r = Math.imul(((Math.imul(s1, 5) << 7) | (Math.imul(s1, 5) >>> 25)) >>> 0, 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
    return r;
  };
  for (let k = 0; k < 8; k++) nextU32();
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const bound = i + 1;
    const limit = 2 ** 32 - (2 ** 32 % bound);
    let r: number;
    do r = nextU32();
    while (r >= limit);
    const j = r % bound;
    const t = perm[i]!;
    perm[i] = perm[j]!;
    perm[j] = t;
  }
  return perm;
}

interface Slot {
  epoch: number;
  position: number;
  indices: Int32Array;
  raw: Promise<RawBatch>;
}

/** Batches of uint8 images and int64 labels from an ImageDataset. */
export class Loader {
  readonly dataset: ImageDataset;
  readonly batchSize: number;
  /** This rank's images per batch: batchSize / worldSize. */
  readonly localBatchSize: number;
  readonly batchesPerEpoch: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly prefetch: number;
  readonly rank: number;
  readonly worldSize: number;
  #reader: BatchReader;
  #state: LoaderState;
  #scheduled: LoaderState;
  #queue: Slot[] = [];
  #perms = new Map<number, Int32Array>();
  #closed = false;

  constructor(dataset: ImageDataset, opts: LoaderOptions) {
    const n = dataset.length;
    this.dataset = dataset;
    this.batchSize = opts.batchSize;
    this.shuffle = opts.shuffle ?? true;
    this.seed = opts.seed ?? 0;
    this.dropLast = opts.dropLast ?? true;
    this.prefetch = opts.prefetch ?? 2;
    this.rank = opts.rank ?? 0;
    this.worldSize = opts.worldSize ?? 1;
    const B = this.batchSize;
    if (!Number.isInteger(B) || B < 1) throw new RangeError(`Loader: batchSize must be a positive integer, got ${B}`);
    if (!Number.isInteger(this.worldSize) || this.worldSize < 1 || B % this.worldSize !== 0)
      throw new RangeError(`Loader: batchSize ${B} must be a multiple of worldSize ${this.worldSize}`);
    if (!Number.isInteger(this.rank) || this.rank < 0 || this.rank >= this.worldSize)
      throw new RangeError(`Loader: rank ${this.rank} is outside [0, ${this.worldSize})`);
    if (!Number.isInteger(this.prefetch) || this.prefetch < 1)
      throw new RangeError(`Loader: prefetch must be a positive integer, got ${this.prefetch}`);
    if (!this.dropLast && this.worldSize > 1)
      throw new RangeError('Loader: dropLast must be true with worldSize > 1 (every rank needs a full slice)');
    this.localBatchSize = B / this.worldSize;
    this.batchesPerEpoch = this.dropLast ? Math.floor(n / B) : Math.ceil(n / B);
    if (this.batchesPerEpoch === 0)
      throw new DataError(
        `Loader: the dataset has ${n} images, fewer than one batch of ${B}${this.dropLast ? ' (dropLast)' : ''}`,
      );
    const start = opts.start ?? { epoch: 0, position: 0 };
    if (!Number.isInteger(start.epoch) || start.epoch < 0 || !Number.isInteger(start.position) || start.position < 0)
      throw new RangeError(`Loader: bad start state ${JSON.stringify(start)}`);
    if (start.position > this.batchesPerEpoch)
      throw new RangeError(
        `Loader: start position ${start.position} is past the ${this.batchesPerEpoch} batches of an epoch (different batch size or dataset?)`,
      );
    this.#state = this.#normalise(start);
    this.#scheduled = { ...this.#state };
    this.#reader = new BatchReader(dataset, opts.numWorkers ?? defaultNumWorkers());
  }

  /** 'sync' (in memory), 'workers' (decoded in threads) or 'async' (through get()). */
  get mode(): ReadMode {
    return this.#reader.mode;
  }

  /** Decode workers still running (0 unless mode is 'workers', and after close()). */
  get liveWorkers(): number {
    return this.#reader.pool?.liveWorkers ?? 0;
  }

  /** The decode workers' thread ids (empty unless mode is 'workers'). */
  get workerThreadIds(): number[] {
    return this.#reader.pool?.threadIds ?? [];
  }

  #normalise(s: LoaderState): LoaderState {
    return s.position >= this.batchesPerEpoch ? { epoch: s.epoch + 1, position: 0 } : { ...s };
  }

  /** The state to save: a Loader started from it continues with the batch next() would return. */
  state(): LoaderState {
    return { ...this.#state };
  }

  #permutation(epoch: number): Int32Array {
    let p = this.#perms.get(epoch);
    if (p === undefined) {
      p = this.shuffle
        ? epochPermutation(this.dataset.length, this.seed, epoch)
        : Int32Array.from({ length: this.dataset.length }, (_, i) => i);
      this.#perms.set(epoch, p);
      for (const e of this.#perms.keys()) if (e < epoch - 1) this.#perms.delete(e);
    }
    return p;
  }

  /** The dataset indices of this rank's part of batch `position` of `epoch`. */
  indicesOf(epoch: number, position: number): Int32Array {
    const perm = this.#permutation(epoch);
    const start = position * this.batchSize;
    const end = Math.min(start + this.batchSize, perm.length);
    const global = perm.subarray(start, end);
    if (this.worldSize === 1) return global.slice();
    const per = this.localBatchSize;
    return global.slice(this.rank * per, (this.rank + 1) * per);
  }

  #schedule(): Slot {
    const { epoch, position } = this.#scheduled;
    const indices = this.indicesOf(epoch, position);
    this.#scheduled = this.#normalise({ epoch, position: position + 1 });
    const raw = this.#reader.read(indices);
    raw.catch(() => undefined); // awaited (and reported) by next()
    return { epoch, position, indices, raw };
  }

  #fill(): void {
    if (this.#reader.mode === 'sync') return;
    while (this.#queue.length < this.prefetch) this.#queue.push(this.#schedule());
  }

  /** The next batch (crossing into the next epoch after the last one). */
  async next(): Promise<Batch> {
    if (this.#closed) throw new DataError('Loader is closed');
    let slot: Slot;
    if (this.#reader.mode === 'sync') slot = this.#schedule();
    else {
      this.#fill();
      slot = this.#queue.shift()!;
      this.#fill();
    }
    this.#state = this.#normalise({ epoch: slot.epoch, position: slot.position + 1 });
    const raw = await slot.raw;
    if (this.#closed) throw new DataError('Loader is closed');
    const { channels: C, height: H, width: W } = this.dataset;
    const images = torch.fromTypedArray(raw.pixels, [raw.count, C, H, W], { dtype: 'uint8', copy: true });
    const labels = torch.fromTypedArray(
      BigInt64Array.from(raw.labels, (l) => BigInt(l)),
      [raw.count],
      {
        dtype: 'int64',
        copy: true,
      },
    );
    this.#reader.recycle(raw);
    return { images, labels, epoch: slot.epoch, position: slot.position, indices: slot.indices };
  }

  /** Stops the decode workers (waits until they have exited). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    await this.#reader.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
