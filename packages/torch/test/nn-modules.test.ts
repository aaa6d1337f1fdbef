// Every layer's forward and backward against torch.nn with identical weights
// and inputs, in float32 and float64 (the state dict is sent to PyTorch and
// loaded strictly, which also checks that parameter names match PyTorch's).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as torch from '../src/index.js';
import { nn, type Tensor } from '../src/index.js';
import { assertClose, runPython } from './harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const SCRIPT = join(here, '..', '..', 'test', 'ref', 'module_ref.py');

interface ModuleCase {
  name: string;
  make: (dtype: 'float32' | 'float64') => nn.Module & nn.Layer;
  py: string;
  input: number[];
  /** Integer inputs (embedding indices) instead of normal floats. */
  indices?: number;
  training?: boolean;
  /** Compare only the output (e.g. randomness inside). */
  forwardOnly?: boolean;
}

interface Encoded {
  shape: number[];
  dtype: string;
  data: number[];
}

const CASES: ModuleCase[] = [
  { name: 'Linear', make: (d) => new nn.Linear(5, 3, { dtype: d }), py: 'nn.Linear(5, 3)', input: [4, 5] },
  {
    name: 'Linear without bias, 3-d input',
    make: (d) => new nn.Linear(5, 3, { dtype: d, bias: false }),
    py: 'nn.Linear(5, 3, bias=False)',
    input: [2, 4, 5],
  },
  {
    name: 'Conv2d stride/padding',
    make: (d) => new nn.Conv2d(3, 4, 3, { dtype: d, stride: 2, padding: 1 }),
    py: 'nn.Conv2d(3, 4, 3, stride=2, padding=1)',
    input: [2, 3, 8, 8],
  },
  {
    name: 'Conv2d groups, patch embedding',
    make: (d) => new nn.Conv2d(4, 8, [2, 2], { dtype: d, stride: 2, groups: 2 }),
    py: 'nn.Conv2d(4, 8, 2, stride=2, groups=2)',
    input: [1, 4, 6, 6],
  },
  { name: 'LayerNorm', make: (d) => new nn.LayerNorm(6, { dtype: d }), py: 'nn.LayerNorm(6)', input: [3, 4, 6] },
  {
    name: 'LayerNorm no affine, eps',
    make: (d) => new nn.LayerNorm(6, { dtype: d, elementwiseAffine: false, eps: 1e-6 }),
    py: 'nn.LayerNorm(6, elementwise_affine=False, eps=1e-6)',
    input: [3, 6],
  },
  {
    name: 'BatchNorm1d training',
    make: (d) => new nn.BatchNorm1d(5, { dtype: d }),
    py: 'nn.BatchNorm1d(5)',
    input: [8, 5],
    training: true,
  },
  {
    name: 'BatchNorm1d eval',
    make: (d) => new nn.BatchNorm1d(5, { dtype: d }),
    py: 'nn.BatchNorm1d(5)',
    input: [8, 5, 3],
    training: false,
  },
  {
    name: 'GroupNorm',
    make: (d) => new nn.GroupNorm(2, 6, { dtype: d }),
    py: 'nn.GroupNorm(2, 6)',
    input: [2, 6, 3, 3],
  },
  {
    name: 'Embedding',
    make: (d) => new nn.Embedding(10, 4, { dtype: d }),
    py: 'nn.Embedding(10, 4)',
    input: [3, 2],
    indices: 10,
  },
  { name: 'GELU exact', make: () => new nn.GELU(), py: 'nn.GELU()', input: [4, 5] },
  { name: 'GELU tanh', make: () => new nn.GELU('tanh'), py: "nn.GELU(approximate='tanh')", input: [4, 5] },
  { name: 'SiLU', make: () => new nn.SiLU(), py: 'nn.SiLU()', input: [4, 5] },
  {
    name: 'Sequential MLP',
    make: (d) => new nn.Sequential(new nn.Linear(4, 8, { dtype: d }), new nn.ReLU(), new nn.Linear(8, 3, { dtype: d })),
    py: 'nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))',
    input: [5, 4],
  },
  {
    name: 'MLP (timm naming)',
    make: (d) => new nn.MLP(6, 12, 6, { dtype: d }),
    py: 'type("Mlp", (nn.Module,), {"__init__": lambda s: (nn.Module.__init__(s), setattr(s, "fc1", nn.Linear(6, 12)), setattr(s, "act", nn.GELU()), setattr(s, "fc2", nn.Linear(12, 6)))[0], "forward": lambda s, x: s.fc2(s.act(s.fc1(x)))})()',
    input: [2, 3, 6],
  },
  {
    name: 'MultiheadSelfAttention',
    make: (d) => new nn.MultiheadSelfAttention(8, 2, { dtype: d, qkvBias: true }),
    py: `type("Attention", (nn.Module,), {
      "__init__": lambda s: (nn.Module.__init__(s), setattr(s, "qkv", nn.Linear(8, 24)), setattr(s, "proj", nn.Linear(8, 8)))[0],
      "forward": lambda s, x: s.proj(torch.nn.functional.scaled_dot_product_attention(*s.qkv(x).reshape(x.shape[0], x.shape[1], 3, 2, 4).permute(2, 0, 3, 1, 4).unbind(0)).transpose(1, 2).reshape(x.shape))})()`,
    input: [2, 5, 8],
  },
];

