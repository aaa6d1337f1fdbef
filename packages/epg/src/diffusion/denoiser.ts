// The network wrapped as a denoiser (spec §2, gen_denoise): the input is scaled
// by c_in and the time input is 250·ln σ; the DM reads the output as x̂₀
// directly, the CM applies the boundary-condition skip c_skip·x + c_out·F.
// Coefficients are computed per sample in float64 and applied in float32
// (precision at explicit boundaries, STYLE.md habit 6).
import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

import { preconditioning, timeInput, x0BoundaryScalings } from './edm.js';

/** A network F(x_in, t_in, y) as EPGViT.forward. */
export interface Network {
  forward(x: Tensor, tIn: Tensor, y: Tensor): Tensor;
}

/** The dtype the coefficients and t_in are applied in: float64 inputs (the tests) keep float64. */
function coefficientDtype(x: Tensor): 'float32' | 'float64' {
  return x.dtype === 'float64' ? 'float64' : 'float32';
}

/** DM denoiser (spec §5.2 step 4): D(x_σ) = F(c_in·x_σ, 250 ln σ, y), direct x₀ prediction. */
export function denoiseX0(net: Network, x: Tensor, sigma: Tensor, y: Tensor): Tensor {
  return torch.tidy(() => {
    const dtype = coefficientDtype(x);
    const { cIn } = preconditioning(sigma, x.shape[2]!, dtype);
    return net.forward(x.mul(cIn), timeInput(sigma, dtype), y);
  });
}

/**
 * How the consistency function reads the network output F (finetune.cmPrecond):
 * - 'edm' (spec §6.2 step 2, the released code): f = c_skip·x + c_out·F with EDM's σ_d-scaled
 *   coefficients, F a scaled residual;
 * - 'x0': F is read as x̂₀, as the diffusion model's direct prediction (spec §5.2), and the skip
 *   is confined to σ_min' (edm.ts x0BoundaryScalings), so that consistency tuning from a
 *   diffusion model (ECT) starts from that model's denoiser instead of a half-amplitude,
 *   half-noisy copy of it.
 * Both satisfy the boundary condition f(x, σ_min') = x.
 */
export type CmPrecond = 'edm' | 'x0';

/** CM consistency function (spec §6.2 step 2): f(x, σ) = c_skip·x + c_out·F(c_in·x, 250 ln σ, y); f(x, σ_min') = x. */
export function consistencyFunction(
  net: Network,
  x: Tensor,
  sigma: Tensor,
  y: Tensor,
  precond: CmPrecond = 'edm',
): Tensor {
  return torch.tidy(() => {
    const dtype = coefficientDtype(x);
    const H = x.shape[2]!;
    const { cSkip, cOut, cIn } = preconditioning(sigma, H, dtype);
    const F = net.forward(x.mul(cIn), timeInput(sigma, dtype), y);
    const boundary = precond === 'edm' ? { cSkip, cOut } : x0BoundaryScalings(sigma, H, dtype);
    return x.mul(boundary.cSkip).add(F.to(x.dtype).mul(boundary.cOut));
  });
}
