// Deterministic release of native tensors (STYLE.md habits 20-22).
//
// Every tensor created while a scope is open belongs to that scope and is freed
// when the scope closes, except what the scope's function returns (which moves
// to the enclosing scope) and what was kept with keep(). Scopes are synchronous:
// a function that returns a Promise is rejected, because other work could
// interleave with it. For async code use explicit dispose() or `using`.

import { native } from './native.js';

/** What a scope can own: tensors, and anything else with native memory. */
export interface Tracked {
  dispose(): void;
  readonly isDisposed: boolean;
  /** Set by keep(): no scope will free it. */
  kept: boolean;
  /**
   * Called when no scope owns it any more (kept, or returned from the
   * outermost scope): the owner may then arm a GC backstop. Objects born in a
   * scope skip that cost unless they outlive it.
   */
  unscoped?(): void;
}

export const TRACKED: unique symbol = Symbol('epg.tracked');

function isTracked(x: unknown): x is Tracked {
  return typeof x === 'object' && x !== null && (x as { [TRACKED]?: boolean })[TRACKED] === true;
}

const stack: Tracked[][] = [];

// A closing scope's tensor ids, freed in one crossing (native.disposeMany); an
// addon built before disposeMany existed frees them one by one.
const batchFree = typeof native.disposeMany === 'function';
let releasedIds = new Int32Array(256);
let releaseIdOf: ((t: Tracked) => number) | undefined;

/**
 * @internal tensor.ts hands over how to take a tensor's native id for a batched
 * free: mark it freed and return its id (-1 for anything that is not a Tensor).
 */
export function _setReleaseId(f: (t: Tracked) => number): void {
  releaseIdOf = f;
}

function disposeOwned(owned: readonly Tracked[], survivors: ReadonlySet<Tracked>): void {
  let n = 0;
  for (const t of owned) {
    if (t.kept || t.isDisposed || survivors.has(t)) continue;
    const id = batchFree && releaseIdOf !== undefined ? releaseIdOf(t) : -1;
    if (id < 0) {
      t.dispose();
      continue;
    }
    if (n === releasedIds.length) {
      const grown = new Int32Array(n * 2);
      grown.set(releasedIds);
      releasedIds = grown;
    }
    releasedIds[n++] = id;
  }
  if (n > 0) native.disposeMany!(releasedIds.subarray(0, n));
}

export interface ScopeStats {
  /** Depth of open scopes. */
  depth: number;
  /** Objects owned by the innermost scope. */
  tracked: number;
}

/** Called by every tracked constructor: the innermost open scope takes ownership. Returns whether one did. */
export function track(t: Tracked): boolean {
  if (stack.length === 0) return false;
  stack[stack.length - 1]!.push(t);
  return true;
}

function collect(value: unknown, out: Set<Tracked>, depth = 0): void {
  if (depth > 6 || value === null || typeof value !== 'object') return;
  if (isTracked(value)) {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, out, depth + 1);
  } else if (value instanceof Map) {
    for (const v of value.values()) collect(v, out, depth + 1);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, out, depth + 1);
  }
}

/**
 * Runs fn in a new scope: tensors created inside are freed when it returns,
 * except those in its result (found in arrays, Maps and plain objects), which
 * are handed to the enclosing scope. Also frees on throw.
 */
export function tidy<T>(fn: () => T): T {
  const owned: Tracked[] = [];
  stack.push(owned);
  let result: T | undefined;
  let ok = false;
  try {
    result = fn();
    if (result instanceof Promise) {
      // The caller gets the TypeError; a later rejection of the promise must not
      // also surface as an unhandled rejection (which ends the process).
      (result as Promise<unknown>).catch(() => undefined);
      throw new TypeError(
        'tidy()/scope() functions must be synchronous: an async function would let other work ' +
          'interleave with the scope. Dispose tensors explicitly (or with `using`) in async code.',
      );
    }
    ok = true;
  } finally {
    stack.pop();
    const survivors = new Set<Tracked>();
    if (ok) collect(result, survivors);
    disposeOwned(owned, survivors);
    const parent = stack[stack.length - 1];
    for (const t of survivors) {
      if (t.kept) continue;
      if (parent !== undefined) parent.push(t);
      else t.unscoped?.();
    }
  }
  return result as T;
}

/** Alias of tidy, with TorchSharp's name. */
export const scope = tidy;

/** Exempts t from every scope: it lives until disposed explicitly (or collected). */
export function keep<T extends Tracked>(t: T): T {
  t.kept = true;
  t.unscoped?.();
  return t;
}

/** Frees every tracked object in `all` except those in `except`. */
export function disposeAllBut(all: Iterable<Tracked>, ...except: Tracked[]): void {
  const keepSet = new Set(except);
  for (const t of all) if (!keepSet.has(t) && !t.isDisposed) t.dispose();
}

export function scopeStats(): ScopeStats {
  return { depth: stack.length, tracked: stack[stack.length - 1]?.length ?? 0 };
}
