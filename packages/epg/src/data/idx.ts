// In-memory datasets, the IDX file format (LeCun's MNIST format: magic
// 0x0000, a type byte, a rank byte, big-endian int32 sizes, big-endian data)
// and Fashion-MNIST from Debian's dataset-fashion-mnist package.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

import { checkIndex, DataError, describeError, type ImageDataset, type ImageItem } from './types.js';

/** An N×C×H×W uint8 array and N labels, all in memory. */
export class InMemoryDataset implements ImageDataset {
  readonly length: number;
  readonly numClasses: number;
  readonly classNames: string[];
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  /** N·C·H·W bytes, image-major, channel-major within an image. */
  readonly images: Uint8Array;
  readonly labels: Int32Array;

  constructor(
    images: Uint8Array,
    labels: ArrayLike<number>,
    shape: { channels: number; height: number; width: number },
    classNames: string[],
  ) {
    const { channels, height, width } = shape;
    const per = channels * height * width;
    if (!(per > 0) || images.length !== labels.length * per)
      throw new DataError(
        `InMemoryDataset: ${images.length} bytes of images for ${labels.length} labels of ${channels}×${height}×${width} images`,
      );
    this.images = images;
    this.labels = Int32Array.from(labels);
    this.length = labels.length;
    this.channels = channels;
    this.height = height;
    this.width = width;
    this.classNames = classNames;
    this.numClasses = classNames.length;
    for (let i = 0; i < this.labels.length; i++)
      if (!(this.labels[i]! >= 0 && this.labels[i]! < this.numClasses))
        throw new DataError(
          `InMemoryDataset: label ${this.labels[i]} of image ${i} is outside [0, ${this.numClasses})`,
        );
  }

  /** Image i as a view into `images` (no copy). */
  getSync(i: number): ImageItem {
    checkIndex(i, this.length, 'InMemoryDataset');
    const per = this.channels * this.height * this.width;
    return { pixels: this.images.subarray(i * per, (i + 1) * per), label: this.labels[i]! };
  }

  get(i: number): Promise<ImageItem> {
    return Promise.resolve(this.getSync(i));
  }
}

export type IdxDType = 'uint8' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';

export interface IdxArray {
  dtype: IdxDType;
  shape: number[];
  data: Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
}

const IDX_TYPES: Record<number, { dtype: IdxDType; size: number }> = {
  0x08: { dtype: 'uint8', size: 1 },
  0x09: { dtype: 'int8', size: 1 },
  0x0b: { dtype: 'int16', size: 2 },
  0x0c: { dtype: 'int32', size: 4 },
  0x0d: { dtype: 'float32', size: 4 },
  0x0e: { dtype: 'float64', size: 8 },
};

/** Parses IDX bytes (raw or gzip, detected by the gzip magic 1F 8B); `name` goes into errors. */
export function parseIdx(bytes: Uint8Array, name = 'IDX data'): IdxArray {
  let b = bytes;
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) {
    try {
      b = gunzipSync(b);
    } catch (e) {
      throw new DataError(`${name}: corrupt or truncated gzip (${describeError(e)})`, { cause: e });
    }
  }
  if (b.length < 4) throw new DataError(`${name}: ${b.length} bytes, too short for an IDX header`);
  if (b[0] !== 0 || b[1] !== 0)
    throw new DataError(
      `${name}: not an IDX file (magic ${Array.from(b.subarray(0, 4), (x) => x.toString(16).padStart(2, '0')).join(' ')}, expected 00 00 <type> <rank>)`,
    );
  const type = IDX_TYPES[b[2]!];
  if (type === undefined) throw new DataError(`${name}: unknown IDX element type 0x${b[2]!.toString(16)}`);
  const rank = b[3]!;
  const headerBytes = 4 + 4 * rank;
  if (b.length < headerBytes) throw new DataError(`${name}: truncated IDX header (${rank} sizes expected)`);
  const view = new DataView(b.buffer, b.byteOffset, b.length);
  const shape: number[] = [];
  for (let d = 0; d < rank; d++) {
    const s = view.getInt32(4 + 4 * d, false);
    if (s < 0) throw new DataError(`${name}: negative IDX size ${s} in dimension ${d}`);
    shape.push(s);
  }
  const count = shape.reduce((a, s) => a * s, 1);
  const want = headerBytes + count * type.size;
  if (b.length !== want)
    throw new DataError(
      `${name}: IDX of ${type.dtype} [${shape.join(', ')}] needs ${want} bytes, the file has ${b.length} (${b.length < want ? 'truncated' : 'trailing data'})`,
    );
  const body = b.subarray(headerBytes);
  let data: IdxArray['data'];
  switch (type.dtype) {
    case 'uint8': // a plain view (Buffer's slice() would share memory, too, but its type is a trap)
      data = new Uint8Array(body.buffer, body.byteOffset, body.length);
      break;
    case 'int8':
      data = new Int8Array(body.buffer, body.byteOffset, body.length);
      break;
    default: {
      const Ctor = { int16: Int16Array, int32: Int32Array, float32: Float32Array, float64: Float64Array }[type.dtype];
      const out = new Ctor(count);
      const dv = new DataView(body.buffer, body.byteOffset, body.length);
      for (let i = 0; i < count; i++) {
        const at = i * type.size;
        out[i] =
          type.dtype === 'int16'
            ? dv.getInt16(at, false)
            : type.dtype === 'int32'
              ? dv.getInt32(at, false)
              : type.dtype === 'float32'
                ? dv.getFloat32(at, false)
                : dv.getFloat64(at, false);
      }
      data = out;
    }
  }
  return { dtype: type.dtype, shape, data };
}

