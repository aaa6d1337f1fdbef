// Learning-rate schedules: pure functions of the step (STYLE.md habit 9), so a
// resumed run computes the same rate from the step alone. `step` is the index k
// of the update (0 for the first), and the factor is fn(k), as PyTorch's
// LambdaLR gives it (lr = base·fn(last_epoch), and last_epoch counts the
// scheduler steps taken): the first warm-up update has factor 0.
import type { GroupHyper, Optimizer } from './optimizer.js';

/** Linear warm-up k/warmupSteps (0 at the first update), then cosine from 1 down to minFactor at totalSteps. */
export function warmupCosineFactor(
  step: number,
  o: { warmupSteps: number; totalSteps: number; minFactor?: number },
): number {
  const minFactor = o.minFactor ?? 0;
  if (o.warmupSteps > 0 && step < o.warmupSteps) return step / o.warmupSteps;
  if (step >= o.totalSteps) return minFactor;
  const progress = (step - o.warmupSteps) / Math.max(1, o.totalSteps - o.warmupSteps);
  return minFactor + (1 - minFactor) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/**
 * Linear warm-up k/warmupSteps, then piecewise-constant: factors[i] applies
 * after milestones[i], from update milestones[i] + 1 on (the official
 * `warmup-step`: 1.0 while k ≤ 400000, 0.3 while k ≤ 500000, then 0.08).
 */
export function warmupPiecewiseFactor(
  step: number,
  o: { warmupSteps: number; milestones: number[]; factors: number[] },
): number {
  if (o.milestones.length !== o.factors.length)
    throw new RangeError('warmupPiecewiseFactor: one factor per milestone is needed');
  if (o.warmupSteps > 0 && step < o.warmupSteps) return step / o.warmupSteps;
  let f = 1;
  o.milestones.forEach((m, i) => {
    if (step > m) f = o.factors[i]!;
  });
  return f;
}

/** Linear warm-up k/warmupSteps, then constant. */
export function warmupConstantFactor(step: number, o: { warmupSteps: number }): number {
  return o.warmupSteps > 0 && step < o.warmupSteps ? step / o.warmupSteps : 1;
}

/** Sets every group's lr to baseLr(group) × factor. */
export function setLr<H extends GroupHyper>(opt: Optimizer<H>, lr: number | ((groupIndex: number) => number)): void {
  opt.paramGroups.forEach((g, i) => {
    g.lr = typeof lr === 'number' ? lr : lr(i);
  });
}
