"""Sampling: 40 class-conditional CFG samples (4 per digit) of ours vs the reference (benchmarks/reference.py: one
class of 4 at a time, two UNet calls per step), D = 64 class UNet (random weights: the speed does not depend on
them), measured in one run, each variant in its own process; peak memory of each.

On a CPU, --steps S < 300 runs S steps of each and scales the time by 300 / S (printed as such); the per-step
work is the same at every step. --big N (GPU) also times N samples (10 000 in the issue) on our fast path.

  python benchmarks/bench_sample.py --steps 30 --threads 1            # CPU: fp32, bf16 and auto in one run
  python benchmarks/bench_sample.py --device cuda --steps 300 --big 10000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

T = 300


def _model(device: str, hidden: int = 64):
    from diffusionlab.course_model import CourseModel
    from diffusionlab.networks.unet import UNet
    from diffusionlab.training import model_config, recipe

    config = recipe("class", hidden=hidden)
    torch.manual_seed(0)
    return CourseModel(UNet(config.unet_config()), model_config(config, {}), torch.device(device))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def ours(
    steps: int,
    device: str,
    fast: bool,
    precision: str | None = None,
    n_per_class: int = 4,
    compile: bool = True,
    hidden: int = 64,
):
    from diffusionlab.fastpath import accelerate
    from diffusionlab.sampling import generate
    from diffusionlab.schedule import spaced_timesteps

    model = _model(device, hidden)
    chosen = "fp32 (--plain)"
    if fast:
        accelerate(model, compile=compile, precision=precision)
        chosen = model.net.precision.describe()
    prompts = [str(k) for k in range(10)]
    ts = spaced_timesteps(T, steps)
    warm = 0.0
    if device.startswith("cuda"):  # compilation / CUDA-graph capture, timed separately
        start = time.perf_counter()
        generate(model, prompts, n_per_class, 5.0, seed=1, timesteps=ts[:3] if len(ts) > 3 else ts, progress=False)
        _sync(device)
        warm = time.perf_counter() - start
    start = time.perf_counter()
    x = generate(model, prompts, n_per_class, 5.0, seed=0, timesteps=ts, progress=False)
    _sync(device)
    return {"seconds": time.perf_counter() - start, "warmup_s": warm, "n": len(x), "precision": chosen}


def reference(steps: int, device: str, n_per_class: int = 4, hidden: int = 64):
    import reference as ref

    net = _model(device, hidden).net
    start = time.perf_counter()
    x = ref.sample_all_classes(net, n_per_class, num_steps=steps, device=device)
    _sync(device)
    return {"seconds": time.perf_counter() - start, "warmup_s": 0.0, "n": len(x)}


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import fast_path_variants, header, isolated

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="steps measured (times are scaled to 300)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--big", type=int, default=0, help="also time this many samples on our fast path (GPU)")
    p.add_argument("--hidden", type=int, default=64, help="UNet width D (the recipe's 64; smaller for a smoke run)")
    args = p.parse_args()
    print(header(args.device, args.threads))
    scale = T / args.steps
    note = "" if args.steps == T else f" (measured {args.steps} steps, scaled x{scale:g} to 300: EXTRAPOLATED)"
    common = dict(steps=args.steps, device=args.device, hidden=args.hidden)
    variants = {
        "reference (one class of 4 at a time, 2 UNet calls per step, fp32)": (reference, {}),
        "ours --plain (all 40 in one batch, cond+uncond in one call, fp32)": (ours, {"fast": False}),
        **fast_path_variants(ours, "BatchNorm folded, channels_last, inference mode", "CUDA graphs"),
    }
    results = {}
    for name, (fn, extra) in variants.items():
        r = isolated(fn, threads=args.threads, **common, **extra)
        results[name] = r
        mem = f"peak RSS {r['peak_cpu_rss_mb']:.0f} MB" + (
            f", peak GPU {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else ""
        )
        warm = f", warm-up/compile {r['warmup_s']:.1f} s (not included)" if r["warmup_s"] else ""
        chosen = f"; {r['precision']}" if "precision" in r else ""
        print(
            f"{name}: {r['n']} samples x 300 steps {r['seconds'] * scale:.2f} s{note}{warm}; {mem}{chosen}", flush=True
        )
    ref_s = next(iter(results.values()))["seconds"]
    for name, r in list(results.items())[1:]:
        print(f"ratio speed  {name} / reference = {ref_s / r['seconds']:.2f}x")
    if args.big:
        r = isolated(ours, threads=args.threads, **common, fast=True, n_per_class=args.big // 10)
        print(
            f"ours --fast: {r['n']} samples x 300 steps {r['seconds'] * scale:.2f} s{note}, warm-up "
            f"{r['warmup_s']:.1f} s; reference extrapolated from its 40: {ref_s * scale * r['n'] / 40:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
