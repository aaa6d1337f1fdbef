// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_.
import { noGrad } from '../autograd.js';
import { scalarTensor, stack } from '../creation.js';
import { TorchError } from '../errors.js';
import * as aten from '../generated/aten.js';
import { tidy } from '../scope.js';
import { Tensor } from '../tensor.js';

/**
 * Scales all gradients by min(1, maxNorm / (‖g‖ + 1e-6)) where ‖g‖ is the
 * normType-norm of all gradients together; returns that total norm (a 0-d
 * tensor, read it with item() only when needed: it synchronises a GPU).
 */
export function clipGradNorm_(
  params: Tensor[],
  maxNorm: number,
  opts: { normType?: number; errorIfNonfinite?: boolean } = {},
): Tensor {
  const normType = opts.normType ?? 2;
  return noGrad(() =>
    tidy(() => {
      const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
      if (grads.length === 0) return scalarTensor(0, { device: params[0]?.device ?? 'cpu' });
      const norms = aten._foreach_norm$Scalar(grads, normType, null);
      const stacked = stack(norms);
      const total = normType === Infinity ? stacked.max() : stacked.norm(normType);
      if (opts.errorIfNonfinite && !Number.isFinite(total.item()))
        throw new TorchError(`clipGradNorm_: the total norm of the gradients is ${total.item()}`);
      const coef = total.add(1e-6).reciprocal().mul(maxNorm).clampMax(1);
      aten._foreach_mul_$Tensor(grads, coef);
      return total;
    }),
  );
}

/** Total gradient norm without clipping. */
export function gradNorm(params: Tensor[], normType = 2): Tensor {
  return clipGradNorm_(params, Infinity, { normType });
}
