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
(on/off, the ranker's reading balance while sampling; off where a row lacks it), kernel, sigma, near_cfg (the
near component's own CFG; cfg is then the far one's) and lowpass (gaussian, far: edits.HYBRID_LOWPASS) (hybrids). Every row is one batch of all pairs (or --pairs) x N with the same seed; measured rows are appended
to --rows (JSON lines) and skipped when run again.

  python benchmarks/illusion_table.py --views rot180 --n 16 --pairs 1-3,3-1,1-9 --anagram "weights=1:1,1:2,2:1" \
      --rows docs/illusions-ep20-weights.jsonl      # a few pairs, the readings' balance
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import append_row, model_and_classifier, read_rows
from illusion_judging import (
    image_file,
    judged,
    key,
    load_judge,
    pair_labels,
    parse_pairs,
    ranked_best_of,
    readings,
    rejudge,
)

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


# the factors measure() reads per kind; any other name would be recorded in the row and never applied
FACTORS = {
    "anagram": ("steps", "rule", "cfg", "combine", "weights", "balance"),
    "hybrid": ("steps", "rule", "cfg", "kernel", "sigma", "near_cfg", "lowpass", "balance"),
}


def settings(base: str, vary: str, kind: str) -> list[dict[str, str]]:
    """The base setting with one factor varied: "cfg=3,5" -> [{..., cfg: 3}, {..., cfg: 5}]; an unknown factor
    (base or varied) is refused, not silently measured as the base, and so is a token without a value."""
    malformed = [t for t in [*base.split(), vary] if not t.partition("=")[2]]
    if malformed:
        raise SystemExit(f"illusion_table: expected FACTOR=VALUE, got {malformed[0]!r}")
    s = dict(kv.split("=", 1) for kv in base.split())
    factor, _, values = vary.partition("=")
    unknown = sorted((set(s) | {factor}) - set(FACTORS[kind]))
    if unknown:
        raise SystemExit(
            f"illusion_table: unknown {kind} factor {', '.join(unknown)}; known: {', '.join(FACTORS[kind])}"
        )
    return [{**s, factor: v} for v in values.split(",")]


def best_of(clf, images, view: str, model, n: int, k: int, only: str | None = None, judge=None) -> float:
    """Success of verified best-of-k of anagram images in [0, 1] (n per pair, pair-major) through `view`: clf
    ranks (as the tool), judge (default clf) says whether the kept one succeeds."""
    reads, labels = readings("anagram", view, model, images), pair_labels(model, n, only)
    return ranked_best_of(clf, reads, labels, k, judge if judge is not None else clf)


def measure(
    model, ranker, kind: str, view: str | None, s: dict[str, str], n: int, seed: int, far: int = 2, pairs=None
) -> tuple[dict, torch.Tensor]:
    """One row's images and its scores by the ranker, which steers (balance) and scores as the tools do."""
    from diffusionlab.evaluation.pairs import evaluate_anagrams, evaluate_hybrids

    cfg = None if s["cfg"] == "default" else float(s["cfg"])
    common = dict(n_per_pair=n, cfg_scale=cfg, seed=seed, timesteps=timesteps(model, s["steps"]), progress=False)
    common |= {"pairs": parse_pairs(pairs)} if pairs else {}
    start = time.perf_counter()
    if kind == "anagram":
        combine = None if s["combine"] == "default" else s["combine"]
        weights = [float(w) for w in s["weights"].split(":")] if s.get("weights", "default") != "default" else None
        balance = s.get("balance", "off") == "on"  # rows without the key were measured before it existed: off
        steer = dict(balance=balance, balance_classifier=ranker)  # the ranker steers, as in the tools
        r = evaluate_anagrams(
            model, ranker, view, combine=combine, rule=parse_rule(s["rule"]), weights=weights, **steer, **common
        )
        keys = ("anagram_success", "anagram_first", "anagram_second")
    else:
        k = None if s["kernel"] == "default" else int(s["kernel"])
        sg = None if s["sigma"] == "default" else float(s["sigma"])
        rule = parse_rule(s["rule"]) | hybrid_options(model, ranker, s, n, pairs, far)
        if s.get("near_cfg", "default") != "default":
            common["cfg_scale"] = (cfg, float(s["near_cfg"]))  # (far, near); None: the far default
        r = evaluate_hybrids(model, ranker, kernel=k, sigma=sg, rule=rule, factor=far, **common)
        keys = ("hybrid_success", "hybrid_far", "hybrid_near")
    row = {"kind": kind, "view": view, **s, "n_per_pair": n, "seed": seed} | ({"pairs": pairs} if pairs else {})
    row |= {key: r[key] for key in keys} | {"seconds": round(time.perf_counter() - start, 1), "per_pair": r["per_pair"]}
    if kind == "hybrid":
        row |= {"blur": f"{r['kernel']}/{r['sigma']:g}", "far_factor": far}
    return row, r["images"]


