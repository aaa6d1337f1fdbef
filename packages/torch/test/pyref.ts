// Runs a Python snippet against PyTorch for the plain (non-differential)
// tests: tensors go in by name, the snippet leaves its answer in `result`.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Tensor } from '../src/index.js';
import { runPython } from './harness.js';

/** A tensor as the reference script returns it. */
export interface PyTensor {
  shape: number[];
  dtype: string;
  data: number[];
}

const here = dirname(fileURLToPath(import.meta.url));
// dist/test/pyref.js -> package root/test/ref
const SNIPPET = join(here, '..', '..', 'test', 'ref', 'snippet.py');

function jsonNumber(v: number | bigint | boolean): number | string {
  const n = Number(v);
  return Number.isFinite(n) ? n : String(n);
}

/** A tensor's shape, dtype and row-major values, as snippet.py reads them. */
export function encodeTensor(t: Tensor): { shape: number[]; dtype: string; data: (number | string)[] } {
  const values = Array.from(t.toTypedArray() as ArrayLike<number | bigint>, jsonNumber);
  return { shape: t.shape, dtype: t.dtype, data: values };
}

function decode(v: unknown): unknown {
  if (typeof v === 'string' && (v === 'nan' || v === 'inf' || v === '-inf')) return Number(v === 'nan' ? NaN : v);
  if (Array.isArray(v)) return v.map(decode);
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (Array.isArray(o.shape) && typeof o.dtype === 'string' && Array.isArray(o.data))
      return { shape: o.shape, dtype: o.dtype, data: (o.data as unknown[]).map((x) => Number(decode(x))) };
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, decode(x)]));
  }
  return v;
}

/**
 * Runs `code` in Python with torch, F and math in scope and the given tensors
 * bound to their names; returns what it assigned to `result` (tensors as
 * PyTensor, tuples as arrays).
 */
export function pyEval<T = unknown>(code: string, tensors: Record<string, Tensor> = {}): T {
  const payload = {
    code,
    tensors: Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, encodeTensor(t)])),
  };
  return decode(runPython(SNIPPET, payload)) as T;
}

/** A tensor's values as plain numbers (int64 and bool included). */
export function values(t: Tensor): number[] {
  return Array.from(t.toTypedArray() as ArrayLike<number | bigint>, (v) => Number(v));
}
