// Differential tests: torch.nn.functional (linear, convolutions, normalization,
// activations, softmax, dropout, attention, embedding, interpolation, padding,
// pooling, unfold, one_hot, losses), forward and gradient, float32 and float64
// for a representative subset. Plain tests cover dropout's randomness.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as torch from '../src/index.js';
import { F, type DType } from '../src/index.js';
import { differential, type Case, type InputSpec } from './harness.js';

const g = (shape: number[], extra: Partial<InputSpec> = {}): InputSpec => ({ shape, requiresGrad: true, ...extra });
const g64 = (shape: number[], extra: Partial<InputSpec> = {}): InputSpec => g(shape, { dtype: 'float64', ...extra });

// float32 convolutions and attention sum tens of products per output, in an
// order that differs between kernels (im2col+GEMM, direct, oneDNN): allow a
// few ulps of the accumulated magnitude.
const F32_ACC = { rtol: 1e-4, atol: 5e-5 };

const cases: Case[] = [];

for (const dtype of ['float32', 'float64'] as DType[]) {
  const d = (shape: number[], extra: Partial<InputSpec> = {}): InputSpec => g(shape, { dtype, ...extra });
  const acc = dtype === 'float32' ? F32_ACC : {};
  cases.push(
    {
      name: `linear with bias ${dtype}`,
      inputs: [d([2, 3, 4]), d([5, 4]), d([5])],
      js: (x, w, b) => F.linear(x, w, b),
      py: 'lambda x, w, b: F.linear(x, w, b)',
    },
    {
      name: `linear without bias, non-contiguous ${dtype}`,
      inputs: [d([3, 4], { nonContiguous: true }), d([2, 4])],
      js: (x, w) => F.linear(x, w),
      py: 'lambda x, w: F.linear(x, w)',
    },
    {
      name: `conv2d stride 2 padding 1 ${dtype}`,
      inputs: [d([2, 4, 7, 7]), d([6, 4, 3, 3]), d([6])],
      js: (x, w, b) => F.conv2d(x, w, b, { stride: 2, padding: 1 }),
      py: 'lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1)',
      ...acc,
    },
    {
      name: `conv2d padding 'same' with dilation ${dtype}`,
      inputs: [d([1, 3, 6, 5]), d([4, 3, 3, 2])],
      js: (x, w) => F.conv2d(x, w, null, { padding: 'same', dilation: 2 }),
      py: "lambda x, w: F.conv2d(x, w, None, padding='same', dilation=2)",
      ...acc,
    },
    {
      name: `conv2d groups, tuple stride/padding ${dtype}`,
      inputs: [d([2, 4, 6, 7]), d([6, 2, 3, 3]), d([6])],
      js: (x, w, b) => F.conv2d(x, w, b, { groups: 2, stride: [1, 2], padding: [2, 0] }),
      py: 'lambda x, w, b: F.conv2d(x, w, b, groups=2, stride=(1, 2), padding=(2, 0))',
      ...acc,
    },
    {
      name: `convTranspose2d stride, padding, outputPadding ${dtype}`,
      inputs: [d([2, 4, 5, 5]), d([4, 3, 3, 3]), d([3])],
      js: (x, w, b) => F.convTranspose2d(x, w, b, { stride: 2, padding: 1, outputPadding: 1 }),
      py: 'lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)',
      ...acc,
    },
    {
      name: `layerNorm with weight and bias ${dtype}`,
      inputs: [d([2, 3, 4]), d([4]), d([4])],
      js: (x, w, b) => F.layerNorm(x, [4], w, b),
      py: 'lambda x, w, b: F.layer_norm(x, [4], w, b)',
    },
    {
      name: `batchNorm training updates running stats ${dtype}`,
      inputs: [d([4, 3, 2, 2]), d([3]), d([3]), { shape: [3], dtype }, { shape: [3], dtype, kind: 'positive' }],
      js: (x, w, b, rm, rv) => [F.batchNorm(x, rm, rv, { weight: w, bias: b, training: true, momentum: 0.2 }), rm, rv],
      py: 'lambda x, w, b, rm, rv: (F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.2), rm, rv)',
    },
    {
      name: `batchNorm eval uses running stats ${dtype}`,
      inputs: [d([5, 3]), d([3]), d([3]), { shape: [3], dtype }, { shape: [3], dtype, kind: 'positive' }],
      js: (x, w, b, rm, rv) => [F.batchNorm(x, rm, rv, { weight: w, bias: b, training: false }), rm, rv],
      py: 'lambda x, w, b, rm, rv: (F.batch_norm(x, rm, rv, w, b, training=False), rm, rv)',
    },
    {
      name: `softmax and logSoftmax ${dtype}`,
      inputs: [d([3, 5])],
      js: (x) => [F.softmax(x, 1), F.logSoftmax(x, 0)],
      py: 'lambda x: (F.softmax(x, 1), F.log_softmax(x, 0))',
    },
    {
      name: `scaledDotProductAttention bool mask ${dtype}`,
      inputs: [
        d([2, 2, 3, 4]),
        d([2, 2, 5, 4]),
        d([2, 2, 5, 3]),
        { shape: [3, 5], dtype: 'bool', values: [1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1] },
      ],
      js: (q, k, v, m) => F.scaledDotProductAttention(q, k, v, { attnMask: m }),
      py: 'lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)',
      ...acc,
    },
    {
      name: `scaledDotProductAttention additive mask, scale ${dtype}`,
      inputs: [d([2, 4, 3]), d([2, 6, 3]), d([2, 6, 2]), d([4, 6])],
      js: (q, k, v, m) => F.scaledDotProductAttention(q, k, v, { attnMask: m, scale: 0.3 }),
      py: 'lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.3)',
      ...acc,
    },
    {
      name: `scaledDotProductAttention isCausal ${dtype}`,
      inputs: [d([1, 2, 5, 4]), d([1, 2, 5, 4]), d([1, 2, 5, 4], { nonContiguous: true })],
      js: (q, k, v) => F.scaledDotProductAttention(q, k, v, { isCausal: true }),
      py: 'lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)',
      ...acc,
    },
    {
      name: `interpolate bilinear ${dtype}`,
      inputs: [d([1, 2, 4, 5])],
      js: (x) => [
        F.interpolate(x, { size: [7, 8], mode: 'bilinear' }),
        F.interpolate(x, { size: [7, 8], mode: 'bilinear', alignCorners: true }),
        F.interpolate(x, { size: [3, 2], mode: 'bilinear' }),
      ],
      py:
        "lambda x: (F.interpolate(x, size=(7, 8), mode='bilinear'), " +
        "F.interpolate(x, size=(7, 8), mode='bilinear', align_corners=True), " +
        "F.interpolate(x, size=(3, 2), mode='bilinear'))",
    },
    {
      name: `crossEntropy class targets ${dtype}`,
      inputs: [d([4, 5]), { shape: [4], kind: 'index', high: 5 }],
      js: (x, t) => [
        F.crossEntropy(x, t),
        F.crossEntropy(x, t, { reduction: 'sum' }),
        F.crossEntropy(x, t, { reduction: 'none' }),
      ],
      py:
        "lambda x, t: (F.cross_entropy(x, t), F.cross_entropy(x, t, reduction='sum'), " +
        "F.cross_entropy(x, t, reduction='none'))",
    },
    {
      name: `crossEntropy labelSmoothing ${dtype}`,
      inputs: [d([6, 4]), { shape: [6], kind: 'index', high: 4 }],
      js: (x, t) => F.crossEntropy(x, t, { labelSmoothing: 0.1 }),
      py: 'lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1)',
    },
  );
}

