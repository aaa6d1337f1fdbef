// torch.linalg: the decompositions and norms the evaluator and models need.
import type { NativeArg } from './native.js';
import { callNative, opRef } from './ops.js';
import { Tensor, _wrap as wrap, _wrapList as wrapList } from './tensor.js';

function op(name: string, overload: string, ...args: NativeArg[]): Tensor {
  return wrap(callNative(opRef(name, overload), ...args));
}

/** Eigen-decomposition of a symmetric (Hermitian) matrix: ascending eigenvalues and eigenvectors as columns. */
export function eigh(a: Tensor, uplo: 'L' | 'U' = 'L'): { eigenvalues: Tensor; eigenvectors: Tensor } {
  const [eigenvalues, eigenvectors] = wrapList(callNative(opRef('linalg_eigh'), a.id, uplo)) as [Tensor, Tensor];
  return { eigenvalues, eigenvectors };
}

export function eigvalsh(a: Tensor, uplo: 'L' | 'U' = 'L'): Tensor {
  return op('linalg_eigvalsh', '', a.id, uplo);
}

/** Vector norm (ord a number, default 2) over dims (all by default). */
export function vectorNorm(x: Tensor, ord = 2, dim?: number | readonly number[], keepdim = false): Tensor {
  const dims = dim === undefined ? null : typeof dim === 'number' ? [dim] : [...dim];
  return op('linalg_vector_norm', '', x.id, ord, dims, keepdim, null);
}

/** Matrix norm: 'fro' (default), 'nuc', or a number (±1, ±2, ±inf). */
export function matrixNorm(
  x: Tensor,
  ord: 'fro' | 'nuc' | number = 'fro',
  dim: [number, number] = [-2, -1],
  keepdim = false,
): Tensor {
  return typeof ord === 'string'
    ? op('linalg_matrix_norm', 'str_ord', x.id, ord, dim, keepdim, null)
    : op('linalg_matrix_norm', '', x.id, ord, dim, keepdim, null);
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
  return op('linalg_solve', '', a.id, b.id, true);
}

export function cholesky(a: Tensor): Tensor {
  return op('linalg_cholesky', '', a.id, false);
}

export function inv(a: Tensor): Tensor {
  return op('linalg_inv', '', a.id);
}

export function svd(a: Tensor, fullMatrices = true): { U: Tensor; S: Tensor; Vh: Tensor } {
  const [U, S, Vh] = wrapList(callNative(opRef('linalg_svd'), a.id, fullMatrices, null)) as [Tensor, Tensor, Tensor];
  return { U, S, Vh };
}
