// The dataset contract shared by every image source (spec §1: uint8 images and
// integer class labels), and the one error class of the data pipeline. This
// module, like every module a decode worker loads, imports nothing from
// @epg/torch: the native addon serves one JS thread per process.

/** One image and its class: pixels are uint8, channel-major (C×H×W). */
export interface ImageItem {
  pixels: Uint8Array;
  label: number;
}

/**
 * A finite, indexable set of equally sized uint8 images with class labels.
 * Sources whose data is already in memory (or a plain read away) also offer
 * getSync; sources that need decoding offer workerSource, which tells a
 * worker thread how to re-open them and decode off the main thread.
 */
export interface ImageDataset {
  readonly length: number;
  readonly numClasses: number;
  /** Class names, indexed by label. */
  readonly classNames: string[];
  readonly height: number;
  readonly width: number;
  /** 1 (grayscale) or 3 (RGB). */
  readonly channels: number;
  get(i: number): Promise<ImageItem>;
  /** Synchronous fast path, where the data is in memory. */
  getSync?(i: number): ImageItem;
  /** How a worker thread opens this dataset (see WorkerSourceSpec). */
  workerSource?(): WorkerSourceSpec;
  /** Releases files held open (if any). */
  close?(): void;
}

/**
 * A recipe a worker thread follows to read a dataset: it imports `module`
 * (a file URL) and calls its export `factory` with `options` (structured-
 * cloneable). The module must not import @epg/torch.
 */
export interface WorkerSourceSpec {
  module: string;
  factory: string;
  options: unknown;
}

/** What a WorkerSourceSpec's factory returns inside a worker. */
export interface WorkerSource {
  /** Bytes of one image (C·H·W). */
  readonly itemBytes: number;
  /** Writes image i (C×H×W uint8) into dest and returns its label. */
  readInto(i: number, dest: Uint8Array): number;
  close?(): void;
}

/** A data file or dataset could not be read, or is not what was expected. */
export class DataError extends Error {
  override name = 'DataError';
}

/** The bytes of one image of a dataset: C·H·W. */
export function itemBytes(ds: Pick<ImageDataset, 'channels' | 'height' | 'width'>): number {
  return ds.channels * ds.height * ds.width;
}

/** Throws a RangeError unless i is an integer index into a dataset of `length` images. */
export function checkIndex(i: number, length: number, what: string): void {
  if (!Number.isInteger(i) || i < 0 || i >= length)
    throw new RangeError(`${what}: index ${i} is outside [0, ${length})`);
}

/** A short description of an unknown thrown value. */
export function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
