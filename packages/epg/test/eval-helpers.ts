// Shared by the eval-*.test.ts files: runs test/eval-ref.py with arrays passed
// both ways as .npz files (so every call also round-trips our npz code through numpy).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Tensor } from '@epg/torch';

import { loadNpz, saveNpz } from '../src/eval/index.js';

/** Source folder of the tests (dist/test/ → test/). */
export const TEST_SRC = fileURLToPath(new URL('../../test/', import.meta.url));
export const REF_SCRIPT = join(TEST_SRC, 'eval-ref.py');

export function tempDir(): { dir: string; [Symbol.dispose](): void } {
  const dir = mkdtempSync(join(tmpdir(), 'epg-eval-'));
  return { dir, [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }) };
}

/** python3 eval-ref.py cmd in.npz out.npz args → the arrays of out.npz. */
export function runRef(cmd: string, inputs: Record<string, Tensor>, args: object = {}): Record<string, Tensor> {
  using tmp = tempDir();
  const inp = join(tmp.dir, 'in.npz');
  const out = join(tmp.dir, 'out.npz');
  saveNpz(inp, inputs);
  const r = spawnSync('python3', [REF_SCRIPT, cmd, inp, out, JSON.stringify(args)], {
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  });
  if (r.status !== 0) throw new Error(`eval-ref.py ${cmd} failed:\n${r.stderr}`);
  return loadNpz(out);
}

/** Relative difference |a − b| / max(|b|, floor). */
export function relDiff(a: number, b: number, floor = 1e-300): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), floor);
}
