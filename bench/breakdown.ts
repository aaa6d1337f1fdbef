// Where the Node side's per-op time goes: micro-benchmarks of each layer of one
// `x.add(y)` on 2x2 tensors, from the bare N-API round trip up to the public
// method, plus a native probe (bench/native/dispatch_probe.cpp) that times the
// same op from C++ through the unboxed API and through the boxed dispatcher.
//
// Layers of Tensor.add (packages/torch/src/generated/tensor-methods.ts, aten.ts,
// native/ops.cpp):
//   JS:     Tensor.add -> aten.add$Tensor (generated: fixed arity, cached handle,
//           alpha not passed when absent) -> native.call
//           (before the generated bindings: call(ref, ...args) -> callNative(ref,
//           ...args) -> native.call, the path the 'replica' row still measures)
//   native: napi_get_cb_info, per-argument napi_typeof + conversion to IValue,
//           Dispatcher callBoxed, result into the tensor table, napi_create_int32
//   JS:     new Tensor(id): track() in the open scope, or (no scope) queued for the
//           FinalizationRegistry, registered at the next microtask if still live
//   free:   dispose(): FinalizationRegistry.unregister if it was registered,
//           native.dispose (N-API call, table release, ArrayBuffer-release drain
//           under a mutex)
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';

import { timeSamples } from './harness.js';

/** The addon's exports used here (packages/torch/src/native.ts has the full list). */
interface Addon {
  opHandle(name: string, overload: string): number;
  call(handle: number, ...args: (number | undefined)[]): number;
  dispose(id: number): void;
  isGradEnabled(): boolean;
  liveTensors(): number;
}

export interface BreakdownRow {
  key: string;
  label: string;
  /** Nanoseconds per operation (median of blocks). */
  ns: number;
}

export interface Breakdown {
  rows: BreakdownRow[];
  /** Derived per-layer costs (ns), each a difference of two rows. */
  layers: BreakdownRow[];
  probe: Record<string, number> | { error: string };
}

const here = dirname(fileURLToPath(import.meta.url));
const benchDir = resolve(here, '..');

function loadAddon(): Addon {
  // The same file native.ts loads: require's cache hands back the same module.
  const path =
    process.env.EPG_TORCH_ADDON ??
    join(dirname(createRequire(import.meta.url).resolve('@epg/torch')), '../../build/epg_torch.node');
  return createRequire(import.meta.url)(resolve(path)) as Addon;
}

// The machine may be shared: the best of many short blocks is the estimate least
// disturbed by other processes (interference only ever adds time).
function ns(fn: () => void, inner: number, opsPerIter: number, quick: boolean): number {
  const repeats = quick ? 7 : 41;
  const i = Math.max(1, quick ? inner >> 3 : inner >> 1);
  return (Math.min(...timeSamples(fn, { warmup: i, inner: i, repeats })) * 1e9) / opsPerIter;
}

