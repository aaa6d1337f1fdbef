"""The official learning-rate schedules (AMAP-ML/EPG rcm/utils.py and
rcm/gen_train_utils.py::customized_lr_scheduler, EPG_SPEC.md §4.2, §5.3, §6.3),
driven by PyTorch's LambdaLR exactly as the official training loop drives them:
the lr of update k is read from the optimizer before optimizer.step(), and
lr_scheduler.step() follows every update.

warmup-step generalised to the milestones and factors of a config (the official
code hard-codes 400000 -> 0.3 and 500000 -> 0.08).

Usage: python3 lr_ref.py in.json out.json
Each case: {"name", "warmup", "total", "milestones", "factors", "updates": N, "jumps": [k, ...]}
-> the factors of updates 0..N-1 (stepping LambdaLR) and of each update k in
jumps (LambdaLR constructed at last_epoch = k-1, whose initial step makes it k).
"""
import json
import math
import sys

import torch
from torch.optim.lr_scheduler import LambdaLR


def make_fn(c):
    warmup_steps, total = c["warmup"], c["total"]
    if c["name"] == "warmup-cosine":
        def fn(step):
            if warmup_steps > 0:
                if step <= warmup_steps:
                    return min(step / warmup_steps, 1)
                elif step <= total:
                    return 0.5 * (1 + math.cos((step - warmup_steps) * math.pi / (total - warmup_steps)))
                else:
                    return 0
            return 1
    elif c["name"] == "warmup-step":
        def fn(step):
            if warmup_steps > 0 and step <= warmup_steps:
                return min(step / warmup_steps, 1)
            f = 1.0
            for m, v in zip(c["milestones"], c["factors"]):
                if step > m:
                    f = v
            return f
    else:  # warmup
        def fn(step):
            if warmup_steps > 0 and step <= warmup_steps:
                return min(step / warmup_steps, 1)
            return 1
    return fn


def run(c):
    fn = make_fn(c)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = LambdaLR(opt, fn)
    seq = []
    for _ in range(c["updates"]):
        seq.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    jumps = []
    for k in c["jumps"]:
        opt = torch.optim.SGD([{"params": [p], "lr": 1.0, "initial_lr": 1.0}], lr=1.0)
        # The constructor takes one scheduler step from last_epoch = k-1: the lr of update k.
        sched = LambdaLR(opt, fn, last_epoch=k - 1)
        assert sched.last_epoch == k, (sched.last_epoch, k)
        jumps.append(opt.param_groups[0]["lr"])
    return {"seq": seq, "jumps": jumps}


def main():
    with open(sys.argv[1]) as fh:
        cases = json.load(fh)
    with open(sys.argv[2], "w") as fh:
        json.dump([run(c) for c in cases], fh)


if __name__ == "__main__":
    main()
