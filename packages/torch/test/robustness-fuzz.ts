// The fuzzing half of robustness.test.ts, run in a child process so that a
// crash (segfault, abort, std::terminate) is seen by the test as a failed
// child, not as the death of the test runner:
//
//   node dist/test/robustness-fuzz.js native|api|scenarios [module.pt]
//
// Before each call it writes `> label` to stderr, so the last such line names
// the call that crashed. At the end it prints one JSON report on stdout.
import { writeSync } from 'node:fs';

import * as torch from '../src/index.js';
import { native, type NativeBinding } from '../src/native.js';
import { HOST_MMAP_THRESHOLD, HOST_TRIM_THRESHOLD, keepHostMemoryMapped } from '../src/host-memory.js';

type AnyFn = (...args: unknown[]) => unknown;
const binding = native as unknown as Record<string, AnyFn>;

function progress(label: string): void {
  writeSync(2, `> ${label}\n`);
}

/** What a call did: returned, or threw (and what). */
interface Outcome {
  ok: boolean;
  name?: string;
  code?: string;
  message?: string;
  isError?: boolean;
  value?: unknown;
}

function attempt(fn: () => unknown): Outcome {
  try {
    const value = fn();
    // An async result must not end as an unhandled rejection.
    if (value instanceof Promise) value.catch(() => undefined);
    return { ok: true, value };
  } catch (e) {
    const isError = e instanceof Error;
    return {
      ok: false,
      isError,
      name: isError ? e.name : typeof e,
      code: isError ? (e as Error & { code?: string }).code : undefined,
      message: isError ? e.message : String(e),
    };
  }
}

// ----------------------------------------------------------------- bad values

const USER_ERROR = 'thrown by a user getter';

interface Bad {
  label: string;
  make: () => unknown;
  /** Conversion runs user code that throws USER_ERROR: that error must come through. */
  userThrows?: boolean;
  /** An array of integers (a valid int list). */
  intList?: boolean;
}

function throwingElements(): unknown[] {
  const a: unknown[] = [1];
  Object.defineProperty(a, 1, {
    get() {
      throw new Error(USER_ERROR);
    },
    enumerable: true,
  });
  return a;
}

/**
 * Values of every JS type plus edge numbers. `native` adds values that are
 * only safe where nothing allocates by them (2**31 elements would be 8 GB).
 */
function badValues(mode: 'native' | 'api'): Bad[] {
  const list: Bad[] = [
    { label: 'undefined', make: () => undefined },
    { label: 'null', make: () => null },
    { label: 'string', make: () => 'str' },
    { label: 'empty string', make: () => '' },
    { label: 'object', make: () => ({}) },
    { label: 'array [1, 2]', make: () => [1, 2], intList: true },
    { label: 'empty array', make: () => [], intList: true },
    { label: 'symbol', make: () => Symbol('bad') },
    { label: 'function', make: () => () => 1 },
    { label: 'bigint 1n', make: () => 1n },
    { label: 'bigint 2n**70n', make: () => 2n ** 70n },
    { label: 'NaN', make: () => NaN },
    { label: 'Infinity', make: () => Infinity },
    { label: '-Infinity', make: () => -Infinity },
    { label: '0.5', make: () => 0.5 },
    { label: '-1', make: () => -1 },
    { label: '-2', make: () => -2 },
    { label: '2**53', make: () => 2 ** 53 },
    { label: '1e300', make: () => 1e300 },
    { label: 'true', make: () => true },
    { label: 'Float32Array', make: () => new Float32Array(2) },
    { label: 'DataView', make: () => new DataView(new ArrayBuffer(8)) },
    { label: 'proxy', make: () => new Proxy({}, {}) },
    {
      label: 'revoked proxy',
      make: () => {
        const r = Proxy.revocable({}, {});
        r.revoke();
        return r.proxy;
      },
    },
    { label: 'cyclic array', make: () => cyclic() },
    { label: 'array of symbols', make: () => [Symbol('x')] },
    { label: 'array with a throwing element', make: throwingElements, userThrows: true },
    { label: "device 'tpu'", make: () => 'tpu' },
    { label: "device 'cpu:5'", make: () => 'cpu:5' },
    { label: "device 'cuda:99'", make: () => 'cuda:99' },
  ];
  if (mode === 'native') {
    list.push(
      { label: '2**31', make: () => 2 ** 31 },
      { label: '2**32', make: () => 2 ** 32 },
      { label: 'out-of-range id 123456', make: () => 123456 },
      { label: 'sparse array of length 2**32-1', make: () => new Array(2 ** 32 - 1) },
      {
        label: 'disposed tensor id',
        make: () => {
          const id = native.fromBuffer(new Float32Array(4), 6, [4], true);
          native.dispose(id);
          return id;
        },
      },
      {
        label: 'object with a throwing tensor getter',
        make: () => [
          {
            get tensor() {
              throw new Error(USER_ERROR);
            },
          },
        ],
        userThrows: true,
      },
      { label: 'deeply nested array', make: () => deep(100000) },
    );
  }
  return list;
}

