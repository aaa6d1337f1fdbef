// Minor page faults per EPG-T/4 DM step (CPU, 1 thread), Node against Python,
// each with the C library's default heap settings and with freed memory kept
// mapped (@epg/torch's default since 2026-11-30; GLIBC_TUNABLES for Python).
// A fault costs the kernel a trap and a zeroed page: tens of thousands per step
// are several percent of it. Each configuration runs in a fresh process, pinned
// to CPU 0 where taskset exists.
//
//   node bench/dist/page-faults.js [STEPS]     (default 15)
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';

import { epgBench } from './epg.js';
import { defaultRunOptions, median } from './harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const KEPT_MAPPED = 'glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824';

/** The EPG benchmark's CPU configuration (EPG-T/4, batch 64, float32). */
const CPU_RUN = defaultRunOptions();

interface Result {
  faultsPerStep: number;
  times: number[];
}

function child(steps: number): void {
  torch.setNumThreads(1);
  const setup = epgBench.setup(epgBench.config(CPU_RUN));
  const step = setup.cases.find((c) => c.name === 'dm_step')!.fn;
  for (let i = 0; i < 3; i++) step();
  const faults0 = process.resourceUsage().minorPageFault;
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    step();
    times.push(performance.now() - t0);
  }
  const faultsPerStep = (process.resourceUsage().minorPageFault - faults0) / steps;
  console.log(JSON.stringify({ faultsPerStep, times } satisfies Result));
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Result {
  const pinned = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
  const r = spawnSync(pinned ? 'taskset' : cmd, pinned ? ['-c', '0', cmd, ...args] : args, {
    encoding: 'utf8',
    env: { ...process.env, GLIBC_TUNABLES: '', EPG_HOST_MALLOC: '', ...env },
  });
  if (r.error) throw new Error(`cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Result;
}

function main(): void {
  const args = process.argv.slice(2);
  if (args[0] === '--child') return child(Number(args[1]));
  const steps = Number(args[0] ?? 15);
  const config = JSON.stringify(epgBench.config(CPU_RUN));
  const node = (env: NodeJS.ProcessEnv) =>
    run(process.execPath, [join(here, 'page-faults.js'), '--child', String(steps)], env);
  const python = (env: NodeJS.ProcessEnv) =>
    run('python3', [join(here, '..', 'py', 'page_faults.py'), config, String(steps)], env);
  const rows: [string, Result][] = [
    ['Node, freed memory kept mapped (default)', node({})],
    ['Node, glibc defaults (EPG_HOST_MALLOC=default)', node({ EPG_HOST_MALLOC: 'default' })],
    ['Python, glibc defaults', python({})],
    ['Python, kept mapped (GLIBC_TUNABLES)', python({ GLIBC_TUNABLES: KEPT_MAPPED })],
  ];
  console.log(`EPG-T/4 DM step, batch 64, CPU, 1 thread, ${steps} steps after 3 warm-up steps\n`);
  console.log('| process | minor page faults per step | median step | fastest step |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const [name, r] of rows)
    console.log(
      `| ${name} | ${Math.round(r.faultsPerStep)} | ${median(r.times).toFixed(1)} ms | ${Math.min(...r.times).toFixed(1)} ms |`,
    );
}

main();
