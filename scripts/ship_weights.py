"""Copy trained runs into src/diffusionlab/weights/ as shipped models (float16 safetensors + JSON + loss log).

    python scripts/ship_weights.py runs/ship/mnist-class mnist-class [--snapshot 1]
    python scripts/ship_weights.py --scores scores_strided30=eval-30.json mnist-class   # scores into a shipped JSON

The JSON keeps the run's provenance (command, data md5, seed, loss, time, device) and gains the shipped name.
`--scores KEY=FILE` puts an `evaluate` JSON into the shipped model's JSON under KEY ("scores": the report's
precomputed column, "scores_strided30": the 30-step figures), with or without a run to ship.

What ships says nothing of the machine it was made on: every absolute or home path in the JSON becomes a
placeholder and the name it ends in (`--data-dir /work/shared/data/mnist` -> `--data-dir <data>/mnist`,
`--out /root/dl-runs/mnist-class` -> `--out <runs>/mnist-class`, a shipped file -> `<weights>/NAME`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from diffusionlab.backends import shipped_weights_dir
from diffusionlab.data import DATASETS
from diffusionlab.model_files import load_checkpoint, save_checkpoint

# a path at the start of a string or after a space, quote or "=": absolute (/...), home (~/...) or Windows (C:\...)
MACHINE_PATH = re.compile(r"(?:^|(?<=[\s'\"=]))(?:/(?=[\w.~-])|~/|[A-Za-z]:\\)[^\s'\"]*")
RUN_FILES = {"model.safetensors", "model.json", "train_state.safetensors"}


def shareable_path(path: str, flag: str = "") -> str:
    """A machine's path as a placeholder for its kind of folder and the name it ends in."""
    p = PurePosixPath(path.replace("\\", "/"))
    tail = f"{p.parent.name}/{p.name}" if p.name in RUN_FILES else p.name  # a run's file keeps its run's name
    if flag == "--data-dir" or p.name in DATASETS:
        return f"<data>/{tail}"
    return f"<weights>/{tail}" if p.parent.name == "weights" else f"<runs>/{tail}"


def strip_machine_paths(value: Any) -> Any:
    """Every string in a JSON value with its machine paths replaced (see shareable_path); the rest unchanged."""
    if isinstance(value, dict):
        return {k: strip_machine_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_machine_paths(v) for v in value]
    if not isinstance(value, str):
        return value
    return MACHINE_PATH.sub(lambda m: shareable_path(m.group(), _word_before(value, m.start())), value)


def _word_before(text: str, at: int) -> str:
    words = text[:at].split()
    return words[-1] if words else ""


def ship(run_dir: Path, name: str, snapshots: list[int], note: str | None = None) -> list[Path]:
    out_dir = shipped_weights_dir()
    state, config = load_checkpoint(run_dir)
    config["name"] = name
    if note:
        config["provenance"]["note"] = note
    written = [out_dir / f"{name}.safetensors"]
    save_checkpoint(written[0], state, strip_machine_paths(config), dtype=torch.float16)
    shutil.copyfile(run_dir / "loss.csv", out_dir / f"{name}.loss.csv")
    written.append(out_dir / f"{name}.loss.csv")
    for epoch in snapshots:
        snap_state, snap_config = load_checkpoint(run_dir / "snapshots" / f"epoch_{epoch}.safetensors")
        snap_config["name"] = f"{name} after epoch {epoch}"
        path = out_dir / f"{name}.epoch{epoch}.safetensors"
        save_checkpoint(path, snap_state, strip_machine_paths(snap_config), dtype=torch.float16)
        written.append(path)
    return written


def add_scores(name: str, key: str, scores_file: Path) -> Path:
    path = shipped_weights_dir() / f"{name}.json"
    config = json.loads(path.read_text())
    config[key] = strip_machine_paths(json.loads(scores_file.read_text()))
    path.write_text(json.dumps(config, indent=1) + "\n")
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?", help="the run to ship (omit to only add --scores)")
    parser.add_argument("name")
    parser.add_argument("--snapshot", type=int, action="append", default=[])
    parser.add_argument("--note", help="how the run was made, kept in the provenance (e.g. shortened CPU recipe)")
    parser.add_argument("--scores", action="append", default=[], metavar="KEY=FILE", help="an evaluate JSON")
    args = parser.parse_args()
    if args.run_dir is not None:
        for p in ship(args.run_dir, args.name, args.snapshot, args.note):
            print("wrote", p)
    for item in args.scores:
        key, _, file = item.partition("=")
        print("wrote", add_scores(args.name, key, Path(file)))
