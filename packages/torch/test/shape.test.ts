// Differential tests: shapes, views, indexing, gathering/scattering, joining
// and splitting (reshape ... diagonal), forward and gradient. Plain tests check
// contiguity flags and view semantics directly.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as torch from '../src/index.js';
import { slice, type Tensor } from '../src/index.js';
import { differential, type Case, type InputSpec } from './harness.js';

const g = (shape: number[], extra: Partial<InputSpec> = {}): InputSpec => ({ shape, requiresGrad: true, ...extra });
const g64 = (shape: number[], extra: Partial<InputSpec> = {}): InputSpec => g(shape, { dtype: 'float64', ...extra });
const idx = (values: number[], shape: number[] = [values.length]): InputSpec => ({ shape, values, dtype: 'int64' });
const mask = (values: number[], shape: number[] = [values.length]): InputSpec => ({ shape, values, dtype: 'bool' });

/** Python: clone x, assign y[key] = v, return y (the semantics of indexPut_ on a clone). */
const setitem = (key: string, value = 'v'): string =>
  `lambda x, v=None: (lambda y: (y.__setitem__(${key}, ${value}), y)[1])(x.clone())`;

const views: Case[] = [
  { name: 'reshape -1', inputs: [g([2, 3, 4])], js: (a) => a.reshape(6, -1), py: 'lambda a: a.reshape(6, -1)' },
  {
    name: 'reshape non-contiguous (copies)',
    inputs: [g([3, 4], { nonContiguous: true })],
    js: (a) => a.reshape([12]),
    py: 'lambda a: a.reshape(12)',
  },
  { name: 'view', inputs: [g([2, 6])], js: (a) => a.view(3, 2, 2), py: 'lambda a: a.view(3, 2, 2)' },
  {
    name: 'view of non-contiguous rejected',
    inputs: [g([3, 4], { nonContiguous: true })],
    js: (a) => a.view(12),
    py: 'lambda a: a.view(12)',
  },
  { name: 'permute', inputs: [g([2, 3, 4])], js: (a) => a.permute(2, 0, 1), py: 'lambda a: a.permute(2, 0, 1)' },
  {
    name: 'permute negative dims',
    inputs: [g([2, 3, 4])],
    js: (a) => a.permute([-1, -3, -2]),
    py: 'lambda a: a.permute(-1, -3, -2)',
  },
  { name: 'transpose', inputs: [g([2, 3, 4])], js: (a) => a.transpose(0, 2), py: 'lambda a: a.transpose(0, 2)' },
  { name: 't', inputs: [g([3, 5], { nonContiguous: true })], js: (a) => a.t(), py: 'lambda a: a.t()' },
  { name: 't of 1-d', inputs: [g([4])], js: (a) => a.t(), py: 'lambda a: a.t()' },
  { name: 'mT', inputs: [g([2, 3, 4])], js: (a) => a.mT, py: 'lambda a: a.mT' },
  { name: 'flatten', inputs: [g([2, 3, 4])], js: (a) => a.flatten(), py: 'lambda a: a.flatten()' },
  {
    name: 'flatten range',
    inputs: [g([2, 3, 4, 5])],
    js: (a) => a.flatten(1, 2),
    py: 'lambda a: a.flatten(1, 2)',
  },
  {
    name: 'unflatten',
    inputs: [g([2, 12])],
    js: (a) => a.unflatten(1, [3, -1]),
    py: 'lambda a: a.unflatten(1, (3, -1))',
  },
  { name: 'squeeze all', inputs: [g([1, 3, 1, 2])], js: (a) => a.squeeze(), py: 'lambda a: a.squeeze()' },
  {
    name: 'squeeze dims',
    inputs: [g([1, 3, 1, 2])],
    js: (a) => [a.squeeze(0), a.squeeze([0, 2]), a.squeeze(1)],
    py: 'lambda a: (a.squeeze(0), a.squeeze((0, 2)), a.squeeze(1))',
  },
  {
    name: 'unsqueeze',
    inputs: [g([3, 2])],
    js: (a) => [a.unsqueeze(0), a.unsqueeze(-1), a.unsqueeze(1)],
    py: 'lambda a: (a.unsqueeze(0), a.unsqueeze(-1), a.unsqueeze(1))',
  },
  {
    name: 'expand',
    inputs: [g([3, 1])],
    js: (a) => a.expand(2, -1, 4),
    py: 'lambda a: a.expand(2, -1, 4)',
  },
  {
    name: 'expandAs',
    inputs: [g([1, 4]), { shape: [3, 4] }],
    js: (a, b) => a.expandAs(b),
    py: 'lambda a, b: a.expand_as(b)',
  },
  { name: 'repeat', inputs: [g([2, 3])], js: (a) => a.repeat(2, 1, 3), py: 'lambda a: a.repeat(2, 1, 3)' },
  {
    name: 'repeatInterleave',
    inputs: [g([2, 3], { nonContiguous: true })],
    js: (a) => [a.repeatInterleave(2), a.repeatInterleave(3, 1), a.repeatInterleave(2, 0)],
    py: 'lambda a: (a.repeat_interleave(2), a.repeat_interleave(3, dim=1), a.repeat_interleave(2, dim=0))',
  },
  {
    name: 'slice with steps and negative indices',
    inputs: [g([5, 9])],
    js: (a) => [a.slice(1, 1, -1, 2), a.slice(0, -3), a.slice(1, undefined, undefined, 3), a.slice(0, -100, 100)],
    py: 'lambda a: (a[:, 1:-1:2], a[-3:], a[:, ::3], a[-100:100])',
  },
  {
    name: 'select',
    inputs: [g([3, 4, 2])],
    js: (a) => [a.select(1, 2), a.select(-1, -1), a.select(0, 0)],
    py: 'lambda a: (a[:, 2], a[..., -1], a[0])',
  },
  {
    name: 'narrow',
    inputs: [g([4, 6], { nonContiguous: true })],
    js: (a) => [a.narrow(1, 2, 3), a.narrow(0, -2, 2)],
    py: 'lambda a: (a.narrow(1, 2, 3), a.narrow(0, -2, 2))',
  },
  { name: 'flatten of 0-d', inputs: [g([])], js: (a) => a.flatten(), py: 'lambda a: a.flatten()' },
  {
    name: 'unflatten negative dim',
    inputs: [g([2, 6])],
    js: (a) => a.unflatten(-1, [2, 3]),
    py: 'lambda a: a.unflatten(-1, (2, 3))',
  },
  { name: 't of 3-d rejected', inputs: [g([2, 3, 4])], js: (a) => a.t(), py: 'lambda a: a.t()' },
  {
    name: 'repeat with fewer repeats than dims rejected',
    inputs: [g([2, 3])],
    js: (a) => a.repeat(2),
    py: 'lambda a: a.repeat(2)',
  },
  {
    name: 'expand of a non-1 dim rejected',
    inputs: [g([2, 3])],
    js: (a) => a.expand(4, 3),
    py: 'lambda a: a.expand(4, 3)',
  },
  {
    name: 'select out of range rejected',
    inputs: [g([2, 3])],
    js: (a) => a.select(1, 3),
    py: 'lambda a: a.select(1, 3)',
  },
  {
    name: 'reshape to a wrong size rejected',
    inputs: [g([2, 3])],
    js: (a) => a.reshape(4, 2),
    py: 'lambda a: a.reshape(4, 2)',
  },
  {
    name: 'chained views then arithmetic',
    inputs: [g64([2, 3, 4])],
    js: (a) => a.permute(1, 0, 2).slice(2, 1).reshape(3, -1).mul(2),
    py: 'lambda a: a.permute(1, 0, 2)[:, :, 1:].reshape(3, -1) * 2',
  },
];

