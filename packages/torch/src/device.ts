/**
 * A device as PyTorch names it: 'cpu', 'cuda' (the current CUDA device),
 * 'cuda:N', or 'meta' (shapes and dtypes without storage: building a model
 * there allocates nothing, e.g. to count the parameters of a large preset).
 */
export type Device = 'cpu' | 'cuda' | `cuda:${number}` | 'meta';

const DEVICE_RE = /^(cpu|meta|cuda(:\d+)?)$/;

export function checkDevice(device: string, what = 'device'): Device {
  if (typeof device !== 'string' || !DEVICE_RE.test(device))
    throw new TypeError(`${what}: expected 'cpu', 'cuda', 'cuda:N' or 'meta', got ${JSON.stringify(device)}`);
  return device as Device;
}
