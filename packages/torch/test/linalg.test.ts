// Differential tests: products (matmul, mm, bmm, outer, einsum, addmm) and
// torch.linalg (eigh, eigvalsh, vector/matrix norms, norm, solve, cholesky, inv,
// svd), float32 and float64, forward and gradient. Decompositions are compared
// through what is unique: eigenvalues, singular values and reconstructions
// (eigen/singular vectors are defined only up to sign).
import * as torch from '../src/index.js';
import { linalg, type DType, type Tensor } from '../src/index.js';
import { differential, type Case, type InputSpec } from './harness.js';

const g = (shape: number[], extra: Partial<InputSpec> = {}): InputSpec => ({ shape, requiresGrad: true, ...extra });

// float32 decompositions go through LAPACK with different blocking than the
// reference may use; their errors scale with the condition number.
const F32_DECOMP = { rtol: 1e-3, atol: 1e-4 };

/** A well-conditioned matrix: a + n I. */
const wellConditioned = (a: Tensor): Tensor => a.add(torch.eye(a.size(-1), { dtype: a.dtype }).mul(a.size(-1)));
const WELL_PY = '(a + a.shape[-1] * torch.eye(a.shape[-1], dtype=a.dtype))';
/** A symmetric positive definite matrix: a aᵀ + n I. */
const spd = (a: Tensor): Tensor => a.matmul(a.mT).add(torch.eye(a.size(-1), { dtype: a.dtype }).mul(a.size(-1)));
const SPD_PY = '(a @ a.mT + a.shape[-1] * torch.eye(a.shape[-1], dtype=a.dtype))';

const cases: Case[] = [];

