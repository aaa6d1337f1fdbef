"""Benchmark 1, Python twin of bench/overhead.ts: per-op overhead on small tensors."""

import torch

from common import DTYPES, Case, main


def scale(quick: bool, n: int) -> int:
    return max(1, round(n / 5)) if quick else n


def setup(c: dict):
    opts = {"device": c["device"], "dtype": DTYPES[c["dtype"]]}
    n = c["chainSize"]
    s = c["tinySize"]
    a = torch.randn(n, n, **opts)
    b = torch.randn(n, n, **opts)
    d = torch.rand(n, n, **opts).add(1)
    x = torch.randn(s, s, **opts)
    y = torch.randn(s, s, **opts)

    def chain(t):
        for _ in range(4):
            t = t.add(b)
            t = t.mul(b)
            t = t.sub(b)
            t = t.div(d)
            t = t.tanh()
        return t

    def chain20():
        chain(a)

    def tiny_add():
        x.add(y)

    def tiny_add_x100():
        for _ in range(100):
            x.add(y)

    q = c["quick"]
    aten_add = torch.ops.aten.add.Tensor
    cases = [
        Case("chain20", f"chain of 20 elementwise ops, {n}x{n}", chain20, scale(q, 200), scale(q, 100), ops=20),
        Case("tiny_add", f"add {s}x{s}, freed at once", tiny_add, scale(q, 5000), scale(q, 2000), ops=1),
        Case("tiny_add_x100", f"100 x add {s}x{s}, one tidy", tiny_add_x100, scale(q, 50), scale(q, 20), ops=100),
        # Reference points for the breakdown (Python only).
        Case("py_empty_call", "torch.is_grad_enabled() (empty C call)", torch.is_grad_enabled,
             scale(q, 20000), scale(q, 20000), ops=1),
        Case("py_ops_aten_add", f"torch.ops.aten.add.Tensor {s}x{s} (generic op path)", lambda: aten_add(x, y),
             scale(q, 5000), scale(q, 2000), ops=1),
    ]
    return cases, lambda: None


if __name__ == "__main__":
    main(setup, {"default_dtype": "float32", "chainSize": 64, "tinySize": 2})
