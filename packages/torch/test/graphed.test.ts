// cuda.GraphedFunction and the capture checks. On the CPU (CI): the body runs
// eagerly through the static buffers with the checks on, owns its outputs,
// refuses host transfers with a CaptureError naming the call, and a training
// step through it (capturable AdamW, clipping) equals the plain loop bit for
// bit. On a GPU: the captured step replays the eager trajectory and follows
// lr changes made between replays.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as torch from '../src/index.js';
import { cuda, nn, optim, type Tensor } from '../src/index.js';
import { assertClose } from './harness.js';

const gpu = { skip: cuda.isAvailable() ? false : 'no CUDA device (or the addon was built without CUDA)' };

test('GraphedFunction on the CPU: eager through static buffers, outputs owned until the next call', () => {
  const base = torch.liveTensors();
  const reasons: string[] = [];
  const g = new cuda.GraphedFunction(([x, y]) => [x!.mul(y!).add(1), x!.sum()], {
    name: 'a test function',
    onFallback: (r) => reasons.push(r),
  });
  try {
    for (let k = 0; k < 4; k++) {
      const outs = torch.tidy(() => {
        const x = torch.arange(6, undefined, undefined, { dtype: 'float64' }).reshape(2, 3).add(k);
        return g.call([x, torch.full([2, 3], 2, { dtype: 'float64' })]);
      });
      // The caller's scope ended; the outputs belong to g and are still alive.
      assert.deepEqual(outs[0]!.toArray(), [
        [1 + 2 * k, 3 + 2 * k, 5 + 2 * k],
        [7 + 2 * k, 9 + 2 * k, 11 + 2 * k],
      ]);
      assert.equal(outs[1]!.item(), 15 + 6 * k);
    }
    assert.equal(g.isCaptured, false);
    assert.equal(g.calls, 4);
    assert.match(g.fallbackReason ?? '', /inputs are on cpu; CUDA graphs need CUDA tensors/);
    assert.deepEqual(reasons, ['a test function runs eagerly: its inputs are on cpu; CUDA graphs need CUDA tensors']);
    // The static buffers fix the signature.
    assert.throws(
      () =>
        torch.tidy(() =>
          g.call([torch.zeros([3, 2], { dtype: 'float64' }), torch.zeros([2, 3], { dtype: 'float64' })]),
        ),
      (e: Error) =>
        e instanceof TypeError && /float64\[3,2\]@cpu.*static buffers are \(float64\[2,3\]@cpu/.test(e.message),
    );
  } finally {
    g.dispose();
  }
  assert.throws(() => g.call([]), /disposed/);
  assert.equal(torch.liveTensors(), base, 'dispose frees the static buffers and outputs');
});

test('GraphedFunction: an output that is a static buffer or a kept tensor stays alive; warm-up is needed to capture', () => {
  const base = torch.liveTensors();
  const w = torch.keep(torch.full([2], 5));
  const g = new cuda.GraphedFunction(([x]) => [x!, w, x!.add(w)], { capture: false });
  try {
    for (let k = 0; k < 3; k++) {
      const outs = torch.tidy(() => g.call([torch.full([2], k)]));
      assert.deepEqual(
        outs.map((t) => t.toArray()),
        [
          [k, k],
          [5, 5],
          [k + 5, k + 5],
        ],
      );
    }
    assert.deepEqual(w.toArray(), [5, 5], 'the kept tensor survived the calls');
  } finally {
    g.dispose();
    w.dispose();
  }
  assert.equal(torch.liveTensors(), base);
  assert.throws(() => new cuda.GraphedFunction(() => [], { warmup: 0 }), /warmup must be an integer >= 1/);
});

test('GraphedFunction: host transfers inside the body are CaptureErrors that name the call', () => {
  const base = torch.liveTensors();
  const bodies: [string, (x: Tensor) => Tensor, RegExp][] = [
    ['a tensor from JS data', (x) => x.add(torch.tensor([1, 2, 3])), /creating a tensor from host data/],
    ['item()', (x) => x.mul(x.sum().item()), /item\(\)/],
    ['toArray()', (x) => (x.toArray(), x), /reading a tensor to the host/],
    ["a generator's state", (x) => (torch.Generator.default('cpu').getState(), x), /reading a generator's state/],
    ['reseeding', (x) => (torch.Generator.default('cpu').manualSeed(1), x), /seeding a generator/],
    ['a copy to another device', (x) => x.to('meta'), /copying a tensor from cpu to meta/],
    [
      'a copy_ from another device',
      (x) => torch.empty([3], { device: 'meta' }).copy_(x),
      /copying a tensor from cpu into one on meta/,
    ],
    ['an async read', (x) => (void x.toTypedArrayAsync(), x), /reading a tensor to the host \(toTypedArrayAsync\)/],
    ['a nested graphed call', (x) => new cuda.GraphedFunction(([y]) => [y!]).call([x])[0]!, /do not nest/],
  ];
  for (const [what, body, message] of bodies) {
    const g = new cuda.GraphedFunction(([x]) => [body(x!)], { name: 'the test step', capture: false });
    try {
      assert.throws(
        () => torch.tidy(() => g.call([torch.ones([3])])),
        (e: Error) =>
          e instanceof cuda.CaptureError && message.test(e.message) && /inside the test step/.test(e.message),
        what,
      );
    } finally {
      g.dispose();
    }
  }
  assert.equal(cuda.isCapturing(), false, 'the checks end with the body');
  // Outside a graphed function the same calls are fine.
  torch.tidy(() => assert.equal(torch.tensor([1, 2]).sum().item(), 3));
  assert.equal(torch.liveTensors(), base);
});

/** A small regression model and its data: y = x·w* + noise, fixed. */
function regression(device: torch.Device): { model: nn.Sequential; xs: Tensor[]; ys: Tensor[] } {
  torch.manualSeed(3);
  const model = new nn.Sequential(new nn.Linear(8, 16), new nn.GELU(), new nn.Linear(16, 1)).to({ device });
  const xs = Array.from({ length: 6 }, () => torch.keep(torch.randn([32, 8], { device })));
  const ys = xs.map((x) => torch.tidy(() => torch.keep(x.sum(1, { keepdim: true }).sin())));
  return { model, xs, ys };
}

/** One full step: forward, backward, clip, AdamW, zero grads; returns the loss. */
function trainStep(model: nn.Sequential, opt: optim.AdamW, x: Tensor, y: Tensor): Tensor {
  const loss = model.forward(x).sub(y).square().mean();
  loss.backward();
  optim.clipGradNorm_(model.parameters(), 0.5);
  opt.step();
  opt.zeroGrad();
  return loss.detach();
}

function trajectories(device: torch.Device, graphed: boolean): { losses: number[]; params: number[][] } {
  const { model, xs, ys } = regression(device);
  // Capturable on both sides: the comparison isolates the graphed path (the tensor lr is float32).
  const opt = new optim.AdamW(model.parameters(), { lr: 1e-2, weightDecay: 0.01, capturable: true });
  const g = graphed
    ? new cuda.GraphedFunction(([x, y]) => [trainStep(model, opt, x!, y!)], { name: 'the training step', warmup: 2 })
    : null;
  const losses: number[] = [];
  try {
    for (let k = 0; k < 12; k++) {
      // A schedule that changes the lr every step: a captured step must follow it.
      optim.setLr(opt, 1e-2 * (1 - k / 12));
      torch.tidy(() => {
        if (g) {
          opt.syncLr();
          losses.push(g.call([xs[k % 6]!, ys[k % 6]!])[0]!.item());
        } else losses.push(trainStep(model, opt, xs[k % 6]!, ys[k % 6]!).item());
      });
    }
    if (g && device.startsWith('cuda')) assert.equal(g.isCaptured, true, `captured (${g.fallbackReason ?? ''})`);
    const params = torch.tidy(() => model.parameters().map((p) => Array.from(p.cpu().toTypedArray() as Float32Array)));
    return { losses, params };
  } finally {
    g?.dispose();
    opt.dispose();
    model.dispose();
    for (const t of [...xs, ...ys]) t.dispose();
  }
}

test('GraphedFunction on the CPU: a training step through it equals the plain loop bit for bit', () => {
  const base = torch.liveTensors();
  const plain = trajectories('cpu', false);
  const graphed = trajectories('cpu', true);
  assert.deepEqual(graphed.losses, plain.losses);
  assert.deepEqual(graphed.params, plain.params);
  assert.ok(plain.losses[11]! < plain.losses[0]!, 'the model learns');
  assert.equal(torch.liveTensors(), base);
});

test('GPU: a captured training step replays the eager trajectory and follows the lr schedule', gpu, () => {
  const eager = trajectories('cuda', false);
  const graphed = trajectories('cuda', true);
  assertClose(graphed.losses, eager.losses, 1e-5, 1e-6, 'losses');
  graphed.params.forEach((p, i) => assertClose(p, eager.params[i]!, 1e-5, 1e-6, `parameter ${i}`));
});

test('GPU: random numbers drawn inside a captured graph differ on every replay', gpu, () => {
  const g = new cuda.GraphedFunction(([x]) => [x!.add(torch.randnLike(x!))], { warmup: 1 });
  try {
    const draws = torch.tidy(() => {
      const zero = torch.zeros([1024], { device: 'cuda' });
      return Array.from({ length: 4 }, () => Array.from(g.call([zero])[0]!.cpu().toTypedArray() as Float32Array));
    });
    assert.equal(g.isCaptured, true);
    for (let i = 1; i < draws.length; i++)
      assert.notDeepEqual(draws[i], draws[i - 1], `replay ${i} repeats the last draw`);
    const mean = draws[3]!.reduce((a, b) => a + b, 0) / 1024;
    assert.ok(Math.abs(mean) < 0.2, `standard normal draws (mean ${mean})`);
  } finally {
    g.dispose();
  }
});

test('GPU: a graphed function over CUDA tensors captures after its warm-up calls', gpu, () => {
  const g = new cuda.GraphedFunction(([x]) => [x!.matmul(x!).relu()], { warmup: 1 });
  try {
    torch.tidy(() => {
      for (let k = 0; k < 4; k++) {
        const x = torch.randn([32, 32], { device: 'cuda' });
        const want = x.matmul(x).relu().cpu().toTypedArray() as Float32Array;
        const got = g.call([x])[0]!.cpu().toTypedArray() as Float32Array;
        assertClose(got, want, 1e-5, 1e-5, `call ${k}`);
        assert.equal(g.isCaptured, k >= 1, `captured after the warm-up (call ${k})`);
      }
    });
  } finally {
    g.dispose();
  }
});

test('no tensors leak from this file', () => {
  assert.equal(torch.liveTensors(), 0);
});
