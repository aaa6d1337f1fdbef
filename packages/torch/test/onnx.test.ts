// The ONNX exporter against onnxruntime-node (packages/web's dev dependency,
// installed by scripts/setup.sh --with-web): every mapped operator family runs
// in ONNX Runtime at a batch size that was not traced (the dynamic batch axis)
// and must agree with libtorch; unsupported operators, random draws and
// batch-dependent control flow are errors that name the call; the weights go
// to a side file past the threshold; a failed export writes nothing.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test, after } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as torch from '../src/index.js';
import { nn, type Tensor } from '../src/index.js';

// --- onnxruntime-node, from packages/web
interface OrtTensor {
  data: Float32Array | BigInt64Array;
  dims: readonly number[];
}
interface Ort {
  Tensor: new (type: string, data: Float32Array | BigInt64Array, dims: readonly number[]) => OrtTensor;
  InferenceSession: {
    create(path: string): Promise<{ run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>> }>;
  };
}
const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
function loadOrt(): Ort {
  try {
    return createRequire(join(repo, 'packages', 'web', 'package.json'))('onnxruntime-node') as Ort;
  } catch (e) {
    throw new Error(
      `onnxruntime-node is not installed (${(e as Error).message.split('\n')[0]}); run \`bash scripts/setup.sh --with-web\``,
    );
  }
}
const ort = loadOrt();

