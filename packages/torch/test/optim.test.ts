// Optimizers against torch.optim (50-step trajectories with scripted
// gradients, float64, 1e-6 relative), clipping against clip_grad_norm_, the
// gradient scaler's scale sequence against torch.amp.GradScaler, schedules
// against their closed forms, EMA against a direct computation.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as torch from '../src/index.js';
import { cuda, nn, optim, type Tensor } from '../src/index.js';
import { assertClose, runPython } from './harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const SCRIPT = join(here, '..', '..', 'test', 'ref', 'optim_ref.py');

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296 - 0.5;
  };
}

const SHAPES = [[6], [2, 3], [4]];
const STEPS = 50;

interface OptCase {
  name: string;
  optimizer: 'AdamW' | 'SGD';
  groups: { params: number[]; hyper: Record<string, unknown> }[];
  defaults: Record<string, unknown>;
  make: (groups: { params: Tensor[] } & Record<string, unknown>[]) => optim.Optimizer<optim.GroupHyper>;
  /** Drop the gradient of parameter 2 on odd steps (PyTorch skips params without grads). */
  sparseGrads?: boolean;
}

type JsGroup = { params: Tensor[] } & Record<string, unknown>;

const camel = (h: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(Object.entries(h).map(([k, v]) => [k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()), v]));

function optCases(impl: 'fused' | 'forloop'): OptCase[] {
  const adamw = (groups: JsGroup[], d: Record<string, unknown>): optim.Optimizer<optim.GroupHyper> =>
    new optim.AdamW(groups as never, { ...camel(d), impl });
  // The lr in a device tensor (for CUDA-graph capture); the reference is the plain AdamW.
  const adamwCapturable = (groups: JsGroup[], d: Record<string, unknown>): optim.Optimizer<optim.GroupHyper> =>
    new optim.AdamW(groups as never, { ...camel(d), impl, capturable: true });
  const sgd = (groups: JsGroup[], d: Record<string, unknown>): optim.Optimizer<optim.GroupHyper> =>
    new optim.SGD(groups as never, { ...camel(d), impl });
  const cases: (Omit<OptCase, 'make'> & { ctor: typeof adamw })[] = [
    {
      name: 'AdamW, two groups (no decay on the second)',
      optimizer: 'AdamW',
      groups: [
        { params: [0, 1], hyper: { weight_decay: 0.05 } },
        { params: [2], hyper: { weight_decay: 0 } },
      ],
      defaults: { lr: 1e-2, betas: [0.9, 0.95], eps: 1e-8 },
      ctor: adamw,
    },
    ...(impl === 'fused'
      ? [
          {
            name: "AdamW capturable (each group's scheduled lr read from a tensor), two groups",
            optimizer: 'AdamW' as const,
            groups: [
              { params: [0, 1], hyper: { weight_decay: 0.05 } },
              { params: [2], hyper: { weight_decay: 0 } },
            ],
            defaults: { lr: 1e-2, betas: [0.9, 0.95], eps: 1e-8 },
            ctor: adamwCapturable,
          },
        ]
      : []),
    {
      name: 'AdamW amsgrad, maximize',
      optimizer: 'AdamW',
      groups: [{ params: [0, 1, 2], hyper: {} }],
      defaults: { lr: 3e-3, amsgrad: true, maximize: true, weight_decay: 0.1 },
      ctor: adamw,
    },
    {
      name: 'AdamW with a parameter that sometimes has no gradient',
      optimizer: 'AdamW',
      groups: [{ params: [0, 1, 2], hyper: {} }],
      defaults: { lr: 1e-2 },
      ctor: adamw,
      sparseGrads: true,
    },
    {
      name: 'SGD plain',
      optimizer: 'SGD',
      groups: [{ params: [0, 1, 2], hyper: {} }],
      defaults: { lr: 0.1 },
      ctor: sgd,
    },
    {
      name: 'SGD momentum, dampening, weight decay, two groups',
      optimizer: 'SGD',
      groups: [
        { params: [0], hyper: { momentum: 0.9, dampening: 0.1 } },
        { params: [1, 2], hyper: { momentum: 0.5, weight_decay: 1e-2 } },
      ],
      defaults: { lr: 0.05 },
      ctor: sgd,
    },
    {
      name: 'SGD Nesterov',
      optimizer: 'SGD',
      groups: [{ params: [0, 1, 2], hyper: {} }],
      defaults: { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 1e-3 },
      ctor: sgd,
    },
  ];
  return cases.map(({ ctor, ...c }) => ({ ...c, make: (g) => ctor(g as unknown as JsGroup[], c.defaults) }));
}

