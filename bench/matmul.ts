// Benchmark 2a: large matrix products, throughput in GFLOP/s. Twin: bench/py/matmul.py.
// CPU: float32 n = 1024 and 2048; CUDA: bfloat16 n = 4096 and 8192 (--size n for one size).
import * as torch from '@epg/torch';

import type { BenchConfig, Benchmark, Case, RunOptions, Setup } from './harness.js';

export function matmulSizes(o: RunOptions): number[] {
  if (o.size !== undefined) return [o.size];
  if (o.device === 'cuda') return o.quick ? [4096] : [4096, 8192];
  return o.quick ? [1024] : [1024, 2048];
}

/** Iterations per timed block so that a block is not shorter than a few launch overheads. */
export function matmulInner(device: string, n: number): number {
  if (device === 'cuda') return n >= 8192 ? 20 : 50;
  return n <= 1024 ? 4 : 1;
}

export const matmul: Benchmark = {
  name: 'matmul',
  title: 'Large matmul (a @ b, square)',
  pyScript: 'matmul.py',
  repeats: 9,
  config(o: RunOptions): BenchConfig {
    return {
      device: o.device,
      dtype: o.dtype ?? (o.device === 'cuda' ? 'bfloat16' : 'float32'),
      threads: 1,
      quick: o.quick,
      sizes: matmulSizes(o),
    };
  },
  setup(c: BenchConfig): Setup {
    const opts = { device: c.device, dtype: c.dtype };
    const owned: torch.Tensor[] = [];
    const cases: Case[] = (c.sizes as number[]).map((n) => {
      const a = torch.keep(torch.randn([n, n], opts));
      const b = torch.keep(torch.randn([n, n], opts));
      owned.push(a, b);
      return {
        name: `matmul_${n}`,
        label: `matmul ${n}x${n}x${n} ${c.dtype}`,
        fn: () => {
          a.matmul(b).dispose();
        },
        warmup: c.device === 'cuda' ? 10 : 2,
        inner: matmulInner(c.device, n),
        flops: 2 * n * n * n,
      };
    });
    return { cases, dispose: () => owned.forEach((t) => t.dispose()) };
  },
};