function cyclic(): unknown[] {
  const a: unknown[] = [];
  a.push(a);
  return a;
}

function deep(n: number): unknown[] {
  let a: unknown[] = [1];
  for (let i = 0; i < n; i++) a = [a];
  return a;
}

// ------------------------------------------------------ the native binding

type Kind =
  | 'tensor'
  | 'optTensor'
  | 'int'
  | 'dtype'
  | 'bool'
  | 'string'
  | 'device'
  | 'ints'
  | 'tensors'
  | 'optTensors'
  | 'typed'
  | 'handle'
  | 'inputs';

/** Fresh, valid arguments for one call. */
interface Ctx {
  t: number;
  x: number;
  y: number;
  img: number;
  module: number;
  gen: number;
  state: number;
  op: number;
}

interface Param {
  kind: Kind;
  optional?: boolean;
  valid: (c: Ctx) => unknown;
}

interface Sig {
  params: Param[];
  /** Undoes the global effect of a successful call. */
  after?: (result: unknown) => void;
}

const p = (kind: Kind, valid: (c: Ctx) => unknown, optional = false): Param => ({ kind, valid, optional });
const tensorP = p('tensor', (c) => c.t);
const NOT_LIVE = 54321;

let modulePath = '';
const threads = native.info().numThreads;

