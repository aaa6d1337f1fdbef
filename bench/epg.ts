// Benchmark 5: EPG itself. One diffusion fine-tuning step (spec §5: σ draw,
// noising, the x₀-prediction loss, backward, fused AdamW, EMA) of a preset
// model, and sampling (Heun with classifier-free guidance; one consistency
// step). Twin: bench/py/epg.py, over the independent PyTorch implementation of
// the tests (packages/epg/test/ref/epg_ref.py), with torch.optim.AdamW(fused).
//
// CPU default: EPG-T/4 (28 px, gray) at batch 64, float32. CUDA default:
// EPG-XL/16 (256 px) at batch 32 under bf16 autocast; the Python side adds
// torch.compile'd variants of the step as reference points.
import * as torch from '@epg/torch';
import { optim } from '@epg/torch';
import {
  buildEPG,
  consistencyFunction,
  denoiseX0,
  dmLoss,
  edm,
  epgConfig,
  getPreset,
  guidedDenoiser,
  initialNoise,
  sampleDmSigmas,
  sampleHeun,
  sampleOneStep,
  schedules,
  type EPGConfig,
} from 'epg';

import type { BenchConfig, Benchmark, RunOptions, Setup } from './harness.js';

/** Multiply-add FLOPs (×2) of the matrix products in one forward pass of an EPG model. */
export function epgForwardFlops(c: EPGConfig, batch: number): number {
  const g = c.imageSize / c.patchSize;
  const T = g * g + 2; // image tokens + time and class tokens
  const D = c.embedDim;
  const Dd = c.decoderEmbedDim;
  const pix = c.patchSize * c.patchSize * c.inChannels;
  const encBlock = 2 * T * 12 * D * D + 4 * T * T * D;
  const decBlock = 2 * T * (12 * Dd * Dd + (D + Dd) * Dd) + 4 * T * T * Dd + 2 * 6 * Dd * D;
  const perSample =
    2 * T * pix * D +
    c.depth * encBlock +
    (D !== Dd ? 2 * T * D * Dd : 0) +
    c.decoderDepth * decBlock +
    2 * T * Dd * pix;
  return batch * perSample;
}

