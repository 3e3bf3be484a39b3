"""Which ranker design to ship (issue 37): re-rank the saved candidates of illusion_table rows (--images) with
each design and score the kept image by the development judge, which chooses, and by the held-out judge, which
only reports. The held-out judge never picks a design: it grades the choice made without it.

  python ranker_study.py --rows ROWS.jsonl --images DIR --best-of 8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import torch
from illusion_judging import image_file, load_judge, pair_labels, passes, ranked_best_of, readings

HERE = Path(__file__).resolve().parent


def designs() -> dict:
    """name -> ranker: the shipped ensemble untilted and tilted, and its first member alone (the old ranker)."""
    from diffusionlab.evaluation.classifier import RANKER_TILTS, Ensemble, load_ranker

    shipped = load_ranker("mnist", "cpu")
    return {
        "classifier alone": Ensemble(shipped.members[:1]),
        "ensemble": Ensemble(shipped.members),
        f"ensemble, tilts {RANKER_TILTS}": Ensemble(shipped.members, RANKER_TILTS),
        "ensemble, tilts (0, 5, -5)": Ensemble(shipped.members, (0.0, 5.0, -5.0)),
        "ensemble, tilts (0, 15, -15)": Ensemble(shipped.members, (0.0, 15.0, -15.0)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--best-of", type=int, default=8)
    p.add_argument("--dev-judge", default=str(HERE / "judges" / "mnist-devjudge-mlp.safetensors"))
    p.add_argument("--judge", default=str(HERE / "judges" / "mnist-judge-lenet.safetensors"))
    args = p.parse_args()
    judges = {"development judge": load_judge(args.dev_judge), "held-out judge": load_judge(args.judge)}
    model, k = SimpleNamespace(image_shape=(1, 28, 28), num_classes=10), args.best_of
    rankers = designs()  # loaded once, not per row and judge
    wins: dict[tuple[str, str, str], list[float]] = {}
    for row in map(json.loads, Path(args.rows).read_text().splitlines()):
        f = Path(args.images) / image_file(row)
        if row["kind"] != "anagram" or not f.is_file():
            continue
        reads = readings("anagram", row["view"], model, torch.load(f))
        labels = pair_labels(model, row["n_per_pair"], row.get("pairs"))
        for jn, judge in judges.items():
            single = passes(judge, reads, labels).float()
            wins.setdefault((row["view"], "single-shot", jn), []).extend(single.tolist())
            for name, ranker in rankers.items():
                groups = len(single) // k
                wins.setdefault((row["view"], f"best-of-{k}: {name}", jn), []).extend(
                    [ranked_best_of(ranker, reads, labels, k, judge)] * groups
                )
    print("| view | rows | development judge | held-out judge |\n|---|---|---|---|")
    for view, what in dict.fromkeys((v, w) for v, w, _ in wins):
        cells = [f"{100 * sum(wins[view, what, j]) / len(wins[view, what, j]):.1f} %" for j in judges]
        print(f"| {view} | {what} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
