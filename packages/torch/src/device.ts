/** A device as PyTorch names it: 'cpu', 'cuda' (the current CUDA device) or 'cuda:N'. */
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;

const DEVICE_RE = /^(cpu|cuda(:\d+)?)$/;

export function checkDevice(device: string, what = 'device'): Device {
  if (typeof device !== 'string' || !DEVICE_RE.test(device))
    throw new TypeError(`${what}: expected 'cpu', 'cuda' or 'cuda:N', got ${JSON.stringify(device)}`);
  return device as Device;
}
