"""The web UI (`diffusionlab serve`): server-side checks, ten concurrent API clients, and a real browser.

The app runs in this process on 127.0.0.1 and a free port, with a tiny random class model in a tmp runs dir.
The browser test drives headless Chromium (the one `reproduce --pdf` finds; never a downloaded one) and saves a
screenshot of every tab under test-artifacts/screenshots/. With DIFFUSIONLAB_DOCS_SCREENSHOTS=DIR it also writes DIR/<tab>.png (see
scripts/screenshots.py, which runs `tour` against any model).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from browser_helpers import chromium_or_skip  # noqa: E402
from conftest import make_checkpoint  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from diffusionlab.app import Limits, ModelRegistry, open_upload, serve  # noqa: E402
from diffusionlab.errors import DiffusionLabError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from report_screenshots import launch_chromium  # noqa: E402  (scripts/screenshots.py takes it from here too)

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*no_silent_downcasting:DeprecationWarning", "ignore:The copy keyword is deprecated"
)
SHOTS = ROOT / "test-artifacts" / "screenshots"
TIMEOUT_MS = 60_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digit_png(path: Path, size: int = 64) -> Path:
    """A white '7' on black, the way MNIST digits look."""
    im = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(im)
    d.line((14, 14, 50, 14), fill=255, width=6)
    d.line((50, 14, 26, 54), fill=255, width=6)
    im.save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("uploads")
    bad = d / "not-an-image.png"
    bad.write_text("this is a text file renamed .png\n")
    return {"digit": digit_png(d / "digit.png"), "bad": bad}


@pytest.fixture(scope="module")
def server(runs_dir):
    """The app on 127.0.0.1:<free port> in a background thread; its URL."""
    port = free_port()
    demo = serve("127.0.0.1", port, runs_dir, "tiny", "cpu", block=False, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    yield url
    demo.close()


# -- without a server ---------------------------------------------------------------------------------------------
def test_registry_lists_runs_and_refuses_paths_from_the_browser(runs_dir, tmp_path):
    reg = ModelRegistry(runs_dir)
    values = [v for _, v in reg.choices()]
    assert "run:tiny" in values
    assert reg.default("tiny") == "run:tiny"
    assert reg.spec_for("run:tiny") == str((runs_dir / "tiny").resolve())
    outside = make_checkpoint(tmp_path / "elsewhere")
    for value in ("run:../elsewhere", f"run:{outside}", str(outside), "given:/etc", "", None):
        with pytest.raises(DiffusionLabError):
            reg.spec_for(value)
    # a symlink from the runs dir to a run outside it is not offered
    (runs_dir / "link").symlink_to(outside, target_is_directory=True)
    try:
        assert "run:link" not in [v for _, v in reg.choices()]
    finally:
        (runs_dir / "link").unlink()


def test_deepfloyd_is_offered_only_when_its_weights_are_cached(tmp_path, monkeypatch):
    from diffusionlab.app import deepfloyd_available

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert deepfloyd_available() is None
    unet = tmp_path / "models--DeepFloyd--IF-I-L-v1.0" / "snapshots" / "abc" / "unet"
    unet.mkdir(parents=True)
    assert deepfloyd_available() is None  # a folder without weights
    (unet / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"")
    assert deepfloyd_available() == "IF-I-L-v1.0"
    assert "deepfloyd:IF-I-L-v1.0" in [v for _, v in ModelRegistry(None).choices()]


def test_uploads_are_read_only_from_the_upload_cache(files, tmp_path):
    with pytest.raises(DiffusionLabError, match="uploaded through this page"):
        open_upload({"path": str(files["digit"])}, Limits())
    with pytest.raises(DiffusionLabError, match="uploaded through this page"):
        open_upload({"path": "/etc/passwd"}, Limits())


def test_upload_limits(files):
    import shutil
    import tempfile

    root = Path(tempfile.gettempdir()) / "gradio" / "diffusionlab-test-uploads"
    root.mkdir(parents=True, exist_ok=True)
    try:
        digit = root / "digit.png"
        shutil.copy(files["digit"], digit)
        assert open_upload({"path": str(digit)}, Limits()).size == (64, 64)
        with pytest.raises(DiffusionLabError, match="megapixels"):
            open_upload({"path": str(digit)}, Limits(max_pixels=32 * 32))
        with pytest.raises(DiffusionLabError, match="MB; the limit"):
            open_upload({"path": str(digit)}, Limits(max_upload_bytes=10))
        bad = root / "bad.png"
        shutil.copy(files["bad"], bad)
        with pytest.raises(DiffusionLabError, match="not a picture"):
            open_upload({"path": str(bad)}, Limits())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_core_does_not_import_gradio():
    code = "import sys, diffusionlab.app, diffusionlab.cli; sys.exit('gradio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120).returncode == 0


def test_serve_command_is_registered():
    from typer.testing import CliRunner

    from diffusionlab.cli import app

    out = CliRunner().invoke(app, ["serve", "--help"])
    assert out.exit_code == 0
    for opt in ("--host", "--port", "--runs-dir", "--model"):
        assert opt in out.output


# -- the API --------------------------------------------------------------------------------------------------------
def test_ten_concurrent_requests_and_twenty_bad_ones_at_once(server):
    """Load: 10 good /generate calls and 20 bad ones (path-like model names, unknown prompts, bad seeds) at the same
    time. Every good one is served with its own seed, every bad one gets a one-line refusal, nothing hangs; the
    figures (served / failed / median latency) are printed for the record."""
    import statistics
    import time

    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(server, verbose=False)
    bad_models = ["run:../../etc", "run:/etc/passwd", "run:..", "/etc/passwd", "run:tiny/../../x"]
    bad = [(m, "3", 1, 2, 5.0, 0) for m in bad_models] * 2
    bad += [("run:tiny", p, 1, 2, 5.0, 0) for p in ("banana", "11", "0x3", "3;rm -rf /", "seven and a half")] * 2

    def call(args):
        start = time.perf_counter()
        try:
            return "ok", client.predict(*args, api_name="/generate"), time.perf_counter() - start
        except AppError as e:
            return "refused", str(e), time.perf_counter() - start

    good = [("run:tiny", "3", 1, 2, 5.0, seed) for seed in range(10)]
    with ThreadPoolExecutor(max_workers=30) as pool:
        results = list(pool.map(call, good + bad, timeout=300))
    served = [r for r in results[:10] if r[0] == "ok"]
    refused = [r for r in results[10:] if r[0] == "refused"]
    latency = statistics.median(r[2] for r in results[:10])
    print(f"\nweb UI load: {len(served)}/10 served, {len(refused)}/20 bad refused, median latency {latency:.1f} s")
    assert len(served) == 10 and len(refused) == 20
    for seed, (_, (gallery, info), _) in enumerate(served):
        assert len(gallery) == 1 and Path(gallery[0]["image"]).suffix == ".png"
        assert f"seed** {seed}" in info
    for _, message, _ in refused:
        assert message.strip() and "\n" not in message.strip() and "Traceback" not in message


def test_api_errors_are_one_line_messages(server, files):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(server, verbose=False)
    cases = [
        (("run:../../etc", "3", 1, 2, 5.0, 0), "/generate", "unknown model"),
        (("run:tiny", "banana", 1, 2, 5.0, 0), "/generate", "unknown prompt"),
        (("run:tiny", handle_file(str(files["bad"])), 20, 5, 2.0, "", 1.0, 0, "auto", ""), "/noise", "not a picture"),
        (("run:tiny", None, 5000, 5, 2.0, "", 1.0, 0, "auto", "3"), "/noise", "out of range"),
        (("run:tiny", None, 20, 5, 2.0, "", 1.0, 0, "auto", "nine"), "/noise", "test image must be a whole number"),
    ]
    for args, endpoint, message in cases:
        with pytest.raises(AppError) as e:
            client.predict(*args, api_name=endpoint)
        assert message in str(e.value) and "Traceback" not in str(e.value) and "\n" not in str(e.value).strip()
    # and the app still works
    gallery, _ = client.predict("run:tiny", "7", 1, 2, 5.0, 1, api_name="/generate")
    assert len(gallery) == 1


# -- the browser ----------------------------------------------------------------------------------------------------
def _set_number(page, selector: str, value) -> None:
    box = page.locator(selector)
    box.fill(str(value))
    box.press("Enter")


def _open_tab(page, name: str, ready: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_selector(ready, timeout=TIMEOUT_MS)


def _wait_image(page, selector: str) -> None:
    page.wait_for_selector(f"{selector} img", timeout=TIMEOUT_MS)
    page.wait_for_timeout(300)  # let the image paint before a screenshot


def _stroke(page, editor: str, points: list[tuple[float, float]]) -> None:
    """Drag the brush through points given as fractions of the editor's canvas."""
    page.locator(f"{editor} button[aria-label=Brush]").click()
    box = page.locator(f"{editor} canvas").last.bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=6)
    page.mouse.up()
    page.wait_for_timeout(200)


