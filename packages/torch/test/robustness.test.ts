// Nothing a caller passes may crash the process: malformed arguments to every
// export of the native binding and to the public API end as JS errors
// (TypeError for a wrong JS argument, TorchError for what ATen refuses).
//
// The sweeps run in a child process (robustness-fuzz.ts), so that a segfault
// or abort is reported here as a failed test, with the call that caused it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as torch from '../src/index.js';
import { DisposedTensorError, TorchError } from '../src/index.js';
import { native } from '../src/native.js';
import { writeScriptModule } from './jit-fixture.js';

const here = dirname(fileURLToPath(import.meta.url));
const FUZZ = join(here, 'robustness-fuzz.js');

let dir = '';
let modulePath = '';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'epg-robust-'));
  modulePath = writeScriptModule(dir).path;
});

after(() => rmSync(dir, { recursive: true, force: true }));

interface Violation {
  call: string;
  problem: string;
  outcome: { name?: string; message?: string };
}

/** Runs the fuzz child; fails with the call it was making if it dies. */
function runChild(mode: string, ...args: string[]): unknown {
  const r = spawnSync(process.execPath, [FUZZ, mode, ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
    timeout: 120_000,
  });
  if (r.status !== 0) {
    const last = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('> '))
      .pop();
    const tail = r.stderr
      .split('\n')
      .filter((l) => !l.startsWith('> '))
      .slice(-15)
      .join('\n');
    assert.fail(
      `the ${mode} fuzz process died (status ${r.status}, signal ${r.signal}) during: ${last ?? '(start-up)'}\n${tail}`,
    );
  }
  return JSON.parse(r.stdout);
}

function describe(violations: Violation[]): string {
  return violations
    .slice(0, 15)
    .map((v) => `  ${v.call}: ${v.problem} (got ${v.outcome.name ?? 'a return'}: ${v.outcome.message ?? ''})`)
    .join('\n');
}

test('every native export survives wrong types, edge numbers, stale ids and missing/extra arguments', () => {
  const r = runChild('native', modulePath) as { calls: number; violations: Violation[]; uncovered: string[] };
  assert.deepEqual(r.uncovered, [], 'native exports the fuzz does not know (add them to SIGS)');
  assert.ok(r.calls > 2500, `only ${r.calls} calls`);
  assert.equal(r.violations.length, 0, `${r.violations.length} violations:\n${describe(r.violations)}`);
});

test('the public API (functions, namespaces, every Tensor method and accessor) survives malformed arguments', () => {
  const r = runChild('api') as { calls: number; violations: Violation[] };
  assert.ok(r.calls > 20000, `only ${r.calls} calls`);
  assert.equal(r.violations.length, 0, `${r.violations.length} violations:\n${describe(r.violations)}`);
});

test('inputs that used to crash the process now throw', () => {
  const r = runChild('scenarios', modulePath) as Record<string, { ok: boolean; name?: string; message?: string }>;
  const threw = (name: string, cls: string, pattern: RegExp) => {
    const o = r[name];
    assert.ok(o, `scenario ${name} did not run`);
    assert.equal(o.ok, false, `${name}: expected an error`);
    assert.equal(o.name, cls, `${name}: ${o.message}`);
    assert.match(o.message ?? '', pattern, name);
  };
  threw('jit: cyclic input array', 'TypeError', /nested more than 64 levels/);
  threw('jit: input nested 100000 deep', 'TypeError', /nested more than 64 levels/);
  assert.deepEqual(r['jit: getter disposes the module mid-call'], { ok: true, value: 'survived' });
  assert.deepEqual(r['call: element getter re-enters call() mid-conversion'], { ok: true, value: '2x3' });
  threw('call: element getter disposes the tensor being passed', 'TypeError', /not a live tensor/);
  threw('fromBuffer: zero-copy over a resizable ArrayBuffer', 'TypeError', /resizable ArrayBuffer/);
  threw('fromBuffer: zero-copy buffer transferred away, then used', 'TypeError', /detached \(transferred\)/);
  threw('fromBuffer: zero-copy buffer transferred away, then read back', 'TypeError', /detached \(transferred\)/);
  threw('toBufferAsync of a meta tensor rejects', 'Error', /meta tensor/);
  threw('worker thread loading the addon is refused', 'Error', /one JS thread per process/);
  assert.deepEqual(r['still alive'], { ok: true, value: true });
});