function encode(t: Tensor): { shape: number[]; dtype: string; data: number[] } {
  const data = Array.from(t.toTypedArray() as ArrayLike<number | bigint>, Number);
  return { shape: t.shape, dtype: t.dtype, data };
}

const TOL = { float32: [2e-5, 2e-6], float64: [1e-10, 1e-12] } as const;

for (const dtype of ['float32', 'float64'] as const) {
  torch.manualSeed(1);
  const runs = CASES.map((c) =>
    torch.tidy(() => {
      const m = c.make(dtype);
      m.train(c.training ?? true);
      // The state before the forward pass (BatchNorm updates its buffers in training).
      const stateBefore = Object.fromEntries([...m.stateDict()].map(([k, t]) => [k, encode(t)]));
      const x = c.indices ? torch.randint(0, c.indices, c.input) : torch.randn(c.input, { dtype }).requiresGrad_(true);
      const y = m.forward(x);
      const gy = torch.randnLike(y);
      y.backward(gy);
      const state = Object.fromEntries([...m.stateDict()].map(([k, t]) => [k, encode(t)]));
      const payload = {
        py: c.py,
        dtype,
        training: c.training ?? true,
        state: stateBefore,
        input: encode(x),
        gradOutput: encode(gy),
      };
      const result = {
        payload,
        output: encode(y),
        inputGrad: x.isFloatingPoint ? encode(x.grad!) : null,
        paramGrads: Object.fromEntries(m.namedParameters().map(([n, p]) => [n, encode(p.grad!)])),
        stateAfter: state,
      };
      m.dispose();
      return result;
    }),
  );
  const refs = runPython(
    SCRIPT,
    runs.map((r) => r.payload),
  ) as {
    error?: string;
    output: Encoded;
    inputGrad: Encoded | null;
    paramGrads: Record<string, Encoded>;
    state: Record<string, Encoded>;
  }[];
  CASES.forEach((c, i) => {
    test(`nn.${c.name} (${dtype}) matches torch.nn`, () => {
      const r = runs[i]!;
      const ref = refs[i]!;
      assert.equal(ref.error, undefined, `PyTorch: ${ref.error}`);
      const [rtol, atol] = TOL[dtype];
      assert.deepEqual(r.output.shape, ref.output.shape);
      assertClose(r.output.data, ref.output.data, rtol, atol, 'output');
      if (r.inputGrad) assertClose(r.inputGrad.data, ref.inputGrad!.data, rtol, atol, 'input grad');
      assert.deepEqual(Object.keys(r.paramGrads).sort(), Object.keys(ref.paramGrads).sort(), 'parameter names');
      for (const [n, g] of Object.entries(r.paramGrads))
        assertClose(g.data, ref.paramGrads[n]!.data, rtol, atol, `grad ${n}`);
      for (const [n, s] of Object.entries(r.stateAfter))
        assertClose(s.data, ref.state[n]!.data, rtol, atol, `state ${n} after forward`);
    });
  });
}

test('nn: no native tensors leak', () => {
  assert.equal(torch.liveTensors(), 0);
});
