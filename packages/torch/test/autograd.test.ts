// Autograd: backward/grad (accumulation, retainGraph, createGraph, allowUnused,
// inputs), grad-mode and inference-mode scopes (nesting, restore on throw),
// forward mode (jvp vs closed forms and torch.func.jvp), leaf/non-leaf rules,
// gradFn names, detach. Numbers are checked against closed forms or PyTorch.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as torch from '../src/index.js';
import { F, TorchError, type Tensor } from '../src/index.js';
import { assertClose } from './harness.js';
import { pyEval, values, type PyTensor } from './pyref.js';

const X = [0.3, -1.2, 2.0, 0.7];
const T = [1.0, 0.5, -2.0, 0.25];
const W = [0.5, -0.3, 1.1, 0.2, -0.7, 0.9, 0.4, 1.5]; // [4, 2]
const TW = [0.1, 0.2, -0.3, 0.4, 0.5, -0.6, 0.7, 0.8];

const f64 = (data: number[], shape?: number[]): Tensor => {
  const t = torch.tensor(data, { dtype: 'float64' });
  return shape ? t.reshape(shape) : t;
};
const leaf = (data: number[], shape?: number[]): Tensor => f64(data, shape).requiresGrad_(true);
const close = (t: Tensor, expected: number[], what: string, rtol = 1e-12, atol = 1e-12): void =>
  assertClose(values(t), expected, rtol, atol, what);

/** Wraps a test body in tidy() and checks that nothing native outlives it. */
function tidyTest(name: string, fn: () => void): void {
  test(name, () => {
    torch.tidy(fn);
    assert.equal(torch.liveTensors(), 0, 'live native tensors after the test');
  });
}

interface Refs {
  tanhMatmul: [PyTensor, PyTensor];
  softmax: [PyTensor, PyTensor];
  layerNorm: [PyTensor, PyTensor];
  pair: [[PyTensor, PyTensor], [PyTensor, PyTensor]];
  constant: [[PyTensor, PyTensor], [PyTensor, PyTensor]];
  names: string[];
}

let refs: Refs | undefined;
/** Every Python reference of this file, from one Python process. */
function ref(): Refs {
  refs ??= torch.tidy(() =>
    pyEval<Refs>(
      `
from torch.func import jvp
x, t, w, tw = x.clone(), t.clone(), w.clone(), tw.clone()
result = {
  'tanhMatmul': jvp(lambda x, w: torch.tanh(x @ w), (x, w), (t, tw)),
  'softmax': jvp(lambda x: torch.softmax(x, -1), (x,), (t,)),
  'layerNorm': jvp(lambda x: F.layer_norm(x, [4]), (x,), (t,)),
  'pair': jvp(lambda x: (x.exp(), x * 2), (x,), (t,)),
  'constant': jvp(lambda x: (x * 2, torch.ones(2, dtype=torch.float64)), (x,), (t,)),
}
a = x.clone().requires_grad_()
# JS numbers go to the Scalar overloads (mul.Scalar: MulBackward1); Python's a * 2
# wraps 2 in a tensor (mul.Tensor: MulBackward0). Same values, other node names.
aten = torch.ops.aten
outs = [aten.mul.Scalar(a, 2), aten.add.Scalar(a, 1), a.sum(), a @ w, a.exp(), a.view(2, 2), a[0], a.reshape(2, 2).t(), torch.tanh(a), a.mean(0),
        a.clone(), a.unsqueeze(0).expand(3, 4), F.softmax(a, 0), a.pow(2), aten.div.Scalar(a, 3), a * a]
result['names'] = [o.grad_fn.name() for o in outs]
`,
      { x: f64(X), t: f64(T), w: f64(W, [4, 2]), tw: f64(TW, [4, 2]) },
    ),
  );
  return refs;
}

tidyTest('backward with an explicit gradient', () => {
  const x = leaf(X);
  const v = f64(T);
  x.mul(x).backward(v); // d(x²)/dx · v = 2 x v
  close(
    x.grad!,
    X.map((xi, i) => 2 * xi * T[i]!),
    'x.grad',
  );
  assert.equal(x.grad!.dtype, 'float64');
  assert.deepEqual(x.grad!.shape, [4]);
});

tidyTest('backward of a non-scalar without a gradient throws', () => {
  const x = leaf(X);
  assert.throws(() => x.mul(2).backward(), TorchError);
});

