// The benchmark runner: Node (@epg/torch) against Python eager PyTorch, same
// machine, same run, blocks interleaved.
//
//   node bench/dist/run.js                      all benchmarks, CPU, 1 thread and the default
//   node bench/dist/run.js overhead|matmul|conv|vit|epg [...]   some of them
//   options: the table in COMMAND below, or --help (--device cuda, --dtype, --threads N, --quick, ...)
//
// Each benchmark at each thread count runs in a fresh Node process (this file in
// --child mode) with a fresh Python twin; 1-thread runs start both pinned to one
// CPU. Writes bench/results/<stamp>.json and .md, and latest.json / latest.md.
// BENCHMARKS.md explains the method and the numbers.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, setPriority, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';

import { nativeProbe, nodeBreakdown, layersOf, type Breakdown, type BreakdownRow } from './breakdown.js';
import { conv } from './conv.js';
import { epgBench } from './epg.js';
import {
  LoadMeter,
  PyTwin,
  defaultRunOptions,
  fmtGflops,
  fmtRatio,
  fmtTime,
  idlestCpu,
  runIterations,
  stats,
  timeBlockCpu,
  waitQuiet,
  type Benchmark,
  type Case,
  type PyCaseInfo,
  type RunOptions,
  type Stats,
} from './harness.js';
import { matmul } from './matmul.js';
import { overhead } from './overhead.js';
import { vit } from './vit.js';

const BENCHMARKS: Benchmark[] = [overhead, matmul, conv, vit, epgBench];
const here = dirname(fileURLToPath(import.meta.url));
const benchDir = resolve(here, '..');

const COMMAND = torch.cli.defineCommand({
  name: 'node bench/dist/run.js',
  summary: 'Node (@epg/torch) against Python eager PyTorch: the benchmarks named (default all), blocks interleaved',
  positionals: `[${BENCHMARKS.map((b) => b.name).join('|')} ...]`,
  flags: {
    device: { type: 'string', choices: ['cpu', 'cuda'], default: 'cpu', help: 'where tensors live' },
    dtype: {
      type: 'string',
      choices: torch.DTYPES,
      value: 'D',
      help: 'float32, bfloat16, float16, float64, ... (default: per benchmark)',
    },
    threads: { type: 'integer', help: "intra-op threads on both sides (default: 1 and libtorch's default)" },
    size: { type: 'integer', help: 'matmul n / conv batch / vit batch' },
    'peak-tflops': {
      type: 'number',
      value: 'X',
      help: "the device's peak TFLOP/s for the dtype (H100/H200 dense bf16: 989); the report adds MFU",
    },
    quick: { type: 'boolean', help: 'small sizes and few repeats (a smoke test, not a measurement)' },
    'repeat-scale': { type: 'number', value: 'X', default: 1, help: 'multiply the number of timed blocks' },
    python: { type: 'string', value: 'PATH', default: defaultRunOptions().python, help: 'the Python with torch' },
    'no-python': { type: 'boolean', help: 'Node only' },
    'no-breakdown': { type: 'boolean', help: 'skip the per-op overhead breakdown' },
    'wait-quiet': {
      type: 'integer',
      value: 'S',
      default: 0,
      help: 'before each benchmark, wait up to S s for the CPUs to go idle (retry disturbed cases)',
    },
    'no-pin': { type: 'boolean', help: 'do not pin 1-thread runs of both sides to one CPU (taskset)' },
    nice: { type: 'integer', help: 'scheduling priority -20..19 of Node and the Python twin (e.g. -10, as root)' },
    results: {
      type: 'string',
      value: 'DIR',
      help: 'write DIR/bench.md and DIR/bench.json (default bench/results/<date>.* and latest.*)',
    },
    child: {
      type: 'string',
      value: 'NAME',
      help: 'internal: run one benchmark (or the breakdown) at one --threads in this process, print its result',
    },
  },
  notes:
    'Each benchmark at each thread count runs in a fresh Node process (--child) with a fresh Python twin;\n' +
    'the report is rewritten after each benchmark. BENCHMARKS.md explains the method.',
});

interface Invocation {
  names: string[];
  o: RunOptions;
  resultsDir: string | undefined;
  /** Child mode: the benchmark (or 'breakdown') to run in this process. */
  child: string | undefined;
}

