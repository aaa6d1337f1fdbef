// Automatic mixed precision (torch.autocast): inside the scope, eligible ops run
// in the lower precision on the given device type; the dispatcher does the casts.
import type { DType } from './dtype.js';
import { dtypeCode, dtypeFromCode } from './dtype.js';
import { native } from './native.js';

export type AutocastDeviceType = 'cpu' | 'cuda';

export interface AutocastOptions {
  dtype?: DType;
  enabled?: boolean;
}

/** Runs fn under autocast: autocast('cuda', fn, { dtype: 'bfloat16' }). */
export function autocast<T>(deviceType: AutocastDeviceType, fn: () => T, opts: AutocastOptions = {}): T {
  const guard = autocastGuard(deviceType, opts);
  try {
    return fn();
  } finally {
    guard[Symbol.dispose]();
  }
}

/** A disposable autocast scope: `using _ = autocastGuard('cpu', { dtype: 'bfloat16' })`. */
export function autocastGuard(deviceType: AutocastDeviceType, opts: AutocastOptions = {}): Disposable {
  if (deviceType !== 'cpu' && deviceType !== 'cuda')
    throw new TypeError(`autocast: device type must be 'cpu' or 'cuda'`);
  const dtype = opts.dtype ?? (deviceType === 'cpu' ? 'bfloat16' : 'float16');
  if (!['float16', 'bfloat16', 'float32'].includes(dtype))
    throw new TypeError(`autocast: dtype must be float16 or bfloat16, got ${dtype}`);
  const [prevEnabled, prevDtype] = native.autocastSet(deviceType, opts.enabled ?? true, dtypeCode(dtype));
  native.autocastNesting(1);
  let closed = false;
  return {
    [Symbol.dispose]: () => {
      if (closed) return;
      closed = true;
      native.autocastNesting(-1);
      native.autocastSet(deviceType, prevEnabled, prevDtype);
    },
  };
}

export function isAutocastEnabled(deviceType: AutocastDeviceType): boolean {
  return native.isAutocastEnabled(deviceType);
}

/** The autocast state of a device type: whether it is on and its dtype (what autocastGuard would restore). */
export function autocastState(deviceType: AutocastDeviceType): { enabled: boolean; dtype: DType } {
  // Setting `enabled` to its current value and leaving the dtype alone reads the state without changing it.
  const [enabled, code] = native.autocastSet(deviceType, native.isAutocastEnabled(deviceType), null);
  return { enabled, dtype: dtypeFromCode(code) };
}
