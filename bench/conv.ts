// Benchmark 2b: conv2d forward throughput in GFLOP/s, with a reference matmul in
// the same run for the floor (conv FLOPs / peak matmul rate). Twin: bench/py/conv.py.
// N=32 (--size N), C 64 -> 64, 56x56, 3x3, stride 1, padding 1, no bias.
import * as torch from '@epg/torch';

import type { BenchConfig, Benchmark, Case, RunOptions, Setup } from './harness.js';
import { matmulInner } from './matmul.js';

export const conv: Benchmark = {
  name: 'conv',
  title: 'conv2d forward (3x3, stride 1, padding 1)',
  pyScript: 'conv.py',
  repeats: 9,
  config(o: RunOptions): BenchConfig {
    return {
      device: o.device,
      dtype: o.dtype ?? (o.device === 'cuda' ? 'bfloat16' : 'float32'),
      threads: 1,
      quick: o.quick,
      batch: o.size ?? (o.quick ? 8 : 32),
      channels: 64,
      hw: 56,
      kernel: 3,
      // The reference matmul that sets the floor.
      refMatmul: o.device === 'cuda' ? 8192 : o.quick ? 1024 : 2048,
    };
  },
  setup(c: BenchConfig): Setup {
    const opts = { device: c.device, dtype: c.dtype };
    const [n, ch, hw, k] = [c.batch, c.channels, c.hw, c.kernel] as number[];
    const m = c.refMatmul as number;
    const x = torch.keep(torch.randn([n!, ch!, hw!, hw!], opts));
    const w = torch.keep(torch.randn([ch!, ch!, k!, k!], opts));
    const a = torch.keep(torch.randn([m, m], opts));
    const b = torch.keep(torch.randn([m, m], opts));
    const cuda = c.device === 'cuda';
    const cases: Case[] = [
      {
        name: 'conv2d',
        label: `conv2d N=${n} C=${ch}->${ch} ${hw}x${hw} ${k}x${k} ${c.dtype}`,
        fn: () => {
          torch.F.conv2d(x, w, null, { padding: 1 }).dispose();
        },
        warmup: cuda ? 10 : 2,
        inner: cuda ? 20 : 1,
        // Output N x C x H x W, each a dot product of length C*k*k (multiply + add).
        flops: 2 * n! * ch! * hw! * hw! * ch! * k! * k!,
      },
      {
        name: `matmul_${m}`,
        label: `reference matmul ${m}^3 ${c.dtype}`,
        fn: () => {
          a.matmul(b).dispose();
        },
        warmup: cuda ? 10 : 2,
        inner: matmulInner(c.device, m),
        flops: 2 * m * m * m,
      },
    ];
    return { cases, dispose: () => [x, w, a, b].forEach((t) => t.dispose()) };
  },
};
