"""Benchmark 3, Python twin of bench/vit.ts: one ViT training step, op for op.

Forward, loss.backward(), and plain SGD (p -= lr * grad under no_grad), with the
model written functionally over explicit parameter tensors.
"""

import torch
import torch.nn.functional as F

from common import DTYPES, Case, main


def vit_forward_flops(s: dict) -> float:
    g = s["image"] // s["patch"]
    tokens = g * g + 1
    d = s["width"]
    m = s["width"] * s["mlpRatio"]
    b = s["batch"]
    patch = 2 * b * g * g * d * s["channels"] * s["patch"] ** 2
    per_block = 2 * b * tokens * d * 3 * d + 2 * 2 * b * tokens * tokens * d + 2 * b * tokens * d * d + 2 * 2 * b * tokens * d * m
    return patch + s["depth"] * per_block + 2 * b * d * s["classes"]


def setup(s: dict):
    opts = {"device": s["device"], "dtype": DTYPES[s["dtype"]]}
    d = s["width"]
    m = s["width"] * s["mlpRatio"]
    g = s["image"] // s["patch"]
    tokens = g * g + 1
    heads = s["heads"]
    dh = d // heads
    lr = s["lr"]
    params = []

    def param(t):
        t.requires_grad_(True)
        params.append(t)
        return t

    def randn(*shape):
        return param(torch.randn(*shape, **opts).mul(0.02))

    def ones(n):
        return param(torch.ones(n, **opts))

    def zeros(n):
        return param(torch.zeros(n, **opts))

    patch_w = randn(d, s["channels"], s["patch"], s["patch"])
    patch_b = zeros(d)
    cls = randn(1, 1, d)
    pos = randn(1, tokens, d)
    blocks = []
    for _ in range(s["depth"]):
        blocks.append(
            dict(
                ln1w=ones(d), ln1b=zeros(d), qkvw=randn(3 * d, d), qkvb=zeros(3 * d),
                projw=randn(d, d), projb=zeros(d), ln2w=ones(d), ln2b=zeros(d),
                fc1w=randn(m, d), fc1b=zeros(m), fc2w=randn(d, m), fc2b=zeros(d),
            )
        )
    norm_w = ones(d)
    norm_b = zeros(d)
    head_w = randn(s["classes"], d)
    head_b = zeros(s["classes"])

    images = torch.randn(s["batch"], s["channels"], s["image"], s["image"], **opts)
    labels = torch.randint(0, s["classes"], (s["batch"],), device=s["device"])

    def forward(img, y):
        b = s["batch"]
        x = F.conv2d(img, patch_w, patch_b, stride=s["patch"]).flatten(2).transpose(1, 2)
        x = torch.cat([cls.expand(b, 1, d), x], 1).add(pos)
        for blk in blocks:
            h = F.layer_norm(x, [d], blk["ln1w"], blk["ln1b"])
            qkv = F.linear(h, blk["qkvw"], blk["qkvb"]).reshape(b, tokens, 3, heads, dh).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, tokens, d)
            x = x.add(F.linear(a, blk["projw"], blk["projb"]))
            h2 = F.layer_norm(x, [d], blk["ln2w"], blk["ln2b"])
            x = x.add(F.linear(F.gelu(F.linear(h2, blk["fc1w"], blk["fc1b"])), blk["fc2w"], blk["fc2b"]))
        x = F.layer_norm(x, [d], norm_w, norm_b)
        logits = F.linear(x.select(1, 0), head_w, head_b)
        return F.cross_entropy(logits, y)

    def step():
        loss = forward(images, labels)
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.sub_(p.grad.mul(lr))
        for p in params:
            p.grad = None

    adamw = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, fused=True)
    shadow = [p.detach().clone() for p in params]

    def step_adamw():
        loss = forward(images, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        adamw.step()
        adamw.zero_grad()
        with torch.no_grad():
            torch._foreach_lerp_(shadow, params, 1e-4)

    cuda = s["device"] == "cuda"
    return [
        Case(
            "train_step",
            f"ViT d={d} depth={s['depth']} heads={heads} batch={s['batch']} {s['dtype']}, {len(params)} params",
            step,
            10 if cuda else 2,
            20 if cuda else 1,
            flops=3 * vit_forward_flops(s),
        ),
        Case(
            "train_step_adamw_ema_clip",
            "same, with fused AdamW + clip_grad_norm_ + EMA",
            step_adamw,
            10 if cuda else 2,
            20 if cuda else 1,
            flops=3 * vit_forward_flops(s),
        ),
    ], lambda: None


if __name__ == "__main__":
    main(
        setup,
        {
            "default_dtype": "float32",
            "lr": 1e-3,
            "batch": 32,
            "image": 32,
            "channels": 3,
            "patch": 4,
            "width": 192,
            "depth": 6,
            "heads": 3,
            "mlpRatio": 4,
            "classes": 10,
        },
    )
