// Random numbers: manualSeed reproducibility; Generator('cpu', seed) draws the
// same stream as Python's torch.Generator().manual_seed(seed) (libtorch's CPU
// generator is Python's), for every sampler; getState/setState round trips;
// statistical sanity of the distributions.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as torch from '../src/index.js';
import { Generator, type Tensor } from '../src/index.js';
import { assertClose } from './harness.js';
import { pyEval, values, type PyTensor } from './pyref.js';

function tidyTest(name: string, fn: () => void): void {
  test(name, () => {
    torch.tidy(fn);
    assert.equal(torch.liveTensors(), 0, 'live native tensors after the test');
  });
}

const SEED = 1234;
const PROBS = [0.1, 0.5, 0.2, 0.2, 0.05, 0.3, 0.6, 0.05]; // [2, 4] unnormalised weights

/**
 * One stream of draws from one generator, in JS; the Python twin below must
 * make the same calls in the same order.
 */
function drawAll(g: Generator): Tensor[] {
  const probs = torch.tensor(PROBS, { dtype: 'float32' }).reshape(2, 4);
  return [
    torch.randn([5, 3], { generator: g }),
    torch.rand([7], { generator: g }),
    torch.randint(-3, 10, [6], { generator: g }),
    torch.randperm(9, { generator: g }),
    torch.empty([4, 2]).normal_(1.5, 0.5, g),
    torch.empty([5]).uniform_(-2, 3, g),
    torch.bernoulli(torch.full([8], 0.3), g),
    torch.empty([6]).bernoulli_(0.7, g),
    torch.multinomial(probs, 3, false, g),
    torch.multinomial(probs, 6, true, g),
    torch.normal(torch.tensor([0, 10, -5]), torch.tensor([1, 0.1, 2]), g),
    torch.randn([3], { generator: g, dtype: 'float64' }),
    torch.rand([2, 2], { generator: g, dtype: 'float64' }),
    torch.empty([3]).exponential_(2, g),
    torch.randn([33], { generator: g }), // 16+ elements take the vectorised path
  ];
}

const DRAW_ALL_PY = `
def draw_all(g):
    probs = torch.tensor(${JSON.stringify(PROBS)}, dtype=torch.float32).reshape(2, 4)
    return [
        torch.randn(5, 3, generator=g),
        torch.rand(7, generator=g),
        torch.randint(-3, 10, (6,), generator=g),
        torch.randperm(9, generator=g),
        torch.empty(4, 2).normal_(1.5, 0.5, generator=g),
        torch.empty(5).uniform_(-2, 3, generator=g),
        torch.bernoulli(torch.full((8,), 0.3), generator=g),
        torch.empty(6).bernoulli_(0.7, generator=g),
        torch.multinomial(probs, 3, False, generator=g),
        torch.multinomial(probs, 6, True, generator=g),
        torch.normal(torch.tensor([0.0, 10.0, -5.0]), torch.tensor([1.0, 0.1, 2.0]), generator=g),
        torch.randn(3, generator=g, dtype=torch.float64),
        torch.rand(2, 2, generator=g, dtype=torch.float64),
        torch.empty(3).exponential_(2, generator=g),
        torch.randn(33, generator=g),
    ]
`;

const NAMES = [
  'randn',
  'rand',
  'randint',
  'randperm',
  'normal_',
  'uniform_',
  'bernoulli',
  'bernoulli_',
  'multinomial',
  'multinomial replacement',
  'normal(mean, std)',
  'randn float64',
  'rand float64',
  'exponential_',
  'randn (long)',
];

interface Refs {
  stream: PyTensor[];
  global: PyTensor[];
  state: PyTensor;
}

let refs: Refs | undefined;
function ref(): Refs {
  refs ??= pyEval<Refs>(`
${DRAW_ALL_PY}
g = torch.Generator().manual_seed(${SEED})
state = g.get_state()
stream = draw_all(g)
torch.manual_seed(${SEED + 1})
glob = [torch.randn(4), torch.rand(3), torch.randint(0, 100, (5,)), torch.randperm(6)]
result = {'stream': stream, 'global': glob, 'state': state}
`);
  return refs;
}

function assertSame(got: Tensor, want: PyTensor, what: string): void {
  assert.equal(got.dtype, want.dtype, `${what}: dtype`);
  assert.deepEqual(got.shape, want.shape, `${what}: shape`);
  // The same generator and kernels: the values are identical, bit for bit
  // (printing through JSON keeps float64 exactly, float32 widened exactly).
  assertClose(values(got), want.data, 0, 0, what);
}

tidyTest('Generator(cpu, seed) draws the same stream as torch.Generator().manual_seed(seed)', () => {
  const want = ref().stream;
  using g = new Generator('cpu', SEED);
  const got = drawAll(g);
  got.forEach((t, i) => assertSame(t, want[i]!, NAMES[i]!));
});

tidyTest('manualSeed seeds the global generator as torch.manual_seed does', () => {
  const want = ref().global;
  torch.manualSeed(SEED + 1);
  const got = [torch.randn([4]), torch.rand([3]), torch.randint(0, 100, [5]), torch.randperm(6)];
  got.forEach((t, i) => assertSame(t, want[i]!, `global ${i}`));
});

tidyTest('manualSeed reproducibility', () => {
  torch.manualSeed(42);
  const a = [torch.randn([100]), torch.rand([10]), torch.randint(0, 5, [10]), torch.randn([3], { dtype: 'float64' })];
  torch.manualSeed(42);
  const b = [torch.randn([100]), torch.rand([10]), torch.randint(0, 5, [10]), torch.randn([3], { dtype: 'float64' })];
  a.forEach((t, i) => assert.ok(t.equal(b[i]!), `draw ${i} repeats`));
  assert.ok(!torch.randn([100]).equal(a[0]!), 'the stream moves on');
  torch.manualSeed(43);
  assert.ok(!torch.randn([100]).equal(a[0]!), 'another seed, another stream');
  assert.throws(() => torch.manualSeed(-1), TypeError);
  assert.throws(() => torch.manualSeed(1.5), TypeError);
});