/** Every export of the binding: the compiler checks that none is missing. */
const SIGS: Record<keyof NativeBinding, Sig> = {
  opHandle: { params: [p('string', () => 'add'), p('string', () => 'Tensor', true)] },
  opInfo: { params: [p('handle', (c) => c.op)] },
  call: { params: [p('handle', (c) => c.op), tensorP] },
  listOps: { params: [] },
  fromBuffer: {
    params: [
      p('typed', () => new Float32Array(4)),
      p('dtype', () => 6),
      p('ints', () => [2, 2]),
      p('bool', () => false, true),
    ],
  },
  toBuffer: { params: [tensorP] },
  toBufferAsync: { params: [tensorP] },
  shape: { params: [tensorP] },
  strides: { params: [tensorP] },
  dtype: { params: [tensorP] },
  device: { params: [tensorP] },
  flags: { params: [tensorP] },
  dispose: { params: [p('int', (c) => c.t)] },
  disposeMany: { params: [p('typed', (c) => new Int32Array([c.t, -1, 0x7fffffff]))] },
  liveTensors: { params: [] },
  dataPtr: { params: [tensorP] },
  backward: {
    params: [
      p('tensors', (c) => [c.y]),
      p('optTensors', () => null, true),
      p('bool', () => null, true),
      p('bool', () => false, true),
      p('tensors', () => null, true),
    ],
  },
  grad: {
    params: [
      p('tensors', (c) => [c.y]),
      p('tensors', (c) => [c.x]),
      p('optTensors', () => null, true),
      p('bool', () => null, true),
      p('bool', () => false, true),
      p('bool', () => false, true),
    ],
  },
  getGrad: { params: [p('tensor', (c) => c.x)] },
  setGrad: { params: [p('tensor', (c) => c.x), p('optTensor', (c) => c.t, true)] },
  setRequiresGrad: { params: [tensorP, p('bool', () => true)] },
  retainGrad: { params: [p('tensor', (c) => c.y)] },
  gradFnName: { params: [tensorP] },
  setGradEnabled: { params: [p('bool', () => true)], after: () => native.setGradEnabled(true) },
  isGradEnabled: { params: [] },
  inferenceModeEnter: { params: [p('bool', () => true, true)], after: (d) => native.inferenceModeExit(d as number) },
  inferenceModeExit: { params: [p('int', () => 0)] },
  isInferenceMode: { params: [] },
  autocastSet: {
    params: [p('device', () => 'cpu'), p('bool', () => false), p('dtype', () => 15, true)],
    after: () => {
      native.autocastSet('cpu', false, 15);
      native.autocastSet('cuda', false, 5);
    },
  },
  autocastNesting: {
    params: [p('int', () => 1)],
    after: () => native.autocastNesting(-1),
  },
  isAutocastEnabled: { params: [p('device', () => 'cpu')] },
  enterDualLevel: { params: [], after: (level) => native.exitDualLevel(level as number) },
  exitDualLevel: { params: [p('int', () => 0)] },
  info: { params: [] },
  setNumThreads: { params: [p('int', () => threads)], after: () => native.setNumThreads(threads) },
  setMallocOptions: {
    params: [p('int', () => HOST_MMAP_THRESHOLD), p('int', () => HOST_TRIM_THRESHOLD)],
    after: () => keepHostMemoryMapped(),
  },
  manualSeed: { params: [p('int', () => 1)] },
  generatorDefault: { params: [p('device', () => 'cpu')] },
  generatorCreate: { params: [p('device', () => 'cpu'), p('int', () => 1)] },
  generatorSeed: { params: [p('handle', (c) => c.gen), p('int', () => 1)] },
  generatorGetState: { params: [p('handle', (c) => c.gen)] },
  generatorSetState: { params: [p('handle', (c) => c.gen), p('tensor', (c) => c.state)] },
  generatorDispose: { params: [p('handle', (c) => c.gen)] },
  jitLoad: { params: [p('string', () => modulePath), p('device', () => 'cpu', true)] },
  jitCall: {
    params: [p('handle', (c) => c.module), p('string', () => 'forward'), p('inputs', (c) => [{ tensor: c.img }])],
  },
  jitTo: { params: [p('handle', (c) => c.module), p('device', () => 'cpu')] },
  jitDispose: { params: [p('handle', (c) => c.module)] },
  // Stream and graph handles are never live here: on a GPU a live one would
  // start real captures in the middle of the fuzz.
  cudaSynchronize: { params: [p('int', () => null, true)] },
  cudaSetDevice: { params: [p('int', () => 0)] },
  cudaCurrentDevice: { params: [] },
  cudaMemoryStats: { params: [p('int', () => null, true)] },
  cudaResetPeakStats: { params: [p('int', () => null, true)] },
  cudaEmptyCache: { params: [] },
  streamCreate: { params: [p('int', () => null, true), p('bool', () => false, true)] },
  streamCurrent: { params: [p('int', () => null, true)] },
  streamSetCurrent: { params: [p('handle', () => NOT_LIVE)] },
  streamSynchronize: { params: [p('handle', () => NOT_LIVE)] },
  streamWait: { params: [p('handle', () => NOT_LIVE), p('handle', () => NOT_LIVE)] },
  streamDispose: { params: [p('handle', () => NOT_LIVE)] },
  graphCreate: { params: [] },
  graphCaptureBegin: { params: [p('handle', () => NOT_LIVE)] },
  graphCaptureEnd: { params: [p('handle', () => NOT_LIVE)] },
  graphReplay: { params: [p('handle', () => NOT_LIVE)] },
  graphDispose: { params: [p('handle', () => NOT_LIVE)] },
  // c10d: no live store or group is ever made here (port 70000 is rejected
  // before any socket opens), so the fuzz never waits on a rendezvous.
  distInfo: { params: [] },
  storeCreate: {
    params: [
      p('string', () => '127.0.0.1'),
      p('int', () => 70000),
      p('bool', () => true),
      p('int', () => 1),
      p('int', () => 1000),
    ],
  },
  storeSet: { params: [p('handle', () => NOT_LIVE), p('string', () => 'k'), p('string', () => 'v')] },
  storeGet: { params: [p('handle', () => NOT_LIVE), p('string', () => 'k')] },
  storeAdd: { params: [p('handle', () => NOT_LIVE), p('string', () => 'k'), p('int', () => 1)] },
  storeRelease: { params: [p('handle', () => NOT_LIVE)] },
  groupCreate: {
    params: [
      p('handle', () => NOT_LIVE),
      p('int', () => 0),
      p('int', () => 1),
      p('string', () => 'gloo'),
      p('int', () => 1000),
      p('string', () => 'x/'),
    ],
  },
  groupRelease: { params: [p('handle', () => NOT_LIVE)] },
  allReduce: { params: [p('handle', () => NOT_LIVE), p('tensors', (c) => [c.t]), p('string', () => 'sum')] },
  broadcast: { params: [p('handle', () => NOT_LIVE), p('tensors', (c) => [c.t]), p('int', () => 0)] },
  barrier: { params: [p('handle', () => NOT_LIVE)] },
  workWait: { params: [p('handle', () => NOT_LIVE), p('int', () => null, true)] },
  workIsCompleted: { params: [p('handle', () => NOT_LIVE)] },
  workRelease: { params: [p('handle', () => NOT_LIVE)] },
  allReduceWithGrad: { params: [p('handle', () => NOT_LIVE), tensorP] },
  allGatherWithGrad: { params: [p('handle', () => NOT_LIVE), tensorP] },
  reducerCreate: {
    params: [
      p('handle', () => NOT_LIVE),
      p('tensors', (c) => [c.x]),
      p('int', () => 1 << 20),
      p('int', () => 1 << 20),
      p('bool', () => false),
      p('bool', () => false),
    ],
  },
  reducerPrepareForward: { params: [p('handle', () => NOT_LIVE)] },
  reducerPrepareBackward: { params: [p('handle', () => NOT_LIVE), p('tensors', (c) => [c.y])] },
  reducerRelease: { params: [p('handle', () => NOT_LIVE)] },
};

