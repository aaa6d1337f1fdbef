// The benchmark harness: what a benchmark defines, how one timed block is run,
// the Python twin process, and statistics.
//
// Measurement protocol (identical on both sides, bench/py/common.py mirrors it):
//   - a case is one iteration of work (`fn`); `warmup` iterations first;
//   - then `repeats` timed blocks of `inner` iterations each, the device
//     synchronised before the clock starts and before it stops;
//   - a block's time / inner is one sample; the reported time is the median.
// Node and Python blocks are interleaved (N P P N N P ...), with the Python twin
// a long-lived child process that times one block per request, so both sides
// see the same machine load.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

import * as torch from '@epg/torch';

export type DeviceKind = 'cpu' | 'cuda';

/** Run-wide options from the command line. */
export interface RunOptions {
  device: DeviceKind;
  /** A dtype override (float32, bfloat16, float16); each benchmark has its own default. */
  dtype: torch.DType | undefined;
  /** Thread counts to run, e.g. [1, 2]. */
  threads: number[];
  quick: boolean;
  /** Multiplies each benchmark's default number of timed blocks. */
  repeatScale: number;
  python: string;
  noPython: boolean;
  /** Problem-size override (matmul n, conv batch, vit batch). */
  size: number | undefined;
  /** The device's peak rate for the dtype (TFLOP/s): the report adds MFU = achieved / peak. */
  peakTflops: number | undefined;
  /** Run the overhead breakdown (Node micro-benchmarks and the native probe). */
  breakdown: boolean;
  /** Before each benchmark, wait up to this many seconds for other processes to go quiet. */
  waitQuiet: number;
  /**
   * 1-thread runs: start Node and its Python twin pinned to one CPU (the idlest,
   * with taskset), every thread included, so that both sides share one core.
   */
  pin: boolean;
  /** Scheduling priority (nice value) for both processes. */
  nice: number | undefined;
}

/** The runner's options before any command-line flag. */
export function defaultRunOptions(): RunOptions {
  return {
    device: 'cpu',
    dtype: undefined,
    threads: [],
    quick: false,
    repeatScale: 1,
    python: process.env.EPG_BENCH_PYTHON ?? 'python3',
    noPython: false,
    size: undefined,
    peakTflops: undefined,
    breakdown: true,
    waitQuiet: 0,
    nice: undefined,
    pin: true,
  };
}

/** One timed case. Cases with the same name on both sides are compared. */
export interface Case {
  name: string;
  label: string;
  /** One iteration. */
  fn: () => void;
  warmup: number;
  /** Iterations per timed block. */
  inner: number;
  /** Operations per iteration: the report shows time per op. */
  ops?: number;
  /** Floating-point operations per iteration: the report shows GFLOP/s (and MFU with --peak-tflops). */
  flops?: number;
  /** Images per iteration: the report shows images/s. */
  images?: number;
  /** Only one side runs this case (profiling and reference points). */
  only?: 'node' | 'python';
}

export interface Setup {
  cases: Case[];
  dispose(): void;
}

export interface Benchmark {
  name: string;
  title: string;
  /** The Python twin, relative to bench/py. */
  pyScript: string;
  /** Timed blocks per case (before --repeat-scale). */
  repeats: number;
  /** The configuration, shared verbatim with the Python twin. */
  config(o: RunOptions): BenchConfig;
  setup(config: BenchConfig): Setup;
}

/** What both sides are told: device, dtype, threads, and per-benchmark sizes. */
export interface BenchConfig {
  device: DeviceKind;
  dtype: torch.DType;
  threads: number;
  quick: boolean;
  [key: string]: unknown;
}

/** A case as the Python twin describes it (for Python-only cases). */
export interface PyCaseInfo {
  name: string;
  label: string;
  warmup: number;
  inner: number;
  ops?: number;
  flops?: number;
}

// ------------------------------------------------------------------ timing

export function synchronize(device: DeviceKind): void {
  if (device === 'cuda') torch.cuda.synchronize();
}

/** Runs fn `n` times. */
export function runIterations(fn: () => void, n: number): void {
  for (let i = 0; i < n; i++) fn();
}

/** One timed block: seconds per iteration. */
export function timeBlock(fn: () => void, inner: number, device: DeviceKind): number {
  return timeBlockCpu(fn, inner, device).wall;
}

/**
 * One timed block: wall-clock and process CPU seconds per iteration. CPU time
 * (all threads of the process, V8's helpers included) leaves out the time the
 * process waited for a CPU, so it stays meaningful on a shared machine.
 */
export function timeBlockCpu(fn: () => void, inner: number, device: DeviceKind): { wall: number; cpu: number } {
  synchronize(device);
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < inner; i++) fn();
  synchronize(device);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9 / inner;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / 1e6 / inner };
}

/** Stand-alone timing of one function (warm-up, then blocks), for micro-benchmarks. */
export function timeSamples(fn: () => void, o: { warmup: number; inner: number; repeats: number }): number[] {
  runIterations(fn, o.warmup);
  const samples: number[] = [];
  for (let r = 0; r < o.repeats; r++) samples.push(timeBlock(fn, o.inner, 'cpu'));
  return samples;
}

// ------------------------------------------------------------ machine load

function cpuTimes(): { busy: number; total: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    const total = v.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return { busy: 0, total: 0 };
  }
}

/**
 * Fraction of all CPUs busy over `ms` milliseconds, sampled while this process
 * sleeps (so it is other processes' load), or NaN where /proc/stat is missing.
 */
export async function machineBusy(ms = 500): Promise<number> {
  const a = cpuTimes();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuTimes();
  return b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) : NaN;
}