cases.push(
  // -------------------------------------------------------- convolutions
  {
    name: 'conv2d padding valid',
    inputs: [g64([1, 2, 5, 6]), g64([3, 2, 2, 3]), g64([3])],
    js: (x, w, b) => F.conv2d(x, w, b, { padding: 'valid' }),
    py: "lambda x, w, b: F.conv2d(x, w, b, padding='valid')",
  },
  {
    name: 'conv2d dilation 2 non-contiguous input',
    inputs: [g64([1, 2, 7, 7], { nonContiguous: true }), g64([2, 2, 3, 3])],
    js: (x, w) => F.conv2d(x, w, null, { dilation: 2, padding: 1 }),
    py: 'lambda x, w: F.conv2d(x, w, None, dilation=2, padding=1)',
  },
  {
    name: 'conv2d depthwise',
    inputs: [g64([2, 3, 5, 5]), g64([3, 1, 3, 3]), g64([3])],
    js: (x, w, b) => F.conv2d(x, w, b, { groups: 3 }),
    py: 'lambda x, w, b: F.conv2d(x, w, b, groups=3)',
  },
  {
    name: 'convTranspose2d groups and dilation',
    inputs: [g64([1, 4, 4, 4]), g64([4, 2, 3, 3]), g64([4])],
    js: (x, w, b) => F.convTranspose2d(x, w, b, { groups: 2, dilation: 2, stride: [1, 2] }),
    py: 'lambda x, w, b: F.conv_transpose2d(x, w, b, groups=2, dilation=2, stride=(1, 2))',
  },
  // ------------------------------------------------------- normalization
  {
    name: 'layerNorm over two dims, no affine, eps',
    inputs: [g64([2, 3, 4], { nonContiguous: true })],
    js: (x) => F.layerNorm(x, [3, 4], null, null, 1e-3),
    py: 'lambda x: F.layer_norm(x, [3, 4], eps=1e-3)',
  },
  {
    name: 'batchNorm training without running stats',
    inputs: [g64([6, 4])],
    js: (x) => F.batchNorm(x, null, null, { training: true }),
    py: 'lambda x: F.batch_norm(x, None, None, training=True)',
  },
  {
    name: 'batchNorm default is eval mode',
    inputs: [g64([3, 2, 4]), { shape: [2], dtype: 'float64' }, { shape: [2], dtype: 'float64', kind: 'positive' }],
    js: (x, rm, rv) => [F.batchNorm(x, rm, rv), rm, rv],
    py: 'lambda x, rm, rv: (F.batch_norm(x, rm, rv), rm, rv)',
  },
  {
    name: 'batchNorm training 3-d input, eps',
    inputs: [
      g64([3, 2, 4]),
      g64([2]),
      g64([2]),
      { shape: [2], dtype: 'float64' },
      { shape: [2], dtype: 'float64', kind: 'positive' },
    ],
    js: (x, w, b, rm, rv) => [F.batchNorm(x, rm, rv, { weight: w, bias: b, training: true, eps: 1e-3 }), rm, rv],
    py: 'lambda x, w, b, rm, rv: (F.batch_norm(x, rm, rv, w, b, training=True, eps=1e-3), rm, rv)',
  },
  {
    name: 'groupNorm',
    inputs: [g64([2, 6, 3, 3]), g64([6]), g64([6])],
    js: (x, w, b) => [F.groupNorm(x, 3, w, b), F.groupNorm(x, 2)],
    py: 'lambda x, w, b: (F.group_norm(x, 3, w, b), F.group_norm(x, 2))',
  },
  // ---------------------------------------------------------- activations
  {
    name: 'gelu none and tanh',
    inputs: [g64([3, 4])],
    js: (x) => [F.gelu(x), F.gelu(x, 'tanh')],
    py: "lambda x: (F.gelu(x), F.gelu(x, approximate='tanh'))",
  },
  {
    name: 'silu, relu, sigmoid, tanh',
    inputs: [g64([3, 4], { nonContiguous: true })],
    js: (x) => [F.silu(x), F.relu(x), F.sigmoid(x), F.tanh(x)],
    py: 'lambda x: (F.silu(x), F.relu(x), torch.sigmoid(x), torch.tanh(x))',
  },
  {
    name: 'leakyRelu',
    inputs: [g64([10])],
    js: (x) => [F.leakyRelu(x), F.leakyRelu(x, 0.2)],
    py: 'lambda x: (F.leaky_relu(x), F.leaky_relu(x, 0.2))',
  },
  {
    name: 'softplus beta and threshold',
    inputs: [g64([12])],
    js: (x) => [F.softplus(x), F.softplus(x, 2, 1)],
    py: 'lambda x: (F.softplus(x), F.softplus(x, beta=2, threshold=1))',
  },
  {
    name: 'softmax with dtype',
    inputs: [g([2, 5])],
    js: (x) => [F.softmax(x, -1, 'float64'), F.logSoftmax(x, -1, 'float64')],
    py: 'lambda x: (F.softmax(x, -1, dtype=torch.float64), F.log_softmax(x, -1, dtype=torch.float64))',
  },
  // -------------------------------------------------------------- dropout
  {
    name: 'dropout p=0 is identity',
    inputs: [g([4, 5])],
    js: (x) => F.dropout(x, 0),
    py: 'lambda x: F.dropout(x, 0.0)',
  },
  {
    name: 'dropout training=false is identity',
    inputs: [g([4, 5])],
    js: (x) => F.dropout(x, 0.5, false),
    py: 'lambda x: F.dropout(x, 0.5, training=False)',
  },
  // ------------------------------------------------------------ embedding
  {
    name: 'embedding',
    inputs: [{ shape: [2, 3], kind: 'index', high: 5 }, g64([5, 4])],
    js: (i, w) => F.embedding(i, w),
    py: 'lambda i, w: F.embedding(i, w)',
  },
  {
    name: 'embedding paddingIdx gets no gradient',
    inputs: [{ shape: [6], dtype: 'int64', values: [1, 0, 1, 3, 2, 1] }, g64([4, 3])],
    js: (i, w) => F.embedding(i, w, 1),
    py: 'lambda i, w: F.embedding(i, w, padding_idx=1)',
  },
  {
    name: 'embedding negative paddingIdx counts from the end',
    inputs: [{ shape: [5], dtype: 'int64', values: [3, 0, 3, 1, 2] }, g64([4, 3])],
    js: (i, w) => F.embedding(i, w, -1),
    py: 'lambda i, w: F.embedding(i, w, padding_idx=-1)',
  },
  {
    name: 'embedding paddingIdx out of range rejected',
    inputs: [{ shape: [2], dtype: 'int64', values: [0, 1] }, g64([4, 3])],
    js: (i, w) => F.embedding(i, w, 4),
    py: 'lambda i, w: F.embedding(i, w, padding_idx=4)',
  },
  {
    name: 'scaledDotProductAttention enableGqa',
    inputs: [g64([1, 4, 3, 2]), g64([1, 2, 5, 2]), g64([1, 2, 5, 3])],
    js: (q, k, v) => F.scaledDotProductAttention(q, k, v, { enableGqa: true }),
    py: 'lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)',
  },
  {
    name: "conv2d padding 'same' with stride rejected",
    inputs: [g([1, 1, 4, 4]), g([1, 1, 3, 3])],
    js: (x, w) => F.conv2d(x, w, null, { padding: 'same', stride: 2 }),
    py: "lambda x, w: F.conv2d(x, w, None, padding='same', stride=2)",
  },
  // ------------------------------------------------------------ normalize
  {
    name: 'normalize',
    inputs: [g64([3, 4])],
    js: (x) => [F.normalize(x), F.normalize(x, 1, -1), F.normalize(x, 2, 0)],
    py: 'lambda x: (F.normalize(x), F.normalize(x, p=1, dim=-1), F.normalize(x, dim=0))',
  },
  {
    name: 'normalize zero row uses eps',
    inputs: [g64([2, 3], { values: [0, 0, 0, 1, 2, 2] })],
    js: (x) => F.normalize(x, 2, 1, 1e-6),
    py: 'lambda x: F.normalize(x, dim=1, eps=1e-6)',
  },
  // ---------------------------------------------------------- interpolate
  {
    name: 'interpolate nearest size and scaleFactor',
    inputs: [g64([1, 2, 4, 3])],
    js: (x) => [
      F.interpolate(x, { size: [7, 5] }),
      F.interpolate(x, { scaleFactor: 2 }),
      F.interpolate(x, { size: [2, 2] }),
    ],
    py: 'lambda x: (F.interpolate(x, size=(7, 5)), F.interpolate(x, scale_factor=2), F.interpolate(x, size=(2, 2)))',
  },
  {
    name: 'interpolate nearest-exact',
    inputs: [g64([1, 1, 5, 4])],
    js: (x) => F.interpolate(x, { size: [3, 7], mode: 'nearest-exact' }),
    py: "lambda x: F.interpolate(x, size=(3, 7), mode='nearest-exact')",
  },
  {
    name: 'interpolate bilinear scaleFactor (non-integer, per dim)',
    inputs: [g64([2, 1, 4, 5], { nonContiguous: true })],
    js: (x) => [
      F.interpolate(x, { scaleFactor: 1.5, mode: 'bilinear' }),
      F.interpolate(x, { scaleFactor: [0.5, 2.5], mode: 'bilinear', alignCorners: true }),
    ],
    py:
      "lambda x: (F.interpolate(x, scale_factor=1.5, mode='bilinear'), " +
      "F.interpolate(x, scale_factor=(0.5, 2.5), mode='bilinear', align_corners=True))",
  },
  {
    name: 'interpolate bicubic',
    inputs: [g64([1, 2, 4, 4])],
    js: (x) => [
      F.interpolate(x, { size: [7, 6], mode: 'bicubic' }),
      F.interpolate(x, { size: [7, 6], mode: 'bicubic', alignCorners: true }),
    ],
    py:
      "lambda x: (F.interpolate(x, size=(7, 6), mode='bicubic'), " +
      "F.interpolate(x, size=(7, 6), mode='bicubic', align_corners=True))",
  },
  {
    // Bicubic weights in float32 lose a few bits more than the other modes.
    name: 'interpolate bicubic float32',
    inputs: [g([1, 1, 5, 5])],
    js: (x) => F.interpolate(x, { size: [8, 9], mode: 'bicubic' }),
    py: "lambda x: F.interpolate(x, size=(8, 9), mode='bicubic')",
    rtol: 1e-4,
    atol: 5e-5,
  },
  {
    name: 'interpolate antialias downsampling',
    inputs: [g64([1, 2, 8, 9])],
    js: (x) => [
      F.interpolate(x, { size: [3, 4], mode: 'bilinear', antialias: true }),
      F.interpolate(x, { size: [3, 4], mode: 'bicubic', antialias: true }),
      F.interpolate(x, { scaleFactor: 0.5, mode: 'bilinear', antialias: true }),
    ],
    py:
      "lambda x: (F.interpolate(x, size=(3, 4), mode='bilinear', antialias=True), " +
      "F.interpolate(x, size=(3, 4), mode='bicubic', antialias=True), " +
      "F.interpolate(x, scale_factor=0.5, mode='bilinear', antialias=True))",
  },
  {
    name: 'interpolate nearest with alignCorners rejected',
    inputs: [g([1, 1, 2, 2])],
    js: (x) => F.interpolate(x, { size: [4, 4], alignCorners: false }),
    py: 'lambda x: F.interpolate(x, size=(4, 4), align_corners=False)',
  },
  // ------------------------------------------------------------------ pad
  {
    name: 'pad constant',
    inputs: [g64([2, 3, 4])],
    js: (x) => [F.pad(x, [1, 2]), F.pad(x, [1, 1, 2, 0], 'constant', 0.5), F.pad(x, [-1, 1])],
    py: "lambda x: (F.pad(x, (1, 2)), F.pad(x, (1, 1, 2, 0), 'constant', 0.5), F.pad(x, (-1, 1)))",
  },
  {
    name: 'pad reflect',
    inputs: [g64([1, 2, 4, 5])],
    js: (x) => [F.pad(x, [2, 1, 2, 1], 'reflect'), F.pad(x, [3, 0], 'reflect')],
    py: "lambda x: (F.pad(x, (2, 1, 2, 1), mode='reflect'), F.pad(x, (3, 0), mode='reflect'))",
  },
  {
    name: 'pad replicate and circular',
    inputs: [g64([1, 2, 3, 4], { nonContiguous: true })],
    js: (x) => [F.pad(x, [2, 1, 0, 3], 'replicate'), F.pad(x, [1, 2, 2, 1], 'circular')],
    py: "lambda x: (F.pad(x, (2, 1, 0, 3), mode='replicate'), F.pad(x, (1, 2, 2, 1), mode='circular'))",
  },
  // -------------------------------------------------------------- pooling
  {
    name: 'avgPool2d',
    inputs: [g64([2, 2, 7, 6])],
    js: (x) => [
      F.avgPool2d(x, 2),
      F.avgPool2d(x, 3, { stride: 2, padding: 1 }),
      F.avgPool2d(x, 3, { stride: 2, padding: 1, countIncludePad: false, ceilMode: true }),
      F.avgPool2d(x, [2, 3], { divisorOverride: 4 }),
    ],
    py:
      'lambda x: (F.avg_pool2d(x, 2), F.avg_pool2d(x, 3, stride=2, padding=1), ' +
      'F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False, ceil_mode=True), ' +
      'F.avg_pool2d(x, (2, 3), divisor_override=4))',
  },
  {
    name: 'maxPool2d',
    inputs: [g64([2, 2, 7, 6], { nonContiguous: true })],
    js: (x) => [
      F.maxPool2d(x, 2),
      F.maxPool2d(x, 3, { stride: 2, padding: 1 }),
      F.maxPool2d(x, 2, { ceilMode: true }),
      F.maxPool2d(x, 2, { dilation: 2, stride: 1 }),
    ],
    py:
      'lambda x: (F.max_pool2d(x, 2), F.max_pool2d(x, 3, stride=2, padding=1), ' +
      'F.max_pool2d(x, 2, ceil_mode=True), F.max_pool2d(x, 2, dilation=2, stride=1))',
  },
  {
    name: 'adaptiveAvgPool2d',
    inputs: [g64([2, 3, 7, 5])],
    js: (x) => [F.adaptiveAvgPool2d(x, [3, 2]), F.adaptiveAvgPool2d(x, 1), F.adaptiveAvgPool2d(x, [7, 10])],
    py:
      'lambda x: (F.adaptive_avg_pool2d(x, (3, 2)), F.adaptive_avg_pool2d(x, 1), ' +
      'F.adaptive_avg_pool2d(x, (7, 10)))',
  },
  {
    name: 'unfold',
    inputs: [g64([2, 3, 5, 6])],
    js: (x) => [F.unfold(x, 2), F.unfold(x, [2, 3], { dilation: [2, 1], padding: 1, stride: 2 })],
    py: 'lambda x: (F.unfold(x, 2), F.unfold(x, (2, 3), dilation=(2, 1), padding=1, stride=2))',
  },
  // ------------------------------------------------------------- one-hot
  {
    name: 'oneHot',
    inputs: [{ shape: [2, 3], dtype: 'int64', values: [0, 3, 1, 1, 2, 0] }],
    js: (i) => [F.oneHot(i), F.oneHot(i, 6)],
    py: 'lambda i: (F.one_hot(i), F.one_hot(i, 6))',
  },
  // --------------------------------------------------------------- losses
  {
    name: 'crossEntropy class weights and ignoreIndex',
    inputs: [
      g64([5, 3]),
      { shape: [5], dtype: 'int64', values: [0, 2, -100, 1, 2] },
      { shape: [3], kind: 'positive', dtype: 'float64' },
    ],
    js: (x, t, w) => [
      F.crossEntropy(x, t, { weight: w }),
      F.crossEntropy(x, t, { weight: w, reduction: 'none' }),
      F.crossEntropy(x, t.clampMin(0), { ignoreIndex: 2, labelSmoothing: 0.2 }),
      F.crossEntropy(x, t, { weight: w, labelSmoothing: 0.3 }),
    ],
    py:
      "lambda x, t, w: (F.cross_entropy(x, t, weight=w), F.cross_entropy(x, t, weight=w, reduction='none'), " +
      'F.cross_entropy(x, t.clamp(min=0), ignore_index=2, label_smoothing=0.2), ' +
      'F.cross_entropy(x, t, weight=w, label_smoothing=0.3))',
  },
  {
    name: 'crossEntropy spatial (N, C, H, W)',
    inputs: [g64([2, 3, 2, 2]), { shape: [2, 2, 2], kind: 'index', high: 3 }],
    js: (x, t) => F.crossEntropy(x, t),
    py: 'lambda x, t: F.cross_entropy(x, t)',
  },
  {
    name: 'crossEntropy probability targets with labelSmoothing',
    inputs: [g64([4, 3]), g64([4, 3], { kind: 'positive', requiresGrad: false })],
    js: (x, p) => {
      const probs = p.div(p.sum(1, { keepdim: true }));
      return [F.crossEntropy(x, probs), F.crossEntropy(x, probs, { labelSmoothing: 0.1, reduction: 'sum' })];
    },
    py:
      'lambda x, p: (lambda q: (F.cross_entropy(x, q), ' +
      "F.cross_entropy(x, q, label_smoothing=0.1, reduction='sum')))(p / p.sum(1, keepdim=True))",
  },
  {
    name: 'mseLoss',
    inputs: [g([3, 4]), g([3, 4], { nonContiguous: true })],
    js: (x, y) => [F.mseLoss(x, y), F.mseLoss(x, y, 'sum'), F.mseLoss(x, y, 'none')],
    py: "lambda x, y: (F.mse_loss(x, y), F.mse_loss(x, y, reduction='sum'), F.mse_loss(x, y, reduction='none'))",
  },
);