function isInt(v: unknown): boolean {
  if (typeof v === 'bigint') return v >= -(2n ** 63n) && v < 2n ** 63n;
  return typeof v === 'number' && Number.isInteger(v) && Math.abs(v) <= 2 ** 53;
}

/** Array.isArray, which throws on a revoked proxy. */
function isArray(v: unknown): boolean {
  try {
    return Array.isArray(v);
  } catch {
    return false;
  }
}

const DEVICE_SYNTAX = /^(cpu(:0)?|meta(:\d+)?|cuda(:\d{1,2})?)$/;

/**
 * Whether `bad` has the wrong JS type (or is an invalid id/code) for a
 * parameter, so that the binding must answer with a TypeError.
 */
function mustBeTypeError(param: Param, bad: Bad, value: unknown): boolean {
  if (value === undefined || value === null) return !param.optional;
  switch (param.kind) {
    case 'tensor':
      return true; // none of the bad values names a live tensor
    case 'optTensor':
      return value !== -1; // -1: the binding's "no tensor"
    case 'handle':
      return !isInt(value); // an integer may name a live handle; non-live ones may be a no-op (dispose)
    case 'int':
      return !isInt(value);
    case 'dtype':
      return !isInt(value) || Number(value) < 0 || Number(value) > 46;
    case 'bool':
      return typeof value !== 'boolean';
    case 'string':
      return typeof value !== 'string';
    case 'device':
      return typeof value !== 'string' || !DEVICE_SYNTAX.test(value);
    case 'typed':
      return !ArrayBuffer.isView(value) || value instanceof DataView;
    case 'ints':
      return !bad.intList;
    case 'tensors':
    case 'optTensors':
    case 'inputs':
      return !isArray(value);
  }
}

