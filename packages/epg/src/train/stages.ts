// The three training stages behind one interface: what the trainer needs to
// run a step, checkpoint, resume and draw samples. Pre-training (spec §4),
// diffusion fine-tuning (spec §5) and consistency fine-tuning (spec §6).
import * as torch from '@epg/torch';
import { nn, optim, type Tensor } from '@epg/torch';

import type { CmPrecond } from '../diffusion/denoiser.js';
import { samplerFunction, type SamplerSettings } from '../diffusion/sampler.js';
import { GUIDANCE_INTERVAL, initialNoise, type ClampRange } from '../diffusion/samplers.js';
import {
  gridOf,
  ictNumScales,
  pretrainNoiseIndex,
  rcTemperature,
  cosineTauMax,
  ectStage,
} from '../diffusion/schedules.js';
import { cmLoss, dmLoss, pretrainLoss, sampleDmSigmas, sampleEctPairs } from '../losses/objectives.js';
import { buildEncoder, buildEPG, getPreset } from '../models/presets.js';
import type { EPGViT, RCMViT } from '../models/vit.js';
import { concreteCmPrecond, type TrainConfig } from './config.js';
import { disposeAll, modelWeights, withPrefix } from '../checkpoint.js';
import { loadInitCheckpoint } from './official-init.js';
import { hashUniform } from './seeds.js';

/** A batch as the data pipeline delivers it, already on the device and normalised. */
export interface StageBatch {
  /** Normalised images [B, C, H, W] (fine-tuning: flipped, labels dropped). */
  x: Tensor;
  labels: Tensor;
  /** Pre-training views (only for the pre-training stage). */
  xAug?: Tensor;
  xAug2?: Tensor;
}

export interface StepOutput {
  /** Scalar loss to backpropagate (mean over the batch). */
  loss: Tensor;
  /** Scalars to log (0-d tensors, read only when logging). */
  metrics: Record<string, Tensor>;
}

export interface TrainingStage {
  readonly name: TrainConfig['stage'];
  /** The trained module (its parameters are optimised). */
  readonly model: nn.Module;
  readonly optimizer: optim.AdamW;
  /** Forward and backward for one batch (inside the trainer's scope). */
  step(batch: StageBatch, step: number): StepOutput;
  /** After the optimizer step: EMA and target updates. */
  afterStep(step: number): void;
  /**
   * Post-hoc EMA's power-function EMAs (cfg.phema.stds; null when off). The
   * trainer updates them after each step, outside a captured CUDA graph: their
   * β changes with the step on the host.
   */
  readonly phema: optim.PowerEMA | null;
  /** Why this stage's step cannot be captured as a CUDA graph, or null when it can. */
  readonly graphRefusal: string | null;
  /**
   * What of `step` the step's kernels depend on through host values: a CUDA
   * graph captured for one key replays for every step with that key.
   */
  graphKey(step: number): string;
  /** All tensors to checkpoint, by prefixed key (new handles). */
  stateTensors(): Map<string, Tensor>;
  /** Restores from checkpoint tensors. */
  loadStateTensors(tensors: Map<string, Tensor>): void;
  /** Draws samples for a grid: normalised images [n, C, H, W]. */
  sample(n: number, generator: torch.Generator): Tensor;
  dispose(): void;
}

export interface StageContext {
  cfg: TrainConfig;
  device: torch.Device;
  imageSize: number;
  inChannels: number;
  clamp: ClampRange;
  log: (line: string) => void;
  /**
   * Data-parallel runs: gathers contrastive targets from all ranks, this rank's
   * block first (spec §4.2); absent on one process.
   */
  gather?: (t: Tensor) => Tensor;
}

/** θ⁻ ← decay·θ⁻ + (1 − decay)·θ over parameters only (spec §4.1 step 8, rcm/utils.py::ema). */
export function lerpParameters(target: nn.Module, source: nn.Module, decay: number): void {
  torch.noGrad(() => {
    const t = target.parameters();
    const s = source.parameters();
    torch.aten._foreach_lerp_$Scalar(t, s, 1 - decay);
  });
}

