"""Reference trajectories of torch.optim for the optimizer tests.

Each case: initial parameters, parameter groups (indices + hyper-parameters),
and a scripted gradient for every parameter at every step (None: no grad that
step), plus per-step learning rates per group. Returns the parameters after
each step. Also: clip_grad_norm_ and GradScaler cases.
Usage: python3 optim_ref.py cases.json results.json
"""
import json
import sys

import torch

torch.set_default_dtype(torch.float64)


def t(x):
    return torch.tensor(x, dtype=torch.float64)


def optimizer_case(c):
    params = [t(p).requires_grad_(True) for p in c["params"]]
    groups = [dict(g["hyper"], params=[params[i] for i in g["params"]]) for g in c["groups"]]
    opt = getattr(torch.optim, c["optimizer"])(groups, **c.get("defaults", {}))
    traj = []
    for k, grads in enumerate(c["grads"]):
        for p, g in zip(params, grads):
            p.grad = None if g is None else t(g)
        for gi, group in enumerate(opt.param_groups):
            group["lr"] = c["lrs"][k][gi]
        opt.step()
        traj.append([p.detach().tolist() for p in params])
    return {"trajectory": traj}


def clip_case(c):
    params = [t(p).requires_grad_(True) for p in c["params"]]
    for p, g in zip(params, c["grads"]):
        p.grad = t(g)
    norm_type = float("inf") if c["normType"] == "inf" else c["normType"]
    total = torch.nn.utils.clip_grad_norm_(params, c["maxNorm"], norm_type=norm_type)
    return {"total": total.item(), "grads": [p.grad.tolist() for p in params]}


def scaler_case(c):
    p = t(c["param"]).requires_grad_(True)
    opt = torch.optim.SGD([p], lr=c["lr"])
    scaler = torch.amp.GradScaler("cpu", init_scale=c["initScale"], growth_factor=c["growthFactor"],
                                  backoff_factor=c["backoffFactor"], growth_interval=c["growthInterval"])
    scales, params = [], []
    for g in c["grads"]:
        grad = t([float(x) for x in g])
        opt.zero_grad()
        scaler.scale((p * grad).sum()).backward()  # p.grad = scale * grad
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
        params.append(p.detach().tolist())
    return {"scales": scales, "params": params}


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    out = []
    for c in cases:
        kind = c["kind"]
        out.append({"optimizer": optimizer_case, "clip": clip_case, "scaler": scaler_case}[kind](c))
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
