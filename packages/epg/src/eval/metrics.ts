// The metrics of spec §8 on Inception pool_3 features: FID (Fréchet distance
// between Gaussians fitted to the features), improved precision and recall
// (the ADM evaluator's ManifoldEstimator, k = 3), and KID (optional). All
// statistics are float64.
import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

/** Gaussian statistics of a feature set: mean [D] and unbiased covariance [D, D], float64. */
export interface FeatureStats {
  mu: Tensor;
  sigma: Tensor;
}

function asMatrix(features: Tensor, what: string): void {
  if (features.ndim !== 2) throw new TypeError(`${what}: expected features [N, D], got shape [${features.shape}]`);
}

/**
 * μ and Σ of features [N, D] as numpy does them: μ = mean over rows,
 * Σ = (X − μ)ᵀ(X − μ) / (N − 1) (np.cov(X, rowvar=False)). Accumulated over row
 * chunks in float64, so N = 50k needs no second copy of X.
 */
export function statistics(features: Tensor, chunkRows = 8192): FeatureStats {
  asMatrix(features, 'statistics');
  const [n, d] = features.shape as [number, number];
  if (n < 2) throw new RangeError(`statistics: need at least 2 feature vectors, got ${n}`);
  return torch.tidy(() => {
    const mu = torch.noGrad(() => features.to('float64').sum(0)).div(n);
    let sigma = torch.zeros([d, d], { dtype: 'float64', device: features.device });
    for (let s = 0; s < n; s += chunkRows) {
      const next = torch.tidy(() => {
        const xc = features
          .narrow(0, s, Math.min(chunkRows, n - s))
          .to('float64')
          .sub(mu);
        return sigma.add(xc.t().matmul(xc));
      });
      sigma.dispose();
      sigma = next;
    }
    return { mu, sigma: sigma.div(n - 1) };
  });
}

/** Eigen-decomposition of a symmetric PSD matrix (symmetrised first): eigenvalues clamped at 0, eigenvectors. */
function psdEigh(a: Tensor): { lambda: Tensor; v: Tensor } {
  const { eigenvalues, eigenvectors } = torch.linalg.eigh(a.add(a.t()).div(2));
  return { lambda: eigenvalues.clampMin(0), v: eigenvectors };
}

/** Singular values of a matrix (linalg.svdvals). */
function svdvals(a: Tensor): Tensor {
  return torch.aten.linalg_svdvals(a, null);
}

/**
 * Fréchet distance between N(μ1, Σ1) and N(μ2, Σ2) (Heusel et al. 2017),
 * ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1Σ2)^½, in float64.
 *
 * tr (Σ1Σ2)^½ is the nuclear norm of A = Λ1^½ V1ᵀ V2 Λ2^½, with Σi = Vi Λi Viᵀ
 * from linalg.eigh (eigenvalues clamped at 0): AᵀA = Λ2^½V2ᵀ Σ1 V2Λ2^½ has the
 * eigenvalues of Σ1Σ2, so the singular values of A are their square roots.
 * Taking them from an SVD of A, rather than eigenvalues of the symmetric
 * √Σ1 Σ2 √Σ1 and their square roots, keeps the small ones accurate to
 * ε·‖A‖ instead of √(ε·‖Σ1Σ2‖): FID(x, x) comes out at ~1e-13 of tr Σ rather
 * than ~1e-9. It is stable for rank-deficient and near-singular covariances,
 * where scipy.linalg.sqrtm (pytorch-fid, clean-fid, ADM) needs an ε·I offset
 * or returns complex parts, and agrees with scipy to < 1e-6 relative where
 * scipy is well defined (tests).
 */
export function frechetDistance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor): number {
  const d = mu1.shape[0]!;
  for (const [t, shape, what] of [
    [mu1, [d], 'mu1'],
    [mu2, [d], 'mu2'],
    [sigma1, [d, d], 'sigma1'],
    [sigma2, [d, d], 'sigma2'],
  ] as const)
    if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i]))
      throw new TypeError(`frechetDistance: ${what} has shape [${t.shape}], expected [${shape}]`);
  return torch.tidy(() =>
    torch.noGrad(() => {
      const s1 = sigma1.to('float64');
      const s2 = sigma2.to('float64');
      const e1 = psdEigh(s1);
      const e2 = psdEigh(s2);
      const a = e1.v.t().matmul(e2.v).mul(e1.lambda.sqrt().unsqueeze(1)).mul(e2.lambda.sqrt().unsqueeze(0));
      const trSqrt = svdvals(a).sum().item();
      const meanTerm = mu1.to('float64').sub(mu2.to('float64')).square().sum().item();
      return meanTerm + s1.diagonal().sum().item() + s2.diagonal().sum().item() - 2 * trSqrt;
    }),
  );
}

