// Capture checks: what a CUDA graph cannot hold, refused with a message that
// says so, on every device.
//
// A CUDA graph records kernels; it cannot record the host. Creating a tensor
// from JS data (a pageable host→device copy), reading one back (item,
// toArray, a device→host copy) or moving one between devices synchronises the
// stream, which ends a capture with an opaque CUDA error. Inside a graphed
// function (cuda.GraphedFunction) those calls, and reading, setting or seeding a
// generator's state, throw a CaptureError naming the call, on the CPU too: a CPU
// test catches them before the step meets a GPU. It cannot catch what libtorch
// synchronises internally (nonzero, boolean-mask indexing, ops whose output
// size depends on data); those stay for a GPU test.
import { TorchError } from './errors.js';

/** A host transfer or synchronisation inside a graphed function. */
export class CaptureError extends TorchError {
  override name = 'CaptureError';
}

/** What is being captured (for messages), innermost last. */
const regions: string[] = [];

/** Whether a graphed function's body is running (captured or checked). */
export function inCaptureRegion(): boolean {
  return regions.length > 0;
}

/** The innermost region being captured or checked ('' outside). */
export function captureRegion(): string {
  return regions[regions.length - 1] ?? '';
}

/** Throws a CaptureError when `action` happens inside a graphed function. */
export function checkCaptureSafe(action: string): void {
  if (regions.length === 0) return;
  throw new CaptureError(
    `${action} inside ${regions[regions.length - 1]}: a CUDA graph records kernels only, and this ` +
      `transfers data to or from the host (which synchronises the stream). Create such tensors once, ` +
      `outside the graphed function, and read results from its outputs after the call.`,
  );
}

/**
 * Runs fn with the capture checks on: host transfers throw a CaptureError.
 * `what` names the region in the message ('the training step').
 */
export function withCaptureChecks<T>(what: string, fn: () => T): T {
  regions.push(what);
  try {
    return fn();
  } finally {
    regions.pop();
  }
}
