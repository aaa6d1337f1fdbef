// Distributed training over c10d/Gloo, in real processes: each test starts
// ranks of dist-worker.js with torchrun's environment and reads what they wrote.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as torch from '../src/index.js';
import { dist, nn } from '../src/index.js';
import { GLOBAL_ROWS, makeModel, trainSteps } from './dist-worker.js';

const here = dirname(fileURLToPath(import.meta.url));
const WORKER = join(here, 'dist-worker.js');
const skip = !dist.isAvailable() ? 'the addon was built without c10d' : false;

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'epg-dist-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

interface RankResult {
  code: number | null;
  stderr: string;
  out: Record<string, unknown> | null;
}

/** Runs `world` ranks of a scenario (or only `ranks` of them); resolves when all exit. */
async function runRanks(
  scenario: string,
  world: number,
  opts: { ranks?: number[]; env?: Record<string, string> } = {},
): Promise<RankResult[]> {
  const port = await dist.freePort();
  const ranks = opts.ranks ?? [...Array(world).keys()];
  return Promise.all(
    ranks.map(
      (rank) =>
        new Promise<RankResult>((resolve) => {
          const outPath = join(dir, `${scenario}-${port}-${rank}.json`);
          const child = spawn(process.execPath, [WORKER, scenario, outPath], {
            env: {
              ...process.env,
              RANK: String(rank),
              WORLD_SIZE: String(world),
              LOCAL_RANK: String(rank),
              LOCAL_WORLD_SIZE: String(world),
              MASTER_ADDR: '127.0.0.1',
              MASTER_PORT: String(port),
              OMP_NUM_THREADS: '1',
              ...opts.env,
            },
            stdio: ['ignore', 'ignore', 'pipe'],
          });
          let stderr = '';
          child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
          child.on('exit', (code) => {
            let out: Record<string, unknown> | null = null;
            try {
              out = JSON.parse(readFileSync(outPath, 'utf8')) as Record<string, unknown>;
            } catch {
              out = null;
            }
            resolve({ code, stderr, out });
          });
        }),
    ),
  );
}

function ok(results: RankResult[]): Record<string, unknown>[] {
  for (const [i, r] of results.entries()) assert.equal(r.code, 0, `rank ${i} failed:\n${r.stderr}`);
  return results.map((r) => r.out!);
}

test('collectives: all-reduce, all-gather, broadcast, barrier, and their gradients', { skip }, async () => {
  const [r0, r1] = ok(await runRanks('collectives', 2));
  for (const r of [r0!, r1!]) {
    assert.deepEqual(r.sum, [3, 30]);
    assert.deepEqual(r.avg, [1.5]);
    assert.deepEqual(r.max, [2]);
    assert.deepEqual(r.gathered, [
      [0, 0],
      [1, 2],
    ]);
    assert.deepEqual(r.broadcast, [7, 0]);
    // Σ over ranks of z⊙z, with z = [rank + 1, 1]
    assert.deepEqual(r.reduceValue, [5, 2]);
  }
  // loss_q = Σ (q+1)·W ⊙ gather(x): dx_r = Σ_q (q+1) W[r] = 3 W[r]
  assert.deepEqual(r0!.gatherGrad, [[3, 6]]);
  assert.deepEqual(r1!.gatherGrad, [[9, 12]]);
  // loss_q = (q+1)·s[0], s = Σ_r z_r²: dz_r = Σ_q (q+1) · 2 z_r = 6 z_r on the first entry
  assert.deepEqual(r0!.reduceGrad, [6, 0]);
  assert.deepEqual(r1!.reduceGrad, [12, 0]);
});

