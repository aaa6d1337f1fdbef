// PyTorch .pt import: state dicts and checkpoint dicts written by torch.save, compared
// bit-exact; damaged, foreign, legacy and unsafe files rejected with CheckpointErrors.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';

import { io, type Tensor } from '../src/index.js';
import { setChunkBytesForTesting } from '../src/io/file.js';
import { assertCheckpointError, assertTensorMatches, PY_RAW, py, tempDir, type Expected } from './io-helpers.js';

const tmp = tempDir('epg-io-pt-');
after(() => tmp.cleanup());

interface Made {
  sd: [string, Expected][];
  shared: Record<string, Expected>;
  param: Expected;
  /** The same plain object pickled with protocols 2, 3, 4, 5 (hex). */
  pickles: string[];
}

// One Python process writes every checkpoint and the expected bytes of its tensors.
const made = JSON.parse(
  py(
    PY_RAW +
      `
import io, json, os, pickle, sys, zipfile
import torch.nn as nn
d = sys.argv[1]
p = lambda n: os.path.join(d, n)
torch.manual_seed(0)

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.ln = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 2)
        self.register_buffer('bf', torch.randn(3, 2).to(torch.bfloat16))
        self.register_buffer('f16', torch.randn(5).half())
    def forward(self, x):
        x = self.bn(self.conv(x)).mean((2, 3))
        return self.fc(self.ln(x))

net = Net()
net.train()
for _ in range(3):
    net(torch.randn(2, 3, 8, 8))
sd = net.state_dict()
assert sd['bn.num_batches_tracked'].item() == 3
torch.save(sd, p('sd.pt'))

t = torch.randn(4, 4)
w = torch.randn(3, 2)
shared = {
    'a': t, 'b': t[1:, ::2], 'c': t[2], 'd': t.t(), 'e': t.view(16)[3:11],
    'tied1': w, 'tied2': w,
    'scalar': torch.tensor(2.5), 'empty': torch.zeros(0, 3),
    'f64': torch.randn(3, dtype=torch.float64), 'i32': torch.randint(-9, 9, (5,), dtype=torch.int32),
    'i16': torch.randint(-9, 9, (2, 2), dtype=torch.int16), 'i8': torch.randint(-9, 9, (3,), dtype=torch.int8),
    'u8': torch.randint(0, 255, (4,), dtype=torch.uint8), 'bool': torch.tensor([True, False, True]),
    'bf16_view': torch.randn(6, 4).to(torch.bfloat16)[:, 1:3],
}
torch.save(shared, p('shared.pt'))
torch.save({'enc': {'w': w, 'sub': {'b': t}}, 'dec': {'x': t[2]}}, p('nested.pt'))
torch.save({'w': w, 'epoch': 3, 'sub': {'b': t}}, p('mixed.pt'))

param = nn.Parameter(torch.randn(2, 3))
ckpt = {
    'model': sd, 'step': 10, 'lr': 0.1, 'name': 'x', 'nested': {'list': [1, 2, (3, 4)]},
    'flag': True, 'none': None, 'big': 2 ** 70, 'neg': -3, 'bytes': bytes([0, 255, 97, 98]), 'nobytes': b'',
    'intkeys': {1: 'a', 2: 'b'}, 'dtype': torch.float16, 'device': torch.device('cuda', 1),
    'size': torch.Size([2, 3]), 'set': {1, 2}, 'param': param, 'float': 1.5e-300, 'unicode': 'héllo ✓',
}
torch.save(ckpt, p('ckpt.pt'))
torch.save(ckpt, p('ckpt4.pt'), pickle_protocol=4)
torch.save(sd, p('legacy.pt'), _use_new_zipfile_serialization=False)
torch.save({'net': net}, p('module.pt'))
lin = nn.Linear(3, 2)  # not net: sd holds net's live parameters
opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
lin(torch.randn(4, 3)).sum().backward()
opt.step()
torch.save(opt.state_dict(), p('optim.pt'))

# A checkpoint whose pickle calls os.system: the zip of a real one with data.pkl replaced.
class Evil:
    def __reduce__(self):
        return (os.system, ('touch ' + p('pwned'),))
with zipfile.ZipFile(p('shared.pt')) as src, zipfile.ZipFile(p('evil.pt'), 'w') as dst:
    for info in src.infolist():
        data = src.read(info.filename)
        if info.filename.endswith('/data.pkl'):
            data = pickle.dumps({'x': Evil()}, protocol=2)
        dst.writestr(info, data)


# Damaged copies of shared.pt: data.pkl cut short, and the storages left out.
with zipfile.ZipFile(p('shared.pt')) as s, zipfile.ZipFile(p('cutpkl.pt'), 'w') as a, zipfile.ZipFile(p('nostore.pt'), 'w') as b:
    for info in s.infolist():
        data = s.read(info.filename)
        if info.filename.endswith('/data.pkl'):
            a.writestr(zipfile.ZipInfo(info.filename), data[: len(data) // 2])
        else:
            a.writestr(zipfile.ZipInfo(info.filename), data)
        if '/data/' not in info.filename:
            b.writestr(zipfile.ZipInfo(info.filename), data)
with zipfile.ZipFile(p('other.zip'), 'w') as z:
    z.writestr('x.txt', 'hi')

# Plain data pickled with protocols 2-5, for the unpickler alone.
x = [1]
obj = {'i': [0, 1, -1, 255, 256, 65535, 65536, -2**31, 2**31, 2**63, -2**100], 'f': [0.5, -1e300, float('inf')],
       's': ['', 'a' * 300, '\u00fc\u2713'], 'b': b'xy', 'ba': bytearray(b'z'), 't': (1,), 't2': (1, 2), 't3': (1, 2, 3),
       't4': (1, 2, 3, 4), 'e': (), 'n': None, 'tf': [True, False], 'shared': [x, x], 'set': {7}, 'fs': frozenset({8}),
       'd': {1: 2, 'k': {}}}
pickles = [pickle.dumps(obj, protocol=p).hex() for p in (2, 3, 4, 5)]

print(json.dumps({
    'pickles': pickles,
    'sd': [[k, expect(v)] for k, v in sd.items()],
    'shared': {k: expect(v) for k, v in shared.items()},
    'param': expect(param),
}))
`,
    tmp.dir,
  ),
) as Made;

