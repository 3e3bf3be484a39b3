"""What a newcomer tripped on (issue 36): figures the report squashed, machine paths in shipped provenance, "1
threads", `serve` printing a URL it cannot serve, README examples that litter the clone or stop at a file an
earlier one wrote, and screenshot scripts that replace the tracked docs/screenshots."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import make_checkpoint
from PIL import Image
from test_readme import bash_blocks, commands_of, python_blocks

from diffusionlab.cli import main
from diffusionlab.report.context import Figure, Section, SectionOut
from diffusionlab.report.html import CSS, render_html

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import report_screenshots  # noqa: E402
import screenshots  # noqa: E402
import ship_weights  # noqa: E402

WEIGHTS = ROOT / "src" / "diffusionlab" / "weights"
# an absolute path of two or more parts, a home directory, or a Windows drive, where a word starts
MACHINE_PATH = re.compile(r"(?:^|[\s'\"=(])(?:/[\w.-]+/|~/|[A-Za-z]:\\)|/root\b|/home/|/Users/")
META = {
    "command": "diffusionlab reproduce",
    "model": "mnist",
    "seed": 0,
    "device": "cpu",
    "threads": 1,
    "budget": "quick",
    "seconds": 1.0,
    "created": "now",
    "version": "0",
    "torch": "2",
    "python": "3",
}


# -- the report page ----------------------------------------------------------------------------------------------
class _Imgs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs))


def _page(root: Path, figures: list[Figure], **meta) -> str:
    section = Section("A1", "a section", "A", lambda ctx, out: None)
    return render_html([(section, SectionOut(figures=figures))], {**META, **meta}, root=root)


def test_report_figures_show_at_their_natural_size(tmp_path):
    """A grid's labels are pixels: the page gives each image its PNG's size and no CSS shrinks it on screen (the
    560 px cap squashed "sigma=0.2" to "s gma=0.2"); one wider than the page scrolls instead."""
    sizes = {"figures/tall.png": (700, 1200), "figures/wide.png": (1500, 90), "figures/B1_loss.png": (800, 450)}
    for rel, size in sizes.items():
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        Image.new("RGB", size).save(tmp_path / rel)
    sizes["figures/sampling.gif"] = (64, 96)
    Image.new("L", (64, 96)).save(tmp_path / "figures/sampling.gif")
    parser = _Imgs()
    parser.feed(_page(tmp_path, [Figure(rel) for rel in sizes]))
    shown = {img["src"]: (int(img["width"]), int(img["height"])) for img in parser.imgs}
    assert shown == sizes
    screen = CSS.split("@media print")[0]
    for selector, rules in re.findall(r"([^{}]+)\{([^{}]*)\}", screen):
        if "img" in selector:
            assert not re.search(r"(?:^|;)\s*(?:max-|min-)?(?:width|height|zoom)\s*:|transform", rules), selector
    assert re.search(r"figure\{[^}]*overflow-x:auto", screen)


@pytest.mark.browser
def test_chromium_draws_every_figure_pixel_for_pixel(tmp_path):
    """In the browser: each image as many CSS pixels as the PNG has, on a wide and a narrow window; a figure wider
    than the page scrolls."""
    from browser_helpers import chromium_or_skip  # with the other browser tests' rule: skip, or fail under CI

    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    sizes = {"figures/tall.png": (700, 1200), "figures/wide.png": (1500, 90), "figures/B1_loss.png": (800, 450)}
    for rel, size in sizes.items():
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        Image.new("RGB", size, "white").save(tmp_path / rel)
    (tmp_path / "index.html").write_text(_page(tmp_path, [Figure(rel) for rel in sizes]))
    js = "els => els.map(e => [e.getAttribute('src'), e.naturalWidth, e.naturalHeight, e.clientWidth, e.clientHeight])"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=report_screenshots.CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((tmp_path / "index.html").as_uri())
            for width in (500, 1280):
                page.set_viewport_size({"width": width, "height": 900})
                for src, *natural_and_shown in page.eval_on_selector_all("img", js):
                    assert natural_and_shown == [*sizes[src], *sizes[src]], (width, src)
            scroll = page.eval_on_selector_all("figure", "els => els.map(e => e.scrollWidth > e.clientWidth)")  # 1280
            assert scroll == [False, True, False]
        finally:
            browser.close()


def test_the_header_counts_threads_in_words(tmp_path):
    one, two = _page(tmp_path, [], threads=1), _page(tmp_path, [], threads=2)
    assert re.search(r"\(1 thread\b(?!s)", one) and "1 threads" not in one
    assert re.search(r"\(2 threads\b", two)


# -- shipped provenance --------------------------------------------------------------------------------------------
def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def test_no_shipped_json_names_a_machine_path():
    found = [
        (path.name, s)
        for path in sorted(WEIGHTS.glob("*.json"))
        for s in _strings(json.loads(path.read_text()))
        if MACHINE_PATH.search(s)
    ]
    assert len(list(WEIGHTS.glob("*.json"))) >= 10 and found == []


def test_the_machine_path_pattern_sees_the_paths_that_shipped():
    for seen in (
        "train class --data-dir /work/shared/data/mnist --out /root/dl-runs/mnist-class",
        "the MNIST test set in /home/me/mnist",
        "--model ~/dl-runs/x",
        r"--out C:\runs\x",
    ):
        assert MACHINE_PATH.search(seen), seen
    assert not MACHINE_PATH.search("train class --data-dir <data>/mnist --out <runs>/mnist-class --lr 1e-3/2")


def test_shipping_a_run_strips_its_machine_paths(tmp_path, monkeypatch):
    run = make_checkpoint(tmp_path / "dl-runs" / "mnist-class")
    config_path = run / "model.json"
    config = json.loads(config_path.read_text())
    command = "diffusionlab train class --data-dir /work/shared/data/mnist --out /root/dl-runs/mnist-class --resume"
    config["provenance"] = {"command": command, "seed": 0, "history": [{"command": command, "device": "cpu"}]}
    config_path.write_text(json.dumps(config))
    (run / "loss.csv").write_text("step,loss\n1,0.5\n")
    scores = tmp_path / "scores.json"
    scores.write_text(
        json.dumps(
            {
                "command": "diffusionlab evaluate --model /root/dl-runs/mnist-class/model.safetensors",
                "test_images": "the MNIST test set in /work/shared/data/mnist",
                "accuracy": 0.99,
            }
        )
    )
    (tmp_path / "weights").mkdir()
    monkeypatch.setenv("DIFFUSIONLAB_WEIGHTS_DIR", str(tmp_path / "weights"))
    ship_weights.ship(run, "mnist-class", [])
    shipped_path = ship_weights.add_scores("mnist-class", "scores", scores)
    shipped = json.loads(shipped_path.read_text())
    want = "diffusionlab train class --data-dir <data>/mnist --out <runs>/mnist-class --resume"
    assert shipped["provenance"]["command"] == want
    assert shipped["provenance"]["history"] == [{"command": want, "device": "cpu"}]
    assert shipped["scores"] == {
        "command": "diffusionlab evaluate --model <runs>/mnist-class/model.safetensors",
        "test_images": "the MNIST test set in <data>/mnist",
        "accuracy": 0.99,
    }
    assert shipped["unet"] == config["unet"] and shipped["name"] == "mnist-class"


# -- serve without Gradio ------------------------------------------------------------------------------------------
def test_serve_without_gradio_says_how_to_install_it_before_any_url(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--port", "7999"])
    out = capsys.readouterr()
    assert exit_.value.code == 2 and "http" not in out.out + out.err
    assert out.err.strip().splitlines() == [
        'error: the web UI needs Gradio: pip install "diffusionlab[app]" (in a clone of the repository: '
        'pip install -e ".[app]")'
    ]


# -- README examples and screenshots stay out of git's way -----------------------------------------------------------
OUTPUT_OPTIONS = ("--out", "--gif", "--save-all")
WRITES_AN_IMAGE = {"sample", "noise", "denoise", "sdedit", "inpaint", "anagram", "hybrid"}


def _ignored_by_git(paths: list[str]) -> set[str]:
    if shutil.which("git") is None:
        pytest.skip("no git")
    done = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "--no-index", *paths], capture_output=True, text=True, check=False
    )
    if done.returncode not in (0, 1):
        pytest.skip(f"not a git clone: {done.stderr.strip()}")
    return set(done.stdout.split())


def _readme_outputs() -> list[tuple[str, str]]:
    """(what writes it, the relative path) for every file a README example writes."""
    readme = (ROOT / "README.md").read_text()
    outputs = []
    for block in bash_blocks(readme):
        for words in commands_of(block):
            if words[0] != "diffusionlab":
                continue
            command = " ".join(words)
            given = [words[i + 1] for i, w in enumerate(words[:-1]) if w in OUTPUT_OPTIONS]
            if words[1] in ("train", "reproduce") or "--save-all" in words:  # a folder: git matches it as one
                given = [path.rstrip("/") + "/" if path == words[words.index("--out") + 1] else path for path in given]
            if words[1] in WRITES_AN_IMAGE:
                assert "--out" in words, f"`{command}` writes its default file name: give it its own --out"
            outputs += [(command, path) for path in given if not path.startswith("/")]
    for line, code in python_blocks(readme):
        outputs += [(f"README.md:{line}", path) for path in re.findall(r"\.save\(\"([^\"]+)\"\)", code)]
    return outputs


def test_readme_examples_write_where_git_ignores_and_never_twice_to_one_file():
    outputs = _readme_outputs()
    assert len(outputs) >= 20
    ignored = _ignored_by_git([path for _, path in outputs])
    assert [(cmd, path) for cmd, path in outputs if path not in ignored] == []
    images = [(cmd, path) for cmd, path in outputs if path.endswith((".png", ".gif"))]
    by_path = {}
    for cmd, path in images:
        by_path.setdefault(path, []).append(cmd)
    assert {p: cmds for p, cmds in by_path.items() if len(cmds) > 1} == {}


def test_screenshot_scripts_replace_the_docs_only_when_asked():
    docs = ROOT / "docs" / "screenshots"
    for args in (report_screenshots.parser().parse_args(["rep"]), screenshots.parser().parse_args([])):
        folder = report_screenshots.shots_folder(args)
        assert not folder.resolve().is_relative_to(docs)
        assert str(folder.relative_to(ROOT) / "report-top.png") in _ignored_by_git(
            [str(folder.relative_to(ROOT) / "report-top.png")]
        )
    for args in (
        report_screenshots.parser().parse_args(["rep", "--docs"]),
        screenshots.parser().parse_args(["--docs"]),
    ):
        assert report_screenshots.shots_folder(args) == docs
    with pytest.raises(SystemExit):
        screenshots.parser().parse_args(["--docs", "--out", "x"])