export const epgBench: Benchmark = {
  name: 'epg',
  title: 'EPG: a diffusion fine-tuning step and sampling',
  pyScript: 'epg.py',
  repeats: 5,
  config(o: RunOptions): BenchConfig {
    const cuda = o.device === 'cuda';
    const preset = process.env.EPG_BENCH_PRESET ?? (cuda ? 'EPG-XL/16' : 'EPG-T/4');
    const p = getPreset(preset);
    const model = epgConfig(p, { numClasses: preset.includes('T/4') ? 10 : 1000 });
    return {
      device: o.device,
      dtype: o.dtype ?? 'float32',
      threads: 1,
      quick: o.quick,
      preset,
      model,
      batch: o.size ?? (o.quick ? 8 : cuda ? 32 : 64),
      amp: cuda ? 'bfloat16' : 'none',
      lr: 1e-4,
      emaDecay: 0.9999,
      sampleBatch: o.quick ? 4 : cuda ? 64 : 16,
      heunSteps: o.quick ? 2 : cuda ? 32 : 4,
      cfgScale: 1.5,
    };
  },
  setup(c: BenchConfig): Setup {
    const cfg = c as BenchConfig & {
      model: EPGConfig;
      batch: number;
      amp: 'none' | 'bfloat16';
      lr: number;
      emaDecay: number;
      sampleBatch: number;
      heunSteps: number;
      cfgScale: number;
    };
    const m = cfg.model;
    const device = c.device as torch.Device;
    torch.manualSeed(0);
    const model = buildEPG(cfg.preset as string, { numClasses: m.numClasses, device });
    const opt = new optim.AdamW(model.parameters(), { lr: cfg.lr, weightDecay: 0.01 });
    const ema = new optim.EMA(model, { decay: cfg.emaDecay });
    const x0 = torch.keep(torch.randn([cfg.batch, m.inChannels, m.imageSize, m.imageSize], { device }).clamp(-1, 1));
    const labels = torch.keep(torch.randint(0, m.numClasses, [cfg.batch], { device }));
    // The σ grid on the device, as the trainer keeps it (no host copy per step).
    const grid = torch.tidy(() => torch.keep(torch.tensor(schedules.gridOf(256), { dtype: 'float64' }).to({ device })));
    const autocast = (): Disposable | null =>
      cfg.amp === 'bfloat16' ? torch.autocastGuard('cuda', { dtype: 'bfloat16' }) : null;

    // One DM step with a given optimizer; returns the loss (a 0-d device tensor).
    const dmStep = (o: optim.AdamW, x: torch.Tensor, y: torch.Tensor): torch.Tensor => {
      const { sigma, weight } = sampleDmSigmas(cfg.batch, grid, { pMean: -1.2, pStd: 1.2, device });
      const noise = torch.randnLike(x);
      const guard = autocast();
      let loss;
      try {
        loss = dmLoss({ net: model, x0: x, y, sigma, weight, noise }).mean();
      } finally {
        guard?.[Symbol.dispose]();
      }
      loss.backward();
      o.step();
      o.zeroGrad();
      ema.update();
      return loss.detach();
    };
    const step = (): void =>
      torch.tidy(() => {
        dmStep(opt, x0, labels);
      });

    model.eval();
    const sampleLabels = torch.keep(torch.randint(0, m.numClasses, [cfg.sampleBatch], { device }));
    const withAmp =
      (fn: typeof denoiseX0) =>
      (x: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor): torch.Tensor => {
        const guard = autocast();
        try {
          return fn(model, x, sigma, y).float();
        } finally {
          guard?.[Symbol.dispose]();
        }
      };
    const guided = (fn: typeof denoiseX0, cfgScale: number, labels: torch.Tensor) =>
      guidedDenoiser(withAmp(fn), { labels, nullClass: m.numClasses, imageSize: m.imageSize, cfgScale });
    const xTNoise = (): torch.Tensor =>
      initialNoise([cfg.sampleBatch, m.inChannels, m.imageSize, m.imageSize], { device });
    const heunSamples = (y: torch.Tensor): torch.Tensor =>
      sampleHeun(guided(denoiseX0, cfg.cfgScale, y), xTNoise(), edm.samplingSigmas(cfg.heunSteps, m.imageSize)).samples;
    const oneStepSamples = (y: torch.Tensor): torch.Tensor =>
      sampleOneStep(guided(consistencyFunction, 1, y), xTNoise()).samples;
    const inference = (fn: () => unknown): void => {
      model.eval();
      torch.inferenceMode(() =>
        torch.tidy(() => {
          fn();
        }),
      );
      model.train();
    };

    // The same work as CUDA graphs; the Python twin captures its own with
    // torch.cuda.graph. The graphed step needs the lr in a tensor (capturable
    // AdamW, with its own moments).
    const cuda = c.device === 'cuda';
    const gOpt = cuda ? new optim.AdamW(model.parameters(), { lr: cfg.lr, weightDecay: 0.01, capturable: true }) : null;
    const graphedStep = new torch.cuda.GraphedFunction(([x, y]) => [dmStep(gOpt!, x!, y!)], {
      name: 'the DM step',
      warmup: 3,
    });
    const heunGraph = new torch.cuda.GraphedFunction(([y]) => [heunSamples(y!)], { name: 'Heun', warmup: 1 });
    const oneStepGraph = new torch.cuda.GraphedFunction(([y]) => [oneStepSamples(y!)], { name: 'one step', warmup: 1 });

    model.train();
    const fwd = epgForwardFlops(m, 1);
    return {
      cases: [
        {
          name: 'dm_step',
          label: `${String(cfg.preset)} DM step, batch ${cfg.batch}${cfg.amp === 'none' ? '' : ', bf16 autocast'}`,
          fn: step,
          warmup: cuda ? 5 : 2,
          inner: cuda ? 10 : 1,
          flops: 3 * fwd * cfg.batch,
          images: cfg.batch,
        },
        {
          name: 'sample_heun_cfg',
          label: `Heun ${cfg.heunSteps} steps with CFG ${cfg.cfgScale}, ${cfg.sampleBatch} images`,
          fn: () => inference(() => heunSamples(sampleLabels)),
          warmup: 1,
          inner: 1,
          // 2 evaluations per Heun step (heunSteps − 1 steps), each on the conditional and unconditional batch.
          flops: 2 * (cfg.heunSteps - 1) * 2 * fwd * cfg.sampleBatch,
          images: cfg.sampleBatch,
        },
        {
          name: 'sample_onestep',
          label: `one consistency step, ${cfg.sampleBatch} images`,
          fn: () => inference(() => oneStepSamples(sampleLabels)),
          warmup: 2,
          inner: cuda ? 10 : 1,
          flops: fwd * cfg.sampleBatch,
          images: cfg.sampleBatch,
        },
        ...(cuda
          ? [
              {
                name: 'dm_step_graph',
                label: `the DM step as a CUDA graph (capturable AdamW)`,
                fn: () => torch.tidy(() => void graphedStep.call([x0, labels])),
                warmup: 5,
                inner: 10,
                flops: 3 * fwd * cfg.batch,
                images: cfg.batch,
              },
              {
                name: 'sample_heun_cfg_graph',
                label: `Heun ${cfg.heunSteps} steps with CFG as one CUDA graph`,
                fn: () => inference(() => heunGraph.call([sampleLabels])),
                warmup: 2,
                inner: 1,
                flops: 2 * (cfg.heunSteps - 1) * 2 * fwd * cfg.sampleBatch,
                images: cfg.sampleBatch,
              },
              {
                name: 'sample_onestep_graph',
                label: `one consistency step as a CUDA graph`,
                fn: () => inference(() => oneStepGraph.call([sampleLabels])),
                warmup: 2,
                inner: 10,
                flops: fwd * cfg.sampleBatch,
                images: cfg.sampleBatch,
              },
            ]
          : []),
      ],
      dispose: () => {
        for (const g of [graphedStep, heunGraph, oneStepGraph]) g.dispose();
        gOpt?.dispose();
        grid.dispose();
        opt.dispose();
        ema.dispose();
        model.dispose();
        for (const t of [x0, labels, sampleLabels]) t.dispose();
      },
    };
  },
};
