// DistributedDataParallel: every rank holds the same model; each backward pass
// averages the gradients over ranks in buckets that are all-reduced while the
// rest of the backward pass runs (c10d's Reducer, the engine of PyTorch's DDP).
//
//   const ddp = new DistributedDataParallel(model);
//   for (...) {
//     ddp.beginStep();            // before the forward pass(es)
//     const loss = ...model...;   // any number of calls to model or its parts
//     ddp.backward(loss);         // gradients arrive averaged over ranks
//     opt.step();
//   }
import { tensor, zerosLike } from '../creation.js';
import { crc32 } from '../io/crc32.js';
import { native } from '../native.js';
import type { Module } from '../nn/module.js';
import { keep, tidy } from '../scope.js';
import type { Tensor } from '../tensor.js';
import { getDefaultGroup, type ProcessGroup } from './group.js';

export interface DdpOptions {
  /** Default: the default process group. */
  group?: ProcessGroup;
  /** Bucket capacity in MiB (PyTorch's default 25). */
  bucketCapMB?: number;
  /** Search each backward graph for parameters without a gradient (slower; as PyTorch's option). */
  findUnusedParameters?: boolean;
  /** Gradients become views into the communication buckets (saves a copy and memory). */
  gradientAsBucketView?: boolean;
  /** Copy rank 0's buffers to every rank at the start of each step (PyTorch's default: true). */
  broadcastBuffers?: boolean;
}

export class DistributedDataParallel {
  readonly group: ProcessGroup;
  readonly #params: Tensor[];
  readonly #findUnused: boolean;
  readonly #broadcastBuffers: boolean;
  #reducer: number;

  constructor(
    readonly module: Module,
    opts: DdpOptions = {},
  ) {
    this.group = opts.group ?? getDefaultGroup();
    this.#findUnused = opts.findUnusedParameters ?? false;
    this.#broadcastBuffers = opts.broadcastBuffers ?? true;
    const named = module.namedParameters().filter(([, p]) => p.requiresGrad);
    if (named.length === 0) throw new Error('DistributedDataParallel: the module has no parameter that requires grad');
    this.#params = named.map(([, p]) => p);
    this.#verifySameModel(named);
    // Every rank starts from rank 0's parameters and buffers.
    this.syncModuleStates();
    const capBytes = Math.round((opts.bucketCapMB ?? 25) * 1024 * 1024);
    this.#reducer = native.reducerCreate(
      this.group.handle,
      this.#params.map((p) => p.id),
      capBytes,
      Math.min(1024 * 1024, capBytes),
      this.#findUnused,
      opts.gradientAsBucketView ?? false,
    );
  }

  #verifySameModel(named: [string, Tensor][]): void {
    const desc = named.map(([n, p]) => `${n}:${p.shape.join('x')}:${p.dtype}`).join(';');
    // CRC-32 of the names, shapes and dtypes: a cheap fingerprint of the model.
    const mine = [named.length, named.reduce((s, [, p]) => s + p.numel(), 0), crc32(new TextEncoder().encode(desc))];
    const all = tidy(() => this.group.allGather(tensor([mine], { dtype: 'float64' })).toArray() as number[][]);
    all.forEach((theirs, r) => {
      if (theirs.some((v, i) => v !== mine[i]))
        throw new Error(
          `DistributedDataParallel: rank ${r}'s model differs from rank ${this.group.rank}'s ` +
            `(${theirs[0]} vs ${mine[0]} trainable tensors, ${theirs[1]} vs ${mine[1]} elements): ` +
            'every rank must build the same model with the same options',
        );
    });
  }

  /** Copies rank 0's parameters and buffers to every rank. */
  syncModuleStates(): void {
    const tensors = [...this.module.parameters(), ...this.module.buffers()];
    if (tensors.length > 0) this.group.broadcast(tensors, 0);
  }

  get reducer(): number {
    if (this.#reducer < 0) throw new Error('DistributedDataParallel: used after dispose()');
    return this.#reducer;
  }

  /** Call before the forward pass of a step whose gradients are to be averaged. */
  beginStep(): void {
    if (this.#broadcastBuffers) {
      const buffers = this.module.buffers();
      if (buffers.length > 0) this.group.broadcast(buffers, 0);
    }
    native.reducerPrepareForward(this.reducer);
  }

  /**
   * loss.backward(), with the gradients all-reduced (averaged over ranks) in
   * buckets as they become ready. Every rank must call it once per step.
   */
  backward(loss: Tensor): void {
    native.reducerPrepareBackward(this.reducer, this.#findUnused ? [loss.id] : []);
    loss.backward();
  }

  /**
   * Averages every parameter's gradient over ranks in one coalesced all-reduce,
   * for a step whose backward pass ran without backward() (activation
   * checkpointing's several backward passes): no overlap with the backward
   * pass, the same result. A parameter without a gradient gets zeros, so every
   * rank reduces the same tensors.
   */
  allReduceGradients(): void {
    const grads = tidy(() =>
      this.#params.map((p) => {
        let g = p.grad;
        if (g === null) {
          p.grad = zerosLike(p);
          g = p.grad!;
        }
        return keep(g);
      }),
    );
    try {
      this.group.allReduce(grads, 'avg');
    } finally {
      for (const g of grads) g.dispose();
    }
  }

  dispose(): void {
    if (this.#reducer >= 0) native.reducerRelease(this.#reducer);
    this.#reducer = -1;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
