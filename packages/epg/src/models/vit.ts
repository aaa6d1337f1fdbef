// The EPG networks (spec §3): the pre-training encoder RCMViT and the
// fine-tuning model EPGViT (encoder + decoder with long skips and adaLN-Zero).
// Module and parameter names are the official ones (rcm/vit.py), so official
// state dicts load one to one (see checkpoints.ts for the older release's names).
import * as torch from '@epg/torch';
import { nn, type Device, type DType, type Tensor } from '@epg/torch';

const { init } = nn;

export interface FactoryOptions {
  device?: Device;
  dtype?: DType;
}

/** The dtype the time embedding is computed in: float64 in a float64 model, float32 otherwise (as the official code). */
export type TimeEmbeddingDType = 'float32' | 'float64';

/**
 * The sinusoidal frequencies of spec §2, on the CPU, in the official order:
 * exp(−ln(maxPeriod)·arange(half) / half) — the product first, then the division,
 * each rounded in `dtype`. exp(arange·(−ln(maxPeriod)/half)) rounds differently
 * whenever half is not a power of two (widths 384, 768, 1280, 1584), by up to
 * 1.2e-4 in the embedding at σ = 80; official checkpoints need the official order.
 */
export function timestepFrequencies(dim: number, dtype: TimeEmbeddingDType = 'float32', maxPeriod = 10000): Tensor {
  const half = Math.floor(dim / 2);
  return torch.tidy(() => torch.arange(0, half, 1, { dtype }).mul(-Math.log(maxPeriod)).div(half).exp());
}

/**
 * Sinusoidal embedding of the time input (spec §2, timestep_embedding):
 * half = dim/2, freqs = exp(−ln(10000)·i/half), embedding [cos(t·f), sin(t·f)]
 * (cos first), zero-padded when dim is odd. t: [B] → [B, dim] in `o.dtype`
 * (float32 by default, as the official code; float64 for a float64 model).
 * `o.freqs`: timestepFrequencies(dim, dtype) already on t's device (a model
 * caches them so that a CUDA-graph capture makes no host-to-device copy).
 */
export function timestepEmbedding(
  t: Tensor,
  dim: number,
  o: { dtype?: TimeEmbeddingDType; freqs?: Tensor } = {},
): Tensor {
  return torch.tidy(() => {
    const dtype = o.dtype ?? 'float32';
    const freqs = o.freqs ?? timestepFrequencies(dim, dtype).to(t.device);
    const args = t.to(dtype).unsqueeze(1).mul(freqs.unsqueeze(0));
    let emb = torch.cat([args.cos(), args.sin()], -1);
    if (dim % 2) emb = torch.cat([emb, torch.zerosLike(emb.slice(1, 0, 1))], -1);
    return emb;
  });
}

/** Conv patch embedding, flattened to [B, L, D] (spec §3.1); no norm after it. */
export class PatchEmbed extends nn.Module {
  readonly proj: nn.Conv2d;
  constructor(
    inChannels: number,
    embedDim: number,
    readonly patchSize: number,
    o: FactoryOptions = {},
  ) {
    super();
    this.proj = this.registerModule(
      'proj',
      new nn.Conv2d(inChannels, embedDim, patchSize, { ...o, stride: patchSize }),
    );
  }
  forward(x: Tensor): Tensor {
    return torch.tidy(() => this.proj.forward(x).flatten(2).transpose(1, 2));
  }
}

export interface BlockOptions extends FactoryOptions {
  mlpRatio?: number;
  /** Dropout on the attention output projection (the CM decoder's `drop`). */
  projDrop?: number;
}

/** The four sub-layers every transformer block here has: LN1, attention, LN2, MLP (LayerNorms in float32). */
abstract class BlockLayers extends nn.Module {
  readonly norm1: nn.LayerNorm;
  readonly attn: nn.MultiheadSelfAttention;
  readonly norm2: nn.LayerNorm;
  readonly mlp: nn.MLP;

