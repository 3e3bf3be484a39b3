"""Multi-view anagram success (issue 13): 3-4 readings at once, e.g. a digit upright and three others through
rot90, rot180 and rot270, scored by the shipped classifier (rows before issue 37) or, with --judge, by the
held-out judge; --balance: the shipped ranker's reading balance while sampling, as the anagram tool samples;
--two-digits: tuples of two digits repeated (a, b, a, b): two digits under four views.

  OMP_NUM_THREADS=1 python benchmarks/multiview_table.py --views rot90,rot180 --combine alternate --balance \
      --judge benchmarks/judges/mnist-judge-lenet.safetensors --rows docs/illusions-multiview.jsonl

  OMP_NUM_THREADS=1 nice -n 10 python benchmarks/multiview_table.py --views rot90,rot180,rot270 --tuples 30 --n 2 \\
      --combine mean,alternate,rescaled --rows docs/illusions-multiview.jsonl
  python benchmarks/multiview_table.py --rows docs/illusions-multiview.jsonl --table

The digit tuples are drawn at random (distinct digits, seeded), the same for every row. A row gives the share of
images whose every reading is right ("all"), the mean share of right readings, and the mean ink (pixel mean in
[0, 1]; real MNIST: 0.13): the mean of four disagreeing estimates can cancel every stroke and leave a black image,
which the classifier still reads as something. Rows are appended to --rows and skipped when run again.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import append_row, model_and_classifier, read_rows


def digit_tuples(num_classes: int, size: int, count: int, seed: int, two_digits: bool = False) -> list[tuple[int, ...]]:
    """`count` tuples of `size` distinct classes (two_digits: two, repeated a, b, a, b), with their own generator."""
    gen = torch.Generator().manual_seed(seed)
    tuples = [tuple(int(c) for c in torch.randperm(num_classes, generator=gen)[:size]) for _ in range(count)]
    return [tuple(t[i % 2] for i in range(size)) for t in tuples] if two_digits else tuples


def reading_scores(clf, images, views, labels) -> dict[str, float]:
    """images in [0, 1] (N, C, H, W); views: the unit-range views of readings 2..k; labels (N, k)."""
    readings = [images] + [v.apply(images, (0.0, 1.0)).clamp(0, 1) for v in views]
    right = torch.stack([clf.classify(r) == labels[:, i] for i, r in enumerate(readings)], 1)
    return {
        "all": float(right.all(1).float().mean()),
        "readings": float(right.float().mean()),
        "per_reading": [float(r) for r in right.float().mean(0)],
        "ink": float(images.mean()),
    }


def measure(
    model, clf, views: list[str], tuples, n: int, combine: str, cfg: float | None, seed: int, steer=None
) -> dict:
    """One row; steer: the ranker that balances the readings while sampling (None: no balance)."""
    from diffusionlab import edits
    from diffusionlab.evaluation.balance import reading_balance
    from diffusionlab.evaluation.metrics import to_unit
    from diffusionlab.views import reading_views

    labels = torch.tensor(tuples).repeat_interleave(n, 0)
    eye = torch.eye(model.num_classes, device=model.device)
    prompts = [eye[labels[:, i].to(model.device)] for i in range(labels.shape[1])]
    gen = torch.Generator("cpu").manual_seed(seed)
    every = reading_views(views, model.image_shape, seed=seed)  # built once: the identity, then each view
    unit_views = every[1:]
    balance = None
    if steer is not None:
        balance = reading_balance(steer, every, list(labels.T), model.value_range)
    start = time.perf_counter()
    x = edits.anagram_views(model, prompts, unit_views, len(labels), cfg, gen, combine=combine, balance=balance)
    seconds = time.perf_counter() - start
    images = to_unit(x.cpu(), model.value_range)
    row = {"views": ",".join(views), "combine": combine, "cfg": cfg or "default", "tuples": len(tuples), "n": n}
    row |= {"balance": steer is not None} if steer is not None else {}
    return row | {"seed": seed} | reading_scores(clf, images, unit_views, labels) | {"seconds": round(seconds, 1)}


def table(rows: list[dict]) -> str:
    lines = [
        "| views | digits | combine | balance | judge | cfg | tuples x n | all readings right | readings right | ink | seconds |"
    ]
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        digits = "two, repeated" if r.get("two_digits") else "distinct"
        lines.append(
            f"| {r['views']} | {digits} | {r['combine']} | {'on' if r.get('balance') else 'off'} | "
            f"{r.get('judge', 'shipped classifier')} | {r['cfg']} | {r['tuples']} x {r['n']} | {100 * r['all']:.1f} % "
            f"| {100 * r['readings']:.1f} % | {r['ink']:.3f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mnist")
    p.add_argument("--views", default="rot90,rot180,rot270", help="the views of readings 2..k")
    p.add_argument("--tuples", type=int, default=30, help="random digit tuples")
    p.add_argument("--n", type=int, default=2, help="images per tuple")
    p.add_argument("--combine", default="mean,alternate,rescaled")
    p.add_argument("--cfg", type=float, default=None, help="CFG scale (default: the anagram default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", default="illusions-multiview.jsonl", help="JSON lines of measured rows (appended)")
    p.add_argument("--table", action="store_true", help="only print the table of --rows")
    p.add_argument("--balance", action="store_true", help="the shipped ranker balances the readings (as the tool)")
    p.add_argument("--judge", default=None, help="score with this held-out judge (benchmarks/judges)")
    p.add_argument("--two-digits", action="store_true", help="tuples of two digits repeated: a, b, a, b")
    args = p.parse_args()
    path = Path(args.rows)
    rows = read_rows(path)
    if not args.table:
        from diffusionlab.evaluation.classifier import load_ranker

        model, clf = model_and_classifier(args.model)
        steer = load_ranker(model.config.get("data", "mnist"), "cpu") if args.balance else None
        if args.judge:
            from illusion_table import load_judge

            clf = load_judge(args.judge)
        views = args.views.split(",")
        tuples = digit_tuples(model.num_classes, len(views) + 1, args.tuples, args.seed, args.two_digits)
        keys = ("views", "combine", "cfg", "tuples", "n", "seed", "balance", "judge", "two_digits")
        for combine in args.combine.split(","):
            probe = {"views": args.views, "combine": combine, "cfg": args.cfg or "default", "tuples": args.tuples}
            probe |= {"n": args.n, "seed": args.seed}
            probe |= {"balance": True} if args.balance else {}
            probe |= {"judge": Path(args.judge).name} if args.judge else {}
            probe |= {"two_digits": True} if args.two_digits else {}
            if any(all(r.get(k) == probe.get(k) for k in keys) for r in rows):
                continue
            row = measure(model, clf, views, tuples, args.n, combine, args.cfg, args.seed, steer)
            row |= {k: probe[k] for k in ("judge", "two_digits") if k in probe}
            rows.append(row)
            append_row(path, row)
            print(f"{combine}: all {100 * row['all']:.1f} %, readings {100 * row['readings']:.1f} %", flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