/** Valid arguments, made on first use (a TorchScript load costs milliseconds). */
function makeCtx(): { ctx: Ctx; dispose: () => void } {
  const made = new Map<keyof Ctx, number>();
  const make: Record<keyof Ctx, () => number> = {
    t: () => native.fromBuffer(new Float32Array([1, 2, 3, 4]), 6, [2, 2], true),
    x: () => {
      const x = native.fromBuffer(new Float32Array([1, 2, 3, 4]), 6, [2, 2], true);
      native.setRequiresGrad(x, true);
      return x;
    },
    y: () => {
      const sq = native.call(native.opHandle('mul', 'Tensor'), ctx.x, ctx.x) as number;
      const y = native.call(native.opHandle('sum', ''), sq) as number;
      native.dispose(sq);
      return y;
    },
    img: () => native.fromBuffer(new Float32Array(3 * 64).fill(0.5), 6, [1, 3, 8, 8], true),
    module: () => (modulePath ? native.jitLoad(modulePath, null) : NOT_LIVE),
    gen: () => native.generatorCreate('cpu', 7),
    state: () => native.generatorGetState(ctx.gen),
    op: () => native.opHandle('neg', ''),
  };
  const ctx = {} as Ctx;
  for (const key of Object.keys(make) as (keyof Ctx)[]) {
    Object.defineProperty(ctx, key, {
      get: () => {
        if (!made.has(key)) made.set(key, make[key]());
        return made.get(key)!;
      },
    });
  }
  const dispose = (): void => {
    for (const [key, id] of made) {
      if (key === 'gen') native.generatorDispose(id);
      else if (key === 'module') {
        if (id !== NOT_LIVE) native.jitDispose(id);
      } else if (key !== 'op') native.dispose(id);
    }
  };
  return { ctx, dispose };
}

interface Violation {
  call: string;
  problem: string;
  outcome: Outcome;
}

function check(
  label: string,
  outcome: Outcome,
  expectTypeError: boolean,
  userThrows: boolean,
  violations: Violation[],
): void {
  const { value: _value, ...shown } = outcome;
  if (!outcome.ok && !outcome.isError) violations.push({ call: label, problem: 'threw a non-Error', outcome: shown });
  else if (!outcome.ok && !outcome.message)
    violations.push({ call: label, problem: 'error without a message', outcome: shown });
  else if (userThrows && !outcome.ok && outcome.message !== USER_ERROR && outcome.name !== 'TypeError')
    violations.push({ call: label, problem: "the user's own exception was replaced", outcome: shown });
  else if (expectTypeError && !userThrows && (outcome.ok || outcome.name !== 'TypeError'))
    violations.push({ call: label, problem: 'expected a TypeError', outcome: shown });
}

