"""The Python side of the benchmark harness (mirrors bench/harness.ts).

A twin module defines ``setup(config) -> (cases, dispose)`` where ``cases`` is a
list of ``Case``.  It then calls ``main(setup)``, which either serves the Node
runner (``--serve``: one JSON request per stdin line, one JSON reply per stdout
line) or, run by hand, times every case itself and prints a table:

    python3 bench/py/matmul.py --device cpu --threads 1

Protocol (stdout carries nothing else):
    {"cmd": "setup", "config": {...}}        -> {"cases": [{name, label, warmup, inner, ops?, flops?}]}
    {"cmd": "warmup", "case": n, "n": k}     -> {}
    {"cmd": "time", "case": n, "inner": k}   -> {"seconds": wall, "cpu": process CPU, per iteration}
    {"cmd": "info"}                          -> {"torch": ..., "python": ..., "threads": ...}
    {"cmd": "exit"}                          -> {}
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


@dataclass
class Case:
    name: str
    label: str
    fn: Callable[[], object]
    warmup: int
    inner: int
    ops: Optional[int] = None
    flops: Optional[float] = None


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_block_cpu(fn: Callable[[], object], inner: int, device: str) -> tuple:
    """Wall-clock and process CPU seconds per iteration (as bench/harness.ts timeBlockCpu)."""
    synchronize(device)
    c0 = time.process_time_ns()
    t0 = time.perf_counter_ns()
    for _ in range(inner):
        fn()
    synchronize(device)
    wall = (time.perf_counter_ns() - t0) / 1e9 / inner
    return wall, (time.process_time_ns() - c0) / 1e9 / inner


def time_block(fn: Callable[[], object], inner: int, device: str) -> float:
    return time_block_cpu(fn, inner, device)[0]


def info() -> dict:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cudaAvailable": torch.cuda.is_available(),
        "cudaDevice": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _describe(c: Case) -> dict:
    d = {"name": c.name, "label": c.label, "warmup": c.warmup, "inner": c.inner}
    if c.ops is not None:
        d["ops"] = c.ops
    if c.flops is not None:
        d["flops"] = c.flops
    return d


def serve(setup: Callable[[dict], tuple]) -> None:
    out = sys.stdout
    cases: dict[str, Case] = {}
    dispose: Callable[[], None] = lambda: None
    device = "cpu"

    def reply(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
            cmd = msg["cmd"]
            if cmd == "setup":
                dispose()
                config = msg["config"]
                device = config["device"]
                torch.set_num_threads(int(config["threads"]))
                case_list, dispose = setup(config)
                cases = {c.name: c for c in case_list}
                reply({"cases": [_describe(c) for c in case_list]})
            elif cmd == "warmup":
                fn = cases[msg["case"]].fn
                for _ in range(int(msg["n"])):
                    fn()
                synchronize(device)
                reply({})
            elif cmd == "time":
                wall, cpu = time_block_cpu(cases[msg["case"]].fn, int(msg["inner"]), device)
                reply({"seconds": wall, "cpu": cpu})
            elif cmd == "info":
                reply(info())
            elif cmd == "exit":
                dispose()
                reply({})
                return
            else:
                reply({"error": f"unknown command {cmd!r}"})
        except Exception as e:  # reported to the Node runner, which stops
            reply({"error": f"{type(e).__name__}: {e}"})


def standalone(setup: Callable[[dict], tuple], args: argparse.Namespace, extra: dict) -> None:
    threads = args.threads if args.threads is not None else torch.get_num_threads()
    config = {
        "device": args.device,
        "dtype": args.dtype or extra.pop("default_dtype"),
        "threads": threads,
        "quick": args.quick,
        **extra,
    }
    torch.set_num_threads(threads)
    case_list, dispose = setup(config)
    print(f"# torch {torch.__version__}, device {args.device}, threads {threads}, config {json.dumps(config)}")
    for c in case_list:
        for _ in range(c.warmup):
            c.fn()
        samples = [time_block(c.fn, c.inner, args.device) for _ in range(args.repeats)]
        med = statistics.median(samples)
        line = f"{c.label:<48} {med * 1e6:12.2f} µs"
        if c.ops:
            line += f"   {med / c.ops * 1e6:8.3f} µs/op"
        if c.flops:
            line += f"   {c.flops / med / 1e9:9.1f} GFLOP/s"
        print(line)
    dispose()


def main(setup: Callable[[dict], tuple], defaults: dict) -> None:
    """defaults: the benchmark's stand-alone config (sizes), with 'default_dtype'."""
    p = argparse.ArgumentParser()
    p.add_argument("--serve", action="store_true", help="serve the Node runner on stdin/stdout")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default=None, choices=list(DTYPES))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.serve:
        serve(setup)
    else:
        d = dict(defaults)
        if args.device == "cuda" and "cuda_dtype" in d:
            d["default_dtype"] = d.pop("cuda_dtype")
        d.pop("cuda_dtype", None)
        for k, v in list(d.items()):
            if isinstance(v, dict) and args.device in v:
                d[k] = v[args.device]
        standalone(setup, args, d)
