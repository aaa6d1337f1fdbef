"""Reference side of the plain (non-differential) tests: runs a Python snippet.

Reads a JSON file {"code": str, "tensors": {name: {shape, dtype, data}}},
builds the named tensors, executes the code with torch, F (torch.nn.functional)
and math in scope, and writes the value the code left in `result` as JSON
(tensors as {"shape", "dtype", "data"}, non-finite floats as strings; tuples as
lists). Usage: python3 snippet.py in.json out.json
"""
import json
import math
import sys

import torch
import torch.nn.functional as F

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


def decode(v):
    return float(v) if isinstance(v, str) else v


def make(spec):
    dtype = DTYPES[spec["dtype"]]
    data = [decode(x) for x in spec["data"]]
    base = torch.tensor(data, dtype=torch.float64 if dtype.is_floating_point else torch.int64)
    return base.reshape(spec["shape"]).to(dtype)


def finite(x):
    return x if not isinstance(x, float) or math.isfinite(x) else str(x)


def encode(v):
    if torch.is_tensor(v):
        t = v.detach().cpu()
        dtype = str(t.dtype).replace("torch.", "")
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        return {"shape": list(t.shape), "dtype": dtype, "data": [finite(x) for x in t.reshape(-1).tolist()]}
    if isinstance(v, (list, tuple)):
        return [encode(x) for x in v]
    if isinstance(v, dict):
        return {str(k): encode(x) for k, x in v.items()}
    if isinstance(v, float):
        return finite(v)
    if isinstance(v, torch.dtype):
        return str(v).replace("torch.", "")
    return v


def main():
    with open(sys.argv[1]) as f:
        payload = json.load(f)
    ns = {"torch": torch, "F": F, "math": math}
    for name, spec in payload.get("tensors", {}).items():
        ns[name] = make(spec)
    exec(payload["code"], ns)
    with open(sys.argv[2], "w") as f:
        json.dump(encode(ns.get("result")), f)


if __name__ == "__main__":
    main()
