// Shared by the data-*.test.ts files: the Python reference (test/ref/data_ref.py:
// PIL, torchvision, zipfile) and small helpers.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { testing } from '@epg/torch';

const here = dirname(fileURLToPath(import.meta.url));
export const DATA_REF = join(here, '..', '..', 'test', 'ref', 'data_ref.py');

export const CIFAR_ZIP = '/work/shared/datasets/cifar10-jpeg.zip';

/** Runs cases through data_ref.py; one result per case. */
export function ref(cases: Record<string, unknown>[]): unknown[] {
  return (testing.runPython(DATA_REF, { cases }) as { results: unknown[] }).results;
}

export function b64(a: Uint8Array | Float32Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
}

export function unb64(s: string): Uint8Array {
  const b = Buffer.from(s, 'base64');
  return new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

export function unb64f32(s: string): Float32Array {
  return new Float32Array(unb64(s).buffer);
}

/** A fresh temporary directory and its remover. */
export function tempDir(prefix = 'epg-data-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** max |a − b| over two byte arrays of equal length. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** mean |a − b|. */
export function meanAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
}