function disposeAll(x: unknown): void {
  if (x !== null && typeof x === 'object') {
    if ('dispose' in x && typeof x.dispose === 'function') (x as Tensor).dispose();
    else if (x instanceof Map) for (const v of x.values()) disposeAll(v);
    else for (const v of Object.values(x)) disposeAll(v);
  }
}

describe('torch.save state dicts', () => {
  test('loadStateDict: an nn.Module state dict (Linear, Conv2d, BatchNorm, LayerNorm, bf16, f16), in order', () => {
    const sd = io.loadStateDict(tmp.path('sd.pt'));
    try {
      assert.deepEqual(
        [...sd.keys()],
        made.sd.map(([k]) => k),
      );
      for (const [k, e] of made.sd) assertTensorMatches(k, sd.get(k), e);
      assert.equal(sd.get('bn.num_batches_tracked')!.dtype, 'int64');
      assert.equal(sd.get('bn.num_batches_tracked')!.item(), 3);
      assert.equal(sd.get('bf')!.dtype, 'bfloat16');
      assert.equal(sd.get('f16')!.dtype, 'float16');
    } finally {
      disposeAll(sd);
    }
  });

  test('views sharing a storage (slices, transposes, tied weights) and every dtype', () => {
    const got = io.loadPt(tmp.path('shared.pt')) as Record<string, Tensor>;
    try {
      assert.deepEqual(Object.keys(got), Object.keys(made.shared));
      for (const [k, e] of Object.entries(made.shared)) {
        assertTensorMatches(k, got[k], e);
        assert.ok(got[k]!.isContiguous(), `${k} is contiguous`);
      }
      // Each tensor owns its memory: writing one leaves the others alone.
      got.a!.zero_();
      assertTensorMatches('b', got.b, made.shared.b!);
      // One Python object pickled twice stays one object (one Tensor), as torch.load gives.
      assert.equal(got.tied1, got.tied2);
    } finally {
      disposeAll(got);
    }
  });

  test('chunked storage reads (storages larger than the transfer chunk) are bit-exact', () => {
    const old = setChunkBytesForTesting(8);
    try {
      const got = io.loadPt(tmp.path('shared.pt')) as Record<string, Tensor>;
      for (const [k, e] of Object.entries(made.shared)) assertTensorMatches(k, got[k], e);
      disposeAll(got);
      const sd = io.loadStateDict(tmp.path('sd.pt'));
      for (const [k, e] of made.sd) assertTensorMatches(k, sd.get(k), e);
      disposeAll(sd);
    } finally {
      setChunkBytesForTesting(old);
    }
  });
});

