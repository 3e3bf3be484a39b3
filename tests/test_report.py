"""`diffusionlab reproduce` on tiny random models and tiny data: every section, every figure, the --force rule,
the missing-file paths, --train on tiny settings, a compact page (provenance folded, numbers rounded, figures
labelled), progress lines, matplotlib loss curves, and the report opened in headless Chromium, with screenshots
under test-artifacts/screenshots/ (and DIR/report-*.png with DIFFUSIONLAB_DOCS_SCREENSHOTS=DIR; see
scripts/report_screenshots.py, which runs `report_tour` on any report)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from conftest import make_checkpoint, make_idx_dir
from PIL import Image

from diffusionlab import report
from diffusionlab.cli import main
from diffusionlab.evaluation.classifier import Classifier, TrainedClassifier, save_classifier
from diffusionlab.model_files import WEIGHTS_NAME

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-artifacts" / "screenshots"
pytestmark = pytest.mark.slow  # builds reports (every section, --train, IF), a minute or more in all
sys.path.insert(0, str(ROOT / "scripts"))
from browser_helpers import chromium_or_skip  # noqa: E402
from report_screenshots import VIEWPORT, launch_chromium, report_tour  # noqa: E402

TINY = report.Budget(
    a0_counts=(3, 5),
    a0_per_prompt=1,
    pair_n=1,
    per_class=1,
    final_class_steps=8,
    snapshot_steps=4,
    time_n=4,
    time_steps=4,
    flow_steps=4,
    score_per_class=1,
    score_steps=4,
    anagram_pairs=3,
    digits=2,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _ship(run_dir: Path, weights: Path, stem: str, loss_steps: int = 40) -> None:
    """A run directory's checkpoint copied in under the shipped names, with a loss log and scores."""
    shutil.copy(run_dir / WEIGHTS_NAME, weights / f"{stem}.safetensors")
    cfg = json.loads((run_dir / "model.json").read_text())
    cfg["provenance"].update(epoch=2, step=loss_steps, loss=0.05, train_seconds=1.0, device="cpu")
    if stem == "mnist-class":
        cfg["scores"] = {
            "conditional_accuracy": 0.99,
            "frechet_distance": 1.5,
            "frechet_distance_train_vs_test": 0.5,
            "n_samples": 1000,
            "anagram": {"anagram_success": 0.4, "n_pairs": 90},
        }
        cfg["default_guidance"] = {  # what choose-guidance --write stores: the report's "guidance" section shows it
            "cfg_scale": 2.0, "steps": 30, "n_per_class": 10, "seed": 0, "target_accuracy": 0.99, "met_target": True,
            "curve": [
                {"cfg_scale": s, "conditional_accuracy": a, "accuracy_standard_error": 0.01, "frechet_distance": 2 * s,
                 "frechet_distance_floor": 0.5, "fd_over_floor": 4 * s, "n_samples": 100}
                for s, a in ((1.0, 0.9), (2.0, 0.99))
            ],
        }  # fmt: skip
    (weights / f"{stem}.json").write_text(json.dumps(cfg))
    rows = ["step,epoch,loss,lr"] + [f"{i + 1},1,{1.0 / (i + 1):.5f},0.001" for i in range(loss_steps)]
    (weights / f"{stem}.loss.csv").write_text("\n".join(rows) + "\n")