def _pick(page, picker: str, label: str, shows: str) -> None:
    """Choose a test image in a picker and wait until its field shows it."""
    page.locator(f"{picker} input").click()
    page.get_by_role("option", name=label, exact=True).click()
    page.wait_for_selector(f"{shows} img", timeout=TIMEOUT_MS)
    page.wait_for_timeout(500)


def tour(page, url: str, shots: list[Path], fast: bool = True) -> dict[str, str]:
    """Use every tab once (small settings when fast) and screenshot each into every folder of shots. The image tabs
    run on the test images they open with (Noise picks another one); no upload is needed.

    Returns the settings line shown under each tab's result.
    """
    info: dict[str, str] = {}

    def shot(name: str) -> None:
        for d in shots:
            d.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(d / f"{name}.png"), full_page=True)

    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#gen-run", timeout=TIMEOUT_MS)

    _set_number(page, "#gen-steps input[type=number]", 2 if fast else 30)
    _set_number(page, "#gen-n input[type=number]", 2 if fast else 4)
    page.click("#gen-run")
    _wait_image(page, "#gen-out")
    info["generate"] = page.locator("#gen-info").inner_text()
    shot("generate")

    _open_tab(page, "Noise & denoise", "#noise-run")
    page.wait_for_selector("#noise-in img", timeout=TIMEOUT_MS)  # it opens on test image 0
    _pick(page, "#noise-pick", "test 7: 9", "#noise-in")
    _set_number(page, "#noise-t input[type=number]", 20 if fast else 140)
    page.click("#noise-run")
    for k in range(5):
        _wait_image(page, f"#noise-out-{k}")
    info["noise"] = page.locator("#noise-info").inner_text()
    shot("noise")

    _open_tab(page, "SDEdit", "#sdedit-run")
    if fast:
        page.locator("#sdedit-starts textarea, #sdedit-starts input").first.fill("25 28")
    page.click("#sdedit-run")
    _wait_image(page, "#sdedit-out")
    info["sdedit"] = page.locator("#sdedit-info").inner_text()
    shot("sdedit")

    _open_tab(page, "Inpaint", "#inpaint-run")
    page.wait_for_selector("#inpaint-in canvas", timeout=TIMEOUT_MS)
    page.wait_for_timeout(800)
    _stroke(page, "#inpaint-in", [(0.45, 0.3), (0.55, 0.5), (0.45, 0.7)])
    page.click("#inpaint-run")
    _wait_image(page, "#inpaint-out")
    info["inpaint"] = page.locator("#inpaint-info").inner_text()
    shot("inpaint")

    info.update(_tour_illusions(page, shot, fast))
    return info