const indexing: Case[] = [
  {
    name: 'index numbers',
    inputs: [g([3, 4, 5])],
    js: (a) => [a.index(0, -1), a.index(2), a.index(-1, 0, 3)],
    py: 'lambda a: (a[0, -1], a[2], a[-1, 0, 3])',
  },
  {
    name: "index ':' and slice()",
    inputs: [g([3, 4, 5])],
    js: (a) => [a.index(':', slice(1, -1)), a.index(slice(undefined, undefined, 2), ':', slice(-2))],
    py: 'lambda a: (a[:, 1:-1], a[::2, :, -2:])',
  },
  {
    name: 'index null and ...',
    inputs: [g([3, 4, 5])],
    js: (a) => [a.index(null, 0, null), a.index('...', 1), a.index(0, '...', null), a.index('...')],
    py: 'lambda a: (a[None, 0, None], a[..., 1], a[0, ..., None], a[...])',
  },
  {
    name: 'index int64 tensor',
    inputs: [g([4, 3]), idx([3, 0, 3, 1], [2, 2])],
    js: (a, i) => a.index(i),
    py: 'lambda a, i: a[i]',
  },
  {
    name: 'index two tensors broadcast (adjacent)',
    inputs: [g([4, 5, 2]), idx([0, 3, 1], [3, 1]), idx([4, 0])],
    js: (a, i, j) => a.index(i, j),
    py: 'lambda a, i, j: a[i, j]',
  },
  {
    name: 'index two tensors (separated: dims go first)',
    inputs: [g([4, 5, 2]), idx([0, 3, 1]), idx([1, 0, 1])],
    js: (a, i, j) => a.index(i, ':', j),
    py: 'lambda a, i, j: a[i, :, j]',
  },
  {
    name: 'index negative int64 indices',
    inputs: [g([5, 3]), idx([-1, -5, 2])],
    js: (a, i) => a.index(i),
    py: 'lambda a, i: a[i]',
  },
  {
    name: 'index full bool mask',
    inputs: [g([3, 4]), { shape: [3, 4], kind: 'bool' }],
    js: (a, m) => a.index(m),
    py: 'lambda a, m: a[m]',
  },
  {
    name: 'index bool mask on first dim',
    inputs: [g([4, 3]), mask([1, 0, 1, 1])],
    js: (a, m) => a.index(m),
    py: 'lambda a, m: a[m]',
  },
  {
    name: 'index bool mask after ...',
    inputs: [g([2, 3, 4]), mask([1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0], [3, 4])],
    js: (a, m) => a.index('...', m),
    py: 'lambda a, m: a[..., m]',
  },
  {
    name: 'index 1-d bool mask after ... and before a slice',
    inputs: [g([2, 3, 4]), mask([1, 0, 1])],
    js: (a, m) => a.index('...', m, slice(1)),
    py: 'lambda a, m: a[..., m, 1:]',
  },
  {
    name: 'index 2-d bool mask then int64 tensor',
    inputs: [g([2, 3, 4]), mask([1, 0, 1, 0, 1, 1], [2, 3]), idx([1, 2, 3, 0])],
    js: (a, m, i) => a.index(m, i),
    py: 'lambda a, m, i: a[m, i]',
  },
  {
    name: 'index mixed number, tensor, slice',
    inputs: [g([3, 4, 5]), idx([2, 0, 3])],
    js: (a, i) => [a.index(0, i, slice(1)), a.index(0, ':', i), a.index(i, ':', 0), a.index(null, i, 1)],
    py: 'lambda a, i: (a[0, i, 1:], a[0, :, i], a[i, :, 0], a[None, i, 1])',
  },
  {
    name: 'index non-contiguous',
    inputs: [g([4, 5], { nonContiguous: true }), idx([4, 1])],
    js: (a, i) => [a.index(':', i), a.index(slice(1, undefined, 2), 2)],
    py: 'lambda a, i: (a[:, i], a[1::2, 2])',
  },
  {
    name: 'index 0-d bool tensor',
    inputs: [g([3, 2]), mask([1], []), mask([0], [])],
    js: (a, t, f) => [a.index(t), a.index(f), a.index(1, t)],
    py: 'lambda a, t, f: (a[t], a[f], a[1, t])',
  },
  {
    name: 'index 0-d int64 tensor',
    inputs: [g([3, 2]), idx([2], [])],
    js: (a, i) => [a.index(i), a.index(':', i.sub(1))],
    py: 'lambda a, i: (a[i], a[:, i - 1])',
  },
  {
    name: 'index out of range rejected',
    inputs: [g([3, 4])],
    js: (a) => a.index(3),
    py: 'lambda a: a[3]',
  },
  {
    name: 'index too many indices rejected',
    inputs: [g([3, 4])],
    js: (a) => a.index(0, 0, 0),
    py: 'lambda a: a[0, 0, 0]',
  },
  // --------------------------------------------------------- indexPut_
  {
    name: 'indexPut_ number at a row',
    inputs: [g([3, 4])],
    js: (x) => x.clone().indexPut_([1], 5),
    py: setitem('1', '5.0'),
  },
  {
    name: 'indexPut_ tensor into slice (broadcast)',
    inputs: [g([3, 4]), g([2])],
    js: (x, v) => x.clone().indexPut_([':', slice(1, 3)], v),
    py: setitem('(slice(None), slice(1, 3))'),
  },
  {
    name: 'indexPut_ with ... and null',
    inputs: [g([2, 3, 4]), g([2, 1, 3])],
    js: (x, v) => x.clone().indexPut_(['...', null, 0], v),
    py: setitem('(Ellipsis, None, 0)'),
  },
  {
    name: 'indexPut_ int64 tensor index, tensor value',
    inputs: [g64([5, 3]), idx([4, 0, 2]), g64([3, 3])],
    js: (x, i, v) => x.clone().indexPut_([i], v),
    py: 'lambda x, i, v: (lambda y: (y.__setitem__(i, v), y)[1])(x.clone())',
  },
  {
    name: 'indexPut_ int64 tensor index, number',
    inputs: [g64([5, 3]), idx([4, 0])],
    js: (x, i) => x.clone().indexPut_([':', i], -1),
    py: 'lambda x, i: (lambda y: (y.__setitem__((slice(None), i), -1.0), y)[1])(x.clone())',
  },
  {
    name: 'indexPut_ bool mask, number',
    inputs: [g([3, 4]), { shape: [3, 4], kind: 'bool' }],
    js: (x, m) => x.clone().indexPut_([m], 0),
    py: 'lambda x, m: (lambda y: (y.__setitem__(m, 0.0), y)[1])(x.clone())',
  },
  {
    name: 'indexPut_ bool mask, tensor',
    inputs: [g64([2, 3]), mask([1, 0, 1, 1, 1, 0], [2, 3]), g64([4])],
    js: (x, m, v) => x.clone().indexPut_([m], v),
    py: 'lambda x, m, v: (lambda y: (y.__setitem__(m, v), y)[1])(x.clone())',
  },
  {
    name: 'indexPut_ mixed number and tensor index',
    inputs: [g64([3, 4, 2]), idx([3, 1]), g64([2])],
    js: (x, i, v) => x.clone().indexPut_([1, i, 0], v),
    py: 'lambda x, i, v: (lambda y: (y.__setitem__((1, i, 0), v), y)[1])(x.clone())',
  },
  {
    name: 'indexPut_ into non-contiguous',
    inputs: [g([4, 3], { nonContiguous: true }), g([4])],
    js: (x, v) => x.clone().t().indexPut_([2], v),
    py: 'lambda x, v: (lambda y: (y.__setitem__(2, v), y)[1])(x.clone().t())',
  },
  {
    name: 'indexPut_ tensor value of another dtype',
    inputs: [g([2, 3]), { shape: [3], dtype: 'float64' }],
    js: (x, v) => x.clone().indexPut_([0], v),
    py: setitem('0'),
  },
  {
    name: 'indexPut_ on a leaf that requires grad rejected',
    inputs: [g([2, 3])],
    js: (x) => x.indexPut_([0], 1),
    py: 'lambda x: (x.__setitem__(0, 1.0), x)[1]',
  },
  {
    name: 'indexPut_ into an expanded tensor writes the shared memory',
    inputs: [{ shape: [1, 3] }],
    js: (x) => x.expand(2, 3).indexPut_([0], 1),
    py: 'lambda x: (lambda y: (y.__setitem__(0, 1.0), y)[1])(x.expand(2, 3))',
  },
  {
    name: 'indexPut_ advanced with another dtype rejected (as in PyTorch)',
    inputs: [g([3, 2]), idx([0, 2]), { shape: [2, 2], dtype: 'float64' }],
    js: (x, i, v) => x.clone().indexPut_([i], v),
    py: 'lambda x, i, v: (lambda y: (y.__setitem__(i, v), y)[1])(x.clone())',
  },
  {
    name: 'indexPut_ 0-d bool mask',
    inputs: [g([2, 3]), mask([1], []), g([3])],
    js: (x, m, v) => x.clone().indexPut_([0, m], v),
    py: 'lambda x, m, v: (lambda y: (y.__setitem__((0, m), v), y)[1])(x.clone())',
  },
  // -------------------------------------------------------- gather etc.
  {
    name: 'indexSelect',
    inputs: [g([4, 5]), idx([3, 0, 3])],
    js: (a, i) => [a.indexSelect(0, i), a.indexSelect(1, i)],
    py: 'lambda a, i: (a.index_select(0, i), a.index_select(1, i))',
  },
  {
    name: 'gather',
    inputs: [g64([3, 4]), { shape: [3, 2], kind: 'index', high: 4 }],
    js: (a, i) => a.gather(1, i),
    py: 'lambda a, i: a.gather(1, i)',
  },
  {
    name: 'gather dim 0 non-contiguous',
    inputs: [g64([3, 4], { nonContiguous: true }), { shape: [5, 4], kind: 'index', high: 3 }],
    js: (a, i) => a.gather(0, i),
    py: 'lambda a, i: a.gather(0, i)',
  },
  {
    // Unique positions per row: scatter with duplicates is nondeterministic.
    name: 'scatter src',
    inputs: [g64([3, 5]), idx([4, 0, 1, 2, 3, 4], [3, 2]), g64([3, 2])],
    js: (a, i, s) => a.scatter(1, i, s),
    py: 'lambda a, i, s: a.scatter(1, i, s)',
  },
  {
    name: 'scatter value',
    inputs: [g64([3, 5]), idx([4, 0, 1, 2, 3, 4], [3, 2])],
    js: (a, i) => a.scatter(1, i, 2.5),
    py: 'lambda a, i: a.scatter(1, i, 2.5)',
  },
  {
    name: 'scatterAdd with duplicates',
    inputs: [g64([3, 4]), { shape: [5, 4], kind: 'index', high: 3 }, g64([5, 4])],
    js: (a, i, s) => a.scatterAdd(0, i, s),
    py: 'lambda a, i, s: a.scatter_add(0, i, s)',
  },
];