function assertStatesClose(a: Record<string, unknown>, b: Record<string, unknown>, what: string): void {
  for (const key of Object.keys(b)) {
    if (key === 'rank' || key === 'world') continue;
    const flat = (v: unknown): number[] => (Array.isArray(v) ? (v.flat(3) as number[]) : [v as number]);
    const x = flat(a[key]);
    const y = flat(b[key]);
    assert.equal(x.length, y.length, `${what}: ${key} sizes`);
    for (let i = 0; i < x.length; i++) {
      const tol = 1e-6 * Math.max(1, Math.abs(y[i]!));
      assert.ok(Math.abs(x[i]! - y[i]!) <= tol, `${what}: ${key}[${i}] = ${x[i]} vs ${y[i]} (single process)`);
    }
  }
}

for (const scenario of ['ddp', 'ddp-small-buckets']) {
  test(
    `${scenario}: two Gloo ranks match one process on the same global batch (float64, SyncBatchNorm)`,
    { skip },
    async () => {
      const results = ok(await runRanks(scenario, 2));
      const reference = torch.tidy(() => trainSteps(makeModel(7), [0, GLOBAL_ROWS], null));
      // The per-rank losses are of half batches; their mean is the global loss.
      const refLosses = reference.losses as number[];
      const l0 = results[0]!.losses as number[];
      const l1 = results[1]!.losses as number[];
      refLosses.forEach((l, i) => assert.ok(Math.abs((l0[i]! + l1[i]!) / 2 - l) < 1e-9 * Math.max(1, l), `loss ${i}`));
      const { losses: _a, ...refState } = reference;
      for (const r of results) {
        const { losses: _b, ...state } = r;
        assertStatesClose(state, refState, `rank ${String(r.rank)}`);
      }
    },
  );
}

test('DDP refuses ranks whose models differ, naming the rank', { skip }, async () => {
  const results = await runRanks('mismatch', 2);
  for (const r of results) {
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /rank \d's model differs/);
  }
});

test('a rank that dies ends the others promptly with an error', { skip }, async () => {
  const [r0, r1] = await runRanks('peer-dies', 2);
  assert.equal(r1!.code, 3);
  assert.equal(r0!.code, 0, r0!.stderr);
  assert.equal(typeof r0!.out!.error, 'string', 'the surviving rank saw no error');
  assert.ok((r0!.out!.seconds as number) < 30, `took ${String(r0!.out!.seconds)} s`);
});

test('a rendezvous that cannot complete times out with a clear message', { skip }, async () => {
  const [r0] = await runRanks('rendezvous-alone', 2, { ranks: [0], env: { EPG_RENDEZVOUS_TIMEOUT: '2' } });
  assert.notEqual(r0!.code, 0);
  assert.match(r0!.stderr, /rendezvous failed \(serving it on port \d+, 2 processes, timeout 2 s\)/);
});

test('epg-torch launch runs a script on N ranks and reports a failing one', { skip }, async () => {
  const bin = join(here, '..', '..', 'bin', 'epg-torch.js');
  const run = (args: string[]): Promise<{ code: number | null; err: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [bin, 'launch', ...args], {
        env: { ...process.env, OMP_NUM_THREADS: '1' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('close', (code) => resolve({ code, err }));
    });
  const good = await run(['--nproc-per-node', '2', WORKER, 'collectives', join(dir, 'launched-RANK.json')]);
  assert.equal(good.code, 0, good.err);
  const r = JSON.parse(readFileSync(join(dir, 'launched-1.json'), 'utf8')) as { sum: number[]; world: number };
  assert.deepEqual([r.world, ...r.sum], [2, 3, 30]);
  const bad = await run(['--nproc-per-node', '2', WORKER, 'no-such-scenario']);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /launch: rank \d exited with code 1; the other ranks were stopped/);
  assert.match(bad.err, /unknown scenario no-such-scenario/);
  const usage = await run(['--nproc-per-node', 'x', WORKER]);
  assert.equal(usage.code, 2);
  assert.match(usage.err, /--nproc-per-node must be an integer, got 'x'/);
});