def hybrid_options(model, ranker, s: dict[str, str], n: int, pairs, far: int) -> dict:
    """edits.hybrid's own options of a row (lowpass, balance: the ranker steers the far/near CFG as in the tool);
    they travel with the step rule's keyword arguments, which evaluate_hybrids hands to edits.hybrid. A row
    without the key was measured before it existed: Gaussian, balance off."""
    from diffusionlab.evaluation.balance import hybrid_balance

    opts = {} if s.get("lowpass", "gaussian") == "default" else {"lowpass": s.get("lowpass", "gaussian")}
    if s.get("balance", "off") == "on":
        low, high = pair_labels(model, n, pairs)
        opts["balance"] = hybrid_balance(ranker, low, high, model.value_range, far)
    return opts


def merged(rows: list[dict]) -> list[dict]:
    """Rows measured in chunks of pairs (--pairs, one process each) as one row per setting: the rates weighted by
    the chunks' pair counts (every image is one pair's), the per-pair maps joined; other rows as they are."""
    whole, groups = [], {}
    for r in rows:
        if "pairs" not in r:
            whole.append(r)
            continue
        groups.setdefault(key({k: v for k, v in r.items() if k != "pairs"}), []).append(r)
    for chunks in groups.values():
        count = sum(len(c["per_pair"]) for c in chunks)
        row = {k: v for k, v in chunks[0].items() if k != "pairs"} | {"chunks": len(chunks)}
        for k in chunks[0]:
            if isinstance(chunks[0][k], float) and k not in ("seconds",):
                row[k] = sum(c[k] * len(c["per_pair"]) for c in chunks) / count
        row["seconds"] = sum(c["seconds"] for c in chunks)
        for k in ("per_pair", "judge_per_pair"):
            if k in chunks[0]:
                row[k] = {p: v for c in chunks for p, v in c[k].items()}
        whole.append(row)
    return whole


def pct(row: dict, key: str) -> str:
    return f"{100 * row[key]:.1f} %" if key in row else ""


def table(rows: list[dict], kind: str) -> str:
    """A markdown table of the measured rows of one kind: success by the ranker that steered and ranked (the
    shipped one before issue 37) and, where measured, by the held-out judge."""
    if kind == "anagram":
        cols = [
            "view",
            "ranker",
            "steps",
            "rule",
            "cfg",
            "combine",
            "weights",
            "balance",
            "judge",
            "n_per_pair",
            "seed",
        ]
        score = [("success", "anagram_success"), ("upright", "anagram_first"), ("viewed", "anagram_second")]
    else:
        cols = [
            "far_factor",
            "ranker",
            "steps",
            "rule",
            "cfg",
            "kernel",
            "sigma",
            "blur",
            "near_cfg",
            "lowpass",
            "balance",
            "judge",
            "n_per_pair",
            "seed",
        ]
        score = [("success", "hybrid_success"), ("far", "hybrid_far"), ("near", "hybrid_near")]
    extra = [
        ("judge: success", "judge_success"),
        ("best-of-K (ranker)", "best_success"),
        ("best-of-K (judge)", "best_judge"),
        ("best-of-K (judge; ranked by the single classifier)", "best_judge_single_rank"),
    ]
    head = cols + [name for name, _ in score] + [name for name, _ in extra] + ["any of N", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["kind"] == kind:
            vals = [str(r.get(c, "")) for c in cols] + [pct(r, k) for _, k in score] + [pct(r, k) for _, k in extra]
            vals += [f"{100 * solved_share(r):.1f} %", f"{r['seconds']:.0f}"]
            lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)


