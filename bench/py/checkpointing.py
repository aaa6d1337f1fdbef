"""Twin of bench/checkpointing.ts: one forward and backward pass of the tests'
independent PyTorch EPG model (packages/epg/test/ref/epg_ref.py, attention by
the fused kernel as in bench/py/epg.py), with each transformer block wrapped in
torch.utils.checkpoint.checkpoint(use_reentrant=False) or not, fp32 or bf16
autocast, on the CPU or CUDA. Prints one JSON line: peak memory above the model
and its gradients (MiB: peak RSS on the CPU, the allocator's peak on CUDA) and
the median step time after the first.

    EPG_BENCH_MODEL='{...EPGConfig...}' python3 bench/py/checkpointing.py '{"batch": 64, "steps": 4, "checkpointing": true}'
"""

import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.utils.checkpoint

from epg_model import epg_ref


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def checkpointed(cls):
    plain = cls.forward

    def forward(self, *args):
        return torch.utils.checkpoint.checkpoint(plain, self, *args, use_reentrant=False)

    cls.forward = forward


def main():
    o = json.loads(sys.argv[1])
    cfg = json.loads(os.environ["EPG_BENCH_MODEL"])
    if o["checkpointing"]:
        checkpointed(epg_ref.Block)
        checkpointed(epg_ref.DecBlock)
    dev = o.get("device", "cpu")
    bf16 = o.get("precision", "fp32") == "bf16"
    torch.manual_seed(0)
    model = epg_ref.EPG(cfg).to(dev).train()
    b, c, s = o["batch"], cfg["inChannels"], cfg["imageSize"]
    x, t = torch.randn(b, c, s, s, device=dev), torch.randn(b, device=dev)
    y = torch.arange(b, device=dev) % cfg["numClasses"]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    cuda = dev == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() / 2**20 if cuda else rss_mib()
    times, cpu = [], []
    for _ in range(o["steps"]):
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            out = model(x, t, y)
        loss = (out.float() - x).square().mean()
        loss.backward()
        loss.item()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "impl": "py",
                "checkpointing": o["checkpointing"],
                "peakMiB": peak - base,
                "stepSeconds": statistics.median(times[1:] or times),
                "stepCpuSeconds": statistics.median(cpu[1:] or cpu),
            }
        )
    )


if __name__ == "__main__":
    main()