function fuzzNative(): { calls: number; violations: Violation[]; uncovered: string[] } {
  const violations: Violation[] = [];
  let calls = 0;
  const uncovered = Object.keys(binding).filter((k) => !(k in SIGS));
  const bads = badValues('native');
  for (const [name, sig] of Object.entries(SIGS)) {
    const fn = binding[name];
    if (fn === undefined) {
      violations.push({ call: name, problem: 'not exported by the binding', outcome: { ok: true } });
      continue;
    }
    const run = (
      label: string,
      makeArgs: (c: Ctx) => unknown[],
      expectTypeError: (args: unknown[]) => boolean,
      userThrows = false,
    ) => {
      const { ctx, dispose } = makeCtx();
      const args = makeArgs(ctx);
      progress(label);
      const outcome = attempt(() => fn(...args));
      calls++;
      if (outcome.ok && sig.after) attempt(() => sig.after!(outcome.value));
      check(label, outcome, expectTypeError(args), userThrows, violations);
      dispose();
    };
    // No arguments at all: a TypeError wherever one is required.
    const required = sig.params.some((q) => !q.optional);
    run(
      `${name}()`,
      () => [],
      () => required,
    );
    // Far too many arguments (more than the binding's 40).
    run(
      `${name}(...41 args)`,
      (c) => [...sig.params.map((q) => q.valid(c)), ...new Array(41).fill(0)],
      () => false,
    );
    // One bad value at a time in each position, the others valid.
    sig.params.forEach((param, i) => {
      for (const bad of bads) {
        run(
          `${name} arg ${i} (${param.kind}) = ${bad.label}`,
          (c) => {
            // The valid arguments first: a disposed id made before them would be reused by them.
            const args = sig.params.map((q, j) => (j === i ? undefined : q.valid(c)));
            args[i] = bad.make();
            return args;
          },
          (args) => mustBeTypeError(param, bad, args[i]),
          bad.userThrows ?? false,
        );
      }
    });
  }
  // Operator calls with bad operator handles and bad operator arguments.
  const h = native.opHandle('add', 'Tensor');
  for (const bad of bads) {
    const t = native.fromBuffer(new Float32Array(4), 6, [4], true);
    const value = bad.make();
    progress(`call(add.Tensor, t, ${bad.label})`);
    check(
      `call(add.Tensor, t, ${bad.label})`,
      attempt(() => native.call(h, t, value as number)),
      value !== undefined && value !== null,
      bad.userThrows ?? false,
      violations,
    );
    calls++;
    progress(`call(add.Tensor, t, t, alpha=${bad.label})`);
    check(
      `call(add.Tensor, t, t, alpha=${bad.label})`,
      attempt(() => native.call(h, t, t, value as number)),
      false,
      bad.userThrows ?? false,
      violations,
    );
    calls++;
    native.dispose(t);
  }
  const zeros = native.opHandle('zeros', '');
  const enumCases: [string, unknown[]][] = [
    ['dtype 999', [[2], 999]],
    ['dtype -1', [[2], -1]],
    ['dtype Undefined (47)', [[2], 47]],
    ['layout 99', [[2], null, 99]],
    ['layout -1', [[2], null, -1]],
    ["device 'tpu'", [[2], null, null, 'tpu']],
    ["device 'cpu:5'", [[2], null, null, 'cpu:5']],
    ["device 'xla'", [[2], null, null, 'xla']],
  ];
  for (const [label, args] of enumCases) {
    progress(`zeros ${label}`);
    check(
      `zeros ${label}`,
      attempt(() => native.call(zeros, ...(args as number[]))),
      true,
      false,
      violations,
    );
    calls++;
  }
  const empty = native.opHandle('empty', 'memory_format');
  for (const code of [99, -1, 4]) {
    const label = `empty memory_format ${code}`;
    progress(label);
    check(
      label,
      attempt(() => native.call(empty, [2], null, null, null, null, code)),
      true,
      false,
      violations,
    );
    calls++;
  }
  return { calls, violations, uncovered };
}

// ---------------------------------------------------------- the public API

function fixture(): torch.Tensor {
  return torch.tensor([
    [1, 2],
    [3, 4],
  ]);
}

function restoreGlobals(): void {
  native.setGradEnabled(true);
  torch.setFinalizerBackstop(true);
  native.setNumThreads(threads);
  native.autocastSet('cpu', false, 15);
}

