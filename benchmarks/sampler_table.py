"""Sampler quality table (issue 11 / 16): conditional accuracy, Frechet distance (with the train-vs-test floor at
the same N) and raw background std of one class model's CFG samples, for each step rule and step count.

  python benchmarks/sampler_table.py --model mnist --data-dir ../shared/data/mnist -n 100 --steps 30,100,300
  python benchmarks/sampler_table.py --rules ddpm:beta,ddpm:beta-tilde,ddim:0,ddim:0.5,ddim:1,dpm++2m --steps 10,20

Rules: ddpm:VARIANCE (beta, beta-tilde), ddim:ETA, dpm++2m; "+clip" clamps x0_hat to the value range. Steps: evenly spaced timesteps (300 = every step,
Algorithm B.2 for ddpm:beta). Every row uses the same seed, so the same initial noise. Prints a markdown table
(paste it into docs/sampling.md). With --rows FILE each measured row is appended to FILE (JSON lines) as soon as it
is done, and rows already there (same model, N, CFG, seed, rule, steps) are not measured again: a long table
(N = 1000 at 300 steps is hours on a CPU) resumes where it was stopped. --table prints FILE's table only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import append_row, header, read_rows


def parse_rule(text: str) -> dict:
    """ "ddpm:beta-tilde", "ddim:0.5", "dpm++2m", any of them with "+clip" (x0_hat clamped to the value range)."""
    text, plus, _ = text.partition("+clip")
    clip = {"clip": True} if plus else {}
    name, _, arg = text.partition(":")
    if name == "ddpm":
        return {"sampler": "ddpm", "variance": arg or "beta", **clip}
    if name == "ddim":
        return {"sampler": "ddim", "eta": float(arg or 0.0), **clip}
    return {"sampler": name, **clip}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("-n", type=int, default=100, help="samples per class (N = 10 n)")
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--steps", default="30,100,300")
    parser.add_argument("--rules", default="ddpm:beta,ddpm:beta-tilde,ddim:0,ddim:0.5,ddim:1,dpm++2m")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--plain", action="store_true", help="no fast path (BatchNorm folding, channels_last)")
    parser.add_argument("--rows", default=None, help="JSON lines of measured rows (appended; resumable)")
    parser.add_argument("--table", action="store_true", help="only print the table of --rows")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    path = Path(args.rows) if args.rows else None
    rows = read_rows(path)
    if args.table:
        print(table(rows))
        return

    from diffusionlab.backends import load_model
    from diffusionlab.data import load_split
    from diffusionlab.evaluation.classifier import load_classifier
    from diffusionlab.evaluation.evaluate import evaluate_model
    from diffusionlab.fastpath import accelerate

    model = load_model(args.model, "cpu")
    if not args.plain:
        accelerate(model)
    data = model.config.get("data", "mnist")
    clf = load_classifier(data, "cpu")
    test, train = load_split(data, "test", args.data_dir), load_split(data, "train", args.data_dir)
    print(header("cpu", torch.get_num_threads()))
    print(f"model {args.model}, N = {10 * args.n} ({args.n} per class), CFG {args.cfg}, seed {args.seed}\n")
    same = {"model": args.model, "n_per_class": args.n, "cfg_scale": args.cfg, "seed": args.seed}
    for steps in [int(s) for s in args.steps.split(",")]:
        for rule_text in args.rules.split(","):
            if any(r["rule"] == rule_text and r["steps"] == steps and same.items() <= r.items() for r in rows):
                print(f"{rule_text} at {steps} steps: in {path} already", flush=True)
                continue
            rule = parse_rule(rule_text)
            start = time.perf_counter()
            s = evaluate_model(
                model, clf, args.n, args.cfg, steps, args.seed, test, train, progress=False, sampler=rule
            )
            row = {"rule": rule_text, "steps": steps, **{k: v for k, v in s.items() if k != "per_class_accuracy"}}
            row.update(same, seconds=round(time.perf_counter() - start, 1), clip=bool(rule.get("clip")))
            rows.append(row)
            print(table([row], header=False), flush=True)
            if path:
                append_row(path, row)
    print("\n" + table([r for r in rows if same.items() <= r.items()]))


def table(rows: list[dict], header: bool = True) -> str:
    """Markdown rows: accuracy, FD and its ratio to the train-vs-test floor at the same N, background std, time."""
    lines = ["| sampler | steps | N | cond. accuracy | FD | FD / floor | background std | seconds |", "|---|" * 8]
    for r in rows:
        fd, floor = r["frechet_distance"], r["frechet_distance_train_vs_test"]
        lines.append(
            f"| {r['sampler']}{' + clip' if r.get('clip') else ''} | {r['steps']} | {r['n_samples']} "
            f"| {100 * r['conditional_accuracy']:.1f} % | {fd:.2f} | {fd / floor:.1f}x "
            f"| {r['background_std']:.4f} | {r.get('seconds', 0):.0f} |"
        )
    return "\n".join(lines if header else lines[2:])


if __name__ == "__main__":
    main()