// ------------------------------------------------------- error classes and text

function throwsClass(fn: () => unknown, cls: new (...a: never[]) => Error, pattern?: RegExp): Error {
  let caught: unknown;
  try {
    torch.tidy(fn);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof cls, `expected ${cls.name}, got ${String(caught)}`);
  if (pattern) assert.match(caught.message, pattern);
  return caught;
}

test('ATen errors are TorchErrors that carry the operator name and ATen message', () => {
  const e = throwsClass(() => torch.ones([2, 3]).add(torch.ones([4])), TorchError, /aten::add\.Tensor/);
  assert.match(e.message, /must match/);
  assert.equal(e.name, 'TorchError');
  throwsClass(() => torch.ones([2, 3]).matmul(torch.ones([2, 3])), TorchError, /aten::matmul.*cannot be multiplied/s);
  throwsClass(() => torch.ones([2, 2]).sum(5), TorchError, /aten::sum\.dim_IntList.*Dimension out of range/s);
  throwsClass(() => torch.ones([2, 2]).transpose(0, -7), TorchError, /Dimension out of range/);
  throwsClass(() => torch.ones([3]).item(), TorchError, /aten::item.*3 elements/s);
  throwsClass(() => torch.ones([2]).view(3), TorchError, /aten::view.*invalid for input of size 2/s);
});

test('huge shapes throw a TorchError instead of aborting', () => {
  throwsClass(() => torch.zeros([1e12, 1e12]), TorchError, /overflow/i);
  throwsClass(() => torch.empty([2 ** 53]), TorchError, /allocate/);
  throwsClass(() => torch.ones([2 ** 40, 2 ** 40, 2 ** 40]), TorchError, /overflow/i);
  throwsClass(
    () =>
      torch
        .ones([2, 2])
        .expand(2 ** 40, 2 ** 40, 2)
        .contiguous(),
    TorchError,
  );
  throwsClass(() => torch.ones([4]).reshape(2 ** 53, 0), TorchError);
});

test('NaN, Infinity, fractional and negative sizes are TypeErrors', () => {
  for (const bad of [NaN, Infinity, -Infinity, 1.5, -1, -0.5])
    throwsClass(() => torch.zeros([2, bad]), TypeError, /non-negative integers/);
  throwsClass(() => torch.randn([NaN]), TypeError);
  throwsClass(() => torch.tensor([1, 2], { shape: [NaN] } as never), TypeError);
  throwsClass(() => torch.fromTypedArray(new Float32Array(4), [2, 1.5]), TypeError);
  // Below the public API, the binding rejects them the same way.
  const zeros = native.opHandle('zeros', '');
  for (const bad of [NaN, Infinity, 0.5, 2 ** 60, 'x', {}, Symbol('s')])
    assert.throws(() => native.call(zeros, [2, bad as number]), TypeError);
  assert.throws(() => native.call(zeros, [2, -1]), /non-negative/);
});

test('negative and out-of-range dims are errors, not crashes', () => {
  const t = torch.ones([2, 3]);
  try {
    assert.equal(t.size(-1), 3);
    assert.throws(() => t.size(-3), RangeError);
    throwsClass(() => t.select(0, -5), TorchError, /out of range/);
    throwsClass(() => t.narrow(1, 2, 5), TorchError);
    throwsClass(() => t.unsqueeze(9), TorchError, /Dimension out of range/);
    throwsClass(() => t.permute(0, 0), TorchError);
    throwsClass(() => t.index(0, 0, 0), RangeError);
    throwsClass(() => t.slice(0, 0, 1, -1), RangeError);
    throwsClass(() => t.slice(5), TorchError);
  } finally {
    t.dispose();
  }
});