/** Parses the command line; undefined after printing --help. Bad values are UsageErrors naming the flag. */
function parseInvocation(argv: string[]): Invocation | undefined {
  const { values: v, positionals, help } = torch.cli.parseCommand(COMMAND, argv);
  if (help) {
    console.log(torch.cli.formatHelp(COMMAND));
    return undefined;
  }
  const check = (ok: boolean, flag: string, what: string, got: unknown): void => {
    if (!ok) throw new torch.cli.UsageError(`--${flag} must be ${what}, got ${String(got)}`);
  };
  for (const flag of ['threads', 'size'] as const)
    if (v[flag] !== undefined) check(v[flag] > 0, flag, 'a positive integer', v[flag]);
  if (v['peak-tflops'] !== undefined)
    check(v['peak-tflops'] > 0, 'peak-tflops', 'positive (TFLOP/s)', v['peak-tflops']);
  check(v['repeat-scale'] > 0, 'repeat-scale', 'positive', v['repeat-scale']);
  check(v['wait-quiet'] >= 0, 'wait-quiet', 'a number of seconds (0: do not wait)', v['wait-quiet']);
  if (v.nice !== undefined) check(v.nice >= -20 && v.nice <= 19, 'nice', 'an integer in -20..19', v.nice);
  const known = BENCHMARKS.map((b) => b.name);
  const unknown = positionals.filter((n) => !known.includes(n));
  if (unknown.length)
    throw new torch.cli.UsageError(`unknown benchmark ${unknown.join(', ')}; the benchmarks: ${known.join(', ')}`);
  if (v.child !== undefined)
    check([...known, 'breakdown'].includes(v.child), 'child', `one of ${known.join(', ')}, breakdown`, v.child);
  const o: RunOptions = {
    ...defaultRunOptions(),
    device: v.device,
    dtype: v.dtype,
    threads: v.threads !== undefined ? [v.threads] : [],
    quick: v.quick,
    repeatScale: v['repeat-scale'],
    python: v.python,
    noPython: v['no-python'],
    size: v.size,
    peakTflops: v['peak-tflops'],
    breakdown: !v['no-breakdown'],
    waitQuiet: v['wait-quiet'],
    pin: !v['no-pin'],
    nice: v.nice,
  };
  return { names: positionals, o, resultsDir: v.results, child: v.child };
}

// ------------------------------------------------------------------ machine

export interface Machine {
  date: string;
  cpuModel: string;
  logicalCpus: number;
  memoryGiB: number;
  loadAvgBefore: number[];
  loadAvgAfter?: number[];
  node: string;
  torch: { torchVersion: string; cudaCompiled: boolean; cudaAvailable: boolean };
  python?: Record<string, unknown>;
  gpu?: string | null;
  defaultThreads: number;
  /** The repository state measured: HEAD and whether packages/torch had local changes. */
  git: string;
  addonBuilt: string;
  nice?: number;
}

function gitState(): string {
  const run = (args: string[]): string =>
    spawnSync('git', args, { cwd: benchDir, encoding: 'utf8' }).stdout?.trim() ?? '';
  const head = run(['rev-parse', '--short', 'HEAD']) || 'unknown';
  const dirty = run(['status', '--porcelain', '--', '../packages/torch']).split('\n').filter(Boolean).length;
  return dirty ? `${head} + ${dirty} uncommitted change(s) in packages/torch` : head;
}

function addonBuilt(): string {
  try {
    const path = join(dirname(createRequire(import.meta.url).resolve('@epg/torch')), '../../build/epg_torch.node');
    return statSync(path).mtime.toISOString();
  } catch {
    return 'unknown';
  }
}

function cpuModel(): string {
  try {
    const m = readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.+)$/m);
    if (m) return m[1]!.trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown';
}

// ------------------------------------------------------------------ results

interface CaseResult {
  name: string;
  label: string;
  ops?: number;
  flops?: number;
  images?: number;
  node?: Stats;
  python?: Stats;
  /** Node median / Python median. */
  ratio?: number;
  /** Node min / Python min (less sensitive to other load on the machine). */
  ratioMin?: number;
  /** Process CPU time per iteration (all threads), per block. */
  nodeCpu?: Stats;
  pythonCpu?: Stats;
  /** Node / Python median CPU time: robust to waiting for a CPU on a loaded machine. */
  ratioCpu?: number;
  /** Share of all CPUs that other processes used while this case ran. */
  otherLoad: number;
  attempts?: number;
}