def solved_share(row: dict) -> float:
    """The share of pairs with at least one success among their N images (by the judge where it scored): the
    ceiling of a best-of-N ranking."""
    per = row.get("judge_per_pair", row["per_pair"])
    return sum(v > 0 for v in per.values()) / len(per)


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
        "--ranker",
        default="ensemble",
        choices=["ensemble", "single"],
        help="what steers (balance) and ranks best-of, as in the tools: the shipped ensemble (the tools' since "
        "issue 37) or the shipped classifier alone (before)",
    )
    p.add_argument(
        "--judge",
        default=str(Path(__file__).parent / "judges" / "mnist-judge-lenet.safetensors"),
        help="the held-out judge that scores and never ranks (benchmarks/judges; 'none': the ranker scores)",
    )
    p.add_argument("--images", default=None, help="save each row's images (.pt) into this folder")
    p.add_argument("--rejudge", action="store_true", help="judge the saved --images of unjudged rows (no sampling)")
    p.add_argument("--maps", default=None, help="write each row's per-pair success map PNG into this folder")
    args = p.parse_args()
    jobs = [  # built first, so that an unknown factor is refused before the models load
        ("anagram", v, s)
        for vary in args.anagram
        for v in args.views.split(",")
        for s in settings(args.anagram_base, vary, "anagram")
    ]
    jobs += [("hybrid", None, s) for vary in args.hybrid for s in settings(args.hybrid_base, vary, "hybrid")]
    path = Path(args.rows)
    rows = read_rows(path)
    if not args.table:
        from diffusionlab.evaluation.classifier import Ensemble, load_ranker

        model, single = model_and_classifier(args.model)
        data = model.config.get("data", "mnist")
        ranker = load_ranker(data, "cpu") if args.ranker == "ensemble" else Ensemble([single])
        judge = None if args.judge == "none" else load_judge(args.judge)
        judge_name = None if judge is None else Path(args.judge).name
        rankers = {"ranker": ranker} | ({"single": single} if args.ranker == "ensemble" else {})
        if args.rejudge:
            rejudge(path, rows, Path(args.images), judge, judge_name, args.best_of, rankers, model, args.ranker)
            jobs = []  # nothing sampled
        done = {key(r) for r in rows}
        model_field = {"model": args.model} if args.model != "mnist" else {}  # rows of the default carry none
        for kind, view, s in jobs:
            probe = {"kind": kind, "view": view, **s, "n_per_pair": args.n, "seed": args.seed, "ranker": args.ranker}
            probe |= {"pairs": args.pairs} if args.pairs else {}
            probe |= {"judge": judge_name} if judge_name else {}
            probe |= {"far_factor": args.far_factor} if kind == "hybrid" else {}
            probe |= model_field
            if key(probe) in done:
                continue
            row, images = measure(model, ranker, kind, view, s, args.n, args.seed, args.far_factor, args.pairs)
            row |= {"ranker": args.ranker, "precision": model.precision}  # bf16 where auto measured it faster
            row |= {"judge": judge_name} if judge_name else {}
            row |= model_field
            if judge is not None:
                row = judged(row, kind, view, model, images, args.n, args.best_of, args.pairs, rankers, judge)
            if args.images:
                Path(args.images).mkdir(parents=True, exist_ok=True)
                torch.save(images, Path(args.images) / image_file(row))
            rows.append(row)
            done.add(key(row))
            append_row(path, row)
            score = row.get("anagram_success", row.get("hybrid_success"))
            said = f", judge {100 * row['judge_success']:.1f} %" if "judge_success" in row else ""
            said += f", best-of-{row['best_of']} judge {100 * row['best_judge']:.1f} %" if "best_judge" in row else ""
            print(f"{kind} {view or ''} {s}: ranker {100 * score:.1f} %{said} ({row['seconds']:.0f} s)", flush=True)
    if args.maps:
        write_maps(rows, Path(args.maps))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    rows = merged(rows)
    print(table(rows, "anagram"), "\n")
    print(never_solved(rows), "\n")
    print(table(rows, "hybrid"))


if __name__ == "__main__":
    main()