/** Runs the Node micro-benchmarks (single-threaded libtorch, float32 2x2 CPU tensors). */
export function nodeBreakdown(quick: boolean): BreakdownRow[] {
  const addon = loadAddon();
  const rows: BreakdownRow[] = [];
  const add = (key: string, label: string, v: number): void => {
    rows.push({ key, label, ns: v });
  };
  const x = torch.keep(torch.randn([2, 2]));
  const y = torch.keep(torch.randn([2, 2]));
  const h = addon.opHandle('add', 'Tensor');
  const xi = x.id;
  const yi = y.id;
  const N = 100;
  const idsBuf = new Int32Array(N);
  const live0 = addon.liveTensors();

  try {
    add(
      'napi_empty',
      'N-API round trip, no work (native.isGradEnabled())',
      ns(() => addon.isGradEnabled(), 20000, 1, quick),
    );
    add(
      'napi_dispose_invalid',
      'native.dispose(-1): N-API call, one int, no tensor',
      ns(() => addon.dispose(-1), 20000, 1, quick),
    );
    add(
      'raw_call_dispose',
      'native.call(add, x, y) + native.dispose(r), no JS wrapper',
      ns(() => addon.dispose(addon.call(h, xi, yi)), 5000, 1, quick),
    );
    add(
      'raw_call_undef_dispose',
      'same, passing alpha as undefined (as Tensor.add does)',
      ns(() => addon.dispose(addon.call(h, xi, yi, undefined)), 5000, 1, quick),
    );
    // 100 calls with all results alive, then 100 frees (a tidy's lifetime), timed apart.
    {
      const repeats = quick ? 7 : 41;
      const callSamples: number[] = [];
      const freeSamples: number[] = [];
      for (let r = 0; r < repeats + 3; r++) {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < N; i++) idsBuf[i] = addon.call(h, xi, yi);
        const t1 = process.hrtime.bigint();
        for (let i = 0; i < N; i++) addon.dispose(idsBuf[i]!);
        const t2 = process.hrtime.bigint();
        if (r >= 3) {
          callSamples.push(Number(t1 - t0) / N);
          freeSamples.push(Number(t2 - t1) / N);
        }
      }
      add('raw_batch_call', 'native.call(add) x100, all 100 results alive (a tidy lifetime)', Math.min(...callSamples));
      add('raw_batch_dispose', 'then native.dispose(id) x100 (frees those tensors)', Math.min(...freeSamples));
    }
    // The JS call path of tensor.ts, replicated: two rest/spread hops and a try/catch.
    {
      const callNative = (handle: number, ...args: (number | undefined)[]): number => {
        try {
          return addon.call(handle, ...args);
        } catch (e) {
          throw e instanceof Error ? e : new Error(String(e));
        }
      };
      const call = (handle: number, ...args: (number | undefined)[]): number => callNative(handle, ...args);
      add(
        'replica_spread_dispose',
        'replica of tensor.ts call path (call -> callNative, rest/spread) + native.dispose',
        ns(() => addon.dispose(call(h, xi, yi, undefined)), 5000, 1, quick),
      );
    }
    // Wrapper objects on an existing id. Constructed with the GC backstop off and
    // marked kept, so no wrapper here can ever free x.
    torch.setFinalizerBackstop(false);
    try {
      add(
        'wrapper_new',
        'new Tensor(id) x100, no scope open, no finalizer',
        ns(
          () => {
            for (let i = 0; i < 100; i++) new torch.Tensor(xi).kept = true;
          },
          200,
          100,
          quick,
        ),
      );
      add(
        'wrapper_new_in_tidy',
        'new Tensor(id) x100 inside one tidy (track() + scan at exit), no finalizer',
        ns(
          () => {
            torch.tidy(() => {
              for (let i = 0; i < 100; i++) new torch.Tensor(xi).kept = true;
            });
          },
          200,
          100,
          quick,
        ),
      );
      // scope.ts track() reads stack[stack.length - 1]; with no scope open that is
      // stack[-1], a named-property miss that V8 resolves in the runtime.
      {
        const empty: number[][] = [];
        const one: number[][] = [[]];
        let hits = 0;
        add(
          'last_of_empty_array',
          'arr[arr.length - 1] on an empty array (track() with no scope open)',
          ns(
            () => {
              if (empty[empty.length - 1] !== undefined) hits++;
            },
            20000,
            1,
            quick,
          ),
        );
        add(
          'last_of_array',
          'arr[arr.length - 1] on a 1-element array (track() inside a scope)',
          ns(
            () => {
              if (one[one.length - 1] === undefined) hits++;
            },
            20000,
            1,
            quick,
          ),
        );
        if (hits !== 0) throw new Error('unreachable');
      }
      add(
        'tidy_empty',
        'tidy(() => undefined), empty scope',
        ns(() => torch.tidy(() => undefined), 20000, 1, quick),
      );
    } finally {
      torch.setFinalizerBackstop(true);
    }
    {
      const reg = new FinalizationRegistry<number>(() => undefined);
      add(
        'finalizer_register_unregister',
        'FinalizationRegistry.register(obj, id, obj) + unregister(obj)',
        ns(
          () => {
            const o = {};
            reg.register(o, 1, o);
            reg.unregister(o);
          },
          20000,
          1,
          quick,
        ),
      );
      add(
        'object_alloc',
        'plain object allocation (baseline of the line above)',
        ns(
          () => {
            const o = { a: 1 };
            if (o.a !== 1) throw new Error('unreachable');
          },
          20000,
          1,
          quick,
        ),
      );
    }
    add(
      'method_add_dispose',
      'x.add(y).dispose(), finalizer backstop on (default)',
      ns(() => x.add(y).dispose(), 5000, 1, quick),
    );
    torch.setFinalizerBackstop(false);
    try {
      add(
        'method_add_dispose_nofin',
        'x.add(y).dispose(), finalizer backstop off',
        ns(() => x.add(y).dispose(), 5000, 1, quick),
      );
    } finally {
      torch.setFinalizerBackstop(true);
    }
    add(
      'method_add_tidy1',
      'tidy(() => x.add(y)) per op',
      ns(() => torch.tidy(() => void x.add(y)), 5000, 1, quick),
    );
    add(
      'method_add_tidy100',
      'x.add(y) x100 inside one tidy',
      ns(
        () =>
          torch.tidy(() => {
            for (let i = 0; i < 100; i++) x.add(y);
          }),
        50,
        100,
        quick,
      ),
    );
    add(
      'ops_call_generic',
      "torch.ops.call('aten::add', 'Tensor', x, y) + dispose (generic escape hatch)",
      ns(() => (torch.ops.call('aten::add', 'Tensor', x, y) as torch.Tensor).dispose(), 5000, 1, quick),
    );
  } finally {
    x.dispose();
    y.dispose();
  }
  const leaked = addon.liveTensors() - live0 + 2;
  if (leaked !== 0) throw new Error(`breakdown leaked ${leaked} tensors`);
  return rows;
}

