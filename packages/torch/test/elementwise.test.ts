// Differential tests: arithmetic, comparisons and elementwise math, forward and gradient.
import * as torch from '../src/index.js';
import { differential, type Case } from './harness.js';

const g = (shape: number[], extra: Partial<Case['inputs'][number]> = {}) => ({ shape, requiresGrad: true, ...extra });

const cases: Case[] = [
  { name: 'add broadcast', inputs: [g([3, 4]), g([4])], js: (a, b) => a.add(b), py: 'lambda a, b: a + b' },
  {
    name: 'add alpha',
    inputs: [g([3, 4]), g([3, 4])],
    js: (a, b) => a.add(b, 2.5),
    py: 'lambda a, b: torch.add(a, b, alpha=2.5)',
  },
  { name: 'add scalar', inputs: [g([5])], js: (a) => a.add(1.5), py: 'lambda a: a + 1.5' },
  {
    name: 'sub non-contiguous',
    inputs: [g([4, 3], { nonContiguous: true }), g([4, 3])],
    js: (a, b) => a.sub(b),
    py: 'lambda a, b: a - b',
  },
  { name: 'mul broadcast', inputs: [g([2, 1, 3]), g([4, 1])], js: (a, b) => a.mul(b), py: 'lambda a, b: a * b' },
  {
    name: 'div',
    inputs: [g([3, 3]), g([3, 3], { kind: 'positive' })],
    js: (a, b) => a.div(b),
    py: 'lambda a, b: a / b',
  },
  {
    name: 'div floor',
    inputs: [
      { shape: [6], kind: 'int', dtype: 'float64' },
      { shape: [6], kind: 'positive', dtype: 'float64' },
    ],
    js: (a, b) => a.div(b, 'floor'),
    py: "lambda a, b: torch.div(a, b, rounding_mode='floor')",
  },
  { name: 'pow scalar', inputs: [g([4], { kind: 'positive' })], js: (a) => a.pow(2.5), py: 'lambda a: a ** 2.5' },
  {
    name: 'pow tensor',
    inputs: [g([4], { kind: 'positive' }), g([4])],
    js: (a, b) => a.pow(b),
    py: 'lambda a, b: a ** b',
  },
  {
    name: 'float64 mul',
    inputs: [g([3, 2], { dtype: 'float64' }), g([3, 2], { dtype: 'float64' })],
    js: (a, b) => a.mul(b).sum(),
    py: 'lambda a, b: (a * b).sum()',
  },
  {
    name: 'int arithmetic stays int',
    inputs: [{ shape: [5], kind: 'int', dtype: 'int64' }],
    js: (a) => a.mul(3).add(1),
    py: 'lambda a: a * 3 + 1',
  },
  { name: 'clamp', inputs: [g([10])], js: (a) => a.clamp(-0.5, 0.5), py: 'lambda a: a.clamp(-0.5, 0.5)' },
  { name: 'clampMin', inputs: [g([10])], js: (a) => a.clampMin(0), py: 'lambda a: a.clamp(min=0)' },
  { name: 'maximum', inputs: [g([6]), g([6])], js: (a, b) => a.maximum(b), py: 'lambda a, b: torch.maximum(a, b)' },
  { name: 'lerp', inputs: [g([4]), g([4])], js: (a, b) => a.lerp(b, 0.3), py: 'lambda a, b: torch.lerp(a, b, 0.3)' },
  {
    name: 'addcmul',
    inputs: [g([4]), g([4]), g([4])],
    js: (a, b, c) => a.addcmul(b, c, 0.5),
    py: 'lambda a, b, c: torch.addcmul(a, b, c, value=0.5)',
  },
  {
    name: 'where',
    inputs: [{ shape: [5], kind: 'bool' }, g([5]), g([5])],
    js: (c, a, b) => torch.where(c, a, b),
    py: 'lambda c, a, b: torch.where(c, a, b)',
  },
  {
    name: 'where scalar',
    inputs: [{ shape: [5], kind: 'bool' }, g([5])],
    js: (c, a) => torch.where(c, a, 0),
    py: 'lambda c, a: torch.where(c, a, 0.0)',
  },
  {
    name: 'eq/gt/le',
    inputs: [
      { shape: [8], kind: 'int', dtype: 'float32' },
      { shape: [8], kind: 'int', dtype: 'float32' },
    ],
    js: (a, b) => [a.eq(b), a.gt(b), a.le(0)],
    py: 'lambda a, b: (a == b, a > b, a <= 0)',
  },
  {
    name: 'logical ops',
    inputs: [
      { shape: [6], kind: 'bool' },
      { shape: [6], kind: 'bool' },
    ],
    js: (a, b) => [a.logicalAnd(b), a.logicalOr(b), a.logicalNot()],
    py: 'lambda a, b: (a & b, a | b, ~a)',
  },
  {
    name: 'isnan/isfinite',
    inputs: [{ shape: [4], values: [1, NaN, Infinity, -2] }],
    js: (a) => [a.isnan(), a.isfinite()],
    py: 'lambda a: (a.isnan(), a.isfinite())',
  },
];

for (const fn of [
  'abs',
  'neg',
  'exp',
  'tanh',
  'sigmoid',
  'sin',
  'cos',
  'erf',
  'square',
  'relu',
  'floor',
  'sign',
] as const) {
  cases.push({ name: fn, inputs: [g([3, 5])], js: (a) => a[fn](), py: `lambda a: torch.${fn}(a)` });
}
for (const fn of ['sqrt', 'rsqrt', 'log', 'log1p', 'reciprocal'] as const) {
  cases.push({
    name: fn,
    inputs: [g([3, 5], { kind: 'positive' })],
    js: (a) => a[fn](),
    py: `lambda a: torch.${fn}(a)`,
  });
}
for (const fn of ['erfinv', 'atan', 'expm1'] as const) {
  cases.push({
    name: fn,
    inputs: [g([7], { kind: 'unit', dtype: 'float64' })],
    js: (a) => a[fn](),
    py: `lambda a: torch.${fn}(a)`,
  });
}

differential('elementwise', cases);
