// Images/s of an exported one-step model: in headless Chromium (onnxruntime-web,
// WebAssembly, through `epg serve`), in onnxruntime-node, and in libtorch (the
// same checkpoint through @epg/epg's sampler), on this machine's CPU.
//   node packages/web/bench.mjs CHECKPOINT_OR_RUN EXPORTED_DIR [--batch 16] [--reps 5]
// The numbers of BENCHMARKS.md ("ONNX export and the browser demo") come from it.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { batch: { type: 'string', default: '16' }, reps: { type: 'string', default: '5' } },
});
const [checkpoint, dir] = positionals;
if (!checkpoint || !dir) {
  console.error('usage: node packages/web/bench.mjs CHECKPOINT_OR_RUN EXPORTED_DIR [--batch N] [--reps N]');
  process.exit(2);
}
const batch = Number(values.batch);
const reps = Number(values.reps);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const torch = await import(join(repo, 'packages/torch/dist/src/index.js'));
const epg = await import(join(repo, 'packages/epg/dist/src/sample.js'));
const { seededNoise } = await import(join(repo, 'packages/epg/dist/src/export-io.js'));
const { clampRange } = await import(join(repo, 'packages/epg/dist/src/data/normalize.js'));
const config = JSON.parse(await (await import('node:fs')).promises.readFile(join(dir, 'config.json'), 'utf8'));
const { imageSize: H, channels: C } = config;

// libtorch: the exported function (sampler and inverse normalisation) on the same CPU.
const { model, norm } = epg.loadModel({ checkpoint }, 'cpu');
model.eval().requiresGrad_(false);
const sample = epg.samplerFunction(model, {
  sampler: 'onestep',
  steps: 1,
  cfgScale: 1,
  guidanceInterval: [0.19, 1.61],
  appendZero: false,
  clamp: clampRange(norm, C),
});
const noise = seededNoise(0, batch * C * H * H);
const libtorchMs = [];
for (let r = 0; r <= reps; r++) {
  const t0 = performance.now();
  torch.inferenceMode(() =>
    torch.tidy(() => {
      const x = torch.tensor(Array.from(noise)).reshape(batch, C, H, H).mul(config.sampler.noiseScale);
      sample(x, torch.zeros([batch], { dtype: 'int64' })).toTypedArray();
    }),
  );
  if (r > 0) libtorchMs.push(performance.now() - t0);
}

// onnxruntime-node.
const ort = createRequire(join(here, 'package.json'))('onnxruntime-node');
const session = await ort.InferenceSession.create(join(dir, 'model.onnx'));
const feeds = {
  noise: new ort.Tensor('float32', noise, [batch, C, H, H]),
  labels: new ort.Tensor('int64', new BigInt64Array(batch), [batch]),
};
const ortMs = [];
for (let r = 0; r <= reps; r++) {
  const t0 = performance.now();
  await session.run(feeds);
  if (r > 0) ortMs.push(performance.now() - t0);
}

// Chromium, WebAssembly, through epg serve (DevTools protocol on a pipe).
const server = spawn(process.execPath, [join(repo, 'packages/epg/dist/src/cli.js'), 'serve', dir, '--port', '0']);
const url = await new Promise((ok) => {
  let text = '';
  server.stdout.on('data', (d) => {
    text += d;
    const m = /at (http:\/\/\S+)/.exec(text);
    if (m) ok(m[1]);
  });
});
const profile = mkdtempSync(join(tmpdir(), 'epg-bench-chromium-'));
const browser = spawn(
  process.env.EPG_CHROMIUM ?? 'chromium',
  [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--remote-debugging-pipe',
    `--user-data-dir=${profile}`,
    'about:blank',
  ],
  { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] },
);
let id = 0;
let buffer = '';
const pending = new Map();
browser.stdio[4].setEncoding('utf8');
browser.stdio[4].on('data', (chunk) => {
  buffer += chunk;
  let end;
  while ((end = buffer.indexOf('\0')) >= 0) {
    const msg = JSON.parse(buffer.slice(0, end));
    buffer = buffer.slice(end + 1);
    if (msg.id !== undefined && pending.has(msg.id)) {
      pending.get(msg.id)(msg);
      pending.delete(msg.id);
    }
  }
});
const send = (method, params = {}, sessionId) =>
  new Promise((ok) => {
    const i = ++id;
    pending.set(i, ok);
    browser.stdio[3].write(JSON.stringify({ id: i, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
  });
const { result: target } = await send('Target.createTarget', { url });
const { result: attached } = await send('Target.attachToTarget', { targetId: target.targetId, flatten: true });
const evaluate = async (expression) =>
  (await send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true }, attached.sessionId)).result
    .result.value;
while ((await evaluate('document.body?.dataset.ready ?? ""').catch(() => '')) !== '1')
  await new Promise((r) => setTimeout(r, 200));
const info = await evaluate(
  '({ threads: self.crossOriginIsolated, cores: navigator.hardwareConcurrency, gpu: "gpu" in navigator })',
);
const browserMs = [];
for (let r = 0; r <= reps; r++) {
  const res = await evaluate(`window.epg.generate({ classIndex: 0, seed: 0, count: ${batch}, backend: 'wasm' })`);
  if (r > 0) browserMs.push(res.ms);
}
browser.kill();
server.kill();
await new Promise((r) => browser.once('exit', r));
rmSync(profile, { recursive: true, force: true });

const rate = (ms) => ((1000 * batch) / median(ms)).toFixed(1);
console.log(`batch ${batch}, median of ${reps} after one warm-up; libtorch threads ${torch.getNumThreads()}`);
console.log(`libtorch             ${median(libtorchMs).toFixed(1)} ms  ${rate(libtorchMs)} images/s`);
console.log(`onnxruntime-node     ${median(ortMs).toFixed(1)} ms  ${rate(ortMs)} images/s`);
console.log(
  `Chromium wasm        ${median(browserMs).toFixed(1)} ms  ${rate(browserMs)} images/s  (${JSON.stringify(info)})`,
);
model.dispose();
process.exit(0);
