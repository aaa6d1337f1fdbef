"""Reference side of the differential tests: evaluates each case with PyTorch.

Reads a JSON file of cases written by test/harness.ts, builds the same inputs
(same values, dtypes, contiguity), evaluates the case's Python lambda, and,
for cases with gradients, backpropagates the given output gradients. Writes
outputs and input gradients as JSON (non-finite values as strings).
Usage: python3 torch_ref.py cases.json results.json
"""
import json
import math
import sys

import torch
import torch.nn.functional as F  # noqa: F401  (used by the cases' lambdas)

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


def decode(v):
    return float(v) if isinstance(v, str) else v


def encode_tensor(t):
    if t is None:
        return None
    t = t.detach().cpu()
    dtype = str(t.dtype).replace("torch.", "")
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    flat = t.reshape(-1).tolist()
    flat = [x if not isinstance(x, float) or math.isfinite(x) else str(x) for x in flat]
    return {"shape": list(t.shape), "dtype": dtype, "data": flat}


def make_input(spec):
    dtype = DTYPES[spec["dtype"]]
    shape = spec["shape"]
    data = [decode(x) for x in spec["data"]]
    if spec.get("nonContiguous") and len(shape) >= 2:
        t = torch.tensor(data, dtype=torch.float64 if dtype.is_floating_point else torch.int64)
        t = t.reshape(shape).to(dtype).transpose(-1, -2).contiguous().transpose(-1, -2)
    else:
        t = torch.tensor(data, dtype=torch.float64 if dtype.is_floating_point else torch.int64)
        t = t.reshape(shape).to(dtype)
    if spec.get("requiresGrad"):
        t.requires_grad_(True)
    return t


def run_case(case):
    inputs = [make_input(s) for s in case["inputs"]]
    fn = eval(case["py"], {"torch": torch, "F": F, "math": math})
    out = fn(*inputs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    result = {"outputs": [encode_tensor(o) if torch.is_tensor(o) else o for o in outs]}
    if case.get("gradOutputs"):
        grads = [make_input(g) for g in case["gradOutputs"]]
        diff = [(o, g) for o, g in zip(outs, grads) if torch.is_tensor(o) and o.requires_grad]
        torch.autograd.backward([o for o, _ in diff], [g for _, g in diff])
        result["grads"] = [encode_tensor(x.grad) if s.get("requiresGrad") else None for x, s in zip(inputs, case["inputs"])]
    return result


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    torch.manual_seed(0)
    results = []
    for case in cases:
        try:
            results.append(run_case(case))
        except Exception as e:  # reported per case on the JS side
            results.append({"error": f"{type(e).__name__}: {e}"})
    with open(sys.argv[2], "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
