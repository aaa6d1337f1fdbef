// Layers, with PyTorch's parameter names, shapes and default initialisation.
import { cat, empty, full, ones, zeros, type TensorOptions } from '../creation.js';
import type { DType } from '../dtype.js';
import * as F from '../functional.js';
import { tidy } from '../scope.js';
import type { Tensor } from '../tensor.js';
import * as init from './init.js';
import { Module, type Layer } from './module.js';

/** dtype and device of a layer's parameters. */
export type FactoryOptions = Pick<TensorOptions, 'dtype' | 'device'>;

/** y = x Wᵀ + b, initialised as PyTorch does (kaiming-uniform with a = √5, bias U(±1/√fanIn)). */
export class Linear extends Module implements Layer {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: FactoryOptions & { bias?: boolean } = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', empty([outFeatures, inFeatures], opts));
    this.bias = this.registerParameter('bias', opts.bias === false ? null : empty([outFeatures], opts));
    this.resetParameters();
  }

  resetParameters(): void {
    init.kaimingUniform_(this.weight, { a: Math.sqrt(5) });
    if (this.bias) {
      const bound = this.inFeatures > 0 ? 1 / Math.sqrt(this.inFeatures) : 0;
      init.uniform_(this.bias, -bound, bound);
    }
  }

  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
}

type Pair = number | [number, number];
const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : v);

export interface Conv2dOptions extends FactoryOptions {
  stride?: Pair;
  padding?: Pair | 'same' | 'valid';
  dilation?: Pair;
  groups?: number;
  bias?: boolean;
}

export class Conv2d extends Module implements Layer {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly kernelSize: [number, number];

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: Pair,
    readonly opts: Conv2dOptions = {},
  ) {
    super();
    const groups = opts.groups ?? 1;
    if (inChannels % groups !== 0 || outChannels % groups !== 0)
      throw new TypeError(`Conv2d: channels (${inChannels}, ${outChannels}) must be divisible by groups ${groups}`);
    this.kernelSize = pair(kernelSize);
    this.weight = this.registerParameter('weight', empty([outChannels, inChannels / groups, ...this.kernelSize], opts));
    this.bias = this.registerParameter('bias', opts.bias === false ? null : empty([outChannels], opts));
    this.resetParameters();
  }

  resetParameters(): void {
    init.kaimingUniform_(this.weight, { a: Math.sqrt(5) });
    if (this.bias) {
      const [fanIn] = init.fanInAndFanOut(this.weight);
      const bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
      init.uniform_(this.bias, -bound, bound);
    }
  }

  forward(x: Tensor): Tensor {
    const o = this.opts;
    return F.conv2d(x, this.weight, this.bias, {
      stride: o.stride ?? 1,
      padding: o.padding ?? 0,
      dilation: o.dilation ?? 1,
      groups: o.groups ?? 1,
    });
  }
}

export interface LayerNormOptions extends FactoryOptions {
  eps?: number;
  elementwiseAffine?: boolean;
  bias?: boolean;
  /**
   * Normalise in float32 whatever the input dtype (e.g. bf16 under autocast)
   * and cast back, as the float32 LayerNorm of many diffusion transformers.
   */
  computeInFloat32?: boolean;
}

export class LayerNorm extends Module implements Layer {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly normalizedShape: number[];

  constructor(
    normalizedShape: number | number[],
    readonly opts: LayerNormOptions = {},
  ) {
    super();
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : normalizedShape;
    const affine = opts.elementwiseAffine ?? true;
    this.weight = this.registerParameter('weight', affine ? ones(this.normalizedShape, opts) : null);
    this.bias = this.registerParameter(
      'bias',
      affine && opts.bias !== false ? zeros(this.normalizedShape, opts) : null,
    );
  }

  forward(x: Tensor): Tensor {
    const eps = this.opts.eps ?? 1e-5;
    if (!this.opts.computeInFloat32 || x.dtype === 'float32' || x.dtype === 'float64')
      return F.layerNorm(x, this.normalizedShape, this.weight, this.bias, eps);
    return tidy(() => {
      const y = F.layerNorm(
        x.float(),
        this.normalizedShape,
        this.weight?.float() ?? null,
        this.bias?.float() ?? null,
        eps,
      );
      return y.to(x.dtype);
    });
  }
}