/**
 * Where the time of one x.add(y).dispose() goes, layer by layer, each a
 * difference of two measurements (so the layers add up to the total).
 * pyTinyAddNs: Python's x.add(y) (best block), from the paired overhead run.
 */
export function layersOf(rows: BreakdownRow[], probe: Breakdown['probe'], pyTinyAddNs: number): BreakdownRow[] {
  const v = (k: string): number => rows.find((r) => r.key === k)?.ns ?? NaN;
  const p = (k: string): number => ('error' in probe ? NaN : (probe[k] ?? NaN));
  const out: BreakdownRow[] = [];
  const push = (key: string, label: string, value: number): void => {
    out.push({ key, label, ns: value });
  };
  push('floor', 'C++ unboxed at::add (dispatcher, kernel, alloc + free): the floor', p('unboxedAddTinyNs'));
  push(
    'boxed',
    '+ boxed dispatch (IValue stack, callBoxed) instead of unboxed',
    p('boxedAddTinyNs') - p('unboxedAddTinyNs'),
  );
  push('table', '+ tensor table put/release', p('boxedAddTinyWithTableNs') - p('boxedAddTinyNs'));
  push(
    'napi',
    '+ N-API: 2 crossings (call, dispose), argument conversion, result id',
    v('raw_call_undef_dispose') - p('boxedAddTinyWithTableNs'),
  );
  push(
    'js_call',
    '+ JS call path (rest/spread hops, try/catch)',
    v('replica_spread_dispose') - v('raw_call_undef_dispose'),
  );
  push('wrapper', '+ Tensor wrapper object (new Tensor)', v('wrapper_new'));
  push(
    'rest',
    '+ rest of the method and dispose() (id getters, checks, bookkeeping)',
    v('method_add_dispose_nofin') - v('replica_spread_dispose') - v('wrapper_new'),
  );
  push(
    'finalizer',
    '+ FinalizationRegistry register + unregister (GC backstop)',
    v('method_add_dispose') - v('method_add_dispose_nofin'),
  );
  push('total', '= Node x.add(y).dispose()', v('method_add_dispose'));
  push('python', 'Python x.add(y) (same machine, same run)', pyTinyAddNs);
  push(
    'python_over_floor',
    'Python over the C++ floor (arg parsing, PyObject wrap/free)',
    pyTinyAddNs - p('unboxedAddTinyNs'),
  );
  push('node_over_floor', 'Node over the C++ floor', v('method_add_dispose') - p('unboxedAddTinyNs'));
  return out;
}

/** Builds (once) and runs the native probe; an error record if the toolchain is missing. */
export function nativeProbe(quick: boolean): Record<string, number> | { error: string } {
  const src = join(benchDir, 'native/dispatch_probe.cpp');
  const exe = join(benchDir, 'build/dispatch_probe');
  try {
    if (!existsSync(exe) || statSync(exe).mtimeMs < statSync(src).mtimeMs) {
      const py = spawnSync('python3', ['-c', 'import os, torch; print(os.path.dirname(torch.__file__))'], {
        encoding: 'utf8',
      });
      if (py.status !== 0) return { error: 'python3 torch not found (needed for libtorch headers)' };
      const root = process.env.LIBTORCH ?? py.stdout.trim();
      mkdirSync(dirname(exe), { recursive: true });
      process.stderr.write('  building the native probe bench/build/dispatch_probe (once, ~15 s)\n');
      execFileSync(
        process.env.CXX ?? 'g++',
        [
          '-O2',
          '-std=c++20',
          '-D_GLIBCXX_USE_CXX11_ABI=1',
          '-isystem',
          join(root, 'include'),
          '-isystem',
          join(root, 'include/torch/csrc/api/include'),
          src,
          '-o',
          exe,
          `-L${join(root, 'lib')}`,
          '-Wl,--no-as-needed',
          '-ltorch',
          '-ltorch_cpu',
          '-lc10',
          `-Wl,-rpath,${join(root, 'lib')}`,
        ],
        { stdio: ['ignore', 'inherit', 'inherit'] },
      );
    }
    const out = execFileSync(exe, [quick ? '7' : '41'], { encoding: 'utf8' });
    return JSON.parse(out.trim().split('\n').pop()!) as Record<string, number>;
  } catch (e) {
    return { error: (e as Error).message.split('\n')[0]! };
  }
}
