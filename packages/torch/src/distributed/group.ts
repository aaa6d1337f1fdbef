// Process groups over c10d: a TCPStore rendezvous and Gloo (CPU) or NCCL (CUDA)
// collectives, as torch.distributed offers them. Collectives are issued in the
// same order on every rank; each returns a Work (asynchronous) or waits.
import { noGrad } from '../autograd.js';
import { cat } from '../creation.js';
import { elementSize } from '../dtype.js';
import { tidy } from '../scope.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { distEnv } from './env.js';

export type Backend = 'gloo' | 'nccl';
export type ReduceOp = 'sum' | 'avg' | 'product' | 'min' | 'max';

/** Default collective timeout, as torch.distributed's (30 min). */
export const DEFAULT_TIMEOUT_MS = 30 * 60 * 1000;
/** How long the rendezvous waits for every rank to join. */
export const DEFAULT_RENDEZVOUS_TIMEOUT_MS = 5 * 60 * 1000;

/** True when this build of the addon has c10d (Linux builds of libtorch). */
export function isAvailable(): boolean {
  return native.distInfo().available;
}

/** True when NCCL (CUDA collectives) is compiled in. */
export function isNcclAvailable(): boolean {
  return native.distInfo().nccl;
}

function requireDist(): void {
  if (!isAvailable())
    throw new Error(
      '@epg/torch was built without c10d (distributed): rebuild against a libtorch that ships ' +
        'torch/csrc/distributed/c10d headers (Linux builds of PyTorch do)',
    );
}

/** A key-value store all ranks share (c10d TCPStore); rank 0 serves it. */
export class Store {
  #handle: number;

  constructor(host: string, port: number, opts: { isServer: boolean; worldSize: number; timeoutMs?: number }) {
    requireDist();
    const timeout = opts.timeoutMs ?? DEFAULT_RENDEZVOUS_TIMEOUT_MS;
    try {
      this.#handle = native.storeCreate(host, port, opts.isServer, opts.worldSize, timeout);
    } catch (e) {
      const role = opts.isServer ? `serving it on port ${port}` : `connecting to ${host}:${port}`;
      throw new Error(
        `rendezvous failed (${role}, ${opts.worldSize} processes, timeout ${timeout / 1000} s): ${(e as Error).message}. ` +
          'Check that every rank was started with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE, and that the port is free.',
        { cause: e },
      );
    }
  }