function adamw(cfg: TrainConfig, model: nn.Module, noDecay: Set<string>): optim.AdamW {
  const o = cfg.optim;
  const decay: Tensor[] = [];
  const plain: Tensor[] = [];
  for (const [name, p] of model.namedParameters()) (o.noDecayTokens && noDecay.has(name) ? plain : decay).push(p);
  const groups = [{ params: decay, weightDecay: o.weightDecay }];
  if (plain.length) groups.push({ params: plain, weightDecay: 0 });
  // Capturable: the lr lives in a device tensor, so a captured step follows the schedule.
  return new optim.AdamW(groups, { lr: o.lr, betas: [o.beta1, o.beta2], capturable: cfg.cudaGraph === 'on' });
}

function modelOptions(ctx: StageContext): {
  imageSize: number;
  inChannels: number;
  numClasses: number;
  device: torch.Device;
} {
  return { imageSize: ctx.imageSize, inChannels: ctx.inChannels, numClasses: ctx.cfg.numClasses, device: ctx.device };
}

/** Pre-training (spec §4.1): online encoder θ, EMA target θ⁻ (contrastive branch only). */
export class PretrainStage implements TrainingStage {
  readonly name = 'pretrain' as const;
  readonly model: RCMViT;
  readonly target: RCMViT;
  readonly optimizer: optim.AdamW;
  readonly phema = null;

  constructor(readonly ctx: StageContext) {
    const { cfg } = ctx;
    this.model = buildEncoder(cfg.preset, modelOptions(ctx));
    this.target = buildEncoder(cfg.preset, modelOptions(ctx));
    torch.tidy(() => {
      this.target.loadStateDict(this.model.stateDict());
    });
    this.target.eval().requiresGrad_(false);
    this.model.activationCheckpointing = cfg.activationCheckpointing === 'on';
    this.optimizer = adamw(cfg, this.model, new Set());
  }

  #curriculumSteps(): number {
    return this.ctx.cfg.pretrain.curriculumSteps || this.ctx.cfg.steps;
  }

  step(batch: StageBatch, step: number): StepOutput {
    const { cfg } = this.ctx;
    const p = cfg.pretrain;
    const N = ictNumScales(step, {
      totalSteps: this.#curriculumSteps(),
      startScales: p.startScales,
      endScales: p.endScales,
    });
    const grid = gridOf(N);
    // One index for the whole (global) batch, from a stream that depends only on (seed, step).
    const n = pretrainNoiseIndex(N, hashUniform(cfg.seed, step));
    const tauMax = cosineTauMax(step, cfg.steps, p.tauMaxStart, p.tauMaxEnd);
    const tauRc = rcTemperature(grid[n]!, { schedule: p.tauSchedule, tauMin: p.tauRc, tauMax });
    const noise = torch.randnLike(batch.x);
    const out = pretrainLoss({
      online: this.model,
      target: this.target,
      x: batch.x,
      xAug: batch.xAug!,
      xAug2: batch.xAug2!,
      noise,
      n,
      grid,
      tauCon: p.tauCon,
      tauRc,
      ...(this.ctx.gather ? { gather: this.ctx.gather } : {}),
    });
    return {
      loss: out.loss.mean(),
      metrics: { l_con: out.lCon.mean(), l_rc: out.lRc.mean(), num_scales: torch.scalarTensor(N) },
    };
  }

  afterStep(): void {
    lerpParameters(this.target, this.model, this.ctx.cfg.pretrain.targetEma);
  }

  readonly graphRefusal = 'the pre-training step chooses its noise level and temperatures on the host every step';

  graphKey(step: number): string {
    return `pretrain step ${step}`;
  }

  stateTensors(): Map<string, Tensor> {
    return new Map([
      ...[...this.model.stateDict()].map(([k, t]) => [`model.${k}`, t] as [string, Tensor]),
      ...[...this.target.stateDict()].map(([k, t]) => [`target.${k}`, t] as [string, Tensor]),
    ]);
  }

  loadStateTensors(tensors: Map<string, Tensor>): void {
    this.model.loadStateDict(withPrefix(tensors, 'model.'));
    this.target.loadStateDict(withPrefix(tensors, 'target.'));
  }

  /** The encoder does not generate; its "samples" are the nearest training images (none here). */
  sample(): Tensor {
    throw new Error('the pre-training stage has no sampler');
  }

  dispose(): void {
    this.model.dispose();
    this.target.dispose();
    this.optimizer.dispose();
  }
}

