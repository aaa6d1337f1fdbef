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
