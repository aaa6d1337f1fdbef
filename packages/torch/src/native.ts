// The native addon (build/epg_torch.node) and the exact shape of what it exports.
// Everything here is internal: the public API wraps it with types and scopes.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { AnyTypedArray } from './dtype.js';

/** A value the dispatcher can convert: tensor ids are numbers, lists are arrays. */
export type NativeArg = number | boolean | string | null | undefined | readonly NativeArg[];
export type NativeResult = number | boolean | string | null | undefined | NativeResult[];
/** Untyped (TorchScript) values: tensors are marked as {tensor: id}. */
export type UntypedValue =
  number | boolean | string | null | { tensor: number } | UntypedValue[] | { [key: string]: UntypedValue };

export interface OpInfo {
  name: string;
  schema: string;
  args: { name: string; type: string; optional: boolean; hasDefault: boolean }[];
  returns: string[];
}

export interface NativeInfo {
  torchVersion: string;
  cudaCompiled: boolean;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  numThreads: number;
  numInteropThreads: number;
  parallelInfo: string;
  config: string;
}

export interface CudaMemoryStats {
  allocatedBytes: number;
  allocatedBytesPeak: number;
  reservedBytes: number;
  reservedBytesPeak: number;
  numAllocRetries: number;
  numOoms: number;
}

export interface NativeBinding {
  opHandle(name: string, overload: string): number;
  opInfo(handle: number): OpInfo;
  call(handle: number, ...args: NativeArg[]): NativeResult;
  listOps(): string[];

  fromBuffer(data: AnyTypedArray, dtype: number, shape: readonly number[], copy: boolean): number;
  toBuffer(id: number): ArrayBuffer;
  toBufferAsync(id: number): Promise<ArrayBuffer>;
  shape(id: number): number[];
  strides(id: number): number[];
  dtype(id: number): number;
  device(id: number): string;
  flags(id: number): number;
  dispose(id: number): void;
  /** dispose() of each id in one call (absent from addons built before it). */
  disposeMany?(ids: Int32Array): void;
  liveTensors(): number;
  dataPtr(id: number): number;

  backward(
    tensors: number[],
    grads: (number | null)[] | null,
    retainGraph: boolean | null,
    createGraph: boolean,
    inputs: number[] | null,
  ): void;
  grad(
    outputs: number[],
    inputs: number[],
    gradOutputs: (number | null)[] | null,
    retainGraph: boolean | null,
    createGraph: boolean,
    allowUnused: boolean,
  ): number[];
  getGrad(id: number): number;
  setGrad(id: number, grad: number | null): void;
  setRequiresGrad(id: number, flag: boolean): void;
  retainGrad(id: number): void;
  gradFnName(id: number): string | null;
  setGradEnabled(enabled: boolean): boolean;
  isGradEnabled(): boolean;
  inferenceModeEnter(enabled: boolean): number;
  inferenceModeExit(depth: number): void;
  isInferenceMode(): boolean;
  autocastSet(deviceType: string, enabled: boolean, dtype: number | null): [boolean, number];
  autocastNesting(delta: number): number;
  isAutocastEnabled(deviceType: string): boolean;
  enterDualLevel(): number;
  exitDualLevel(level: number): void;

  info(): NativeInfo;
  setNumThreads(n: number): void;
  setMallocOptions(mmapThreshold: number, trimThreshold: number): boolean;
  manualSeed(seed: number): void;
  generatorDefault(device: string): number;
  generatorCreate(device: string, seed: number): number;
  generatorSeed(handle: number, seed: number): void;
  generatorGetState(handle: number): number;
  generatorSetState(handle: number, state: number): void;
  generatorDispose(handle: number): void;
  jitLoad(path: string, device: string | null): number;
  jitCall(handle: number, method: string, inputs: UntypedValue[]): UntypedValue;
  jitTo(handle: number, device: string): void;
  jitDispose(handle: number): void;

  cudaSynchronize(device: number | null): void;
  cudaSetDevice(device: number): void;
  cudaCurrentDevice(): number;
  cudaMemoryStats(device: number | null): CudaMemoryStats;
  cudaResetPeakStats(device: number | null): void;
  cudaEmptyCache(): void;
  streamCreate(device: number | null, highPriority: boolean): number;
  streamCurrent(device: number | null): number;
  streamSetCurrent(handle: number): number;
  streamSynchronize(handle: number): void;
  streamWait(waiter: number, waited: number): void;
  streamDispose(handle: number): void;
  graphCreate(): number;
  graphCaptureBegin(handle: number): void;
  graphCaptureEnd(handle: number): void;
  graphReplay(handle: number): void;
  graphDispose(handle: number): void;

  // c10d (src/distributed): present when the addon was built with it (distInfo().available).
  distInfo(): { available: boolean; nccl: boolean };
  storeCreate(host: string, port: number, isServer: boolean, worldSize: number, timeoutMs: number): number;
  storeSet(store: number, key: string, value: string): void;
  storeGet(store: number, key: string): string;
  storeAdd(store: number, key: string, delta: number): number;
  storeRelease(store: number): void;
  groupCreate(store: number, rank: number, size: number, backend: string, timeoutMs: number, prefix: string): number;
  groupRelease(group: number): void;
  allReduce(group: number, tensors: number[], op: string): number;
  broadcast(group: number, tensors: number[], root: number): number;
  barrier(group: number): number;
  workWait(work: number, timeoutMs: number | null): boolean;
  workIsCompleted(work: number): boolean;
  workRelease(work: number): void;
  allReduceWithGrad(group: number, input: number): number;
  allGatherWithGrad(group: number, input: number): number;
  reducerCreate(
    group: number,
    params: number[],
    bucketCapBytes: number,
    firstBucketCapBytes: number,
    findUnusedParameters: boolean,
    gradientAsBucketView: boolean,
  ): number;
  reducerPrepareForward(reducer: number): void;
  reducerPrepareBackward(reducer: number, outputs: number[]): void;
  reducerRelease(reducer: number): void;
}

function addonPath(): string {
  if (process.env.EPG_TORCH_ADDON) return resolve(process.env.EPG_TORCH_ADDON);
  // dist/src/native.js -> package root
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, 'build', 'epg_torch.node');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(
    '@epg/torch: the native addon (build/epg_torch.node) is not built. Run `npm run setup` at the ' +
      'repository root (or `npm run build:native`), or set EPG_TORCH_ADDON to its path.',
  );
}

function load(): NativeBinding {
  const path = addonPath();
  try {
    return createRequire(import.meta.url)(path) as NativeBinding;
  } catch (e) {
    throw new Error(
      `@epg/torch: cannot load the native addon ${path}: ${(e as Error).message}. ` +
        'If libtorch moved or was upgraded, rebuild with `npm run build:native`.',
    );
  }
}

export const native: NativeBinding = load();
