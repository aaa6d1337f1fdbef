// @epg/torch: libtorch for TypeScript.
//
//   import * as torch from '@epg/torch';
//   const y = torch.tidy(() => torch.randn([2, 3]).mul(2).sum());
//
// Names follow PyTorch's, camelCased. Tensors are freed deterministically:
// tidy()/scope(), `using`, or dispose(); see scope.ts.
import { Generator } from './random.js';
import { dtypeCode, type DType } from './dtype.js';
import { native, type NativeArg, type NativeInfo, type NativeResult, type OpInfo } from './native.js';
import { callNative, opRef, listOps } from './ops.js';
import { Tensor } from './tensor.js';

export * from './creation.js';
export {
  Tensor,
  slice,
  liveTensors,
  setFinalizerBackstop,
  type IndexItem,
  type Slice,
  type NestedArray,
} from './tensor.js';
export type { ToOptions, ReduceOptions, VarOptions } from './tensor.js';
export { tidy, scope, keep, disposeAllBut, scopeStats, type ScopeStats } from './scope.js';
export * from './autograd.js';
export * from './autocast.js';
export { checkpoint, CheckpointTape, isCheckpointing, type CheckpointTapeOptions } from './checkpoint.js';
export { manualSeed, Generator } from './random.js';
export { keepHostMemoryMapped, hostMemoryKeptMapped } from './host-memory.js';
export { TorchError, DisposedTensorError } from './errors.js';
export { DTYPES, isFloatingDtype, elementSize, type DType, type AnyTypedArray } from './dtype.js';
export { checkDevice, type Device } from './device.js';
/** Every ATen overload with a JS form, typed: aten.add$Tensor(a, b); see scripts/gen-ops.mjs. */
export * as aten from './generated/aten.js';
export * as functional from './functional.js';
export * as F from './functional.js';
export * as linalg from './linalg.js';
export * as cuda from './cuda.js';
export * as jit from './jit.js';
export * as testing from './testing.js';
export * as io from './io/index.js';
export * as nn from './nn/index.js';
export * as optim from './optim/index.js';
export * as dist from './distributed/index.js';
export * as onnx from './onnx/index.js';
export * as cli from './cli-args.js';

/** Build and runtime information about the libtorch in use. */
export function info(): NativeInfo {
  return native.info();
}

/** Intra-op threads libtorch uses on the CPU. */
export function setNumThreads(n: number): void {
  native.setNumThreads(n);
}

export function getNumThreads(): number {
  return native.info().numThreads;
}

/** A value accepted by ops.call: tensors, numbers, booleans, strings, dtypes (as { dtype }), lists. */
export type OpArg =
  Tensor | Generator | number | boolean | string | null | undefined | { dtype: DType } | readonly OpArg[];

/** What ops.call returns: tensors where the schema says Tensor, otherwise plain values. */
export type OpResult = Tensor | Tensor[] | number | boolean | string | null | undefined | OpResult[];

function toNativeArg(a: OpArg): NativeArg {
  if (a instanceof Tensor) return a.id;
  if (a instanceof Generator) return a.handle;
  if (Array.isArray(a)) return (a as readonly OpArg[]).map(toNativeArg);
  if (a !== null && typeof a === 'object' && 'dtype' in a) return dtypeCode(a.dtype);
  return a as NativeArg;
}

function fromNative(kind: string, r: NativeResult): OpResult {
  if (kind === 'Tensor') return typeof r === 'number' && r >= 0 ? new Tensor(r) : null;
  if (kind === 'Tensor[]' || kind === 'Tensor?[]')
    return (r as number[]).map((id) => (id >= 0 ? new Tensor(id) : null)) as Tensor[];
  return r as OpResult;
}

const returnKinds = new Map<string, string[]>();

/** The generic escape hatch to every ATen operator, and its schema. */
export const ops = {
  /**
   * ops.call('aten::add', 'Tensor', a, b, 2): arguments positional in schema
   * order, undefined for a default; several returns come back as an array.
   */
  call(name: string, overload: string, ...args: OpArg[]): OpResult {
    const ref = opRef(name.replace(/^aten::/, ''), overload);
    const key = `${ref.name}.${ref.overload}`;
    let kinds = returnKinds.get(key);
    if (kinds === undefined) {
      kinds = ref.info().returns;
      returnKinds.set(key, kinds);
    }
    const r = callNative(ref, ...args.map(toNativeArg));
    if (kinds.length === 1) return fromNative(kinds[0]!, r);
    if (kinds.length === 0) return undefined;
    return (r as NativeResult[]).map((v, i) => fromNative(kinds[i]!, v));
  },
  /** The schema of name.overload, e.g. info('add', 'Tensor'). */
  info(name: string, overload = ''): OpInfo {
    return opRef(name.replace(/^aten::/, ''), overload).info();
  },
  /** Every operator this libtorch registers. */
  list: listOps,
};
