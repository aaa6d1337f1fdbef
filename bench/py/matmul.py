"""Benchmark 2a, Python twin of bench/matmul.ts: large square matmul throughput."""

import torch

from common import DTYPES, Case, main


def matmul_inner(device: str, n: int) -> int:
    if device == "cuda":
        return 20 if n >= 8192 else 50
    return 4 if n <= 1024 else 1


def setup(c: dict):
    opts = {"device": c["device"], "dtype": DTYPES[c["dtype"]]}
    cases = []
    for n in c["sizes"]:
        a = torch.randn(n, n, **opts)
        b = torch.randn(n, n, **opts)
        cases.append(
            Case(
                f"matmul_{n}",
                f"matmul {n}x{n}x{n} {c['dtype']}",
                lambda a=a, b=b: a.matmul(b),
                10 if c["device"] == "cuda" else 2,
                matmul_inner(c["device"], n),
                flops=2 * n**3,
            )
        )
    return cases, lambda: None


if __name__ == "__main__":
    main(setup, {"default_dtype": "float32", "cuda_dtype": "bfloat16", "sizes": {"cpu": [1024, 2048], "cuda": [4096, 8192]}})