interface BenchResult {
  name: string;
  title: string;
  threads: number;
  config: Record<string, unknown>;
  cases: CaseResult[];
  /** The CPU both sides were pinned to (1-thread blocks). */
  pinned?: string;
  /** Highest matmul rate (GFLOP/s, medians) seen in this block: the floor's denominator. */
  peakMatmulGflops?: number;
}

/** Times one case on both sides, blocks interleaved; `meter` measures others' load meanwhile. */
async function timeCase(
  c: Case | PyCaseInfo,
  onPython: boolean,
  twin: PyTwin | undefined,
  repeats: number,
  o: RunOptions,
  meter: LoadMeter,
): Promise<CaseResult> {
  const nodeCase = 'fn' in c ? c : undefined;
  const cr: CaseResult = {
    name: c.name,
    label: c.label,
    ops: c.ops,
    flops: c.flops,
    ...('images' in c && c.images !== undefined ? { images: c.images } : {}),
    otherLoad: NaN,
  };
  if (nodeCase) runIterations(nodeCase.fn, nodeCase.warmup);
  if (onPython) await twin!.request({ cmd: 'warmup', case: c.name, n: c.warmup });
  const ns: number[] = [];
  const ps: number[] = [];
  const nc: number[] = [];
  const pc: number[] = [];
  const nodeBlock = (): void => {
    const t = timeBlockCpu(nodeCase!.fn, nodeCase!.inner, o.device);
    ns.push(t.wall);
    nc.push(t.cpu);
  };
  meter.start();
  for (let r = 0; r < repeats; r++) {
    // Alternate who goes first: N P P N N P ...
    const nodeFirst = r % 2 === 0;
    if (nodeFirst && nodeCase) nodeBlock();
    if (onPython) {
      const reply = await twin!.request({ cmd: 'time', case: c.name, inner: c.inner });
      ps.push(reply.seconds as number);
      pc.push(reply.cpu as number);
    }
    if (!nodeFirst && nodeCase) nodeBlock();
  }
  cr.otherLoad = meter.stop();
  if (ns.length) cr.node = stats(ns);
  if (ps.length) cr.python = stats(ps);
  if (nc.length) cr.nodeCpu = stats(nc);
  if (pc.length) cr.pythonCpu = stats(pc);
  if (cr.node && cr.python) {
    cr.ratio = cr.node.median / cr.python.median;
    cr.ratioMin = cr.node.min / cr.python.min;
    cr.ratioCpu = cr.nodeCpu!.median / cr.pythonCpu!.median;
  }
  return cr;
}

/** Other processes' CPU share above which a case counts as disturbed (and is retried). */
const NOISY = 0.1;

