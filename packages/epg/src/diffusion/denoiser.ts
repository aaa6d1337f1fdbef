// The network wrapped as a denoiser (spec §2, gen_denoise): the input is scaled
// by c_in and the time input is 250·ln σ; the DM reads the output as x̂₀
// directly, the CM applies the boundary-condition skip c_skip·x + c_out·F.
// Coefficients are computed per sample in float64 and applied in float32
// (precision at explicit boundaries, STYLE.md habit 6).
import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

import { resolutionShift, SIGMA_DATA, SIGMA_MIN } from './edm.js';

/** A network F(x_in, t_in, y) as EPGViT.forward. */
export interface Network {
  forward(x: Tensor, tIn: Tensor, y: Tensor): Tensor;
}

/** Per-sample coefficient tensors [B, 1, 1, 1] of the preconditioning at shifted σ [B]. */
export function preconditioningTensors(
  sigma: Tensor,
  imageSize: number,
  dtype: 'float32' | 'float64' = 'float32',
): { cSkip: Tensor; cOut: Tensor; cIn: Tensor; tIn: Tensor } {
  return torch.tidy(() => {
    const s = sigma.double();
    const sd2 = SIGMA_DATA * SIGMA_DATA;
    const d = s.sub(SIGMA_MIN * resolutionShift(imageSize));
    const norm = s.square().add(sd2).sqrt();
    const shape = (t: Tensor): Tensor => t.reshape(-1, 1, 1, 1).to(dtype);
    return {
      cSkip: shape(d.square().add(sd2).reciprocal().mul(sd2)),
      cOut: shape(d.mul(SIGMA_DATA).div(norm)),
      cIn: shape(norm.reciprocal()),
      // t_in in the model's dtype when that is float64, in float32 otherwise (the official code).
      tIn: s.add(1e-44).log().mul(250).to(dtype),
    };
  });
}

/** DM denoiser (spec §5.2 step 4): D(x_σ) = F(c_in·x_σ, 250 ln σ, y), direct x₀ prediction. */
export function denoiseX0(net: Network, x: Tensor, sigma: Tensor, y: Tensor): Tensor {
  return torch.tidy(() => {
    const { cIn, tIn } = preconditioningTensors(sigma, x.shape[2]!, x.dtype === 'float64' ? 'float64' : 'float32');
    return net.forward(x.mul(cIn), tIn, y);
  });
}

/** CM consistency function (spec §6.2 step 2): f(x, σ) = c_skip·x + c_out·F(c_in·x, 250 ln σ, y); f(x, σ_min') = x. */
export function consistencyFunction(net: Network, x: Tensor, sigma: Tensor, y: Tensor): Tensor {
  return torch.tidy(() => {
    const { cSkip, cOut, cIn, tIn } = preconditioningTensors(
      sigma,
      x.shape[2]!,
      x.dtype === 'float64' ? 'float64' : 'float32',
    );
    const F = net.forward(x.mul(cIn), tIn, y);
    return x.mul(cSkip).add(F.to(x.dtype).mul(cOut));
  });
}
