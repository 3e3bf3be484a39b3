"""Which ranker design to ship (issue 37): re-rank the saved candidates of illusion_table rows (--images) with
each design and score the kept image by the development judge, which chooses, and by the held-out judge, which
only reports. The held-out judge never picks a design: it grades the choice made without it.

  python ranker_study.py --rows ROWS.jsonl --images DIR --best-of 8
  python ranker_study.py --rows ROWS.jsonl --images DIR --best-of 8 --cross
  python ranker_study.py --rows ROWS.jsonl --images DIR --best-of 8 --extra FLIPSYM.safetensors

--cross asks how far independent classifiers agree on the same candidates: each network (the shipped ranker, the
development judge, the held-out judge, a second classifier of the shipped kind trained with seed 7) ranks, and
every network grades each one's picks. The judges rank only here, to measure that agreement; no figure of the
tools is ranked by them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import torch
from illusion_judging import image_file, kept_share, load_judge, pair_labels, passes, ranked_picks, readings

HERE = Path(__file__).resolve().parent


def designs(extra: list[str] = ()) -> dict:
    """name -> ranker: the shipped ensemble untilted and tilted, and its first member alone (the old ranker); with
    --extra, each candidate member alone and added to the shipped ensemble (tilted)."""
    from diffusionlab.evaluation.classifier import RANKER_TILTS, Ensemble, load_classifier, load_ranker

    shipped = load_ranker("mnist", "cpu")
    if extra:
        found = {"ensemble, tilts (shipped)": Ensemble(shipped.members, RANKER_TILTS)}
        for path in extra:
            member = load_classifier(path, "cpu")
            found[f"shipped + {Path(path).stem}"] = Ensemble([*shipped.members, member], RANKER_TILTS)
            found[f"{Path(path).stem} alone, tilts"] = Ensemble([member], RANKER_TILTS)
        return found
    return {
        "classifier alone": Ensemble(shipped.members[:1]),
        "ensemble": Ensemble(shipped.members),
        f"ensemble, tilts {RANKER_TILTS}": Ensemble(shipped.members, RANKER_TILTS),
        "ensemble, tilts (0, 5, -5)": Ensemble(shipped.members, (0.0, 5.0, -5.0)),
        "ensemble, tilts (0, 15, -15)": Ensemble(shipped.members, (0.0, 15.0, -15.0)),
    }


def cross_networks(args) -> dict:
    """name -> network, for --cross: the shipped ranker and three classifiers it was not built from."""
    from diffusionlab.evaluation.classifier import load_ranker

    return {
        "shipped ranker": load_ranker("mnist", "cpu"),
        "development judge": load_judge(args.dev_judge),
        "held-out judge": load_judge(args.judge),
        "seed-7 classifier": load_judge(str(HERE / "judges" / "mnist-judge-seed7.safetensors")),
    }


def saved_rows(args, model):
    """(view, readings, labels) of each saved anagram row of --rows."""
    for row in map(json.loads, Path(args.rows).read_text().splitlines()):
        f = Path(args.images) / image_file(row)
        if row["kind"] == "anagram" and f.is_file():
            reads = readings("anagram", row["view"], model, torch.load(f))
            yield row["view"], reads, pair_labels(model, row["n_per_pair"], row.get("pairs"))


def cross(args, model) -> None:
    """Best-of-k ranked by each network of cross_networks, graded by each; with single-shot and any-of-k."""
    nets = cross_networks(args)
    wins = graded(args, model, nets, nets, lambda name: f"best-of-{args.best_of} ranked by the {name}", True)
    print_table(wins, [f"graded by the {g}" for g in nets], list(nets))


def graded(args, model, judges: dict, rankers: dict, label, any_of: bool = False) -> dict:
    """(view, what, judge) -> per-group wins over the saved rows: single-shot, any-of-k (any_of), and best-of-k
    as each ranker picks (label(name) names its line). Each ranker picks once per row; each judge reads once."""
    k = args.best_of
    wins: dict[tuple[str, str, str], list[float]] = {}
    for view, reads, labels in saved_rows(args, model):
        if len(labels[0]) % k:
            raise SystemExit(
                f"--best-of {k} needs rows of a multiple of {k} images per pair ({view}: {len(labels[0])})"
            )
        picks = {name: ranked_picks(ranker, reads, labels, k) for name, ranker in rankers.items()}
        for jn, judge in judges.items():
            ok = passes(judge, reads, labels)
            wins.setdefault((view, "single-shot", jn), []).extend(ok.float().tolist())
            if any_of:
                wins.setdefault((view, f"any of {k}", jn), []).extend(ok.view(-1, k).any(1).float().tolist())
            for name, kept in picks.items():
                wins.setdefault((view, label(name), jn), []).extend([kept_share(ok, kept)] * len(kept))
    if not wins:
        raise SystemExit(f"no anagram rows of {args.rows} have their images in {args.images}")
    return wins


def print_table(wins: dict, headers: list[str], graders: list[str]) -> None:
    """A markdown table: one line per (view, what), one column per grader, the mean of its wins in %."""
    print("| view | images | " + " | ".join(headers) + " |\n|---|---|" + "---|" * len(headers))
    for view, what in dict.fromkeys((v, w) for v, w, _ in wins):
        cells = [f"{100 * sum(wins[view, what, g]) / len(wins[view, what, g]):.1f} %" for g in graders]
        print(f"| {view} | {what} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--best-of", type=int, default=8)
    p.add_argument("--dev-judge", default=str(HERE / "judges" / "mnist-devjudge-mlp.safetensors"))
    p.add_argument("--judge", default=str(HERE / "judges" / "mnist-judge-lenet.safetensors"))
    p.add_argument("--cross", action="store_true", help="each network ranks, each grades (see above)")
    p.add_argument("--extra", nargs="*", default=[], help="candidate ranker members (.safetensors) to try")
    args = p.parse_args()
    model = SimpleNamespace(image_shape=(1, 28, 28), num_classes=10)
    if args.cross:
        return cross(args, model)
    judges = {"development judge": load_judge(args.dev_judge), "held-out judge": load_judge(args.judge)}
    wins = graded(args, model, judges, designs(args.extra), lambda name: f"best-of-{args.best_of}: {name}")
    print_table(wins, list(judges), list(judges))


if __name__ == "__main__":
    main()