test('a disposed tensor gives DisposedTensorError with a remedy, everywhere', () => {
  const t = torch.ones([2]);
  t.dispose();
  const e = throwsClass(() => t.add(1), DisposedTensorError, /keep\(t\)/);
  assert.match(e.message, /return it from the scope/);
  throwsClass(() => t.shape, DisposedTensorError);
  throwsClass(() => t.toArray(), DisposedTensorError);
  throwsClass(() => torch.ones([2]).add(t), DisposedTensorError);
  throwsClass(() => torch.F.relu(t), DisposedTensorError);
  throwsClass(() => torch.cat([torch.ones([2]), t]), DisposedTensorError);
  throwsClass(() => torch.ops.call('aten::neg', '', t), DisposedTensorError);
  assert.equal(t.isDisposed, true);
  assert.equal(String(t), 'Tensor(<disposed>)');
  t.dispose(); // twice is fine
  // A tensor freed by its scope, used after the scope.
  const escaped = torch.tidy(() => {
    const inner = torch.ones([2]);
    return { leaked: [inner.mul(2)], unrelated: 1 };
  });
  let dropped: torch.Tensor | undefined;
  torch.tidy(() => {
    dropped = torch.ones([2]);
  });
  throwsClass(() => dropped!.sum(), DisposedTensorError, /scope that created it/);
  escaped.leaked[0]!.dispose();
});

test('invalid devices: TypeError for unknown names, TorchError for absent devices', () => {
  throwsClass(() => torch.zeros([2], { device: 'tpu' as never }), TypeError, /expected 'cpu', 'cuda'/);
  throwsClass(() => torch.zeros([2], { device: 'cpu:5' as never }), TypeError);
  throwsClass(() => torch.ones([2]).to('tpu' as never), TypeError);
  throwsClass(() => torch.zeros([2], { device: 'cuda:99' }), TorchError);
  throwsClass(() => torch.ones([2]).to('cuda:99'), TorchError);
  throwsClass(() => new torch.Generator('tpu' as never), TypeError);
  throwsClass(() => torch.autocast('tpu' as never, () => 1), TypeError);
  const zeros = native.opHandle('zeros', '');
  for (const device of ['tpu', 'cpu:5', 'xla', 'mps', 'cuda:-1', 'cuda:300', ''])
    assert.throws(() => native.call(zeros, [2], null, null, device), { name: 'TypeError', message: /invalid device/ });
});

test('wrong dtypes and dtype codes are TypeErrors', () => {
  throwsClass(() => torch.zeros([2], { dtype: 'complex64' as never }), TypeError, /unknown dtype 'complex64'/);
  throwsClass(() => torch.ones([2]).to('float128' as never), TypeError, /unknown dtype/);
  throwsClass(() => torch.ops.call('aten::zeros', '', [2], { dtype: 'nope' as never }), TypeError);
  const zeros = native.opHandle('zeros', '');
  for (const code of [999, -1, 47, 48, 2 ** 31])
    assert.throws(() => native.call(zeros, [2], code), { name: 'TypeError', message: /unknown dtype code/ });
  assert.throws(() => native.call(zeros, [2], null, 42), { name: 'TypeError', message: /unknown layout/ });
  // Quantized dtypes need a quantizer: not from raw bytes.
  assert.throws(() => native.fromBuffer(new Uint8Array(4), 12, [4], true), { name: 'TypeError', message: /raw bytes/ });
  assert.throws(() => native.fromBuffer(new Uint8Array(4), 47, [4], true), TypeError);
  // A tensor of a dtype the TS API does not model still answers, with a TypeError.
  const c = torch.ops.call('aten::zeros', '', [2], 9 as never) as torch.Tensor;
  try {
    assert.throws(() => c.dtype, { name: 'TypeError', message: /does not support/ });
  } finally {
    c.dispose();
  }
});

