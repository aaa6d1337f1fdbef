// Data-parallel EPG: the gathered NT-Xent gradient, the trainer under
// `epg launch` (rank-0 files, resume on another number of ranks), and how the
// launcher ends a run when one rank fails. Ranks are real processes over Gloo.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';
import { dist, testing } from '@epg/torch';

import { loadConfig } from '../src/train/config.js';
import { accumulatedGradient, ACCUMULATE_BATCH } from './accumulate-setup.js';
import { GLOBAL_BATCH, pretrainGradients } from './dist-worker.js';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, '..', 'src', 'cli.js');
const WORKER = join(here, 'dist-worker.js');
const root = mkdtempSync(join(tmpdir(), 'epg-dist-'));
after(() => rmSync(root, { recursive: true, force: true }));
const skip = !dist.isAvailable() ? 'the addon was built without c10d' : false;

interface Run {
  code: number | null;
  out: string;
  err: string;
  seconds: number;
}

/** Runs the CLI (asynchronously: the ranks it starts must not block this process). */
function epg(args: string[], timeoutMs = 300_000, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, OMP_NUM_THREADS: '1', ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err, seconds: (performance.now() - t0) / 1000 });
    });
  });
}

test(
  'the NT-Xent over gathered targets gives two ranks the single-process gradient (pre-training loss, float64)',
  { skip },
  async () => {
    const run = await epg(['launch', '--nproc-per-node', '2', WORKER, 'pretrain-grad', join(root, 'grad-RANK.json')]);
    assert.equal(run.code, 0, run.err);
    const reference = torch.tidy(() => pretrainGradients([0, GLOBAL_BATCH], null));
    for (const rank of [0, 1]) {
      const got = JSON.parse(readFileSync(join(root, `grad-${rank}.json`), 'utf8')) as {
        grads: Record<string, number[]>;
      };
      assert.deepEqual(Object.keys(got.grads).sort(), Object.keys(reference.grads).sort());
      for (const [k, ref] of Object.entries(reference.grads)) {
        const g = got.grads[k]!;
        const scale = Math.max(...ref.map(Math.abs), 1e-12);
        // NT-Xent takes its logsumexp in float32 (spec §4.2): agreement to float32 precision.
        for (let i = 0; i < ref.length; i++)
          assert.ok(Math.abs(g[i]! - ref[i]!) <= 1e-5 * scale, `rank ${rank} ${k}[${i}]: ${g[i]} vs ${ref[i]}`);
      }
    }
  },
);

for (const checkpointing of [false, true]) {
  test(
    `accumulate: two ranks of two micro-batches give the one-process dm gradient, all-reduced once per step${checkpointing ? ', with activation checkpointing' : ''}`,
    { skip },
    async () => {
      const scenario = checkpointing ? 'checkpointing-grad' : 'accumulate-grad';
      const out = join(root, `${scenario}-RANK.json`);
      const run = await epg(['launch', '--nproc-per-node', '2', WORKER, scenario, out]);
      assert.equal(run.code, 0, run.err);
      const cfg = loadConfig('fashion-mnist-dm');
      const reference = accumulatedGradient(cfg, [0, ACCUMULATE_BATCH], 1, null).grad;
      for (const rank of [0, 1]) {
        const got = JSON.parse(readFileSync(out.replace('RANK', String(rank)), 'utf8')) as {
          grad: number[];
          syncedBackwards: number;
        };
        assert.equal(got.syncedBackwards, 1, 'the first micro-batch accumulates locally (no all-reduce)');
        testing.assertClose(got.grad, reference, 1e-10, 1e-14, `rank ${rank} gradient`);
      }
    },
  );
}

const TINY = ['--set', 'batchSize=16', '--set', 'logEvery=1', '--set', 'sampleCount=0'];

