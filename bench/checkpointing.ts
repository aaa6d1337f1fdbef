// Benchmark: activation checkpointing's memory and time. One forward and
// backward pass of an EPG model (the x₀ prediction's squared error) with the
// transformer blocks checkpointed or not, in our TypeScript and in PyTorch
// (bench/py/checkpointing.py: the tests' independent reference model with
// torch.utils.checkpoint(use_reentrant=False) around each block).
//
// Each of the four runs is its own process. Peak memory is measured from the
// point where the model and its gradient buffers exist (what is left is
// activations and temporaries): on the CPU the process's peak RSS, on CUDA the
// caching allocator's peak of allocated bytes. Time: the median of the steps
// after the first (on the CPU also in process CPU time, steadier when other
// work shares the cores).
//
//   node bench/dist/checkpointing.js [--preset EPG-XL/16] [--batch 2] [--steps 3]
//   node bench/dist/checkpointing.js --device cuda --precision bf16 --preset EPG-XL/16 --batch 128
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';
import { buildEPG, epgConfig, getPreset } from 'epg';

import { epgForwardFlops } from './epg.js';

interface Measure {
  impl: 'ts' | 'py';
  checkpointing: boolean;
  /** Peak RSS above the model and its gradients (MiB). */
  peakMiB: number;
  /** Median seconds of one forward + backward step after the first. */
  stepSeconds: number;
  /** The same in process CPU seconds (user + system): steadier than wall-clock when other work shares the cores. */
  stepCpuSeconds: number;
}

const HERE = dirname(fileURLToPath(import.meta.url));
const COMMAND = torch.cli.defineCommand({
  name: 'node bench/dist/checkpointing.js',
  summary: "activation checkpointing's peak memory and step time, ours and PyTorch's (fp32, CPU)",
  flags: {
    preset: { type: 'string', default: 'EPG-T/4', help: 'model preset (/4 presets at 28 px gray; /16 at 256 px RGB)' },
    batch: { type: 'integer', default: 64, help: 'images per step' },
    steps: { type: 'integer', default: 4, help: 'steps per run (the first is not timed)' },
    device: { type: 'string', default: 'cpu', choices: ['cpu', 'cuda'], help: 'where to run' },
    precision: {
      type: 'string',
      default: 'fp32',
      choices: ['fp32', 'bf16'],
      help: 'fp32, or bf16 autocast over fp32 weights (as the trainer)',
    },
    child: { type: 'string', choices: ['off', 'on'], help: 'internal: one measurement in this process' },
  },
});

/** The /4 presets as the CPU demo uses them (Fashion-MNIST: 28 px, gray, 10 classes); the others at ImageNet's. */
function modelOverrides(preset: string): { numClasses: number; imageSize?: number; inChannels?: number } {
  return preset.endsWith('/4') ? { numClasses: 10, imageSize: 28, inChannels: 1 } : { numClasses: 1000 };
}

/** One run in this process: the model, its gradient buffers, then `steps` forward + backward passes. */
interface RunSpec {
  preset: string;
  batch: number;
  steps: number;
  device: 'cpu' | 'cuda';
  precision: 'fp32' | 'bf16';
}

/** Bytes in use now, in MiB: the process's RSS, or the CUDA allocator's. */
function inUseMiB(device: 'cpu' | 'cuda'): number {
  return (device === 'cuda' ? torch.cuda.memoryAllocated() : process.memoryUsage().rss) / 2 ** 20;
}

function measureHere({ preset, batch, steps, device, precision }: RunSpec, checkpointing: boolean): Measure {
  torch.manualSeed(0);
  const model = buildEPG(preset, { ...modelOverrides(preset), device });
  model.train();
  model.activationCheckpointing = checkpointing;
  const c = model.config;
  const numClasses = c.numClasses;
  const x = torch.randn([batch, c.inChannels, c.imageSize, c.imageSize], { device });
  const tIn = torch.randn([batch], { device });
  const y = torch.arange(0, batch, 1, { device }).remainder(numClasses);
  torch.noGrad(() => {
    for (const q of model.parameters()) q.grad = torch.zerosLike(q);
  });
  if (device === 'cuda') {
    torch.cuda.synchronize();
    torch.cuda.resetPeakMemoryStats();
  }
  const base = inUseMiB(device);
  const times: number[] = [];
  const cpu: number[] = [];
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const tape = checkpointing ? new torch.CheckpointTape() : null;
    torch.tidy(() => {
      const forward = (): torch.Tensor => {
        using _ = precision === 'bf16' ? torch.autocastGuard(device, { dtype: 'bfloat16' }) : null;
        return model.forward(x, tIn, y).float().sub(x).square().mean();
      };
      const loss = tape ? tape.record(forward) : forward();
      if (tape) tape.backward(loss);
      else loss.backward();
      loss.item();
    });
    tape?.dispose();
    times.push((performance.now() - t0) / 1000);
    const dc = process.cpuUsage(c0);
    cpu.push((dc.user + dc.system) / 1e6);
  }
  const peak = device === 'cuda' ? torch.cuda.maxMemoryAllocated() / 2 ** 20 : process.resourceUsage().maxRSS / 1024;
  const median = (xs: number[]): number => {
    const timed = (xs.length > 1 ? xs.slice(1) : xs).sort((a, b) => a - b);
    return timed[Math.floor(timed.length / 2)]!;
  };
  return { impl: 'ts', checkpointing, peakMiB: peak - base, stepSeconds: median(times), stepCpuSeconds: median(cpu) };
}

