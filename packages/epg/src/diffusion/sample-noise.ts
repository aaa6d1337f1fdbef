// Per-index randomness of sampling: the label and every noise draw of sample i
// depend only on (seed, i), never on the batch it falls in or the process that
// draws it. A sample set is then the same whatever the batch size and the number
// of processes (on one kind of device: CPU and CUDA generators differ).
// Each (seed, index, stream) seeds its own generator; the streams are the label,
// the initial noise x_T and the noise a multistep consistency sampler injects
// before its step j.
import * as torch from '@epg/torch';
import type { Device, Tensor } from '@epg/torch';

import { resolutionShift, SIGMA_MAX } from './edm.js';

/** The random streams of one sample. */
export const SAMPLE_STREAM = {
  label: 0,
  initialNoise: 1,
  /** Noise injected before multistep step j: stream multistep + j. */
  multistep: 2,
} as const;

/** 32-bit mix (murmur3's finaliser) of h and v. */
function mix32(h: number, v: number): number {
  h = Math.imul(h ^ (v >>> 0), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** The generator seed of (seed, index, stream): 53 bits, so it is an exact JS number. */
export function sampleSeed(seed: number, index: number, stream: number): number {
  if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(index) || index < 0 || !Number.isInteger(stream))
    throw new RangeError(`sampleSeed: seed and index must be integers, index ≥ 0 (got ${seed}, ${index}, ${stream})`);
  const seedLo = seed >>> 0;
  const seedHi = Math.floor(seed / 2 ** 32) >>> 0;
  const lo = mix32(mix32(mix32(mix32(0x9e3779b9, seedLo), seedHi), index), stream);
  const hi = mix32(mix32(mix32(mix32(0x7f4a7c15, stream), index), seedHi), seedLo) >>> 11;
  return hi * 2 ** 32 + lo;
}

/**
 * Standard normal draws for samples start … start+count−1, one generator per
 * sample: [count, ...shape] on `device`, float32.
 */
export function perIndexNormal(
  start: number,
  count: number,
  shape: readonly number[],
  o: { seed: number; stream: number; device?: Device },
): Tensor {
  const device = o.device ?? 'cpu';
  return torch.tidy(() => {
    const rows: Tensor[] = [];
    for (let i = start; i < start + count; i++) {
      const gen = new torch.Generator(device, sampleSeed(o.seed, i, o.stream));
      try {
        rows.push(torch.randn([...shape], { generator: gen, device }));
      } finally {
        gen.dispose();
      }
    }
    return torch.stack(rows);
  });
}

/** x_T ~ N(0, (σ_max·H/64)²) of samples start … start+count−1 (spec §7); shape [C, H, W] per sample. */
export function perIndexInitialNoise(
  start: number,
  count: number,
  shape: readonly [number, number, number],
  o: { seed: number; device?: Device },
): Tensor {
  return torch.tidy(() =>
    perIndexNormal(start, count, shape, { ...o, stream: SAMPLE_STREAM.initialNoise }).mul(
      SIGMA_MAX * resolutionShift(shape[1]),
    ),
  );
}

/**
 * Labels of samples 0 … n−1: balanced (sample i gets class i mod K), one class,
 * or random, where sample i's class is drawn from its own generator. int64, CPU.
 */
export function perIndexLabels(
  n: number,
  numClasses: number,
  how: 'random' | 'balanced' | number,
  seed: number,
): Tensor {
  if (typeof how === 'number') {
    if (!Number.isInteger(how) || how < 0 || how >= numClasses)
      throw new RangeError(`--labels ${how}: a class must be an integer in 0…${numClasses - 1}`);
    return torch.full([n], how, { dtype: 'int64' });
  }
  if (how === 'balanced') return torch.tidy(() => torch.arange(0, n, 1).remainder(numClasses));
  const labels = new BigInt64Array(n);
  for (let i = 0; i < n; i++) {
    const gen = new torch.Generator('cpu', sampleSeed(seed, i, SAMPLE_STREAM.label));
    try {
      labels[i] = BigInt(torch.tidy(() => torch.randint(0, numClasses, [1], { generator: gen }).item()));
    } finally {
      gen.dispose();
    }
  }
  return torch.tensor(labels, { dtype: 'int64' });
}