test('Ctrl-C on epg-torch launch stops every rank and is not reported as a rank failure', { skip }, async () => {
  const bin = join(here, '..', '..', 'bin', 'epg-torch.js');
  const ready = join(dir, 'interruptible-RANK.ready');
  const child = spawn(process.execPath, [bin, 'launch', '--nproc-per-node', '2', WORKER, 'interruptible', ready], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
  const deadline = Date.now() + 60_000;
  while (![0, 1].every((r) => existsSync(ready.replace('RANK', String(r))))) {
    assert.ok(Date.now() < deadline, `the ranks did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGINT');
  assert.equal(await closed, 130, err);
  assert.doesNotMatch(err, /exited with code|was killed by/);
});

test('the launcher reports the rank that died, not the ranks that lost it', () => {
  const f = (rank: number, tail: string, signal: NodeJS.Signals | null = null) => ({
    rank,
    code: signal ? null : 1,
    signal,
    stderrTail: tail,
  });
  const peer = f(0, 'Error: [gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:7554');
  assert.equal(dist.rootCause([peer, f(1, 'Error: boom')])!.rank, 1);
  assert.equal(dist.rootCause([peer, f(1, '', 'SIGKILL')])!.rank, 1);
  assert.equal(dist.rootCause([f(1, 'Error: a'), f(0, 'Error: b')])!.rank, 1, 'the first of several causes');
  assert.equal(dist.rootCause([peer])!.rank, 0, 'only casualties: the first');
  assert.equal(dist.rootCause([]), null);
});

test('distEnv reads and checks the torchrun environment', () => {
  assert.equal(dist.distEnv({}), null);
  assert.deepEqual(
    dist.distEnv({ RANK: '1', WORLD_SIZE: '4', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', MASTER_PORT: '1234' }),
    {
      rank: 1,
      worldSize: 4,
      localRank: 1,
      localWorldSize: 2,
      masterAddr: '127.0.0.1',
      masterPort: 1234,
    },
  );
  assert.throws(() => dist.distEnv({ WORLD_SIZE: '2' }), /RANK is not/);
  assert.throws(() => dist.distEnv({ WORLD_SIZE: '2', RANK: '2' }), /RANK=2 is not below WORLD_SIZE=2/);
  assert.throws(() => dist.distEnv({ WORLD_SIZE: 'two', RANK: '0' }), /WORLD_SIZE="two"/);
  assert.throws(() => dist.distEnv({ WORLD_SIZE: '2', RANK: '0', MASTER_PORT: '70000' }), /MASTER_PORT/);
});

const close = (a: torch.Tensor, b: torch.Tensor, tol: number, what: string): void =>
  torch.testing.assertClose(a.toTypedArray() as Float64Array, b.toTypedArray() as Float64Array, tol, tol, what);

test('SyncBatchNorm over a group of one is BatchNorm1d', () => {
  torch.tidy(() => {
    const single = { size: 1, allReduceWithGrad: (t: torch.Tensor) => t };
    // size 1 takes the plain path; a fake group of size 2 whose Σ is the identity
    // exercises the synchronised formulas on one rank's batch.
    const fake = { size: 2, allReduceWithGrad: (t: torch.Tensor) => t.mul(1) };
    torch.manualSeed(3);
    const x = torch.randn([10, 4, 3], { dtype: 'float64' });
    const a = new nn.BatchNorm1d(4, { dtype: 'float64' });
    const b = new nn.BatchNorm1d(4, { dtype: 'float64' });
    a.syncGroup = single;
    b.syncGroup = fake;
    const xa = x.clone().requiresGrad_(true);
    const xb = x.clone().requiresGrad_(true);
    const ya = a.forward(xa);
    const yb = b.forward(xb);
    close(yb, ya, 1e-12, 'yb');
    ya.pow(3).sum().backward();
    yb.pow(3).sum().backward();
    close(xb.grad!, xa.grad!, 1e-10, 'xb.grad!');
    close(b.runningVar!, a.runningVar!, 1e-12, 'b.runningVar!');
    close(b.runningMean!, a.runningMean!, 1e-12, 'b.runningMean!');
  });
});
