// Test utilities shared by the packages' test suites (and useful to users who
// check their own models against PyTorch): closeness assertions with the
// rtol/atol semantics of torch.allclose, and a runner for Python reference scripts.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { Tensor } from './tensor.js';

/** Throws unless |a − e| ≤ atol + rtol·|e| element-wise (NaN matches NaN); names the worst element. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol: number,
  atol: number,
  what: string,
): void {
  if (actual.length !== expected.length)
    throw new Error(`${what}: ${actual.length} elements, reference has ${expected.length}`);
  let worst = -1;
  let worstErr = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (Number.isNaN(e) && Number.isNaN(a)) continue;
    if (a === e) continue;
    const err = Math.abs(a - e) - (atol + rtol * Math.abs(e));
    if (!(err <= 0) && (worst < 0 || err > worstErr)) {
      worst = i;
      worstErr = err;
    }
  }
  if (worst >= 0)
    throw new Error(
      `${what}: element ${worst} is ${actual[worst]}, reference ${expected[worst]} (rtol ${rtol}, atol ${atol})`,
    );
}

/** A tensor as plain JSON: shape, dtype and row-major values (int64 as numbers). */
export interface EncodedTensor {
  shape: number[];
  dtype: string;
  data: number[];
}

export function encodeTensor(t: Tensor): EncodedTensor {
  return { shape: t.shape, dtype: t.dtype, data: Array.from(t.toTypedArray() as ArrayLike<number | bigint>, Number) };
}

/** Runs `python3 script in.json out.json` on payload and returns the parsed output. */
export function runPython(script: string, payload: unknown): unknown {
  const dir = mkdtempSync(join(tmpdir(), 'epg-ref-'));
  try {
    const inPath = join(dir, 'in.json');
    const outPath = join(dir, 'out.json');
    writeFileSync(inPath, JSON.stringify(payload));
    const r = spawnSync('python3', [script, inPath, outPath], { encoding: 'utf8', maxBuffer: 1 << 26 });
    if (r.status !== 0) throw new Error(`python reference failed (${script}):\n${r.stderr}`);
    return JSON.parse(readFileSync(outPath, 'utf8'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
