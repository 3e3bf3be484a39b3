"""What `--best-of auto` keeps, from saved candidates (issue 37): illusion_table rows of one anagram view sampled
with N = 8 at several seeds (--images) are the rounds, in seed order; the tool's own loop (tools.readings.draw_until)
draws round after round for each pair until the ranker reads one candidate as asked or the rounds run out, and the
judges grade the kept image. Also best-of-all (every round ranked at once) and any-of-all (the judges' ceiling).
The judges choose nothing here.

  python best_of_auto.py --view flip --rows ROWS.jsonl --images DIR [--rows ... --images ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import torch
from illusion_judging import image_file, load_judge, pair_labels, passes, readings

HERE = Path(__file__).resolve().parent
MODEL = SimpleNamespace(image_shape=(1, 28, 28), num_classes=10)


def rounds_by_pair(rows: list[dict], image_dirs: list[Path], view: str) -> dict[tuple[int, int], list]:
    """(a, b) -> its candidates, one (8, ...) tensor per seed, in seed order."""
    from diffusionlab.tools.readings import AUTO_ROUND

    found: dict[tuple[int, int], dict[int, torch.Tensor]] = {}
    for row in rows:
        if row["kind"] != "anagram" or row["view"] != view:
            continue
        files = [d / image_file(row) for d in image_dirs if (d / image_file(row)).is_file()]
        if not files:
            continue
        if row["n_per_pair"] != AUTO_ROUND:
            raise SystemExit(f"rows need N = {AUTO_ROUND} images per pair (a round), got {row['n_per_pair']}")
        images = torch.load(files[0])
        first, second = pair_labels(MODEL, AUTO_ROUND, row.get("pairs"))
        for i in range(0, len(images), AUTO_ROUND):
            found.setdefault((int(first[i]), int(second[i])), {})[row["seed"]] = images[i : i + AUTO_ROUND]
    return {pair: [by_seed[s] for s in sorted(by_seed)] for pair, by_seed in found.items()}


def simulate(rounds: list[torch.Tensor], pair: tuple[int, int], view: str, ranker, judges: dict) -> dict:
    """One pair: the image --best-of auto keeps (budget: every round), graded by each judge; best-of-all; any."""
    from diffusionlab.tools.illusions import rank_key
    from diffusionlab.tools.readings import draw_until

    def score(x):
        return rank_key(readings("anagram", view, MODEL, x), list(pair), ranker)

    queue = iter(rounds)
    everything = torch.cat(rounds)
    kept, info = draw_until(lambda count: next(queue)[:count], score, 1, len(everything), None)
    # the kept image and the ranker's best of all, then every candidate: read once, graded by each judge
    graded = torch.cat([kept, everything[int(score(everything)[0].argmax())][None], everything])
    reads = readings("anagram", view, MODEL, graded)
    labels = [torch.full((len(graded),), pair[0]), torch.full((len(graded),), pair[1])]
    out = {"candidates": info["candidates_per_image"]}
    for name, judge in judges.items():
        ok = passes(judge, reads, labels)
        out[name] = {"auto": bool(ok[0]), "best of all": bool(ok[1]), "any": bool(ok[2:].any())}
    return out


def main() -> None:
    from diffusionlab.evaluation.classifier import load_ranker

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--view", required=True)
    p.add_argument("--rows", action="append", required=True, help="illusion_table rows (JSON lines); repeatable")
    p.add_argument("--images", action="append", required=True, help="their --images folders; repeatable")
    p.add_argument("--dev-judge", default=str(HERE / "judges" / "mnist-devjudge-mlp.safetensors"))
    p.add_argument("--judge", default=str(HERE / "judges" / "mnist-judge-lenet.safetensors"))
    args = p.parse_args()
    rows = [json.loads(line) for f in args.rows for line in Path(f).read_text().splitlines() if line.strip()]
    by_pair = rounds_by_pair(rows, [Path(d) for d in args.images], args.view)
    if not by_pair:
        raise SystemExit(f"no {args.view} anagram rows with their images saved in {', '.join(args.images)}")
    judges = {"development judge": load_judge(args.dev_judge), "held-out judge": load_judge(args.judge)}
    ranker = load_ranker("mnist", "cpu")
    results = [simulate(rounds, pair, args.view, ranker, judges) for pair, rounds in sorted(by_pair.items())]
    counts = [r["candidates"] for r in results]
    print(
        f"{args.view}: {len(results)} pairs, rounds per pair {sorted({len(r) for r in by_pair.values()})}; "
        f"--best-of auto drew {sum(counts) / len(counts):.1f} candidates per image on average "
        f"({ {c: counts.count(c) for c in sorted(set(counts))} })"
    )
    print("| judge | --best-of auto | best of all (ranker) | any of all |\n|---|---|---|---|")
    for name in judges:
        cells = [
            f"{100 * sum(r[name][m] for r in results) / len(results):.1f} %" for m in ("auto", "best of all", "any")
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
