// Native memory: a long training loop holds a constant number of tensors and a
// flat RSS; scopes free what they should (and only that); `using` and
// dispose() free deterministically; the GC backstop frees dropped tensors.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

import * as torch from '../src/index.js';
import { F, type Tensor } from '../src/index.js';

const live = (): number => torch.liveTensors();

test('a 1,000-step MLP training loop: constant live tensors, flat RSS', () => {
  torch.manualSeed(0);
  const base = live();
  const x = torch.randn([64, 8]);
  const y = torch.tidy(() =>
    x
      .narrow(1, 0, 1)
      .mul(x.narrow(1, 1, 1))
      .sin(),
  );
  const params = [
    torch.randn([16, 8]).mul_(0.3).requiresGrad_(),
    torch.zeros([16]).requiresGrad_(),
    torch.randn([1, 16]).mul_(0.3).requiresGrad_(),
    torch.zeros([1]).requiresGrad_(),
  ];
  const [w1, b1, w2, b2] = params as [Tensor, Tensor, Tensor, Tensor];
  const lr = 0.1;
  const step = (): number =>
    torch.tidy(() => {
      const hidden = F.tanh(F.linear(x, w1, b1));
      const loss = F.mseLoss(F.linear(hidden, w2, b2), y);
      loss.backward();
      torch.noGrad(() => {
        for (const p of params) {
          p.sub_(p.grad!.mul(lr));
          p.grad = null;
        }
      });
      return loss.item();
    });

  const losses: number[] = [];
  let liveAt100 = -1;
  let rssAt200 = 0;
  for (let i = 1; i <= 1000; i++) {
    losses.push(step());
    if (i === 100) liveAt100 = live();
    if (i === 200) rssAt200 = process.memoryUsage().rss;
  }
  const liveAt1000 = live();
  const rssGrowth = process.memoryUsage().rss - rssAt200;

  assert.equal(liveAt1000, liveAt100, 'live native tensors at step 1000 vs step 100');
  assert.equal(liveAt1000, base + 2 + params.length, 'only x, y and the parameters are live between steps');
  assert.ok(rssGrowth < 20 * 2 ** 20, `RSS grew by ${(rssGrowth / 2 ** 20).toFixed(1)} MB from step 200 to 1000`);
  assert.ok(losses[999]! < losses[0]! / 2, `the loop trains: loss ${losses[0]} -> ${losses[999]}`);
  for (const p of params) assert.equal(p.grad, null);

  for (const t of [x, y, ...params]) t.dispose();
  assert.equal(live(), base);
});

test('tidy frees everything its function does not return', () => {
  const base = live();
  const r = torch.tidy(() => {
    const a = torch.ones([3]);
    const b = a.mul(2);
    b.add(1);
    a.exp().sum();
    assert.ok(live() >= base + 5);
    return 42;
  });
  assert.equal(r, 42);
  assert.equal(live(), base);
});

test('returned tensors (also in arrays, objects and Maps) move to the enclosing scope', () => {
  const base = live();
  let inner: { list: Tensor[]; obj: { deep: { t: Tensor } }; map: Map<string, Tensor>; single: Tensor } | undefined;
  torch.tidy(() => {
    const depthBefore = torch.scopeStats().depth;
    inner = torch.tidy(() => {
      assert.equal(torch.scopeStats().depth, depthBefore + 1);
      torch.ones([1]); // garbage: freed by the inner scope
      return {
        list: [torch.ones([1]), torch.zeros([1])],
        obj: { deep: { t: torch.full([1], 3) } },
        map: new Map([['k', torch.full([1], 4)]]),
        single: torch.full([1], 5),
      };
    });
    // The five returned tensors now belong to this (outer) scope.
    assert.equal(live(), base + 5);
    assert.equal(torch.scopeStats().tracked, 5);
    assert.equal(inner.obj.deep.t.item(), 3);
    assert.equal(inner.map.get('k')!.item(), 4);
  });
  // ... and were freed when it closed.
  assert.equal(live(), base);
  assert.ok(inner!.list.every((t) => t.isDisposed));
  assert.ok(inner!.obj.deep.t.isDisposed && inner!.map.get('k')!.isDisposed && inner!.single.isDisposed);

  // At the top level there is no enclosing scope: returned tensors live on.
  const top = torch.tidy(() => [torch.ones([2]), torch.ones([2]).mul(3)]);
  assert.equal(live(), base + 2);
  assert.deepEqual(top[1]!.toArray(), [3, 3]);
  for (const t of top) t.dispose();
  assert.equal(live(), base);
});