function runJs(c: OptCase, init: number[][], grads: (number[] | null)[][], lrs: number[][]): number[][][] {
  return torch.tidy(() => {
    const params = init.map((p, i) => torch.tensor(p, { dtype: 'float64' }).reshape(SHAPES[i]!).requiresGrad_(true));
    const groups = c.groups.map((g) => ({ ...camel(g.hyper), params: g.params.map((i) => params[i]!) }));
    const opt = c.make(groups as never);
    const traj: number[][][] = [];
    grads.forEach((step, k) => {
      torch.tidy(() => {
        params.forEach((p, i) => {
          const g = step[i];
          const old = p.grad;
          p.grad = g === null || g === undefined ? null : torch.tensor(g, { dtype: 'float64' }).reshape(SHAPES[i]!);
          old?.dispose();
        });
        optim.setLr(opt, (gi) => lrs[k]![gi]!);
        opt.step();
      });
      traj.push(params.map((p) => Array.from(p.toTypedArray() as Float64Array)));
    });
    opt.dispose();
    return traj;
  });
}

const r = rng(7);
const init = SHAPES.map((s) => Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => 2 * r()));
function scriptedGrads(sparse: boolean): (number[] | null)[][] {
  return Array.from({ length: STEPS }, (_, k) =>
    SHAPES.map((s, i) =>
      sparse && i === 2 && k % 2 === 1 ? null : Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => r()),
    ),
  );
}

for (const impl of ['fused', 'forloop'] as const) {
  const cases = optCases(impl);
  const grads = cases.map((c) => scriptedGrads(c.sparseGrads ?? false));
  const lrs = cases.map((c) =>
    Array.from({ length: STEPS }, (_, k) =>
      c.groups.map(() => Number(c.defaults.lr) * optim.warmupCosineFactor(k, { warmupSteps: 5, totalSteps: STEPS })),
    ),
  );
  const refs = runPython(
    SCRIPT,
    cases.map((c, i) => ({
      kind: 'optimizer',
      optimizer: c.optimizer,
      params: init,
      groups: c.groups,
      defaults: c.defaults,
      grads: grads[i]!.map((s) => s.map((g, j) => (g === null ? null : g.length === 6 && j === 1 ? g : g))),
      lrs: lrs[i],
    })),
  ) as { trajectory: number[][][] }[];
  cases.forEach((c, i) => {
    test(`optim.${c.optimizer} (${impl}): ${c.name} follows torch.optim for ${STEPS} steps`, () => {
      const traj = runJs(c, init, grads[i]!, lrs[i]!);
      traj.forEach((step, k) =>
        step.forEach((p, j) => assertClose(p, refs[i]!.trajectory[k]![j]!.flat(), 1e-6, 1e-12, `step ${k} param ${j}`)),
      );
    });
  });
}

test('optim.clipGradNorm_ matches torch.nn.utils.clip_grad_norm_ (norms 2, 1, inf)', () => {
  const grads = SHAPES.map((s) => Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => 3 * r()));
  const norms: (number | 'inf')[] = [2, 1, 'inf'];
  const refs = runPython(
    SCRIPT,
    norms.map((normType) => ({ kind: 'clip', params: init, grads, maxNorm: 0.5, normType })),
  ) as { total: number; grads: number[][] }[];
  norms.forEach((normType, i) =>
    torch.tidy(() => {
      const params = init.map((p) => torch.tensor(p, { dtype: 'float64' }).requiresGrad_(true));
      params.forEach((p, j) => (p.grad = torch.tensor(grads[j]!, { dtype: 'float64' })));
      const total = optim.clipGradNorm_(params, 0.5, { normType: normType === 'inf' ? Infinity : normType });
      assertClose([total.item()], [refs[i]!.total], 1e-12, 1e-12, `total norm (${normType})`);
      params.forEach((p, j) =>
        assertClose(Array.from(p.grad!.toTypedArray() as Float64Array), refs[i]!.grads[j]!, 1e-12, 1e-12, `grad ${j}`),
      );
    }),
  );
});