/**
 * Loads a pre-training checkpoint's online encoder into a fine-tuning model
 * (spec §5.1): the projector is dropped; the decoder, encoder_to_decoder, out
 * and class_embed stay randomly initialised. Returns what was skipped.
 */
export function loadPretrainedEncoder(
  model: EPGViT,
  tensors: Map<string, Tensor>,
): { loaded: number; missing: string[]; dropped: string[] } {
  const enc = withPrefix(tensors, 'model.');
  const source = enc.size > 0 ? enc : tensors;
  const dropped = [...source.keys()].filter((k) => k.startsWith('projection_head.'));
  const kept = new Map([...source].filter(([k]) => !k.startsWith('projection_head.')));
  const r = model.loadStateDict(kept, { strict: false });
  if (r.unexpected.length || r.mismatched.length)
    throw new Error(
      `the pre-trained encoder does not fit this model: unexpected ${r.unexpected.join(', ') || '-'}; ` +
        `shape mismatches ${r.mismatched.map(([k]) => k).join(', ') || '-'} (use the checkpoint's preset and image size)`,
    );
  return { loaded: kept.size, missing: r.missing, dropped };
}

/**
 * What a fine-tuning run starts from: a pre-training checkpoint's encoder (the
 * paper's recipe), or — for consistency tuning — a whole diffusion model (ECT's
 * recipe: its EMA weights when it has them).
 */
export type FinetuneInit =
  { kind: 'encoder'; tensors: Map<string, Tensor> } | { kind: 'diffusion'; tensors: Map<string, Tensor>; path: string };

/** The checkpoint key of the post-hoc EMA's step counter (its shadows are under 'phema.<index>.'). */
const PHEMA_STEP_KEY = 'phema.step';

abstract class FinetuneStage implements TrainingStage {
  abstract readonly name: 'dm' | 'cm';
  readonly model: EPGViT;
  readonly ema: optim.EMA | null;
  readonly phema: optim.PowerEMA | null;
  readonly optimizer: optim.AdamW;
  #sampler: EPGViT | null = null;

  constructor(
    readonly ctx: StageContext,
    init: FinetuneInit | null,
    drop: number,
  ) {
    const { cfg } = ctx;
    this.model = buildEPG(cfg.preset, { ...modelOptions(ctx), drop });
    if (init?.kind === 'diffusion') {
      const { weights, fromEma } = modelWeights(init.tensors);
      this.model.loadStateDict(weights);
      ctx.log(
        `initialised the whole model from the diffusion checkpoint ${init.path} (${fromEma ? 'its EMA weights' : 'its weights'}): consistency tuning as in ECT`,
      );
    } else if (init) {
      const r = loadPretrainedEncoder(this.model, init.tensors);
      ctx.log(
        `initialised the encoder from the pre-training checkpoint: ${r.loaded} tensors loaded, ` +
          `${r.dropped.length} projector tensors dropped, ${r.missing.length} decoder/head tensors left at their initialisation`,
      );
    } else {
      ctx.log('training from scratch (no pre-training checkpoint: finetune.init is empty)');
    }
    this.model.activationCheckpointing = cfg.activationCheckpointing === 'on';
    this.ema = cfg.emaDecay > 0 ? new optim.EMA(this.model, { decay: cfg.emaDecay }) : null;
    this.phema = cfg.phema.stds.length ? new optim.PowerEMA(this.model, { stdRels: cfg.phema.stds }) : null;
    this.optimizer = adamw(cfg, this.model, this.model.noWeightDecay());
  }