function fuzzApi(): { calls: number; violations: Violation[]; live: number } {
  const violations: Violation[] = [];
  let calls = 0;
  const bads = badValues('api');
  const live0 = native.liveTensors();
  const tryCall = (label: string, fn: () => unknown): void => {
    progress(label);
    const outcome = torch.tidy(() => {
      const o = attempt(fn);
      return { ...o, value: undefined };
    });
    restoreGlobals();
    calls++;
    check(label, outcome, false, false, violations);
  };
  const targets: [string, Record<string, unknown>][] = [
    ['torch', torch as unknown as Record<string, unknown>],
    ['F', torch.F as unknown as Record<string, unknown>],
    ['linalg', torch.linalg as unknown as Record<string, unknown>],
    ['cuda', torch.cuda as unknown as Record<string, unknown>],
    ['jit', torch.jit as unknown as Record<string, unknown>],
    ['ops', torch.ops as unknown as Record<string, unknown>],
  ];
  for (const [ns, obj] of targets) {
    for (const [name, f] of Object.entries(obj)) {
      if (typeof f !== 'function') continue;
      const isClass = /^class\b/.test(Function.prototype.toString.call(f));
      const invoke = (args: unknown[]) =>
        isClass ? new (f as new (...a: unknown[]) => unknown)(...args) : (f as AnyFn)(...args);
      tryCall(`${ns}.${name}()`, () => invoke([]));
      for (const bad of bads) {
        tryCall(`${ns}.${name}(${bad.label})`, () => invoke([bad.make()]));
        tryCall(`${ns}.${name}(t, ${bad.label})`, () => invoke([fixture(), bad.make()]));
        tryCall(`${ns}.${name}(${bad.label}, t)`, () => invoke([bad.make(), fixture()]));
      }
    }
  }
  // Every Tensor method and accessor, on a live and on a disposed tensor: the
  // class's own and the generated ones it inherits (generated/tensor-methods.ts).
  const descriptors = new Map<string, PropertyDescriptor>();
  for (let proto = torch.Tensor.prototype; proto !== Object.prototype; proto = Object.getPrototypeOf(proto))
    for (const name of Object.getOwnPropertyNames(proto))
      if (!descriptors.has(name)) descriptors.set(name, Object.getOwnPropertyDescriptor(proto, name)!);
  for (const [name, desc] of descriptors) {
    if (name === 'constructor') continue;
    if (desc.get) {
      tryCall(`t.${name} (get)`, () => (fixture() as unknown as Record<string, unknown>)[name]);
      tryCall(`disposed.${name} (get)`, () => {
        const t = fixture();
        t.dispose();
        return (t as unknown as Record<string, unknown>)[name];
      });
    }
    if (desc.set) {
      for (const bad of bads)
        tryCall(`t.${name} = ${bad.label}`, () => {
          (fixture() as unknown as Record<string, unknown>)[name] = bad.make();
        });
    }
    if (typeof desc.value !== 'function') continue;
    const method = (t: torch.Tensor, args: unknown[]) =>
      ((t as unknown as Record<string, AnyFn>)[name] as AnyFn).apply(t, args);
    tryCall(`t.${name}()`, () => method(fixture(), []));
    tryCall(`disposed.${name}()`, () => {
      const t = fixture();
      t.dispose();
      return method(t, [fixture()]);
    });
    for (const bad of bads) {
      tryCall(`t.${name}(${bad.label})`, () => method(fixture(), [bad.make()]));
      tryCall(`t.${name}(t, ${bad.label})`, () => method(fixture(), [fixture(), bad.make()]));
      tryCall(`t.${name}(0, ${bad.label})`, () => method(fixture(), [0, bad.make()]));
      tryCall(`t.${name}(${bad.label}, ${bad.label})`, () => method(fixture(), [bad.make(), bad.make()]));
    }
  }
  return { calls, violations, live: native.liveTensors() - live0 };
}

// ------------------------------------------------------------ scenarios
// Targeted cases that crashed the process before they were fixed.