for (const dtype of ['float32', 'float64'] as DType[]) {
  const d = (shape: number[], extra: Partial<InputSpec> = {}): InputSpec => g(shape, { dtype, ...extra });
  const tol = dtype === 'float32' ? F32_DECOMP : {};
  cases.push(
    {
      name: `matmul 1-d · 1-d ${dtype}`,
      inputs: [d([5]), d([5])],
      js: (a, b) => a.matmul(b),
      py: 'lambda a, b: a @ b',
    },
    {
      name: `matmul 1-d @ 2-d and 2-d @ 1-d ${dtype}`,
      inputs: [d([3]), d([3, 4]), d([4])],
      js: (a, m, b) => [a.matmul(m), m.matmul(b)],
      py: 'lambda a, m, b: (a @ m, m @ b)',
    },
    {
      name: `matmul 2-d non-contiguous ${dtype}`,
      inputs: [d([3, 4], { nonContiguous: true }), d([4, 2])],
      js: (a, b) => a.matmul(b),
      py: 'lambda a, b: a @ b',
    },
    {
      name: `matmul batched broadcast ${dtype}`,
      inputs: [d([2, 1, 3, 4]), d([5, 4, 2], { nonContiguous: true })],
      js: (a, b) => a.matmul(b),
      py: 'lambda a, b: a @ b',
    },
    {
      name: `matmul batched @ 1-d ${dtype}`,
      inputs: [d([2, 3, 4]), d([4])],
      js: (a, b) => [a.matmul(b), b.matmul(a.mT)],
      py: 'lambda a, b: (a @ b, b @ a.mT)',
    },
    { name: `mm ${dtype}`, inputs: [d([3, 5]), d([5, 2])], js: (a, b) => a.mm(b), py: 'lambda a, b: a.mm(b)' },
    {
      name: `bmm ${dtype}`,
      inputs: [d([2, 3, 4]), d([2, 4, 3], { nonContiguous: true })],
      js: (a, b) => a.bmm(b),
      py: 'lambda a, b: a.bmm(b)',
    },
    {
      name: `outer ${dtype}`,
      inputs: [d([3]), d([4])],
      js: (a, b) => a.outer(b),
      py: 'lambda a, b: torch.outer(a, b)',
    },
    {
      name: `addmm beta/alpha ${dtype}`,
      inputs: [d([3]), d([2, 4]), d([4, 3])],
      js: (c, a, b) => torch.addmm(c, a, b, { beta: 0.5, alpha: -2 }),
      py: 'lambda c, a, b: torch.addmm(c, a, b, beta=0.5, alpha=-2)',
    },
    {
      name: `addmm defaults ${dtype}`,
      inputs: [d([2, 3]), d([2, 4], { nonContiguous: true }), d([4, 3])],
      js: (c, a, b) => torch.addmm(c, a, b),
      py: 'lambda c, a, b: torch.addmm(c, a, b)',
    },
    {
      name: `einsum matrix product ${dtype}`,
      inputs: [d([3, 4]), d([4, 5])],
      js: (a, b) => torch.einsum('ij,jk->ik', a, b),
      py: "lambda a, b: torch.einsum('ij,jk->ik', a, b)",
    },
    {
      name: `einsum attention scores ${dtype}`,
      inputs: [d([2, 2, 3, 4]), d([2, 2, 5, 4])],
      js: (q, k) => torch.einsum('bhqd,bhkd->bhqk', q, k),
      py: "lambda q, k: torch.einsum('bhqd,bhkd->bhqk', q, k)",
    },
    {
      name: `einsum trace, diagonal, sum, outer ${dtype}`,
      inputs: [d([4, 4]), d([3])],
      js: (a, v) => [
        torch.einsum('ii', a),
        torch.einsum('ii->i', a),
        torch.einsum('ij->', a),
        torch.einsum('i,j->ij', v, v),
        torch.einsum('ij->ji', a),
      ],
      py:
        "lambda a, v: (torch.einsum('ii', a), torch.einsum('ii->i', a), torch.einsum('ij->', a), " +
        "torch.einsum('i,j->ij', v, v), torch.einsum('ij->ji', a))",
    },
    {
      name: `einsum ellipsis batched ${dtype}`,
      inputs: [d([2, 3, 4]), d([4, 2], { nonContiguous: true })],
      js: (a, b) => torch.einsum('...ij,jk->...ik', a, b),
      py: "lambda a, b: torch.einsum('...ij,jk->...ik', a, b)",
    },
    {
      name: `einsum three operands ${dtype}`,
      inputs: [d([2, 3]), d([3, 4]), d([4])],
      js: (a, b, c) => torch.einsum('ij,jk,k->i', a, b, c),
      py: "lambda a, b, c: torch.einsum('ij,jk,k->i', a, b, c)",
    },
    {
      name: `linalg.eigh eigenvalues and reconstruction ${dtype}`,
      inputs: [d([4, 4])],
      js: (a) => {
        const { eigenvalues: w, eigenvectors: v } = linalg.eigh(a.add(a.mT));
        return [w, v.mul(w.unsqueeze(-2)).matmul(v.mT)];
      },
      py: 'lambda a: (lambda w, v: (w, (v * w.unsqueeze(-2)) @ v.mT))(*torch.linalg.eigh(a + a.mT))',
      ...tol,
    },
    {
      name: `linalg.eigh batched, uplo U ${dtype}`,
      inputs: [d([2, 3, 3])],
      js: (a) => linalg.eigh(a, 'U').eigenvalues,
      py: "lambda a: torch.linalg.eigh(a, UPLO='U').eigenvalues",
      ...tol,
    },
    {
      name: `linalg.eigvalsh ${dtype}`,
      inputs: [d([4, 4], { nonContiguous: true })],
      js: (a) => [linalg.eigvalsh(a.add(a.mT)), linalg.eigvalsh(a, 'U')],
      py: "lambda a: (torch.linalg.eigvalsh(a + a.mT), torch.linalg.eigvalsh(a, UPLO='U'))",
      ...tol,
    },
    {
      name: `linalg.vectorNorm ${dtype}`,
      inputs: [d([3, 4])],
      js: (a) => [
        linalg.vectorNorm(a),
        linalg.vectorNorm(a, 1, 1),
        linalg.vectorNorm(a, Infinity, [0, 1]),
        linalg.vectorNorm(a, 3, 0, true),
      ],
      py:
        'lambda a: (torch.linalg.vector_norm(a), torch.linalg.vector_norm(a, 1, 1), ' +
        "torch.linalg.vector_norm(a, float('inf'), (0, 1)), torch.linalg.vector_norm(a, 3, 0, keepdim=True))",
    },
    {
      name: `linalg.matrixNorm fro, nuc, 2 ${dtype}`,
      inputs: [d([2, 4, 3])],
      js: (a) => [linalg.matrixNorm(a), linalg.matrixNorm(a, 'nuc'), linalg.matrixNorm(a, 2)],
      py: "lambda a: (torch.linalg.matrix_norm(a), torch.linalg.matrix_norm(a, 'nuc'), torch.linalg.matrix_norm(a, 2))",
      ...tol,
    },
    {
      name: `linalg.matrixNorm 1, -inf, dims, keepdim ${dtype}`,
      inputs: [d([3, 4, 2])],
      js: (a) => [linalg.matrixNorm(a, 1), linalg.matrixNorm(a, -Infinity), linalg.matrixNorm(a, 'fro', [0, 2], true)],
      py:
        "lambda a: (torch.linalg.matrix_norm(a, 1), torch.linalg.matrix_norm(a, float('-inf')), " +
        "torch.linalg.matrix_norm(a, 'fro', dim=(0, 2), keepdim=True))",
    },
    {
      name: `linalg.norm ${dtype}`,
      inputs: [d([3, 4]), d([5])],
      js: (a, v) => [
        linalg.norm(a),
        linalg.norm(a, 'fro'),
        linalg.norm(a, 'nuc'),
        linalg.norm(a, 1),
        linalg.norm(a, 2, 1),
        linalg.norm(v, 1),
        linalg.norm(v, Infinity),
        linalg.norm(a, undefined, [0, 1]),
      ],
      py:
        "lambda a, v: (torch.linalg.norm(a), torch.linalg.norm(a, 'fro'), torch.linalg.norm(a, 'nuc'), " +
        "torch.linalg.norm(a, 1), torch.linalg.norm(a, 2, 1), torch.linalg.norm(v, 1), torch.linalg.norm(v, float('inf')), " +
        'torch.linalg.norm(a, dim=(0, 1)))',
      ...tol,
    },
    {
      name: `linalg.solve matrix rhs ${dtype}`,
      inputs: [d([4, 4]), d([4, 2])],
      js: (a, b) => linalg.solve(wellConditioned(a), b),
      py: `lambda a, b: torch.linalg.solve(${WELL_PY}, b)`,
      ...tol,
    },
    {
      name: `linalg.solve batched, vector rhs ${dtype}`,
      inputs: [d([2, 3, 3], { nonContiguous: true }), d([2, 3])],
      js: (a, b) => linalg.solve(wellConditioned(a), b),
      py: `lambda a, b: torch.linalg.solve(${WELL_PY}, b)`,
      ...tol,
    },
    {
      name: `linalg.cholesky ${dtype}`,
      inputs: [d([2, 4, 4])],
      js: (a) => linalg.cholesky(spd(a)),
      py: `lambda a: torch.linalg.cholesky(${SPD_PY})`,
      ...tol,
    },
    {
      name: `linalg.cholesky of a non-PD matrix is rejected ${dtype}`,
      inputs: [{ shape: [2, 2], dtype, values: [1, 2, 2, 1] }],
      js: (a) => linalg.cholesky(a),
      py: 'lambda a: torch.linalg.cholesky(a)',
    },
    {
      name: `linalg.inv ${dtype}`,
      inputs: [d([3, 3])],
      js: (a) => linalg.inv(wellConditioned(a)),
      py: `lambda a: torch.linalg.inv(${WELL_PY})`,
      ...tol,
    },
    {
      name: `linalg.svd reduced: S and reconstruction ${dtype}`,
      inputs: [d([4, 3])],
      js: (a) => {
        const { U, S, Vh } = linalg.svd(a, false);
        return [S, U.mul(S.unsqueeze(-2)).matmul(Vh)];
      },
      py: 'lambda a: (lambda U, S, Vh: (S, (U * S.unsqueeze(-2)) @ Vh))(*torch.linalg.svd(a, full_matrices=False))',
      ...tol,
    },
    {
      name: `linalg.svd full matrices: shapes and orthogonality ${dtype}`,
      inputs: [{ shape: [2, 3, 5], dtype }],
      js: (a) => {
        const { U, S, Vh } = linalg.svd(a);
        return [S, U.matmul(U.mT), Vh.matmul(Vh.mT)];
      },
      py: 'lambda a: (lambda U, S, Vh: (S, U @ U.mT, Vh @ Vh.mT))(*torch.linalg.svd(a))',
      ...tol,
      atol: 1e-5,
    },
  );
}

cases.push({
  name: 'linalg.norm with ord but no dim on 3-d rejected',
  inputs: [g([2, 3, 4])],
  js: (a) => linalg.norm(a, 2),
  py: 'lambda a: torch.linalg.norm(a, 2)',
});
cases.push({
  name: 'matmul int64',
  inputs: [
    { shape: [2, 3], kind: 'int', dtype: 'int64' },
    { shape: [3, 2], kind: 'int', dtype: 'int64' },
  ],
  js: (a, b) => a.matmul(b),
  py: 'lambda a, b: a @ b',
});
cases.push({
  name: 'matmul shape mismatch rejected',
  inputs: [g([2, 3]), g([2, 3])],
  js: (a, b) => a.matmul(b),
  py: 'lambda a, b: a @ b',
});
cases.push({
  name: 'matmul dtype mismatch rejected',
  inputs: [g([2, 3]), g([3, 2], { dtype: 'float64' })],
  js: (a, b) => a.matmul(b),
  py: 'lambda a, b: a @ b',
});

differential('linalg', cases);
