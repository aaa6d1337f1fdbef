// TorchScript: a module scripted and saved by Python, loaded and run from JS;
// its methods' outputs (tensors, tuples, lists, dicts, numbers, strings) match
// Python's on the same input. Missing and corrupt files give clear errors (in a
// child process, so that a crash in the loader would show as a failure).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

import * as torch from '../src/index.js';
import { jit, TorchError, type Tensor } from '../src/index.js';
import type { ScriptValue } from '../src/jit.js';
import { assertClose } from './harness.js';
import { writeScriptModule, type Encoded, type Reference } from './jit-fixture.js';

let dir = '';
let path = '';
let ref: Reference;
const input = new Float32Array(3 * 8 * 8);

before(() => {
  // A deterministic input, passed to Python as raw float32 bytes.
  let s = 12345;
  for (let i = 0; i < input.length; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    input[i] = s / 2 ** 30 - 1;
  }
  dir = mkdtempSync(join(tmpdir(), 'epg-jit-'));
  const w = writeScriptModule(dir, input);
  path = w.path;
  ref = w.reference!;
});

after(() => rmSync(dir, { recursive: true, force: true }));

function close(t: ScriptValue | undefined, e: Encoded, what: string): void {
  assert.ok(t instanceof torch.Tensor, `${what}: expected a Tensor, got ${String(t)}`);
  assert.deepEqual(t.shape, e.shape, `${what}: shape`);
  assertClose(t.toTypedArray() as Float32Array, e.data, 1e-6, 1e-6, what);
}

function x(): Tensor {
  return torch.fromTypedArray(input, [1, 3, 8, 8]);
}

test('forward matches PyTorch on the same input and weights', () => {
  const m = jit.load(path);
  try {
    torch.tidy(() => close(m.forward(x()), ref.forward, 'forward'));
  } finally {
    m.dispose();
  }
});

test('methods returning a tuple of (tensor, list, dict) come back as nested arrays and objects', () => {
  using m = jit.load(path);
  torch.tidy(() => {
    const r = m.call('stats', x(), 3) as ScriptValue[];
    assert.ok(Array.isArray(r) && r.length === 3);
    close(r[0], ref.stats[0], 'stats[0] (sum * k)');
    const list = r[1] as ScriptValue[];
    assert.ok(Array.isArray(list) && list.length === 2);
    close(list[0], ref.stats[1][0]!, 'stats[1][0] (mean)');
    close(list[1], ref.stats[1][1]!, 'stats[1][1] (amax)');
    const dict = r[2] as Record<string, ScriptValue>;
    assert.deepEqual(Object.keys(dict).sort(), ['double', 'min']);
    close(dict.min, ref.stats[2].min!, "stats[2]['min']");
    close(dict.double, ref.stats[2].double!, "stats[2]['double']");

    const f = m.call('features', x()) as ScriptValue[];
    assert.equal(f.length, 2);
    close(f[0], ref.features[0]!, 'features[0] (conv map)');
    close(f[1], ref.features[1]!, 'features[1] (pooled)');
  });
});

test('numbers, lists and strings pass both ways', () => {
  using m = jit.load(path);
  assert.equal(m.call('count', [1, 2, 3, 4]), 4);
  assert.equal(m.call('count', []), 0);
  torch.tidy(() => {
    const [scaled, name] = m.call('scale', x(), 0.5, 'net') as [Tensor, string];
    assert.equal(name, 'net!');
    assertClose(
      scaled.toTypedArray() as Float32Array,
      Array.from(input, (v) => v * 0.5),
      0,
      0,
      'scale',
    );
    // An integral number for a float parameter.
    const [doubled] = m.call('scale', x(), 2, '') as [Tensor, string];
    assertClose(
      doubled.toTypedArray() as Float32Array,
      Array.from(input, (v) => v * 2),
      0,
      0,
      'scale by 2',
    );
  });
});

test('script errors and wrong inputs are TorchErrors; unknown methods TypeErrors', () => {
  using m = jit.load(path);
  torch.tidy(() => {
    assert.throws(() => m.call('fail', x()), { name: 'TorchError', message: /deliberate failure from TorchScript/ });
    assert.throws(() => m.forward(1), { name: 'TorchError', message: /Expected a value of type 'Tensor'/ });
    assert.throws(() => m.forward(), { name: 'TorchError', message: /missing value for argument 'x'/ });
    assert.throws(() => m.forward(torch.ones([2, 2])), TorchError);
    assert.throws(() => m.call('count', ['a']), TorchError);
    assert.throws(() => m.call('no_such_method'), { name: 'TypeError', message: /no method 'no_such_method'/ });
    assert.throws(() => m.forward({ a: x() }), { name: 'TypeError', message: /dicts are not supported/ });
    const t = x();
    t.dispose();
    assert.throws(() => m.forward(t), torch.DisposedTensorError);
  });
  // The module still works after all of that.
  torch.tidy(() => close(m.forward(x()), ref.forward, 'forward after errors'));
});

