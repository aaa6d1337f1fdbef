// Shared helpers of the checkpoint IO tests: Python scripts, raw tensor bytes, temp dirs.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { io, type Tensor } from '../src/index.js';
import { native } from '../src/native.js';

/** Runs a Python script (argv[1:] = args) and returns its stdout; fails the test on a non-zero exit. */
export function py(script: string, ...args: string[]): string {
  const r = spawnSync('python3', ['-c', script, ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`python failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}

/** As py, without blocking: start several Python processes (each imports torch, seconds) at once. */
export function pyAsync(script: string, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', ['-c', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else reject(new Error(`python failed (${code}):\n${Buffer.concat(err).toString('utf8')}`));
    });
  });
}

/** The tensor's bytes in its own dtype, row-major. */
export function rawBytes(t: Tensor): Buffer {
  return Buffer.from(native.toBuffer(t.id));
}

/** A fresh temporary directory and its cleanup. */
export function tempDir(prefix: string): { dir: string; path: (name: string) => string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, path: (name) => join(dir, name), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Asserts fn throws a CheckpointError naming file whose message matches problem. */
export function assertCheckpointError(fn: () => unknown, file: string, problem: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof io.CheckpointError, `expected a CheckpointError, got ${String(e)}`);
    assert.equal(e.file, file);
    assert.ok(e.message.includes(file), `message does not name the file: ${e.message}`);
    assert.match(e.problem, problem);
    return true;
  });
}

/** Expected tensors as written by the Python side: name -> {dtype, shape, hex bytes}. */
export interface Expected {
  dtype: string;
  shape: number[];
  hex: string;
}

export function assertTensorMatches(name: string, t: Tensor | undefined, e: Expected): void {
  assert.ok(t !== undefined, `missing tensor ${name}`);
  assert.equal(t.dtype, e.dtype, `${name}: dtype`);
  assert.deepEqual(t.shape, e.shape, `${name}: shape`);
  assert.equal(rawBytes(t).toString('hex'), e.hex, `${name}: bytes`);
}

/** Python snippet: `raw(t)` -> hex of the contiguous bytes of a tensor, `DT` maps torch dtype -> name. */
export const PY_RAW = `
import torch
DT = {torch.float32: 'float32', torch.float64: 'float64', torch.float16: 'float16', torch.bfloat16: 'bfloat16',
      torch.int64: 'int64', torch.int32: 'int32', torch.int16: 'int16', torch.int8: 'int8', torch.uint8: 'uint8',
      torch.bool: 'bool'}
def raw(t):
    t = t.detach().contiguous().reshape(-1)
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.view(torch.uint8).numpy().tobytes().hex()
def expect(t):
    return {'dtype': DT[t.dtype], 'shape': list(t.shape), 'hex': raw(t)}
`;