  get handle(): number {
    if (this.#handle < 0) throw new Error('Store: used after dispose()');
    return this.#handle;
  }

  set(key: string, value: string): void {
    native.storeSet(this.handle, key, value);
  }

  /** The value of key, waiting for another rank to set it (up to the store's timeout). */
  get(key: string): string {
    return native.storeGet(this.handle, key);
  }

  add(key: string, delta: number): number {
    return native.storeAdd(this.handle, key, delta);
  }

  dispose(): void {
    if (this.#handle >= 0) native.storeRelease(this.#handle);
    this.#handle = -1;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** An asynchronous collective in flight. wait() throws the collective's error. */
export class Work {
  #handle: number;
  readonly #after: (() => void) | undefined;

  constructor(handle: number, after?: () => void) {
    this.#handle = handle;
    this.#after = after;
  }

  /** Blocks until the collective finished on this rank (the group's timeout applies). */
  wait(): void {
    if (this.#handle < 0) return;
    const h = this.#handle;
    this.#handle = -1;
    try {
      native.workWait(h, null);
    } finally {
      native.workRelease(h);
    }
    this.#after?.();
  }

  isCompleted(): boolean {
    return this.#handle < 0 || native.workIsCompleted(this.#handle);
  }
}

/** Largest packed buffer of coalesced collectives (as PyTorch's module-state sync). */
const COALESCE_BYTES = 256 * 1024 * 1024;

/**
 * Runs `collective` on flat buffers that pack the tensors (grouped by dtype and
 * device, up to COALESCE_BYTES each), then copies the results back in place:
 * one collective per buffer instead of one per tensor.
 */
function coalesced(tensors: readonly Tensor[], collective: (flat: Tensor) => void): void {
  const groups = new Map<string, Tensor[][]>();
  const bytes = new Map<string, number>();
  for (const t of tensors) {
    const key = `${t.dtype}@${t.device}`;
    const size = t.numel() * elementSize(t.dtype);
    let chunks = groups.get(key);
    if (!chunks) groups.set(key, (chunks = [[]]));
    if ((bytes.get(key) ?? 0) + size > COALESCE_BYTES && chunks.at(-1)!.length > 0) {
      chunks.push([]);
      bytes.set(key, 0);
    }
    chunks.at(-1)!.push(t);
    bytes.set(key, (bytes.get(key) ?? 0) + size);
  }
  for (const chunks of groups.values())
    for (const chunk of chunks)
      // Without autograd: the collectives act on data, in place.
      tidy(() =>
        noGrad(() => {
          const flat = cat(chunk.map((t) => t.reshape([-1])));
          collective(flat);
          let offset = 0;
          for (const t of chunk) {
            t.copy_(flat.narrow(0, offset, t.numel()).view(t.shape));
            offset += t.numel();
          }
        }),
      );
}

let groupsCreated = 0;

export interface ProcessGroupOptions {
  backend?: Backend;
  /** Collective timeout (default 30 min). */
  timeoutMs?: number;
}

/** A set of ranks that run collectives together (all ranks of the store). */
export class ProcessGroup {
  #handle: number;
  readonly backend: Backend;

  constructor(
    readonly store: Store,
    readonly rank: number,
    readonly size: number,
    opts: ProcessGroupOptions = {},
  ) {
    this.backend = opts.backend ?? 'gloo';
    // Groups are created in the same order on every rank, so the count names
    // the same group everywhere (as torch.distributed's store prefixes).
    const prefix = `epg_pg/${groupsCreated++}/`;
    this.#handle = native.groupCreate(
      store.handle,
      rank,
      size,
      this.backend,
      opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      prefix,
    );
  }

  get handle(): number {
    if (this.#handle < 0) throw new Error('ProcessGroup: used after dispose()');
    return this.#handle;
  }

  /** Reduces the tensor in place across ranks, asynchronously. */
  allReduceAsync(t: Tensor, op: ReduceOp = 'sum'): Work {
    // Gloo has no AVG: sum, then divide (what torch.distributed asks users to do).
    if (op === 'avg' && (this.backend === 'gloo' || t.device === 'cpu')) {
      const w = native.allReduce(this.handle, [t.id], 'sum');
      return new Work(w, () => t.div_(this.size));
    }
    return new Work(native.allReduce(this.handle, [t.id], op));
  }

  /** Reduces the tensors in place across ranks (several are packed into one buffer per dtype and device). */
  allReduce(tensors: Tensor | readonly Tensor[], op: ReduceOp = 'sum'): void {
    if (!Array.isArray(tensors)) return this.allReduceAsync(tensors as Tensor, op).wait();
    coalesced(tensors as readonly Tensor[], (flat) => this.allReduceAsync(flat, op).wait());
  }

  /** Every rank's tensor concatenated along dim 0, in rank order (same shape on all ranks). No gradient. */
  allGather(t: Tensor): Tensor {
    if (t.ndim === 0) throw new TypeError('allGather: expected a tensor with a leading dimension, got a scalar');
    return noGrad(() => this.allGatherWithGrad(t));
  }

  /** Copies root's tensors into every rank's, in place (several are packed into one buffer per dtype and device). */
  broadcast(tensors: Tensor | readonly Tensor[], root = 0): void {
    const one = (t: Tensor): void => new Work(native.broadcast(this.handle, [t.id], root)).wait();
    if (!Array.isArray(tensors)) return one(tensors as Tensor);
    coalesced(tensors as readonly Tensor[], one);
  }

  /** Waits until every rank reached this point. */
  barrier(): void {
    new Work(native.barrier(this.handle)).wait();
  }

  /** Σ over ranks, differentiable: the gradient is the Σ over ranks of the incoming gradients. */
  allReduceWithGrad(t: Tensor): Tensor {
    return new Tensor(native.allReduceWithGrad(this.handle, t.id));
  }

  /**
   * Every rank's tensor concatenated along dim 0, differentiable: each rank's
   * input receives the sum over ranks of the gradient of its rows.
   */
  allGatherWithGrad(t: Tensor): Tensor {
    return new Tensor(native.allGatherWithGrad(this.handle, t.id));
  }

  dispose(): void {
    if (this.#handle >= 0) native.groupRelease(this.#handle);
    this.#handle = -1;
  }
}

let defaultGroup: ProcessGroup | null = null;

export interface InitOptions extends ProcessGroupOptions {
  rank?: number;
  worldSize?: number;
  masterAddr?: string;
  masterPort?: number;
  /** How long to wait for all ranks to join (default 5 min, or $EPG_RENDEZVOUS_TIMEOUT seconds). */
  rendezvousTimeoutMs?: number;
}

/**
 * Joins (or, on rank 0, serves) the rendezvous and creates the default process
 * group. Unset options come from the environment (torchrun's contract: RANK,
 * WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
 */
export function initProcessGroup(opts: InitOptions = {}): ProcessGroup {
  requireDist();
  if (defaultGroup) throw new Error('initProcessGroup: the default process group already exists');
  const env = distEnv();
  const rank = opts.rank ?? env?.rank;
  const worldSize = opts.worldSize ?? env?.worldSize;
  if (rank === undefined || worldSize === undefined)
    throw new Error(
      'initProcessGroup: no RANK/WORLD_SIZE in the environment: start with `epg launch` or torchrun, or pass rank and worldSize',
    );
  const envTimeout = Number(process.env.EPG_RENDEZVOUS_TIMEOUT);
  const rendezvousTimeoutMs =
    opts.rendezvousTimeoutMs ?? (envTimeout > 0 ? envTimeout * 1000 : DEFAULT_RENDEZVOUS_TIMEOUT_MS);
  const store = new Store(
    opts.masterAddr ?? env?.masterAddr ?? '127.0.0.1',
    opts.masterPort ?? env?.masterPort ?? 29500,
    {
      isServer: rank === 0,
      worldSize,
      timeoutMs: rendezvousTimeoutMs,
    },
  );
  defaultGroup = new ProcessGroup(store, rank, worldSize, opts);
  return defaultGroup;
}

export function isInitialized(): boolean {
  return defaultGroup !== null;
}

/** The default group (throws when there is none). */
export function getDefaultGroup(): ProcessGroup {
  if (!defaultGroup) throw new Error('no default process group: call dist.initProcessGroup() first');
  return defaultGroup;
}

/** This process's rank (0 when not distributed). */
export function getRank(): number {
  return defaultGroup?.rank ?? 0;
}

/** The number of processes (1 when not distributed). */
export function getWorldSize(): number {
  return defaultGroup?.size ?? 1;
}

export function destroyProcessGroup(): void {
  if (!defaultGroup) return;
  const store = defaultGroup.store;
  defaultGroup.dispose();
  store.dispose();
  defaultGroup = null;
}