differential('nn.functional', cases);

test('dropout p=0.5: about half zeroed, survivors scaled by 2', () => {
  torch.tidy(() => {
    torch.manualSeed(7);
    const n = 100_000;
    const x = torch.ones([n]);
    const y = F.dropout(x, 0.5);
    const zeroed = y.eq(0).sum().item() / n;
    // Binomial std of the fraction is 0.0016: 0.01 is over 6 standard deviations.
    assert.ok(Math.abs(zeroed - 0.5) < 0.01, `fraction zeroed ${zeroed}`);
    const kept = y.maskedSelect(y.ne(0));
    assert.equal(kept.eq(2).all().item(), 1, 'survivors are scaled by 1/(1-p) = 2');
    // Gradient: the same mask, the same scale.
    const xg = torch.ones([1000], { requiresGrad: true });
    const yg = F.dropout(xg, 0.5);
    yg.sum().backward();
    assert.ok(xg.grad!.equal(yg.detach()));
    // p = 0.2 keeps about 80% scaled by 1.25.
    const z = F.dropout(x, 0.2);
    const keptFrac = z.ne(0).sum().item() / n;
    assert.ok(Math.abs(keptFrac - 0.8) < 0.01, `fraction kept ${keptFrac}`);
    assert.ok(Math.abs(z.maskedSelect(z.ne(0)).mean().item() - 1.25) < 1e-6);
    // p = 1 drops everything; p outside [0, 1] is rejected.
    assert.equal(F.dropout(x, 1).abs().sum().item(), 0);
    assert.throws(() => F.dropout(x, 1.5), RangeError);
  });
  assert.equal(torch.liveTensors(), 0);
});

test('dropout is reproducible under manualSeed', () => {
  torch.tidy(() => {
    const x = torch.ones([64]);
    torch.manualSeed(3);
    const a = F.dropout(x, 0.5);
    torch.manualSeed(3);
    const b = F.dropout(x, 0.5);
    assert.ok(a.equal(b));
  });
  assert.equal(torch.liveTensors(), 0);
});
