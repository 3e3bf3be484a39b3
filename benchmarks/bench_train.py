"""Training: steps per second of ours vs the reference (benchmarks/reference.py) on the class recipe (B2.4:
D = 64, batch 128, Adam 1e-3), measured in one run, each variant in its own process; peak memory of each.

On a CPU only a few dozen steps are measured and the full recipe's wall time (20 epochs x 469 steps) is an
extrapolation, printed as such. With --full (meant for a GPU) both run the whole recipe and report final loss.
--accuracy K (default 100 with --full) then samples K CFG images per digit from each trained network with the same
sampler (all 300 steps, CFG 5) and scores them with the shipped MNIST classifier: the conditional accuracy of both.

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


def conditional_accuracy(net, device: str, per_class: int, sample_steps: int | None, hidden: int) -> float | None:
    """Conditional accuracy of K CFG samples per digit of a trained class UNet (the shipped MNIST classifier)."""
    if per_class < 1:
        return None
    from diffusionlab.course_model import CourseModel
    from diffusionlab.evaluation.classifier import load_classifier
    from diffusionlab.evaluation.evaluate import generate_class_samples
    from diffusionlab.evaluation.metrics import conditional_accuracy as score
    from diffusionlab.training import model_config, recipe

    model = CourseModel(net, model_config(recipe("class", hidden=hidden), {}), torch.device(device))
    labels = torch.arange(10).repeat_interleave(per_class)
    images = generate_class_samples(model, labels, 5.0, sample_steps, seed=0, progress=False)
    return score(load_classifier("mnist", device), images, labels)


def ours(
    steps: int,
    device: str,
    data_dir: str | None,
    fast: bool,
    precision: str | None = None,
    full: bool = False,
    hidden: int = 64,
    accuracy: int = 0,
    sample_steps: int | None = None,
):
    from diffusionlab.training import open_run, recipe
    from diffusionlab.training.losslog import LOG_NAME, read_log_rows

    split = load(data_dir)
    config = recipe("class", hidden=hidden) if full else recipe("class", hidden=hidden, max_steps=steps)
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
        wall = time.perf_counter() - start  # incl. warm-up, compilation and checkpoints
        rows = read_log_rows(Path(tmp) / "run" / LOG_NAME)  # the last step's loss, as the reference's
    return {
        "steps": summary["step"],
        "seconds": summary["seconds"],
        "wall_s": wall,
        "final_loss": rows[-1]["loss"] if rows else None,
        "accuracy": conditional_accuracy(trainer.net, device, accuracy, sample_steps, hidden),
        "precision": trainer.precision_choice.describe(),
    }


def reference(
    steps: int,
    device: str,
    data_dir: str | None,
    full: bool = False,
    hidden: int = 64,
    accuracy: int = 0,
    sample_steps: int | None = None,
):
    import reference as ref

    from diffusionlab.networks.unet import UNet
    from diffusionlab.training import recipe

    split = load(data_dir)
    torch.manual_seed(0)
    net = UNet(recipe("class", hidden=hidden).unet_config()).to(device)
    loader = ref.make_loader(split.images, split.labels)
    n = FULL_STEPS if full else steps
    start = time.perf_counter()
    losses = ref.train_steps(net, loader, n, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "steps": n,
        "seconds": seconds,
        "wall_s": seconds,
        "final_loss": losses[-1],
        "accuracy": conditional_accuracy(net, device, accuracy, sample_steps, hidden),
    }


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import fast_path_variants, header, isolated

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=str(DATA) if DATA.is_dir() else None)
    p.add_argument("--full", action="store_true", help="the whole 20-epoch recipe both ways (GPU)")
    p.add_argument("--hidden", type=int, default=64, help="UNet width D (the recipe's 64; smaller for a smoke run)")
    p.add_argument(
        "--accuracy", type=int, help="CFG samples per digit scored after training (default: 100 with --full)"
    )
    p.add_argument("--sample-steps", type=int, help="sampler steps for --accuracy (default: all 300)")
    args = p.parse_args()
    print(header(args.device, args.threads))
    accuracy = args.accuracy if args.accuracy is not None else (100 if args.full else 0)
    common = dict(
        steps=args.steps,
        device=args.device,
        data_dir=args.data_dir,
        full=args.full,
        hidden=args.hidden,
        accuracy=accuracy,
        sample_steps=args.sample_steps,
    )
    variants = {
        "reference (DataLoader, fp32, eager)": (reference, {}),
        "ours --plain (resident uint8, fp32)": (ours, {"fast": False}),
        **fast_path_variants(ours, "channels_last", "graphs + fused Adam"),
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
        if args.full:
            recipe_time = f"full recipe ({FULL_STEPS} steps) {r['wall_s']:.1f} s wall (measured, incl. warm-up)"
        else:
            recipe_time = f"full recipe ({FULL_STEPS} steps) {full:.0f} s (EXTRAPOLATED from the measured steps)"
        acc = f"; conditional accuracy {r['accuracy']:.1%} ({accuracy} per digit)" if r["accuracy"] is not None else ""
        print(
            f"{name}: {r['steps']} steps in {r['seconds']:.2f} s = {sps:.3f} steps/s; {recipe_time}; "
            f"final loss {r['final_loss']:.4f}{acc}; {mem}" + (f"; {r['precision']}" if "precision" in r else ""),
            flush=True,
        )
    ref_sps = next(iter(results.values()))
    ref_rate = ref_sps["steps"] / ref_sps["seconds"]
    for name, r in list(results.items())[1:]:
        print(f"ratio steps/s  {name} / reference = {r['steps'] / r['seconds'] / ref_rate:.2f}x")


if __name__ == "__main__":
    main()
