// `epg export` on the smallest preset (EPG-T/4): the exported one-step CM and a
// few-step Heun DM with CFG run in onnxruntime-node and agree with libtorch
// within 1e-4 for the same noise, at a batch size the export never traced;
// safetensors writes the weights; a missing checkpoint, an unwritable folder
// and a failure mid-export give clear errors and leave no model behind.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

import { clampRange } from '../src/data/normalize.js';
import { SIGMA_MAX } from '../src/diffusion/edm.js';
import { exportModel, type ExportConfig } from '../src/export.js';
import { buildEPG } from '../src/models/presets.js';
import { samplerFunction } from '../src/sample.js';
import { loadConfig } from '../src/train/config.js';
import { saveCheckpoint } from '../src/train/checkpoint.js';
import type { EPGViT } from '../src/models/vit.js';

interface OrtTensor {
  data: Float32Array;
  dims: readonly number[];
}
interface Ort {
  Tensor: new (type: string, data: Float32Array | BigInt64Array, dims: readonly number[]) => OrtTensor;
  InferenceSession: {
    create(path: string): Promise<{ run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>> }>;
  };
}
const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..', '..', '..');
const ort = createRequire(join(repo, 'packages', 'web', 'package.json'))('onnxruntime-node') as Ort;

const root = mkdtempSync(join(tmpdir(), 'epg-export-'));
after(() => rmSync(root, { recursive: true, force: true }));

const PRESET = 'EPG-T/4';
const CLASSES = 10;

/** A checkpoint of EPG-T/4 with random (non-zero) weights, as the trainer writes it. */
function makeCheckpoint(
  stage: 'dm' | 'cm',
  seed: number,
  name = `run-${stage}`,
  set: string[] = [],
): { dir: string; model: EPGViT } {
  torch.manualSeed(seed);
  const model = buildEPG(PRESET, { numClasses: CLASSES });
  torch.noGrad(() => {
    for (const [, p] of model.namedParameters()) torch.tidy(() => p.copy_(torch.randnLike(p).mul(0.1)));
  });
  model.eval().requiresGrad_(false);
  const dir = join(root, name);
  mkdirSync(dir);
  const sd = model.stateDict();
  const tensors = new Map<string, Tensor>();
  for (const [k, v] of sd) {
    tensors.set(`model.${k}`, v);
    tensors.set(`ema.${k}`, v);
  }
  const config = loadConfig(`fashion-mnist-${stage}`, set);
  saveCheckpoint(dir, tensors, {
    step: 123,
    stage,
    preset: PRESET,
    config,
    optimizer: null,
    scaler: null,
    rng: {},
    extra: {},
  });
  return { dir, model };
}

/** N(0, 1) noise and labels for a batch the export did not trace (5). */
function inputs(seed: number): { noise: Tensor; labels: Tensor } {
  const gen = new torch.Generator('cpu', seed);
  const noise = torch.randn([5, 1, 28, 28], { generator: gen });
  gen.dispose();
  return { noise, labels: torch.tensor([0, 3, 9, 1, 10], { dtype: 'int64' }) };
}

async function runOnnx(path: string, noise: Tensor, labels: Tensor): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(path);
  const out = await session.run({
    noise: new ort.Tensor('float32', noise.toTypedArray() as Float32Array, noise.shape),
    labels: new ort.Tensor('int64', labels.toTypedArray() as BigInt64Array, labels.shape),
  });
  assert.deepEqual([...out.images!.dims], noise.shape);
  return out.images!.data;
}