async function runBenchmark(
  b: Benchmark,
  o: RunOptions,
  threads: number,
  twin: PyTwin | undefined,
): Promise<BenchResult> {
  torch.setNumThreads(threads);
  const config = { ...b.config(o), threads };
  const repeats = Math.max(3, Math.round((o.quick ? 3 : b.repeats) * o.repeatScale));
  const setup = torch.tidy(() => b.setup(config));
  const pyCases = twin ? ((await twin.request({ cmd: 'setup', config })).cases as PyCaseInfo[]) : ([] as PyCaseInfo[]);
  const result: BenchResult = { name: b.name, title: b.title, threads, config, cases: [] };
  const nodeCases = setup.cases.filter((c) => c.only !== 'python');
  const all: (Case | PyCaseInfo)[] = [
    ...nodeCases,
    ...pyCases.filter((p) => !nodeCases.some((c) => c.name === p.name)),
  ];
  const meter = new LoadMeter(() => [process.pid, ...(twin?.pid !== undefined ? [twin.pid] : [])]);
  try {
    for (const c of all) {
      const onPython = twin !== undefined && pyCases.some((p) => p.name === c.name);
      process.stderr.write(`  [${b.name} t=${threads}] ${c.label} ...`);
      // On a shared machine: wait for quiet, and retry a disturbed case, keeping the least disturbed try.
      let best: CaseResult | undefined;
      for (let attempt = 0; attempt < (o.waitQuiet > 0 ? 3 : 1); attempt++) {
        if (o.waitQuiet > 0) await waitQuiet(o.waitQuiet, NOISY);
        const cr = await timeCase(c, onPython, twin, repeats, o, meter);
        cr.attempts = attempt + 1;
        if (best === undefined || !(cr.otherLoad >= best.otherLoad)) best = cr;
        if (!(cr.otherLoad >= NOISY) || attempt + 1 >= (o.waitQuiet > 0 ? 3 : 1)) break;
        process.stderr.write(` [others used ${(cr.otherLoad * 100).toFixed(0)}% of the CPUs: again]`);
      }
      const cr = best!;
      process.stderr.write(
        ` node ${fmtTime(cr.node?.median ?? NaN)}  python ${fmtTime(cr.python?.median ?? NaN)}` +
          `  ratio ${fmtRatio(cr.ratio ?? NaN)} (best ${fmtRatio(cr.ratioMin ?? NaN)}, cpu ${fmtRatio(cr.ratioCpu ?? NaN)})` +
          `  others ${(cr.otherLoad * 100).toFixed(0)}%\n`,
      );
      result.cases.push(cr);
    }
  } finally {
    setup.dispose();
  }
  const rates = result.cases
    .filter((c) => c.name.startsWith('matmul_') && c.flops !== undefined)
    .flatMap((c) => [c.node, c.python].filter((s) => s !== undefined).map((s) => c.flops! / s.median / 1e9));
  if (rates.length) result.peakMatmulGflops = Math.max(...rates);
  return result;
}

// ------------------------------------------------------------------ report

function perOp(c: CaseResult, s: Stats | undefined): number {
  return s === undefined ? NaN : s.median / (c.ops ?? 1);
}

