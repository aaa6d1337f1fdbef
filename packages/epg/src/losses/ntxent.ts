// NT-Xent / InfoNCE (spec §4.2, contrastive_loss): both sides L2-normalised,
// logits = f̂·f̂_targetᵀ (B_local × B_global), positives on the diagonal (the
// local block comes first in the gathered targets), the positive included in
// the denominator, no 2τ factor, logsumexp in float32. Per-sample vector.
import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

/**
 * NCE_i = logsumexp_j(⟨f̂_i, t̂_j⟩/τ) − ⟨f̂_i, t̂_i⟩/τ for i < B_local.
 * `targets` are the (gathered) targets with this rank's block first; with one
 * process they are simply the local targets.
 */
export function ntXent(features: Tensor, targets: Tensor, tau: number): Tensor {
  if (features.ndim !== 2 || targets.ndim !== 2)
    throw new TypeError(`ntXent: expected [B, D] features and targets, got ${features.ndim}-d and ${targets.ndim}-d`);
  const B = features.shape[0]!;
  if (targets.shape[0]! < B)
    throw new TypeError(`ntXent: ${targets.shape[0]} targets for ${B} features (the local block must come first)`);
  return torch.tidy(() => {
    const f = torch.F.normalize(features.float(), 2, 1);
    const t = torch.F.normalize(targets.float(), 2, 1);
    const logits = f.matmul(t.t()).div(tau);
    const positives = logits.diagonal().slice(0, 0, B);
    return logits.logsumexp(1).sub(positives);
  });
}
