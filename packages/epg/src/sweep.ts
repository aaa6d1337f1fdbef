// `epg sweep`: sample and evaluate one checkpoint over a grid of sampling
// settings (CFG scale, guidance interval, sampler steps, EMA or online weights)
// in one command, against one reference whose statistics are computed once and
// cached. FIDs that "differ from the paper until you sweep the CFG and the EMA"
// are then one command away. Resumable: settings already in sweep.json are kept.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import * as torch from '@epg/torch';

import type { ImageSource } from './eval/index.js';
import { runEval } from './eval/index.js';
import { writeLineChart, type LineSeries } from './plot.js';
import { EVERY_SIGMA, GUIDANCE_INTERVAL } from './diffusion/samplers.js';
import { sampleFromCheckpoint, type SamplerName } from './sample.js';

export type SweepWeights = 'ema' | 'online';

/** One point of the grid. `interval` null: guidance at every noise level. */
export interface SweepSetting {
  cfg: number;
  interval: readonly [number, number] | null;
  steps: number;
  weights: SweepWeights;
}

export interface SweepRow extends SweepSetting {
  name: string;
  nfe: number;
  fid: number;
  precision: number | null;
  recall: number | null;
  label: string;
  sampleSeconds: number;
  evalSeconds: number;
}

export interface SweepOptions {
  checkpoint: string;
  out: string;
  num: number;
  /** The reference: a built-in dataset's split, or any image source, with the name its statistics are cached under. */
  reference: { source: ImageSource; name: string; numImages?: number };
  sampler?: SamplerName;
  cfg?: number[];
  intervals?: (readonly [number, number] | null)[];
  steps?: number[];
  weights?: SweepWeights[];
  seed?: number;
  batchSize?: number;
  device?: torch.Device;
  log?: (line: string) => void;
}

/** Every combination, in a stable order (weights, steps, interval, cfg). */
export function sweepGrid(o: Pick<SweepOptions, 'cfg' | 'intervals' | 'steps' | 'weights'>): SweepSetting[] {
  const grid: SweepSetting[] = [];
  for (const weights of o.weights ?? ['ema'])
    for (const steps of o.steps ?? [32])
      for (const interval of o.intervals ?? [GUIDANCE_INTERVAL])
        for (const cfg of o.cfg ?? [1]) grid.push({ cfg, interval, steps, weights });
  for (const s of grid) {
    if (!(s.cfg >= 0) || !Number.isFinite(s.cfg)) throw new Error(`sweep: CFG scale ${s.cfg} is not a number ≥ 0`);
    if (!Number.isInteger(s.steps) || s.steps < 1) throw new Error(`sweep: steps ${s.steps} is not a positive integer`);
    if (s.interval && !(s.interval[0] < s.interval[1]))
      throw new Error(`sweep: guidance interval ${s.interval.join(',')} is not LO,HI with LO < HI`);
  }
  return grid;
}

/** A folder name for a setting: cfg1.5-int0.19-1.61-steps32-ema. */
export function settingName(s: SweepSetting): string {
  return `cfg${s.cfg}-${s.interval ? `int${s.interval[0]}-${s.interval[1]}` : 'intall'}-steps${s.steps}-${s.weights}`;
}