test('load with a device, to(), and outputs that do not leak', () => {
  const base = torch.liveTensors();
  const m = jit.load(path, 'cpu').to('cpu');
  try {
    const out = torch.tidy(() => m.forward(x()));
    assert.equal(torch.liveTensors(), base + 1, 'the input was freed with its scope');
    (out as Tensor).dispose();
    assert.equal(torch.liveTensors(), base);
  } finally {
    m.dispose();
  }
  assert.throws(() => jit.load(path, 'tpu' as never), TypeError);
  if (!torch.cuda.isAvailable()) assert.throws(() => jit.load(path, 'cuda'), TorchError);
});

test('dispose: calls afterwards throw, twice is safe, `using` disposes', () => {
  const m = jit.load(path);
  m.dispose();
  assert.throws(() => m.forward(), /was disposed/);
  assert.throws(() => m.handle, /was disposed/);
  m.dispose();
  let escaped: jit.ScriptModule | undefined;
  {
    using n = jit.load(path);
    escaped = n;
  }
  assert.throws(() => escaped.call('count', []), /was disposed/);
});

test('a missing file is a TorchError naming the path', () => {
  const missing = join(dir, 'nope.pt');
  assert.throws(() => jit.load(missing), { name: 'TorchError', message: new RegExp(`no such file '${missing}'`) });
});

const here = dirname(fileURLToPath(import.meta.url));
const INDEX = pathToFileURL(join(here, '..', 'src', 'index.js')).href;

test('corrupt files (random bytes, truncated, empty, bit-flipped, a directory) throw and never crash', () => {
  const bad = join(dir, 'bad');
  mkdirSync(bad);
  const good = readFileSync(path);
  const files: Record<string, Buffer> = {
    'random bytes': Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 251)),
    'truncated to half': good.subarray(0, good.length >> 1),
    'truncated by 100 bytes': good.subarray(0, good.length - 100),
    'first 30 bytes': good.subarray(0, 30),
    empty: Buffer.alloc(0),
    'a text file': Buffer.from('def forward(self, x):\n    return x\n'),
  };
  // Bit flips spread over the file (headers, pickles, weights, directory).
  let s = 99;
  for (let k = 0; k < 24; k++) {
    const b = Buffer.from(good);
    for (let j = 0; j < 4; j++) {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      const at = s % b.length;
      b[at] = b[at]! ^ (1 << (s % 8));
    }
    files[`bit flips #${k}`] = b;
  }
  const paths: Record<string, string> = { 'a directory': bad };
  for (const [name, data] of Object.entries(files)) {
    const p = join(bad, `${name.replace(/\W+/g, '_')}.pt`);
    writeFileSync(p, data);
    paths[name] = p;
  }
  const code = `
    import { writeSync } from 'node:fs';
    const torch = await import(${JSON.stringify(INDEX)});
    const paths = ${JSON.stringify(paths)};
    const out = {};
    for (const [name, p] of Object.entries(paths)) {
      writeSync(2, '> ' + name + '\\n');
      try {
        const m = torch.jit.load(p);
        try {
          const y = m.forward(torch.zeros([1, 3, 8, 8]));
          out[name] = { loaded: true, ran: true };
          if (y instanceof torch.Tensor) y.dispose();
        } catch (e) {
          out[name] = { loaded: true, ran: false, name: e.name, message: e.message };
        } finally {
          m.dispose();
        }
      } catch (e) {
        out[name] = { loaded: false, name: e.name, message: e.message };
      }
    }
    console.log(JSON.stringify(out));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 60_000 });
  const last = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('> '))
    .pop();
  assert.equal(r.status, 0, `the loader process died (${r.signal ?? r.status}) on: ${last}\n${r.stderr.slice(-2000)}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<
    string,
    { loaded: boolean; ran?: boolean; name?: string; message?: string }
  >;
  for (const name of [
    'a directory',
    'random bytes',
    'truncated to half',
    'truncated by 100 bytes',
    'first 30 bytes',
    'empty',
    'a text file',
  ]) {
    const o = out[name]!;
    assert.equal(o.loaded, false, `${name} loaded`);
    assert.equal(o.name, 'TorchError', `${name}: ${o.name}: ${o.message}`);
    assert.match(o.message!, /cannot load TorchScript module/, name);
    assert.ok(o.message!.includes(paths[name]!), `${name}: the message names the file`);
  }
  for (const [name, o] of Object.entries(out)) {
    if (!o.loaded || o.ran === false)
      assert.ok(o.message && o.message.length > 0, `${name}: an error without a message`);
  }
});

test('no tensors leak from this file', () => {
  assert.equal(torch.liveTensors(), 0);
});