tidyTest('gradients accumulate across backward calls; zeroing and clearing', () => {
  const x = leaf(X);
  x.mul(3).sum().backward();
  x.mul(x).sum().backward();
  close(
    x.grad!,
    X.map((xi) => 3 + 2 * xi),
    'accumulated',
  );
  x.grad!.zero_(); // the getter's handle is the same tensor as .grad
  close(x.grad!, [0, 0, 0, 0], 'after zero_()');
  x.sum().backward();
  close(x.grad!, [1, 1, 1, 1], 'after zero_() and one more backward');
  x.grad = null;
  assert.equal(x.grad, null);
  x.mul(2).sum().backward();
  close(x.grad!, [2, 2, 2, 2], 'after clearing');
  x.grad = f64([1, 1, 1, 1]);
  x.sum().backward();
  close(x.grad!, [2, 2, 2, 2], 'accumulates into a grad that was set');
});

tidyTest('retainGraph allows a second backward; without it the graph is freed', () => {
  const x = leaf(X);
  const y = x.exp().sum();
  y.backward(undefined, { retainGraph: true });
  y.backward();
  close(
    x.grad!,
    X.map((xi) => 2 * Math.exp(xi)),
    'two passes',
  );
  assert.throws(
    () => y.backward(),
    (e: unknown) => e instanceof TorchError && /second time|freed/.test(e.message),
  );
});

tidyTest('grad with createGraph: double backward of x³ is 6x', () => {
  const x = leaf(X);
  const [g] = torch.grad(x.pow(3).sum(), x, { createGraph: true });
  close(
    g!,
    X.map((xi) => 3 * xi * xi),
    'first derivative',
  );
  assert.equal(g!.requiresGrad, true);
  const [h] = torch.grad(g!.sum(), x, { retainGraph: true });
  close(
    h!,
    X.map((xi) => 6 * xi),
    'second derivative',
  );
  assert.equal(h!.requiresGrad, false);
  // grad() does not touch .grad; backward through g does.
  assert.equal(x.grad, null);
  g!.sum().backward();
  close(
    x.grad!,
    X.map((xi) => 6 * xi),
    'backward of the first derivative',
  );
});

tidyTest('grad with gradOutputs and several inputs', () => {
  const x = leaf(X);
  const w = leaf(W, [4, 2]);
  const y = x.matmul(w); // [2]
  const v = f64([1, -2]);
  const [gx, gw] = torch.grad(y, [x, w], { gradOutputs: [v] });
  // dy/dx · v = w v; dy/dw · v = x ⊗ v
  close(
    gx!,
    [0, 1, 2, 3].map((i) => W[2 * i]! * 1 + W[2 * i + 1]! * -2),
    'gx',
  );
  close(
    gw!,
    X.flatMap((xi) => [xi, -2 * xi]),
    'gw',
  );
});

tidyTest('grad allowUnused: null for an input the output does not use', () => {
  const x = leaf(X);
  const z = leaf([1, 2]);
  const y = x.sum();
  assert.throws(() => torch.grad(y, [x, z], { retainGraph: true }), TorchError);
  const [gx, gz] = torch.grad(y, [x, z], { allowUnused: true });
  close(gx!, [1, 1, 1, 1], 'gx');
  assert.equal(gz, null);
});

tidyTest('backward with inputs: only those accumulate', () => {
  const a = leaf(X);
  const b = leaf(T);
  a.mul(b)
    .sum()
    .backward(undefined, { inputs: [a] });
  close(a.grad!, T, 'a.grad');
  assert.equal(b.grad, null);
  torch.backward([a.sum(), b.mul(2).sum()], [null, null]);
  close(
    a.grad!,
    T.map((t) => t + 1),
    'a.grad after torch.backward',
  );
  close(b.grad!, [2, 2, 2, 2], 'b.grad after torch.backward');
});

tidyTest('noGrad / enableGrad / isGradEnabled nest and restore, also after a throw', () => {
  const x = leaf(X);
  assert.equal(torch.isGradEnabled(), true);
  torch.noGrad(() => {
    assert.equal(torch.isGradEnabled(), false);
    assert.equal(x.mul(2).requiresGrad, false);
    torch.enableGrad(() => {
      assert.equal(torch.isGradEnabled(), true);
      assert.equal(x.mul(2).requiresGrad, true);
      torch.noGrad(() => assert.equal(torch.isGradEnabled(), false));
      assert.equal(torch.isGradEnabled(), true);
    });
    assert.equal(torch.isGradEnabled(), false);
    assert.throws(() =>
      torch.enableGrad(() => {
        throw new Error('boom');
      }),
    );
    assert.equal(torch.isGradEnabled(), false, 'enableGrad restored no-grad after a throw');
  });
  assert.equal(torch.isGradEnabled(), true);
  assert.throws(
    () =>
      torch.noGrad(() => {
        x.mul(2);
        throw new Error('boom');
      }),
    /boom/,
  );
  assert.equal(torch.isGradEnabled(), true, 'noGrad restored grad mode after a throw');
  assert.equal(
    torch.noGrad(() => 42),
    42,
    'returns the value of fn',
  );
  const guard = torch.gradModeGuard(false);
  assert.equal(torch.isGradEnabled(), false);
  guard[Symbol.dispose]();
  assert.equal(torch.isGradEnabled(), true);
  assert.equal(x.mul(2).requiresGrad, true);
});

