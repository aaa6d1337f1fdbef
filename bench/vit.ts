// Benchmark 3: one training step of a small ViT, written functionally with
// explicit parameter tensors: forward, loss.backward(), and a plain SGD update
// (p -= lr * grad, with ops under noGrad). Twin: bench/py/vit.py, op for op.
//
// Model: patch 4 on 32x32x3 images (64 patches + a class token), width 192,
// depth 6, 3 heads, MLP ratio 4, pre-norm blocks with layerNorm, attention by
// scaledDotProductAttention, exact GELU, class head with crossEntropy, batch 32.
import * as torch from '@epg/torch';

import type { BenchConfig, Benchmark, RunOptions, Setup } from './harness.js';

const F = torch.F;
type T = torch.Tensor;

export interface VitShape {
  batch: number;
  image: number;
  channels: number;
  patch: number;
  width: number;
  depth: number;
  heads: number;
  mlpRatio: number;
  classes: number;
}

/** Multiply-add FLOPs (x2) of the matrix products in one forward pass. */
export function vitForwardFlops(s: VitShape): number {
  const g = s.image / s.patch;
  const tokens = g * g + 1;
  const d = s.width;
  const m = s.width * s.mlpRatio;
  const patch = 2 * s.batch * g * g * d * s.channels * s.patch * s.patch;
  const perBlock =
    2 * s.batch * tokens * d * 3 * d + // qkv
    2 * 2 * s.batch * tokens * tokens * d + // q kᵀ and attn v, all heads
    2 * s.batch * tokens * d * d + // proj
    2 * 2 * s.batch * tokens * d * m; // fc1, fc2
  return patch + s.depth * perBlock + 2 * s.batch * d * s.classes;
}

interface Block {
  ln1w: T;
  ln1b: T;
  qkvw: T;
  qkvb: T;
  projw: T;
  projb: T;
  ln2w: T;
  ln2b: T;
  fc1w: T;
  fc1b: T;
  fc2w: T;
  fc2b: T;
}

export const vit: Benchmark = {
  name: 'vit',
  title: 'ViT training step (forward + backward + SGD)',
  pyScript: 'vit.py',
  repeats: 7,
  config(o: RunOptions): BenchConfig {
    const shape: VitShape = {
      batch: o.size ?? (o.quick ? 8 : 32),
      image: 32,
      channels: 3,
      patch: 4,
      width: 192,
      depth: o.quick ? 2 : 6,
      heads: 3,
      mlpRatio: 4,
      classes: 10,
    };
    return { device: o.device, dtype: o.dtype ?? 'float32', threads: 1, quick: o.quick, lr: 1e-3, ...shape };
  },
  setup(c: BenchConfig): Setup {
    const s = c as unknown as VitShape & BenchConfig & { lr: number };
    const opts = { device: c.device, dtype: c.dtype };
    const d = s.width;
    const m = s.width * s.mlpRatio;
    const g = s.image / s.patch;
    const tokens = g * g + 1;
    const dh = d / s.heads;
    const params: T[] = [];
    const param = (make: () => T): T => {
      const p = torch.keep(torch.tidy(make)).requiresGrad_(true);
      params.push(p);
      return p;
    };
    const randn = (shape: number[]): T => param(() => torch.randn(shape, opts).mul(0.02));
    const ones = (n: number): T => param(() => torch.ones([n], opts));
    const zeros = (n: number): T => param(() => torch.zeros([n], opts));

    const patchW = randn([d, s.channels, s.patch, s.patch]);
    const patchB = zeros(d);
    const cls = randn([1, 1, d]);
    const pos = randn([1, tokens, d]);
    const blocks: Block[] = [];
    for (let i = 0; i < s.depth; i++) {
      blocks.push({
        ln1w: ones(d),
        ln1b: zeros(d),
        qkvw: randn([3 * d, d]),
        qkvb: zeros(3 * d),
        projw: randn([d, d]),
        projb: zeros(d),
        ln2w: ones(d),
        ln2b: zeros(d),
        fc1w: randn([m, d]),
        fc1b: zeros(m),
        fc2w: randn([d, m]),
        fc2b: zeros(d),
      });
    }
    const normW = ones(d);
    const normB = zeros(d);
    const headW = randn([s.classes, d]);
    const headB = zeros(s.classes);

    const images = torch.keep(torch.randn([s.batch, s.channels, s.image, s.image], opts));
    const labels = torch.keep(torch.randint(0, s.classes, [s.batch], { device: c.device }));

    const forward = (img: T, y: T): T => {
      const b = s.batch;
      let x = F.conv2d(img, patchW, patchB, { stride: s.patch }).flatten(2).transpose(1, 2);
      x = torch.cat([cls.expand([b, 1, d]), x], 1).add(pos);
      for (const blk of blocks) {
        const h = F.layerNorm(x, [d], blk.ln1w, blk.ln1b);
        const qkv = F.linear(h, blk.qkvw, blk.qkvb).reshape([b, tokens, 3, s.heads, dh]).permute([2, 0, 3, 1, 4]);
        const [q, k, v] = qkv.unbind(0) as [T, T, T];
        const a = F.scaledDotProductAttention(q, k, v).transpose(1, 2).reshape([b, tokens, d]);
        x = x.add(F.linear(a, blk.projw, blk.projb));
        const h2 = F.layerNorm(x, [d], blk.ln2w, blk.ln2b);
        x = x.add(F.linear(F.gelu(F.linear(h2, blk.fc1w, blk.fc1b)), blk.fc2w, blk.fc2b));
      }
      x = F.layerNorm(x, [d], normW, normB);
      const logits = F.linear(x.select(1, 0), headW, headB);
      return F.crossEntropy(logits, y);
    };

    const step = (): void => {
      torch.tidy(() => {
        const loss = forward(images, labels);
        loss.backward();
        torch.noGrad(() => {
          for (const p of params) p.sub_(p.grad!.mul(s.lr));
        });
        for (const p of params) p.grad = null;
      });
    };

    // The same step with the toolkit of issue 3: fused AdamW, clipping by global
    // norm, and an EMA of the weights (one foreach lerp).
    const adamw = new torch.optim.AdamW(params, { lr: s.lr, weightDecay: 0.01 });
    const shadow = params.map((p) => torch.keep(torch.tidy(() => p.detach().clone())));
    const stepAdamW = (): void => {
      torch.tidy(() => {
        const loss = forward(images, labels);
        loss.backward();
        torch.optim.clipGradNorm_(params, 1.0);
        adamw.step();
        adamw.zeroGrad();
        torch.noGrad(() => torch.ops.call('aten::_foreach_lerp_', 'Scalar', shadow, params, 1e-4));
      });
    };

    const cuda = c.device === 'cuda';
    return {
      cases: [
        {
          name: 'train_step',
          label: `ViT d=${d} depth=${s.depth} heads=${s.heads} batch=${s.batch} ${c.dtype}, ${params.length} params`,
          fn: step,
          warmup: cuda ? 10 : 2,
          inner: cuda ? 20 : 1,
          flops: 3 * vitForwardFlops(s),
        },
        {
          name: 'train_step_adamw_ema_clip',
          label: `same, with fused AdamW + clip_grad_norm_ + EMA`,
          fn: stepAdamW,
          warmup: cuda ? 10 : 2,
          inner: cuda ? 20 : 1,
          flops: 3 * vitForwardFlops(s),
        },
      ],
      dispose: () => {
        adamw.dispose();
        for (const p of [...params, ...shadow, images, labels]) p.dispose();
      },
    };
  },
};