async function scenarios(): Promise<Record<string, Outcome>> {
  const out: Record<string, Outcome> = {};
  const run = async (name: string, fn: () => unknown): Promise<void> => {
    progress(name);
    let outcome = attempt(fn);
    if (outcome.ok && outcome.value instanceof Promise) {
      try {
        outcome = { ok: true, value: await outcome.value };
      } catch (e) {
        outcome = { ok: false, isError: e instanceof Error, name: (e as Error).name, message: (e as Error).message };
      }
    }
    const { value, ...rest } = outcome;
    out[name] = { ...rest, value: typeof value === 'object' ? undefined : value };
  };
  const module = modulePath ? native.jitLoad(modulePath, null) : NOT_LIVE;
  const img = native.fromBuffer(new Float32Array(3 * 64), 6, [1, 3, 8, 8], true);

  await run('jit: cyclic input array', () => native.jitCall(module, 'count', [cyclic()] as never));
  await run('jit: input nested 100000 deep', () => native.jitCall(module, 'count', [deep(100000)] as never));
  await run('jit: getter disposes the module mid-call', () => {
    const m = native.jitLoad(modulePath, null);
    const input = {
      get tensor() {
        native.jitDispose(m);
        return img;
      },
    };
    const r = native.jitCall(m, 'forward', [input]) as { tensor: number };
    native.dispose(r.tensor);
    return 'survived';
  });
  await run('call: element getter re-enters call() mid-conversion', () => {
    const t = native.fromBuffer(new Float32Array([1, 2, 3, 4, 5, 6]), 6, [6], true);
    const shape: number[] = [2];
    Object.defineProperty(shape, 1, {
      get() {
        native.dispose(native.call(native.opHandle('zeros', ''), [1, 2, 3]) as number);
        return 3;
      },
      enumerable: true,
    });
    const r = native.call(native.opHandle('reshape', ''), t, shape) as number;
    return native.shape(r).join('x');
  });
  await run('call: element getter disposes the tensor being passed', () => {
    const t = native.fromBuffer(new Float32Array([1, 2]), 6, [2], true);
    const list: number[] = [t];
    Object.defineProperty(list, 1, {
      get() {
        native.dispose(t);
        return t;
      },
      enumerable: true,
    });
    return native.call(native.opHandle('cat', ''), list, 0);
  });
  await run('fromBuffer: zero-copy over a resizable ArrayBuffer', () => {
    const Resizable = ArrayBuffer as unknown as new (
      n: number,
      o: { maxByteLength: number },
    ) => ArrayBuffer & { resize(n: number): void };
    const buf = new Resizable(1 << 22, { maxByteLength: 1 << 24 });
    const id = native.fromBuffer(new Float32Array(buf), 6, [1 << 20], false);
    buf.resize(0);
    return native.toBuffer(native.call(native.opHandle('sum', ''), id) as number).byteLength;
  });
  await run('fromBuffer: zero-copy buffer transferred away, then used', () => {
    const a = new Float32Array(1 << 20).fill(1);
    const id = native.fromBuffer(a, 6, [1 << 20], false);
    structuredClone(a.buffer, { transfer: [a.buffer] });
    return native.call(native.opHandle('sum', ''), id);
  });
  await run('fromBuffer: zero-copy buffer transferred away, then read back', () => {
    const a = new Float32Array(1 << 20).fill(1);
    const id = native.fromBuffer(a, 6, [1 << 20], false);
    structuredClone(a.buffer, { transfer: [a.buffer] });
    return native.toBuffer(id);
  });
  await run('toBufferAsync of a meta tensor rejects', async () => {
    const id = native.call(native.opHandle('zeros', ''), [2], null, null, 'meta') as number;
    return native.toBufferAsync(id);
  });
  await run('worker thread loading the addon is refused', async () => {
    const { Worker } = await import('node:worker_threads');
    const url = new URL('../src/native.js', import.meta.url).href;
    const w = new Worker(`import(${JSON.stringify(url)}).then(({ native }) => native.liveTensors())`, {
      eval: true,
    });
    await new Promise<void>((resolve, reject) => {
      w.on('error', reject);
      w.on('exit', () => resolve());
    });
    return 'loaded';
  });
  await run('still alive', () => native.liveTensors() >= 0);
  return out;
}

// ------------------------------------------------------------------- main

const mode = process.argv[2];
modulePath = process.argv[3] ?? '';
let report: unknown;
if (mode === 'native') report = fuzzNative();
else if (mode === 'api') report = fuzzApi();
else if (mode === 'scenarios') report = await scenarios();
else throw new Error(`unknown mode ${mode}`);
writeSync(1, JSON.stringify(report));
