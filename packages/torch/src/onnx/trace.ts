// Operator-level tracing, as torch.onnx.export (TorchScript tracing) records
// PyTorch: the function runs once on real tensors while the hook in ops.ts
// (setOpObserver) records every ATen call with its schema, its native arguments
// (tensor ids, numbers, lists) and its result, and where in the traced function
// it was called. Tensors stay alive until the trace has been converted, so no
// native slot id is reused within one trace (ids are recycled after dispose).
import { native, type NativeArg, type NativeResult, type OpInfo } from '../native.js';
import { setOpObserver, type OpRef } from '../ops.js';
import { Tensor } from '../tensor.js';

/** One recorded operator call. */
export interface TracedCall {
  /** 'aten::name.overload' ('aten::add.Tensor'; no overload: 'aten::relu'). */
  readonly op: string;
  readonly info: OpInfo;
  readonly args: readonly NativeArg[];
  readonly result: NativeResult;
  /** The first stack frame outside @epg/torch: where the traced code made the call. */
  readonly site: string;
}

export interface Trace {
  readonly calls: readonly TracedCall[];
  /** Tensor ids of the example inputs, in order. */
  readonly inputIds: readonly number[];
  /** Tensor ids of the outputs, in order. */
  readonly outputIds: readonly number[];
  /** Tensors whose values the function read into JavaScript (toTypedArray, toArray), and where. */
  readonly reads: readonly { id: number; site: string }[];
  /** Frees every tensor the traced function created (their disposal was deferred). */
  release(): void;
}

const infoCache = new Map<number, OpInfo>();

function opName(ref: OpRef): string {
  return `aten::${ref.name}${ref.overload ? `.${ref.overload}` : ''}`;
}

// Frames inside @epg/torch's sources (tensor methods, functional, nn layers, this module) are skipped.
const TORCH_FRAME = /[\\/](packages[\\/]torch|@epg[\\/]torch)[\\/](dist[\\/])?src[\\/]|node:internal/;

function callSite(): string {
  const stack = new Error().stack?.split('\n').slice(1) ?? [];
  for (const line of stack) {
    if (!TORCH_FRAME.test(line)) return line.trim().replace(/^at /, '');
  }
  // Called from inside @epg/torch (an nn layer): name the innermost layer frame instead.
  const inner = stack.find((l) => /[\\/]nn[\\/]/.test(l)) ?? stack[0] ?? '(unknown)';
  return inner.trim().replace(/^at /, '');
}

/**
 * Runs fn(inputs) once and records every operator call it makes. Tensors the
 * function disposes are kept alive until release(): the converter reads the
 * values of constants after the run. Nested traces are refused.
 */
export function traceCalls(fn: (inputs: Tensor[]) => Tensor[], inputs: readonly Tensor[]): Trace {
  const calls: TracedCall[] = [];
  const deferred: number[] = [];
  const reads: { id: number; site: string }[] = [];
  const realDispose = native.dispose;
  const realDisposeMany = native.disposeMany;
  const realToBuffer = native.toBuffer;
  const restore = (): void => {
    native.dispose = realDispose;
    native.disposeMany = realDisposeMany;
    native.toBuffer = realToBuffer;
    setOpObserver(null);
  };
  const observer = (ref: OpRef, args: readonly NativeArg[], result: NativeResult): void => {
    let info = infoCache.get(ref.id);
    if (info === undefined) {
      info = ref.info();
      infoCache.set(ref.id, info);
    }
    calls.push({ op: opName(ref), info, args: [...args], result, site: callSite() });
  };
  const previous = setOpObserver(observer);
  if (previous !== null) {
    setOpObserver(previous);
    throw new Error('onnx: a trace is already running (traces cannot nest)');
  }
  native.dispose = (id: number) => {
    deferred.push(id);
  };
  // A closing scope frees its tensors in one call (scope.ts): deferred the same way.
  if (realDisposeMany !== undefined)
    native.disposeMany = (ids: Int32Array) => {
      for (const id of ids) deferred.push(id);
    };
  // Reads of tensor values into JavaScript are recorded: one of a value computed from the inputs
  // would bake that value (data-dependent control flow) into the graph, so the converter refuses it.
  native.toBuffer = (id: number) => {
    reads.push({ id, site: callSite() });
    return realToBuffer(id);
  };
  let outputs: Tensor[];
  try {
    outputs = fn([...inputs]);
  } catch (e) {
    restore();
    for (const id of deferred) realDispose(id);
    throw e;
  }
  restore();
  if (!Array.isArray(outputs) || outputs.some((t) => !(t instanceof Tensor)))
    throw new TypeError('onnx: the traced function must return an array of tensors');
  return {
    calls,
    inputIds: inputs.map((t) => t.id),
    outputIds: outputs.map((t) => t.id),
    reads,
    release: () => {
      for (const id of deferred) realDispose(id);
      deferred.length = 0;
      for (const t of outputs) t.dispose();
    },
  };
}
