"""An independent PyTorch implementation of the EPG networks and objectives,
written from ../shared/EPG_SPEC.md, with the official parameter names. The
TypeScript tests send a state dict, inputs and noise here and compare.

Usage: python3 epg_ref.py cases.json results.json
Each case: {"kind": "rcm" | "epg" | "ntxent" | "pretrain" | "dm" | "cm", ...}.
"""
import json
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
SIGMA_MIN, SIGMA_DATA = 0.002, 0.5


def time_embedding(t, dim, dtype):
    # Official order (rcm/vit.py): exp(-ln(1e4) * arange / half); in float32 as the
    # official code, or in float64 for a float64 model.
    dtype = torch.float64 if dtype == torch.float64 else torch.float32
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=dtype) / half)
    args = t.to(dtype)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class Attn(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        w = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.h)
        return self.proj((w.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.norm1, self.attn, self.norm2, self.mlp = nn.LayerNorm(d), Attn(d, h), nn.LayerNorm(d), Mlp(d)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DecBlock(nn.Module):
    def __init__(self, d, de, h):
        super().__init__()
        self.norm1, self.attn, self.norm2, self.mlp = nn.LayerNorm(d), Attn(d, h), nn.LayerNorm(d), Mlp(d)
        self.skip_linear, self.skip_norm = nn.Linear(de + d, d), nn.LayerNorm(d)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(de, 6 * d))

    def forward(self, x, c, skip):
        x = self.skip_norm(self.skip_linear(torch.cat([x, skip], 2)))
        s1, b1, g1, s2, b2, g2 = self.adaLN_modulation(c).chunk(6, dim=2)
        x = x + g1 * self.attn(self.norm1(x) * (1 + b1) + s1)
        return x + g2 * self.mlp(self.norm2(x) * (1 + b2) + s2)


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, p = cfg["embedDim"], cfg["patchSize"]
        self.cfg = cfg
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(cfg["inChannels"], d, p, stride=p)
        n = (cfg["imageSize"] // p) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 2 + n, d))
        self.blocks = nn.ModuleList([Block(d, cfg["numHeads"]) for _ in range(cfg["depth"])])
        self.norm = nn.LayerNorm(d)

    def tokens(self, x, t, cls_extra=None):
        h = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(h.shape[0], -1, -1)
        if cls_extra is not None:
            cls = cls + cls_extra
        tau = time_embedding(t, h.shape[2], self.pos_embed.dtype).unsqueeze(1).to(h.dtype)
        return torch.cat([cls, tau, h], 1) + self.pos_embed


class RCM(Encoder):
    def __init__(self, cfg):
        super().__init__(cfg)
        layers, hid, out = cfg["projLayers"], cfg["projHiddenDim"], cfg["projOutputDim"]
        mods = []
        for i in range(layers):
            d1 = cfg["embedDim"] if i == 0 else hid
            d2 = out if i == layers - 1 else hid
            mods.append(nn.Linear(d1, d2, bias=False))
            if i < layers - 1:
                mods += [nn.BatchNorm1d(d2), nn.ReLU()]
        self.projection_head = nn.Sequential(*mods) if layers else nn.Identity()

    def forward(self, x, t):
        h = self.tokens(x, t)
        for b in self.blocks:
            h = b(h)
        rep = self.norm(h[:, 0])
        return self.projection_head(rep), rep


class EPG(Encoder):
    def __init__(self, cfg):
        super().__init__(cfg)
        d, dd = cfg["embedDim"], cfg["decoderEmbedDim"]
        self.decoder_blocks = nn.ModuleList([DecBlock(dd, d, cfg["decoderNumHeads"]) for _ in range(cfg["decoderDepth"])])
        self.encoder_to_decoder = nn.Linear(d, dd) if dd != d else None
        self.out_norm = nn.LayerNorm(dd)
        self.out = nn.Linear(dd, cfg["patchSize"] ** 2 * cfg["inChannels"])
        self.class_embed = nn.Embedding(cfg["numClasses"] + 1, d)

    def forward(self, x, t, y):
        ey = self.class_embed(y).unsqueeze(1)
        h = self.tokens(x, t, ey)
        skips = []
        for b in self.blocks:
            h = b(h)
            skips.append(h)
        h = self.norm(h)
        if self.encoder_to_decoder is not None:
            h = self.encoder_to_decoder(h)
        c = time_embedding(t, ey.shape[2], self.pos_embed.dtype).unsqueeze(1).to(ey.dtype) + ey
        for b in self.decoder_blocks:
            h = b(h, c, skips.pop())
        h = self.out(self.out_norm(h[:, 2:]))
        p, ch, m = self.cfg["patchSize"], self.cfg["inChannels"], self.cfg["imageSize"] // self.cfg["patchSize"]
        return h.reshape(-1, m, m, p, p, ch).permute(0, 5, 1, 3, 2, 4).reshape(-1, ch, m * p, m * p)


def scalings(sigma, h):
    smin = SIGMA_MIN * h / 64
    c_skip = SIGMA_DATA**2 / ((sigma - smin) ** 2 + SIGMA_DATA**2)
    c_out = (sigma - smin) * SIGMA_DATA / (sigma**2 + SIGMA_DATA**2).sqrt()
    c_in = 1 / (sigma**2 + SIGMA_DATA**2).sqrt()
    view = lambda v: v.reshape(-1, 1, 1, 1)
    return view(c_skip), view(c_out), view(c_in), 250 * torch.log(sigma + 1e-44)


def nce(f, ft, tau):
    f, ft = F.normalize(f.float(), dim=1), F.normalize(ft.float(), dim=1)
    logits = f @ ft.t() / tau
    return torch.logsumexp(logits, 1) - logits.diagonal()


def enc_at(model, x, sigma):
    s = torch.full((x.shape[0],), sigma, dtype=torch.float64)
    _, _, c_in, t = scalings(s, x.shape[2])
    return model(x * c_in.to(x.dtype), t)


def t_(spec):
    return torch.tensor(spec["data"], dtype=getattr(torch, spec["dtype"])).reshape(spec["shape"])


def enc(t):
    t = t.detach()
    return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "data": t.reshape(-1).tolist()}


def load(model, sd):
    model.load_state_dict({k: t_(v) for k, v in sd.items()}, strict=True)
    return model


def run(c):
    kind = c["kind"]
    if kind == "rcm":
        m = load(RCM(c["config"]), c["state"]).train(c.get("training", True))
        x = t_(c["x"]).requires_grad_(True)
        proj, rep = m(x, t_(c["t"]))
        (proj * t_(c["gProj"])).sum().add((rep * t_(c["gRep"])).sum()).backward()
        return {"proj": enc(proj), "rep": enc(rep), "gx": enc(x.grad),
                "grads": {n: enc(p.grad) for n, p in m.named_parameters()}}
    if kind == "epg":
        m = load(EPG(c["config"]), c["state"])
        x = t_(c["x"]).requires_grad_(True)
        out = m(x, t_(c["t"]), t_(c["y"]))
        (out * t_(c["g"])).sum().backward()
        return {"out": enc(out), "gx": enc(x.grad), "grads": {n: enc(p.grad) for n, p in m.named_parameters()}}
    if kind == "ntxent":
        f = t_(c["f"]).requires_grad_(True)
        l = nce(f, t_(c["t"]), c["tau"])
        l.sum().backward()
        return {"loss": enc(l), "gf": enc(f.grad)}
    if kind == "pretrain":
        online = load(RCM(c["config"]), c["state"]).train()
        target = load(RCM(c["config"]), c["targetState"]).eval()
        x, xa, xb, eps = (t_(c[k]) for k in ("x", "xAug", "xAug2", "noise"))
        grid, n, shift = c["grid"], c["n"], x.shape[2] / 64
        t, t2, t0 = grid[n] * shift, grid[n + 1] * shift, grid[-1] * shift
        v1, v2 = xa + eps * t0, xb + eps * t0
        q1, q2 = enc_at(online, v1, t0)[0], enc_at(online, v2, t0)[0]
        with torch.no_grad():
            k1, k2 = enc_at(target, v1, t0)[0], enc_at(target, v2, t0)[0]
        l_con = nce(q1, k2, 0.2) + nce(q2, k1, 0.2)
        r = enc_at(online, x + eps * t, t)[1]
        with torch.no_grad():
            r2 = enc_at(online, x + eps * t2, t2)[1]
        l_rc = nce(r, r2, c["tauRc"])
        loss = l_con + l_rc
        loss.mean().backward()
        return {"loss": enc(loss), "lCon": enc(l_con), "lRc": enc(l_rc),
                "grads": {n: enc(p.grad) for n, p in online.named_parameters()}}
    if kind == "dm":
        m = load(EPG(c["config"]), c["state"])
        x0, y, eps = t_(c["x0"]), t_(c["y"]), t_(c["noise"])
        sigma, w = t_(c["sigma"]), t_(c["weight"])
        ss = sigma * x0.shape[2] / 64
        xs = x0 + eps * ss.reshape(-1, 1, 1, 1)
        _, _, c_in, tin = scalings(ss, x0.shape[2])
        d = m(xs * c_in, tin, y)
        loss = ((d - x0) ** 2).flatten(1).mean(1) * w
        loss.mean().backward()
        return {"loss": enc(loss), "grads": {n: enc(p.grad) for n, p in m.named_parameters()}}
    if kind == "cm":
        m = load(EPG(c["config"]), c["state"])
        perc = load(RCM(c["percConfig"]), c["percState"]).eval()
        x0, y, eps = t_(c["x0"]), t_(c["y"]), t_(c["noise"])
        h = x0.shape[2]
        ts, rs = t_(c["t"]) * h / 64, t_(c["r"]) * h / 64

        def f(x, s):
            c_skip, c_out, c_in, tin = scalings(s, h)
            return c_skip * x + c_out * m(c_in * x, tin, y)

        fo = f(x0 + eps * ts.reshape(-1, 1, 1, 1), ts)
        with torch.no_grad():
            ft = f(x0 + eps * rs.reshape(-1, 1, 1, 1), rs)
        s = ((fo - ft) ** 2).flatten(1).sum(1)
        huber = s / (s.detach() + c["c"] ** 2).sqrt()
        w = torch.where(ts > rs, 1 / (ts - rs), torch.zeros_like(ts))
        smin = SIGMA_MIN * h / 64
        f1 = enc_at(perc, fo, smin)[0]
        with torch.no_grad():
            f2 = enc_at(perc, x0, smin)[0]
        aux = nce(f1, f2, 0.1)
        loss = w * huber + aux
        loss.mean().backward()
        return {"loss": enc(loss), "lAux": enc(aux), "grads": {n: enc(p.grad) for n, p in m.named_parameters()}}
    if kind == "flops":
        # Forward FLOPs of one image as PyTorch's FlopCounterMode measures them (matmuls, convs, bmm).
        from torch.utils.flop_counter import FlopCounterMode
        cfg = c["config"]
        m = (EPG if c["model"] == "epg" else RCM)(cfg).eval()
        x = torch.randn(1, cfg["inChannels"], cfg["imageSize"], cfg["imageSize"])
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            if c["model"] == "epg":
                m(x, torch.ones(1), torch.zeros(1, dtype=torch.long))
            else:
                m(x, torch.ones(1))
        return {"flops": counter.get_total_flops()}
    if kind == "save_official":
        # An official-style checkpoint: random weights, torch.save(state_dict), optionally DDP-prefixed.
        torch.manual_seed(c["seed"])
        m = (EPG if c["model"] == "epg" else RCM)(c["config"])
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.3)
        sd = {c.get("prefix", "") + k: v for k, v in m.state_dict().items()}
        torch.save(c.get("wrap") and {c["wrap"]: sd} or sd, c["path"])
        if c["model"] != "epg":
            return {}
        with torch.no_grad():
            out = m(t_(c["x"]), t_(c["t"]), t_(c["y"]))
        return {"out": enc(out)}
    raise ValueError(kind)


def main():
    with open(sys.argv[1]) as fh:
        cases = json.load(fh)
    out = []
    for case in cases:
        try:
            out.append(run(case))
        except Exception as e:  # reported on the JS side
            import traceback
            out.append({"error": f"{type(e).__name__}: {e}\n{traceback.format_exc()}"})
    with open(sys.argv[2], "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main()