/** FID between two sets of statistics. */
export function fid(a: FeatureStats, b: FeatureStats): number {
  return frechetDistance(a.mu, a.sigma, b.mu, b.sigma);
}

// ---------------------------------------------------------------------------
// Improved precision and recall (Kynkäänniemi et al. 2019) as the ADM
// evaluator's ManifoldEstimator computes them (guided-diffusion
// evaluations/evaluator.py, nhood_sizes=(3,)):
//  - distances are squared Euclidean, ‖u‖² − 2u·v + ‖v‖², clamped at 0;
//  - the radius of each feature is the distance to its k-th nearest neighbour
//    in its own set, the point itself excluded (index k of the sorted row,
//    whose index 0 is the point itself);
//  - a feature is in the other set's manifold if its distance to some member
//    of that set is ≤ that member's radius;
//  - precision = share of samples in the reference manifold,
//    recall = share of references in the sample manifold.
// ADM computes the distance blocks in float16 when they are all finite (on the
// GPU) and float32 otherwise; we use float32 by default (float64 on request),
// so values can differ from ADM's in the third decimal on borderline points.

export interface PrecisionRecallOptions {
  /** Neighbourhood size (default 3, ADM's). */
  k?: number;
  /** Rows per distance block (default 2048). */
  batchSize?: number;
  /** Arithmetic of the distances (default 'float32', as ADM's fallback path). */
  dtype?: 'float32' | 'float64';
}

function sqNorms(x: Tensor): Tensor {
  return x.square().sum(1);
}

/** Squared distances between the rows of a [n, D] and b [m, D]: [n, m], clamped at 0 as ADM does. */
export function pairwiseSquaredDistances(a: Tensor, b: Tensor): Tensor {
  return torch.tidy(() => sqNorms(a).unsqueeze(1).sub(a.matmul(b.t()).mul(2)).add(sqNorms(b).unsqueeze(0)).clampMin(0));
}

/** k-NN radii (squared distances) of each row within its own set, batched over rows. */
export function manifoldRadii(features: Tensor, opts: PrecisionRecallOptions = {}): Tensor {
  asMatrix(features, 'manifoldRadii');
  const k = opts.k ?? 3;
  const bs = opts.batchSize ?? 2048;
  const n = features.shape[0]!;
  if (n <= k) throw new RangeError(`manifoldRadii: need more than k = ${k} features, got ${n}`);
  return torch.tidy(() =>
    torch.noGrad(() => {
      const x = features.to(opts.dtype ?? 'float32');
      const parts: Tensor[] = [];
      for (let s = 0; s < n; s += bs) {
        parts.push(
          torch.tidy(() => {
            const d = pairwiseSquaredDistances(x.narrow(0, s, Math.min(bs, n - s)), x);
            // The (k+1) smallest, ascending; index 0 is the point itself.
            return d.topk(k + 1, 1, false, true).values.select(1, k);
          }),
        );
      }
      return torch.cat(parts, 0);
    }),
  );
}

/**
 * Improved precision and recall of samples against references, as the ADM
 * evaluator's compute_prec_recall: radii within each set, then one blocked
 * pass over the cross distances.
 */
