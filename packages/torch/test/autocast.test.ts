// Autocast on the CPU: which ops run in bfloat16 and which stay float32 (as
// PyTorch's CPU autocast policy says), the values (against Python running the
// same code under torch.autocast), gradients through autocast regions, and the
// scope rules (isAutocastEnabled, nesting, restore after exceptions).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as torch from '../src/index.js';
import { F, type Tensor } from '../src/index.js';
import { assertClose } from './harness.js';
import { pyEval, values, type PyTensor } from './pyref.js';

// bfloat16 keeps 8 bits of mantissa: relative steps of 2^-8 (0.4%); sums of a
// few such products stay within 2%.
const BF16 = { rtol: 2e-2, atol: 2e-2 };

function tidyTest(name: string, fn: () => void): void {
  test(name, () => {
    torch.tidy(fn);
    assert.equal(torch.liveTensors(), 0, 'live native tensors after the test');
  });
}

function inputs(): Record<string, Tensor> {
  torch.manualSeed(11);
  return {
    a: torch.randn([3, 4]),
    b: torch.randn([4, 5]),
    w: torch.randn([6, 4]),
    bias: torch.randn([6]),
    img: torch.randn([1, 2, 5, 5]),
    k: torch.randn([3, 2, 3, 3]),
    target: torch.randn([3, 5]),
  };
}

/** The ops run in JS and (same code) in Python; each returns a tensor. */
const OPS: [string, (x: Record<string, Tensor>) => Tensor, string][] = [
  ['matmul', (x) => x.a!.matmul(x.b!), 'a @ b'],
  ['mm', (x) => x.a!.mm(x.b!), 'a.mm(b)'],
  ['linear', (x) => F.linear(x.a!, x.w!, x.bias), 'F.linear(a, w, bias)'],
  ['conv2d', (x) => F.conv2d(x.img!, x.k!), 'F.conv2d(img, k)'],
  ['addmm', (x) => torch.addmm(x.target!, x.a!, x.b!), 'torch.addmm(target, a, b)'],
  ['sum (not autocast)', (x) => x.a!.sum(), 'a.sum()'],
  ['add (not autocast)', (x) => x.a!.add(1), 'a + 1'],
  ['exp (not autocast)', (x) => x.a!.exp(), 'a.exp()'],
  ['sum of a bf16 matmul stays bf16', (x) => x.a!.matmul(x.b!).sum(), '(a @ b).sum()'],
  ['mse_loss runs in float32', (x) => F.mseLoss(x.a!.matmul(x.b!), x.target!), 'F.mse_loss(a @ b, target)'],
  [
    'cross_entropy runs in float32',
    (x) => F.crossEntropy(x.a!.matmul(x.b!), torch.tensor([0, 4, 2], { dtype: 'int64' })),
    'F.cross_entropy(a @ b, torch.tensor([0, 4, 2]))',
  ],
  ['softmax of bf16 stays bf16', (x) => F.softmax(x.a!.matmul(x.b!), -1), 'F.softmax(a @ b, -1)'],
];

interface Refs {
  outs: PyTensor[];
  enabledInside: boolean;
  enabledOutside: boolean;
  grads: PyTensor[];
}

let refs: Refs | undefined;
function ref(): Refs {
  refs ??= torch.tidy(() =>
    pyEval<Refs>(
      `
outs = []
with torch.autocast('cpu', dtype=torch.bfloat16):
    enabled_inside = torch.is_autocast_enabled('cpu')
${OPS.map(([, , py]) => `    outs.append(${py})`).join('\n')}
a.requires_grad_(); w.requires_grad_()
with torch.autocast('cpu', dtype=torch.bfloat16):
    y = F.linear(a, w)
(y.float() ** 2).sum().backward()
result = {'outs': outs, 'enabledInside': enabled_inside, 'enabledOutside': torch.is_autocast_enabled('cpu'),
          'grads': [a.grad, w.grad]}
`,
      inputs(),
    ),
  );
  return refs;
}

