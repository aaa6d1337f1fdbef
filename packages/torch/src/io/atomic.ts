// Atomic file and folder writes, the one implementation behind every writer
// (checkpoints, safetensors, .npz, PNGs, latest.json, config.json, shards):
// the bytes go to a temporary name in the destination's folder (the same
// file system, so the rename cannot copy), are fsynced, and the temporary is
// renamed over the destination; then the folder is fsynced so the rename is
// durable. A crash at any moment leaves either the old file or the new one,
// never a torn one; on any error the temporary is removed. Free of the native
// addon, so decode workers and scripts can use it.
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fchmodSync,
  fsyncSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';

import { fsyncDir, writeAll } from './fs.js';

/** The hidden temporary name for path, in path's folder, unique to this process and call. */
function temporaryName(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
}

function existingMode(path: string): number | undefined {
  try {
    return statSync(path).mode & 0o7777;
  } catch {
    return undefined;
  }
}

/**
 * A file being written atomically: write through `fd` (or write()), then
 * commit() renames it into place; abort() or disposing without commit()
 * removes it. A replaced file's permissions are kept; a new one gets 0644.
 */
export class AtomicFile implements Disposable {
  /** The destination. */
  readonly path: string;
  /** The temporary file the bytes go to until commit(). */
  readonly temporaryPath: string;
  #fd: number;
  /** True once the temporary has been renamed over path (then only the folder's fsync can still fail). */
  #renamed = false;

  /** Creates the temporary file; errors from open propagate (the caller names the file). */
  constructor(path: string) {
    this.path = path;
    this.temporaryPath = temporaryName(path);
    this.#fd = openSync(this.temporaryPath, 'wx', 0o644);
    try {
      const mode = existingMode(path);
      if (mode !== undefined) fchmodSync(this.#fd, mode);
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  /** The temporary file's descriptor (for positioned writes). */
  get fd(): number {
    if (this.#fd < 0) throw new Error(`${this.path}: the atomic write is already committed or aborted`);
    return this.#fd;
  }

  /** Whether commit() got as far as the rename (the new file is in place). */
  get renamed(): boolean {
    return this.#renamed;
  }

  /** Appends all of data at the file's current position (looping on short writes). */
  write(data: Uint8Array): void {
    writeAll(this.fd, data);
  }

  /** fsync, close, rename over path, fsync the folder. On an error before the rename the temporary is removed. */
  commit(): void {
    const fd = this.fd;
    try {
      fsyncSync(fd);
      closeSync(fd);
      this.#fd = -1;
      renameSync(this.temporaryPath, this.path);
      this.#renamed = true;
    } catch (e) {
      this.abort();
      throw e;
    }
    fsyncDir(dirname(this.path));
  }

  /** Closes and removes the temporary file; path is left as it was. Safe to call twice. */
  abort(): void {
    if (this.#fd >= 0) {
      try {
        closeSync(this.#fd);
      } catch {
        // already failing; the caller's error matters
      }
      this.#fd = -1;
    }
    if (this.#renamed) return;
    try {
      unlinkSync(this.temporaryPath);
    } catch {
      // never created, or already gone
    }
  }

  [Symbol.dispose](): void {
    if (!this.#renamed) this.abort();
  }
}

/** Writes data (a string is UTF-8) to path atomically (see AtomicFile). */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  using file = new AtomicFile(path);
  file.write(typeof data === 'string' ? Buffer.from(data) : data);
  file.commit();
}

/** Writes data to a new file and fsyncs it (for files inside a folder that writeDirAtomic renames into place). */
export function writeFileSynced(path: string, data: Uint8Array): void {
  const fd = openSync(path, 'w');
  try {
    writeAll(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Builds a folder atomically: build() fills a hidden temporary sibling of
 * outDir, which then replaces outDir (an existing outDir is removed first, so
 * replacing is not atomic, creating is). On any error the temporary is removed.
 */
export async function writeDirAtomic<T>(outDir: string, build: (temporaryDir: string) => Promise<T>): Promise<T> {
  const tmp = join(dirname(outDir), `.${basename(outDir)}.partial-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const result = await build(tmp);
    if (existsSync(outDir)) rmSync(outDir, { recursive: true, force: true });
    renameSync(tmp, outDir);
    fsyncDir(dirname(outDir));
    return result;
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