for (const reduce of ['sum', 'prod', 'mean', 'amax', 'amin'] as const) {
  for (const includeSelf of [true, false]) {
    indexing.push({
      name: `scatterReduce ${reduce} includeSelf=${includeSelf}`,
      inputs: [g64([3, 4]), { shape: [3, 6], kind: 'index', high: 4 }, g64([3, 6])],
      js: (a, i, s) => a.scatterReduce(1, i, s, reduce, includeSelf),
      py: `lambda a, i, s: a.scatter_reduce(1, i, s, '${reduce}', include_self=${includeSelf ? 'True' : 'False'})`,
    });
  }
}

indexing.push(
  {
    name: 'maskedFill number',
    inputs: [g([3, 4]), { shape: [3, 4], kind: 'bool' }],
    js: (a, m) => a.maskedFill(m, -1.5),
    py: 'lambda a, m: a.masked_fill(m, -1.5)',
  },
  {
    name: 'maskedFill broadcast mask, 0-d tensor value',
    inputs: [g([3, 4]), mask([1, 0, 0, 1]), g([])],
    js: (a, m, v) => a.maskedFill(m, v),
    py: 'lambda a, m, v: a.masked_fill(m, v)',
  },
  {
    name: 'maskedFill_ in place',
    inputs: [g([2, 3]), mask([0, 1, 1], [3])],
    js: (a, m) => a.mul(1).maskedFill_(m, 7),
    py: 'lambda a, m: (a * 1).masked_fill_(m, 7)',
  },
  {
    name: 'maskedSelect broadcast',
    inputs: [g([3, 4], { nonContiguous: true }), mask([1, 0, 1, 1])],
    js: (a, m) => a.maskedSelect(m),
    py: 'lambda a, m: a.masked_select(m)',
  },
);

