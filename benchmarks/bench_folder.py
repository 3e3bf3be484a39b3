"""Is loading an image folder ever the bottleneck of training on it? (issue 40, item 5)

  OMP_NUM_THREADS=1 python benchmarks/bench_folder.py --threads 1             # the colour demo's folder, 32 and 16 px
  python benchmarks/bench_folder.py --data-dir out/shapes --sizes 32          # a folder of your own
  python benchmarks/bench_folder.py --quick                                   # a smoke run at tiny sizes

Measures, in one command, for a colour image folder (without --data-dir: the colour demo's, drawn by make-shapes
with --per-class images per class into a temporary folder):
(a) the loader: decoding the folder once into its bounded uint8 tensor (imagefolder.read_image_folder), images/s;
    then the trainer's batching (training/batches.draw_batch over seeded epoch permutations), batches/s and images/s;
(b) the class recipe's training step (D = 64, batch 128, Adam; the trainer's own _train_step on the fast path) at
    each --sizes, in steps/s and images/s, with its FLOPs counted by torch.utils.flop_counter;
(c) the step's GFLOP/s as a fraction of this machine's matmul peak, measured in the same command (fp32; bf16 rows
    only where the CPU computes bf16 natively).
The ratio printed per size is the batching's images/s over the training step's: far above 1x, loading is not what
a run waits for (and the one-time decode costs the time of a few training steps).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _common import header
from profile_train import matmul_peak

QUICK = {"per_class": 6, "hidden": 8, "batch_size": 4, "steps": 1, "peak_size": 256, "min_seconds": 0.2}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, help="an image folder (default: make-shapes into a temp folder)")
    parser.add_argument("--per-class", type=int, default=600, help="images per class of the drawn shapes folder")
    parser.add_argument("--sizes", default="32,16", help="--image-size values to measure, comma-separated")
    parser.add_argument("--hidden", type=int, default=64, help="the UNet's D (the class recipe's 64)")
    parser.add_argument("--batch-size", type=int, default=128, help="the class recipe's 128")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per row (after one warm-up)")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="time the batching for at least this long")
    parser.add_argument("--peak-size", type=int, default=2048, help="side of the square matmul of the peak")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of a few seconds")
    args = parser.parse_args()
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    return args


def time_decode(root: Path, size: int):
    """The folder decoded once, as train does: (the ImageFolder, seconds)."""
    from diffusionlab.imagefolder import read_image_folder

    start = time.perf_counter()
    folder = read_image_folder(root, size)
    return folder, time.perf_counter() - start


def time_batching(split, config, min_seconds: float) -> tuple[float, float]:
    """The trainer's batch drawing (index a seeded permutation, uint8 -> float) over whole epochs: (batches/s,
    images/s)."""
    from diffusionlab.model_protocol import generator_for
    from diffusionlab.training.batches import draw_batch, new_permutation, steps_of

    per_epoch, _ = steps_of(len(split.images), config)
    generator, batches, images = generator_for(0), 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        perm = new_permutation(len(split.images), generator)
        for index in range(per_epoch):
            x, _, _ = draw_batch(split.images, split.labels, perm, index, config)
            batches, images = batches + 1, images + len(x)
    seconds = time.perf_counter() - start
    return batches / seconds, images / seconds


def time_training(split, config, steps: int, precision: str) -> dict:
    """The trainer's own step on the folder's train split: steps/s, images/s and FLOPs per step."""
    from torch.utils.flop_counter import FlopCounterMode

    from diffusionlab.model_protocol import generator_for
    from diffusionlab.training import Trainer

    full_batches = len(split.images) // config.batch_size  # every timed step a full batch
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, tmp, progress=False, precision=precision)
        perm = torch.randperm(len(split.images), generator=generator_for(0))

        def step() -> None:
            trainer.batch_in_epoch %= full_batches
            trainer._train_step(split.images, split.labels, perm)

        step()  # warm-up
        with FlopCounterMode(display=False) as counter:
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        seconds = (time.perf_counter() - start) / steps
        precision_name = trainer.precision_choice.name
    return {
        "precision": precision_name,
        "steps_per_s": 1 / seconds,
        "images_per_s": config.batch_size / seconds,
        "gflop_per_step": counter.get_total_flops() / 1e9,
        "gflop_per_s": counter.get_total_flops() / seconds / 1e9,
    }


def config_for(folder, args: argparse.Namespace):
    from diffusionlab.training import recipe

    return recipe(
        "class",
        data=folder.name,
        class_names=folder.class_names,
        image_size=folder.image_size,
        channels=folder.channels,
        hidden=args.hidden,
        batch_size=args.batch_size,
        max_steps=10**9,
    )


def measure_size(root: Path, size: int, args: argparse.Namespace, peaks: dict[str, float]) -> list[str]:
    """The table rows of one --image-size: one per precision measured."""
    folder, decode_s = time_decode(root, size)
    n_images = len(folder.train) + len(folder.test)
    config = config_for(folder, args)
    if len(folder.train) < config.batch_size:
        raise SystemExit(f"error: {len(folder.train)} training images, fewer than one batch of {config.batch_size}")
    batches_per_s, batch_images_per_s = time_batching(folder.train, config, args.min_seconds)
    print(
        f"{size} px: decoded {n_images} images ({folder.channels} channels) in {decode_s:.2f} s = "
        f"{n_images / decode_s:.0f} images/s; batching {batches_per_s:.0f} batches/s = "
        f"{batch_images_per_s:.0f} images/s (batch {config.batch_size})",
        flush=True,
    )
    rows = []
    for precision, peak in peaks.items():
        t = time_training(folder.train, config, args.steps, precision)
        ratio = batch_images_per_s / t["images_per_s"]
        decode_steps = decode_s * t["steps_per_s"]
        print(
            f"{size} px, {t['precision']}: {t['steps_per_s']:.3f} steps/s = {t['images_per_s']:.1f} images/s, "
            f"{t['gflop_per_step']:.1f} GFLOP/step, {t['gflop_per_s']:.1f} GFLOP/s = "
            f"{100 * t['gflop_per_s'] / peak:.0f} % of the {precision} matmul peak; "
            f"loader/training images/s = {ratio:.1f}x; the decode costs {decode_steps:.1f} steps",
            flush=True,
        )
        rows.append(
            f"| {size} px | {n_images / decode_s:.0f} ({decode_s:.2f} s) | {batches_per_s:.0f} / "
            f"{batch_images_per_s:.0f} | {t['precision']} | {t['steps_per_s']:.3f} / {t['images_per_s']:.1f} | "
            f"{t['gflop_per_step']:.1f} | {t['gflop_per_s']:.1f} ({100 * t['gflop_per_s'] / peak:.0f} %) | "
            f"**{ratio:.0f}x** | {decode_steps:.1f} |"
        )
    return rows


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from diffusionlab.precision import bf16_native
    from diffusionlab.shapes import make_shapes

    print(header("cpu", args.threads))
    peaks = {"fp32": matmul_peak(torch.float32, args.peak_size)}
    if bf16_native(torch.device("cpu")):
        peaks["bf16"] = matmul_peak(torch.bfloat16, args.peak_size)
    print(
        "matmul peak: "
        + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peaks.items())
        + ("" if "bf16" in peaks else ", no native bf16")
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_dir
        if root is None:
            root = Path(tmp) / "shapes"
            start = time.perf_counter()
            make_shapes(root, args.per_class)
            print(f"make-shapes {root} -n {args.per_class}: {time.perf_counter() - start:.1f} s", flush=True)
        rows = [
            row for size in (int(s) for s in args.sizes.split(",")) for row in measure_size(root, size, args, peaks)
        ]
    print(
        "\n| size | decode once: images/s (time) | batching: batches/s / images/s | precision | train step: steps/s "
        "/ images/s | GFLOP/step | GFLOP/s (% of matmul peak) | loader / training images/s | decode = steps |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