export interface BatchNormOptions extends FactoryOptions {
  eps?: number;
  /** Weight of the new batch statistics in the running averages; null for a cumulative average. */
  momentum?: number | null;
  affine?: boolean;
  trackRunningStats?: boolean;
}

/**
 * What SyncBatchNorm needs of a process group: a differentiable Σ over ranks
 * (dist.ProcessGroup provides it).
 */
export interface BatchStatsGroup {
  readonly size: number;
  allReduceWithGrad(t: Tensor): Tensor;
}

/**
 * Batch norm over [N, C] or [N, C, L] inputs (BatchNorm1d). With `syncGroup`
 * set (see convertSyncBatchNorm), training-mode statistics are those of the
 * global batch over all ranks, with gradients through them (SyncBatchNorm).
 */
export class BatchNorm1d extends Module implements Layer {
  /** The group whose global batch gives the statistics in training (SyncBatchNorm); null: this rank's batch. */
  syncGroup: BatchStatsGroup | null = null;
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly runningMean: Tensor | null;
  readonly runningVar: Tensor | null;
  readonly numBatchesTracked: Tensor | null;

  constructor(
    readonly numFeatures: number,
    readonly opts: BatchNormOptions = {},
  ) {
    super();
    const affine = opts.affine ?? true;
    const track = opts.trackRunningStats ?? true;
    this.weight = this.registerParameter('weight', affine ? ones([numFeatures], opts) : null);
    this.bias = this.registerParameter('bias', affine ? zeros([numFeatures], opts) : null);
    this.runningMean = this.registerBuffer('running_mean', track ? zeros([numFeatures], opts) : null);
    this.runningVar = this.registerBuffer('running_var', track ? ones([numFeatures], opts) : null);
    this.numBatchesTracked = this.registerBuffer(
      'num_batches_tracked',
      track ? zeros([], { dtype: 'int64', device: opts.device ?? 'cpu' }) : null,
    );
  }

  forward(x: Tensor): Tensor {
    if (x.ndim !== 2 && x.ndim !== 3) throw new TypeError(`BatchNorm1d: expected 2-d or 3-d input, got ${x.ndim}-d`);
    let momentum = this.opts.momentum === undefined ? 0.1 : this.opts.momentum;
    if (this.training && this.syncGroup !== null && this.syncGroup.size > 1) return this.#forwardSync(x, momentum);
    if (this.training && this.numBatchesTracked !== null) {
      this.numBatchesTracked.add_(1);
      if (momentum === null) momentum = 1 / this.numBatchesTracked.item();
    }
    // Batch statistics in training, or always when no running statistics are kept.
    return F.batchNorm(x, this.runningMean, this.runningVar, {
      weight: this.weight,
      bias: this.bias,
      training: this.training || this.runningMean === null,
      momentum: momentum ?? 0,
      eps: this.opts.eps ?? 1e-5,
    });
  }

