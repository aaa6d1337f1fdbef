// Benchmark: activation checkpointing's memory and time. One forward and
// backward pass of an EPG model (the x₀ prediction's squared error, fp32, CPU)
// with the transformer blocks checkpointed or not, in our TypeScript and in
// PyTorch (bench/py/checkpointing.py: the tests' independent reference model
// with torch.utils.checkpoint(use_reentrant=False) around each block).
//
// Each of the four runs is its own process, so peak memory is the process's
// peak RSS: measured from the point where the model and its gradient buffers
// exist (so what is left is activations and temporaries). Time: the median of
// the steps after the first.
//
//   node bench/dist/checkpointing.js [--preset EPG-XL/16] [--batch 2] [--steps 3]
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
}

const HERE = dirname(fileURLToPath(import.meta.url));
const COMMAND = torch.cli.defineCommand({
  name: 'node bench/dist/checkpointing.js',
  summary: "activation checkpointing's peak memory and step time, ours and PyTorch's (fp32, CPU)",
  flags: {
    preset: { type: 'string', default: 'EPG-T/4', help: 'model preset (/4 presets at 28 px gray; /16 at 256 px RGB)' },
    batch: { type: 'integer', default: 64, help: 'images per step' },
    steps: { type: 'integer', default: 4, help: 'steps per run (the first is not timed)' },
    child: { type: 'string', choices: ['off', 'on'], help: 'internal: one measurement in this process' },
  },
});

/** The /4 presets as the CPU demo uses them (Fashion-MNIST: 28 px, gray, 10 classes); the others at ImageNet's. */
function modelOverrides(preset: string): { numClasses: number; imageSize?: number; inChannels?: number } {
  return preset.endsWith('/4') ? { numClasses: 10, imageSize: 28, inChannels: 1 } : { numClasses: 1000 };
}

function rssMiB(): number {
  return process.memoryUsage().rss / 2 ** 20;
}

/** One run in this process: the model, its gradient buffers, then `steps` forward + backward passes. */
function measureHere(preset: string, batch: number, steps: number, checkpointing: boolean): Measure {
  torch.manualSeed(0);
  const model = buildEPG(preset, modelOverrides(preset));
  model.train();
  model.activationCheckpointing = checkpointing;
  const c = model.config;
  const numClasses = c.numClasses;
  const x = torch.randn([batch, c.inChannels, c.imageSize, c.imageSize]);
  const tIn = torch.randn([batch]);
  const y = torch.arange(0, batch, 1).remainder(numClasses);
  torch.noGrad(() => {
    for (const q of model.parameters()) q.grad = torch.zerosLike(q);
  });
  const base = rssMiB();
  const times: number[] = [];
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    const tape = checkpointing ? new torch.CheckpointTape() : null;
    torch.tidy(() => {
      const loss = tape
        ? tape.record(() => model.forward(x, tIn, y).sub(x).square().mean())
        : model.forward(x, tIn, y).sub(x).square().mean();
      if (tape) tape.backward(loss);
      else loss.backward();
      loss.item();
    });
    tape?.dispose();
    times.push((performance.now() - t0) / 1000);
  }
  const peak = process.resourceUsage().maxRSS / 1024;
  const timed = times.slice(1).sort((a, b) => a - b);
  return {
    impl: 'ts',
    checkpointing,
    peakMiB: peak - base,
    stepSeconds: timed[Math.floor(timed.length / 2)] ?? times[0]!,
  };
}

function runChild(impl: 'ts' | 'py', preset: string, batch: number, steps: number, on: boolean): Measure {
  const args =
    impl === 'ts'
      ? [
          fileURLToPath(import.meta.url),
          '--child',
          on ? 'on' : 'off',
          '--preset',
          preset,
          '--batch',
          String(batch),
          '--steps',
          String(steps),
        ]
      : [join(HERE, '..', 'py', 'checkpointing.py'), JSON.stringify({ preset, batch, steps, checkpointing: on })];
  const cfg = epgConfig(getPreset(preset), modelOverrides(preset));
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
  if (v.child !== undefined) {
    console.log(JSON.stringify(measureHere(v.preset, v.batch, v.steps, v.child === 'on')));
    return;
  }
  const flops = 3 * epgForwardFlops(epgConfig(getPreset(v.preset), modelOverrides(v.preset)), v.batch);
  console.log(
    `${v.preset}, batch ${v.batch}, fp32 on the CPU (${torch.getNumThreads()} threads); ` +
      `a plain step is ${(flops / 1e12).toFixed(2)} TFLOP (counted)`,
  );
  const rows: Measure[] = [];
  for (const impl of ['ts', 'py'] as const)
    for (const on of [false, true]) {
      const m = runChild(impl, v.preset, v.batch, v.steps, on);
      rows.push(m);
      console.log(
        `${impl === 'ts' ? 'ours   ' : 'PyTorch'}  checkpointing ${on ? 'on ' : 'off'}  ` +
          `peak ${m.peakMiB.toFixed(0).padStart(6)} MiB above weights+grads   step ${m.stepSeconds.toFixed(3)} s`,
      );
    }
  const get = (impl: 'ts' | 'py', on: boolean): Measure => rows.find((r) => r.impl === impl && r.checkpointing === on)!;
  for (const impl of ['ts', 'py'] as const) {
    const off = get(impl, false);
    const on = get(impl, true);
    console.log(
      `${impl === 'ts' ? 'ours   ' : 'PyTorch'}: checkpointing saves ${(off.peakMiB - on.peakMiB).toFixed(0)} MiB ` +
        `(${((1 - on.peakMiB / off.peakMiB) * 100).toFixed(0)}% of the activations) for ` +
        `${((on.stepSeconds / off.stepSeconds - 1) * 100).toFixed(0)}% more time per step`,
    );
  }
  console.log(
    `ours / PyTorch: time ${(get('ts', true).stepSeconds / get('py', true).stepSeconds).toFixed(2)}× (on), ` +
      `${(get('ts', false).stepSeconds / get('py', false).stepSeconds).toFixed(2)}× (off); ` +
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
