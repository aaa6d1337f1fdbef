// The training metrics of log steps, read without stalling the loop: the
// update's 0-d device tensors are packed into one (averaged over ranks in a
// data-parallel run), copied to the host on a worker thread, and written in
// order — stats.jsonl, TensorBoard and the progress line — when each read lands.
// Beside them: images/s, MFU (from the model's counted FLOPs, models/flops.ts)
// and the peak memory, all measured on the host.
import { join } from 'node:path';

import * as torch from '@epg/torch';
import type { dist, Tensor } from '@epg/torch';

import { mfu } from '../models/flops.js';
import { JsonlWriter, Progress, TensorBoardWriter } from './logging.js';

/** Peak memory so far, in GB: the CUDA caching allocator's high-water mark, or on the CPU the process's maximum RSS. */
export function peakMemoryGb(device: torch.Device): number {
  if (device.startsWith('cuda')) {
    const index = device.includes(':') ? Number(device.split(':')[1]) : undefined;
    return torch.cuda.maxMemoryAllocated(index) / 1e9;
  }
  return (process.resourceUsage().maxRSS * 1024) / 1e9; // maxRSS is in KiB
}

/** A log step's metrics, on the device, waiting to be read. */
export interface PackedMetrics {
  names: string[];
  /** float64 [names.length]. */
  packed: Tensor;
}

/** All metrics in one tensor on the device; in a data-parallel run, their mean over ranks. */
export function packMetrics(
  named: [string, Tensor][],
  device: torch.Device,
  group: dist.ProcessGroup | null,
): PackedMetrics {
  const packed = torch.stack(named.map(([, t]) => t.to({ dtype: 'float64', device })));
  group?.allReduce(packed, 'avg');
  return { names: named.map(([k]) => k), packed };
}

/** Writes metrics (rank 0 only: `runDir` null on the others) and keeps the losses by step. */
export class MetricsReader {
  /** Losses read so far, by step. */
  readonly losses = new Map<number, number>();
  readonly #jsonl: JsonlWriter | null;
  readonly #tb: TensorBoardWriter | null;
  readonly #progress: Progress | null;
  readonly #onLoss: ((step: number, loss: number) => void) | undefined;
  readonly #flopsPerImage: number;
  readonly #peakTflops: number;
  readonly #device: torch.Device;
  readonly #t0 = performance.now();
  #lastLogTime = performance.now();
  #imagesSeen = 0;
  /** The reads in flight, chained so lines keep their order; never rejects (errors go to #error). */
  #pending: Promise<void> = Promise.resolve();
  #error: unknown;

  constructor(o: {
    runDir: string | null;
    stage: string;
    steps: number;
    startStep: number;
    device: torch.Device;
    /** Model FLOPs of one training image (trainingFlopsPerImage). */
    flopsPerImage: number;
    /** Peak TFLOP/s of all the run's devices together; 0: no MFU. */
    peakTflops: number;
    onLoss?: (step: number, loss: number) => void;
  }) {
    this.#jsonl = o.runDir !== null ? new JsonlWriter(join(o.runDir, 'stats.jsonl')) : null;
    this.#tb = o.runDir !== null ? new TensorBoardWriter(o.runDir) : null;
    this.#progress = o.runDir !== null ? new Progress(o.stage, o.steps, o.startStep) : null;
    this.#onLoss = o.onLoss;
    this.#flopsPerImage = o.flopsPerImage;
    this.#peakTflops = o.peakTflops;
    this.#device = o.device;
  }

  /** Leaves `seconds` spent outside training (an evaluation) out of the next images/s. */
  excludeTime(seconds: number): void {
    this.#lastLogTime += seconds * 1000;
  }

  /** Writes values of `step` measured outside the update (the FID of an evaluation) to stats.jsonl and TensorBoard. */
  extra(step: number, values: Record<string, number>, tags: Record<string, string>): void {
    this.#pending = this.#pending
      .then(() => {
        this.#jsonl?.write({ step, ...values });
        this.#tb?.scalars(step, Object.fromEntries(Object.entries(values).map(([k, v]) => [tags[k] ?? k, v])));
      })
      .catch((e: unknown) => {
        this.#error ??= e;
      });
  }

  /** Seconds since the reader opened (the start of the training loop). */
  get seconds(): number {
    return (performance.now() - this.#t0) / 1000;
  }

  /** Counts the images of a step, for images/s. */
  countImages(n: number): void {
    this.#imagesSeen += n;
  }

  /**
   * Starts reading the metrics of `step` (consuming `m.packed`) without waiting:
   * the copy, and its wait for the device, run on a worker thread.
   */
  read(step: number, lr: number, last: boolean, m: PackedMetrics): void {
    const now = performance.now();
    const ips = (this.#imagesSeen * 1000) / Math.max(1, now - this.#lastLogTime);
    const time = (now - this.#t0) / 1000;
    this.#lastLogTime = now;
    this.#imagesSeen = 0;
    const utilisation = mfu(this.#flopsPerImage, ips, this.#peakTflops);
    const memGb = peakMemoryGb(this.#device);
    const perf = {
      images_per_sec: ips,
      ...(Number.isNaN(utilisation) ? {} : { mfu: utilisation }),
      peak_mem_gb: memGb,
    };
    const values = m.packed.toTypedArrayAsync();
    m.packed.dispose();
    this.#pending = Promise.all([this.#pending, values])
      .then(([, v]) => {
        const out = Object.fromEntries(m.names.map((k, i) => [k, Number(v[i])]));
        this.losses.set(step, out.loss!);
        this.#onLoss?.(step, out.loss!);
        this.#jsonl?.write({ step, ...out, lr, ...perf, time });
        this.#tb?.scalars(step, {
          ...Object.fromEntries(Object.entries(out).map(([k, v]) => [`train/${k}`, v])),
          'train/lr': lr,
          ...Object.fromEntries(Object.entries(perf).map(([k, v]) => [`perf/${k}`, v])),
        });
        this.#progress?.update(
          step,
          {
            loss: out.loss!,
            lr,
            'img/s': ips,
            ...(perf.mfu !== undefined ? { mfu: `${(100 * perf.mfu).toFixed(1)}%` } : {}),
            mem: `${memGb.toFixed(1)}G`,
          },
          last,
        );
      })
      .catch((e: unknown) => {
        this.#error ??= e;
      });
  }

  /** Rethrows the first error of a read that has landed. */
  throwIfFailed(): void {
    if (this.#error !== undefined) throw this.#error;
  }

  /** Waits for the reads in flight (before a CUDA-graph capture, which must not meet another thread's sync). */
  settled(): Promise<void> {
    return this.#pending;
  }

  /** After the last step: every line written, the progress line closed. */
  async finish(): Promise<void> {
    await this.#pending;
    this.throwIfFailed();
    this.#progress?.done();
  }

  /** Waits for the reads in flight, then closes the TensorBoard file. */
  async close(): Promise<void> {
    await this.#pending;
    this.#tb?.close();
  }
}
