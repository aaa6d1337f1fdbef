// Benchmark 6: the input pipeline. Images/s for JPEG decoding (CIFAR-10 from
// the shared zip, read in place) and for decoding plus the pre-training
// augmentations (spec §1: two augmented views and the clean flipped view),
// against torchvision's DataLoader doing the same work (bench/py/data.py:
// PIL decoding and per-sample transforms.v2 in worker processes, the official
// code's pipeline). Ours decodes in worker threads and augments whole batches
// with tensor ops on the device.
//
//   node bench/dist/data.js [--workers N] [--batch N] [--batches N] [--rounds N]   (--help)
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';
import { data, train } from 'epg';

import { median } from './harness.js';

const here = dirname(fileURLToPath(import.meta.url));

const COMMAND = torch.cli.defineCommand({
  name: 'node bench/dist/data.js',
  summary: "images/s of our input pipeline (decode; decode + pre-training views) against torchvision's DataLoader",
  flags: {
    workers: { type: 'integer', default: 2, help: 'decoding workers on both sides (0: in the main thread)' },
    batch: { type: 'integer', default: 256, help: 'images per batch' },
    batches: { type: 'integer', default: 20, help: 'timed batches per round (after 2 warm-up batches)' },
    rounds: { type: 'integer', default: 3, help: 'rounds of Node then Python; the median is reported' },
  },
  notes: 'Python: $EPG_BENCH_PYTHON (default python3) runs bench/py/data.py. BENCHMARKS.md has the numbers.',
});

type Options = torch.cli.FlagValues<typeof COMMAND.flags>;

/** Parses the command line; undefined after printing --help. Bad values are UsageErrors naming the flag. */
function parseOptions(argv: string[]): Options | undefined {
  const { values, help } = torch.cli.parseCommand(COMMAND, argv);
  if (help) {
    console.log(torch.cli.formatHelp(COMMAND));
    return undefined;
  }
  if (values.workers < 0) throw new torch.cli.UsageError(`--workers must be 0 or more, got ${values.workers}`);
  for (const flag of ['batch', 'batches', 'rounds'] as const)
    if (values[flag] < 1) throw new torch.cli.UsageError(`--${flag} must be a positive integer, got ${values[flag]}`);
  return values;
}

/** Images/s over `batches` batches after two warm-up batches. */
async function nodeRate(o: Options, augment: boolean): Promise<number> {
  const ds = data.ImageFolder.open({ root: train.cifar10Path(), subdir: 'train' });
  const loader = new data.Loader(ds, { batchSize: o.batch, seed: 0, numWorkers: o.workers });
  const generator = new torch.Generator('cpu', 0);
  try {
    let t0 = 0;
    for (let i = 0; i < o.batches + 2; i++) {
      if (i === 2) t0 = performance.now();
      const b = await loader.next();
      if (augment) torch.tidy(() => data.pretrainViews(b.images, { generator, norm: 'imagenet' }));
      b.images.dispose();
      b.labels.dispose();
    }
    return (o.batches * o.batch * 1000) / (performance.now() - t0);
  } finally {
    await loader.close();
    generator.dispose();
  }
}

function pythonRate(o: Options, augment: boolean): number {
  const r = spawnSync(
    process.env.EPG_BENCH_PYTHON ?? 'python3',
    [
      join(here, '..', 'py', 'data.py'),
      train.cifar10Path(),
      String(o.workers),
      String(o.batch),
      String(o.batches),
      augment ? '1' : '0',
    ],
    { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } },
  );
  if (r.status !== 0) throw new Error(`bench/py/data.py failed:\n${r.stderr}`);
  return (JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { imagesPerSecond: number }).imagesPerSecond;
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  if (o === undefined) return;
  torch.setNumThreads(1);
  console.log(
    `# input pipeline: CIFAR-10 JPEG zip, batch ${o.batch}, ${o.workers} workers, ${o.batches} batches × ${o.rounds} rounds (Node and Python alternate)`,
  );
  console.log('| work | Node images/s | torchvision DataLoader images/s | Node/Python |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const augment of [false, true]) {
    const node: number[] = [];
    const py: number[] = [];
    for (let r = 0; r < o.rounds; r++) {
      node.push(await nodeRate(o, augment));
      py.push(pythonRate(o, augment));
    }
    const [n, p] = [median(node), median(py)];
    const what = augment ? 'decode + pre-training views (2 augmented + clean)' : 'decode to uint8 batches';
    console.log(`| ${what} | ${n.toFixed(0)} | ${p.toFixed(0)} | **${(n / p).toFixed(2)}** |`);
  }
}

try {
  await main();
} catch (e) {
  if (!(e instanceof torch.cli.UsageError)) throw e;
  console.error(`data.js: ${e.message}\n\n${torch.cli.formatHelp(COMMAND)}`);
  process.exitCode = 2;
}
