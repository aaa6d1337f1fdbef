"""The Python side of bench/page-faults.ts: the EPG DM step of bench/py/epg.py,
run alone; prints minor page faults per step and step times as JSON.

    python3 bench/py/page_faults.py '<the Node side's epg config as JSON>' STEPS
"""

import json
import resource
import sys
import time

import torch

import epg

config, steps = json.loads(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(1)
cases, _ = epg.setup(config)
step = next(c for c in cases if c.name == "dm_step").fn
for _ in range(3):
    step()
faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
times = []
for _ in range(steps):
    t0 = time.perf_counter()
    step()
    times.append((time.perf_counter() - t0) * 1000)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / steps
print(json.dumps({"faultsPerStep": faults, "times": times}))
