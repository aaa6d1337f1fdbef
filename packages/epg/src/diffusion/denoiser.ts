// The network wrapped as a denoiser (spec §2, gen_denoise): the input is scaled
// by c_in and the time input is 250·ln σ; the DM reads the output as x̂₀
// directly, the CM applies the boundary-condition skip c_skip·x + c_out·F.
// Coefficients are computed per sample in float64 and applied in float32
// (precision at explicit boundaries, STYLE.md habit 6).
import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

import { preconditioning, timeInput } from './edm.js';

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

/** CM consistency function (spec §6.2 step 2): f(x, σ) = c_skip·x + c_out·F(c_in·x, 250 ln σ, y); f(x, σ_min') = x. */
export function consistencyFunction(net: Network, x: Tensor, sigma: Tensor, y: Tensor): Tensor {
  return torch.tidy(() => {
    const dtype = coefficientDtype(x);
    const { cSkip, cOut, cIn } = preconditioning(sigma, x.shape[2]!, dtype);
    const F = net.forward(x.mul(cIn), timeInput(sigma, dtype), y);
    return x.mul(cSkip).add(F.to(x.dtype).mul(cOut));
  });
}
