"""Benchmark 2b, Python twin of bench/conv.ts: conv2d forward throughput + reference matmul."""

import torch
import torch.nn.functional as F

from common import DTYPES, Case, main
from matmul import matmul_inner


def setup(c: dict):
    opts = {"device": c["device"], "dtype": DTYPES[c["dtype"]]}
    n, ch, hw, k = c["batch"], c["channels"], c["hw"], c["kernel"]
    m = c["refMatmul"]
    x = torch.randn(n, ch, hw, hw, **opts)
    w = torch.randn(ch, ch, k, k, **opts)
    a = torch.randn(m, m, **opts)
    b = torch.randn(m, m, **opts)
    cuda = c["device"] == "cuda"
    cases = [
        Case(
            "conv2d",
            f"conv2d N={n} C={ch}->{ch} {hw}x{hw} {k}x{k} {c['dtype']}",
            lambda: F.conv2d(x, w, None, padding=1),
            10 if cuda else 2,
            20 if cuda else 1,
            flops=2 * n * ch * hw * hw * ch * k * k,
        ),
        Case(
            f"matmul_{m}",
            f"reference matmul {m}^3 {c['dtype']}",
            lambda: a.matmul(b),
            10 if cuda else 2,
            matmul_inner(c["device"], m),
            flops=2 * m**3,
        ),
    ]
    return cases, lambda: None


if __name__ == "__main__":
    main(
        setup,
        {
            "default_dtype": "float32",
            "cuda_dtype": "bfloat16",
            "batch": 32,
            "channels": 64,
            "hw": 56,
            "kernel": 3,
            "refMatmul": {"cpu": 2048, "cuda": 8192},
        },
    )
