// The browser demo in a real browser: headless Chromium (Debian's `chromium`)
// opens the page from `epg serve`, generates a fixed seed's images with the
// WebAssembly backend of onnxruntime-web, and the canvas pixels must match the
// same seed's images computed in Node (onnxruntime-node on the same model, the
// same seeded noise) within 1/255 per pixel. Chromium is driven over the
// DevTools protocol on a pipe (--remote-debugging-pipe), so no extra package
// is needed. A screenshot of the page goes to docs/browser-demo.png with EPG_UPDATE_DOCS=1.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

import { imagesToRgba, seededNoise } from '../src/export-io.js';
import { exportModel } from '../src/export.js';
import { buildEPG } from '../src/models/presets.js';
import { serve } from '../src/serve.js';
import { saveCheckpoint } from '../src/train/checkpoint.js';
import { loadConfig } from '../src/train/config.js';

interface OrtTensor {
  data: Float32Array;
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
const CHROMIUM = process.env.EPG_CHROMIUM ?? 'chromium';

const root = mkdtempSync(join(tmpdir(), 'epg-browser-'));
const children: ChildProcess[] = [];
after(async () => {
  for (const c of children)
    if (c.exitCode === null && c.signalCode === null) {
      const exited = new Promise((done) => c.once('exit', done));
      c.kill('SIGTERM');
      await exited;
    }
  rmSync(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
});

/** A minimal DevTools-protocol client over Chromium's pipe (fd 3 in, fd 4 out, NUL-separated JSON). */
class Cdp {
  private nextId = 1;
  private buffer = '';
  private readonly pending = new Map<number, { ok: (v: unknown) => void; fail: (e: Error) => void }>();
  constructor(
    private readonly input: Writable,
    output: Readable,
  ) {
    output.setEncoding('utf8');
    output.on('data', (chunk: string) => {
      this.buffer += chunk;
      let end: number;
      while ((end = this.buffer.indexOf('\0')) >= 0) {
        const msg = JSON.parse(this.buffer.slice(0, end)) as {
          id?: number;
          result?: unknown;
          error?: { message: string };
        };
        this.buffer = this.buffer.slice(end + 1);
        const p = msg.id !== undefined ? this.pending.get(msg.id) : undefined;
        if (p) {
          this.pending.delete(msg.id!);
          if (msg.error) p.fail(new Error(msg.error.message));
          else p.ok(msg.result);
        }
      }
    });
  }
  send<T>(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<T> {
    const id = this.nextId++;
    this.input.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
    return new Promise<T>((ok, fail) => this.pending.set(id, { ok: ok as (v: unknown) => void, fail }));
  }
}

async function evaluate<T>(cdp: Cdp, session: string, expression: string): Promise<T> {
  const r = await cdp.send<{ result: { value: T }; exceptionDetails?: { exception?: { description?: string } } }>(
    'Runtime.evaluate',
    { expression, awaitPromise: true, returnByValue: true },
    session,
  );
  if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? 'exception'}`);
  return r.result.value;
}

function exportedModel(): string {
  torch.manualSeed(5);
  const model = buildEPG('EPG-T/4', { numClasses: 10 });
  torch.noGrad(() => {
    for (const [, p] of model.namedParameters()) torch.tidy(() => p.copy_(torch.randnLike(p).mul(0.1)));
  });
  const run = join(root, 'run');
  mkdirSync(run);
  const tensors = new Map<string, Tensor>();
  for (const [k, v] of model.stateDict()) tensors.set(`ema.${k}`, v).set(`model.${k}`, v);
  saveCheckpoint(run, tensors, {
    step: 1,
    stage: 'cm',
    preset: 'EPG-T/4',
    config: loadConfig('fashion-mnist-cm'),
    optimizer: null,
    scaler: null,
    rng: {},
    extra: {},
  });
  model.dispose();
  const out = join(root, 'export');
  exportModel({ checkpoint: run, out, sampler: 'onestep' });
  return out;
}

test('headless Chromium generates the same images as Node for a fixed seed (WebAssembly backend)', async () => {
  assert.equal(
    spawnSync(CHROMIUM, ['--version'], { encoding: 'utf8' }).status,
    0,
    `${CHROMIUM} is not installed; run \`npm run setup:web\` (installs Debian's chromium)`,
  );
  const dir = exportedModel();
  const SEED = 1234;
  const CLASS = 7;
  const COUNT = 6;

  // Node: onnxruntime-node on the same model and noise.
  const session = await ort.InferenceSession.create(join(dir, 'model.onnx'));
  const out = await session.run({
    noise: new ort.Tensor('float32', seededNoise(SEED, COUNT * 28 * 28), [COUNT, 1, 28, 28]),
    labels: new ort.Tensor('int64', new BigInt64Array(COUNT).fill(BigInt(CLASS)), [COUNT]),
  });
  const want = imagesToRgba(out.images!.data, COUNT, 1, 28, 28);

  // epg serve on a free port.
  const cli = join(repo, 'packages', 'epg', 'dist', 'src', 'cli.js');
  const server = spawn(process.execPath, [cli, 'serve', dir, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(server);
  const url = await new Promise<string>((ok, fail) => {
    let text = '';
    server.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
      const m = /at (http:\/\/\S+)/.exec(text);
      if (m) ok(m[1]!);
    });
    server.on('exit', (code) => fail(new Error(`epg serve exited with ${code}`)));
  });

  const browser = spawn(
    CHROMIUM,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--remote-debugging-pipe',
      `--user-data-dir=${join(root, 'chromium-profile')}`,
      '--no-first-run',
      '--window-size=1000,700',
      'about:blank',
    ],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
  );
  children.push(browser);
  const cdp = new Cdp(browser.stdio[3] as Writable, browser.stdio[4] as Readable);
  const { targetId } = await cdp.send<{ targetId: string }>('Target.createTarget', { url });
  const { sessionId } = await cdp.send<{ sessionId: string }>('Target.attachToTarget', { targetId, flatten: true });
  const deadline = Date.now() + 60_000;
  let ready = '';
  while (Date.now() < deadline && ready !== '1' && ready !== 'error') {
    await new Promise((r) => setTimeout(r, 200));
    ready = await evaluate<string>(cdp, sessionId, 'document.body?.dataset.ready ?? ""');
  }
  assert.equal(
    ready,
    '1',
    await evaluate<string>(cdp, sessionId, 'document.getElementById("model")?.textContent ?? ""'),
  );
  const got = await evaluate<{ backend: string; rgba: number[]; width: number; height: number; ms: number }>(
    cdp,
    sessionId,
    `window.epg.generate({ classIndex: ${CLASS}, seed: ${SEED}, count: ${COUNT}, backend: 'wasm' })`,
  );
  assert.equal(got.backend, 'wasm');
  assert.equal(got.width, COUNT * 28);
  assert.equal(got.rgba.length, want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got.rgba[i]! - want[i]!));
  assert.ok(worst <= 1, `canvas and Node differ by ${worst}/255 at most`);
  // The images are not blank (the comparison can fail).
  assert.ok(new Set(want).size > 50);

  // The page as a user sees it: into docs/ only when asked (EPG_UPDATE_DOCS=1), so a test run
  // leaves the work tree as it found it; otherwise beside the test's temporary files.
  await evaluate(
    cdp,
    sessionId,
    `(() => { for (const [id, v] of [['seed', ${SEED}], ['count', ${COUNT}], ['class', ${CLASS}]]) document.getElementById(id).value = String(v);
      document.getElementById('status').textContent = '${COUNT} images in ' + ${got.ms.toFixed(0)} + ' ms (wasm)'; })()`,
  );
  const shot = await cdp.send<{ data: string }>('Page.captureScreenshot', { format: 'png' }, sessionId);
  const shotPath = process.env['EPG_UPDATE_DOCS']
    ? join(repo, 'docs', 'browser-demo.png')
    : join(tmpdir(), 'epg-browser-demo.png');
  writeFileSync(shotPath, Buffer.from(shot.data, 'base64'));
  assert.ok(statSync(shotPath).size > 1000, 'the screenshot is a picture');
  await cdp.send('Browser.close').catch(() => undefined);
});

test('epg serve refuses a folder that is not an export and serves nothing outside its folders', async () => {
  await assert.rejects(serve({ dir: root, port: 0 }), /not an exported model folder \(no config\.json\)/);
  const dir = join(root, 'served');
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), '{}');
  const { server, url } = await serve({ dir, port: 0 });
  try {
    const config = await fetch(`${url}model/config.json`);
    assert.equal(config.status, 200);
    assert.equal(config.headers.get('cross-origin-embedder-policy'), 'require-corp');
    assert.equal((await fetch(`${url}model/missing.onnx`)).status, 404);
    assert.equal((await fetch(`${url}model/..%2F..%2Fpackage.json`)).status, 403);
    assert.equal((await fetch(url)).status, 200, 'the page');
  } finally {
    server.close();
    server.closeAllConnections();
  }
});