export function precisionRecall(
  refFeatures: Tensor,
  sampleFeatures: Tensor,
  opts: PrecisionRecallOptions = {},
): { precision: number; recall: number } {
  asMatrix(refFeatures, 'precisionRecall (references)');
  asMatrix(sampleFeatures, 'precisionRecall (samples)');
  const bs = opts.batchSize ?? 2048;
  return torch.tidy(() =>
    torch.noGrad(() => {
      const dtype = opts.dtype ?? 'float32';
      const ref = refFeatures.to(dtype);
      const smp = sampleFeatures.to(dtype);
      const refRadii = manifoldRadii(ref, opts);
      const smpRadii = manifoldRadii(smp, opts);
      const nr = ref.shape[0]!;
      const ns = smp.shape[0]!;
      let refIn = torch.zeros([nr], { dtype: 'bool' });
      let smpIn = torch.zeros([ns], { dtype: 'bool' });
      for (let r = 0; r < nr; r += bs) {
        const rn = Math.min(bs, nr - r);
        for (let s = 0; s < ns; s += bs) {
          const sn = Math.min(bs, ns - s);
          const [nextRef, nextSmp] = torch.tidy(() => {
            const d = pairwiseSquaredDistances(ref.narrow(0, r, rn), smp.narrow(0, s, sn));
            // Reference i is in the sample manifold if some sample j has d_ij ≤ radius_j (recall) …
            const refHit = d.le(smpRadii.narrow(0, s, sn).unsqueeze(0)).any(1);
            // … and sample j is in the reference manifold if some reference i has d_ij ≤ radius_i (precision).
            const smpHit = d.le(refRadii.narrow(0, r, rn).unsqueeze(1)).any(0);
            const a = torch.cat([
              refIn.narrow(0, 0, r),
              refIn.narrow(0, r, rn).logicalOr(refHit),
              refIn.narrow(0, r + rn, nr - r - rn),
            ]);
            const b = torch.cat([
              smpIn.narrow(0, 0, s),
              smpIn.narrow(0, s, sn).logicalOr(smpHit),
              smpIn.narrow(0, s + sn, ns - s - sn),
            ]);
            return [a, b];
          });
          refIn.dispose();
          smpIn.dispose();
          refIn = nextRef;
          smpIn = nextSmp;
        }
      }
      const precision = smpIn.to('float64').mean().item();
      const recall = refIn.to('float64').mean().item();
      return { precision, recall };
    }),
  );
}

// ---------------------------------------------------------------------------

export interface KidOptions {
  /** Number of random subsets (default 100, as clean-fid and StyleGAN2-ADA). */
  numSubsets?: number;
  /** Subset size cap (default 1000); the size is min(cap, N_ref, N_samples). */
  maxSubsetSize?: number;
  /** Seed of the subset draws (default 0). */
  seed?: number;
}

/**
 * Kernel Inception Distance (Bińkowski et al. 2018) as clean-fid /
 * StyleGAN2-ADA / torch-fidelity compute it: the unbiased MMD² estimate with
 * the cubic polynomial kernel k(x, y) = (xᵀy / D + 1)³, averaged over random
 * subsets of m features from each set (drawn without replacement). Returns the
 * mean and the standard deviation over subsets.
 */
export function kid(refFeatures: Tensor, sampleFeatures: Tensor, opts: KidOptions = {}): { mean: number; std: number } {
  asMatrix(refFeatures, 'kid (references)');
  asMatrix(sampleFeatures, 'kid (samples)');
  const numSubsets = opts.numSubsets ?? 100;
  const d = refFeatures.shape[1]!;
  const m = Math.min(refFeatures.shape[0]!, sampleFeatures.shape[0]!, opts.maxSubsetSize ?? 1000);
  if (m < 2) throw new RangeError(`kid: need at least 2 features in each set`);
  using gen = new torch.Generator('cpu', opts.seed ?? 0);
  const values: number[] = [];
  torch.tidy(() =>
    torch.noGrad(() => {
      const ref = refFeatures.to('float64');
      const smp = sampleFeatures.to('float64');
      for (let i = 0; i < numSubsets; i++) {
        values.push(
          torch.tidy(() => {
            const x = smp.indexSelect(0, torch.randperm(smp.shape[0]!, { generator: gen }).narrow(0, 0, m));
            const y = ref.indexSelect(0, torch.randperm(ref.shape[0]!, { generator: gen }).narrow(0, 0, m));
            const kxx = x.matmul(x.t()).div(d).add(1).pow(3);
            const kyy = y.matmul(y.t()).div(d).add(1).pow(3);
            const kxy = x.matmul(y.t()).div(d).add(1).pow(3);
            const a = kxx.sum().item() + kyy.sum().item() - kxx.diagonal().sum().item() - kyy.diagonal().sum().item();
            return a / (m * (m - 1)) - (2 * kxy.sum().item()) / (m * m);
          }),
        );
      }
    }),
  );
  const mean = values.reduce((s, v) => s + v, 0) / values.length;
  const std = Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / values.length);
  return { mean, std };
}