  abstract step(batch: StageBatch, step: number): StepOutput;

  abstract readonly graphRefusal: string | null;
  abstract graphKey(step: number): string;

  afterStep(): void {
    this.ema?.update();
  }

  stateTensors(): Map<string, Tensor> {
    const out = new Map<string, Tensor>([...this.model.stateDict()].map(([k, t]) => [`model.${k}`, t]));
    if (this.ema) for (const [k, t] of this.ema.stateDict()) out.set(`ema.${k}`, t);
    if (this.phema) {
      // 'phema.<index of σ_rel>.<name>', and the step counter t as a 0-d int64 tensor.
      const st = this.phema.stateDict();
      for (const [k, t] of st.tensors) out.set(`phema.${k}`, t);
      out.set(PHEMA_STEP_KEY, torch.scalarTensor(st.step, { dtype: 'int64' }));
    }
    return out;
  }

  loadStateTensors(tensors: Map<string, Tensor>): void {
    this.model.loadStateDict(withPrefix(tensors, 'model.'));
    if (this.ema) this.ema.loadStateDict(withPrefix(tensors, 'ema.'));
    if (this.phema) {
      const step = tensors.get(PHEMA_STEP_KEY);
      if (step === undefined) throw new Error(`the checkpoint has no post-hoc EMA state (${PHEMA_STEP_KEY})`);
      this.phema.loadStateDict({
        step: Number(step.item()),
        stdRels: [...this.phema.stdRels],
        tensors: withPrefix(tensors, 'phema.'),
      });
    }
  }

  /** A model holding the EMA weights (or the online ones), in eval mode, for sampling. */
  protected samplingModel(): EPGViT {
    if (this.#sampler === null) {
      this.#sampler = buildEPG(this.ctx.cfg.preset, { ...modelOptions(this.ctx), drop: 0 });
      this.#sampler.eval().requiresGrad_(false);
    }
    const sampler = this.#sampler;
    torch.tidy(() => {
      sampler.loadStateDict(this.ema ? this.ema.shadow : this.model.stateDict());
    });
    return sampler;
  }

  abstract sample(n: number, generator: torch.Generator): Tensor;

  /** n class-balanced samples of the EMA (else online) weights through the shared sampler builder. */
  protected drawSamples(
    n: number,
    generator: torch.Generator,
    s: Pick<SamplerSettings, 'sampler' | 'steps' | 'cfgScale' | 'guidanceInterval' | 'cmPrecond'>,
  ): Tensor {
    const sample = samplerFunction(this.samplingModel(), { ...s, appendZero: false, clamp: this.ctx.clamp, generator });
    return torch.inferenceMode(() =>
      torch.tidy(() => {
        const labels = this.labelsFor(n);
        const { inChannels: C, imageSize: H, device } = this.ctx;
        return sample(initialNoise([n, C, H, H], { generator, device }), labels);
      }),
    );
  }

  protected labelsFor(n: number): Tensor {
    return torch.arange(0, n, 1, { device: this.ctx.device }).remainder(this.ctx.cfg.numClasses);
  }

  dispose(): void {
    this.model.dispose();
    this.ema?.dispose();
    this.phema?.dispose();
    this.#sampler?.dispose();
    this.optimizer.dispose();
  }
}

/** Diffusion fine-tuning (spec §5). */
export class DmStage extends FinetuneStage {
  readonly name = 'dm' as const;
  /** The σ grid of spec §5.2, on the device (float64). */
  readonly #grid: Tensor;