export async function runSweep(o: SweepOptions): Promise<{ rows: SweepRow[]; table: string; plot: string }> {
  const log = o.log ?? (() => undefined);
  if (!Number.isInteger(o.num) || o.num < 2) throw new Error(`sweep: --num must be an integer ≥ 2, got ${o.num}`);
  const grid = sweepGrid(o);
  mkdirSync(o.out, { recursive: true });
  const statePath = join(o.out, 'sweep.json');
  let rows: SweepRow[] = [];
  if (existsSync(statePath)) {
    try {
      rows = (JSON.parse(readFileSync(statePath, 'utf8')) as { rows: SweepRow[] }).rows;
    } catch (e) {
      throw new Error(`${statePath} is corrupt (${(e as Error).message}); move it away to start over`);
    }
  }
  const save = (): void =>
    torch.io.writeFileAtomic(statePath, JSON.stringify({ checkpoint: o.checkpoint, rows }, null, 2) + '\n');
  for (const [i, s] of grid.entries()) {
    const name = settingName(s);
    if (rows.some((r) => r.name === name)) continue;
    log(`[${i + 1}/${grid.length}] ${name}`);
    const sampled = sampleFromCheckpoint({
      checkpoint: o.checkpoint,
      out: join(o.out, name),
      num: o.num,
      ...(o.sampler ? { sampler: o.sampler } : {}),
      steps: s.steps,
      cfgScale: s.cfg,
      guidanceInterval: s.interval ?? EVERY_SIGMA,
      noEma: s.weights === 'online',
      labels: 'balanced',
      seed: o.seed ?? 0,
      writePngs: false,
      ...(o.batchSize ? { batchSize: o.batchSize } : {}),
      ...(o.device ? { device: o.device } : {}),
    });
    const r = await runEval({
      samples: sampled.npz,
      refDataset: o.reference,
      ...(o.device ? { device: o.device } : {}),
    });
    rows.push({
      ...s,
      name,
      nfe: sampled.nfePerImage,
      fid: r.fid,
      precision: r.precision,
      recall: r.recall,
      label: r.label,
      sampleSeconds: sampled.seconds,
      evalSeconds: r.seconds,
    });
    save();
    log(`  ${r.label} ${r.fid.toFixed(2)}, ${sampled.nfePerImage} NFE, ${sampled.seconds.toFixed(1)} s sampling`);
  }
  save();
  const inGrid = rows.filter((r) => grid.some((s) => settingName(s) === r.name));
  const table = join(o.out, 'sweep.md');
  const plot = join(o.out, 'sweep.png');
  writeSweepTable(table, o, inGrid);
  await writeSweepPlot(plot, inGrid);
  return { rows: inGrid, table, plot };
}

function writeSweepTable(path: string, o: SweepOptions, rows: SweepRow[]): void {
  const best = Math.min(...rows.map((r) => r.fid));
  const f2 = (x: number | null): string => (x === null ? '—' : x.toFixed(2));
  const label = rows[0]?.label ?? `FID-${o.num} proxy`;
  const lines = [
    `# Sampling sweep: ${o.checkpoint}`,
    '',
    `${o.num} class-balanced samples per setting (seed ${o.seed ?? 0}), ${label} against ${o.reference.name}; best in bold.`,
    '',
    `| CFG | guidance interval | steps | weights | NFE | ${label} | precision | recall | sampling | evaluation |`,
    '|---:|---|---:|---|---:|---:|---:|---:|---:|---:|',
    ...[...rows]
      .sort((a, b) => a.fid - b.fid)
      .map(
        (r) =>
          `| ${r.cfg} | ${r.interval ? r.interval.join('–') : 'all σ'} | ${r.steps} | ${r.weights} | ${r.nfe} | ` +
          `${r.fid === best ? `**${r.fid.toFixed(2)}**` : r.fid.toFixed(2)} | ${f2(r.precision)} | ${f2(r.recall)} | ` +
          `${r.sampleSeconds.toFixed(1)} s | ${r.evalSeconds.toFixed(1)} s |`,
      ),
    '',
    '![FID against the CFG scale](sweep.png)',
  ];
  torch.io.writeFileAtomic(path, lines.join('\n') + '\n');
}

async function writeSweepPlot(path: string, rows: SweepRow[]): Promise<void> {
  // One line per (steps, interval, weights) over the CFG scales.
  const groups = new Map<string, SweepRow[]>();
  for (const r of rows) {
    const key = `${r.steps} steps, ${r.interval ? `interval ${r.interval.join('–')}` : 'all σ'}, ${r.weights}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const series: LineSeries[] = [...groups].map(([name, rs]) => ({
    name,
    points: rs.sort((a, b) => a.cfg - b.cfg).map((r) => [r.cfg, r.fid] as const),
  }));
  await writeLineChart(path, {
    title: 'FID against the guidance scale',
    x: { title: 'CFG scale', scale: 'linear' },
    y: { title: rows[0]?.label ?? 'FID', scale: 'linear' },
    series,
    points: true,
  });
}
