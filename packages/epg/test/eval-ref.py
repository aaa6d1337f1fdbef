"""Independent references for the evaluation tests (packages/epg/test/eval-*.test.ts),
written from the published implementations with numpy / scipy / torch:

  fid        pytorch-fid's calculate_frechet_distance (scipy.linalg.sqrtm), verbatim
             logic, and the eigenvalue form in float64 numpy
  stats      mu = mean, sigma = np.cov(rowvar=False)
  pr         guided-diffusion evaluations/evaluator.py ManifoldEstimator
             (manifold_radii + evaluate_pr), numpy, float32 or float64
  kid        clean-fid kernel_distance with all features in one subset
  inception  torch.jit.load(default_1.pt) on images resized the same way as ours
  npz        reads every array of a .npz written by TypeScript and writes one back

Usage: python3 eval-ref.py CMD in.npz out.npz [json args]
Inputs and outputs travel as .npz files, so the npz reader/writer in TypeScript
is exercised in both directions by every call.
"""
import json
import sys

import numpy as np


def frechet_pytorch_fid(mu1, sigma1, mu2, sigma2, eps=1e-6):
    # pytorch-fid src/pytorch_fid/fid_score.py calculate_frechet_distance
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_eig(mu1, sigma1, mu2, sigma2):
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = r @ sigma2 @ r
    lam = np.linalg.eigvalsh((m + m.T) / 2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(np.clip(lam, 0, None)).sum())


def pairwise(u, v):
    # evaluator.py _batch_pairwise_distances (float32 fallback path)
    nu = np.sum(np.square(u), axis=1).reshape(-1, 1)
    nv = np.sum(np.square(v), axis=1).reshape(1, -1)
    return np.maximum(nu - 2 * (u @ v.T) + nv, 0.0)


def manifold_radii(f, k, bs):
    n = len(f)
    radii = np.zeros([n, 1], dtype=f.dtype)
    seq = np.arange(k + 1, dtype=np.int32)
    for b1 in range(0, n, bs):
        e1 = min(b1 + bs, n)
        d = pairwise(f[b1:e1], f)
        radii[b1:e1, :] = np.partition(d, seq, axis=1)[:, [k]]
    return radii


def evaluate_pr(f1, r1, f2, r2, bs):
    s1 = np.zeros([len(f1), r2.shape[1]], dtype=bool)
    s2 = np.zeros([len(f2), r1.shape[1]], dtype=bool)
    for b1 in range(0, len(f1), bs):
        e1 = b1 + bs
        for b2 in range(0, len(f2), bs):
            e2 = b2 + bs
            d = pairwise(f1[b1:e1], f2[b2:e2])[..., None]
            s1[b1:e1] |= np.any(d <= r2[b2:e2], axis=1)
            s2[b2:e2] |= np.any(d <= r1[b1:e1][:, None], axis=0)
    return float(np.mean(s2.astype(np.float64), axis=0)[0]), float(np.mean(s1.astype(np.float64), axis=0)[0])


def kid_all(f1, f2):
    # clean-fid features.py kernel_distance, one subset holding every feature
    n = f1.shape[1]
    m = min(f1.shape[0], f2.shape[0])
    x, y = f2[:m], f1[:m]
    a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
    b = (x @ y.T / n + 1) ** 3
    return float(((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m)


def main():
    cmd, inp, outp = sys.argv[1], sys.argv[2], sys.argv[3]
    args = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    z = np.load(inp)
    out = {}
    if cmd == 'fid':
        for i in range(args['cases']):
            a = [z[f'{k}{i}'] for k in ('mu1_', 'sigma1_', 'mu2_', 'sigma2_')]
            out[f'scipy{i}'] = np.array(frechet_pytorch_fid(*a))
            out[f'eig{i}'] = np.array(frechet_eig(*a))
    elif cmd == 'stats':
        f = z['feats']
        out['mu'] = np.mean(f, axis=0)
        out['sigma'] = np.cov(f, rowvar=False)
    elif cmd == 'pr':
        dt = np.float64 if args.get('dtype') == 'float64' else np.float32
        f1, f2 = z['ref'].astype(dt), z['smp'].astype(dt)
        k, bs = args.get('k', 3), args.get('bs', 10000)
        r1, r2 = manifold_radii(f1, k, bs), manifold_radii(f2, k, bs)
        p, r = evaluate_pr(f1, r1, f2, r2, bs)
        out['precision'], out['recall'] = np.array(p), np.array(r)
        out['radii_ref'] = r1[:, 0]
    elif cmd == 'kid':
        out['kid'] = np.array(kid_all(z['ref'], z['smp']))
    elif cmd == 'inception':
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(args.get('threads', torch.get_num_threads()))
        m = torch.jit.load(args['path'], map_location='cpu').eval()
        x = torch.from_numpy(z['images']).to(torch.float64)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        mode = args['resize']
        if x.shape[2:] != (299, 299):
            if mode == 'bicubic-aa':
                x = F.interpolate(x, size=(299, 299), mode='bicubic', align_corners=False, antialias=True).clamp(0, 255)
            elif mode == 'bilinear':
                x = F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False)
            elif mode == 'tf-bilinear':
                def tfmat(n_in, n_out):
                    a = np.zeros((n_out, n_in))
                    for o in range(n_out):
                        s = o * n_in / n_out
                        lo = int(np.floor(s))
                        hi = min(lo + 1, n_in - 1)
                        a[o, lo] += 1 - (s - lo)
                        a[o, hi] += s - lo
                    return torch.from_numpy(a)
                x = tfmat(x.shape[2], 299) @ x @ tfmat(x.shape[3], 299).T
        x = (x - 128) / 128 if args['range'] == 'tf' else x / 127.5 - 1
        with torch.inference_mode():
            out['feats'] = m(x.to(torch.float32)).double().numpy()
        out['resized'] = x[:, :, ::37, ::37].numpy()
    elif cmd == 'npz':
        for k in z.files:
            out[k] = z[k]
            out[k + '_sum'] = np.array(float(z[k].astype(np.float64).sum()))
            out[k + '_dtype'] = np.frombuffer(z[k].dtype.str.encode(), dtype=np.uint8)
        out['from_numpy_f4'] = (np.arange(24, dtype=np.float32) / 7).reshape(2, 3, 4)
        out['from_numpy_i8'] = np.array([-(2**40), 0, 7], dtype=np.int64)
        out['from_numpy_u1'] = np.arange(256, dtype=np.uint8).reshape(16, 16)
        out['from_numpy_scalar'] = np.array(3.25)
        out['from_numpy_empty'] = np.zeros((0, 5), dtype=np.float32)
        out['from_numpy_fortran'] = np.asfortranarray(np.arange(24, dtype=np.float64).reshape(2, 3, 4))
        if args.get('compressed'):
            np.savez_compressed(outp, **out)
            return
    else:
        raise SystemExit(f'unknown command {cmd}')
    np.savez(outp, **out)


if __name__ == '__main__':
    main()
