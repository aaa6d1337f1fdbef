// Autograd: reverse mode (backward, grad), forward mode (jvp with dual tensors),
// and the grad-mode / inference-mode scopes. Mode scopes restore the previous
// mode in `finally`, so an exception never leaves a mode switched (STYLE.md 23).
import { rethrowNative } from './errors.js';
import { native } from './native.js';
import { callNative, opRef } from './ops.js';
import { Tensor, _ids as ids, _wrap as wrap } from './tensor.js';
import { tidy } from './scope.js';

/** Runs fn with gradient recording off (torch.no_grad). */
export function noGrad<T>(fn: () => T): T {
  const prev = native.setGradEnabled(false);
  try {
    return fn();
  } finally {
    native.setGradEnabled(prev);
  }
}

/** Runs fn with gradient recording on (torch.enable_grad). */
export function enableGrad<T>(fn: () => T): T {
  const prev = native.setGradEnabled(true);
  try {
    return fn();
  } finally {
    native.setGradEnabled(prev);
  }
}

export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

/** A disposable guard: `using _ = gradModeGuard(false)`. */
export function gradModeGuard(enabled: boolean): Disposable {
  const prev = native.setGradEnabled(enabled);
  return { [Symbol.dispose]: () => void native.setGradEnabled(prev) };
}

/** Runs fn in inference mode (torch.inference_mode): no autograd, no version counters. */
export function inferenceMode<T>(fn: () => T, enabled = true): T {
  const depth = native.inferenceModeEnter(enabled);
  try {
    return fn();
  } finally {
    native.inferenceModeExit(depth);
  }
}

export function isInferenceMode(): boolean {
  return native.isInferenceMode();
}

export interface GradOptions {
  gradOutputs?: (Tensor | null)[];
  retainGraph?: boolean;
  createGraph?: boolean;
  allowUnused?: boolean;
}

/** Gradients of outputs with respect to inputs (torch.autograd.grad); null where unused. */
export function grad(outputs: Tensor | Tensor[], inputs: Tensor | Tensor[], opts: GradOptions = {}): (Tensor | null)[] {
  const outs = Array.isArray(outputs) ? outputs : [outputs];
  const ins = Array.isArray(inputs) ? inputs : [inputs];
  try {
    const r = native.grad(
      ids(outs),
      ids(ins),
      opts.gradOutputs ? opts.gradOutputs.map((g) => (g === null ? null : g.id)) : null,
      opts.retainGraph ?? null,
      opts.createGraph ?? false,
      opts.allowUnused ?? false,
    );
    return r.map((id) => (id >= 0 ? new Tensor(id) : null));
  } catch (e) {
    rethrowNative(e);
  }
}

/** Backpropagates from several tensors at once (torch.autograd.backward). */
export function backward(
  tensors: Tensor[],
  gradTensors?: (Tensor | null)[],
  opts: { retainGraph?: boolean; createGraph?: boolean; inputs?: Tensor[] } = {},
): void {
  try {
    native.backward(
      ids(tensors),
      gradTensors ? gradTensors.map((g) => (g === null ? null : g.id)) : null,
      opts.retainGraph ?? null,
      opts.createGraph ?? false,
      opts.inputs ? ids(opts.inputs) : null,
    );
  } catch (e) {
    rethrowNative(e);
  }
}

const makeDual = opRef('_make_dual');
const unpackDual = opRef('_unpack_dual');
const zerosLike = opRef('zeros_like');

/**
 * Forward-mode derivative: evaluates fn(primals) and its directional derivative
 * along tangents in one pass with dual tensors (jax.jvp's shape; torch.func.jvp).
 * Returns [outputs, tangentOutputs]; fn may return one tensor or an array.
 */
export function jvp(
  fn: (...xs: Tensor[]) => Tensor | Tensor[],
  primals: Tensor[],
  tangents: Tensor[],
): [Tensor[], Tensor[]] {
  if (primals.length !== tangents.length)
    throw new TypeError(`jvp: ${primals.length} primals but ${tangents.length} tangents`);
  const level = native.enterDualLevel();
  try {
    return tidy(() => {
      const duals = primals.map((p, i) => wrap(callNative(makeDual, p.id, tangents[i]!.id, level)));
      const out = fn(...duals);
      const outs = Array.isArray(out) ? out : [out];
      const primalsOut: Tensor[] = [];
      const tangentsOut: Tensor[] = [];
      for (const o of outs) {
        const [pid, tid] = callNative(unpackDual, o.id, level) as [number, number];
        const p = wrap(pid);
        // Detach from the dual level before it closes; clone so the result owns its memory.
        primalsOut.push(p.clone());
        // An output that does not depend on the primals has no tangent: it is zero
        // (as in torch.func.jvp).
        tangentsOut.push(tid >= 0 ? wrap(tid).clone() : wrap(callNative(zerosLike, p.id)));
      }
      return [primalsOut, tangentsOut] as [Tensor[], Tensor[]];
    });
  } finally {
    native.exitDualLevel(level);
  }
}
