"""Illusion success table (issue 13): visual anagram success (both readings right, by the shipped classifier, as
`evaluate_anagrams`) and hybrid success (far AND near right, as `evaluate_hybrids`) over all ordered class pairs,
one factor at a time around a base setting.

  OMP_NUM_THREADS=1 nice -n 10 python benchmarks/illusion_table.py --views rot180,flip --n 2 \\
      --anagram "combine=mean,alternate,rescaled" --anagram "cfg=3,5,7.5,10" --anagram "steps=strided,100,300" \\
      --anagram "rule=auto,beta,ddim:0,dpm++2m" --hybrid "kernel=7,11,15" --hybrid "sigma=0.875,1.5,2.5" \\
      --rows docs/illusions.jsonl
  python benchmarks/illusion_table.py --rows docs/illusions.jsonl --table     # the markdown tables only

Each --anagram/--hybrid "FACTOR=V1,V2,..." varies one factor of the base (--anagram-base, --hybrid-base; the
library's defaults where a factor is "default"). Factors: steps (strided = the course's 30 strided steps, or a
count of evenly spaced ones; 300 = every step), rule (auto, beta, beta-tilde: ddpm variance; ddim:ETA; dpm++2m;
any with "+clip": x0_hat clamped to the value range),
cfg, combine (anagrams: guidance.COMBINE_MODES), weights (anagrams: the two readings' weights as "1:2"), balance
(anagrams: on/off, the classifier's reading balance while sampling; off where a row lacks it), kernel and
sigma (hybrids). Every row is one batch of all pairs (or --pairs) x N with the same seed; measured rows are appended
to --rows (JSON lines) and skipped when run again.

  python benchmarks/illusion_table.py --views rot180 --n 16 --pairs 1-3,3-1,1-9 --anagram "weights=1:1,1:2,2:1" \
      --rows docs/illusions-ep20-weights.jsonl      # a few pairs, the readings' balance
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from _common import append_row, model_and_classifier, read_rows

ANAGRAM_BASE = "steps=default rule=default cfg=default combine=default"
HYBRID_BASE = "steps=default rule=default cfg=default kernel=default sigma=default"


def parse_rule(text: str) -> dict:
    """ "auto"/"beta"/"beta-tilde" (ddpm variance), "ddim:ETA", "dpm++2m", "default" (the library's); "+clip"
    clamps x0_hat to the value range (e.g. "auto+clip")."""
    text, plus, _ = text.partition("+clip")
    if plus:
        return {**parse_rule(text), "clip": True}
    if text == "default":
        return {}
    if text.startswith("ddim"):
        return {"sampler": "ddim", "eta": float(text.partition(":")[2] or 0.0)}
    if text == "dpm++2m":
        return {"sampler": "dpm++2m"}
    return {"sampler": "ddpm", "variance": text}


def timesteps(model, steps: str):
    from diffusionlab.schedule import spaced_timesteps, strided_timesteps

    if steps == "default":
        return None
    if steps == "strided":
        return strided_timesteps(model.schedule.num_steps)
    return spaced_timesteps(model.schedule.num_steps, int(steps))


def settings(base: str, vary: str) -> list[dict[str, str]]:
    """The base setting with one factor varied: "cfg=3,5" -> [{..., cfg: 3}, {..., cfg: 5}]."""
    s = dict(kv.split("=") for kv in base.split())
    factor, _, values = vary.partition("=")
    return [{**s, factor: v} for v in values.split(",")]


def best_of(clf, images, view: str, model, n: int, k: int, only: str | None = None, judge=None) -> float:
    """Success of verified best-of-k (tools.illusions.verified: the weaker reading's probability ranks), from n
    images per pair taken in groups of k: what `--best-of k` returns, n / k times per pair. clf ranks (as the
    tool), judge (default clf) says whether the kept one succeeds."""
    from diffusionlab.evaluation.pairs import ordered_pairs
    from diffusionlab.tools.illusions import verified
    from diffusionlab.views import get_view

    v = get_view(view, model.image_shape, (0.0, 1.0), 0)
    pairs = parse_pairs(only) or ordered_pairs(model.num_classes)
    first = torch.tensor([a for a, _ in pairs]).repeat_interleave(n)
    second = torch.tensor([b for _, b in pairs]).repeat_interleave(n)
    groups = len(first) // k
    viewed = v.apply(images).clamp(0, 1)
    judge = judge if judge is not None else clf
    ok = (judge.classify(images) == first) & (judge.classify(viewed) == second)
    wins = 0
    for g in range(groups):  # one group = one request: k candidates of one pair
        sl = slice(g * k, (g + 1) * k)
        rows, _ = verified([images[sl], viewed[sl]], [int(first[g * k]), int(second[g * k])], clf, 1, k)
        wins += int(ok[sl][rows[0, 0]])
    return wins / groups


def parse_pairs(text: str | None) -> list[tuple[int, int]] | None:
    """ "1-3,3-1" -> [(1, 3), (3, 1)]; None: every ordered pair."""
    if not text:
        return None
    return [(int(a), int(b)) for a, b in (p.split("-") for p in text.split(","))]


def measure(
    model, clf, kind: str, view: str | None, s: dict[str, str], n: int, seed: int, k: int = 0, far: int = 2, pairs=None,
    judge=None,
) -> dict:  # fmt: skip
    """One row. clf steers (balance) and ranks (best-of) as the tools do; judge (default clf) scores."""
    from diffusionlab.evaluation.pairs import evaluate_anagrams, evaluate_hybrids

    scorer = judge if judge is not None else clf
    cfg = None if s["cfg"] == "default" else float(s["cfg"])
    common = dict(n_per_pair=n, cfg_scale=cfg, seed=seed, timesteps=timesteps(model, s["steps"]), progress=False)
    common |= {"pairs": parse_pairs(pairs)} if pairs else {}
    start = time.perf_counter()
    if kind == "anagram":
        combine = None if s["combine"] == "default" else s["combine"]
        weights = [float(w) for w in s["weights"].split(":")] if s.get("weights", "default") != "default" else None
        balance = s.get("balance", "off") == "on"  # rows without the key were measured before it existed: off
        steer = dict(balance=balance, balance_classifier=clf)  # the shipped classifier steers, as in the tools
        r = evaluate_anagrams(
            model, scorer, view, combine=combine, rule=parse_rule(s["rule"]), weights=weights, **steer, **common
        )
        keys = ("anagram_success", "anagram_first", "anagram_second")
    else:
        k = None if s["kernel"] == "default" else int(s["kernel"])
        sg = None if s["sigma"] == "default" else float(s["sigma"])
        r = evaluate_hybrids(model, scorer, kernel=k, sigma=sg, rule=parse_rule(s["rule"]), factor=far, **common)
        keys = ("hybrid_success", "hybrid_far", "hybrid_near")
    row = {"kind": kind, "view": view, **s, "n_per_pair": n, "seed": seed} | ({"pairs": pairs} if pairs else {})
    row |= {key: r[key] for key in keys} | {"seconds": round(time.perf_counter() - start, 1), "per_pair": r["per_pair"]}
    if kind == "hybrid":
        row |= {"blur": f"{r['kernel']}/{r['sigma']:g}", "far_factor": far}
    if kind == "anagram" and k > 1 and n % k == 0:
        row |= {"best_of": k, "best_success": best_of(clf, r["images"], view, model, n, k, pairs, judge)}
    return row


def key(row: dict) -> str:
    return json.dumps(
        {
            k: v
            for k, v in row.items()
            if k
            in (
                "kind",
                "view",
                "steps",
                "rule",
                "cfg",
                "combine",
                "weights",
                "balance",
                "judge",
                "pairs",
                "kernel",
                "sigma",
                "n_per_pair",
                "seed",
                "model",
                "far_factor",
            )
        }
    )


def table(rows: list[dict], kind: str) -> str:
    """A markdown table of the measured rows of one kind."""
    if kind == "anagram":
        cols = ["view", "steps", "rule", "cfg", "combine", "weights", "balance", "judge", "n_per_pair", "seed"]
        score = [("success", "anagram_success"), ("upright", "anagram_first"), ("viewed", "anagram_second")]
    else:
        cols = ["far_factor", "steps", "rule", "cfg", "kernel", "sigma", "blur", "n_per_pair", "seed"]
        score = [("success", "hybrid_success"), ("far", "hybrid_far"), ("near", "hybrid_near")]
    extra = ["best-of-K", "any of N"] if kind == "anagram" else []
    head = cols + [name for name, _ in score] + extra + ["seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["kind"] == kind:
            vals = [str(r.get(c, "")) for c in cols] + [f"{100 * r[k]:.1f} %" for _, k in score]
            if kind == "anagram":
                best = f"{100 * r['best_success']:.1f} % (K={r['best_of']})" if "best_of" in r else ""
                vals += [best, f"{100 * solved_share(r):.1f} %"]
            vals.append(f"{r['seconds']:.0f}")
            lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)


def solved_share(row: dict) -> float:
    """The share of pairs with at least one success among their N images: the ceiling of a best-of-N ranking."""
    return sum(v > 0 for v in row["per_pair"].values()) / len(row["per_pair"])


def never_solved(rows: list[dict]) -> str:
    """Per anagram view: the pairs no measured row ever solved, with the images tried per pair in all."""
    lines = []
    for view in sorted({r["view"] for r in rows if r["kind"] == "anagram"}):
        mine = [r for r in rows if r["kind"] == "anagram" and r["view"] == view]
        tries = sum(r["n_per_pair"] for r in mine)
        never = [p for p in mine[0]["per_pair"] if all(r["per_pair"][p] == 0 for r in mine)]
        pairs = len(mine[0]["per_pair"])
        head = f"{view}: {len(never)} of {pairs} pairs never solved in {tries} images each ({len(mine)} rows): "
        lines.append(head + ", ".join(never))
    return "\n".join(lines)


def write_maps(rows: list[dict], folder: Path) -> None:
    """One 10x10 per-pair success map per row (metrics.score_map), named after the row's settings."""
    from diffusionlab.evaluation.metrics import score_map

    folder.mkdir(parents=True, exist_ok=True)
    for r in rows:
        keys = ("kind", "view", "steps", "rule", "cfg", "combine", "sigma", "far_factor", "n_per_pair")
        name = "-".join(str(r[k]) for k in keys if r.get(k))
        score = r.get("anagram_success", r.get("hybrid_success"))
        title = f"{r['kind']} {r.get('view') or ''} success per pair: {100 * score:.0f} % (N={r['n_per_pair']})"
        axes = ("upright", "viewed") if r["kind"] == "anagram" else ("far (low-pass)", "near (high-pass)")
        score_map(r["per_pair"], [str(i) for i in range(10)], title, *axes).save(folder / f"{name}.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mnist")
    p.add_argument("--n", type=int, default=2, help="images per ordered pair (default 2)")
    p.add_argument("--views", default="rot180,flip")
    p.add_argument("--anagram", action="append", default=[], help='a factor to vary, e.g. "cfg=3,5,7.5,10"')
    p.add_argument("--hybrid", action="append", default=[], help='a factor to vary, e.g. "sigma=0.875,1.5"')
    p.add_argument("--anagram-base", default=ANAGRAM_BASE)
    p.add_argument("--hybrid-base", default=HYBRID_BASE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--far-factor", type=int, default=2, help="hybrids: the far view's pooling (metrics.FAR_FACTOR)")
    p.add_argument("--best-of", type=int, default=0, help="also score verified best-of-K (needs --n a multiple of K)")
    p.add_argument("--pairs", default=None, help='only these ordered pairs, e.g. "1-3,3-1" (default: all)')
    p.add_argument("--rows", default="illusions.jsonl", help="JSON lines of measured rows (appended; resumable)")
    p.add_argument("--table", action="store_true", help="only print the tables of --rows")
    p.add_argument(
        "--judge",
        default=None,
        help="score with this classifier (.safetensors, e.g. from `diffusionlab train-classifier --seed 7`) instead "
        "of the shipped one, which still steers (balance) and ranks best-of as in the tools",
    )
    p.add_argument("--maps", default=None, help="write each row's per-pair success map PNG into this folder")
    args = p.parse_args()
    path = Path(args.rows)
    rows = read_rows(path)
    if not args.table:
        model, clf = model_and_classifier(args.model)
        judge, judge_name = None, Path(args.judge).name if args.judge else None
        if args.judge:
            from diffusionlab.evaluation.classifier import load_classifier

            judge = load_classifier(args.judge, "cpu")
        done = {key(r) for r in rows}
        jobs = [
            ("anagram", v, s)
            for vary in args.anagram
            for v in args.views.split(",")
            for s in settings(args.anagram_base, vary)
        ]
        jobs += [("hybrid", None, s) for vary in args.hybrid for s in settings(args.hybrid_base, vary)]
        for kind, view, s in jobs:
            probe = {"kind": kind, "view": view, **s, "n_per_pair": args.n, "seed": args.seed}
            probe |= {"pairs": args.pairs} if args.pairs else {}
            probe |= {"judge": judge_name} if judge_name else {}
            probe |= {"far_factor": args.far_factor} if kind == "hybrid" else {}
            if key(probe) in done:
                continue
            row = measure(
                model, clf, kind, view, s, args.n, args.seed, args.best_of, args.far_factor, args.pairs, judge
            )
            row |= {"judge": judge_name} if judge_name else {}
            rows.append(row)
            done.add(key(row))
            append_row(path, row)
            print(
                f"{kind} {view or ''} {s}: {100 * row.get('anagram_success', row.get('hybrid_success')):.1f} % "
                f"({row['seconds']:.0f} s)",
                flush=True,
            )
    if args.maps:
        write_maps(rows, Path(args.maps))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(table(rows, "anagram"), "\n")
    print(never_solved(rows), "\n")
    print(table(rows, "hybrid"))


if __name__ == "__main__":
    main()
