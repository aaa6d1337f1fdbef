"""Reference side of the module tests: builds each case's torch.nn module,
loads the state dict the JS side used (strict: the key names must match),
runs forward and backward with the same input and output gradient, and
returns the output, the input gradient and every parameter's gradient.
Usage: python3 module_ref.py cases.json results.json
"""
import json
import math
import sys

import torch

DT = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64}


def tensor(spec):
    return torch.tensor(spec["data"], dtype=DT[spec["dtype"]]).reshape(spec["shape"])


def enc(t):
    if t is None:
        return None
    t = t.detach()
    return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "data": t.reshape(-1).tolist()}


def run(case):
    dtype = DT[case["dtype"]]
    module = eval(case["py"], {"torch": torch, "nn": torch.nn, "math": math}).to(dtype)
    module.train(case["training"])
    module.load_state_dict({k: tensor(v) for k, v in case["state"].items()}, strict=True)
    x = tensor(case["input"])
    if x.dtype.is_floating_point:
        x.requires_grad_(True)
    y = module(x)
    y.backward(tensor(case["gradOutput"]))
    return {
        "output": enc(y),
        "inputGrad": enc(x.grad) if x.requires_grad else None,
        "paramGrads": {n: enc(p.grad) for n, p in module.named_parameters()},
        "state": {k: enc(v) for k, v in module.state_dict().items()},
    }


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    out = []
    for c in cases:
        try:
            out.append(run(c))
        except Exception as e:
            out.append({"error": f"{type(e).__name__}: {e}"})
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