def _tour_illusions(page, shot, fast: bool) -> dict[str, str]:
    """The Anagram tab (its last example: four rotations, four prompts) and the Hybrid tab."""
    info: dict[str, str] = {}
    _open_tab(page, "Anagram", "#anagram-run")
    page.locator("#anagram-examples").get_by_text("rot90").last.click()  # the last example: four rotations
    page.wait_for_selector("#anagram-p4 textarea, #anagram-p4 input", timeout=TIMEOUT_MS)
    _set_number(page, "#anagram-n input[type=number]", 2 if fast else 4)
    if not fast:  # verified best-of-K: the shipped classifier keeps the best of 4 candidates per image
        _set_number(page, "#anagram-best-of input[type=number]", 4)
    page.click("#anagram-run")
    page.locator("#anagram-info").filter(has_text="seed").wait_for(timeout=TIMEOUT_MS)
    _wait_image(page, "#anagram-out")
    info["anagram"] = page.locator("#anagram-info").inner_text()
    shot("anagram")

    _open_tab(page, "Hybrid", "#hybrid-run")
    _set_number(page, "#hybrid-n input[type=number]", 2 if fast else 4)
    page.click("#hybrid-run")
    _wait_image(page, "#hybrid-near")
    _wait_image(page, "#hybrid-far")
    info["hybrid"] = page.locator("#hybrid-info").inner_text()
    shot("hybrid")
    return info


