"""Running the report: the sections in report order, one section run (timed, errors caught), --train, and
the helpers of `reproduce`."""

from __future__ import annotations

import math
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diffusionlab.errors import DiffusionLabError
from diffusionlab.report.context import PARTB_MODELS, Context, MissingError, Section, SectionOut
from diffusionlab.report.guidance_curve import sec_guidance
from diffusionlab.report.part_a import (
    sec_a0,
    sec_a1_1,
    sec_a1_2,
    sec_a1_3,
    sec_a1_4,
    sec_a1_5,
    sec_a1_6,
    sec_a1_7,
    sec_a1_7_2,
    sec_a1_7_3,
    sec_a1_8,
    sec_a1_9,
)
from diffusionlab.report.part_b import sec_b1, sec_b2, sec_b2_4, sec_b3, sec_fashion
from diffusionlab.report.scores import sec_scores

# -- the sections, in report order -----------------------------------------------------------------------------------
SECTIONS: list[Section] = [
    Section("A0", "Sampling", "A", sec_a0),
    Section("A1.1", "Forward process", "A", sec_a1_1),
    Section("A1.2", "Classical denoising (blur)", "A", sec_a1_2),
    Section("A1.3", "One-step denoising", "A", sec_a1_3),
    Section("A1.4", "Iterative denoising", "A", sec_a1_4),
    Section("A1.5", "Sampling from noise", "A", sec_a1_5),
    Section("A1.6", "Classifier-free guidance", "A", sec_a1_6),
    Section("A1.7", "SDEdit (image-to-image)", "A", sec_a1_7),
    Section("A1.7.2", "Inpainting", "A", sec_a1_7_2),
    Section("A1.7.3", "Conditional image-to-image", "A", sec_a1_7_3),
    Section("A1.8", "Visual anagrams", "A", sec_a1_8),
    Section("A1.9", "Hybrid images", "A", sec_a1_9),
    Section("B1", "Single-step denoising UNet", "B", sec_b1),
    Section("B2", "Time-conditioned DDPM", "B", sec_b2),
    Section("B2.4", "Class-conditioned DDPM", "B", sec_b2_4),
    Section("B3", "Flow matching", "B", sec_b3),
    Section("B-fashion", "Fashion-MNIST class DDPM", "B", sec_fashion),
    Section("guidance", "Default CFG scale, measured", "S", sec_guidance),
    Section("scores", "Scores", "S", sec_scores),
]
SECTION_IDS = [s.id for s in SECTIONS]


def run_section(ctx: Context, section: Section) -> SectionOut:
    out = SectionOut(seed=ctx.seed)
    start = time.perf_counter()
    try:
        with torch.no_grad():
            section.run(ctx, out)
    except MissingError as e:
        out.status = "missing"
        out.notes.append(str(e))
    except DiffusionLabError as e:
        out.status = "missing"
        out.notes.append(f"not run: {e}")
    except Exception as e:  # noqa: BLE001 - one failing section must not lose the whole report
        out.status = "error"
        out.notes.append(f"failed: {type(e).__name__}: {e}")
        traceback.print_exc(file=sys.stderr)
    out.seconds = time.perf_counter() - start
    return out


# -- --train -----------------------------------------------------------------------------------------------------------
def train_all(
    out_dir: Path,
    ctx: Context,
    overrides: dict | None = None,
    names: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[dict[str, Path], SectionOut]:
    """Retrain the Part B models with the course recipes (`overrides` for quick runs) into <out>/runs/<name>.
    A run already there is continued (resumed) to its recipe's length."""
    from diffusionlab.figures.part_b import epoch_figures
    from diffusionlab.training import open_run, recipe

    report = SectionOut(seed=ctx.seed)
    start = time.perf_counter()
    runs: dict[str, Path] = {}
    rows = [["model", "run directory", "epochs", "steps", "last-epoch loss", "seconds"]]
    for name in names or PARTB_MODELS:
        kind, objective, data = PARTB_MODELS[name]
        split = ctx.split(data, "train")
        run_dir = out_dir / "runs" / name
        if split is None:
            report.notes.append(f"{name}: no {data} train data in --data-dir or the cache; not trained")
            continue
        config = recipe(kind, objective, data=data, seed=ctx.seed, **(overrides or {}))
        test_images = ctx.test_digits(data, 8)[0].float() / 255.0  # the data set's, else the shipped sample

        def hook(event, _t=test_images, _final=config.epochs) -> None:
            epoch_figures(event, _t.to(event.model.device), _final)

        resume = (run_dir / "model.safetensors").exists()
        trainer = open_run(
            config,
            run_dir,
            resume,
            device=ctx.device,
            data_dir=ctx.data_dir_for(data),
            on_epoch_end=hook,
            progress=progress,
            command=f"diffusionlab reproduce --train (recipe {kind} {objective} {data})",
        )
        summary = trainer.run(split)
        runs[name] = run_dir
        loss = summary["loss"]
        rows.append(
            [
                name,
                str(run_dir.relative_to(out_dir)),
                str(summary["epoch"]),
                str(summary["step"]),
                f"{loss:.5f}" if loss is not None else "n/a",
                f"{summary['seconds']:.1f}",
            ]
        )
    report.table = rows
    report.caption = "The Part B models retrained with the project's trainer and the course recipes (--train)."
    report.settings = {"overrides": overrides or "none (the course recipes)", "device": str(ctx.device)}
    report.seconds = time.perf_counter() - start
    return runs, report


# -- --pdf -------------------------------------------------------------------------------------------------------------
CHROMIUM_ENV = "DIFFUSIONLAB_CHROMIUM"


def find_chromium() -> str | None:
    """$DIFFUSIONLAB_CHROMIUM, else chromium or chromium-browser on PATH, else Debian's /usr/bin/chromium."""
    import shutil

    from diffusionlab.environment import env_text

    candidates = (env_text(CHROMIUM_ENV), shutil.which("chromium"), shutil.which("chromium-browser"))
    for cand in (*candidates, "/usr/bin/chromium"):
        if cand and Path(cand).is_file():
            return cand
    return None


def print_pdf(index: Path, pdf: Path, chromium: str | None = None, timeout: float = 300) -> Path:
    """The report printed to PDF by headless Chromium (its own print: what a browser's "Save as PDF" gives)."""
    import subprocess
    import tempfile

    chromium = chromium or find_chromium()
    if chromium is None:
        raise DiffusionLabError(
            f"--pdf needs Chromium: none at /usr/bin/chromium or on PATH (apt-get install chromium, or set {CHROMIUM_ENV})"
        )
    pdf = Path(pdf).resolve()
    pdf.unlink(missing_ok=True)  # a stale PDF must not pass for this one
    with tempfile.TemporaryDirectory() as profile:  # a throwaway profile: nothing of the user's is touched
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            Path(index).resolve().as_uri(),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not pdf.is_file() or pdf.stat().st_size == 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise DiffusionLabError(f"Chromium could not print {index} to PDF (exit {done.returncode}): {last}")
    return pdf


def _on_cpu(device: str) -> bool:
    return str(device) == "cpu" or (str(device) == "auto" and not torch.cuda.is_available())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Tensor):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