  constructor(dim: number, numHeads: number, o: BlockOptions) {
    super();
    this.norm1 = this.registerModule('norm1', new nn.LayerNorm(dim, { ...o, computeInFloat32: true }));
    this.attn = this.registerModule(
      'attn',
      new nn.MultiheadSelfAttention(dim, numHeads, { ...o, qkvBias: false, projDrop: o.projDrop ?? 0 }),
    );
    this.norm2 = this.registerModule('norm2', new nn.LayerNorm(dim, { ...o, computeInFloat32: true }));
    this.mlp = this.registerModule('mlp', new nn.MLP(dim, Math.floor(dim * (o.mlpRatio ?? 4)), dim, o));
  }
}

/** Pre-norm ViT block (spec §3.1): x += Attn(LN1(x)); x += MLP(LN2(x)). */
export class Block extends BlockLayers {
  constructor(dim: number, numHeads: number, o: BlockOptions = {}) {
    super(dim, numHeads, o);
  }

  forward(x: Tensor): Tensor {
    return torch.tidy(() => {
      const h = x.add(this.attn.forward(this.norm1.forward(x)));
      return h.add(this.mlp.forward(this.norm2.forward(h)));
    });
  }
}

/** modulate(x, shift, scale) = x·(1 + scale) + shift (spec §3.3). */
function modulate(x: Tensor, shift: Tensor, scale: Tensor): Tensor {
  return torch.tidy(() => x.mul(scale.add(1)).add(shift));
}

/**
 * Decoder block (spec §3.3 step 6): a LIFO long skip from the encoder
 * (concat → Linear → LayerNorm), then adaLN-Zero modulated attention and MLP
 * conditioned on c = τ + e_y. LN1/LN2 keep their affine parameters.
 */
export class DecoderBlock extends BlockLayers {
  readonly skip_linear: nn.Linear;
  readonly skip_norm: nn.LayerNorm;
  readonly adaLN_modulation: nn.Sequential;

  constructor(dim: number, encoderDim: number, numHeads: number, o: BlockOptions = {}) {
    super(dim, numHeads, o);
    this.skip_linear = this.registerModule('skip_linear', new nn.Linear(encoderDim + dim, dim, o));
    this.skip_norm = this.registerModule('skip_norm', new nn.LayerNorm(dim, o));
    this.adaLN_modulation = this.registerModule(
      'adaLN_modulation',
      new nn.Sequential(new nn.SiLU(), new nn.Linear(encoderDim, 6 * dim, o)),
    );
  }

  /** x: [B, L, D_dec]; c: [B, 1, D_enc]; skip: [B, L, D_enc]. */
  forward(x: Tensor, c: Tensor, skip: Tensor): Tensor {
    return torch.tidy(() => {
      const h0 = this.skip_norm.forward(this.skip_linear.forward(torch.cat([x, skip], 2)));
      const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = this.adaLN_modulation
        .forward(c)
        .chunk(6, 2) as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
      const h1 = h0.add(gateMsa.mul(this.attn.forward(modulate(this.norm1.forward(h0), shiftMsa, scaleMsa))));
      return h1.add(gateMlp.mul(this.mlp.forward(modulate(this.norm2.forward(h1), shiftMlp, scaleMlp))));
    });
  }

  /** adaLN-Zero: the modulation starts at zero, so each block starts as the identity after the skip. */
  zeroInitModulation(): void {
    const lin = this.adaLN_modulation.layers[1] as nn.Linear;
    init.zeros_(lin.weight);
    init.zeros_(lin.bias!);
  }
}

export interface EncoderConfig {
  imageSize: number;
  patchSize: number;
  inChannels: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  mlpRatio: number;
  /** Projector (spec §3.2): number of Linear layers (0: none), hidden width, output width. */
  projLayers: number;
  projHiddenDim: number;
  projOutputDim: number;
}

/** Token layout shared by both models: [CLS, time, patches]. */
const EXTRAS = 2;

/** The encoder body shared by RCMViT and EPGViT (spec §3.2): patches, CLS, time token, position embedding, blocks. */
abstract class EncoderBody extends nn.Module {
  readonly patch_embed: PatchEmbed;
  readonly cls_token: Tensor;
  readonly pos_embed: Tensor;
  readonly blocks: nn.ModuleList<Block>;
  readonly norm: nn.LayerNorm;
  readonly numPatches: number;

