// torch.linalg: the decompositions and norms the evaluator and models need.
import * as aten from './generated/aten.js';
import type { Tensor } from './tensor.js';

/** Eigen-decomposition of a symmetric (Hermitian) matrix: ascending eigenvalues and eigenvectors as columns. */
export function eigh(a: Tensor, uplo: 'L' | 'U' = 'L'): { eigenvalues: Tensor; eigenvectors: Tensor } {
  const [eigenvalues, eigenvectors] = aten.linalg_eigh(a, uplo);
  return { eigenvalues, eigenvectors };
}

export function eigvalsh(a: Tensor, uplo: 'L' | 'U' = 'L'): Tensor {
  return aten.linalg_eigvalsh(a, uplo);
}

/** Vector norm (ord a number, default 2) over dims (all by default). */
export function vectorNorm(x: Tensor, ord = 2, dim?: number | readonly number[], keepdim = false): Tensor {
  const dims = dim === undefined ? null : typeof dim === 'number' ? [dim] : [...dim];
  return aten.linalg_vector_norm(x, ord, dims, keepdim, null);
}

/** Matrix norm: 'fro' (default), 'nuc', or a number (±1, ±2, ±inf). */
export function matrixNorm(
  x: Tensor,
  ord: 'fro' | 'nuc' | number = 'fro',
  dim: [number, number] = [-2, -1],
  keepdim = false,
): Tensor {
  return typeof ord === 'string'
    ? aten.linalg_matrix_norm$str_ord(x, ord, dim, keepdim, null)
    : aten.linalg_matrix_norm(x, ord, dim, keepdim, null);
}

/**
 * torch.linalg.norm: without ord, the 2-norm of the flattened input (or over
 * dim); with ord, a vector norm for one dim and a matrix norm for two.
 */
export function norm(
  x: Tensor,
  ord?: 'fro' | 'nuc' | number,
  dim?: number | readonly number[],
  keepdim = false,
): Tensor {
  if (ord === undefined) return vectorNorm(x, 2, dim, keepdim);
  if (dim === undefined && x.ndim !== 1 && x.ndim !== 2)
    throw new RangeError(`linalg.norm: with ord and no dim the input must be 1-d or 2-d, got ${x.ndim}-d`);
  const dims = dim === undefined ? (x.ndim === 2 ? [-2, -1] : [-1]) : typeof dim === 'number' ? [dim] : [...dim];
  if (typeof ord === 'string' || dims.length === 2) return matrixNorm(x, ord, [dims[0]!, dims[1]!], keepdim);
  return vectorNorm(x, ord, dims, keepdim);
}

export function solve(a: Tensor, b: Tensor): Tensor {
  return aten.linalg_solve(a, b, true);
}

export function cholesky(a: Tensor): Tensor {
  return aten.linalg_cholesky(a, false);
}

export function inv(a: Tensor): Tensor {
  return aten.linalg_inv(a);
}

export function svd(a: Tensor, fullMatrices = true): { U: Tensor; S: Tensor; Vh: Tensor } {
  const [U, S, Vh] = aten.linalg_svd(a, fullMatrices, null);
  return { U, S, Vh };
}
