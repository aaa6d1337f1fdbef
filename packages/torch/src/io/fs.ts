// Byte-level file helpers shared by the readers and writers: full reads and
// writes at a position (fs calls may be partial and cap their length) and a
// directory fsync. Free of the native addon, so worker threads can import
// them (through zip.ts and atomic.ts).
import { closeSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';

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