  constructor(
    readonly encoder: EncoderConfig,
    o: BlockOptions = {},
  ) {
    super();
    const { imageSize, patchSize, inChannels, embedDim, depth, numHeads } = encoder;
    if (imageSize % patchSize !== 0)
      throw new RangeError(`image size ${imageSize} is not a multiple of the patch size ${patchSize}`);
    this.numPatches = (imageSize / patchSize) ** 2;
    this.patch_embed = this.registerModule('patch_embed', new PatchEmbed(inChannels, embedDim, patchSize, o));
    this.cls_token = this.registerParameter('cls_token', torch.zeros([1, 1, embedDim], o));
    this.pos_embed = this.registerParameter('pos_embed', torch.zeros([1, EXTRAS + this.numPatches, embedDim], o));
    const blockOpts = { ...o, mlpRatio: encoder.mlpRatio, projDrop: 0 };
    this.blocks = this.registerModule(
      'blocks',
      new nn.ModuleList(Array.from({ length: depth }, () => new Block(embedDim, numHeads, blockOpts))),
    );
    this.norm = this.registerModule('norm', new nn.LayerNorm(embedDim, { ...o, computeInFloat32: true }));
  }

  /**
   * Activation checkpointing of the transformer blocks: while a CheckpointTape
   * records the forward pass (the trainer's `activationCheckpointing=on`), each
   * block keeps only its input and output and runs again in the backward pass.
   * Same gradients, less memory (one block's activations instead of all of them),
   * one more forward pass of the blocks. A runtime switch like `training`.
   */
  activationCheckpointing = false;

  /** One encoder block, checkpointed when activationCheckpointing is on. */
  protected encoderBlock(blk: Block, h: Tensor): Tensor {
    return this.activationCheckpointing ? torch.checkpoint((x) => blk.forward(x), h) : blk.forward(h);
  }

  /** Parameters exempt from weight decay in fine-tuning (spec §5.3, no_weight_decay). */
  noWeightDecay(): Set<string> {
    return new Set(['pos_embed', 'cls_token']);
  }

  /** The frequencies of the time embedding, cached for the model's dtype and device (see timestepEmbedding). */
  #timeFreqs: Tensor | null = null;