function runChild(impl: 'ts' | 'py', spec: RunSpec, on: boolean): Measure {
  const flags = Object.entries(spec).flatMap(([k, v]) => [`--${k}`, String(v)]);
  const args =
    impl === 'ts'
      ? [fileURLToPath(import.meta.url), '--child', on ? 'on' : 'off', ...flags]
      : [join(HERE, '..', 'py', 'checkpointing.py'), JSON.stringify({ ...spec, checkpointing: on })];
  const cfg = epgConfig(getPreset(spec.preset), modelOverrides(spec.preset));
  const env = { ...process.env, EPG_BENCH_MODEL: JSON.stringify(cfg) };
  const r = spawnSync(impl === 'ts' ? process.execPath : 'python3', args, { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`${impl} run (checkpointing ${on ? 'on' : 'off'}) failed:\n${r.stderr}`);
  const line = r.stdout.trim().split('\n').pop()!;
  return JSON.parse(line) as Measure;
}

function main(): void {
  const p = torch.cli.parseCommand(COMMAND, process.argv.slice(2));
  if (p.help) {
    console.log(torch.cli.formatHelp(COMMAND));
    return;
  }
  const v = p.values;
  const run: RunSpec = {
    preset: v.preset,
    batch: v.batch,
    steps: v.steps,
    device: v.device as 'cpu' | 'cuda',
    precision: v.precision as 'fp32' | 'bf16',
  };
  if (v.child !== undefined) {
    console.log(JSON.stringify(measureHere(run, v.child === 'on')));
    return;
  }
  const flops = 3 * epgForwardFlops(epgConfig(getPreset(v.preset), modelOverrides(v.preset)), v.batch);
  console.log(
    `${v.preset}, batch ${v.batch}, ${v.precision} on ${v.device === 'cuda' ? 'CUDA' : `the CPU (${torch.getNumThreads()} threads)`}; ` +
      `a plain step is ${(flops / 1e12).toFixed(2)} TFLOP (counted)`,
  );
  const rows: Measure[] = [];
  for (const impl of ['ts', 'py'] as const)
    for (const on of [false, true]) {
      const m = runChild(impl, run, on);
      rows.push(m);
      console.log(
        `${impl === 'ts' ? 'ours   ' : 'PyTorch'}  checkpointing ${on ? 'on ' : 'off'}  ` +
          `peak ${m.peakMiB.toFixed(0).padStart(6)} MiB above weights+grads (${(m.peakMiB / v.batch).toFixed(1)} per image)   ` +
          `step ${m.stepSeconds.toFixed(3)} s (CPU ${m.stepCpuSeconds.toFixed(3)} s)`,
      );
    }
  const get = (impl: 'ts' | 'py', on: boolean): Measure => rows.find((r) => r.impl === impl && r.checkpointing === on)!;
  for (const impl of ['ts', 'py'] as const) {
    const off = get(impl, false);
    const on = get(impl, true);
    console.log(
      `${impl === 'ts' ? 'ours   ' : 'PyTorch'}: checkpointing saves ${(off.peakMiB - on.peakMiB).toFixed(0)} MiB ` +
        `(${((1 - on.peakMiB / off.peakMiB) * 100).toFixed(0)}% of the activations) for ` +
        `${((on.stepSeconds / off.stepSeconds - 1) * 100).toFixed(0)}% more time per step ` +
        `(${((on.stepCpuSeconds / off.stepCpuSeconds - 1) * 100).toFixed(0)}% more CPU time; one more forward pass is +33%)`,
    );
  }
  console.log(
    `ours / PyTorch: time ${(get('ts', true).stepSeconds / get('py', true).stepSeconds).toFixed(2)}× (on), ` +
      `${(get('ts', false).stepSeconds / get('py', false).stepSeconds).toFixed(2)}× (off); ` +
      `CPU time ${(get('ts', true).stepCpuSeconds / get('py', true).stepCpuSeconds).toFixed(2)}× (on), ` +
      `${(get('ts', false).stepCpuSeconds / get('py', false).stepCpuSeconds).toFixed(2)}× (off); ` +
      `peak ${(get('ts', true).peakMiB / get('py', true).peakMiB).toFixed(2)}× (on), ` +
      `${(get('ts', false).peakMiB / get('py', false).peakMiB).toFixed(2)}× (off)`,
  );
}

try {
  main();
} catch (e) {
  if (!(e instanceof torch.cli.UsageError)) throw e;
  console.error(`checkpointing: ${e.message}\n\n${torch.cli.formatHelp(COMMAND)}`);
  process.exitCode = 2;
}
