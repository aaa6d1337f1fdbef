// Save, kill, resume: a child process trains a small model with AdamW, writes
// an atomic checkpoint (weights and optimizer state in safetensors, the rest in
// its metadata) and is then killed with SIGKILL; resuming from the checkpoint
// must give bit-for-bit the parameters of an uninterrupted run (CPU).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as torch from '../src/index.js';
import { io, nn, optim, type Tensor } from '../src/index.js';

const STEPS = 12;
const KILL_AFTER = 5;

function makeModel(): nn.Sequential {
  torch.manualSeed(7);
  return new nn.Sequential(
    new nn.Linear(6, 16, { dtype: 'float64' }),
    new nn.GELU(),
    new nn.Linear(16, 3, { dtype: 'float64' }),
  );
}

/** The batch of step k depends only on k. */
function batch(k: number): { x: Tensor; y: Tensor } {
  const g = new torch.Generator('cpu', 1000 + k);
  const r = {
    x: torch.randn([8, 6], { dtype: 'float64', generator: g }),
    y: torch.randn([8, 3], { dtype: 'float64', generator: g }),
  };
  g.dispose();
  return r;
}

function stepOnce(m: nn.Sequential, opt: optim.AdamW, k: number): void {
  torch.tidy(() => {
    const { x, y } = batch(k);
    torch.F.mseLoss(m.forward(x), y).backward();
    optim.clipGradNorm_(m.parameters(), 1.0);
    opt.step();
    opt.zeroGrad();
  });
}

function save(path: string, m: nn.Sequential, opt: optim.AdamW, step: number): void {
  torch.tidy(() => {
    const sd: optim.OptimizerState = opt.stateDict();
    const tensors = new Map<string, Tensor>([...m.stateDict()].map(([k, t]) => [`model.${k}`, t]));
    for (const [k, t] of sd.tensors) tensors.set(`optim.${k}`, t);
    io.saveSafetensors(path, tensors, {
      step: String(step),
      optim: JSON.stringify({ groups: sd.groups, scalars: sd.scalars }),
    });
  });
}

// Child mode: train, checkpoint after KILL_AFTER steps, say so, then keep going until killed.
if (process.env.EPG_RESUME_CHILD) {
  const path = process.env.EPG_RESUME_CHILD;
  const m = makeModel();
  const opt = new optim.AdamW(m.parameters(), { lr: 1e-2, weightDecay: 0.1 });
  for (let k = 0; k < 1_000_000; k++) {
    stepOnce(m, opt, k);
    if (k + 1 === KILL_AFTER) {
      save(path, m, opt, k + 1);
      process.stdout.write('saved\n');
    }
  }
}

test(
  'save, SIGKILL, resume: AdamW parameters equal an uninterrupted run bit for bit',
  { skip: !!process.env.EPG_RESUME_CHILD },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'epg-resume-'));
    try {
      const ckpt = join(dir, 'ckpt.safetensors');
      writeFileSync(join(dir, 'marker'), '');
      const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
        env: { ...process.env, EPG_RESUME_CHILD: ckpt },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          if (d.toString().includes('saved')) {
            child.kill('SIGKILL');
            resolve();
          }
        });
        child.on('exit', (code) =>
          code !== null && code !== 0 ? reject(new Error(`child exited ${code}`)) : undefined,
        );
      });
      await new Promise((r) => child.on('exit', r));
      assert.ok(existsSync(ckpt), 'the checkpoint survived the kill');

      // Uninterrupted run.
      const a = makeModel();
      const oa = new optim.AdamW(a.parameters(), { lr: 1e-2, weightDecay: 0.1 });
      for (let k = 0; k < STEPS; k++) stepOnce(a, oa, k);

      // Resumed run: a fresh model and optimizer, state from the file.
      const b = makeModel();
      const ob = new optim.AdamW(b.parameters(), { lr: 1e-2, weightDecay: 0.1 });
      const meta = io.readSafetensorsHeader(ckpt).metadata;
      const tensors = io.loadSafetensors(ckpt);
      const model = new Map([...tensors].filter(([k]) => k.startsWith('model.')).map(([k, t]) => [k.slice(6), t]));
      const optT = new Map([...tensors].filter(([k]) => k.startsWith('optim.')).map(([k, t]) => [k.slice(6), t]));
      b.loadStateDict(model);
      ob.loadStateDict({ ...(JSON.parse(meta.optim!) as Omit<optim.OptimizerState, 'tensors'>), tensors: optT });
      for (const t of tensors.values()) t.dispose();
      for (let k = Number(meta.step); k < STEPS; k++) stepOnce(b, ob, k);

      const pa = a.parameters();
      const pb = b.parameters();
      pa.forEach((p, i) => assert.ok(p.equal(pb[i]!), `parameter ${i} differs after resuming`));
      for (const x of [oa, ob]) x.dispose();
      a.dispose();
      b.dispose();
      assert.equal(torch.liveTensors(), 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
