// Module: a tree of named submodules, parameters and buffers, with PyTorch's
// dotted state-dict naming (STYLE.md habit 24), so a PyTorch model's state dict
// maps one to one onto the same architecture written here.
import { checkDevice, type Device } from '../device.js';
import { isFloatingDtype, type DType } from '../dtype.js';
import { noGrad } from '../autograd.js';
import * as aten from '../generated/aten.js';
import { keep } from '../scope.js';
import type { Tensor } from '../tensor.js';

/** Something with a forward from one tensor to one tensor (a layer in Sequential). */
export interface Layer {
  forward(x: Tensor): Tensor;
}

export interface LoadResult {
  missing: string[];
  unexpected: string[];
  /** Keys whose shapes differ: [key, expected shape, given shape]. */
  mismatched: [string, number[], number[]][];
}

/** Thrown by a strict loadStateDict; lists every problem at once. */
export class StateDictError extends Error {
  override name = 'StateDictError';
  constructor(
    readonly result: LoadResult,
    context: string,
  ) {
    const parts: string[] = [];
    if (result.missing.length) parts.push(`missing keys: ${result.missing.join(', ')}`);
    if (result.unexpected.length) parts.push(`unexpected keys: ${result.unexpected.join(', ')}`);
    if (result.mismatched.length)
      parts.push(
        'shape mismatches: ' +
          result.mismatched.map(([k, a, b]) => `${k} (model [${a.join(', ')}], given [${b.join(', ')}])`).join(', '),
      );
    super(`${context}: ${parts.join('; ')}`);
  }
}

export abstract class Module {
  /** Training mode (dropout active, batch norm uses batch statistics). */
  training = true;
  readonly #parameters = new Map<string, Tensor | null>();
  readonly #buffers = new Map<string, Tensor | null>();
  readonly #nonPersistent = new Set<string>();
  readonly #modules = new Map<string, Module | null>();

  /** Registers a parameter (null for an absent optional one): it requires grad and no scope frees it. */
  protected registerParameter<T extends Tensor | null>(name: string, t: T): T {
    this.#checkName(name);
    if (t !== null) {
      keep(t);
      if (!t.requiresGrad && t.isFloatingPoint) t.requiresGrad_(true);
    }
    this.#parameters.set(name, t);
    return t;
  }

  /** Registers a buffer (state that is not trained, e.g. running statistics). */
  protected registerBuffer<T extends Tensor | null>(name: string, t: T, persistent = true): T {
    this.#checkName(name);
    if (t !== null) keep(t);
    this.#buffers.set(name, t);
    if (!persistent) this.#nonPersistent.add(name);
    return t;
  }

  /** Registers a submodule under name. */
  protected registerModule<M extends Module | null>(name: string, m: M): M {
    this.#checkName(name);
    this.#modules.set(name, m);
    return m;
  }

  #checkName(name: string): void {
    if (name === '' || name.includes('.')) throw new TypeError(`invalid name '${name}': non-empty, without '.'`);
    if (this.#parameters.has(name) || this.#buffers.has(name) || this.#modules.has(name))
      throw new TypeError(`'${name}' is already registered in ${this.constructor.name}`);
  }