  constructor(ctx: StageContext, init: Map<string, Tensor> | null) {
    super(ctx, init ? { kind: 'encoder', tensors: init } : null, ctx.cfg.finetune.drop);
    this.#grid = torch.tidy(() =>
      torch.keep(torch.tensor(gridOf(ctx.cfg.finetune.dmGridSize), { dtype: 'float64' }).to({ device: ctx.device })),
    );
  }

  readonly graphRefusal = null;

  /** Every diffusion step draws its noise on the device: one graph serves all steps. */
  graphKey(): string {
    return 'dm';
  }

  override dispose(): void {
    super.dispose();
    this.#grid.dispose();
  }

  step(batch: StageBatch): StepOutput {
    const f = this.ctx.cfg.finetune;
    const B = batch.x.shape[0]!;
    const { sigma, weight } = sampleDmSigmas(B, this.#grid, {
      pMean: f.dmPMean,
      pStd: f.dmPStd,
      device: this.ctx.device,
    });
    const noise = torch.randnLike(batch.x);
    const loss = dmLoss({ net: this.model, x0: batch.x, y: batch.labels, sigma, weight, noise });
    return { loss: loss.mean(), metrics: { sigma_mean: sigma.mean().float() } };
  }

  /** Heun with CFG over the guidance interval, clamped to the data range (spec §7). */
  sample(n: number, generator: torch.Generator, steps = this.ctx.cfg.sampleSteps): Tensor {
    const f = this.ctx.cfg.finetune;
    return this.drawSamples(n, generator, {
      sampler: 'heun',
      steps,
      cfgScale: f.cfgScale,
      guidanceInterval: [f.guidanceLow, f.guidanceHigh],
    });
  }
}

/** Consistency fine-tuning (spec §6). */
export class CmStage extends FinetuneStage {
  readonly name = 'cm' as const;
  readonly perceptual: RCMViT | null;
  /** How f reads the network: finetune.cmPrecond, with 'auto' resolved by the init (config.ts concreteCmPrecond). */
  readonly precond: CmPrecond;

  constructor(ctx: StageContext, init: FinetuneInit | null, perceptual: Map<string, Tensor> | null) {
    super(ctx, init, ctx.cfg.finetune.drop);
    this.precond = concreteCmPrecond(ctx.cfg.finetune.cmPrecond, init?.kind === 'diffusion');
    if (perceptual) {
      this.perceptual = buildEncoder(ctx.cfg.preset, modelOptions(ctx));
      const sd = withPrefix(perceptual, 'model.');
      this.perceptual.loadStateDict(sd.size ? sd : perceptual);
      this.perceptual.eval().requiresGrad_(false);
    } else {
      this.perceptual = null;
      ctx.log('consistency tuning without the auxiliary representation loss (no perceptual encoder)');
    }
  }

  /**
   * With decoder dropout the two passes must see the same masks (spec §6.2
   * step 3): the generator's state is saved and restored between them, on the
   * host. Without dropout no pass draws random numbers and that is skipped.
   */
  get graphRefusal(): string | null {
    return this.ctx.cfg.finetune.drop > 0
      ? 'with decoder dropout (finetune.drop > 0) the consistency step restores the generator state between its two passes, on the host'
      : null;
  }

