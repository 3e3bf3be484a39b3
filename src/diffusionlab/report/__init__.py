"""`diffusionlab reproduce`: every deliverable of the course project (SPEC.md Part A and Part B) as one HTML report.

`reproduce(out_dir, ...)` runs one function per deliverable (A0, A1.1 ... A1.9, B1, B2, B2.4, B3, Fashion-MNIST,
scores), each timed and seeded, writes its figures into `<out>/figures/`, the scores into `<out>/scores.json` and
a self-contained `<out>/index.html` (no external CSS, JS or fonts; images by relative path).

- Part A runs on `--model` (default: the shipped MNIST class DDPM; `deepfloyd` runs the same sections on IF with
  the course's prompts) through `edits.py`, on the course's strided timesteps.
- Part B reads the shipped weights and loss logs (`diffusionlab/weights/`, or `$DIFFUSIONLAB_WEIGHTS_DIR`), or
  with `train=True` retrains every model first with the project's trainer into `<out>/runs/`.
- Anything missing (a shipped file, the data set) is said in its section; the report still finishes.

How much is sampled is set by a `Budget` (`FULL`, and `QUICK` for `--quick` and tests).

Modules: `context` (Budget, Context, constants), `part_a`, `part_b`, `scores` (the sections), `html`
(render_html), `run` (the section list, run_section, train_all). `reproduce` is here: it reads `FULL` and `QUICK`
from this package, so that setting `report.FULL` / `report.QUICK` (as the tests do) takes effect.
"""

from __future__ import annotations

import platform
import shlex
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from diffusionlab.errors import DiffusionLabError
from diffusionlab.progress import bar as progress_bar
from diffusionlab.report.context import (
    FULL,
    IF_PROMPTS,
    PARTB_MODELS,
    QUICK,
    SHIPPED_ALIASES,
    WEIGHTS_ENV,
    Budget,
    Cell,
    Context,
    Figure,
    MissingError,
    Section,
    SectionOut,
    Source,
    weights_dir,
)
from diffusionlab.report.html import format_seconds, render_html
from diffusionlab.report.run import SECTION_IDS, SECTIONS, _jsonable, _on_cpu, run_section, train_all
from diffusionlab.runtime import free_cores

__all__ = [
    "FULL",
    "IF_PROMPTS",
    "PARTB_MODELS",
    "QUICK",
    "SECTIONS",
    "SECTION_IDS",
    "SHIPPED_ALIASES",
    "WEIGHTS_ENV",
    "Budget",
    "Cell",
    "Context",
    "Figure",
    "MissingError",
    "Section",
    "SectionOut",
    "Source",
    "render_html",
    "reproduce",
    "run_section",
    "train_all",
    "weights_dir",
]


# -- the entry point ------------------------------------------------------------------------------------------------------
def reproduce(
    out_dir: str | Path = "report",
    model: str = "mnist",
    train: bool = False,
    force: bool = False,
    data_dir: str | Path | None = None,
    seed: int = 0,
    device: str = "auto",
    quick: bool = False,
    weights: str | Path | None = None,
    budget: Budget | None = None,
    train_overrides: dict | None = None,
    sections: Sequence[str] | None = None,
    model_kwargs: dict | None = None,
    download: bool = False,
    threads: int | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Write <out_dir>/index.html, figures/ and scores.json. Returns a summary (sections, seconds, statuses).

    weights: the shipped-weights folder (default $DIFFUSIONLAB_WEIGHTS_DIR or the package's). budget overrides
    quick. train_overrides: TrainConfig fields for --train (tests use tiny settings). sections: only these ids.
    """
    out = _prepare_out(out_dir, force, sections)
    threads_before = torch.get_num_threads()
    if _on_cpu(device):
        torch.set_num_threads(threads or free_cores())
    elif threads:
        torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        bud = budget or (QUICK if quick else FULL)
        data = Path(data_dir) if data_dir else None
        ctx = Context(out, model, seed, device, data, weights, bud, None, model_kwargs, download, progress)
        training = None
        if train:
            ctx.runs, training = train_all(out, ctx, train_overrides, progress=progress)
        results = _run_sections(ctx, sections, progress)
        seconds = time.perf_counter() - start
        command = command or shlex.join(["diffusionlab", "reproduce", "--out", str(out), "--model", model])
        meta = _meta(command, model, seed, ctx, bud, seconds)
        summary_sections = [_section_summary(s, o) for s, o in results]
        scores = {**ctx.scores, "sections": summary_sections, "meta": meta, "budget": asdict(bud)}
        if training is not None:
            scores["training"] = training.table
        from diffusionlab.model_files import atomic_write_bytes, atomic_write_json

        atomic_write_json(out / "scores.json", _jsonable(scores))
        atomic_write_bytes(out / "index.html", render_html(results, meta, training, out).encode())
        return {"index": out / "index.html", "seconds": seconds, "sections": summary_sections, "scores": ctx.scores}
    finally:
        torch.set_num_threads(threads_before)


def _prepare_out(out_dir: str | Path, force: bool, sections: Sequence[str] | None) -> Path:
    """The report folder, created; unknown section ids, an existing report (without force) or a file refused."""
    unknown = set(sections or []) - set(SECTION_IDS)
    if unknown:
        raise DiffusionLabError(
            f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTION_IDS)}"
        )
    out = Path(out_dir)
    index = out / "index.html"
    if index.exists() and not force:
        raise DiffusionLabError(f"{index} already exists; pass --force to replace the report, or choose another --out")
    if out.exists() and not out.is_dir():
        raise DiffusionLabError(f"--out {out} is a file; give a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _run_sections(ctx: Context, sections: Sequence[str] | None, progress: bool) -> list[tuple[Section, SectionOut]]:
    """Every chosen section in the report's order, under one progress bar, with a line as each one ends (and the
    long ones say their steps through ctx.say)."""
    chosen = [s for s in SECTIONS if sections is None or s.id in sections]
    results: list[tuple[Section, SectionOut]] = []
    bar = progress_bar(chosen, progress, desc="reproduce", unit="section")
    for section in bar:
        bar.set_postfix_str(section.id)
        result = run_section(ctx, section)
        results.append((section, result))
        if not bar.disable:
            bar.write(f"{section.id} {section.title}: {result.status}, {format_seconds(result.seconds)}")
    bar.close()
    return results


def _meta(command: str, model: str, seed: int, ctx: Context, bud: Budget, seconds: float) -> dict[str, Any]:
    """How the report was made: the command, model, seed, device, budget, time and versions."""
    from diffusionlab import __version__
    from diffusionlab.precision import choose_precision

    return {
        "command": command,
        "model": model,
        "seed": seed,
        "device": str(ctx.device),
        "threads": torch.get_num_threads(),
        "precision": choose_precision(ctx.device).describe(),  # the fast path's (Part A's model; auto cached by then)
        "budget": "quick" if bud == QUICK else ("full" if bud == FULL else "custom"),
        "seconds": seconds,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "version": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _section_summary(s: Section, o: SectionOut) -> dict[str, Any]:
    return {
        "id": s.id,
        "title": s.title,
        "status": o.status,
        "seconds": round(o.seconds, 2),
        "notes": o.notes,
        "inputs": o.inputs,
        "figures": [f.path for f in o.figures],
    }