/** libtorch: the same sampler on the same noise, mapped to [0, 1] by the inverse normalisation (gray: x·0.5 + 0.5). */
function reference(model: EPGViT, cfg: ExportConfig, noise: Tensor, labels: Tensor): Float32Array {
  const sample = samplerFunction(model, {
    sampler: cfg.sampler.name,
    steps: cfg.sampler.steps,
    cfgScale: cfg.sampler.cfgScale,
    guidanceInterval: cfg.sampler.guidanceInterval,
    ...(cfg.sampler.consistency ? { cmPrecond: cfg.sampler.consistency.precond } : {}),
    appendZero: cfg.sampler.sigmas[cfg.sampler.sigmas.length - 1] === 0,
    clamp: clampRange('gray', 1),
  });
  return torch.inferenceMode(() =>
    torch.tidy(() => {
      const x = sample(noise.mul(SIGMA_MAX * (28 / 64)), labels);
      return x.mul(0.5).add(0.5).clamp(0, 1).toTypedArray() as Float32Array;
    }),
  );
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const cm = makeCheckpoint('cm', 1);
const dm = makeCheckpoint('dm', 2);

test('the one-step CM exported to ONNX agrees with libtorch within 1e-4 at an untraced batch size', async () => {
  const out = join(root, 'cm-onnx');
  const r = exportModel({ checkpoint: cm.dir, out, sampler: 'onestep', fid: 12.5 });
  assert.deepEqual(r.files, ['MODEL_CARD.md', 'config.json', 'model.onnx']);
  assert.deepEqual(readdirSync(out).sort(), r.files, 'no staging folder is left');
  const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as ExportConfig;
  assert.equal(cfg.preset, PRESET);
  assert.equal(cfg.imageSize, 28);
  assert.equal(cfg.channels, 1);
  assert.equal(cfg.classNames[9], 'Ankle boot');
  assert.equal(cfg.sampler.nfePerImage, 1);
  assert.equal(cfg.weights, 'ema');
  assert.equal(cfg.source.step, 123);
  assert.deepEqual(cfg.normalization.mean, [0.5]);
  assert.match(readFileSync(join(out, 'MODEL_CARD.md'), 'utf8'), /FID: 12\.5/);
  const { noise, labels } = inputs(7);
  const got = await runOnnx(join(out, 'model.onnx'), noise, labels);
  const want = reference(cm.model, cfg, noise, labels);
  const d = maxDiff(got, want);
  assert.ok(d < 1e-4, `max |onnx − libtorch| = ${d}`);
  // The images are not trivially constant (the test can tell samplers apart).
  const spread = Math.max(...want) - Math.min(...want);
  assert.ok(spread > 0.2, `image range ${spread}`);
  noise.dispose();
  labels.dispose();
});

test("a CM tuned from a diffusion model ('x0' consistency function) exports with one-step CFG and agrees with libtorch", async () => {
  const ect = makeCheckpoint('cm', 3, 'run-ect', ['finetune.cmPrecond=x0']);
  const out = join(root, 'ect-onnx');
  exportModel({ checkpoint: ect.dir, out, cfgScale: 2, guidanceInterval: [0, Number.MAX_VALUE] });
  const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as ExportConfig;
  assert.equal(cfg.sampler.name, 'onestep');
  assert.equal(cfg.sampler.consistency?.precond, 'x0');
  assert.equal(cfg.sampler.nfePerImage, 2, 'one guided step: conditional and unconditional');
  assert.match(readFileSync(join(out, 'MODEL_CARD.md'), 'utf8'), /\(1 − c_skip\)·F.*CFG 2/);
  const { noise, labels } = inputs(9);
  const got = await runOnnx(join(out, 'model.onnx'), noise, labels);
  const want = reference(ect.model, cfg, noise, labels);
  assert.ok(maxDiff(got, want) < 1e-4, `max |onnx − libtorch| = ${maxDiff(got, want)}`);
  // The same weights read the released way ('edm') give other images: the export applied the run's form.
  const edm = reference(ect.model, { ...cfg, sampler: { ...cfg.sampler, consistency: undefined } }, noise, labels);
  assert.ok(maxDiff(edm, want) > 0.05);
  noise.dispose();
  labels.dispose();
});

test('a few-step Heun DM with CFG, unrolled in the graph, agrees with libtorch within 1e-4', async () => {
  const out = join(root, 'dm-onnx');
  exportModel({
    checkpoint: dm.dir,
    out,
    sampler: 'heun',
    steps: 4,
    cfgScale: 2,
    guidanceInterval: [0, 100],
    appendZero: true,
  });
  const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as ExportConfig;
  assert.equal(cfg.sampler.name, 'heun');
  assert.equal(cfg.sampler.sigmas.length, 5);
  assert.equal(cfg.sampler.nfePerImage, 2 * (2 * 3 + 1), 'three Heun steps and a final Euler step, all guided');
  const { noise, labels } = inputs(8);
  const got = await runOnnx(join(out, 'model.onnx'), noise, labels);
  const want = reference(dm.model, cfg, noise, labels);
  const d = maxDiff(got, want);
  assert.ok(d < 1e-4, `max |onnx − libtorch| = ${d}`);
  noise.dispose();
  labels.dispose();
});

test('--format safetensors writes the weights with the same config', () => {
  const out = join(root, 'cm-st');
  const r = exportModel({ checkpoint: cm.dir, out, format: 'safetensors' });
  assert.deepEqual(r.files, ['MODEL_CARD.md', 'config.json', 'model.safetensors']);
  const loaded = torch.io.loadSafetensors(join(out, 'model.safetensors'));
  const sd = cm.model.stateDict();
  assert.deepEqual([...loaded.keys()].sort(), [...sd.keys()].sort());
  assert.ok(loaded.get('out.weight')!.equal(sd.get('out.weight')!));
  for (const t of loaded.values()) t.dispose();
});

test('a missing checkpoint, an unwritable folder and a failure mid-export leave no model behind', () => {
  const out = join(root, 'never');
  assert.throws(() => exportModel({ checkpoint: join(root, 'nope'), out }), /checkpoint '.*nope' does not exist/);
  assert.ok(!existsSync(out));
  const file = join(root, 'a-file');
  writeFileSync(file, 'x');
  assert.throws(
    () => exportModel({ checkpoint: cm.dir, out: join(file, 'sub') }),
    /cannot write to .*a-file\/sub.*writable --out/,
  );
  // Fails after the model was loaded and traced (class names that do not fit): nothing stays.
  assert.throws(() => exportModel({ checkpoint: cm.dir, out, classNames: ['one'] }), /1 class names for a model of 10/);
  assert.ok(!existsSync(out), 'the folder the export created is removed');
  // An existing export is not overwritten without --overwrite.
  assert.throws(() => exportModel({ checkpoint: cm.dir, out: join(root, 'cm-onnx') }), /already holds model\.onnx/);
});

test('epg export on the command line: usage errors exit 2, a run exports', () => {
  const cli = join(repo, 'packages', 'epg', 'dist', 'src', 'cli.js');
  const bad = spawnSync(process.execPath, [cli, 'export', cm.dir, '--out', join(root, 'x'), '--format', 'tflite'], {
    encoding: 'utf8',
  });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--format must be onnx or safetensors/);
  const ok = spawnSync(process.execPath, [cli, 'export', cm.dir, '--out', join(root, 'cli-cm')], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /exported .*model\.onnx .*1 NFE per image/);
});