test(
  'epg launch trains data-parallel: rank 0 writes the run, which resumes on one process and back on two',
  { skip },
  async () => {
    const runs = join(root, 'runs');
    const first = await epg([
      'launch',
      '--nproc-per-node',
      '2',
      'pretrain',
      '--config',
      'fashion-mnist-pretrain',
      ...TINY,
      '--set',
      'steps=3',
      '--set',
      `runDir=${runs}`,
    ]);
    assert.equal(first.code, 0, first.err);
    assert.match(first.out, /3 steps on cpu × 2 ranks/);
    const dirs = readdirSync(runs);
    assert.equal(dirs.length, 1, `one run directory, got ${dirs.join(', ')}`);
    const run = join(runs, dirs[0]!);
    assert.ok(existsSync(join(run, 'checkpoint-0000003.safetensors')));
    const stats = readFileSync(join(run, 'stats.jsonl'), 'utf8').trim().split('\n');
    assert.equal(stats.length, 3, 'one stats line per step, from rank 0 only');
    // A different number of ranks continues the same run: the data position is global.
    const alone = await epg(['pretrain', '--resume', run, '--set', 'steps=5']);
    assert.equal(alone.code, 0, alone.err);
    assert.ok(existsSync(join(run, 'checkpoint-0000005.safetensors')));
    const again = await epg(['launch', '--nproc-per-node', '2', 'pretrain', '--resume', run, '--set', 'steps=6']);
    assert.equal(again.code, 0, again.err);
    assert.match(again.out, /resuming pretrain from .* at step 5/);
    assert.ok(existsSync(join(run, 'checkpoint-0000006.safetensors')));
    const last = JSON.parse(readFileSync(join(run, 'stats.jsonl'), 'utf8').trim().split('\n').at(-1)!) as {
      step: number;
      loss: number;
    };
    assert.equal(last.step, 6);
    assert.ok(Number.isFinite(last.loss));
  },
);

test("when a rank throws, epg launch stops the others and shows that rank's error", { skip }, async () => {
  const r = await epg(['launch', '--nproc-per-node', '2', WORKER, 'crash'], 120_000);
  assert.equal(r.code, 1);
  assert.match(r.err, /launch: rank 1 exited with code 1; the other ranks were stopped/);
  assert.match(r.err, /boom from rank 1 at step 3/);
  assert.ok(r.seconds < 60, `took ${r.seconds} s`);
});

test('when a rank is killed, the run ends promptly with that rank named', { skip }, async () => {
  const r = await epg(['launch', '--nproc-per-node', '2', WORKER, 'killed'], 120_000);
  assert.equal(r.code, 137);
  assert.match(r.err, /rank 1 was killed by SIGKILL/);
  assert.ok(r.seconds < 60, `took ${r.seconds} s`);
});

test(
  'a node that never joins: the rendezvous times out and the launcher names the rank and the reason',
  { skip },
  async () => {
    const port = String(await dist.freePort());
    const r = await epg(
      [
        'launch',
        '--nnodes',
        '2',
        '--node-rank',
        '0',
        '--master-addr',
        '127.0.0.1',
        '--master-port',
        port,
        '--nproc-per-node',
        '1',
        WORKER,
        'crash',
      ],
      120_000,
      { EPG_RENDEZVOUS_TIMEOUT: '2' },
    );
    assert.equal(r.code, 1);
    assert.match(r.err, /rank 0 exited with code 1/);
    assert.match(r.err, /rendezvous failed \(serving it on port \d+, 2 processes, timeout 2 s\)/);
    assert.ok(r.seconds < 60, `took ${r.seconds} s`);
  },
);

test('epg launch usage errors', async () => {
  const none = await epg(['launch', 'pretrain']);
  assert.equal(none.code, 2);
  assert.match(none.err, /--nproc-per-node is required/);
  const bad = await epg(['launch', '--nproc-per-node', 'two', 'pretrain']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--nproc-per-node must be an integer, got 'two'/);
  const nodes = await epg(['launch', '--nproc-per-node', '1', '--nnodes', '2', '--node-rank', '0', 'info']);
  assert.equal(nodes.code, 1);
  assert.match(nodes.err, /--master-addr is required with --nnodes > 1/);
  const nested = await epg(['launch', '--nproc-per-node', '2', 'eval', '--help']);
  assert.equal(nested.code, 2);
  assert.match(nested.err, /epg eval runs in one process \(WORLD_SIZE is 2\)/);
  const help = await epg(['launch', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.out, /usage: epg launch/);
});
