// Low-level file helpers shared by the readers and writers: full reads and
// writes at a position (fs calls may be partial and cap their length), and the
// chunked transfer of a tensor's bytes between a file and native memory.
import { closeSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';

import { empty, fromTypedArray } from '../creation.js';
import type { Device } from '../device.js';
import { elementSize, type DType } from '../dtype.js';
import type { Tensor } from '../tensor.js';

/** The most bytes moved by one fs call or held by one transfer buffer. */
export let CHUNK_BYTES = 64 * 1024 * 1024;

/** @internal Tests shrink the chunk size to exercise the chunked paths on small tensors. */
export function setChunkBytesForTesting(bytes: number): number {
  const old = CHUNK_BYTES;
  CHUNK_BYTES = bytes;
  return old;
}

/** Reads exactly dest.length bytes at position; returns how many were read (less only at end of file). */
export function readAt(fd: number, dest: Uint8Array, position: number): number {
  let done = 0;
  while (done < dest.length) {
    const n = readSync(fd, dest, done, Math.min(dest.length - done, CHUNK_BYTES), position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** Writes all of data at the file's current position. */
export function writeAll(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, Math.min(data.length - done, CHUNK_BYTES));
}

/** fsync a directory so a rename in it is durable; not every platform allows it. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EACCES' && code !== 'ENOTSUP') throw e;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

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
