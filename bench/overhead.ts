// Benchmark 1: per-op overhead. Small tensors, so the time is the framework's,
// not the kernel's. Twin: bench/py/overhead.py.
//
//   chain20      20 elementwise ops (add, mul, sub, div, tanh) x4 on 64x64,
//                each a new tensor; Node frees them with one tidy per chain
//   tiny_add     one add of two 2x2 tensors, result freed at once
//                (Node: .dispose(); Python: the reference count drops)
//   tiny_add_x100  100 such adds; Node frees them with one tidy
import * as torch from '@epg/torch';

import type { BenchConfig, Benchmark, Case, RunOptions, Setup } from './harness.js';

function scale(quick: boolean, n: number): number {
  return quick ? Math.max(1, Math.round(n / 5)) : n;
}

export const overhead: Benchmark = {
  name: 'overhead',
  title: 'Per-op overhead (small elementwise ops)',
  pyScript: 'overhead.py',
  repeats: 21,
  config(o: RunOptions): BenchConfig {
    return {
      device: o.device,
      dtype: o.dtype ?? 'float32',
      threads: 1,
      quick: o.quick,
      chainSize: 64,
      tinySize: 2,
    };
  },
  setup(c: BenchConfig): Setup {
    const opts = { device: c.device, dtype: c.dtype };
    const n = c.chainSize as number;
    const s = c.tinySize as number;
    return torch.tidy(() => {
      const a = torch.keep(torch.randn([n, n], opts));
      const b = torch.keep(torch.randn([n, n], opts));
      // Divisor in [1, 2): values stay finite through the chain.
      const d = torch.keep(torch.tidy(() => torch.rand([n, n], opts).add(1)));
      const x = torch.keep(torch.randn([s, s], opts));
      const y = torch.keep(torch.randn([s, s], opts));

      const chain = (t: torch.Tensor): torch.Tensor => {
        for (let i = 0; i < 4; i++) {
          t = t.add(b);
          t = t.mul(b);
          t = t.sub(b);
          t = t.div(d);
          t = t.tanh();
        }
        return t;
      };

      const cases: Case[] = [
        {
          name: 'chain20',
          label: `chain of 20 elementwise ops, ${n}x${n}`,
          fn: () => {
            torch.tidy(() => {
              chain(a);
            });
          },
          warmup: scale(c.quick, 200),
          inner: scale(c.quick, 100),
          ops: 20,
        },
        {
          name: 'tiny_add',
          label: `add ${s}x${s}, freed at once`,
          fn: () => {
            x.add(y).dispose();
          },
          warmup: scale(c.quick, 5000),
          inner: scale(c.quick, 2000),
          ops: 1,
        },
        {
          name: 'tiny_add_x100',
          label: `100 x add ${s}x${s}, one tidy`,
          fn: () => {
            torch.tidy(() => {
              for (let i = 0; i < 100; i++) x.add(y);
            });
          },
          warmup: scale(c.quick, 50),
          inner: scale(c.quick, 20),
          ops: 100,
        },
      ];
      return {
        cases,
        dispose: () => {
          for (const t of [a, b, d, x, y]) t.dispose();
        },
      };
    });
  },
};