test('optim.GradScaler follows torch.amp.GradScaler over finite and inf/NaN gradients', () => {
  const script = [
    [1, 2],
    [1, 'inf'],
    [0.5, 0.5],
    [0.1, 0.2],
    ['nan', 1],
    [0.3, 0.3],
    [0.3, -0.3],
    [1, 1],
  ];
  const cfg = { initScale: 256, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2, lr: 0.1 };
  const [ref] = runPython(SCRIPT, [{ kind: 'scaler', param: [1, -1], grads: script, ...cfg }]) as {
    scales: number[];
    params: number[][];
  }[];
  torch.tidy(() => {
    const p = torch.tensor([1, -1], { dtype: 'float64' }).requiresGrad_(true);
    const opt = new optim.SGD([p], { lr: cfg.lr });
    const scaler = new optim.GradScaler(cfg);
    const scales: number[] = [];
    script.forEach((g, k) => {
      torch.tidy(() => {
        const vals = g.map((x) => (x === 'inf' ? Infinity : x === 'nan' ? NaN : Number(x)));
        opt.zeroGrad();
        scaler.scale(p.mul(torch.tensor(vals, { dtype: 'float64' })).sum()).backward(); // p.grad = scale * grad
        scaler.step(opt);
        scaler.update();
      });
      scales.push(scaler.getScale());
      assertClose(Array.from(p.toTypedArray() as Float64Array), ref!.params[k]!, 1e-12, 1e-12, `param after step ${k}`);
    });
    assert.deepEqual(scales, ref!.scales);
    scaler.dispose();
  });
});

test('optim schedules: closed forms', () => {
  const o = { warmupSteps: 10, totalSteps: 110, minFactor: 0.1 };
  // LambdaLR's convention: update k has factor fn(k), so the first warm-up update has 0.
  assert.equal(optim.warmupCosineFactor(0, o), 0);
  assert.equal(optim.warmupCosineFactor(1, o), 0.1);
  assert.equal(optim.warmupCosineFactor(9, o), 0.9);
  assert.equal(optim.warmupCosineFactor(10, o), 1);
  assertClose([optim.warmupCosineFactor(60, o)], [0.1 + 0.9 * 0.5], 1e-15, 0, 'midpoint');
  assertClose([optim.warmupCosineFactor(35, o)], [0.1 + 0.45 * (1 + Math.cos(Math.PI / 4))], 1e-15, 0, 'quarter');
  assert.equal(optim.warmupCosineFactor(110, o), 0.1);
  assert.equal(optim.warmupCosineFactor(500, o), 0.1);
  const p = { warmupSteps: 4, milestones: [100, 200], factors: [0.5, 0.1] };
  assert.deepEqual(
    [0, 1, 3, 4, 99, 100, 101, 199, 200, 201, 1e6].map((s) => optim.warmupPiecewiseFactor(s, p)),
    [0, 0.25, 0.75, 1, 1, 1, 0.5, 0.5, 0.5, 0.1, 0.1],
  );
  assert.deepEqual(
    [0, 1, 2, 50].map((s) => optim.warmupConstantFactor(s, { warmupSteps: 2 })),
    [0, 0.5, 1, 1],
  );
  assert.equal(optim.warmupConstantFactor(0, { warmupSteps: 0 }), 1);
});