def make_weights(root: Path) -> Path:
    """Tiny shipped-like weights: every Part B model, a snapshot of the class DDPM, two classifiers and the MNIST
    ranker's two other members."""
    weights = root / "weights"
    weights.mkdir(parents=True)
    specs = {
        "mnist-class": ("class", "ddpm"),
        "mnist-time": ("time", "ddpm"),
        "mnist-flow": ("class", "flow"),
        "mnist-time-flow": ("time", "flow"),
        "mnist-denoiser": ("denoiser", "ddpm"),
        "fashion-mnist-class": ("class", "ddpm"),
    }
    for i, (stem, (kind, objective)) in enumerate(specs.items()):
        run = make_checkpoint(root / "runs" / stem, kind, objective, hidden=4, seed=i)
        if stem.startswith("fashion"):
            cfg = json.loads((run / "model.json").read_text())
            cfg.update(data="fashion-mnist", name="fashion-mnist-class")
            names = "t-shirt/top,trouser,pullover,dress,coat,sandal,shirt,sneaker,bag,ankle boot"
            cfg["class_names"] = names.split(",")
            (run / "model.json").write_text(json.dumps(cfg))
        _ship(run, weights, stem)
    snap = make_checkpoint(root / "runs" / "snap", "class", "ddpm", hidden=4, seed=9)
    shutil.copy(snap / WEIGHTS_NAME, weights / "mnist-class.epoch1.safetensors")
    shutil.copy(snap / "model.json", weights / "mnist-class.epoch1.json")
    (weights / "figures").mkdir()
    Image.new("RGB", (8, 8), "red").save(weights / "figures" / "mnist-class_samples_epoch1.png")
    Image.new("RGB", (8, 8), "blue").save(weights / "figures" / "mnist-classifier_confusion.png")
    for data in ("mnist", "fashion-mnist"):
        torch.manual_seed(0)
        net = Classifier((2, 4), 8, 10)
        clf = TrainedClassifier(
            net, {"kind": "classifier", "data": data, "test_accuracy": 0.995, "classifier": net.hparams}
        )
        save_classifier(clf, weights / f"{data}-classifier.safetensors")
    for seed, member in enumerate(("mnist-ranker-b", "mnist-ranker-c"), 1):  # the ranker's other members
        torch.manual_seed(seed)
        net = Classifier((2, 4), 8, 10)
        clf = TrainedClassifier(
            net, {"kind": "classifier", "data": "mnist", "test_accuracy": 0.99, "classifier": net.hparams}
        )
        save_classifier(clf, weights / f"{member}.safetensors")
    return weights


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One tiny report, shared by the checks below (data for MNIST and Fashion-MNIST side by side)."""
    root = tmp_path_factory.mktemp("report")
    weights = make_weights(root)
    data = root / "data"
    make_idx_dir(data / "mnist", n_train=40, n_test=20)
    make_idx_dir(data / "fashion-mnist", n_train=40, n_test=20, seed=1)
    out = root / "report" / "nested"  # a missing output directory is created
    result = report.reproduce(out, data_dir=data / "mnist", weights=weights, budget=TINY, progress=False, device="cpu")
    return out, result, weights, data


class _Imgs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a["src"])
        if tag in ("link", "script") or (tag == "img" and "://" in a.get("src", "")):
            self.external.append(tag)


def test_every_section_and_figure(built):
    out, result, _, _ = built
    text = (out / "index.html").read_text()
    for sid in report.SECTION_IDS:
        assert f'data-section="{sid}"' in text, sid
        assert f'href="#{sid}"' in text  # table of contents
    statuses = {s["id"]: s["status"] for s in result["sections"]}
    assert statuses == {sid: "ok" for sid in report.SECTION_IDS}, result["sections"]
    parser = _Imgs()
    parser.feed(text)
    assert parser.external == []  # self-contained: no CSS/JS/fonts from elsewhere
    assert len(parser.srcs) >= 25
    for src in parser.srcs:
        assert not src.startswith("/") and (out / src).is_file(), src
    assert any(s.endswith(".gif") for s in parser.srcs)
    assert "figures/B3_time_flow_epoch2.png" in parser.srcs  # the time flow (Fall 2025 2.2/2.3), final epoch
    # its own loss curve beside the class flow's, and its final loss under its own name
    assert {"figures/B3_loss.png", "figures/B3_time_flow_loss.png"} <= set(parser.srcs)
    b3 = re.search(r'<section id="B3".*?</section>', text, re.S).group(0)
    assert "mnist-time-flow: final loss (mean of the last 100 steps)" in b3
    # a training-time figure shipped beside the weights is copied in, in its own model's section only
    assert [s for s in parser.srcs if "training_" in s] == ["figures/B2_4_training_mnist-class_samples_epoch1.png"]
    for s in result["sections"]:  # every section reports its seconds and seed
        assert re.search(
            rf'data-section="{re.escape(s["id"])}"[^>]*>\s*<h2>.*?</h2>\s*<p class="meta">seed 0 · [0-9.]+ s',
            text,
            re.S,
        )


def test_scores_json(built):
    out, _, _, _ = built
    scores = json.loads((out / "scores.json").read_text())
    live = scores["live"]
    assert 0.0 <= live["conditional_accuracy"] <= 1.0
    assert live["frechet_distance"] >= 0 and live["frechet_distance_train_vs_test"] >= 0
    assert live["anagram"]["n_pairs"] == 3 and "images" not in live["anagram"]
    assert scores["shipped"]["mnist-class"]["conditional_accuracy"] == 0.99
    assert scores["classifiers"]["mnist"] == 0.995
    text = (out / "index.html").read_text()
    assert "99.0 %" in text  # the precomputed score next to the live one, to 0.1 %
    # a classifier's accuracy is read from its JSON, not recomputed: it stands in the precomputed column
    row = re.search(r"<tr><td>MNIST classifier test accuracy</td>(.*?)</tr>", text).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells == ["-", "99.5 % (from its JSON)"]


def test_existing_report_needs_force(built, capsys):
    out, _, weights, data = built
    before = (out / "index.html").read_bytes()
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--out", str(out), "--data-dir", str(data / "mnist")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--force" in err and len(err.splitlines()) == 1
    assert (out / "index.html").read_bytes() == before


def test_missing_files_and_data(tmp_path, monkeypatch):
    """No data anywhere and only the class DDPM and the MNIST classifier (with its ranker) shipped: sections say what is missing,
    the test digits are the shipped sample, and the report still finishes (through the CLI, weights by env)."""
    weights = make_weights(tmp_path / "w")
    shutil.rmtree(weights / "figures")
    (weights / "mnist-class.epoch1.json").unlink()  # a snapshot without its config: noted, not fatal
    (weights / "mnist-class.loss.csv").write_text("a,b\n1,2\n")  # not our loss log: noted
    for p in weights.iterdir():
        if not p.name.startswith(("mnist-class", "mnist-classifier", "mnist-ranker")):  # the ranker: the
            p.unlink()  # classifier with its two ensemble members (evaluation.classifier.load_ranker)
    monkeypatch.setenv(report.WEIGHTS_ENV, str(weights))
    monkeypatch.setenv("DIFFUSIONLAB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(report, "FULL", TINY)
    monkeypatch.setattr(report, "QUICK", TINY)
    out = tmp_path / "r"
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--out", str(out), "--quick", "--device", "cpu"])
    assert e.value.code in (0, None)
    scores = json.loads((out / "scores.json").read_text())
    status = {s["id"]: s for s in scores["sections"]}
    for sid in ("A0", "A1.1", "A1.7", "A1.9", "B2.4", "scores"):
        assert status[sid]["status"] == "ok", status[sid]
    for sid in ("B2", "B3", "B-fashion"):
        assert status[sid]["status"] == "missing"
        assert any("is not in" in n for n in status[sid]["notes"])
    assert any("mnist-time-flow.safetensors is not in" in n for n in status["B3"]["notes"])
    # no data: the shipped sample of genuine test digits, named with the caption (not the model's own samples)
    assert status["A1.1"]["inputs"].startswith("the shipped sample of 100 MNIST test digits")
    assert "Test images: the shipped sample of 100 MNIST test digits" in (out / "index.html").read_text()
    assert any("snapshot of epoch 1 skipped" in n for n in status["B2.4"]["notes"])
    assert any("not a loss log" in n for n in status["B2.4"]["notes"])
    assert scores["live"].get("frechet_distance") is None
    html_text = (out / "index.html").read_text()
    for s in scores["sections"]:
        for f in s["figures"]:
            assert (out / f).is_file()
    assert "mnist-time.safetensors is not in" in html_text


def test_train_tiny(tmp_path, monkeypatch):
    """--train retrains with the project's trainer into <out>/runs/ and the Part B sections use those runs."""
    data = tmp_path / "data"
    make_idx_dir(data / "mnist", n_train=24, n_test=8)
    make_idx_dir(data / "fashion-mnist", n_train=24, n_test=8, seed=1)
    weights = make_weights(tmp_path / "w")
    out = tmp_path / "r"
    res = report.reproduce(
        out,
        train=True,
        data_dir=data / "mnist",
        weights=weights,
        budget=TINY,
        train_overrides={"epochs": 1, "hidden": 4, "batch_size": 12, "max_steps": 1},
        sections=["B1", "B2.4", "B3"],
        progress=False,
        device="cpu",
    )
    for name in report.PARTB_MODELS:
        assert (out / "runs" / name / "model.safetensors").is_file(), name
    assert all(s["status"] == "ok" for s in res["sections"]), res["sections"]
    text = (out / "index.html").read_text()
    assert 'id="training"' in text and "runs/mnist-class" in text


