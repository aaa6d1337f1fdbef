"""Benchmark 5, Python twin of bench/epg.ts: an EPG diffusion fine-tuning step
and sampling, over the independent PyTorch implementation of the tests
(packages/epg/test/ref/epg_ref.py) with torch.optim.AdamW(fused=True) and a
foreach EMA. On CUDA it adds torch.compile'd steps as reference points.
"""

import torch
from common import Case, main
from epg_model import epg_ref

SIGMA_MIN, SIGMA_MAX, RHO, SIGMA_DATA = 0.002, 80.0, 7.0, 0.5


def karras(n, smin=SIGMA_MIN, smax=SIGMA_MAX, rho=RHO):
    i = torch.arange(n, dtype=torch.float64)
    return (smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho


def forward_flops(c, batch):
    g = c["imageSize"] // c["patchSize"]
    T = g * g + 2
    D, Dd = c["embedDim"], c["decoderEmbedDim"]
    pix = c["patchSize"] ** 2 * c["inChannels"]
    enc = 2 * T * 12 * D * D + 4 * T * T * D
    dec = 2 * T * (12 * Dd * Dd + (D + Dd) * Dd) + 4 * T * T * Dd + 2 * 6 * Dd * D
    per = 2 * T * pix * D + c["depth"] * enc + (2 * T * D * Dd if D != Dd else 0) + c["decoderDepth"] * dec + 2 * T * Dd * pix
    return batch * per


def setup(s):
    dev = s["device"]
    c = s["model"]
    H, C, K = c["imageSize"], c["inChannels"], c["numClasses"]
    shift = H / 64
    torch.manual_seed(0)
    model = epg_ref.EPG(c).to(dev)
    params = [p for p in model.parameters()]
    opt = torch.optim.AdamW(params, lr=s["lr"], weight_decay=0.01, fused=True)
    shadow = [p.detach().clone() for p in params]
    x0 = torch.randn(s["batch"], C, H, H, device=dev).clamp(-1, 1)
    labels = torch.randint(0, K, (s["batch"],), device=dev)
    grid = karras(256).to(dev)
    nxt = torch.cat([grid[:1], grid[:-1]])
    gap = grid - nxt
    wgrid = torch.where(gap > 0, 1 / gap, torch.zeros_like(gap))
    amp = s["amp"] == "bfloat16"

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp)

    def loss_fn(m, sigma_tilde, eps, x, y):
        index = (sigma_tilde[:, None] - grid[None]).abs().argmin(1)
        sigma, w = grid[index], wgrid[index]
        ss = sigma * shift
        xs = x + eps * ss.reshape(-1, 1, 1, 1).float()
        c_in = (1 / (ss**2 + SIGMA_DATA**2).sqrt()).reshape(-1, 1, 1, 1).float()
        t_in = (250 * torch.log(ss + 1e-44)).float()
        with autocast():
            d = m(xs * c_in, t_in, y)
        return (((d.float() - x) ** 2).flatten(1).mean(1) * w.float()).mean()

    def step_body(net, optimizer, x, y):
        """σ draw, noising, x₀ loss, backward, fused AdamW, EMA: one DM fine-tuning step of `net`."""
        z = torch.randn(s["batch"], dtype=torch.float64, device=dev)
        loss = loss_fn(net, (z * 1.2 - 1.2).exp(), torch.randn_like(x), x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            torch._foreach_lerp_(shadow, params, 1 - s["emaDecay"])
        return loss.detach()

    def make_step(net):
        return lambda: step_body(net, opt, x0, labels)

    def graphed(body, warmup):
        """PyTorch's whole-network capture: warm-up on a side stream, capture once, replay."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                body()
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            body()
        return g

    cases = []
    cuda = dev == "cuda"
    fwd = forward_flops(c, 1)
    cases.append(Case("dm_step", f"{s['preset']} DM step, batch {s['batch']}", make_step(model), 5 if cuda else 2, 10 if cuda else 1, flops=3 * fwd * s["batch"]))
    if cuda:
        # torch.compile of the model (the loss and optimizer stay eager), the usual setting.
        cases.append(Case("dm_step_compiled", "same, torch.compile(model)", make_step(torch.compile(model)), 10, 10, flops=3 * fwd * s["batch"]))
        # The step as one CUDA graph: capturable fused AdamW with a tensor lr, static inputs.
        g_opt = torch.optim.AdamW(params, lr=torch.tensor(s["lr"], device=dev), weight_decay=0.01, fused=True, capturable=True)
        static_x, static_y = x0.clone(), labels.clone()
        step_graph = graphed(lambda: step_body(model, g_opt, static_x, static_y), 3)

        def replay_step():
            static_x.copy_(x0)
            static_y.copy_(labels)
            step_graph.replay()

        cases.append(Case("dm_step_graph", "the DM step as a CUDA graph (capturable AdamW)", replay_step, 5, 10, flops=3 * fwd * s["batch"]))

    n = s["sampleBatch"]
    ys = torch.randint(0, K, (n,), device=dev)
    null = torch.full_like(ys, K)

    def denoise(x, sigma, y, consistency):
        sig = torch.full((x.shape[0],), sigma, dtype=torch.float64, device=dev)
        c_in = (1 / (sig**2 + SIGMA_DATA**2).sqrt()).reshape(-1, 1, 1, 1).float()
        t_in = (250 * torch.log(sig + 1e-44)).float()
        with autocast():
            F = model(x * c_in, t_in, y).float()
        if not consistency:
            return F
        smin = SIGMA_MIN * shift
        d = sig - smin
        c_skip = (SIGMA_DATA**2 / (d**2 + SIGMA_DATA**2)).reshape(-1, 1, 1, 1).float()
        c_out = (d * SIGMA_DATA / (sig**2 + SIGMA_DATA**2).sqrt()).reshape(-1, 1, 1, 1).float()
        return x * c_skip + F * c_out

    def guided(x, sigma):
        dc, du = denoise(torch.cat([x, x]), sigma, torch.cat([ys, null]), False).chunk(2)
        return du + (dc - du) * s["cfgScale"]

    sigmas = karras(s["heunSteps"], SIGMA_MIN * shift, SIGMA_MAX * shift).tolist()

    def heun():
        with torch.no_grad():
            x = torch.randn(n, C, H, H, device=dev) * (SIGMA_MAX * shift)
            for i in range(len(sigmas) - 1):
                sg, sn = sigmas[i], sigmas[i + 1]
                d = (x - guided(x, sg)) / sg
                xe = x + d * (sn - sg)
                d2 = (xe - guided(xe, sn)) / sn
                x = x + (d + d2) * 0.5 * (sn - sg)
            return x

    def onestep():
        with torch.no_grad():
            x = torch.randn(n, C, H, H, device=dev) * (SIGMA_MAX * shift)
            return denoise(x, SIGMA_MAX * shift, ys, True)

    def in_eval(fn):
        def run():
            model.eval()
            fn()
            model.train()

        return run

    steps = s["heunSteps"]
    cases.append(Case("sample_heun_cfg", f"Heun {steps} steps with CFG {s['cfgScale']}, {n} images", in_eval(heun), 1, 1, flops=2 * (steps - 1) * 2 * fwd * n))
    cases.append(Case("sample_onestep", f"one consistency step, {n} images", in_eval(onestep), 2, 10 if cuda else 1, flops=fwd * n))
    if cuda:
        model.eval()
        heun_graph, onestep_graph = graphed(heun, 1), graphed(onestep, 1)
        model.train()
        cases.append(Case("sample_heun_cfg_graph", f"Heun {steps} steps with CFG as one CUDA graph", in_eval(heun_graph.replay), 2, 1, flops=2 * (steps - 1) * 2 * fwd * n))
        cases.append(Case("sample_onestep_graph", "one consistency step as a CUDA graph", in_eval(onestep_graph.replay), 2, 10, flops=fwd * n))
    return cases, lambda: None


if __name__ == "__main__":
    main(
        setup,
        {
            "default_dtype": "float32",
            "preset": "EPG-T/4",
            "model": {
                "imageSize": 28, "patchSize": 4, "inChannels": 1, "embedDim": 128, "depth": 4, "numHeads": 4,
                "mlpRatio": 4, "decoderDepth": 4, "decoderEmbedDim": 128, "decoderNumHeads": 4, "numClasses": 10, "drop": 0,
            },
            "batch": 64,
            "amp": "none",
            "lr": 1e-4,
            "emaDecay": 0.9999,
            "sampleBatch": 16,
            "heunSteps": 4,
            "cfgScale": 1.5,
        },
    )