tidyTest('autocast cpu bfloat16: output dtypes and values match torch.autocast', () => {
  const r = ref();
  const x = inputs();
  const outs = torch.autocast('cpu', () => OPS.map(([, js]) => js(x)), { dtype: 'bfloat16' });
  OPS.forEach(([name], i) => {
    const want = r.outs[i]!;
    assert.equal(outs[i]!.dtype, want.dtype, `${name}: dtype`);
    assert.deepEqual(outs[i]!.shape, want.shape, `${name}: shape`);
    assertClose(values(outs[i]!), want.data, BF16.rtol, BF16.atol, name);
  });
  assert.equal(r.enabledInside, true);
  assert.equal(r.enabledOutside, false);
  // Outside the scope the same op runs in float32 again.
  assert.equal(x.a!.matmul(x.b!).dtype, 'float32');
});

tidyTest('autocast gradients flow back to float32 leaves', () => {
  const r = ref();
  const x = inputs();
  const a = x.a!.requiresGrad_(true);
  const w = x.w!.requiresGrad_(true);
  const y = torch.autocast('cpu', () => F.linear(a, w), { dtype: 'bfloat16' });
  assert.equal(y.dtype, 'bfloat16');
  y.float().pow(2).sum().backward();
  assert.equal(a.grad!.dtype, 'float32');
  assert.equal(w.grad!.dtype, 'float32');
  // Gradients of bf16 products of magnitude ~10: compare loosely.
  assertClose(values(a.grad!), r.grads[0]!.data, 3e-2, 0.1, 'a.grad');
  assertClose(values(w.grad!), r.grads[1]!.data, 3e-2, 0.1, 'w.grad');
});

tidyTest('isAutocastEnabled inside and outside; nesting; enabled: false', () => {
  const a = torch.randn([2, 3]);
  const b = torch.randn([3, 2]);
  assert.equal(torch.isAutocastEnabled('cpu'), false);
  torch.autocast(
    'cpu',
    () => {
      assert.equal(torch.isAutocastEnabled('cpu'), true);
      assert.equal(a.matmul(b).dtype, 'bfloat16');
      torch.autocast(
        'cpu',
        () => {
          assert.equal(torch.isAutocastEnabled('cpu'), false);
          assert.equal(a.matmul(b).dtype, 'float32');
        },
        { enabled: false },
      );
      assert.equal(torch.isAutocastEnabled('cpu'), true);
      torch.autocast('cpu', () => assert.equal(a.matmul(b).dtype, 'float16'), { dtype: 'float16' });
      assert.equal(a.matmul(b).dtype, 'bfloat16', 'the outer dtype is restored');
    },
    { dtype: 'bfloat16' },
  );
  assert.equal(torch.isAutocastEnabled('cpu'), false);
  assert.equal(a.matmul(b).dtype, 'float32');
  // Default CPU dtype is bfloat16, as in PyTorch.
  assert.equal(
    torch.autocast('cpu', () => a.matmul(b).dtype),
    'bfloat16',
  );
});

tidyTest('autocast restores the previous state after an exception', () => {
  const a = torch.randn([2, 3]);
  const b = torch.randn([3, 2]);
  assert.throws(
    () =>
      torch.autocast('cpu', () => {
        assert.equal(torch.isAutocastEnabled('cpu'), true);
        throw new Error('boom');
      }),
    /boom/,
  );
  assert.equal(torch.isAutocastEnabled('cpu'), false);
  assert.equal(a.matmul(b).dtype, 'float32');
  torch.autocast('cpu', () => {
    assert.throws(() =>
      torch.autocast(
        'cpu',
        () => {
          throw new Error('inner');
        },
        { enabled: false },
      ),
    );
    assert.equal(torch.isAutocastEnabled('cpu'), true, 'inner scope restored the enabled outer one');
    assert.equal(a.matmul(b).dtype, 'bfloat16');
  });
  // A guard closes once, however often it is disposed.
  const guard = torch.autocastGuard('cpu');
  assert.equal(torch.isAutocastEnabled('cpu'), true);
  guard[Symbol.dispose]();
  guard[Symbol.dispose]();
  assert.equal(torch.isAutocastEnabled('cpu'), false);
  assert.throws(() => torch.autocast('tpu' as 'cpu', () => 0), TypeError);
  assert.throws(() => torch.autocast('cpu', () => 0, { dtype: 'int64' }), TypeError);
  assert.equal(torch.isAutocastEnabled('cpu'), false);
});