describe('torch.save checkpoint dicts', () => {
  for (const file of ['ckpt.pt', 'ckpt4.pt'])
    test(`loadPt: nested values of ${file} (pickle protocol ${file === 'ckpt.pt' ? 2 : 4})`, () => {
      const c = io.loadPt(tmp.path(file)) as Record<string, unknown>;
      try {
        assert.deepEqual(Object.keys(c), [
          'model',
          'step',
          'lr',
          'name',
          'nested',
          'flag',
          'none',
          'big',
          'neg',
          'bytes',
          'nobytes',
          'intkeys',
          'dtype',
          'device',
          'size',
          'set',
          'param',
          'float',
          'unicode',
        ]);
        const model = c.model as Record<string, Tensor>;
        for (const [k, e] of made.sd) assertTensorMatches(k, model[k], e);
        assert.equal(c.step, 10);
        assert.equal(c.lr, 0.1);
        assert.equal(c.name, 'x');
        assert.deepEqual(c.nested, { list: [1, 2, [3, 4]] });
        assert.equal(c.flag, true);
        assert.equal(c.none, null);
        assert.equal(c.big, 2n ** 70n);
        assert.equal(c.neg, -3);
        assert.deepEqual(c.bytes, new Uint8Array([0, 255, 97, 98]));
        assert.deepEqual(c.nobytes, new Uint8Array(0));
        assert.deepEqual(
          c.intkeys,
          new Map([
            [1, 'a'],
            [2, 'b'],
          ]),
        );
        assert.equal(c.dtype, 'float16');
        assert.equal(c.device, 'cuda:1');
        assert.deepEqual(c.size, [2, 3]);
        assert.deepEqual(c.set, new Set([1, 2]));
        assertTensorMatches('param', c.param as Tensor, made.param);
        assert.equal((c.param as Tensor).requiresGrad, true);
        assert.equal(c.float, 1.5e-300);
        assert.equal(c.unicode, 'héllo ✓');
      } finally {
        disposeAll(c);
      }
    });

  test('loadStateDict finds the state dict under "model", or under an explicit key', () => {
    for (const opts of [{}, { key: 'model' }]) {
      const sd = io.loadStateDict(tmp.path('ckpt.pt'), opts);
      assert.deepEqual(
        [...sd.keys()],
        made.sd.map(([k]) => k),
      );
      for (const [k, e] of made.sd) assertTensorMatches(k, sd.get(k), e);
      disposeAll(sd);
    }
    const p = tmp.path('ckpt.pt');
    assertCheckpointError(() => io.loadStateDict(p, { key: 'ema' }), p, /no state dict under key "ema".*"model"/);
    assertCheckpointError(
      () => io.loadStateDict(p, { key: 'nested' }),
      p,
      /entry "list" under key "nested" is a list\/tuple, not a tensor/,
    );
    const none = io.loadStateDict(p, { key: 'nested', skipNonTensors: true });
    assert.equal(none.size, 0);
  });

  test('loadStateDict flattens nested dicts with dotted names', () => {
    const sd = io.loadStateDict(tmp.path('nested.pt'));
    assert.deepEqual([...sd.keys()], ['enc.w', 'enc.sub.b', 'dec.x']);
    assertTensorMatches('enc.w', sd.get('enc.w'), made.shared.tied1!);
    assertTensorMatches('enc.sub.b', sd.get('enc.sub.b'), made.shared.a!);
    assertTensorMatches('dec.x', sd.get('dec.x'), made.shared.c!);
    disposeAll(sd);
    const p = tmp.path('ckpt.pt');
    assertCheckpointError(() => io.loadStateDict(p, { key: 'step' }), p, /is a number, not a dict/);
  });
});