def test_compact_page(built):
    """Provenance folded into <details>, numbers rounded, every figure captioned, the anagram cells' verdicts."""
    out, _, _, _ = built
    text = (out / "index.html").read_text()
    b24 = re.search(r'<section id="B2.4".*?</section>', text, re.S).group(0)
    details = re.search(r'<details class="provenance">.*?</details>', b24, re.S).group(0)
    assert "trained: loss" in details and "recipe: epochs" in details and "command" in details
    settings = b24[: b24.index("<details")]
    assert "trained: loss" not in settings  # not in the visible settings table as well
    assert "0.05" in details  # the shipped loss as given; long decimals are cut to 4 significant digits
    five_digits = r"(?<![\w.])\d+\.0*[1-9]\d{4,}(?![\w.])"  # 5 significant digits or more
    assert not re.search(five_digits, text), re.findall(five_digits, text)[:5]
    final = sum(float(f"{1.0 / (i + 1):.5f}") for i in range(40)) / 40  # _ship's loss log, 40 steps
    assert f"final loss (mean of the last 100 steps)</td><td>{final:.4g}</td>" in b24
    assert all(c.strip() for c in re.findall(r"<figcaption>(.*?)</figcaption>", text, re.S))  # all labelled
    assert "training loss per step: 40 steps over 1 epoch" in b24 and "final model (epoch 2)" in b24
    scores = re.search(r'<section id="scores".*?</section>', text, re.S).group(0)
    cells = re.findall(r'<td class="(pass|fail)" title="(?:passed|failed)">(\d)→(\d) [✓✗]</td>', scores)
    assert [(a, b) for _, a, b in cells] == [("0", "1"), ("0", "2"), ("0", "3")]  # TINY: the first 3 pairs
    n_pass = sum(c == "pass" for c, _, _ in cells)
    assert f"{n_pass} of 3 passed the classifier" in scores


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_progress_lines(built, tmp_path, capsys):
    """A line as each section ends, and the long steps of "scores" (sampling, the anagrams) said as they start."""
    _, _, weights, data = built
    report.reproduce(
        tmp_path / "r",
        data_dir=data / "mnist",
        weights=weights,
        budget=TINY,
        progress=True,
        device="cpu",
        sections=["B2.4", "scores"],
    )
    lines = "".join(capsys.readouterr()).splitlines()
    assert any(re.fullmatch(r"\s*scores: sampling 10 digits .*", ln) for ln in lines), lines
    assert any(re.fullmatch(r"\s*scores: 3 visual anagrams .*", ln) for ln in lines), lines
    final = [ln for ln in lines if re.fullmatch(r"\s*B2.4: final model \(epoch 2\): sampling .*", ln)]
    # strided steps are sampled with the default rule there (DDIM eta 0), and the line says so
    assert len(final) == 1 and "ddim (eta 0), the default on strided steps, 8 evenly spaced steps" in final[0], lines
    assert any(re.fullmatch(r"scores Scores: ok, [0-9.]+ s", ln) for ln in lines), lines