test('ops.call: unknown operators, wrong handles, missing and extra arguments', () => {
  throwsClass(() => torch.ops.call('aten::no_such_op', ''), TypeError, /no operator aten::no_such_op/);
  throwsClass(() => torch.ops.call('add', 'NoSuchOverload'), TypeError, /no operator aten::add\.NoSuchOverload/);
  throwsClass(() => torch.ops.call('', ''), TypeError);
  throwsClass(() => torch.ops.info('prim::nonexistent'), TypeError);
  const a = torch.ones([2]);
  try {
    throwsClass(() => torch.ops.call('add', 'Tensor', a), TypeError, /argument 'other' \(Tensor\): missing required/);
    throwsClass(() => torch.ops.call('neg', '', a, a, a), TypeError, /expected at most 1 arguments, got 3/);
    throwsClass(() => torch.ops.call('add', 'Tensor', a, 'x' as never), TypeError, /expected a Tensor/);
    throwsClass(() => torch.ops.call('add', 'Tensor', a, a, 'x' as never), TypeError, /expected a number/);
  } finally {
    a.dispose();
  }
  for (const h of [-1, 1e9, NaN, 0.5, 'add', null, undefined])
    assert.throws(() => native.call(h as number), { name: 'TypeError', message: /not an operator handle/ });
  const neg = native.opHandle('neg', '');
  assert.throws(() => native.call(neg, ...new Array<number>(45).fill(0)), /too many arguments/);
});

test('stale and out-of-range tensor ids never alias another tensor', () => {
  const t = native.fromBuffer(new Float32Array([7]), 6, [1], true);
  try {
    for (const id of [2 ** 31 - 1, 123456, -1])
      assert.throws(() => native.shape(id), { name: 'TypeError', message: /not a live tensor/ });
    // NaN, fractions and 2**32 used to be read as id 0 (some other tensor).
    for (const id of [NaN, 0.5, 2 ** 32, -2, t + 0.25])
      assert.throws(() => native.shape(id), { name: 'TypeError', message: /expected a Tensor/ });
    for (const id of [NaN, 0.5, Infinity, 'x'])
      assert.throws(() => native.dispose(id as number), TypeError, 'dispose must not free tensor 0 for NaN');
    assert.deepEqual(native.shape(t), [1], 'the live tensor survived');
    native.dispose(2 ** 31 - 1); // an id that names nothing: a no-op
  } finally {
    native.dispose(t);
  }
});

test("a user getter's exception comes through unchanged", () => {
  const boom = new Error('from the getter');
  const shape: number[] = [2];
  Object.defineProperty(shape, 1, {
    get() {
      throw boom;
    },
  });
  assert.throws(
    () => native.call(native.opHandle('zeros', ''), shape),
    (e) => e === boom,
  );
  assert.throws(
    () => torch.zeros(shape),
    (e) => e === boom,
  );
});

test('TorchErrors from async reads and TorchScript calls', async () => {
  const m = torch.zeros([2], { device: 'meta' });
  try {
    await assert.rejects(m.toTypedArrayAsync(), TorchError);
    assert.throws(() => m.toTypedArray(), TorchError);
  } finally {
    m.dispose();
  }
  const mod = torch.jit.load(modulePath);
  try {
    assert.throws(() => mod.forward(1), TorchError);
    assert.throws(() => mod.call('nope'), { name: 'TypeError', message: /no method 'nope'/ });
    assert.throws(() => mod.to('cuda:99'), TorchError);
  } finally {
    mod.dispose();
  }
});

test('autocast scope bookkeeping cannot go negative', () => {
  assert.throws(() => native.autocastNesting(-1), { name: 'TypeError', message: /more scopes closed than opened/ });
  assert.throws(() => native.autocastNesting(5), TypeError);
  assert.throws(() => native.autocastSet('cpu', true, 4), { name: 'TypeError', message: /floating point dtype/ });
  assert.equal(native.isAutocastEnabled('cpu'), false);
  assert.equal(
    torch.autocast('cpu', () => native.isAutocastEnabled('cpu')),
    true,
  );
  assert.equal(native.isAutocastEnabled('cpu'), false);
});

test('grad assignment checks its value', () => {
  const w = torch.ones([2, 2]).requiresGrad_();
  try {
    assert.throws(() => {
      w.grad = 'x' as never;
    }, TypeError);
    assert.throws(() => {
      torch.tidy(() => {
        w.grad = torch.ones([3]);
      });
    }, /assigned grad/);
    torch.tidy(() => {
      w.grad = torch.full([2, 2], 3);
    });
    assert.deepEqual(
      torch.tidy(() => w.grad!.toArray()),
      [
        [3, 3],
        [3, 3],
      ],
    );
    w.grad = null;
    assert.equal(w.grad, null);
  } finally {
    w.dispose();
  }
});

test('no tensors leak from this file', () => {
  assert.equal(torch.liveTensors(), 0);
});
