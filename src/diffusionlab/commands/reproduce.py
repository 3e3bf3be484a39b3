"""`diffusionlab reproduce`: the whole course project (SPEC Part A and Part B) as one HTML report."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from diffusionlab.commands.common import ModelOptions, wrote


def reproduce(
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (created if missing).")] = Path("report"),
    train: Annotated[
        bool, typer.Option("--train", help="Retrain every Part B model first (course recipes; slow on a CPU).")
    ] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Folder with the MNIST IDX files (Fashion-MNIST: DIR/fashion-mnist or ../fashion-mnist beside it); "
            "else the cache. Without data, test digits come from the sample of 100 shipped in the package.",
        ),
    ] = None,
    download: Annotated[
        bool, typer.Option("--download", help="Download MNIST/Fashion-MNIST into the cache when missing.")
    ] = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="Fewer samples and steps: a fast look, not the full report.")
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            help="torch CPU threads (default: the cores not busy now, by the kernel's CPU counters over half a second).",
        ),
    ] = None,
    pdf: Annotated[
        bool, typer.Option("--pdf", help="Also print the report to <out>/report.pdf with headless Chromium.")
    ] = False,
    opts: ModelOptions = ModelOptions(),  # noqa: B008 - a bundle of options (common.with_bundles); --force: the report
) -> None:
    """Run every deliverable of the course project and write <out>/index.html with the figures, captions,
    settings, seeds, timings and scores (plus figures/ and scores.json).

    Example: diffusionlab reproduce --out report --data-dir data/mnist
    """
    from diffusionlab.backends import is_if_spec
    from diffusionlab.errors import DiffusionLabError
    from diffusionlab.report import reproduce as run
    from diffusionlab.report.run import find_chromium, print_pdf

    if pdf and find_chromium() is None:  # said before the minutes of work, not after
        raise DiffusionLabError("--pdf needs Chromium: none at /usr/bin/chromium or on PATH (apt-get install chromium)")

    extra = {}
    if is_if_spec(opts.model):
        extra = {"model_dir": opts.model_dir, "prompt_embeds": opts.prompt_embeds, "offload": opts.offload}
    result = run(
        out,
        model=opts.model,
        train=train,
        force=opts.force,
        data_dir=data_dir,
        seed=opts.seed,
        device=opts.device,
        quick=quick,
        model_kwargs=extra,
        download=download,
        threads=threads,
        command=shlex.join(["diffusionlab", *sys.argv[1:]]),
    )
    bad = [s for s in result["sections"] if s["status"] != "ok"]
    for s in bad:
        print(f"{s['id']}: {s['status']}: {'; '.join(s['notes'])}", file=sys.stderr)
    print(f"{len(result['sections'])} sections in {result['seconds']:.1f} s ({len(bad)} not complete)")
    written = [result["index"], Path(out) / "figures", Path(out) / "scores.json"]
    if pdf:
        written.append(print_pdf(result["index"], Path(out) / "report.pdf"))
    wrote(*written)
    if any(s["status"] == "error" for s in bad):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(reproduce)
