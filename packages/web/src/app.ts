// The browser demo: loads an exported folder (config.json, model.onnx) from
// `epg serve` with onnxruntime-web, WebGPU where the browser has it and
// WebAssembly otherwise, and generates images for a class and a seed. The noise
// and the pixel conversion are packages/epg's export-io.ts, so Node computes
// the same images for the same seed. window.epg.generate is what the browser
// test calls.
import type * as OrtModule from 'onnxruntime-web';

import { imagesToRgba, seededNoise } from '../../epg/src/export-io.ts';

type Ort = typeof OrtModule;
type Backend = 'webgpu' | 'wasm';

interface ExportConfig {
  preset: string;
  stage: string;
  imageSize: number;
  channels: number;
  numClasses: number;
  classNames: string[];
  model: { file: string };
  sampler: { name: string; steps: number; nfePerImage: number };
}

interface GenerateRequest {
  classIndex: number;
  seed: number;
  count: number;
  backend?: Backend | 'auto';
}

interface GenerateResult {
  backend: Backend;
  ms: number;
  width: number;
  height: number;
  rgba: number[];
}

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

let ort: Ort;
let config: ExportConfig;
let modelBytes: Uint8Array;
const sessions = new Map<Backend, OrtModule.InferenceSession>();

async function session(want: Backend | 'auto'): Promise<{ backend: Backend; s: OrtModule.InferenceSession }> {
  const order: Backend[] = want === 'auto' ? ['webgpu', 'wasm'] : [want];
  let lastError: unknown = null;
  for (const backend of order) {
    if (backend === 'webgpu' && !('gpu' in navigator)) continue;
    const cached = sessions.get(backend);
    if (cached) return { backend, s: cached };
    try {
      const s = await ort.InferenceSession.create(modelBytes, { executionProviders: [backend] });
      sessions.set(backend, s);
      return { backend, s };
    } catch (e) {
      lastError = e;
    }
  }
  throw new Error(`no ONNX Runtime backend could load the model: ${String(lastError)}`);
}

async function generate(req: GenerateRequest): Promise<GenerateResult> {
  const { imageSize: H, channels: C } = config;
  const n = req.count;
  if (!(Number.isInteger(n) && n >= 1 && n <= 256)) throw new RangeError(`count must be 1…256, got ${n}`);
  if (!(Number.isInteger(req.classIndex) && req.classIndex >= 0 && req.classIndex <= config.numClasses))
    throw new RangeError(`class must be 0…${config.numClasses}, got ${req.classIndex}`);
  const { backend, s } = await session(req.backend ?? 'auto');
  const noise = new ort.Tensor('float32', seededNoise(req.seed, n * C * H * H), [n, C, H, H]);
  const labels = new ort.Tensor('int64', new BigInt64Array(n).fill(BigInt(req.classIndex)), [n]);
  const t0 = performance.now();
  const out = await s.run({ noise, labels });
  const images = (await out.images!.getData()) as Float32Array;
  const ms = performance.now() - t0;
  const rgba = imagesToRgba(images, n, C, H, H);
  const canvas = $<HTMLCanvasElement>('images');
  canvas.width = n * H;
  canvas.height = H;
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.putImageData(new ImageData(rgba, n * H, H), 0, 0);
  // What the canvas holds, read back (the browser test compares it with Node's images).
  const shown = ctx.getImageData(0, 0, n * H, H).data;
  return { backend, ms, width: n * H, height: H, rgba: Array.from(shown) };
}

async function onGenerate(): Promise<void> {
  const status = $('status');
  const button = $<HTMLButtonElement>('generate');
  button.disabled = true;
  status.textContent = 'generating…';
  try {
    const r = await generate({
      classIndex: Number($<HTMLSelectElement>('class').value),
      seed: Number($<HTMLInputElement>('seed').value),
      count: Number($<HTMLInputElement>('count').value),
      backend: $<HTMLSelectElement>('backend').value as Backend | 'auto',
    });
    const n = r.width / r.height;
    status.textContent = `${n} image${n > 1 ? 's' : ''} in ${r.ms.toFixed(0)} ms (${((1000 * n) / r.ms).toFixed(1)} images/s, ${r.backend})`;
  } catch (e) {
    status.textContent = `error: ${(e as Error).message}`;
  } finally {
    button.disabled = false;
  }
}

async function main(): Promise<void> {
  ort = (await import('/ort/ort.all.min.mjs' as string)) as Ort;
  ort.env.wasm.wasmPaths = '/ort/';
  config = (await (await fetch('/model/config.json')).json()) as ExportConfig;
  modelBytes = new Uint8Array(await (await fetch(`/model/${config.model.file}`)).arrayBuffer());
  $('model').textContent =
    `${config.preset} ${config.stage} · ${config.imageSize}×${config.imageSize} · ${config.sampler.name} ` +
    `(${config.sampler.nfePerImage} network evaluation${config.sampler.nfePerImage > 1 ? 's' : ''} per image)`;
  const select = $<HTMLSelectElement>('class');
  config.classNames.forEach((name, i) => select.add(new Option(`${i}: ${name}`, String(i))));
  select.add(new Option(`${config.numClasses}: unconditional`, String(config.numClasses)));
  const button = $<HTMLButtonElement>('generate');
  button.addEventListener('click', () => void onGenerate());
  button.disabled = false;
  (window as unknown as { epg: unknown }).epg = { generate, config };
  document.body.dataset.ready = '1';
}

main().catch((e: unknown) => {
  $('model').textContent = `could not load the model: ${(e as Error).message}`;
  document.body.dataset.ready = 'error';
});
