// Learning-rate schedules: pure functions of the step (STYLE.md habit 9), so a
// resumed run computes the same rate from the step alone.
import type { GroupHyper, Optimizer } from './optimizer.js';

/** Linear warm-up from 0 over warmupSteps, then cosine from 1 down to minFactor at totalSteps. */
export function warmupCosineFactor(
  step: number,
  o: { warmupSteps: number; totalSteps: number; minFactor?: number },
): number {
  const minFactor = o.minFactor ?? 0;
  if (o.warmupSteps > 0 && step < o.warmupSteps) return (step + 1) / o.warmupSteps;
  if (step >= o.totalSteps) return minFactor;
  const progress = (step - o.warmupSteps) / Math.max(1, o.totalSteps - o.warmupSteps);
  return minFactor + (1 - minFactor) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/**
 * Linear warm-up, then piecewise-constant: factors[i] applies from
 * milestones[i] on (before the first milestone the factor is 1).
 */
export function warmupPiecewiseFactor(
  step: number,
  o: { warmupSteps: number; milestones: number[]; factors: number[] },
): number {
  if (o.milestones.length !== o.factors.length)
    throw new RangeError('warmupPiecewiseFactor: one factor per milestone is needed');
  if (o.warmupSteps > 0 && step < o.warmupSteps) return (step + 1) / o.warmupSteps;
  let f = 1;
  o.milestones.forEach((m, i) => {
    if (step >= m) f = o.factors[i]!;
  });
  return f;
}

/** Linear warm-up, then constant. */
export function warmupConstantFactor(step: number, o: { warmupSteps: number }): number {
  return o.warmupSteps > 0 && step < o.warmupSteps ? (step + 1) / o.warmupSteps : 1;
}

/** Sets every group's lr to baseLr(group) × factor. */
export function setLr<H extends GroupHyper>(opt: Optimizer<H>, lr: number | ((groupIndex: number) => number)): void {
  opt.paramGroups.forEach((g, i) => {
    g.lr = typeof lr === 'number' ? lr : lr(i);
  });
}