const joins: Case[] = [
  {
    name: 'chunk uneven',
    inputs: [g([3, 7])],
    js: (a) => a.chunk(3, 1),
    py: 'lambda a: a.chunk(3, 1)',
  },
  { name: 'chunk dim 0', inputs: [g([4, 2])], js: (a) => a.chunk(2), py: 'lambda a: a.chunk(2)' },
  { name: 'split int', inputs: [g([5, 3])], js: (a) => a.split(2), py: 'lambda a: a.split(2)' },
  {
    name: 'split sizes',
    inputs: [g([2, 6], { nonContiguous: true })],
    js: (a) => a.split([1, 3, 2], 1),
    py: 'lambda a: a.split([1, 3, 2], 1)',
  },
  { name: 'unbind', inputs: [g([3, 4])], js: (a) => a.unbind(1), py: 'lambda a: a.unbind(1)' },
  {
    name: 'cat',
    inputs: [g([2, 3]), g([2, 1], { nonContiguous: true }), g([2, 2])],
    js: (a, b, c) => torch.cat([a, b, c], 1),
    py: 'lambda a, b, c: torch.cat([a, b, c], 1)',
  },
  {
    name: 'cat dim 0 and negative dim',
    inputs: [g([1, 3]), g([2, 3])],
    js: (a, b) => [torch.cat([a, b]), torch.cat([b, b], -1)],
    py: 'lambda a, b: (torch.cat([a, b]), torch.cat([b, b], -1))',
  },
  {
    name: 'cat type promotion',
    inputs: [g([2]), g64([3])],
    js: (a, b) => torch.cat([a, b]),
    py: 'lambda a, b: torch.cat([a, b])',
  },
  {
    name: 'stack',
    inputs: [g([2, 3]), g([2, 3], { nonContiguous: true })],
    js: (a, b) => [torch.stack([a, b]), torch.stack([a, b], -1), torch.stack([a, b], 1)],
    py: 'lambda a, b: (torch.stack([a, b]), torch.stack([a, b], -1), torch.stack([a, b], 1))',
  },
  {
    name: 'split sizes that do not add up rejected',
    inputs: [g([5])],
    js: (a) => a.split([2, 2]),
    py: 'lambda a: a.split([2, 2])',
  },
  {
    name: 'chunk into more pieces than elements',
    inputs: [g([3, 2])],
    js: (a) => a.chunk(5),
    py: 'lambda a: a.chunk(5)',
  },
  {
    name: 'stack mismatched shapes rejected',
    inputs: [g([2, 3]), g([3, 2])],
    js: (a, b) => torch.stack([a, b]),
    py: 'lambda a, b: torch.stack([a, b])',
  },
  {
    name: 'flip',
    inputs: [g([2, 3, 4])],
    js: (a) => [a.flip(0), a.flip([1, 2]), a.flip(-1)],
    py: 'lambda a: (a.flip(0), a.flip((1, 2)), a.flip(-1))',
  },
  {
    name: 'roll',
    inputs: [g([3, 4], { nonContiguous: true })],
    js: (a) => [a.roll(1), a.roll(-1, 1), a.roll([1, 2], [0, 1]), a.roll(5, 0)],
    py: 'lambda a: (a.roll(1), a.roll(-1, 1), a.roll((1, 2), (0, 1)), a.roll(5, 0))',
  },
  {
    name: 'movedim',
    inputs: [g([2, 3, 4])],
    js: (a) => [a.movedim(0, 2), a.movedim(-1, 0)],
    py: 'lambda a: (a.movedim(0, 2), a.movedim(-1, 0))',
  },
  {
    name: 'tril/triu',
    inputs: [g([4, 5])],
    js: (a) => [a.tril(), a.tril(-1), a.triu(), a.triu(2)],
    py: 'lambda a: (a.tril(), a.tril(-1), a.triu(), a.triu(2))',
  },
  {
    name: 'tril batched non-contiguous',
    inputs: [g([2, 3, 3], { nonContiguous: true })],
    js: (a) => a.tril(1),
    py: 'lambda a: a.tril(1)',
  },
  {
    name: 'diagonal',
    inputs: [g([3, 4])],
    js: (a) => [a.diagonal(), a.diagonal(1), a.diagonal(-1)],
    py: 'lambda a: (a.diagonal(), a.diagonal(1), a.diagonal(-1))',
  },
  {
    name: 'diagonal dims',
    inputs: [g([2, 3, 3])],
    js: (a) => [a.diagonal(0, 1, 2), a.diagonal(0, -1, 0)],
    py: 'lambda a: (a.diagonal(0, 1, 2), a.diagonal(0, -1, 0))',
  },
  {
    name: 'contiguous',
    inputs: [g([3, 4], { nonContiguous: true })],
    js: (a) => a.contiguous(),
    py: 'lambda a: a.contiguous()',
  },
];

