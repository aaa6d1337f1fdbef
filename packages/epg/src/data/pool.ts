// Reading batches of images from a dataset into (shared) memory: in worker
// threads for sources that need decoding, synchronously for in-memory ones,
// through get() otherwise. Used by the Loader and by prepareShards.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

import { DataError, itemBytes, type ImageDataset, type WorkerSourceSpec } from './types.js';
import type { DecodeReply, DecodeTask } from './worker.js';

interface Pending {
  task: DecodeTask;
  resolve: () => void;
  reject: (e: Error) => void;
}

/** How long close() lets a worker finish its current image before terminating it. */
const CLOSE_GRACE_MS = 10_000;

/** N worker threads that decode images of one dataset into shared buffers. */
export class DecodePool {
  readonly size: number;
  #workers: Worker[] = [];
  #busy = new Map<Worker, Pending>();
  #queue: Pending[] = [];
  #nextId = 0;
  #closed = false;
  #failure: Error | null = null;
  #exited: Promise<void>[] = [];
  #live = 0;

  constructor(spec: WorkerSourceSpec, numWorkers: number) {
    if (!Number.isInteger(numWorkers) || numWorkers < 1)
      throw new RangeError(`DecodePool: numWorkers must be a positive integer, got ${numWorkers}`);
    this.size = numWorkers;
    for (let i = 0; i < numWorkers; i++) {
      const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: { spec } });
      w.unref(); // idle workers do not keep the process alive; ref'd while they work
      w.on('message', (r: DecodeReply) => this.#done(w, r));
      w.on('error', (e) => this.#fail(new DataError(`decode worker failed: ${e.message}`, { cause: e })));
      this.#live++;
      this.#exited.push(
        new Promise((resolve) =>
          w.once('exit', (code) => {
            this.#live--;
            if (!this.#closed) this.#fail(new DataError(`decode worker exited unexpectedly (code ${code})`));
            resolve();
          }),
        ),
      );
      this.#workers.push(w);
    }
  }

  /** Workers that have not exited. */
  get liveWorkers(): number {
    return this.#live;
  }

  /** The workers' thread ids. */
  get threadIds(): number[] {
    return this.#workers.map((w) => w.threadId);
  }

