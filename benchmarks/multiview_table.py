"""Multi-view anagram success (issue 13): 3-4 readings at once, e.g. a digit upright and three others through
rot90, rot180 and rot270, scored by the shipped classifier, for each way of combining the views.

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


def digit_tuples(num_classes: int, size: int, count: int, seed: int) -> list[tuple[int, ...]]:
    """`count` tuples of `size` distinct classes, drawn with their own seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    return [tuple(int(c) for c in torch.randperm(num_classes, generator=gen)[:size]) for _ in range(count)]


def reading_scores(clf, images, views, labels) -> dict[str, float]:
    """images in [0, 1] (N, C, H, W); views: the unit-range views of readings 2..k; labels (N, k)."""
    readings = [images] + [v.apply(images).clamp(0, 1) for v in views]
    right = torch.stack([clf.classify(r) == labels[:, i] for i, r in enumerate(readings)], 1)
    return {
        "all": float(right.all(1).float().mean()),
        "readings": float(right.float().mean()),
        "per_reading": [float(r) for r in right.float().mean(0)],
        "ink": float(images.mean()),
    }


def measure(model, clf, views: list[str], tuples, n: int, combine: str, cfg: float | None, seed: int) -> dict:
    from diffusionlab import edits
    from diffusionlab.evaluation.metrics import to_unit
    from diffusionlab.views import get_view

    labels = torch.tensor(tuples).repeat_interleave(n, 0)
    eye = torch.eye(model.num_classes, device=model.device)
    prompts = [eye[labels[:, i].to(model.device)] for i in range(labels.shape[1])]
    gen = torch.Generator("cpu").manual_seed(seed)
    start = time.perf_counter()
    x = edits.anagram_views(model, prompts, views, len(labels), cfg, gen, seed=seed, combine=combine)
    seconds = time.perf_counter() - start
    images = to_unit(x.cpu(), model.value_range)
    unit_views = [get_view(v, model.image_shape, (0.0, 1.0), seed) for v in views]
    row = {"views": ",".join(views), "combine": combine, "cfg": cfg or "default", "tuples": len(tuples), "n": n}
    return row | {"seed": seed} | reading_scores(clf, images, unit_views, labels) | {"seconds": round(seconds, 1)}


def table(rows: list[dict]) -> str:
    lines = ["| views | combine | cfg | tuples x n | all readings right | readings right | ink | seconds |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in rows:
        lines.append(
            f"| {r['views']} | {r['combine']} | {r['cfg']} | {r['tuples']} x {r['n']} | {100 * r['all']:.1f} % "
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
    args = p.parse_args()
    path = Path(args.rows)
    rows = read_rows(path)
    if not args.table:
        model, clf = model_and_classifier(args.model)
        views = args.views.split(",")
        tuples = digit_tuples(model.num_classes, len(views) + 1, args.tuples, args.seed)
        keys = ("views", "combine", "cfg", "tuples", "n", "seed")
        for combine in args.combine.split(","):
            probe = {"views": args.views, "combine": combine, "cfg": args.cfg or "default", "tuples": args.tuples}
            probe |= {"n": args.n, "seed": args.seed}
            if any(all(r.get(k) == probe[k] for k in keys) for r in rows):
                continue
            row = measure(model, clf, views, tuples, args.n, combine, args.cfg, args.seed)
            rows.append(row)
            append_row(path, row)
            print(f"{combine}: all {100 * row['all']:.1f} %, readings {100 * row['readings']:.1f} %", flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