function processTicks(pid: number): number {
  try {
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

/**
 * Measures what share of the machine's CPU time other processes (not `pids`)
 * used between start() and stop(): the load that disturbs a measurement.
 */
export class LoadMeter {
  private t0 = cpuTimes();
  private own0 = 0;
  constructor(private readonly pids: () => number[]) {}

  start(): void {
    this.t0 = cpuTimes();
    this.own0 = this.pids().reduce((a, p) => a + processTicks(p), 0);
  }

  /** Others' share of all CPUs (0..1), or NaN where /proc is missing. */
  stop(): number {
    const t1 = cpuTimes();
    const own = this.pids().reduce((a, p) => a + processTicks(p), 0) - this.own0;
    const total = t1.total - this.t0.total;
    if (!(total > 0)) return NaN;
    return Math.max(0, (t1.busy - this.t0.busy - own) / total);
  }
}

function perCpuIdle(): number[] {
  try {
    return readFileSync('/proc/stat', 'utf8')
      .split('\n')
      .filter((l) => /^cpu\d+ /.test(l))
      .map((l) => {
        const v = l.trim().split(/\s+/).slice(1).map(Number);
        return (v[3] ?? 0) + (v[4] ?? 0);
      });
  } catch {
    return [];
  }
}

/** The CPU that was idle longest over the last `ms` milliseconds (0 where unknown). */
export async function idlestCpu(ms = 300): Promise<number> {
  const a = perCpuIdle();
  await new Promise((r) => setTimeout(r, ms));
  const b = perCpuIdle();
  let best = 0;
  for (let i = 1; i < b.length; i++) if (b[i]! - a[i]! > b[best]! - a[best]!) best = i;
  return best;
}

/** Waits (up to maxSeconds) until other processes keep less than `threshold` of the CPUs busy. */
export async function waitQuiet(maxSeconds: number, threshold = 0.1): Promise<number> {
  const deadline = Date.now() + maxSeconds * 1000;
  let busy = await machineBusy();
  while (!(busy < threshold) && Date.now() < deadline) busy = await machineBusy(1000);
  return busy;
}

// -------------------------------------------------------------- statistics

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

export interface Stats {
  /** Seconds per iteration, one per timed block. */
  samples: number[];
  median: number;
  min: number;
  /** Interquartile range relative to the median. */
  relIqr: number;
}

export function stats(samples: number[]): Stats {
  const m = median(samples);
  return {
    samples,
    median: m,
    min: Math.min(...samples),
    relIqr: (quantile(samples, 0.75) - quantile(samples, 0.25)) / m,
  };
}

// -------------------------------------------------------------- Python twin

interface Pending {
  resolve(v: Record<string, unknown>): void;
  reject(e: Error): void;
}

/**
 * The Python twin of a benchmark, serving requests on stdin/stdout:
 * {cmd: 'setup', config} -> {cases: PyCaseInfo[]}, {cmd: 'warmup', case, n},
 * {cmd: 'time', case, inner} -> {seconds, cpu}, {cmd: 'info'}, {cmd: 'exit'}.
 */
export class PyTwin {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly queue: Pending[] = [];
  private exited = false;
  private stderrTail = '';

  constructor(python: string, script: string) {
    this.child = spawn(python, [script, '--serve'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, PYTHONUNBUFFERED: '1' },
    });
    this.child.stderr.on('data', (d: Buffer) => {
      const s = d.toString();
      this.stderrTail = (this.stderrTail + s).slice(-4000);
      process.stderr.write(s.replace(/^/gm, '  [py] '));
    });
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      const p = this.queue.shift();
      if (p === undefined) {
        process.stderr.write(`  [py stdout] ${line}\n`);
        return;
      }
      try {
        const msg = JSON.parse(line) as Record<string, unknown>;
        if (typeof msg.error === 'string') p.reject(new Error(`Python twin: ${msg.error}`));
        else p.resolve(msg);
      } catch {
        p.reject(new Error(`Python twin sent a line that is not JSON: ${line}`));
      }
    });
    const fail = (why: string): void => {
      this.exited = true;
      for (const p of this.queue.splice(0)) p.reject(new Error(`${why}\n${this.stderrTail}`));
    };
    this.child.on('exit', (code, signal) => fail(`Python twin ${script} exited (code ${code}, signal ${signal})`));
    this.child.on('error', (e) => fail(`cannot start ${python}: ${e.message}`));
  }

  request(msg: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.exited) return Promise.reject(new Error(`Python twin has exited\n${this.stderrTail}`));
    return new Promise((resolve, reject) => {
      this.queue.push({ resolve, reject });
      this.child.stdin.write(JSON.stringify(msg) + '\n');
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  async close(): Promise<void> {
    if (this.exited) return;
    await this.request({ cmd: 'exit' }).catch(() => undefined);
    this.child.stdin.end();
  }
}

// ------------------------------------------------------------ formatting

export function fmtTime(seconds: number): string {
  if (!Number.isFinite(seconds)) return 'n/a';
  if (seconds < 1e-6) return `${(seconds * 1e9).toFixed(0)} ns`;
  if (seconds < 1e-3) return `${(seconds * 1e6).toFixed(2)} µs`;
  if (seconds < 1) return `${(seconds * 1e3).toFixed(2)} ms`;
  return `${seconds.toFixed(3)} s`;
}

export function fmtRatio(r: number): string {
  return Number.isFinite(r) ? r.toFixed(3) : 'n/a';
}

export function fmtGflops(flops: number | undefined, seconds: number): string {
  if (flops === undefined || !Number.isFinite(seconds)) return '';
  return (flops / seconds / 1e9).toFixed(1);
}
