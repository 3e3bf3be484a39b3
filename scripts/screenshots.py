"""Screenshots of every tab of the web UI: out/screenshots/<tab>.png, or with --docs the tracked
docs/screenshots/<tab>.png.

    python scripts/screenshots.py                              # a tiny random model (layout only; the images are noise)
    python scripts/screenshots.py --model mnist --full --docs  # the docs' screenshots: shipped model, 30 steps
    python scripts/screenshots.py --runs-dir runs --model runs/class --full

Starts the app on 127.0.0.1 (a free port), drives Debian's headless Chromium through `tour` from
tests/test_app.py (the same steps the browser test takes) and writes one PNG per tab.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]
from report_screenshots import add_out_options, shots_folder  # noqa: E402 - beside this script


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_out_options(ap)
    ap.add_argument("--runs-dir", type=Path, default=None, help="runs directory (default: a temporary one)")
    ap.add_argument("--model", default=None, help="model to show (default: a tiny random model)")
    ap.add_argument("--full", action="store_true", help="course settings (30 steps) instead of the fast ones")
    ap.add_argument("--device", default="cpu")
    return ap


def main() -> None:
    args = parser().parse_args()
    out = shots_folder(args)

    import test_app
    from conftest import make_checkpoint
    from playwright.sync_api import sync_playwright
    from test_app import free_port, launch_chromium, tour

    if args.full:
        test_app.TIMEOUT_MS = 600_000  # a real model on a CPU: a 4-view best-of-4 anagram takes a while

    from diffusionlab.app import serve

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs, model = args.runs_dir, args.model
        if model is None:
            runs = runs or tmp / "runs"
            make_checkpoint(runs / "tiny", hidden=8)
            model = "tiny"
        port = free_port()
        extra = (
            [] if runs and (Path(model).exists() and Path(model).resolve().is_relative_to(runs.resolve())) else [model]
        )
        demo = serve("127.0.0.1", port, runs, model, args.device, extra, block=False, quiet=True)
        try:
            with sync_playwright() as p:
                browser = launch_chromium(p)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                info = tour(page, f"http://127.0.0.1:{port}/", [out], fast=not args.full)
                browser.close()
        finally:
            demo.close()
    for tab, line in info.items():
        print(f"{out / (tab + '.png')}: {line}")


if __name__ == "__main__":
    main()