tidyTest('inferenceMode: no autograd inside, restored after, also after a throw', () => {
  const x = leaf(X);
  assert.equal(torch.isInferenceMode(), false);
  const y = torch.inferenceMode(() => {
    assert.equal(torch.isInferenceMode(), true);
    assert.equal(torch.isGradEnabled(), false);
    const inner = torch.inferenceMode(() => torch.isInferenceMode());
    assert.equal(inner, true);
    assert.equal(
      torch.inferenceMode(() => torch.isInferenceMode(), false),
      false,
      'inferenceMode(fn, false) turns it off inside',
    );
    assert.equal(torch.isInferenceMode(), true);
    return x.mul(2);
  });
  assert.equal(y.requiresGrad, false);
  assert.equal(y.gradFn, null);
  close(
    y,
    X.map((v) => 2 * v),
    'value computed in inference mode',
  );
  assert.equal(torch.isInferenceMode(), false);
  assert.equal(torch.isGradEnabled(), true);
  assert.throws(() =>
    torch.inferenceMode(() => {
      throw new Error('boom');
    }),
  );
  assert.equal(torch.isInferenceMode(), false, 'restored after a throw');
  assert.equal(x.mul(2).requiresGrad, true);
});

tidyTest('jvp: closed forms', () => {
  const x = f64(X);
  const t = f64(T);
  // d/dx [x sin x] = sin x + x cos x
  const [[p1], [d1]] = torch.jvp((a) => a.sin().mul(a), [x], [t]);
  close(
    p1!,
    X.map((v) => v * Math.sin(v)),
    'primal out',
  );
  close(
    d1!,
    X.map((v, i) => (Math.sin(v) + v * Math.cos(v)) * T[i]!),
    'tangent out',
    1e-12,
    1e-14,
  );
  // d/dx sum(x³) · t = Σ 3x² t
  const [, [d2]] = torch.jvp((a) => a.pow(3).sum(), [x], [t]);
  assertClose([d2!.item()], [X.reduce((s, v, i) => s + 3 * v * v * T[i]!, 0)], 1e-12, 1e-14, 'x³');
  // two primals: d(x y) = tx y + x ty
  const y = f64([2, 3, -1, 0.5]);
  const ty = f64([0.5, 0.5, 1, -1]);
  const [, [d3]] = torch.jvp((a, b) => a.mul(b), [x, y], [t, ty]);
  const Y = [2, 3, -1, 0.5];
  const TY = [0.5, 0.5, 1, -1];
  close(
    d3!,
    X.map((v, i) => T[i]! * Y[i]! + v * TY[i]!),
    'product rule',
  );
  // The outputs are plain tensors afterwards: no tangent, no grad.
  assert.equal(d3!.requiresGrad, false);
  assert.throws(() => torch.jvp((a) => a, [x], []), TypeError);
});

tidyTest('jvp matches torch.func.jvp', () => {
  const r = ref();
  const x = f64(X);
  const t = f64(T);
  const w = f64(W, [4, 2]);
  const tw = f64(TW, [4, 2]);
  const check = (got: [Tensor[], Tensor[]], want: [PyTensor, PyTensor][], what: string): void => {
    assert.equal(got[0].length, want.length, `${what}: number of outputs`);
    want.forEach(([p, d], i) => {
      assert.deepEqual(got[0][i]!.shape, p.shape, `${what}: primal shape`);
      close(got[0][i]!, p.data, `${what}: primal ${i}`, 1e-12, 1e-14);
      assert.deepEqual(got[1][i]!.shape, d.shape, `${what}: tangent shape`);
      close(got[1][i]!, d.data, `${what}: tangent ${i}`, 1e-12, 1e-14);
    });
  };
  check(
    torch.jvp((a, b) => a.matmul(b).tanh(), [x, w], [t, tw]),
    [r.tanhMatmul],
    'tanh(x @ w)',
  );
  check(
    torch.jvp((a) => F.softmax(a, -1), [x], [t]),
    [r.softmax],
    'softmax',
  );
  check(
    torch.jvp((a) => F.layerNorm(a, [4]), [x], [t]),
    [r.layerNorm],
    'layer_norm',
  );
  const [pp, pt] = r.pair;
  check(
    torch.jvp((a) => [a.exp(), a.mul(2)], [x], [t]),
    [
      [pp[0], pt[0]],
      [pp[1], pt[1]],
    ],
    '(exp, 2x)',
  );
  // An output that does not depend on the primals has a zero tangent.
  const [cp, ct] = r.constant;
  check(
    torch.jvp((a) => [a.mul(2), torch.ones([2], { dtype: 'float64' })], [x], [t]),
    [
      [cp[0], ct[0]],
      [cp[1], ct[1]],
    ],
    'constant output',
  );
});

