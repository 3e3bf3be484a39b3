"""Screenshots of a report: report-top.png, report-part-a.png, report-part-b.png in out/screenshots/, or with
--docs in the tracked docs/screenshots/.

    diffusionlab reproduce --out /tmp/rep --data-dir data/mnist     # the report (minutes on a CPU)
    python scripts/report_screenshots.py /tmp/rep --docs             # -> docs/screenshots/report-*.png
    python scripts/report_screenshots.py /tmp/rep --part-a A1.8 --part-b B2.4 --out shots/

Opens <report>/index.html in headless Chromium through Playwright (the one `reproduce --pdf` uses:
$DIFFUSIONLAB_CHROMIUM, else chromium on PATH, else Debian's /usr/bin/chromium; never a downloaded browser),
checks that every image loaded, and writes the top of the page and one Part A and one Part B section. tests/test_report.py::test_report_in_chromium runs the same `report_tour` on a tiny report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS_SHOTS = ROOT / "docs" / "screenshots"  # tracked: replaced only with --docs
DEFAULT_SHOTS = ROOT / "out" / "screenshots"  # ignored by git
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}
MAX_SHOT_HEIGHT = 1800  # a long section is cut here: the docs show its head, the report has the rest


def launch_chromium(playwright, executable: str | None = None):
    """Headless Chromium: `executable`, else the one `reproduce --pdf` finds (Playwright downloads none)."""
    from diffusionlab.report.run import CHROMIUM_ENV, find_chromium

    executable = executable or find_chromium()
    if executable is None:
        raise SystemExit(f"error: no Chromium: apt-get install chromium, or set {CHROMIUM_ENV}")
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)


def report_tour(page, index: Path, shots: list[Path], part_a: str = "A1.7", part_b: str = "B3") -> list[str]:
    """Open the report, check that every image loaded, and write report-top/-part-a/-part-b.png into each folder
    of `shots`: the top of the page, and the sections part_a and part_b. Returns the section ids in page order."""
    page.goto(Path(index).resolve().as_uri())
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.getAttribute('src'), e.complete, e.naturalWidth])"
    )
    bad = [src for src, complete, width in images if not complete or width <= 0]
    assert images and bad == [], f"images that did not load: {bad}"
    for folder in shots:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / "report-top.png"))
        for name, sid in (("report-part-a.png", part_a), ("report-part-b.png", part_b)):
            box = page.locator(f'section[data-section="{sid}"]').bounding_box()
            assert box is not None, f"no section {sid} in {index}"
            height = min(box["height"] + 16, MAX_SHOT_HEIGHT)
            clip = {"x": 0, "y": box["y"] - 8, "width": VIEWPORT["width"], "height": height}
            page.screenshot(path=str(folder / name), clip=clip, full_page=True)
    return page.eval_on_selector_all("section[data-section]", "els => els.map(e => e.id)")


def add_out_options(ap: argparse.ArgumentParser) -> None:
    """--out DIR, or --docs for the tracked docs/screenshots/: only an explicit flag replaces the docs' PNGs."""
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default out/screenshots/)")
    where.add_argument("--docs", action="store_true", help="replace the tracked PNGs in docs/screenshots/")


def shots_folder(args: argparse.Namespace) -> Path:
    return DOCS_SHOTS if args.docs else (args.out or DEFAULT_SHOTS)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", type=Path, help="the report folder (with index.html)")
    add_out_options(ap)
    ap.add_argument("--part-a", default="A1.7", help="the Part A section to show (default A1.7, SDEdit)")
    ap.add_argument("--part-b", default="B3", help="the Part B section to show (default B3, flow matching)")
    return ap


def main() -> None:
    args = parser().parse_args()
    out = shots_folder(args)

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            report_tour(page, args.report / "index.html", [out], args.part_a, args.part_b)
        finally:
            browser.close()
    for name in ("report-top.png", "report-part-a.png", "report-part-b.png"):
        print(out / name)


if __name__ == "__main__":
    main()