function markdown(
  results: BenchResult[],
  breakdown: Breakdown | undefined,
  m: Machine,
  command: string,
  peakTflops: number | undefined,
): string {
  const L: string[] = [];
  L.push(`Run: ${m.date} · \`${command}\``);
  L.push('');
  L.push(
    `Machine: ${m.cpuModel}, ${m.logicalCpus} logical CPUs, ${m.memoryGiB} GiB; libtorch ${m.torch.torchVersion}` +
      ` (Node ${m.node}; Python ${String(m.python?.python ?? 'n/a')}, torch ${String(m.python?.torch ?? 'n/a')})` +
      (m.gpu ? `; GPU ${m.gpu}` : '') +
      `; default threads ${m.defaultThreads}${m.nice !== undefined ? `; nice ${m.nice}` : ''}; code ${m.git}, addon built ${m.addonBuilt}; load average before/after ${m.loadAvgBefore.map((x) => x.toFixed(2)).join(' ')} / ${(m.loadAvgAfter ?? []).map((x) => x.toFixed(2)).join(' ')}`,
  );
  L.push('');
  L.push(
    'Times are per iteration, median of the timed blocks; Node and Python blocks alternate. ' +
      '"best block": ratio of the fastest blocks. "CPU time": ratio of median process CPU time per iteration ' +
      '(all threads; leaves out time spent waiting for a CPU, counts spinning and helper threads). ' +
      '"IQR": interquartile range / median. ' +
      '"others\' CPU": share of all CPUs that other processes used while the case ran (over ~10% = disturbed).',
  );
  L.push('');
  for (const r of results) {
    const cfg = r.config;
    L.push(
      `#### ${r.title} — ${cfg.device}, ${cfg.dtype}, ${r.threads} thread${r.threads === 1 ? '' : 's'}` +
        (r.pinned !== undefined ? ` (both pinned to CPU ${r.pinned})` : ''),
    );
    L.push('');
    const throughput = r.cases.some((c) => c.flops !== undefined);
    const cols: [string, (c: CaseResult) => string][] = [
      ['case', (c) => c.label],
      ['Node', (c) => fmtTime(c.node?.median ?? NaN)],
      ['Python', (c) => fmtTime(c.python?.median ?? NaN)],
    ];
    if (throughput)
      cols.push(
        ['Node GFLOP/s', (c) => (c.node ? fmtGflops(c.flops, c.node.median) : '')],
        ['Python GFLOP/s', (c) => (c.python ? fmtGflops(c.flops, c.python.median) : '')],
      );
    else
      cols.push(
        ['Node per op', (c) => fmtTime(perOp(c, c.node))],
        ['Python per op', (c) => fmtTime(perOp(c, c.python))],
      );
    // Model FLOPs utilisation: the achieved matmul rate over the device's peak.
    const mfu = (c: CaseResult, s: Stats | undefined): string =>
      s && c.flops !== undefined && peakTflops
        ? `${((c.flops / s.median / (peakTflops * 1e12)) * 100).toFixed(1)}%`
        : '';
    if (throughput && peakTflops)
      cols.push(['Node MFU', (c) => mfu(c, c.node)], ['Python MFU', (c) => mfu(c, c.python)]);
    const imagesPerSec = (c: CaseResult, s: Stats | undefined): string =>
      s && c.images !== undefined ? (c.images / s.median).toFixed(1) : '';
    if (r.cases.some((c) => c.images !== undefined))
      cols.push(['Node img/s', (c) => imagesPerSec(c, c.node)], ['Python img/s', (c) => imagesPerSec(c, c.python)]);
    cols.push(
      ['Node/Python (median)', (c) => (c.ratio !== undefined ? `**${fmtRatio(c.ratio)}**` : '—')],
      ['Node/Python (best block)', (c) => (c.ratioMin !== undefined ? fmtRatio(c.ratioMin) : '—')],
      ['Node/Python (CPU time)', (c) => (c.ratioCpu !== undefined ? fmtRatio(c.ratioCpu) : '—')],
      [
        'IQR Node / Python',
        (c) => [c.node, c.python].map((x) => (x ? `${(x.relIqr * 100).toFixed(0)}%` : '—')).join(' / '),
      ],
      ["others' CPU", (c) => (Number.isFinite(c.otherLoad) ? `${(c.otherLoad * 100).toFixed(0)}%` : '?')],
    );
    L.push(`| ${cols.map(([h]) => h).join(' | ')} |`);
    L.push(`|${cols.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`);
    for (const c of r.cases) L.push(`| ${cols.map(([, f]) => f(c)).join(' | ')} |`);
    if (r.peakMatmulGflops) {
      L.push('');
      L.push(`Peak matmul rate in this block (best median, either side): ${r.peakMatmulGflops.toFixed(1)} GFLOP/s.`);
    }
    if (r.peakMatmulGflops && r.cases.some((c) => c.name === 'conv2d')) {
      const c = r.cases.find((x) => x.name === 'conv2d')!;
      const floor = c.flops! / (r.peakMatmulGflops * 1e9);
      L.push(
        `Floor: ${(c.flops! / 1e9).toFixed(2)} GFLOP / ${r.peakMatmulGflops.toFixed(1)} GFLOP/s (peak matmul) = ${fmtTime(floor)}; ` +
          `Node ${fmtTime(c.node?.median ?? NaN)} (${((floor / (c.node?.median ?? NaN)) * 100).toFixed(0)}% of floor rate), ` +
          `Python ${fmtTime(c.python?.median ?? NaN)} (${((floor / (c.python?.median ?? NaN)) * 100).toFixed(0)}%).`,
      );
    }
    L.push('');
  }
  if (breakdown) {
    L.push('#### Per-op overhead breakdown (Node side, add on 2x2 float32, 1 thread; best of many short blocks)');
    L.push('');
    L.push('| measurement | ns/op |');
    L.push('| --- | ---: |');
    for (const row of breakdown.rows) L.push(`| ${row.label} | ${row.ns.toFixed(0)} |`);
    if (!('error' in breakdown.probe)) {
      const p = breakdown.probe;
      L.push(`| C++ unboxed \`at::add\` 2x2 (what Python's binding calls) | ${p.unboxedAddTinyNs!.toFixed(0)} |`);
      L.push(`| C++ boxed \`callBoxed(add.Tensor)\` 2x2 (what the addon calls) | ${p.boxedAddTinyNs!.toFixed(0)} |`);
      L.push(`| C++ boxed + tensor-table put/release | ${p.boxedAddTinyWithTableNs!.toFixed(0)} |`);
      L.push(`| C++ \`at::empty({2,2})\` alloc + free | ${p.emptyTensorAllocNs!.toFixed(0)} |`);
      L.push(`| C++ chain of 20 ops 64x64, unboxed, per op | ${p.unboxedChainNsPerOp!.toFixed(0)} |`);
      L.push(
        `| C++ chain of 20 ops 64x64, unboxed, all 20 kept alive to the end (tidy lifetime), per op | ${p.unboxedChainKeepAllNsPerOp!.toFixed(0)} |`,
      );
      L.push(`| C++ chain of 20 ops 64x64, boxed, per op | ${p.boxedChainNsPerOp!.toFixed(0)} |`);
    } else {
      L.push(`| native probe | not run: ${breakdown.probe.error} |`);
    }
    L.push('');
    L.push('Where the time of one `x.add(y).dispose()` goes (differences of the rows above):');
    L.push('');
    L.push('| layer | ns/op |');
    L.push('| --- | ---: |');
    for (const row of breakdown.layers)
      L.push(`| ${row.label} | ${Number.isFinite(row.ns) ? row.ns.toFixed(0) : 'n/a'} |`);
    L.push('');
  }
  return L.join('\n');
}

