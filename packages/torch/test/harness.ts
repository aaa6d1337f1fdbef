// Differential testing against PyTorch in Python (DESIGN.md, "Testing").
//
// A test file declares cases: inputs (shape, dtype, contiguity, whether they
// need gradients), a JS function over @epg/torch and the same function as a
// Python lambda over torch. The harness draws the inputs from a seeded PRNG,
// runs the JS side, runs every case of the file in one Python process
// (test/ref/torch_ref.py), and compares outputs and input gradients with
// tolerances that fit the dtype.
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as torch from '../src/index.js';
import { assertClose, runPython } from '../src/testing.js';
import type { DType, Tensor } from '../src/index.js';

export type InputKind = 'normal' | 'positive' | 'unit' | 'int' | 'bool' | 'index';

export interface InputSpec {
  shape: number[];
  dtype?: DType;
  /** normal N(0,1) (default); positive in [0.5, 2]; unit in (-0.9, 0.9); int in [-5, 5]; bool; index in [0, high). */
  kind?: InputKind;
  /** Upper bound (exclusive) for kind 'index'. */
  high?: number;
  /** Build as the transpose of a contiguous tensor (needs ndim >= 2). */
  nonContiguous?: boolean;
  requiresGrad?: boolean;
  /** Explicit values (row-major), instead of random ones. */
  values?: number[];
}

export interface Case {
  name: string;
  inputs: InputSpec[];
  js: (...xs: Tensor[]) => Tensor | Tensor[] | number | boolean;
  /** A Python lambda over torch tensors, e.g. 'lambda a, b: torch.add(a, b, alpha=2)'. */
  py: string;
  rtol?: number;
  atol?: number;
  /** Skip the gradient check even if inputs require grad. */
  noGrad?: boolean;
}

interface Encoded {
  shape: number[];
  dtype: string;
  data: (number | string)[];
}

interface RefResult {
  outputs?: (Encoded | number | boolean | null)[];
  grads?: (Encoded | null)[];
  error?: string;
}

/** Mulberry32: a small seeded PRNG so both sides see identical inputs. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function draw(spec: InputSpec, rnd: () => number): number[] {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  if (spec.values) {
    assert.equal(spec.values.length, n, 'values do not fill the shape');
    return spec.values;
  }
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    switch (spec.kind ?? 'normal') {
      case 'positive':
        out.push(0.5 + 1.5 * rnd());
        break;
      case 'unit':
        out.push(-0.9 + 1.8 * rnd());
        break;
      case 'int':
        out.push(Math.floor(rnd() * 11) - 5);
        break;
      case 'bool':
        out.push(rnd() < 0.5 ? 0 : 1);
        break;
      case 'index':
        out.push(Math.floor(rnd() * (spec.high ?? 2)));
        break;
      default: {
        // Box-Muller
        const u = Math.max(rnd(), 1e-12);
        const v = rnd();
        out.push(Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v));
      }
    }
  }
  const dtype = spec.dtype ?? 'float32';
  // Round to what the dtype holds, so both sides start from the same values.
  if (dtype === 'float32') return Array.from(Float32Array.from(out));
  return out;
}

function defaultDtype(spec: InputSpec): DType {
  if (spec.dtype) return spec.dtype;
  if (spec.kind === 'bool') return 'bool';
  if (spec.kind === 'index') return 'int64';
  return 'float32';
}

function build(spec: InputSpec, data: number[]): Tensor {
  const dtype = defaultDtype(spec);
  return torch.tidy(() => {
    const base = torch.tensor(data, { dtype: dtype === 'bool' ? 'float64' : dtype === 'int64' ? 'int64' : 'float64' });
    let t = base.reshape(spec.shape).to({ dtype });
    if (spec.nonContiguous && spec.shape.length >= 2) t = t.transpose(-1, -2).contiguous().transpose(-1, -2);
    else t = t.clone();
    if (spec.requiresGrad) t.requiresGrad_(true);
    return t;
  });
}

function tolerances(c: Case, dtype: string): { rtol: number; atol: number } {
  const byDtype: Record<string, [number, number]> = {
    float64: [1e-7, 1e-9],
    float32: [1e-4, 1e-5],
    float16: [1e-2, 1e-2],
    bfloat16: [2e-2, 2e-2],
  };
  const [rtol, atol] = byDtype[dtype] ?? [0, 0];
  return { rtol: c.rtol ?? rtol, atol: c.atol ?? atol };
}

function num(v: number | string): number {
  return typeof v === 'string' ? Number(v === 'nan' ? NaN : v === 'inf' ? Infinity : v === '-inf' ? -Infinity : v) : v;
}

export { assertClose };

function compareTensor(c: Case, t: Tensor, ref: Encoded, what: string): void {
  assert.deepEqual(t.shape, ref.shape, `${what}: shape`);
  const dtype = t.dtype;
  assert.equal(dtype, ref.dtype, `${what}: dtype`);
  const arr = t.toTypedArray();
  const values = Array.from(arr as ArrayLike<number | bigint>, (v) => Number(v));
  const { rtol, atol } = tolerances(c, dtype);
  assertClose(values, ref.data.map(num), rtol, atol, what);
}

function encodeForPython(spec: InputSpec, data: number[]): object {
  return {
    shape: spec.shape,
    dtype: defaultDtype(spec),
    nonContiguous: spec.nonContiguous ?? false,
    requiresGrad: spec.requiresGrad ?? false,
    data: data.map((x) => (Number.isFinite(x) ? x : String(x))),
  };
}

const here = dirname(fileURLToPath(import.meta.url));
// dist/test/harness.js -> package root/test/ref
const REF_SCRIPT = join(here, '..', '..', 'test', 'ref', 'torch_ref.py');

export { runPython };

/**
 * Registers one node:test test per case under `suite` (named after the
 * PyTorch function family). All cases run through one Python process.
 */