test('optim.EMA equals the direct recurrence, with buffers copied', () => {
  torch.tidy(() => {
    torch.manualSeed(3);
    const m = new nn.BatchNorm1d(4, { dtype: 'float64' });
    const ema = new optim.EMA(m, { decay: 0.9, includeBuffers: true });
    const w0 = Array.from(m.weight!.toTypedArray() as Float64Array);
    let expected = [...w0];
    for (let k = 0; k < 5; k++) {
      torch.noGrad(() => m.weight!.add_(0.1 * (k + 1)));
      torch.tidy(() => m.forward(torch.randn([8, 4], { dtype: 'float64' })));
      const w = Array.from(m.weight!.toTypedArray() as Float64Array);
      expected = expected.map((e, i) => 0.9 * e + 0.1 * w[i]!);
      ema.update();
    }
    assertClose(
      Array.from(ema.shadow.get('weight')!.toTypedArray() as Float64Array),
      expected,
      1e-14,
      1e-15,
      'ema weight',
    );
    assert.equal(Number(ema.shadow.get('num_batches_tracked')!.item()), 5, 'buffers are copied, not averaged');
    assertClose(
      Array.from(ema.shadow.get('running_mean')!.toTypedArray() as Float64Array),
      Array.from(m.runningMean!.toTypedArray() as Float64Array),
      0,
      0,
      'running mean copied',
    );
    ema.dispose();
    m.dispose();
  });
});

test('optim state dict round trip continues the same trajectory', () => {
  torch.tidy(() => {
    const mk = () => torch.tensor(init[0]!, { dtype: 'float64' }).requiresGrad_(true);
    const a = mk();
    const b = mk();
    const oa = new optim.AdamW([a], { lr: 0.01 });
    const grads = scriptedGrads(false).map((s) => s[0]!);
    const stepWith = (p: Tensor, o: optim.AdamW, g: number[]): void =>
      torch.tidy(() => {
        const old = p.grad;
        p.grad = torch.tensor(g, { dtype: 'float64' });
        old?.dispose();
        o.step();
      });
    for (let k = 0; k < 5; k++) stepWith(a, oa, grads[k]!);
    const sd = oa.stateDict();
    torch.noGrad(() => b.copy_(a));
    const ob = new optim.AdamW([b], { lr: 0.5 });
    ob.loadStateDict(sd);
    assert.equal(ob.paramGroups[0]!.lr, 0.01, 'hyper-parameters restored');
    for (let k = 5; k < 10; k++) {
      stepWith(a, oa, grads[k]!);
      stepWith(b, ob, grads[k]!);
    }
    assert.ok(a.equal(b), 'bit-identical after resuming from the state dict');
    oa.dispose();
    ob.dispose();
  });
});

test('optim.AdamW capturable: syncLr() writes a changed lr into its tensor; it refuses a change inside a graphed step', () => {
  torch.tidy(() => {
    const p = torch.ones([3], { dtype: 'float64' }).requiresGrad_(true);
    const opt = new optim.AdamW([p], { lr: 0.1, weightDecay: 0, capturable: true });
    const stepWithGrad = (): void => {
      p.grad = torch.onesLike(p);
      opt.step();
      opt.zeroGrad();
    };
    stepWithGrad();
    // Adam's first step moves by lr·sign(g) (bias-corrected), so the move shows which lr the kernel read.
    assertClose(p.toArray() as number[], [0.9, 0.9, 0.9], 1e-6, 0, 'first step with lr 0.1');
    optim.setLr(opt, 0.5);
    assert.throws(
      () => cuda.captureChecked('a test step', () => opt.syncLr()),
      (e: Error) => e instanceof cuda.CaptureError && /lr changed.*syncLr/.test(e.message),
    );
    opt.syncLr();
    cuda.captureChecked('a test step', stepWithGrad);
    assert.ok(Math.abs((p.toArray() as number[])[0]! - 0.4) < 1e-5, `second step used lr 0.5: ${String(p.toArray())}`);
    assert.throws(() => new optim.AdamW([p], { impl: 'forloop', capturable: true }), /capturable needs impl 'fused'/);
    opt.dispose();
  });
});

test('optim: no native tensors leak', () => {
  assert.equal(torch.liveTensors(), 0);
});