@pytest.mark.browser
def test_pdf(built, tmp_path, monkeypatch, capsys):
    """--pdf without Chromium: one line, before any work. With Chromium: the report printed to a PDF."""
    from diffusionlab.report import run as report_run

    monkeypatch.setattr(report_run, "find_chromium", lambda: None)
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--out", str(tmp_path / "r"), "--pdf"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error:") and "Chromium" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r" / "index.html").exists()
    monkeypatch.undo()
    chromium = chromium_or_skip(playwright=False)
    out, _, _, _ = built
    pdf = report_run.print_pdf(out / "index.html", tmp_path / "report.pdf", chromium)
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 10_000


def test_find_chromium_order(tmp_path, monkeypatch):
    """The Chromium of --pdf and the browser tests: $DIFFUSIONLAB_CHROMIUM, then chromium, then chromium-browser on
    PATH (then Debian's /usr/bin/chromium)."""
    from diffusionlab.report.run import CHROMIUM_ENV, find_chromium

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    def executable(name: str) -> str:
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
        return str(bin_dir / name)

    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv(CHROMIUM_ENV, executable("my-chromium"))
    browser = executable("chromium-browser")
    assert find_chromium() == str(bin_dir / "my-chromium")
    monkeypatch.delenv(CHROMIUM_ENV)
    assert find_chromium() == browser
    chromium = executable("chromium")
    assert find_chromium() == chromium


