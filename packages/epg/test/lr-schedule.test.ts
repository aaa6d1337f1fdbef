// The trainer's learning-rate factors against PyTorch's LambdaLR driving the
// official schedule functions (test/ref/lr_ref.py): update k gets fn(k), so the
// first warm-up update has factor 0 and each milestone of the consistency
// schedule's steps takes effect one update after it. Small schedules are compared
// update by update; the paper's configs at their first updates and every boundary.
import { test } from 'node:test';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { testing } from '@epg/torch';

import { loadConfig, type TrainConfig } from '../src/train/config.js';
import { lrFactor } from '../src/train/trainer.js';

const here = dirname(fileURLToPath(import.meta.url));
const SCRIPT = join(here, '..', '..', 'test', 'ref', 'lr_ref.py');

interface Case {
  what: string;
  cfg: TrainConfig;
  updates: number;
  jumps: number[];
}

function small(schedule: 'cosine' | 'piecewise' | 'constant'): TrainConfig {
  const c = loadConfig('fashion-mnist-cm');
  return {
    ...c,
    steps: 30,
    optim: { ...c.optim, warmupSteps: 5, schedule, lrMilestones: [12, 20], lrFactors: [0.3, 0.08] },
  };
}

const around = (...ks: number[]): number[] => ks.flatMap((k) => [k - 2, k - 1, k, k + 1, k + 2]).filter((k) => k >= 0);

const cases: Case[] = [
  { what: 'warm-up cosine, 5 + 25 updates', cfg: small('cosine'), updates: 30, jumps: [] },
  { what: 'warm-up then steps at 12 and 20', cfg: small('piecewise'), updates: 30, jumps: [] },
  { what: 'warm-up then constant', cfg: small('constant'), updates: 10, jumps: [] },
  {
    what: 'imagenet256-pretrain',
    cfg: loadConfig('imagenet256-pretrain'),
    updates: 3,
    jumps: around(10000, 305000, 600000),
  },
  { what: 'imagenet256-dm', cfg: loadConfig('imagenet256-dm'), updates: 3, jumps: around(5000, 10000, 505000) },
  { what: 'imagenet256-cm', cfg: loadConfig('imagenet256-cm'), updates: 3, jumps: around(10000, 400000, 500000) },
];

const official = (cfg: TrainConfig): string =>
  cfg.optim.schedule === 'cosine' ? 'warmup-cosine' : cfg.optim.schedule === 'piecewise' ? 'warmup-step' : 'warmup';

const refs = testing.runPython(
  SCRIPT,
  cases.map((c) => ({
    name: official(c.cfg),
    warmup: c.cfg.optim.warmupSteps,
    total: c.cfg.steps,
    milestones: c.cfg.optim.lrMilestones,
    factors: c.cfg.optim.lrFactors,
    updates: c.updates,
    jumps: c.jumps,
  })),
) as { seq: number[]; jumps: number[] }[];

cases.forEach((c, i) =>
  test(`lrFactor equals LambdaLR(fn): ${c.what}`, () => {
    const seq = Array.from({ length: c.updates }, (_, k) => lrFactor(c.cfg, k));
    testing.assertClose(seq, refs[i]!.seq, 1e-15, 1e-15, `updates 0…${c.updates - 1}`);
    const jumps = c.jumps.map((k) => lrFactor(c.cfg, k));
    testing.assertClose(jumps, refs[i]!.jumps, 1e-15, 1e-15, `updates ${c.jumps.join(', ')}`);
  }),
);