// One differential() per file: its leak check counts every live tensor.
differential('shape', [...views, ...indexing, ...joins]);

test('contiguous/isContiguous flags and strides', () => {
  torch.tidy(() => {
    const a = torch.randn([3, 4]);
    assert.equal(a.isContiguous(), true);
    assert.deepEqual(a.stride(), [4, 1]);
    const t = a.t();
    assert.equal(t.isContiguous(), false);
    assert.deepEqual(t.stride(), [1, 4]);
    const c = t.contiguous();
    assert.equal(c.isContiguous(), true);
    assert.deepEqual(c.stride(), [3, 1]);
    assert.ok(c.equal(t));
    // contiguous() of a contiguous tensor is the same storage.
    const same = a.contiguous();
    assert.equal(same.isContiguous(), true);
    same.fill_(1);
    assert.equal(a.sum().item(), 12);
    assert.equal(a.slice(1, 0, 4, 2).isContiguous(), false);
    assert.equal(a.slice(0, 1, 3).isContiguous(), true);
    assert.equal(a.unsqueeze(0).expand(2, 3, 4).isContiguous(), false);
    assert.deepEqual(a.unsqueeze(0).expand(2, 3, 4).stride(), [0, 4, 1]);
  });
  assert.equal(torch.liveTensors(), 0);
});

