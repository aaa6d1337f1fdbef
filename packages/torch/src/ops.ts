// Operator handles and the generic call. Every ATen operator is reachable as
// ops.call('aten::name', 'overload', ...args) with positional arguments in the
// schema's order; undefined takes the schema's default.
import { rethrowNative } from './errors.js';
import { native, type NativeArg, type NativeResult, type OpInfo } from './native.js';

/** A lazily resolved (operator, overload) pair; resolution happens once. */
export class OpRef {
  private handle = -1;
  constructor(
    readonly name: string,
    readonly overload = '',
  ) {}

  get id(): number {
    if (this.handle < 0) {
      try {
        this.handle = native.opHandle(this.name, this.overload);
      } catch (e) {
        rethrowNative(e);
      }
    }
    return this.handle;
  }

  info(): OpInfo {
    return native.opInfo(this.id);
  }
}

const refs = new Map<string, OpRef>();

/** The cached OpRef of name.overload ('add', 'Tensor'); 'aten::' is implied. */
export function opRef(name: string, overload = ''): OpRef {
  const key = `${name}.${overload}`;
  let ref = refs.get(key);
  if (ref === undefined) {
    ref = new OpRef(name, overload);
    refs.set(key, ref);
  }
  return ref;
}

/** Sees every operator call (the ONNX exporter's tracer, onnx/trace.ts): arguments and result. */
export type OpObserver = (ref: OpRef, args: readonly NativeArg[], result: NativeResult) => void;

// --- TRACER HOOK. Every operator call, typed or not, ends in native.call(handle, ...args):
// the generated bindings (generated/aten.ts) call it directly, callNative and ops.call
// through here. While an observer is installed, native.call is wrapped to report each
// call; otherwise it is the addon's own function and costs nothing extra.
let opObserver: OpObserver | null = null;
let addonCall: typeof native.call | null = null;
const refsByHandle = new Map<number, OpRef>();

/** The OpRef of a resolved handle ('aten::add.Tensor' → name 'add', overload 'Tensor'). */
function refOfHandle(handle: number): OpRef {
  let ref = refsByHandle.get(handle);
  if (ref === undefined) {
    const full = native.opInfo(handle).name.replace(/^aten::/, '');
    const dot = full.indexOf('.');
    ref = dot < 0 ? opRef(full) : opRef(full.slice(0, dot), full.slice(dot + 1));
    refsByHandle.set(handle, ref);
  }
  return ref;
}

/** Installs (or with null removes) the operator observer; returns the previous one. Internal: onnx/trace.ts. */
export function setOpObserver(observer: OpObserver | null): OpObserver | null {
  const previous = opObserver;
  opObserver = observer;
  if (observer !== null && addonCall === null) {
    const call = (addonCall = native.call);
    native.call = (handle: number, ...args: NativeArg[]): NativeResult => {
      const result = call(handle, ...args);
      if (opObserver !== null) opObserver(refOfHandle(handle), args, result);
      return result;
    };
  } else if (observer === null && addonCall !== null) {
    native.call = addonCall;
    addonCall = null;
  }
  return previous;
}

/** Calls an operator with native arguments (tensor ids, numbers, arrays). */
export function callNative(ref: OpRef, ...args: NativeArg[]): NativeResult {
  // Trailing undefined arguments take their defaults anyway; not passing them
  // saves an N-API type check each (~25 ns).
  let n = args.length;
  while (n > 0 && args[n - 1] === undefined) n--;
  if (n < args.length) args.length = n;
  try {
    return native.call(ref.id, ...args);
  } catch (e) {
    rethrowNative(e);
  }
}

/** Every operator registered in this libtorch, as 'aten::name.overload'. */
export function listOps(): string[] {
  return native.listOps();
}
