"""The official null-text inversion algorithm timed on PyTorch, for bench:nti-small's side-by-side ratio.

What prompt-to-prompt's null_text_w_ptp notebook does (Mokady et al. 2023, Algorithm 1), written out
on diffusers 0.21.4's UNet2DConditionModel and DDIMScheduler: DDIM inversion of z0 with the prompt at
w = 1 (the notebook's next_step), then per timestep N = 10 Adam steps (lr 1e-2·(1 − i/100)) on the null
embedding so that the guided (w = 7.5) DDIM step lands on the pivot, then one guided step with the
result; finally the reconstruction (50 guided steps, batch 2). As bench:nti-small runs it, every inner
iteration is run (no early stop), which is what random weights do anyway. The UNet's parameters keep
requires_grad as from_pretrained leaves them (the notebook never freezes them, so backward also forms
their gradients); --frozen sets requires_grad False for a fairer floor.

The model is the UNet config of a folder (default: the public parity model) with random default-init
weights, z0 and the prompt embedding random (timing does not depend on values). 2 threads.

Set up as ../shared/reference/torch-unet/README.md says (python3-torch, OpenBLAS, diffusers v0.21.4
source in DIFFUSERS_SRC), then:
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread DIFFUSERS_SRC=... \
    /usr/bin/python3 bench/reference/nti_official.py [--model DIR] [--size 128] [--frozen]
Prints one JSON line: ddim_seconds, null_text_seconds, reconstruction_seconds, iterations,
ms_per_iteration, peak_rss_gb.
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "..", "shared")
sys.path.insert(0, os.path.join(SHARED, "reference", "torch-unet"))
import env  # noqa: E402,F401  (diffusers source and its import-time shims on sys.path)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from diffusers import DDIMScheduler  # noqa: E402
from diffusers.models.unet_2d_condition import UNet2DConditionModel  # noqa: E402


def arg(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def peak_rss_gb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = arg("--model", os.path.join(SHARED, "parity", "model"))
    size = int(arg("--size", "128"))
    with open(os.path.join(model, "unet", "config.json")) as f:
        config = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    with open(os.path.join(model, "scheduler", "scheduler_config.json")) as f:
        sched = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    unet = UNet2DConditionModel(**config)
    if "--frozen" in sys.argv:
        unet.requires_grad_(False)
    scheduler = DDIMScheduler(**sched)
    steps, inner, guidance = 50, 10, 7.5
    scheduler.set_timesteps(steps)
    acp = scheduler.alphas_cumprod
    final = scheduler.final_alpha_cumprod
    stride = scheduler.config.num_train_timesteps // steps

    h = size // 8
    z0 = torch.randn(1, config["in_channels"], h, h)
    cond = torch.randn(1, 77, config["cross_attention_dim"])
    uncond = torch.randn(1, 77, config["cross_attention_dim"])

    def eps(latent, t, context):
        return unet(latent, t, encoder_hidden_states=context).sample

    def prev_step(e, t, x):  # the notebook's prev_step: DDIM, η = 0
        a_t = acp[t]
        p = t - stride
        a_p = acp[p] if p >= 0 else final
        x0 = (x - (1 - a_t) ** 0.5 * e) / a_t**0.5
        return a_p**0.5 * x0 + (1 - a_p) ** 0.5 * e

    def next_step(e, t, x):  # the notebook's next_step: the inverse DDIM step
        cur, nxt = min(t - stride, 999), t
        a_c = acp[cur] if cur >= 0 else final
        a_n = acp[nxt]
        x0 = (x - (1 - a_c) ** 0.5 * e) / a_c**0.5
        return a_n**0.5 * x0 + (1 - a_n) ** 0.5 * e

    t0 = time.perf_counter()
    pivots = [z0]
    with torch.no_grad():
        x = z0
        for i in range(steps):
            t = scheduler.timesteps[steps - i - 1]
            x = next_step(eps(x, t, cond), t, x)
            pivots.append(x)
    ddim_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    nulls = []
    x = pivots[-1]
    iterations = 0
    for i in range(steps):
        uncond = uncond.clone().detach().requires_grad_(True)
        opt = torch.optim.Adam([uncond], lr=1e-2 * (1.0 - i / 100.0))
        target = pivots[len(pivots) - i - 2]
        t = scheduler.timesteps[i]
        with torch.no_grad():
            e_c = eps(x, t, cond)
        for _ in range(inner):
            e_u = eps(x, t, uncond)
            rec = prev_step(e_u + guidance * (e_c - e_u), t, x)
            loss = F.mse_loss(rec, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            iterations += 1
        nulls.append(uncond[:1].detach())
        with torch.no_grad():
            e = eps(torch.cat([x, x]), t, torch.cat([uncond, cond]))
            e_u, e_c = e.chunk(2)
            x = prev_step(e_u + guidance * (e_c - e_u), t, x)
    null_text_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    with torch.no_grad():
        x = pivots[-1]
        for i, t in enumerate(scheduler.timesteps):
            e = eps(torch.cat([x, x]), t, torch.cat([nulls[i], cond]))
            e_u, e_c = e.chunk(2)
            x = prev_step(e_u + guidance * (e_c - e_u), t, x)
    reconstruction_seconds = time.perf_counter() - t0

    print(
        json.dumps(
            {
                "name": f"official nti {size}x{size}",
                "frozen": "--frozen" in sys.argv,
                "ddim_seconds": round(ddim_seconds, 3),
                "null_text_seconds": round(null_text_seconds, 3),
                "reconstruction_seconds": round(reconstruction_seconds, 3),
                "iterations": iterations,
                "ms_per_iteration": round(1000 * null_text_seconds / iterations, 2),
                "peak_rss_gb": round(peak_rss_gb(), 3),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
