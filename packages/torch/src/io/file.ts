// Tensor-side file helpers: the chunked transfer of a tensor's bytes between a
// file and native memory. The byte-level helpers live in fs.ts (no addon) and
// are re-exported here for the readers and writers that import them from here.
import { empty, fromTypedArray } from '../creation.js';
import type { Device } from '../device.js';
import { elementSize, type DType } from '../dtype.js';
import type { Tensor } from '../tensor.js';
import { CHUNK_BYTES } from './fs.js';

export { CHUNK_BYTES, fsyncDir, readAt, setChunkBytesForTesting, writeAll } from './fs.js';

/**
 * A reusable transfer buffer: allocated on first use, grown as needed, never
 * more than CHUNK_BYTES. Its own ArrayBuffer (not Node's pool), so aligned.
 */
export class Scratch {
  #buf: Uint8Array | undefined;

  get(bytes: number): Uint8Array {
    if (this.#buf === undefined || this.#buf.length < bytes)
      this.#buf = new Uint8Array(new ArrayBuffer(Math.max(bytes, Math.min(CHUNK_BYTES, 1 << 16))));
    return this.#buf.subarray(0, bytes);
  }
}

/**
 * Builds a tensor of dtype and shape from bytes read by read(byteOffset, dest)
 * (which must fill dest), moving at most CHUNK_BYTES at a time: the bytes are
 * never held twice in JS memory, and a tensor for a CUDA device is filled
 * chunk by chunk from the host.
 */
export function tensorFromReader(
  dtype: DType,
  shape: readonly number[],
  read: (byteOffset: number, dest: Uint8Array) => void,
  device: Device | undefined,
  scratch: Scratch,
): Tensor {
  const esize = elementSize(dtype);
  const numel = shape.reduce((a, b) => a * b, 1);
  const bytes = numel * esize;
  const onCpu = device === undefined || device === 'cpu';
  if (onCpu && bytes <= CHUNK_BYTES) {
    const buf = scratch.get(bytes);
    if (bytes > 0) read(0, buf);
    return fromTypedArray(buf, shape, { dtype, copy: true });
  }
  const out = empty(shape, { dtype, device: device ?? 'cpu' });
  try {
    if (numel === 0) return out;
    const flat = out.view(-1);
    try {
      const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / esize));
      for (let start = 0; start < numel; start += perChunk) {
        const n = Math.min(perChunk, numel - start);
        const buf = scratch.get(n * esize);
        read(start * esize, buf);
        const src = fromTypedArray(buf, [n], { dtype, copy: false });
        const dst = flat.narrow(0, start, n);
        try {
          dst.copy_(src);
        } finally {
          dst.dispose();
          src.dispose();
        }
      }
    } finally {
      flat.dispose();
    }
    return out;
  } catch (e) {
    out.dispose();
    throw e;
  }
}