  /** The ECT stage of `step` (spec §6.1). */
  #ectStage(step: number): number {
    const f = this.ctx.cfg.finetune;
    return ectStage(step, { q: f.cmQ, k: f.cmK, b: f.cmB, stageSteps: f.cmStageSteps });
  }

  /** The ECT stage fixes the (t, r) rule: one graph per stage. */
  graphKey(step: number): string {
    return `cm stage ${this.#ectStage(step)}`;
  }

  step(batch: StageBatch, step: number): StepOutput {
    const f = this.ctx.cfg.finetune;
    const B = batch.x.shape[0]!;
    const stage = this.#ectStage(step);
    const { t, r } = sampleEctPairs(B, stage, {
      pMean: f.cmPMean,
      pStd: f.cmPStd,
      q: f.cmQ,
      k: f.cmK,
      b: f.cmB,
      device: this.ctx.device,
    });
    const noise = torch.randnLike(batch.x);
    const out = cmLoss({
      net: this.model,
      x0: batch.x,
      y: batch.labels,
      t,
      r,
      noise,
      c: f.cmC,
      precond: this.precond,
      perceptual: this.perceptual,
      tauAux: f.tauAux,
      // Same dropout masks in both passes; without dropout there is nothing to repeat.
      ...(f.drop > 0 ? { rng: torch.Generator.default(this.ctx.device) } : {}),
      ...(this.ctx.gather ? { gather: this.ctx.gather } : {}),
    });
    const metrics: Record<string, Tensor> = {
      l_cm: out.lCm.mean(),
      stage: torch.scalarTensor(stage, { device: this.ctx.device }),
    };
    if (out.lAux) metrics.l_aux = out.lAux.mean();
    return { loss: out.loss.mean(), metrics };
  }

  /** One-step sampling f(x_T, σ_max'), or two steps with an intermediate σ (spec §7). */
  sample(n: number, generator: torch.Generator, steps = 1): Tensor {
    return this.drawSamples(n, generator, {
      sampler: steps <= 1 ? 'onestep' : 'multistep',
      steps,
      cmPrecond: this.precond,
      cfgScale: 1,
      guidanceInterval: GUIDANCE_INTERVAL,
    });
  }

  override dispose(): void {
    super.dispose();
    this.perceptual?.dispose();
  }
}

/**
 * The stage a config trains, built on the context's device: fine-tuning loads
 * finetune.init (and the perceptual encoder of L_aux) and checks what they are.
 */
export function createStage(cfg: TrainConfig, ctx: StageContext): TrainingStage {
  if (cfg.stage === 'pretrain') return new PretrainStage(ctx);
  const f = cfg.finetune;
  // A pre-training checkpoint has no 'ema.' tensors; a diffusion one's are its best weights.
  const init = f.init ? loadInitCheckpoint(f.init, ctx.device, ['ema.', 'model.'], cfg) : null;
  // Consistency tuning may also start from a whole diffusion model (ECT's recipe).
  const fromDiffusion = cfg.stage === 'cm' && init?.meta.stage === 'dm';
  try {
    if (init && init.meta.stage !== 'pretrain' && !fromDiffusion)
      throw new Error(
        `finetune.init must be a pre-training checkpoint${cfg.stage === 'cm' ? ' (or, for consistency tuning, a diffusion one)' : ''}; ` +
          `${init.path} is a '${init.meta.stage}' checkpoint`,
      );
    if (init && init.meta.preset !== cfg.preset)
      throw new Error(
        `finetune.init ${init.path} was trained with preset ${init.meta.preset}, this run uses ${cfg.preset}`,
      );
    if (cfg.stage === 'dm') return new DmStage(ctx, init?.tensors ?? null);
    // The perceptual encoder of L_aux is a pre-training checkpoint: finetune.perceptual, else the init when it is one.
    const percSource = f.perceptual === 'none' ? null : f.perceptual || (fromDiffusion ? null : f.init);
    const perc = percSource
      ? percSource === f.init
        ? init
        : loadInitCheckpoint(percSource, ctx.device, ['model.'], cfg)
      : null;
    try {
      if (perc && perc.meta.stage !== 'pretrain')
        throw new Error(
          `finetune.perceptual must be a pre-training checkpoint; ${perc.path} is a '${perc.meta.stage}' checkpoint`,
        );
      const start: FinetuneInit | null = init
        ? fromDiffusion
          ? { kind: 'diffusion', tensors: init.tensors, path: init.path }
          : { kind: 'encoder', tensors: init.tensors }
        : null;
      return new CmStage(ctx, start, perc?.tensors ?? null);
    } finally {
      if (perc && perc !== init) disposeAll(perc.tensors.values());
    }
  } finally {
    if (init) disposeAll(init.tensors.values());
  }
}

export function describePreset(name: string): string {
  return getPreset(name).description;
}