  /**
   * Decodes images `indices` into pixels (byte offset pixelOffset, itemBytes
   * each) and their labels into labels (from element labelOffset), spread
   * over the workers.
   */
  run(
    indices: Int32Array,
    pixels: SharedArrayBuffer,
    pixelOffset: number,
    item: number,
    labels: SharedArrayBuffer,
    labelOffset: number,
  ): Promise<void> {
    const per = Math.ceil(indices.length / this.size);
    const parts: Promise<void>[] = [];
    for (let s = 0; s < indices.length; s += per) {
      const task: DecodeTask = {
        id: this.#nextId++,
        indices: indices.slice(s, s + per),
        pixels,
        pixelOffset: pixelOffset + s * item,
        labels,
        labelOffset: labelOffset + s,
      };
      parts.push(new Promise<void>((resolve, reject) => this.#submit({ task, resolve, reject })));
    }
    return Promise.all(parts).then(() => undefined);
  }

  #submit(p: Pending): void {
    if (this.#failure) return p.reject(this.#failure);
    if (this.#closed) return p.reject(new DataError('DecodePool is closed'));
    this.#queue.push(p);
    this.#dispatch();
  }

  #dispatch(): void {
    for (const w of this.#workers) {
      if (this.#queue.length === 0) return;
      if (this.#busy.has(w)) continue;
      const p = this.#queue.shift()!;
      this.#busy.set(w, p);
      w.ref();
      w.postMessage(p.task);
    }
  }

  #done(w: Worker, r: DecodeReply): void {
    const p = this.#busy.get(w);
    if (p === undefined || p.task.id !== r.id) return;
    this.#busy.delete(w);
    w.unref();
    if (r.error !== undefined) p.reject(new DataError(r.error));
    else p.resolve();
    this.#dispatch();
  }

  #fail(e: Error): void {
    if (this.#failure) return;
    this.#failure = e;
    for (const p of [...this.#busy.values(), ...this.#queue]) p.reject(e);
    this.#busy.clear();
    this.#queue = [];
  }

  /**
   * Ends the workers; pending requests are rejected. Each worker is asked to
   * stop and ends after the image it is decoding; one that has not ended
   * after CLOSE_GRACE_MS is terminated.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const err = new DataError('DecodePool is closed');
    for (const p of [...this.#busy.values(), ...this.#queue]) p.reject(err);
    this.#busy.clear();
    this.#queue = [];
    for (const w of this.#workers) {
      w.ref(); // until it has exited
      w.postMessage(null);
    }
    const exited = Promise.all(this.#exited);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(
        () => void Promise.all(this.#workers.map((w) => w.terminate())).then(() => resolve()),
        CLOSE_GRACE_MS,
      );
    });
    try {
      await Promise.race([exited, late]);
      await exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** The default number of decode workers: min(4, cores). */
export function defaultNumWorkers(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/** Images and labels of a batch, in (shared) memory. */
export interface RawBatch {
  /** count·C·H·W bytes (the buffer may be longer). */
  pixels: Uint8Array;
  labels: Int32Array;
  count: number;
}

export type ReadMode = 'sync' | 'workers' | 'async';

/**
 * Reads batches of a dataset: with getSync on the calling thread, else with
 * workerSource in a DecodePool (numWorkers > 0), else through get().
 */
export class BatchReader {
  readonly dataset: ImageDataset;
  readonly mode: ReadMode;
  readonly itemBytes: number;
  #pool: DecodePool | null = null;
  #free: SharedArrayBuffer[] = [];

  constructor(dataset: ImageDataset, numWorkers = defaultNumWorkers()) {
    this.dataset = dataset;
    this.itemBytes = itemBytes(dataset);
    if (dataset.getSync) this.mode = 'sync';
    else if (dataset.workerSource && numWorkers > 0) {
      this.mode = 'workers';
      this.#pool = new DecodePool(dataset.workerSource(), numWorkers);
    } else this.mode = 'async';
  }

  get pool(): DecodePool | null {
    return this.#pool;
  }

  #buffer(count: number): { pixels: SharedArrayBuffer; labels: SharedArrayBuffer } {
    const need = count * this.itemBytes;
    let px = this.#free.pop();
    if (px === undefined || px.byteLength < need) px = new SharedArrayBuffer(Math.max(need, 1));
    return { pixels: px, labels: new SharedArrayBuffer(Math.max(4 * count, 4)) };
  }

  /** Hands a batch's pixel buffer back for reuse (after its bytes were copied out). */
  recycle(b: RawBatch): void {
    if (b.pixels.buffer instanceof SharedArrayBuffer && this.#free.length < 8) this.#free.push(b.pixels.buffer);
  }

  /** Images `indices`, in order, synchronously (mode 'sync' only). */
  readSync(indices: ArrayLike<number>): RawBatch {
    const ds = this.dataset;
    if (!ds.getSync) throw new TypeError('BatchReader.readSync: the dataset has no getSync');
    const count = indices.length;
    const { pixels: px, labels: lb } = this.#buffer(count);
    const pixels = new Uint8Array(px, 0, count * this.itemBytes);
    const labels = new Int32Array(lb, 0, count);
    for (let k = 0; k < count; k++) {
      const item = ds.getSync(indices[k]!);
      this.#check(item.pixels, indices[k]!);
      pixels.set(item.pixels, k * this.itemBytes);
      labels[k] = item.label;
    }
    return { pixels, labels, count };
  }

  #check(px: Uint8Array, i: number): void {
    if (px.length !== this.itemBytes)
      throw new DataError(`image ${i} has ${px.length} bytes, the dataset's images have ${this.itemBytes}`);
  }

  /** Images `indices`, in order. */
  async read(indices: ArrayLike<number>): Promise<RawBatch> {
    if (this.mode === 'sync') return this.readSync(indices);
    const count = indices.length;
    const { pixels: px, labels: lb } = this.#buffer(count);
    const pixels = new Uint8Array(px, 0, count * this.itemBytes);
    const labels = new Int32Array(lb, 0, count);
    if (this.mode === 'workers') {
      await this.#pool!.run(Int32Array.from(indices), px, 0, this.itemBytes, lb, 0);
    } else {
      const items = await Promise.all(Array.from(indices, (i) => this.dataset.get(i)));
      items.forEach((item, k) => {
        this.#check(item.pixels, indices[k]!);
        pixels.set(item.pixels, k * this.itemBytes);
        labels[k] = item.label;
      });
    }
    return { pixels, labels, count };
  }

  async close(): Promise<void> {
    await this.#pool?.close();
    this.#free = [];
  }
}