// ------------------------------------------------------------------ main

/** Arguments that a child run of one benchmark gets (the options, not the names or threads). */
function childArgs(o: RunOptions): string[] {
  const a = ['--device', o.device, '--python', o.python, '--repeat-scale', String(o.repeatScale)];
  if (o.dtype) a.push('--dtype', o.dtype);
  if (o.size !== undefined) a.push('--size', String(o.size));
  if (o.peakTflops !== undefined) a.push('--peak-tflops', String(o.peakTflops));
  if (o.quick) a.push('--quick');
  if (o.noPython) a.push('--no-python');
  if (o.waitQuiet > 0) a.push('--wait-quiet', String(o.waitQuiet));
  return a;
}

/**
 * Runs one piece (a benchmark at one thread count, or the breakdown) in a fresh
 * Node process, with a fresh Python twin: nothing (heap, allocator, thread
 * pools) carries over between pieces. With `cpu`, both processes are started
 * pinned to that CPU (taskset), every thread included.
 */
function runChild(args: string[], cpu: string | undefined): Promise<unknown> {
  const script = fileURLToPath(import.meta.url);
  const node = [...process.execArgv, script, ...args];
  const [cmd, argv] =
    cpu !== undefined ? ['taskset', ['-c', cpu, process.execPath, ...node]] : [process.execPath, node];
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith(RESULT));
      if (code === 0 && line) resolvePromise(JSON.parse(line.slice(RESULT.length)));
      else reject(new Error(`benchmark child ${args.join(' ')} failed (exit ${code})`));
    });
  });
}

const RESULT = '@@bench-result ';

