// Differential tests: reductions, scans, sorting (sum, mean, prod, var/std,
// max/min, amax/amin, argmax/argmin, logsumexp, norm, cumsum/cumprod, all/any,
// sort/argsort/topk), forward and gradient.
import type { Tensor } from '../src/index.js';
import { differential, type Case, type InputSpec } from './harness.js';

const g = (shape: number[], extra: Partial<InputSpec> = {}): InputSpec => ({ shape, requiresGrad: true, ...extra });
const g64 = (shape: number[], extra: Partial<InputSpec> = {}): InputSpec => g(shape, { dtype: 'float64', ...extra });
const pair = (r: { values: Tensor; indices: Tensor }): Tensor[] => [r.values, r.indices];

const cases: Case[] = [
  // ------------------------------------------------------------------ sum
  { name: 'sum all', inputs: [g([3, 4])], js: (a) => a.sum(), py: 'lambda a: a.sum()' },
  {
    name: 'sum dim non-contiguous',
    inputs: [g([4, 5], { nonContiguous: true })],
    js: (a) => a.sum(1),
    py: 'lambda a: a.sum(1)',
  },
  {
    name: 'sum dims keepdim',
    inputs: [g64([2, 3, 4])],
    js: (a) => a.sum([0, 2], { keepdim: true }),
    py: 'lambda a: a.sum((0, 2), keepdim=True)',
  },
  { name: 'sum negative dim', inputs: [g64([2, 3, 4])], js: (a) => a.sum(-2), py: 'lambda a: a.sum(-2)' },
  {
    name: 'sum dtype float64',
    inputs: [g([3, 4])],
    js: (a) => a.sum(undefined, { dtype: 'float64' }),
    py: 'lambda a: a.sum(dtype=torch.float64)',
  },
  {
    name: 'sum dim dtype float64',
    inputs: [g([3, 4])],
    js: (a) => a.sum(0, { dtype: 'float64' }),
    py: 'lambda a: a.sum(0, dtype=torch.float64)',
  },
  {
    name: 'sum int32 promotes to int64',
    inputs: [{ shape: [3, 4], kind: 'int', dtype: 'int32' }],
    js: (a) => [a.sum(), a.sum(1)],
    py: 'lambda a: (a.sum(), a.sum(1))',
  },
  { name: 'sum bool counts', inputs: [{ shape: [10], kind: 'bool' }], js: (a) => a.sum(), py: 'lambda a: a.sum()' },
  // ----------------------------------------------------------------- mean
  { name: 'mean all', inputs: [g([3, 4])], js: (a) => a.mean(), py: 'lambda a: a.mean()' },
  {
    name: 'mean dims keepdim non-contiguous',
    inputs: [g64([3, 4], { nonContiguous: true })],
    js: (a) => a.mean([0, 1], { keepdim: true }),
    py: 'lambda a: a.mean((0, 1), keepdim=True)',
  },
  { name: 'mean dim', inputs: [g64([2, 3, 4])], js: (a) => a.mean(1), py: 'lambda a: a.mean(1)' },
  {
    name: 'mean int64 with dtype',
    inputs: [{ shape: [6], kind: 'int', dtype: 'int64' }],
    js: (a) => a.mean(undefined, { dtype: 'float64' }),
    py: 'lambda a: a.mean(dtype=torch.float64)',
  },
  {
    // Both sides must reject: mean of integers needs a floating dtype.
    name: 'mean int64 rejected',
    inputs: [{ shape: [6], kind: 'int', dtype: 'int64' }],
    js: (a) => a.mean(),
    py: 'lambda a: a.mean()',
  },
  // ----------------------------------------------------------------- prod
  { name: 'prod all', inputs: [g64([3, 3])], js: (a) => a.prod(), py: 'lambda a: a.prod()' },
  {
    name: 'prod dim keepdim',
    inputs: [g64([3, 4], { nonContiguous: true })],
    js: (a) => a.prod(1, { keepdim: true }),
    py: 'lambda a: a.prod(1, keepdim=True)',
  },
  {
    name: 'prod with a zero',
    inputs: [g64([2, 3], { values: [1, 0, 2, 3, 4, 0.5] })],
    js: (a) => a.prod(1),
    py: 'lambda a: a.prod(1)',
  },
  {
    name: 'prod dtype',
    inputs: [{ shape: [5], kind: 'int', dtype: 'int64' }],
    js: (a) => a.prod(0, { dtype: 'float64' }),
    py: 'lambda a: a.prod(0, dtype=torch.float64)',
  },
  // -------------------------------------------------------------- var/std
  { name: 'var all (correction 1)', inputs: [g64([4, 5])], js: (a) => a.var(), py: 'lambda a: a.var()' },
  {
    name: 'var dim correction 0',
    inputs: [g64([4, 5])],
    js: (a) => a.var(1, { correction: 0 }),
    py: 'lambda a: a.var(1, correction=0)',
  },
  {
    name: 'var dims keepdim non-contiguous',
    inputs: [g([3, 4, 5], { nonContiguous: true })],
    js: (a) => a.var([0, 2], { keepdim: true }),
    py: 'lambda a: a.var((0, 2), keepdim=True)',
  },
  { name: 'std all', inputs: [g64([6])], js: (a) => a.std(), py: 'lambda a: a.std()' },
  {
    name: 'std dim correction 0',
    inputs: [g64([3, 5])],
    js: (a) => a.std(0, { correction: 0 }),
    py: 'lambda a: a.std(0, correction=0)',
  },
  {
    name: 'std dims correction 1 keepdim',
    inputs: [g([2, 3, 4])],
    js: (a) => a.std([1, 2], { correction: 1, keepdim: true }),
    py: 'lambda a: a.std((1, 2), correction=1, keepdim=True)',
  },
  {
    name: 'varMean dim',
    inputs: [g64([4, 5])],
    js: (a) => a.varMean(1),
    py: 'lambda a: torch.var_mean(a, 1)',
  },
  {
    name: 'varMean all correction 0',
    inputs: [g64([4, 5], { nonContiguous: true })],
    js: (a) => a.varMean(undefined, { correction: 0 }),
    py: 'lambda a: torch.var_mean(a, correction=0)',
  },
  // -------------------------------------------------------------- max/min
  { name: 'max all', inputs: [g64([3, 4])], js: (a) => a.max(), py: 'lambda a: a.max()' },
  { name: 'min all', inputs: [g64([3, 4])], js: (a) => a.min(), py: 'lambda a: a.min()' },
  {
    // Ties: PyTorch spreads the gradient evenly over the maxima.
    name: 'max all with ties',
    inputs: [g64([6], { values: [1, 3, 3, -2, 0, 3] })],
    js: (a) => a.max(),
    py: 'lambda a: a.max()',
  },
  {
    name: 'max dim values/indices',
    inputs: [g64([3, 5])],
    js: (a) => pair(a.max(1)),
    py: 'lambda a: tuple(a.max(1))',
  },
  {
    name: 'max dim keepdim non-contiguous',
    inputs: [g([4, 3], { nonContiguous: true })],
    js: (a) => pair(a.max(0, true)),
    py: 'lambda a: tuple(a.max(0, keepdim=True))',
  },
  {
    name: 'min dim values/indices',
    inputs: [g64([2, 3, 4])],
    js: (a) => pair(a.min(-1)),
    py: 'lambda a: tuple(a.min(-1))',
  },
  { name: 'amax dims', inputs: [g64([2, 3, 4])], js: (a) => a.amax([0, 2]), py: 'lambda a: a.amax((0, 2))' },
  {
    name: 'amax with ties (gradient split)',
    inputs: [g64([2, 4], { values: [1, 2, 2, 0, 5, 5, 5, 1] })],
    js: (a) => a.amax(1),
    py: 'lambda a: a.amax(1)',
  },
  {
    name: 'amin keepdim',
    inputs: [g([3, 4], { nonContiguous: true })],
    js: (a) => a.amin(1, true),
    py: 'lambda a: a.amin(1, keepdim=True)',
  },
  { name: 'amax all', inputs: [g64([3, 4])], js: (a) => a.amax(), py: 'lambda a: a.amax()' },
  { name: 'argmax all', inputs: [g([3, 4])], js: (a) => a.argmax(), py: 'lambda a: a.argmax()' },
  {
    name: 'argmax dim keepdim',
    inputs: [g([3, 4], { nonContiguous: true })],
    js: (a) => a.argmax(1, true),
    py: 'lambda a: a.argmax(1, keepdim=True)',
  },
  { name: 'argmin dim', inputs: [g([3, 4])], js: (a) => a.argmin(0), py: 'lambda a: a.argmin(0)' },
  {
    name: 'max int64 dim',
    inputs: [{ shape: [3, 4], kind: 'index', high: 100 }],
    js: (a) => pair(a.max(1)),
    py: 'lambda a: tuple(a.max(1))',
  },
  // ------------------------------------------------------------ logsumexp
  { name: 'logsumexp dim', inputs: [g64([3, 5])], js: (a) => a.logsumexp(1), py: 'lambda a: a.logsumexp(1)' },
  {
    name: 'logsumexp dims keepdim',
    inputs: [g([2, 3, 4], { nonContiguous: true })],
    js: (a) => a.logsumexp([0, 2], true),
    py: 'lambda a: a.logsumexp((0, 2), keepdim=True)',
  },
  {
    name: 'logsumexp large values are stable',
    inputs: [g64([2, 2], { values: [1000, 1001, -1000, -1002] })],
    js: (a) => a.logsumexp(1),
    py: 'lambda a: a.logsumexp(1)',
  },
  // ----------------------------------------------------------------- norm
  { name: 'norm p=2 all', inputs: [g64([3, 4])], js: (a) => a.norm(), py: 'lambda a: torch.linalg.vector_norm(a)' },
  {
    name: 'norm p=1 dim',
    inputs: [g64([3, 4])],
    js: (a) => a.norm(1, 1),
    py: 'lambda a: torch.linalg.vector_norm(a, 1, dim=1)',
  },
  {
    name: 'norm p=2 dims keepdim non-contiguous',
    inputs: [g([3, 4, 2], { nonContiguous: true })],
    js: (a) => a.norm(2, [0, 2], true),
    py: 'lambda a: torch.linalg.vector_norm(a, 2, dim=(0, 2), keepdim=True)',
  },
  {
    name: 'norm p=inf dim',
    inputs: [g64([3, 4])],
    js: (a) => a.norm(Infinity, 0),
    py: "lambda a: torch.linalg.vector_norm(a, float('inf'), dim=0)",
  },
  {
    name: 'norm p=-inf and p=3',
    inputs: [g64([3, 4])],
    js: (a) => [a.norm(-Infinity, 1), a.norm(3, 1)],
    py: "lambda a: (torch.linalg.vector_norm(a, float('-inf'), dim=1), torch.linalg.vector_norm(a, 3, dim=1))",
  },
  {
    name: 'norm matches Tensor.norm',
    inputs: [g64([4, 3])],
    js: (a) => a.norm(2, 1),
    py: 'lambda a: a.norm(2, 1)',
  },
  // ----------------------------------------------------------------- scans
  { name: 'cumsum dim 0', inputs: [g64([4, 3])], js: (a) => a.cumsum(0), py: 'lambda a: a.cumsum(0)' },
  {
    name: 'cumsum dim -1 non-contiguous',
    inputs: [g([4, 5], { nonContiguous: true })],
    js: (a) => a.cumsum(-1),
    py: 'lambda a: a.cumsum(-1)',
  },
  {
    name: 'cumsum dtype',
    inputs: [{ shape: [6], kind: 'int', dtype: 'int32' }],
    js: (a) => [a.cumsum(0), a.cumsum(0, 'float64')],
    py: 'lambda a: (a.cumsum(0), a.cumsum(0, dtype=torch.float64))',
  },
  {
    name: 'cumprod dim',
    inputs: [g64([3, 4], { kind: 'positive' })],
    js: (a) => a.cumprod(1),
    py: 'lambda a: a.cumprod(1)',
  },
  {
    name: 'cumprod with a zero',
    inputs: [g64([5], { values: [2, -1, 0, 3, 0.5] })],
    js: (a) => a.cumprod(0),
    py: 'lambda a: a.cumprod(0)',
  },
  // ------------------------------------------------------------- all/any
  {
    name: 'all/any bool',
    inputs: [{ shape: [3, 4], kind: 'bool' }],
    js: (a) => [a.all(), a.any(), a.all(1), a.any(0, true)],
    py: 'lambda a: (a.all(), a.any(), a.all(1), a.any(0, keepdim=True))',
  },
  {
    name: 'all/any float (nonzero test)',
    inputs: [{ shape: [2, 3], values: [1, 0, 2, 0.5, -1, 3] }],
    js: (a) => [a.all(), a.all(1), a.any(1)],
    py: 'lambda a: (a.all(), a.all(1), a.any(1))',
  },
  // -------------------------------------------------------- sort and topk
  {
    name: 'sort last dim',
    inputs: [g64([3, 5])],
    js: (a) => pair(a.sort()),
    py: 'lambda a: tuple(torch.sort(a))',
  },
  {
    name: 'sort dim 0 descending non-contiguous',
    inputs: [g([5, 3], { nonContiguous: true })],
    js: (a) => pair(a.sort(0, true)),
    py: 'lambda a: tuple(torch.sort(a, 0, descending=True))',
  },
  {
    name: 'argsort',
    inputs: [g([3, 6])],
    js: (a) => [a.argsort(), a.argsort(0, true)],
    py: 'lambda a: (a.argsort(), a.argsort(0, descending=True))',
  },
  {
    name: 'topk largest',
    inputs: [g64([3, 7])],
    js: (a) => pair(a.topk(3)),
    py: 'lambda a: tuple(a.topk(3))',
  },
  {
    name: 'topk smallest dim 0',
    inputs: [g64([6, 3], { nonContiguous: true })],
    js: (a) => pair(a.topk(2, 0, false)),
    py: 'lambda a: tuple(a.topk(2, 0, largest=False))',
  },
  {
    // Unsorted order is implementation-defined; compare sorted values instead.
    name: 'topk unsorted (as a set)',
    inputs: [g64([8])],
    js: (a) => a.topk(4, -1, true, false).values.sort().values,
    py: 'lambda a: a.topk(4, sorted=False).values.sort().values',
  },
  {
    name: 'sort int64',
    inputs: [{ shape: [9], kind: 'index', high: 1000 }],
    js: (a) => a.sort().values,
    py: 'lambda a: a.sort().values',
  },
];

differential('reductions', cases);
