"""Training: steps per second of ours vs the reference (benchmarks/reference.py) on the class recipe (B2.4:
D = 64, batch 128, Adam 1e-3), measured in one run, each variant in its own process; peak memory of each.

On a CPU only a few dozen steps are measured and the full recipe's wall time (20 epochs x 469 steps) is an
extrapolation, printed as such. With --full (meant for a GPU) both run the whole recipe and report final loss.

  python benchmarks/bench_train.py --steps 20 --threads 1            # CPU
  python benchmarks/bench_train.py --device cuda --steps 300 [--full] # GPU
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
FULL_STEPS = 20 * math.ceil(60_000 / 128)


def load(data_dir: str | None):
    from diffusionlab.data import load_split

    return load_split("mnist", "train", data_dir)


def ours(steps: int, device: str, data_dir: str | None, fast: bool, precision: str = "auto", full: bool = False):
    from diffusionlab.training import open_run, recipe

    split = load(data_dir)
    config = recipe("class") if full else recipe("class", max_steps=steps)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = open_run(
            config,
            Path(tmp) / "run",
            resume=False,
            progress=False,
            device=torch.device(device),
            fast=fast,
            precision=precision,
        )
        start = time.perf_counter()
        summary = trainer.run(split)
        wall = time.perf_counter() - start
    return {
        "steps": summary["step"],
        "seconds": summary["seconds"],
        "wall_incl_checkpoints": wall,
        "final_loss": trainer.last_losses[-1] if trainer.last_losses else None,
    }


def reference(steps: int, device: str, data_dir: str | None, full: bool = False):
    import reference as ref

    from diffusionlab.models.unet import UNet
    from diffusionlab.training import recipe

    split = load(data_dir)
    torch.manual_seed(0)
    net = UNet(recipe("class").unet_config()).to(device)
    loader = ref.make_loader(split.images, split.labels)
    n = FULL_STEPS if full else steps
    start = time.perf_counter()
    losses = ref.train_steps(net, loader, n, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return {"steps": n, "seconds": time.perf_counter() - start, "final_loss": losses[-1]}


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import header, isolated

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=str(DATA) if DATA.is_dir() else None)
    p.add_argument("--full", action="store_true", help="the whole 20-epoch recipe both ways (GPU)")
    args = p.parse_args()
    print(header(args.device, args.threads))
    common = dict(steps=args.steps, device=args.device, data_dir=args.data_dir, full=args.full)
    variants = {
        "reference (DataLoader, fp32, eager)": (reference, {}),
        "ours --plain (resident uint8, fp32)": (ours, {"fast": False}),
        "ours --fast, fp32 (channels_last)": (ours, {"fast": True, "precision": "fp32"}),
        "ours --fast (auto: bf16 autocast where native, channels_last, CUDA: graphs + fused Adam)": (
            ours,
            {"fast": True},
        ),
    }
    results = {}
    for name, (fn, extra) in variants.items():
        r = isolated(fn, threads=args.threads, **common, **extra)
        results[name] = r
        sps = r["steps"] / r["seconds"]
        full = FULL_STEPS / sps
        mem = f"peak RSS {r['peak_cpu_rss_mb']:.0f} MB" + (
            f", peak GPU {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else ""
        )
        what = "measured" if args.full else "EXTRAPOLATED from the measured steps"
        print(
            f"{name}: {r['steps']} steps in {r['seconds']:.2f} s = {sps:.3f} steps/s; full recipe "
            f"({FULL_STEPS} steps) {full:.0f} s ({what}); final loss {r['final_loss']:.4f}; {mem}",
            flush=True,
        )
    ref_sps = next(iter(results.values()))
    ref_rate = ref_sps["steps"] / ref_sps["seconds"]
    for name, r in list(results.items())[1:]:
        print(f"ratio steps/s  {name} / reference = {r['steps'] / r['seconds'] / ref_rate:.2f}x")


if __name__ == "__main__":
    main()