@pytest.mark.browser
def test_every_tab_in_a_real_browser(server, files):
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    shots = [SHOTS]
    if os.environ.get("DIFFUSIONLAB_DOCS_SCREENSHOTS"):
        shots.append(Path(os.environ["DIFFUSIONLAB_DOCS_SCREENSHOTS"]))
    with sync_playwright() as p:
        browser = launch_chromium(p, chromium)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            start = time.monotonic()
            try:
                info = tour(page, server, shots, fast=True)
            except Exception:
                page.screenshot(path=str(SHOTS / "failure.png"), full_page=True)  # what the page showed
                raise
            for tab in ("generate", "noise", "sdedit", "inpaint", "anagram", "hybrid"):
                assert "seed" in info[tab] and "model" in info[tab], tab
                assert (SHOTS / f"{tab}.png").is_file()
            assert "mask painted" in info["inpaint"]  # the brush stroke became the mask
            assert "image test:7" in info["noise"] and "test image from" in info["noise"]  # the picker's choice
            assert "image test:1" in info["sdedit"] and "image test:0" in info["inpaint"]  # what they open with
            assert "prompts 1 / 7 / 4 / 0" in info["anagram"] and "rot90, rot180, rot270" in info["anagram"]

            # a text file renamed .png: a one-line message in the page, no trace, and the app keeps working
            _open_tab(page, "Noise & denoise", "#noise-run")
            page.locator("#noise-in button[aria-label='Remove Image']").first.click()
            page.locator("#noise-in input[type=file]").set_input_files(str(files["bad"]))
            page.wait_for_timeout(500)
            page.click("#noise-run")
            toast = page.locator(".toast-body").filter(has_text="not a picture")
            toast.first.wait_for(timeout=TIMEOUT_MS)
            text = toast.first.inner_text()
            assert "Traceback" not in text and 'File "' not in text
            page.screenshot(path=str(SHOTS / "bad-upload.png"), full_page=True)
            toast.first.wait_for(state="detached", timeout=TIMEOUT_MS)  # it fades by itself, uncovering the results

            # another model: the picker offers its test set (Fashion-MNIST's), and the tab runs on it
            page.locator("#model input").click()
            page.get_by_role("option", name="fashion-mnist (shipped)", exact=True).click()
            _pick(page, "#noise-pick", "test 0: ankle boot", "#noise-in")
            page.click("#noise-run")
            page.locator("#noise-info").filter(has_text="Fashion-MNIST").wait_for(timeout=TIMEOUT_MS)
            assert "image test:0" in page.locator("#noise-info").inner_text()
            page.locator("#model input").click()
            page.get_by_role("option", name="run: tiny (class ddpm, mnist)", exact=True).click()

            _open_tab(page, "Generate", "#gen-run")
            _set_number(page, "#gen-seed input", 7)
            page.click("#gen-run")
            page.locator("#gen-info").filter(has_text="seed 7").wait_for(timeout=TIMEOUT_MS)
            print(f"browser tour: {time.monotonic() - start:.1f} s")
        finally:
            browser.close()