const dir = mkdtempSync(join(tmpdir(), 'epg-onnx-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function toOrt(t: Tensor): OrtTensor {
  if (t.dtype === 'int64') return new ort.Tensor('int64', t.toTypedArray() as BigInt64Array, t.shape);
  return new ort.Tensor('float32', t.float().toTypedArray() as Float32Array, t.shape);
}

/** Exports fn, runs it in ONNX Runtime on inputs, returns the largest difference from libtorch. */
async function roundTrip(
  name: string,
  fn: (xs: Tensor[]) => Tensor[],
  example: (b: number) => Tensor[],
  at: number,
  o: Partial<torch.onnx.OnnxExportOptions> = {},
): Promise<{ diff: number; report: torch.onnx.OnnxExportReport }> {
  const path = join(dir, `${name}.onnx`);
  const inputs = example(at);
  const inputNames = inputs.map((_, i) => `in${i}`);
  const report = torch.onnx.exportOnnx(fn, path, {
    exampleInputs: example,
    inputNames,
    outputNames: ['out'],
    ...o,
  });
  const want = torch.inferenceMode(() => fn(inputs)[0]!);
  const session = await ort.InferenceSession.create(path);
  const feeds = Object.fromEntries(inputs.map((t, i) => [inputNames[i]!, toOrt(t)]));
  const got = (await session.run(feeds)).out!;
  assert.deepEqual([...got.dims], want.shape, `${name}: output shape`);
  const w = want.float().toTypedArray() as Float32Array;
  let diff = 0;
  for (let i = 0; i < w.length; i++) diff = Math.max(diff, Math.abs(Number(got.data[i]) - w[i]!));
  for (const t of inputs) t.dispose();
  want.dispose();
  return { diff, report };
}

const randn = (...shape: number[]): Tensor => torch.randn(shape);

test('elementwise, activations and reductions agree with libtorch at an untraced batch size', async () => {
  torch.manualSeed(1);
  const w = randn(1, 6);
  const fn = ([x]: Tensor[]): Tensor[] => [
    torch.tidy(() => {
      const a = x!.mul(w).add(0.5).sub(x!.square().mul(0.1)).div(x!.abs().add(2));
      const b = torch.functional.gelu(a).add(torch.functional.silu(a)).add(a.sigmoid().mul(a.tanh()));
      const c = a.exp().clamp(0, 3).add(a.mul(a).add(1).sqrt().reciprocal()).add(a.abs().add(1).log());
      const d = b.add(c).add(a.sin().mul(a.cos())).clamp(-2, 6);
      return d
        .add(d.sum().mul(0.001))
        .sub(d.mean([1], { keepdim: true }))
        .add(d.sum([1], { keepdim: true }).mul(0.01))
        .add(torch.functional.softmax(d, 1));
    }),
  ];
  const { diff, report } = await roundTrip('elementwise', fn, (b) => [randn(b, 6)], 5);
  assert.ok(diff < 1e-5, `max |onnx − libtorch| = ${diff}`);
  assert.deepEqual(report.inputs[0]!.shape, ['batch', 6]);
  assert.deepEqual(report.outputs[0]!.shape, ['batch', 6]);
  w.dispose();
});

test('layers (conv2d, linear, layer_norm, embedding, attention) and shape operators agree', async () => {
  torch.manualSeed(2);
  const conv = new nn.Conv2d(2, 8, 2, { stride: 2 });
  const lin = new nn.Linear(8, 24);
  const ln = new nn.LayerNorm(8);
  const emb = new nn.Embedding(5, 8);
  const attn = new nn.MultiheadSelfAttention(8, 2, { qkvBias: true });
  for (const m of [conv, lin, ln, emb, attn]) m.eval().requiresGrad_(false);
  const fn = ([x, y]: Tensor[]): Tensor[] => [
    torch.tidy(() => {
      const B = x!.shape[0]!;
      const h = conv.forward(x!).flatten(2).transpose(1, 2); // [B, 4, 8]
      const e = emb.forward(y!).unsqueeze(1); // [B, 1, 8]
      let t = torch.cat([e, h], 1).add(torch.zeros([1, 5, 8]).add(0.1)); // [B, 5, 8]
      t = t.add(attn.forward(ln.forward(t)));
      const [q, k, v] = lin.forward(t).chunk(3, 2) as [Tensor, Tensor, Tensor];
      const s = torch.stack([q, k.neg(), v], 1).sum([1]); // [B, 5, 8]
      const sel = s.select(1, 0).unsqueeze(1).expand(B, 4, 8); // [B, 4, 8]
      const cut = s.slice(1, 1).add(sel).permute(0, 2, 1).reshape(B, 2, 4, 4); // [B, 2, 4, 4]
      return cut.permute(0, 1, 3, 2).contiguous().view(B, -1);
    }),
  ];
  const example = (b: number): Tensor[] => [randn(b, 2, 4, 4), torch.randint(0, 5, [b])];
  const named = [...conv.namedParameters(), ...lin.namedParameters()].map(([n, t]) => [`layer.${n}`, t] as const);
  const { diff, report } = await roundTrip('layers', fn, example, 4, { namedTensors: named });
  assert.ok(diff < 1e-5, `max |onnx − libtorch| = ${diff}`);
  assert.ok(report.nodes > 20);
  // Weights read as they are keep their state-dict names.
  const model = torch.onnx.decodeModel(readFileSync(report.path));
  const names = model.graph.initializer.map((t) => t.name);
  assert.ok(names.includes('layer.weight'), names.join(', '));
  for (const m of [conv, lin, ln, emb, attn]) m.dispose();
});

test('classifier-free guidance doubling the batch, chunk and per-sample constants stay dynamic', async () => {
  torch.manualSeed(3);
  const fn = ([x]: Tensor[]): Tensor[] => [
    torch.tidy(() => {
      const B = x!.shape[0]!;
      const sigma = torch.full([2 * B], 3, { dtype: 'float64' }); // per-sample constant, folded to one row
      const scale = sigma.square().add(0.25).sqrt().reciprocal().reshape(-1, 1).float();
      const both = torch.cat([x!, x!.mul(2)]).mul(scale);
      const [c, u] = both.chunk(2) as [Tensor, Tensor];
      return u.add(c.sub(u).mul(1.5)).add(torch.fullLike(x!, 0.25));
    }),
  ];
  const { diff } = await roundTrip('cfg', fn, (b) => [randn(b, 3)], 7);
  assert.ok(diff < 1e-6, `max |onnx − libtorch| = ${diff}`);
});

test('weights past the threshold go to a side file that ONNX Runtime reads', async () => {
  torch.manualSeed(4);
  const lin = new nn.Linear(64, 32);
  lin.requiresGrad_(false);
  const fn = ([x]: Tensor[]): Tensor[] => [lin.forward(x!)];
  const { diff, report } = await roundTrip('external', fn, (b) => [randn(b, 64)], 3, {
    namedTensors: lin.namedParameters(),
    externalDataThreshold: 0,
  });
  assert.ok(diff < 1e-5, `max |onnx − libtorch| = ${diff}`);
  assert.equal(report.externalData, `${report.path}.data`);
  assert.ok(existsSync(report.externalData!));
  assert.ok(readFileSync(report.path).length < 4096, 'the weights are not inside the model file');
  lin.dispose();
});

test('an operator without a mapping is an error naming it and the calling line; nothing is written', () => {
  const path = join(dir, 'unsupported.onnx');
  assert.throws(
    () =>
      torch.onnx.exportOnnx(([x]) => [x!.cumsum(1)], path, {
        exampleInputs: (b) => [randn(b, 3)],
        inputNames: ['x'],
        outputNames: ['y'],
      }),
    (e: Error) =>
      e instanceof torch.onnx.OnnxExportError && /aten::cumsum/.test(e.message) && /onnx\.test\.js:\d+/.test(e.message),
  );
  assert.ok(!existsSync(path));
  assert.ok(!existsSync(`${path}.tmp-${process.pid}`));
});

test('random draws and batch-dependent control flow are refused, never baked into the graph', () => {
  const opts = { exampleInputs: (b: number) => [randn(b, 3)], inputNames: ['x'], outputNames: ['y'] };
  assert.throws(
    () => torch.onnx.exportOnnx(([x]) => [x!.add(torch.randnLike(x!))], join(dir, 'random.onnx'), opts),
    /random draws cannot be exported/,
  );
  assert.throws(
    () =>
      torch.onnx.exportOnnx(
        ([x]) => [x!.shape[0] === 2 ? x!.mul(2) : x!.add(1).mul(2)],
        join(dir, 'control.onnx'),
        opts,
      ),
    /control flow depends on the batch size/,
  );
  // A constant read into JavaScript is fine; a value computed from the inputs is not.
  assert.throws(
    () => torch.onnx.exportOnnx(([x]) => [x!.mul(x!.sum().item())], join(dir, 'item.onnx'), opts),
    /aten::item .*reads a value computed from the inputs back into JavaScript/,
  );
  assert.throws(
    () =>
      torch.onnx.exportOnnx(
        ([x]) => [(x!.toTypedArray() as Float32Array)[0]! > 0 ? x!.mul(2) : x!.mul(3)],
        join(dir, 'read.onnx'),
        opts,
      ),
    /reads the values of a tensor computed from its inputs into JavaScript at .*onnx\.test\.js/,
  );
});