tidyTest('Generator.default is the global generator', () => {
  torch.manualSeed(9);
  const a = torch.randn([5]);
  const g = Generator.default('cpu');
  g.manualSeed(9);
  const b = torch.randn([5]);
  assert.ok(a.equal(b));
  g.manualSeed(9);
  assert.ok(torch.randn([5], { generator: g }).equal(a));
});

tidyTest('independent generators do not disturb each other or the global one', () => {
  torch.manualSeed(5);
  const ref1 = torch.randn([6]);
  torch.manualSeed(5);
  using g1 = new Generator('cpu', 77);
  using g2 = new Generator('cpu', 77);
  const x1 = torch.randn([6], { generator: g1 });
  const interleaved = torch.randn([3]); // global draw between the two
  const x2 = torch.randn([6], { generator: g2 });
  assert.ok(x1.equal(x2), 'same seed, same stream');
  const rest = torch.randn([3]);
  assert.ok(torch.cat([interleaved, rest]).equal(ref1), 'global stream unaffected');
  g1.manualSeed(77);
  assert.ok(torch.randn([6], { generator: g1 }).equal(x1), 'reseeding restarts the stream');
});

tidyTest('getState/setState round trip, and the state matches PyTorch', () => {
  const want = ref();
  using g = new Generator('cpu', SEED);
  const state = g.getState();
  assert.ok(state instanceof Uint8Array);
  assert.equal(state.length, want.state.data.length, 'state size');
  assert.deepEqual(Array.from(state), want.state.data, 'state bytes equal Python get_state()');
  const first = drawAll(g);
  g.setState(state);
  const again = drawAll(g);
  first.forEach((t, i) => assert.ok(t.equal(again[i]!), `${NAMES[i]} after setState`));
  // Mid-stream state moves to another generator and resumes the stream there.
  torch.randn([10], { generator: g });
  const mid = g.getState();
  const next = torch.randn([20], { generator: g });
  using h = new Generator('cpu', 0);
  h.setState(mid);
  assert.ok(torch.randn([20], { generator: h }).equal(next));
  // A normal draw of odd length leaves a cached second Box-Muller sample; the
  // state carries it too.
  torch.randn([1], { generator: g, dtype: 'float64' });
  const odd = g.getState();
  const n1 = torch.randn([1], { generator: g, dtype: 'float64' });
  g.setState(odd);
  assert.ok(torch.randn([1], { generator: g, dtype: 'float64' }).equal(n1));
  assert.throws(() => g.setState(new Uint8Array(10)));
});

tidyTest('a disposed generator cannot be used', () => {
  const g = new Generator('cpu', 1);
  g.dispose();
  g.dispose(); // twice is fine
  assert.throws(() => torch.randn([2], { generator: g }), /disposed/);
});

tidyTest('distributions: statistical sanity', () => {
  torch.manualSeed(2024);
  const n = 100_000;
  const z = torch.randn([n], { dtype: 'float64' });
  // Standard errors: mean 1/√n = 0.0032, std 1/√(2n) = 0.0022; allow ~6 of them.
  assert.ok(Math.abs(z.mean().item()) < 0.02, `randn mean ${z.mean().item()}`);
  assert.ok(Math.abs(z.std().item() - 1) < 0.015, `randn std ${z.std().item()}`);
  const within1 = z.abs().lt(1).double().mean().item();
  assert.ok(Math.abs(within1 - 0.6827) < 0.01, `P(|z| < 1) = ${within1}`);
  const u = torch.rand([n]);
  assert.ok(u.min().item() >= 0 && u.max().item() < 1, 'rand in [0, 1)');
  assert.ok(Math.abs(u.mean().item() - 0.5) < 0.006, `rand mean ${u.mean().item()}`);
  assert.ok(Math.abs(u.var().item() - 1 / 12) < 0.003, `rand var ${u.var().item()}`);
  const r = torch.randint(3, 8, [n]);
  assert.equal(r.dtype, 'int64');
  assert.equal(r.min().item(), 3);
  assert.equal(r.max().item(), 7);
  assert.ok(Math.abs(r.double().mean().item() - 5) < 0.03);
  const p = torch.randperm(1000);
  assert.deepEqual(values(p.sort().values), [...Array(1000).keys()], 'randperm is a permutation');
  const nrm = torch.empty([n], { dtype: 'float64' }).normal_(3, 2);
  assert.ok(Math.abs(nrm.mean().item() - 3) < 0.04 && Math.abs(nrm.std().item() - 2) < 0.03);
  const b = torch.empty([n]).bernoulli_(0.25);
  assert.ok(Math.abs(b.mean().item() - 0.25) < 0.01);
  const e = torch.empty([n], { dtype: 'float64' }).exponential_(4);
  assert.ok(Math.abs(e.mean().item() - 0.25) < 0.01);
  const m = torch.multinomial(torch.tensor([1, 0, 3]), 4000, true);
  assert.equal(m.eq(1).sum().item(), 0, 'a zero-weight category is never drawn');
  assert.ok(Math.abs(m.eq(2).double().mean().item() - 0.75) < 0.04);
  const ru = torch.randnLike(z.index(torch.slice(0, 5)));
  assert.equal(ru.dtype, 'float64');
  assert.deepEqual(ru.shape, [5]);
  assert.equal(torch.randLike(torch.zeros([2, 3], { dtype: 'float64' })).dtype, 'float64');
});