tidyTest('requiresGrad on an integer tensor throws TypeError', () => {
  assert.throws(() => torch.zeros([2], { dtype: 'int64', requiresGrad: true }), TypeError);
  const i = torch.tensor([1, 2], { dtype: 'int64' });
  assert.throws(() => i.requiresGrad_(true), TypeError);
  assert.throws(() => {
    i.requiresGrad = true;
  }, TypeError);
  assert.equal(i.requiresGrad, false);
  i.requiresGrad_(false); // turning it off is always fine
  const b = torch.tensor([true, false]);
  assert.throws(() => b.requiresGrad_(), TypeError);
  // Float dtypes are fine, also via the options.
  assert.equal(torch.zeros([2], { dtype: 'float16', requiresGrad: true }).requiresGrad, true);
  // Non-leaf tensors cannot be switched on.
  const x = leaf(X);
  const y = x.mul(2);
  assert.throws(() => y.requiresGrad_(true), TypeError);
  // ... nor switched off (PyTorch: "you can only change requires_grad flags of leaf variables").
  assert.throws(() => y.requiresGrad_(false), TypeError);
  assert.equal(y.requiresGrad, true);
  x.requiresGrad_(false); // a leaf can
  assert.equal(x.requiresGrad, false);
});

tidyTest('retainGrad keeps the gradient of a non-leaf', () => {
  const x = leaf(X);
  const y = x.mul(2);
  const z = y.exp();
  y.retainGrad();
  assert.equal(x.isLeaf, true);
  assert.equal(y.isLeaf, false);
  z.mul(z).sum().backward();
  // d/dy sum(exp(y)²) = 2 exp(2y)
  close(
    y.grad!,
    X.map((v) => 2 * Math.exp(4 * v)),
    'y.grad',
    1e-12,
    1e-12,
  );
  assert.equal(z.grad, null, 'no retained gradient without retainGrad()');
  close(
    x.grad!,
    X.map((v) => 4 * Math.exp(4 * v)),
    'x.grad',
    1e-12,
    1e-12,
  );
});

tidyTest('gradFn names match PyTorch', () => {
  const want = ref().names;
  const a = leaf(X);
  const w = f64(W, [4, 2]);
  const outs = [
    a.mul(2),
    a.add(1),
    a.sum(),
    a.matmul(w),
    a.exp(),
    a.view(2, 2),
    a.index(0),
    a.reshape(2, 2).t(),
    a.tanh(),
    a.mean(0),
    a.clone(),
    a.unsqueeze(0).expand(3, 4),
    F.softmax(a, 0),
    a.pow(2),
    a.div(3),
    a.mul(a),
  ];
  assert.deepEqual(
    outs.map((o) => o.gradFn),
    want,
  );
  assert.equal(a.gradFn, null, 'a leaf has no gradFn');
  assert.equal(f64(X).mul(2).gradFn, null, 'no graph without requiresGrad');
});

tidyTest('detach: same memory, cut from the graph', () => {
  const x = leaf(X);
  const y = x.mul(2);
  const d = y.detach();
  assert.equal(d.requiresGrad, false);
  assert.equal(d.gradFn, null);
  assert.equal(d.isLeaf, true);
  d.index(0).fill_(100);
  assert.equal(y.index(0).item(), 100, 'detach shares storage');
  const xd = x.detach();
  xd.index(1).fill_(5);
  assert.equal(x.index(1).item(), 5);
  y.sum().backward();
  close(x.grad!, [2, 2, 2, 2], 'the graph of y is unaffected');
  const u = x.mul(3);
  u.detach_();
  assert.equal(u.requiresGrad, false);
  assert.equal(u.gradFn, null);
});
