"""The official time embedding (AMAP-ML/EPG rcm/vit.py::timestep_embedding, as
EPG_SPEC.md §2 describes it): frequencies exp(-ln(1e4) * arange(half) / half) in
float32 on the CPU, embedding [cos(t f), sin(t f)] in float32. Also the float64
variant a float64 model uses (the same order, in float64).

Usage: python3 time_embedding_ref.py in.json out.json
in: {"widths": [...], "t": [...]}; out: per width the float32 and float64
frequencies and the float32 embedding of t (t given as float32 values).
"""
import json
import math
import sys

import torch


def freqs(dim, dtype):
    half = dim // 2
    return torch.exp(-math.log(10000) * torch.arange(start=0, end=half, dtype=dtype) / half)


def embedding(t, dim, dtype):
    args = t.to(dtype)[:, None] * freqs(dim, dtype)[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def main():
    with open(sys.argv[1]) as fh:
        c = json.load(fh)
    t32 = torch.tensor(c["t"], dtype=torch.float32)
    t64 = torch.tensor(c["t"], dtype=torch.float64)
    out = {}
    for w in c["widths"]:
        out[str(w)] = {
            "f32": freqs(w, torch.float32).tolist(),
            "f64": freqs(w, torch.float64).tolist(),
            "emb32": embedding(t32, w, torch.float32).reshape(-1).tolist(),
            "emb64": embedding(t64, w, torch.float64).reshape(-1).tolist(),
        }
    with open(sys.argv[2], "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main()