describe('other checkpoints', () => {
  test('skipNonTensors takes the tensors of a mixed dict', () => {
    const p = tmp.path('mixed.pt');
    assertCheckpointError(() => io.loadStateDict(p), p, /cannot find a state dict.*"epoch"/);
    const sd = io.loadStateDict(p, { skipNonTensors: true });
    assert.deepEqual([...sd.keys()], ['w', 'sub.b']);
    assertTensorMatches('w', sd.get('w'), made.shared.tied1!);
    disposeAll(sd);
  });

  test('an optimizer state dict: integer keys give Maps', () => {
    const o = io.loadPt(tmp.path('optim.pt')) as {
      state: Map<number, Record<string, Tensor>>;
      param_groups: unknown[];
    };
    assert.ok(o.state instanceof Map);
    assert.deepEqual([...o.state.keys()], [0, 1]);
    assert.deepEqual(o.state.get(0)!.momentum_buffer!.shape, [2, 3]);
    const group = o.param_groups[0] as Record<string, unknown>;
    assert.equal(group.lr, 0.1);
    assert.equal(group.momentum, 0.9);
    assert.deepEqual(group.params, [0, 1]);
    disposeAll(o);
  });

  test('unpickle: plain data of pickle protocols 2-5', () => {
    const out = made.pickles;
    const resolveGlobal = (module: string, name: string): unknown => {
      const qual = `${module}.${name}`;
      if (
        qual === '__builtin__.set' ||
        qual === 'builtins.set' ||
        qual === 'builtins.frozenset' ||
        qual === '__builtin__.frozenset'
      )
        return new io.PyCallable(qual, (args) => new Set(args[0] as unknown[]));
      if (qual === '_codecs.encode') return new io.PyCallable(qual, (args) => Buffer.from(args[0] as string, 'latin1'));
      if (qual === 'builtins.bytearray' || qual === '__builtin__.bytearray')
        return new io.PyCallable(qual, (args) => new Uint8Array(args[0] as Uint8Array));
      throw new Error(`${qual} not allowed`);
    };
    const plain = (x: unknown): unknown => {
      if (x instanceof io.PyDict) return [...x.map].map(([k, v]) => [k, plain(v)]);
      if (Array.isArray(x)) return x.map(plain);
      if (x instanceof Set) return [...x].map(plain);
      if (x instanceof Uint8Array) return Buffer.from(x).toString('hex');
      return x;
    };
    const results = out.map((hex) => io.unpickle(Buffer.from(hex, 'hex'), { resolveGlobal }));
    for (const r of results) {
      assert.deepEqual(plain(r), [
        ['i', [0, 1, -1, 255, 256, 65535, 65536, -(2 ** 31), 2 ** 31, 2n ** 63n, -(2n ** 100n)]],
        ['f', [0.5, -1e300, Infinity]],
        ['s', ['', 'a'.repeat(300), 'ü✓']],
        ['b', '7879'],
        ['ba', '7a'],
        ['t', [1]],
        ['t2', [1, 2]],
        ['t3', [1, 2, 3]],
        ['t4', [1, 2, 3, 4]],
        ['e', []],
        ['n', null],
        ['tf', [true, false]],
        ['shared', [[1], [1]]],
        ['set', [7]],
        ['fs', [8]],
        [
          'd',
          [
            [1, 2],
            ['k', []],
          ],
        ],
      ]);
      const shared = ((r as io.PyDict).map.get('shared') as unknown[][])!;
      assert.equal(shared[0], shared[1], 'memoized objects stay shared');
    }
    assert.throws(() => io.unpickle(Buffer.from('80024b01', 'hex'), { resolveGlobal }), io.PickleError);
    assert.throws(
      () => io.unpickle(Buffer.from('8002635f5f6275696c74696e5f5f0a6576616c0a2e', 'hex'), { resolveGlobal }),
      /__builtin__\.eval not allowed/,
    );
  });
});

describe('bad .pt files give clear CheckpointErrors', () => {
  test('a truncated checkpoint', () => {
    const data = readFileSync(tmp.path('ckpt.pt'));
    for (const frac of [0.3, 0.6, 0.95]) {
      const p = tmp.path(`trunc${frac}.pt`);
      writeFileSync(p, data.subarray(0, Math.floor(data.length * frac)));
      assertCheckpointError(() => io.loadPt(p), p, /truncated/);
      assertCheckpointError(() => io.loadStateDict(p), p, /truncated/);
    }
  });

  test('random bytes and an empty file', () => {
    const p = tmp.path('random.pt');
    writeFileSync(p, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24)));
    assertCheckpointError(() => io.loadPt(p), p, /not a PyTorch checkpoint/);
    const e = tmp.path('empty.pt');
    writeFileSync(e, Buffer.alloc(0));
    assertCheckpointError(() => io.loadPt(e), e, /empty file/);
    const z = tmp.path('other.zip');
    assertCheckpointError(() => io.loadPt(z), z, /not a torch.save checkpoint/);
  });

  test('the legacy (non-zip) format', () => {
    const p = tmp.path('legacy.pt');
    assertCheckpointError(() => io.loadPt(p), p, /legacy .*_use_new_zipfile_serialization=True/);
  });

  test('a pickle calling os.system is refused without running anything', () => {
    const p = tmp.path('evil.pt');
    assertCheckpointError(() => io.loadPt(p), p, /global (posix|os)\.system is not allowed/);
    assertCheckpointError(() => io.loadStateDict(p), p, /global (posix|os)\.system is not allowed/);
    assert.equal(existsSync(tmp.path('pwned')), false);
  });

  test('a pickled nn.Module names its class', () => {
    const p = tmp.path('module.pt');
    assertCheckpointError(() => io.loadPt(p), p, /global __main__\.Net is not allowed/);
  });

  test('damaged pickles and storages', () => {
    // A checkpoint whose data.pkl is cut short, and one whose storage entries are missing.
    const cut = tmp.path('cutpkl.pt');
    const nostore = tmp.path('nostore.pt');
    assertCheckpointError(() => io.loadPt(cut), cut, /cannot unpickle .*data\.pkl: .*truncated pickle/);
    assertCheckpointError(() => io.loadPt(nostore), nostore, /storage \d+ is missing/);
  });
});