  /** Replaces a registered parameter's tensor (the old one is disposed unless it is the same). */
  protected replaceParameter(name: string, t: Tensor | null): void {
    if (!this.#parameters.has(name)) throw new TypeError(`no parameter '${name}'`);
    const old = this.#parameters.get(name);
    this.#parameters.delete(name);
    this.registerParameter(name, t);
    if (old && old !== t) old.dispose();
  }

  namedChildren(): [string, Module][] {
    return [...this.#modules].filter((e): e is [string, Module] => e[1] !== null);
  }

  children(): Module[] {
    return this.namedChildren().map(([, m]) => m);
  }

  /** This module and all below it, preorder, with dotted names ('' for this one). */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [];
    const seen = new Set<Module>();
    const visit = (m: Module, p: string): void => {
      if (seen.has(m)) return;
      seen.add(m);
      out.push([p, m]);
      for (const [n, c] of m.namedChildren()) visit(c, p ? `${p}.${n}` : n);
    };
    visit(this, prefix);
    return out;
  }

  modules(): Module[] {
    return this.namedModules().map(([, m]) => m);
  }

  /** Parameters with dotted names, in PyTorch's order (shared ones once). */
  namedParameters(recurse = true): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    const mods: [string, Module][] = recurse ? this.namedModules() : [['', this]];
    for (const [p, m] of mods)
      for (const [n, t] of m.#parameters)
        if (t !== null && !seen.has(t)) {
          seen.add(t);
          out.push([p ? `${p}.${n}` : n, t]);
        }
    return out;
  }

  parameters(recurse = true): Tensor[] {
    return this.namedParameters(recurse).map(([, t]) => t);
  }

  namedBuffers(recurse = true): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const mods: [string, Module][] = recurse ? this.namedModules() : [['', this]];
    for (const [p, m] of mods) for (const [n, t] of m.#buffers) if (t !== null) out.push([p ? `${p}.${n}` : n, t]);
    return out;
  }

  buffers(recurse = true): Tensor[] {
    return this.namedBuffers(recurse).map(([, t]) => t);
  }

  /** Number of parameter elements (trainable only, if asked). */
  numParameters(opts: { trainableOnly?: boolean } = {}): number {
    let n = 0;
    for (const p of this.parameters()) if (!opts.trainableOnly || p.requiresGrad) n += p.numel();
    return n;
  }

  /**
   * The state dict: parameters and persistent buffers under dotted keys, in
   * PyTorch's order (own parameters, own buffers, then each child). The values
   * are new detached handles sharing memory with the module; dispose them (or
   * call this inside a scope) when done.
   */
  stateDict(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    const visit = (m: Module, p: string): void => {
      for (const [n, t] of m.#parameters) if (t !== null) out.set(p + n, t.detach());
      for (const [n, t] of m.#buffers) if (t !== null && !m.#nonPersistent.has(n)) out.set(p + n, t.detach());
      for (const [n, c] of m.#modules) if (c !== null) visit(c, `${p}${n}.`);
    };
    visit(this, '');
    return out;
  }

  /** The tensors a state dict names, by key (the module's own handles: do not dispose). */
  #stateTensors(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    const visit = (m: Module, p: string): void => {
      for (const [n, t] of m.#parameters) if (t !== null) out.set(p + n, t);
      for (const [n, t] of m.#buffers) if (t !== null && !m.#nonPersistent.has(n)) out.set(p + n, t);
      for (const [n, c] of m.#modules) if (c !== null) visit(c, `${p}${n}.`);
    };
    visit(this, '');
    return out;
  }

  /**
   * Copies values from a state dict into this module's tensors (converting
   * dtype and device). strict (default): any missing, unexpected or mis-shaped
   * key is an error listing them all, and nothing is copied. Non-strict: copies
   * what matches and returns the rest.
   */
  loadStateDict(stateDict: Map<string, Tensor> | Record<string, Tensor>, opts: { strict?: boolean } = {}): LoadResult {
    const given = stateDict instanceof Map ? stateDict : new Map(Object.entries(stateDict));
    const own = this.#stateTensors();
    const result: LoadResult = { missing: [], unexpected: [], mismatched: [] };
    for (const [k, t] of own) {
      const src = given.get(k);
      if (src === undefined) result.missing.push(k);
      else if (!sameShape(src.shape, t.shape)) result.mismatched.push([k, t.shape, src.shape]);
    }
    for (const k of given.keys()) if (!own.has(k)) result.unexpected.push(k);
    const strict = opts.strict ?? true;
    const bad = result.missing.length + result.unexpected.length + result.mismatched.length > 0;
    if (strict && bad) throw new StateDictError(result, `loadStateDict(${this.constructor.name})`);
    const mismatched = new Set(result.mismatched.map(([k]) => k));
    noGrad(() => {
      for (const [k, t] of own) {
        const src = given.get(k);
        if (src !== undefined && !mismatched.has(k)) t.copy_(src);
      }
    });
    return result;
  }

  /** Sets training mode here and below. */
  train(mode = true): this {
    for (const m of this.modules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /**
   * Moves parameters and buffers to a device and/or casts floating ones to a
   * dtype, in place: tensor identities are kept (as PyTorch's param.data =),
   * so references held elsewhere (e.g. by an optimizer) stay valid.
   */
  to(target: Device | DType | { device?: Device; dtype?: DType }): this {
    const opts =
      typeof target === 'string'
        ? target === 'cpu' || target === 'meta' || target.startsWith('cuda')
          ? { device: checkDevice(target) }
          : { dtype: target as DType }
        : target;
    noGrad(() => {
      for (const t of [...this.parameters(), ...this.buffers()]) {
        const dtype = opts.dtype !== undefined && isFloatingDtype(t.dtype) ? opts.dtype : t.dtype;
        const device = opts.device ?? t.device;
        if (dtype === t.dtype && device === t.device) continue;
        const moved = t.to({ dtype, device });
        aten.set_data(t, moved);
        moved.dispose();
        const g = t.grad;
        if (g !== null) {
          t.grad = null;
          g.dispose();
        }
      }
    });
    return this;
  }

  /** Sets requiresGrad on every parameter (freezing with false). */
  requiresGrad_(flag = true): this {
    for (const p of this.parameters()) p.requiresGrad_(flag);
    return this;
  }

  /** Clears gradients (frees them, as PyTorch's set_to_none=True). */
  zeroGrad(): void {
    for (const p of this.parameters()) {
      const g = p.grad;
      if (g !== null) {
        p.grad = null;
        g.dispose();
      }
    }
  }

  /** Calls fn on every module, children first (as nn.Module.apply). */
  apply(fn: (m: Module) => void): this {
    for (const c of this.children()) c.apply(fn);
    fn(this);
    return this;
  }

  /** Frees every parameter and buffer of this tree. */
  dispose(): void {
    for (const m of this.modules()) {
      for (const t of m.#parameters.values()) t?.dispose();
      for (const t of m.#buffers.values()) t?.dispose();
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
