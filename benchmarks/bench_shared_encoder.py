"""CFG / hybrid steps with the encoder shared between branches vs the plain batched call (issue 16), one command.

  python benchmarks/bench_shared_encoder.py --threads 1 --repeats 5

The shipped MNIST class UNet on the fast path; 40 images (4 per digit); each step timed alternately both ways
(so load changes hit both alike); prints the median step time of each and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("-n", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from diffusionlab import guidance
    from diffusionlab.backends import load_model

    model = load_model("mnist", "cpu")
    x = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    cond = model.encode([str(i % 10) for i in range(args.n)])
    null = model.null(1)

    class NoSharing:  # the model without predict_branches: every branch a copy of x in one batch
        def __getattr__(self, name):
            if name == "predict_branches":
                raise AttributeError(name)
            return getattr(model, name)

    plain_model = NoSharing()
    rows = {
        "cfg": (guidance.cfg(model, cond, null, 5.0), guidance.cfg(plain_model, cond, null, 5.0)),
        "hybrid": (
            guidance.hybrid(model, cond, cond.roll(1, 1), null, 5.0),
            guidance.hybrid(plain_model, cond, cond.roll(1, 1), null, 5.0),
        ),
    }
    print(header("cpu", args.threads))
    print(f"\n{args.n} images, fast path, median of {args.repeats} steps each\n")
    print("| step | plain batched call | shared encoder | ratio |\n|---|---|---|---|")
    for name, (shared, plain) in rows.items():
        times = {"shared": [], "plain": []}
        shared(x, 150), plain(x, 150)  # warm-up
        for _ in range(args.repeats):
            for label, est in (("plain", plain), ("shared", shared)):
                start = time.perf_counter()
                est(x, 150)
                times[label].append(time.perf_counter() - start)
        p, s = statistics.median(times["plain"]), statistics.median(times["shared"])
        print(f"| {name} | {1000 * p:.0f} ms | {1000 * s:.0f} ms | {p / s:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