@pytest.mark.browser
def test_report_in_chromium(built):
    """Every <img> of the report loads in headless Chromium (Debian's, through Playwright); screenshots of the top,
    a Part A and a Part B section."""
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    out, _, _, _ = built
    shots = [SHOTS]
    if os.environ.get("DIFFUSIONLAB_DOCS_SCREENSHOTS"):
        shots.append(Path(os.environ["DIFFUSIONLAB_DOCS_SCREENSHOTS"]))
    with sync_playwright() as p:
        browser = launch_chromium(p, chromium)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            assert report_tour(page, out / "index.html", shots) == report.SECTION_IDS
            assert page.eval_on_selector_all("img", "els => els.length") >= 25
        finally:
            browser.close()
    for name in ("report-top.png", "report-part-a.png", "report-part-b.png"):
        width, height = _png_size(SHOTS / name)
        assert width == 1280 and 100 < height <= 1800, (name, width, height)


def test_part_a_on_deepfloyd(tmp_path, monkeypatch):
    """--model deepfloyd: the same Part A sections on (tiny, random) IF stage I + II with the course's prompts."""
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from test_deepfloyd import build_tiny_if

    monkeypatch.setenv("DIFFUSIONLAB_CACHE", str(tmp_path / "cache"))
    build_tiny_if(tmp_path / "if")
    budget = report.Budget(**{**TINY.__dict__, "if_a0_counts": (3, 4)})
    out = tmp_path / "r"
    res = report.reproduce(
        out,
        model="deepfloyd",
        model_kwargs={"model_dir": tmp_path / "if"},
        budget=budget,
        sections=[s.id for s in report.SECTIONS if s.part == "A"],
        progress=False,
        device="cpu",
    )
    status = {s["id"]: s for s in res["sections"]}
    assert all(s["status"] == "ok" for s in status.values()), status
    assert any("stage2" in f for f in status["A0"]["figures"])
    text = (out / "index.html").read_text()
    assert "an oil painting of an old man" in text and "a rocket ship" in text