test('views share storage; index with tensors copies', () => {
  torch.tidy(() => {
    const a = torch.zeros([3, 4]);
    a.index(1).fill_(2); // basic indexing is a view
    a.slice(1, 0, 4, 3).fill_(1);
    a.index(0, 2).fill_(5);
    assert.deepEqual(a.toArray(), [
      [1, 0, 5, 1],
      [1, 2, 2, 1],
      [1, 0, 0, 1],
    ]);
    a.index(torch.tensor([0], { dtype: 'int64' })).fill_(9); // advanced indexing copies
    assert.equal(a.index(0, 1).item(), 0);
    const v = a.view(12);
    v.index(0).fill_(-1);
    assert.equal(a.index(0, 0).item(), -1);
    const e: Tensor = a.index(1).unsqueeze(0).expand(3, 4);
    assert.deepEqual(e.shape, [3, 4]);
    a.index(1, 0).fill_(42);
    assert.equal(e.index(2, 0).item(), 42);
  });
  assert.equal(torch.liveTensors(), 0);
});

test('indexPut_ returns this and mutates in place', () => {
  torch.tidy(() => {
    const a = torch.zeros([2, 3]);
    const r = a.indexPut_([':', 1], 3);
    assert.equal(r, a);
    a.indexPut_([torch.tensor([true, false])], torch.tensor([1, 2, 3]));
    assert.deepEqual(a.toArray(), [
      [1, 2, 3],
      [0, 3, 0],
    ]);
  });
  assert.equal(torch.liveTensors(), 0);
});