  // SyncBatchNorm: mean and biased variance over the global batch, each a
  // differentiable all-reduce of per-rank sums (two passes, as the variance of
  // centred values is better conditioned than E[x²] − E[x]²). Ranks may hold
  // different batch sizes; the counts travel with the sums.
  #forwardSync(x: Tensor, momentum: number | null): Tensor {
    const group = this.syncGroup!;
    const c = this.numFeatures;
    const dims = x.ndim === 2 ? [0] : [0, 2];
    const shape = x.ndim === 2 ? [1, c] : [1, c, 1];
    const eps = this.opts.eps ?? 1e-5;
    const localCount = x.numel() / c;
    return tidy(() => {
      const countCol = full([1], localCount, { dtype: x.dtype, device: x.device });
      // [Σx (C values), n]: the counts stay on the device (no host synchronisation).
      const sums = group.allReduceWithGrad(cat([x.sum(dims), countCol]));
      const count = sums.narrow(0, c, 1).detach();
      const mean = sums.narrow(0, 0, c).div(count);
      const centred = x.sub(mean.reshape(shape));
      const varBiased = group.allReduceWithGrad(centred.mul(centred).sum(dims)).div(count);
      let y = centred.mul(varBiased.add(eps).rsqrt().reshape(shape));
      if (this.weight !== null) y = y.mul(this.weight.reshape(shape));
      if (this.bias !== null) y = y.add(this.bias.reshape(shape));
      if (this.runningMean !== null && this.runningVar !== null && this.numBatchesTracked !== null) {
        this.numBatchesTracked.add_(1);
        const m = momentum ?? 1 / this.numBatchesTracked.item();
        const unbiased = varBiased.detach().mul(count).div(count.sub(1).clamp(1));
        this.runningMean.mul_(1 - m).add_(mean.detach().mul(m));
        this.runningVar.mul_(1 - m).add_(unbiased.mul(m));
      }
      return y;
    });
  }
}

/**
 * Makes every BatchNorm1d of the module compute global-batch statistics over
 * the group in training (torch.nn.SyncBatchNorm.convert_sync_batchnorm, in
 * place); null turns it off again.
 */
export function convertSyncBatchNorm<M extends Module>(module: M, group: BatchStatsGroup | null): M {
  for (const m of module.modules()) if (m instanceof BatchNorm1d) m.syncGroup = group;
  return module;
}

export class GroupNorm extends Module implements Layer {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;

  constructor(
    readonly numGroups: number,
    readonly numChannels: number,
    readonly opts: FactoryOptions & { eps?: number; affine?: boolean } = {},
  ) {
    super();
    if (numChannels % numGroups !== 0)
      throw new TypeError(`GroupNorm: ${numChannels} channels are not divisible into ${numGroups} groups`);
    const affine = opts.affine ?? true;
    this.weight = this.registerParameter('weight', affine ? ones([numChannels], opts) : null);
    this.bias = this.registerParameter('bias', affine ? zeros([numChannels], opts) : null);
  }

  forward(x: Tensor): Tensor {
    return F.groupNorm(x, this.numGroups, this.weight, this.bias, this.opts.eps ?? 1e-5);
  }
}

export class Embedding extends Module implements Layer {
  readonly weight: Tensor;

  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    readonly opts: FactoryOptions & { paddingIdx?: number } = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', empty([numEmbeddings, embeddingDim], opts));
    init.normal_(this.weight);
    if (opts.paddingIdx !== undefined) {
      const row = this.weight.select(0, opts.paddingIdx);
      init.zeros_(row);
      row.dispose();
    }
  }

  forward(indices: Tensor): Tensor {
    return F.embedding(indices, this.weight, this.opts.paddingIdx);
  }
}

export class Dropout extends Module implements Layer {
  constructor(readonly p = 0.5) {
    super();
    if (p < 0 || p > 1) throw new RangeError(`Dropout: p must be in [0, 1], got ${p}`);
  }

  forward(x: Tensor): Tensor {
    return this.training && this.p > 0 ? F.dropout(x, this.p, true) : x.alias();
  }
}

export class GELU extends Module implements Layer {
  constructor(readonly approximate: 'none' | 'tanh' = 'none') {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.gelu(x, this.approximate);
  }
}

export class SiLU extends Module implements Layer {
  forward(x: Tensor): Tensor {
    return F.silu(x);
  }
}

export class ReLU extends Module implements Layer {
  forward(x: Tensor): Tensor {
    return F.relu(x);
  }
}

export class Tanh extends Module implements Layer {
  forward(x: Tensor): Tensor {
    return x.tanh();
  }
}

export class Sigmoid extends Module implements Layer {
  forward(x: Tensor): Tensor {
    return x.sigmoid();
  }
}

export class Identity extends Module implements Layer {
  forward(x: Tensor): Tensor {
    return x.alias();
  }
}

