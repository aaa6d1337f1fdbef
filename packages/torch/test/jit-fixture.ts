// A small TorchScript module written by Python's torch.jit.script, for the
// TorchScript tests (jit.test.ts) and the fuzz (robustness.test.ts). Python
// also runs it on the inputs given and reports the outputs, so that JS can be
// compared with PyTorch on the same file.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const SCRIPT = String.raw`
import json, sys, warnings
from typing import Dict, List, Tuple
import torch

warnings.filterwarnings("ignore")
out_dir = sys.argv[1]

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))

    @torch.jit.export
    def stats(self, x: torch.Tensor, k: int) -> Tuple[torch.Tensor, List[torch.Tensor], Dict[str, torch.Tensor]]:
        return x.sum() * k, [x.mean(), x.amax()], {"min": x.amin(), "double": x * 2.0}

    @torch.jit.export
    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        h = torch.relu(self.conv(x))
        return [h, h.mean(dim=(2, 3))]

    @torch.jit.export
    def count(self, xs: List[int]) -> int:
        return len(xs)

    @torch.jit.export
    def scale(self, x: torch.Tensor, factor: float, name: str) -> Tuple[torch.Tensor, str]:
        return x * factor, name + "!"

    @torch.jit.export
    def fail(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > -1e30:
            raise ValueError("deliberate failure from TorchScript")
        return x

torch.manual_seed(0)
module = torch.jit.script(Net())
module.save(out_dir + "/net.pt")

def enc(t):
    return {"shape": list(t.shape), "data": t.detach().double().flatten().tolist()}

result = {}
try:
    raw = open(out_dir + "/x.bin", "rb").read()
except FileNotFoundError:
    raw = None
if raw is not None:
    x = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(1, 3, 8, 8)
    with torch.no_grad():
        m = torch.jit.load(out_dir + "/net.pt")
        s = m.stats(x, 3)
        f = m.features(x)
        result = {
            "forward": enc(m(x)),
            "stats": [enc(s[0]), [enc(v) for v in s[1]], {k: enc(v) for k, v in s[2].items()}],
            "features": [enc(v) for v in f],
        }
json.dump(result, open(out_dir + "/out.json", "w"))
`;

export interface Encoded {
  shape: number[];
  data: number[];
}

export interface Reference {
  forward: Encoded;
  stats: [Encoded, Encoded[], Record<string, Encoded>];
  features: Encoded[];
}

/**
 * Writes net.pt into dir (and, given an input of shape [1, 3, 8, 8], runs it
 * in Python on that input). Returns the module path and Python's outputs.
 */
export function writeScriptModule(dir: string, input?: Float32Array): { path: string; reference?: Reference } {
  if (input) writeFileSync(join(dir, 'x.bin'), input);
  // torch.jit.script reads the class's source: it must be a file, not `python -c`.
  const script = join(dir, 'make_net.py');
  writeFileSync(script, SCRIPT);
  const r = spawnSync('python3', [script, dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python failed to write the TorchScript module:\n${r.stderr}`);
  const out = JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as Reference | Record<string, never>;
  return { path: join(dir, 'net.pt'), reference: input ? (out as Reference) : undefined };
}