export function differential(suiteName: string, cases: Case[], seed = 1234): void {
  const rnd = prng(seed);
  const prepared = cases.map((c) => {
    const data = c.inputs.map((s) => draw(s, rnd));
    return { c, data };
  });

  // JS side first (also decides the output gradients, drawn from the PRNG).
  interface JsRun {
    outputs?: (Tensor | number | boolean)[];
    grads?: (Tensor | null)[];
    gradOutputs?: object[];
    error?: unknown;
  }
  const jsRuns: JsRun[] = prepared.map(({ c, data }) => {
    try {
      return torch.tidy(() => {
        const inputs = c.inputs.map((s, i) => build(s, data[i]!));
        const out = c.js(...inputs);
        const outs = Array.isArray(out) ? out : [out];
        const wantGrad = !c.noGrad && c.inputs.some((s) => s.requiresGrad);
        let gradOutputs: object[] | undefined;
        let grads: (Tensor | null)[] | undefined;
        if (wantGrad) {
          const gSpecs: InputSpec[] = [];
          const gTensors: Tensor[] = [];
          const diffOuts: Tensor[] = [];
          const encoded: object[] = [];
          for (const o of outs) {
            if (typeof o === 'object' && o.requiresGrad) {
              const spec: InputSpec = { shape: o.shape, dtype: o.dtype };
              const d = draw(spec, rnd);
              gSpecs.push(spec);
              gTensors.push(build(spec, d));
              diffOuts.push(o);
              encoded.push(encodeForPython(spec, d));
            } else {
              const spec: InputSpec = { shape: [1], dtype: 'float64' };
              encoded.push(encodeForPython(spec, [0]));
            }
          }
          torch.backward(diffOuts, gTensors);
          grads = inputs.map((x, i) => (c.inputs[i]!.requiresGrad ? x.grad : null));
          gradOutputs = encoded;
        }
        return { outputs: outs, grads, gradOutputs };
      });
    } catch (error) {
      return { error };
    }
  });

  const payload = prepared.map(({ c, data }, i) => ({
    py: c.py,
    inputs: c.inputs.map((s, j) => encodeForPython(s, data[j]!)),
    gradOutputs: jsRuns[i]!.gradOutputs,
  }));
  let refs: RefResult[] | undefined;
  let refError: unknown;
  const ensureRefs = (): RefResult[] => {
    if (refs === undefined && refError === undefined) {
      try {
        refs = runPython(REF_SCRIPT, payload) as RefResult[];
      } catch (e) {
        refError = e;
      }
    }
    if (refError !== undefined) throw refError;
    return refs!;
  };

  for (const [i, { c }] of prepared.entries()) {
    test(`${suiteName}: ${c.name}`, () => {
      const js = jsRuns[i]!;
      const ref = ensureRefs()[i]!;
      if (ref.error) {
        if (js.error) return; // both sides reject the input: agreement
        assert.fail(`PyTorch raised (${ref.error}) but @epg/torch did not`);
      }
      if (js.error) throw js.error;
      const outs = js.outputs!;
      assert.equal(outs.length, ref.outputs!.length, 'number of outputs');
      outs.forEach((o, k) => {
        const r = ref.outputs![k]!;
        if (typeof o === 'number' || typeof o === 'boolean') {
          if (typeof o === 'number' && typeof r === 'number') assertClose([o], [r], 1e-5, 1e-6, `output ${k}`);
          else assert.equal(o, r, `output ${k}`);
        } else {
          compareTensor(c, o, r as Encoded, `output ${k}`);
        }
      });
      if (js.grads) {
        js.grads.forEach((g, k) => {
          const r = ref.grads?.[k];
          if (!c.inputs[k]!.requiresGrad) return;
          if (g === null || r == null) {
            assert.equal(g === null, r == null, `grad of input ${k}: defined on one side only`);
            return;
          }
          compareTensor(c, g, r, `grad of input ${k}`);
        });
      }
    });
  }
  test(`${suiteName}: no native tensors leak`, () => {
    for (const r of jsRuns) {
      for (const o of r.outputs ?? []) if (typeof o === 'object') o.dispose();
      for (const g of r.grads ?? []) g?.dispose();
    }
    assert.equal(torch.liveTensors(), 0, 'live native tensors after the suite');
  });
}