/** Layers applied in order, named '0', '1', ... as in PyTorch. */
export class Sequential extends Module implements Layer {
  readonly layers: (Module & Layer)[];

  constructor(...layers: (Module & Layer)[]) {
    super();
    this.layers = layers;
    layers.forEach((l, i) => this.registerModule(String(i), l));
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      let h = x;
      for (const l of this.layers) h = l.forward(h);
      return h === x ? x.alias() : h;
    });
  }
}

/** A list of modules, named '0', '1', ... as in PyTorch. */
export class ModuleList<M extends Module = Module> extends Module implements Iterable<M> {
  readonly #items: M[] = [];

  constructor(modules: M[] = []) {
    super();
    for (const m of modules) this.push(m);
  }

  push(m: M): this {
    this.registerModule(String(this.#items.length), m);
    this.#items.push(m);
    return this;
  }

  at(i: number): M {
    const m = this.#items.at(i);
    if (m === undefined) throw new RangeError(`ModuleList: index ${i} out of range (length ${this.#items.length})`);
    return m;
  }

  get length(): number {
    return this.#items.length;
  }

  [Symbol.iterator](): Iterator<M> {
    return this.#items[Symbol.iterator]();
  }
}

/** Two-layer perceptron fc1 -> activation -> dropout -> fc2 -> dropout (timm's Mlp naming). */
export class MLP extends Module implements Layer {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly act: Module & Layer;
  readonly drop: Dropout;

  constructor(
    inFeatures: number,
    hiddenFeatures: number,
    outFeatures = inFeatures,
    opts: FactoryOptions & { act?: Module & Layer; drop?: number; bias?: boolean } = {},
  ) {
    super();
    this.fc1 = this.registerModule('fc1', new Linear(inFeatures, hiddenFeatures, opts));
    this.act = this.registerModule('act', opts.act ?? new GELU());
    this.drop = new Dropout(opts.drop ?? 0);
    this.fc2 = this.registerModule('fc2', new Linear(hiddenFeatures, outFeatures, opts));
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const h = this.drop.forward(this.act.forward(this.fc1.forward(x)));
      return this.drop.forward(this.fc2.forward(h));
    });
  }

  override train(mode = true): this {
    super.train(mode);
    this.drop.training = mode;
    return this;
  }
}

export interface AttentionOptions extends FactoryOptions {
  qkvBias?: boolean;
  /** Dropout on the attention weights (training only). */
  attnDrop?: number;
  /** Dropout on the output projection (training only). */
  projDrop?: number;
}

/**
 * Multi-head self-attention over [B, N, C] with a fused qkv projection and
 * scaledDotProductAttention (timm's Attention naming: qkv, proj).
 */
export class MultiheadSelfAttention extends Module implements Layer {
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly headDim: number;

  constructor(
    readonly dim: number,
    readonly numHeads: number,
    readonly opts: AttentionOptions = {},
  ) {
    super();
    if (dim % numHeads !== 0) throw new TypeError(`attention: dim ${dim} is not divisible by ${numHeads} heads`);
    this.headDim = dim / numHeads;
    this.qkv = this.registerModule('qkv', new Linear(dim, 3 * dim, { ...opts, bias: opts.qkvBias ?? false }));
    this.proj = this.registerModule('proj', new Linear(dim, dim, opts));
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const [B, N, C] = x.shape as [number, number, number];
      const qkv = this.qkv.forward(x).reshape(B, N, 3, this.numHeads, this.headDim).permute(2, 0, 3, 1, 4);
      const [q, k, v] = qkv.unbind(0) as [Tensor, Tensor, Tensor];
      const dropoutP = this.training ? (this.opts.attnDrop ?? 0) : 0;
      const o = F.scaledDotProductAttention(q, k, v, { dropoutP });
      let y = this.proj.forward(o.transpose(1, 2).reshape(B, N, C));
      const projDrop = this.opts.projDrop ?? 0;
      if (this.training && projDrop > 0) y = F.dropout(y, projDrop, true);
      return y;
    });
  }
}

export type { DType };