/** Child mode: one benchmark at one thread count, or the breakdown; the result as one JSON line. */
async function child(name: string, o: RunOptions): Promise<void> {
  if (name === 'breakdown') {
    torch.setNumThreads(1);
    const rows = nodeBreakdown(o.quick);
    const probe = nativeProbe(o.quick);
    console.log(RESULT + JSON.stringify({ rows, probe }));
    return;
  }
  const b = BENCHMARKS.find((x) => x.name === name)!;
  const twin = o.noPython ? undefined : new PyTwin(o.python, join(benchDir, 'py', b.pyScript));
  try {
    const python = twin ? await twin.request({ cmd: 'info' }) : undefined;
    const result = await runBenchmark(b, o, o.threads[0]!, twin);
    console.log(RESULT + JSON.stringify({ result, python }));
  } finally {
    await twin?.close();
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const invocation = parseInvocation(argv);
  if (invocation === undefined) return;
  const { names, o, resultsDir } = invocation;
  if (invocation.child !== undefined) {
    await child(invocation.child, o);
    return;
  }
  // In the order given (the device script puts the EPG cases first, so a run cut off at its limit keeps them).
  const selected = names.length ? [...new Set(names)].map((n) => BENCHMARKS.find((b) => b.name === n)!) : BENCHMARKS;
  // Before any child is spawned: children and Python twins inherit it.
  if (o.nice !== undefined) setPriority(o.nice);
  const info = torch.info();
  const defaultThreads = torch.getNumThreads();
  if (o.device === 'cuda' && !torch.cuda.isAvailable())
    throw new Error(
      `--device cuda: this @epg/torch build has no usable CUDA (compiled with CUDA: ${info.cudaCompiled}). ` +
        'Rebuild the addon against a CUDA libtorch with the CUDA toolkit headers present (npm run build:native).',
    );
  if (o.threads.length === 0)
    o.threads = o.device === 'cuda' || defaultThreads === 1 ? [defaultThreads] : [1, defaultThreads];
  const pinnable =
    o.pin && cpus().length > 1 && spawnSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' }).status === 0;
  const machine: Machine = {
    date: new Date().toISOString(),
    cpuModel: cpuModel(),
    logicalCpus: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    loadAvgBefore: loadavg(),
    node: process.version,
    torch: { torchVersion: info.torchVersion, cudaCompiled: info.cudaCompiled, cudaAvailable: info.cudaAvailable },
    defaultThreads,
    git: gitState(),
    addonBuilt: addonBuilt(),
    nice: o.nice,
  };
  const command = `node bench/dist/run.js ${argv.join(' ')}`.trim();
  console.log(`# @epg/torch benchmarks: ${command}`);
  console.log(
    `# ${machine.cpuModel}, ${machine.logicalCpus} CPUs, libtorch ${info.torchVersion}, threads ${o.threads.join(', ')}`,
  );

  const results: BenchResult[] = [];
  let breakdown: Breakdown | undefined;
  // The report is rewritten after each benchmark: a run cut off at a time limit keeps what finished.
  const stamp = machine.date.replace(/[:.]/g, '-');
  const savedTo = resultsDir
    ? `${join(resultsDir, 'bench.json')} (and bench.md)`
    : `bench/results/${stamp}.json (and latest.json, latest.md)`;
  const save = (): string => {
    const md = markdown(results, breakdown, machine, command, o.peakTflops);
    const json = JSON.stringify({ machine, command, options: o, results, breakdown }, null, 2);
    const dir = resultsDir ?? join(benchDir, 'results');
    mkdirSync(dir, { recursive: true });
    for (const base of resultsDir ? ['bench'] : [stamp, 'latest']) {
      writeFileSync(join(dir, `${base}.json`), json);
      writeFileSync(join(dir, `${base}.md`), md + '\n');
    }
    return md;
  };
  for (const b of selected) {
    for (const t of o.threads) {
      // 1 thread: both sides on the same CPU, the idlest one just now.
      const cpu = pinnable && t === 1 ? String(await idlestCpu()) : undefined;
      const r = (await runChild(['--child', b.name, '--threads', String(t), ...childArgs(o)], cpu)) as {
        result: BenchResult;
        python?: Record<string, unknown>;
      };
      r.result.pinned = cpu;
      results.push(r.result);
      if (r.python && machine.python === undefined) {
        machine.python = r.python;
        machine.gpu = (r.python.cudaDevice as string | null) ?? null;
      }
    }
    if (b.name === 'overhead' && o.breakdown && o.device === 'cpu') {
      if (o.waitQuiet > 0) await waitQuiet(o.waitQuiet);
      process.stderr.write('  [overhead] breakdown: Node micro-benchmarks and the native probe ...\n');
      const cpu = pinnable ? String(await idlestCpu()) : undefined;
      const { rows, probe } = (await runChild(['--child', 'breakdown', ...childArgs(o)], cpu)) as {
        rows: BreakdownRow[];
        probe: Breakdown['probe'];
      };
      const tiny = results
        .find((r) => r.name === 'overhead' && r.threads === 1)
        ?.cases.find((c) => c.name === 'tiny_add')?.python;
      breakdown = { rows, probe, layers: layersOf(rows, probe, (tiny?.min ?? NaN) * 1e9) };
    }
    save();
  }
  machine.loadAvgAfter = loadavg();
  const md = save();
  console.log('\n' + md);
  console.log(`\nresults: ${savedTo}`);
}

main().catch((e: unknown) => {
  if (e instanceof torch.cli.UsageError) {
    console.error(`run.js: ${e.message}\n\n${torch.cli.formatHelp(COMMAND)}`);
    process.exit(2);
  }
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