/** Reads an IDX file (raw or gzip). */
export function readIdx(path: string): IdxArray {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new DataError(`${path}: cannot read IDX file (${describeError(e)})`, { cause: e });
  }
  return parseIdx(bytes, path);
}

/** Where Debian's dataset-fashion-mnist package puts the files. */
export const FASHION_MNIST_ROOT = '/usr/share/datasets/fashion-mnist';

/** Fashion-MNIST's classes by label (as torchvision names them). */
export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

export interface FashionMnistOptions {
  split: 'train' | 'test';
  /** Folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (default: Debian's). */
  root?: string;
}

function idxFile(root: string, base: string): string {
  for (const f of [`${base}.gz`, base]) if (existsSync(join(root, f))) return join(root, f);
  const hint =
    root === FASHION_MNIST_ROOT ? ' (install it with: apt-get install dataset-fashion-mnist, or npm run setup)' : '';
  throw new DataError(`Fashion-MNIST: ${join(root, base)}[.gz] not found${hint}`);
}

/** Fashion-MNIST (Xiao et al. 2017): 28×28 grayscale, 10 classes; 60,000 train / 10,000 test images. */
export class FashionMnist extends InMemoryDataset {
  readonly split: 'train' | 'test';

  private constructor(split: 'train' | 'test', images: Uint8Array, labels: ArrayLike<number>) {
    super(images, labels, { channels: 1, height: 28, width: 28 }, [...FASHION_MNIST_CLASSES]);
    this.split = split;
  }

  static load(opts: FashionMnistOptions): FashionMnist {
    const root = opts.root ?? FASHION_MNIST_ROOT;
    if (opts.split !== 'train' && opts.split !== 'test')
      throw new TypeError(`Fashion-MNIST: split must be 'train' or 'test', got ${String(opts.split)}`);
    const prefix = opts.split === 'train' ? 'train' : 't10k';
    const imgPath = idxFile(root, `${prefix}-images-idx3-ubyte`);
    const lblPath = idxFile(root, `${prefix}-labels-idx1-ubyte`);
    const images = readIdx(imgPath);
    const labels = readIdx(lblPath);
    if (images.dtype !== 'uint8' || images.shape.length !== 3 || images.shape[1] !== 28 || images.shape[2] !== 28)
      throw new DataError(`${imgPath}: expected uint8 [N, 28, 28] images, got ${images.dtype} [${images.shape}]`);
    if (labels.dtype !== 'uint8' || labels.shape.length !== 1 || labels.shape[0] !== images.shape[0])
      throw new DataError(
        `${lblPath}: expected ${images.shape[0]} uint8 labels, got ${labels.dtype} [${labels.shape}]`,
      );
    return new FashionMnist(opts.split, images.data as Uint8Array, labels.data);
  }
}

/** Fashion-MNIST's train or test split (see FashionMnist). */
export function loadFashionMnist(opts: FashionMnistOptions): FashionMnist {
  return FashionMnist.load(opts);
}