  /**
   * τ = timestep_embedding(t_in) in the model's dtype when that is float64, in
   * float32 otherwise (the official code; also under autocast and in bf16/fp16 models).
   */
  timeEmbedding(tIn: Tensor): Tensor {
    const dtype: TimeEmbeddingDType = this.pos_embed.dtype === 'float64' ? 'float64' : 'float32';
    const cached = this.#timeFreqs;
    if (cached === null || cached.dtype !== dtype || cached.device !== tIn.device) {
      // Computed on the CPU as the official code does, then moved (once per dtype and device).
      const freqs = torch.keep(torch.tidy(() => timestepFrequencies(this.encoder.embedDim, dtype).to(tIn.device)));
      cached?.dispose();
      this.#timeFreqs = freqs;
    }
    return timestepEmbedding(tIn, this.encoder.embedDim, { dtype, freqs: this.#timeFreqs! });
  }

  override dispose(): void {
    this.#timeFreqs?.dispose();
    this.#timeFreqs = null;
    super.dispose();
  }

  /** Tokens [cls + clsExtra, time, patches] + pos_embed (spec §3.2, §3.3 step 2). */
  protected embed(x: Tensor, tIn: Tensor, clsExtra: Tensor | null): Tensor {
    return torch.tidy(() => {
      const h = this.patch_embed.forward(x);
      const B = h.shape[0]!;
      const time = this.timeEmbedding(tIn).unsqueeze(1).to(h.dtype);
      let cls = this.cls_token.expand(B, -1, -1);
      if (clsExtra !== null) cls = cls.add(clsExtra);
      return torch.cat([cls, time, h], 1).add(this.pos_embed);
    });
  }

  /** MoCo-v3 patch init and tiny CLS / truncated-normal position init (spec §3.2). */
  protected initEncoderTokens(): void {
    const { patchSize, inChannels, embedDim } = this.encoder;
    // U(±√(6/(C·p² + D))); the official code hard-codes C = 3, equal for RGB.
    const val = Math.sqrt(6 / (inChannels * patchSize * patchSize + embedDim));
    init.uniform_(this.patch_embed.proj.weight, -val, val);
    init.zeros_(this.patch_embed.proj.bias!);
    init.normal_(this.cls_token, 0, 1e-6);
    init.truncNormal_(this.pos_embed, 0, 0.02);
  }
}

/**
 * The pre-training encoder RCMViT (spec §3.2): representation = LN(CLS) and
 * projector Linear→BN→ReLU ×(projLayers−1) → Linear, without biases.
 */
export class RCMViT extends EncoderBody {
  readonly projection_head: nn.Sequential | null;

  constructor(encoder: EncoderConfig, o: FactoryOptions = {}) {
    super(encoder, o);
    this.projection_head =
      encoder.projLayers > 0
        ? this.registerModule(
            'projection_head',
            buildProjector(encoder.projLayers, encoder.embedDim, encoder.projHiddenDim, encoder.projOutputDim, o),
          )
        : null;
    this.initializeWeights();
  }

  /** Initialisation (spec §3.2, initialize_model_weights). */
  initializeWeights(): void {
    for (const [name, m] of this.namedModules()) {
      if (m instanceof nn.Linear) {
        if (name.endsWith('qkv')) {
          // Q, K and V initialised as three separate D×D matrices.
          const [out, inp] = m.weight.shape as [number, number];
          const val = Math.sqrt(6 / (out / 3 + inp));
          init.uniform_(m.weight, -val, val);
        } else {
          init.xavierUniform_(m.weight);
        }
        if (m.bias) init.zeros_(m.bias);
      }
    }
    this.initEncoderTokens();
  }

  /** Returns { proj: projector(LN(CLS)), rep: LN(CLS) } (spec §3.2; proj = rep without a projector). */
  forward(x: Tensor, tIn: Tensor): { proj: Tensor; rep: Tensor } {
    return torch.tidy(() => {
      let h = this.embed(x, tIn, null);
      for (const blk of this.blocks) h = this.encoderBlock(blk, h);
      const rep = this.norm.forward(h.select(1, 0));
      const proj = this.projection_head ? this.projection_head.forward(rep) : rep.alias();
      return { proj, rep };
    });
  }
}

function buildProjector(layers: number, inDim: number, hidden: number, out: number, o: FactoryOptions): nn.Sequential {
  const mods: (nn.Module & nn.Layer)[] = [];
  for (let l = 0; l < layers; l++) {
    const d1 = l === 0 ? inDim : hidden;
    const d2 = l === layers - 1 ? out : hidden;
    mods.push(new nn.Linear(d1, d2, { ...o, bias: false }));
    if (l < layers - 1) mods.push(new nn.BatchNorm1d(d2, o), new nn.ReLU());
  }
  return new nn.Sequential(...mods);
}

export interface DecoderConfig {
  decoderDepth: number;
  decoderEmbedDim: number;
  decoderNumHeads: number;
  /** Classes; index numClasses is the null (unconditional) class. */
  numClasses: number;
  /** Dropout on the decoder attention outputs (the CM recipe's `drop`, spec §6.3). */
  drop: number;
}

export type EPGConfig = Omit<EncoderConfig, 'projLayers' | 'projHiddenDim' | 'projOutputDim'> & DecoderConfig;

/**
 * The fine-tuning model EPGViT (spec §3.3): the pre-trained encoder (no
 * projector), a class embedding added to CLS and to the conditioning, decoder
 * blocks with LIFO long skips and adaLN-Zero, output norm, linear head and
 * unpatchify. Output: [B, C, H, W].
 */
export class EPGViT extends EncoderBody {
  readonly decoder_blocks: nn.ModuleList<DecoderBlock>;
  readonly encoder_to_decoder: nn.Linear | null;
  readonly out_norm: nn.LayerNorm;
  readonly out: nn.Linear;
  readonly class_embed: nn.Embedding;

  constructor(
    readonly config: EPGConfig,
    o: FactoryOptions = {},
  ) {
    super({ ...config, projLayers: 0, projHiddenDim: 0, projOutputDim: 0 }, o);
    if (config.decoderDepth !== config.depth)
      throw new RangeError(
        `decoderDepth (${config.decoderDepth}) must equal depth (${config.depth}): one long skip per block`,
      );
    const blockOpts = { ...o, mlpRatio: config.mlpRatio, projDrop: config.drop };
    this.decoder_blocks = this.registerModule(
      'decoder_blocks',
      new nn.ModuleList(
        Array.from(
          { length: config.decoderDepth },
          () => new DecoderBlock(config.decoderEmbedDim, config.embedDim, config.decoderNumHeads, blockOpts),
        ),
      ),
    );
    this.encoder_to_decoder =
      config.decoderEmbedDim !== config.embedDim
        ? this.registerModule('encoder_to_decoder', new nn.Linear(config.embedDim, config.decoderEmbedDim, o))
        : null;
    this.out_norm = this.registerModule('out_norm', new nn.LayerNorm(config.decoderEmbedDim, o));
    this.out = this.registerModule(
      'out',
      new nn.Linear(config.decoderEmbedDim, config.patchSize * config.patchSize * config.inChannels, o),
    );
    this.class_embed = this.registerModule('class_embed', new nn.Embedding(config.numClasses + 1, config.embedDim, o));
    this.initializeWeights();
  }

  /** The null class index (label dropout, unconditional sampling). */
  get nullClass(): number {
    return this.config.numClasses;
  }

  /**
   * Initialisation (spec §3.3, init_weights, run after RCMViT's): every Linear
   * xavier-uniform with zero bias (q/k/v not separated here), CLS and position
   * re-drawn, zero head and zero adaLN modulation, class embedding N(0, 0.02²).
   */
  initializeWeights(): void {
    this.initEncoderTokens();
    for (const m of this.modules())
      if (m instanceof nn.Linear) {
        init.xavierUniform_(m.weight);
        if (m.bias) init.zeros_(m.bias);
      }
    init.normal_(this.cls_token, 0, 1e-6);
    init.truncNormal_(this.pos_embed, 0, 0.02);
    init.zeros_(this.out.weight);
    init.zeros_(this.out.bias!);
    for (const blk of this.decoder_blocks) blk.zeroInitModulation();
    init.normal_(this.class_embed.weight, 0, 0.02);
  }

  /** F_θ(x_in, t_in, y): x_in [B, C, H, W] (already scaled by c_in), tIn [B], y [B] int64. */
  forward(x: Tensor, tIn: Tensor, y: Tensor): Tensor {
    return torch.tidy(() => {
      const ey = this.class_embed.forward(y).unsqueeze(1); // [B, 1, D_enc]
      let h = this.embed(x, tIn, ey);
      const skips: Tensor[] = [];
      for (const blk of this.blocks) {
        h = this.encoderBlock(blk, h);
        skips.push(h);
      }
      h = this.norm.forward(h);
      if (this.encoder_to_decoder) h = this.encoder_to_decoder.forward(h);
      // c = τ + e_y: the raw sinusoidal time embedding plus the class embedding, no MLP (spec §3.3 step 5).
      const c = this.timeEmbedding(tIn).unsqueeze(1).to(ey.dtype).add(ey);
      for (const blk of this.decoder_blocks) {
        const skip = skips.pop()!;
        h = this.activationCheckpointing
          ? torch.checkpoint((x, cc, s) => blk.forward(x, cc, s), h, c, skip)
          : blk.forward(h, c, skip);
      }
      const patches = this.out.forward(this.out_norm.forward(h.slice(1, EXTRAS)));
      return this.unpatchify(patches);
    });
  }

  /** [B, (m n), (p1 p2 c)] → [B, c, m·p1, n·p2]. */
  unpatchify(x: Tensor): Tensor {
    const { patchSize: p, inChannels: c, imageSize } = this.config;
    const m = imageSize / p;
    const B = x.shape[0]!;
    return torch.tidy(() =>
      x
        .reshape(B, m, m, p, p, c)
        .permute(0, 5, 1, 3, 2, 4)
        .reshape(B, c, m * p, m * p),
    );
  }
}
