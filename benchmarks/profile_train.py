"""Where a training step's time goes on this machine, and how close it is to the machine's matmul peak (issue 16).

  python benchmarks/profile_train.py --threads 2 --steps 4            # the fast path (the default of train)
  python benchmarks/profile_train.py --threads 2 --steps 4 --plain    # eager fp32, as the course

Measures, in one command: the peak of a 2048x2048 matmul (fp32, and bf16 where native), the class recipe's step
(D = 64, batch 128, Adam) in steps/s and GFLOP/s (FLOPs counted by torch.utils.flop_counter for forward +
backward), its fraction of the matmul peak, then a torch.profiler table of the ops by self CPU time.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import header


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    from diffusionlab.data import Split
    from diffusionlab.precision import bf16_native
    from diffusionlab.training import Trainer, recipe

    print(header("cpu", args.threads))
    peak32 = matmul_peak(torch.float32)
    native = bf16_native(torch.device("cpu"))
    peak16 = matmul_peak(torch.bfloat16) if native else None
    print(
        f"matmul peak: fp32 {peak32:.0f} GFLOP/s" + (f", bf16 {peak16:.0f} GFLOP/s" if peak16 else ", no native bf16")
    )

    config = recipe("class", max_steps=10**9, ema_decay=0.999)
    n = 128 * (args.steps + 3)
    g = torch.Generator().manual_seed(0)
    split = Split(
        torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g),
        torch.randint(0, 10, (n,), generator=g),
        {},
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, tmp, progress=False, fast=not args.plain)
        images, labels = split.images, split.labels
        perm = torch.randperm(n, generator=g)
        trainer._train_step(images, labels, perm)  # warm-up
        with FlopCounterMode(display=False) as counter:
            trainer._train_step(images, labels, perm)
        flops = counter.get_total_flops()
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                trainer._train_step(images, labels, perm)
        secs = (time.perf_counter() - start) / args.steps
    rate = flops / secs / 1e9
    peak = peak16 if trainer.autocast_dtype is not None else peak32
    path = "fast path" if not args.plain else "plain"
    precision = "bf16 autocast" if trainer.autocast_dtype is not None else "fp32"
    print(
        f"train step ({path}, {precision}): {1 / secs:.3f} steps/s, {flops / 1e9:.0f} GFLOP/step, {rate:.0f} GFLOP/s "
        f"= {100 * rate / peak:.0f} % of the {precision.split()[0]} matmul peak (profiled steps)"
    )
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