test('nested scopes free innermost first; scopeStats reports depth and ownership', () => {
  const base = live();
  assert.deepEqual(torch.scopeStats(), { depth: 0, tracked: 0 });
  torch.tidy(() => {
    torch.ones([1]);
    assert.deepEqual(torch.scopeStats(), { depth: 1, tracked: 1 });
    torch.tidy(() => {
      torch.ones([1]);
      torch.ones([1]);
      assert.deepEqual(torch.scopeStats(), { depth: 2, tracked: 2 });
      torch.tidy(() => {
        assert.equal(torch.scopeStats().depth, 3);
      });
    });
    assert.equal(live(), base + 1);
    assert.deepEqual(torch.scopeStats(), { depth: 1, tracked: 1 });
  });
  assert.deepEqual(torch.scopeStats(), { depth: 0, tracked: 0 });
  assert.equal(live(), base);
  assert.equal(torch.scope, torch.tidy);
});

test('keep() exempts a tensor from every scope', () => {
  const base = live();
  let kept: Tensor | undefined;
  torch.tidy(() => {
    torch.tidy(() => {
      kept = torch.keep(torch.ones([2]).mul(7));
    });
    assert.equal(kept!.isDisposed, false);
  });
  assert.equal(kept!.isDisposed, false);
  assert.deepEqual(kept!.toArray(), [7, 7]);
  assert.equal(live(), base + 1);
  kept!.dispose();
  assert.equal(live(), base);
});

test('tidy frees on throw, and the error propagates', () => {
  const base = live();
  const boom = new Error('boom');
  let made: Tensor | undefined;
  assert.throws(
    () =>
      torch.tidy(() => {
        made = torch.ones([4]);
        torch.tidy(() => torch.ones([4]).mul(2));
        throw boom;
      }),
    (e) => e === boom,
  );
  assert.equal(made!.isDisposed, true);
  assert.equal(live(), base);
  assert.equal(torch.scopeStats().depth, 0, 'the scope stack unwound');
  // An ATen error inside a scope: same.
  assert.throws(() => torch.tidy(() => torch.ones([2]).add(torch.ones([3]))), torch.TorchError);
  assert.equal(live(), base);
});

