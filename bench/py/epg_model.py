"""The PyTorch EPG model the benchmarks time: the tests' independent reference
(packages/epg/test/ref/epg_ref.py) in float32, with attention by the fused
kernel. The reference writes attention out (softmax(q kᵀ/√d) v) for the tests;
timm's ViT, the official code and packages/epg use the fused kernel, so the
benchmarks do too. Import epg_ref from here: `from epg_model import epg_ref`.
"""

import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "packages", "epg", "test", "ref"))
import epg_ref  # noqa: E402  (sets float64 as the default dtype for its tests)

torch.set_default_dtype(torch.float32)


def _sdpa_attention(self, x):
    b, n, d = x.shape
    q, k, v = self.qkv(x).reshape(b, n, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
    return self.proj(torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


epg_ref.Attn.forward = _sdpa_attention