test('tidy rejects async functions with a TypeError, without an unhandled rejection', async () => {
  const base = live();
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    let early: Tensor | undefined;
    assert.throws(
      () =>
        torch.tidy((async () => {
          early = torch.ones([2]);
          await new Promise((r) => setTimeout(r, 5));
          throw new Error('late failure inside the async function');
        }) as never),
      { name: 'TypeError', message: /must be synchronous/ },
    );
    // What it created before its first await was freed with the scope.
    assert.equal(early!.isDisposed, true);
    assert.equal(live(), base);
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(unhandled, [], 'the rejected promise surfaced as an unhandled rejection');
    assert.equal(torch.scopeStats().depth, 0);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('`using` frees at the end of the block; dispose() twice is safe', () => {
  const base = live();
  let escaped: Tensor | undefined;
  {
    using t = torch.ones([3]);
    using u = t.mul(2);
    escaped = u;
    assert.equal(live(), base + 2);
  }
  assert.equal(escaped.isDisposed, true);
  assert.equal(live(), base);

  const t = torch.ones([2]);
  t.dispose();
  t.dispose();
  t[Symbol.dispose]();
  assert.equal(live(), base);
  // A tensor disposed by hand inside a scope is not freed twice by it.
  torch.tidy(() => {
    torch.ones([1]).dispose();
  });
  assert.equal(live(), base);
});

test('disposeAllBut frees all but the given tensors', () => {
  const base = live();
  const ts = [torch.ones([1]), torch.ones([1]), torch.ones([1])];
  torch.disposeAllBut(ts, ts[1]!);
  assert.deepEqual(
    ts.map((t) => t.isDisposed),
    [true, false, true],
  );
  ts[1]!.dispose();
  assert.equal(live(), base);
});

test('in-place ops and grads do not leak handles', () => {
  const base = live();
  const w = torch.ones([4]).requiresGrad_();
  for (let i = 0; i < 50; i++) {
    torch.tidy(() => {
      w.mul(w).sum().backward();
      torch.noGrad(() => w.sub_(w.grad!.mul(0.01)).add_(0).mul_(1).clamp_(-10, 10));
      w.grad = null;
    });
  }
  assert.equal(live(), base + 1);
  w.dispose();
  assert.equal(live(), base);
});

const here = dirname(fileURLToPath(import.meta.url));
const INDEX = pathToFileURL(join(here, '..', 'src', 'index.js')).href;

function runWithGc(body: string): { before: number; after: number } {
  const code = `
    const torch = await import(${JSON.stringify(INDEX)});
    const settle = async () => {
      // Tensors made outside a scope join the GC backstop at the next microtask (tensor.ts).
      await null;
      for (let i = 0; i < 6; i++) {
        globalThis.gc();
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    ${body}
  `;
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', code], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, `child failed (${r.signal ?? r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { before: number; after: number };
}

test('the FinalizationRegistry backstop frees tensors that were dropped without dispose', () => {
  const r = runWithGc(`
    (() => {
      for (let i = 0; i < 200; i++) torch.ones([16]).mul(2);
    })();
    const before = torch.liveTensors();
    await settle();
    console.log(JSON.stringify({ before, after: torch.liveTensors() }));
  `);
  assert.equal(r.before, 400);
  assert.ok(r.after < 10, `${r.after} of 400 dropped tensors still live after GC`);
});

test('the backstop also covers tensors armed in bulk (more than its pending batch) and ones disposed before arming', () => {
  // Arming is deferred (tensor.ts, Tensor.#pending): 3,000 dropped tensors fill the
  // batch several times within one synchronous run; 1,000 more are disposed at once.
  const r = runWithGc(`
    (() => {
      for (let i = 0; i < 1000; i++) torch.ones([4]).dispose();
      for (let i = 0; i < 3000; i++) torch.ones([4]);
    })();
    const before = torch.liveTensors();
    await settle();
    console.log(JSON.stringify({ before, after: torch.liveTensors() }));
  `);
  assert.equal(r.before, 3000);
  assert.ok(r.after < 10, `${r.after} of 3000 dropped tensors still live after GC`);
});

test('with the backstop off, dropped tensors stay live (the leak is real and visible)', () => {
  const r = runWithGc(`
    torch.setFinalizerBackstop(false);
    (() => {
      for (let i = 0; i < 50; i++) torch.ones([16]);
    })();
    const before = torch.liveTensors();
    await settle();
    console.log(JSON.stringify({ before, after: torch.liveTensors() }));
  `);
  assert.equal(r.before, 50);
  assert.equal(r.after, 50);
});

test('no tensors leak from this file', () => {
  assert.equal(live(), 0);
});

// glibc only (the thresholds are glibc's); the comparison assumes transparent huge pages are
// not 'always' on, where glibc's own mmaps would fault in 2 MB at a time.
const glibc = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime;
const thpAlways = /\[always\]/.test(
  (() => {
    try {
      return readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8');
    } catch {
      return '';
    }
  })(),
);

test(
  'freed CPU memory stays mapped: a training loop does not fault its tensors back in every step',
  {
    skip: glibc === undefined ? 'not glibc' : false,
  },
  () => {
    // An MLP training step at batch 1024 (8 MB activations), freed by its scope at the end.
    const script = `
    const torch = await import(${JSON.stringify(pathToFileURL(join(here, '..', 'src', 'index.js')).href)});
    const { nn, optim } = torch;
    torch.setNumThreads(1);
    torch.manualSeed(0);
    const model = new nn.Sequential(new nn.Linear(512, 2048), new nn.GELU(), new nn.Linear(2048, 2048), new nn.GELU(), new nn.Linear(2048, 512));
    const opt = new optim.AdamW(model.parameters(), { lr: 1e-4 });
    const x = torch.keep(torch.randn([1024, 512]));
    const step = () => torch.tidy(() => { model.forward(x).square().mean().backward(); opt.step(); opt.zeroGrad(); });
    for (let i = 0; i < 2; i++) step();
    const f0 = process.resourceUsage().minorPageFault;
    for (let i = 0; i < 5; i++) step();
    console.log(JSON.stringify({ faults: (process.resourceUsage().minorPageFault - f0) / 5, kept: torch.hostMemoryKeptMapped }));`;
    const run = (env: NodeJS.ProcessEnv): { faults: number; kept: boolean } => {
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        env: { ...process.env, GLIBC_TUNABLES: '', EPG_HOST_MALLOC: '', ...env },
      });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as { faults: number; kept: boolean };
    };
    const kept = run({});
    const glibcDefault = run({ EPG_HOST_MALLOC: 'default' });
    assert.equal(kept.kept, true);
    assert.equal(glibcDefault.kept, false);
    // Measured here: ~200 page faults per step kept mapped, 6,000-9,000 with glibc's defaults
    // (the heap's top is trimmed at the scope's end, and the next step faults it back in).
    assert.ok(kept.faults < 1500, `${kept.faults} page faults per step with the memory kept mapped`);
    if (!thpAlways) assert.ok(glibcDefault.faults > 3 * kept.faults, JSON.stringify({ kept, glibcDefault }));
  },
);
