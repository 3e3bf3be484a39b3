"""`diffusionlab reproduce` on tiny random models and tiny data: every section, every figure, the --force rule,
the missing-file paths, --train on tiny settings, and the report opened in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from conftest import make_checkpoint, make_idx_dir

from diffusionlab import report
from diffusionlab.checkpoint import WEIGHTS_NAME
from diffusionlab.cli import main
from diffusionlab.evaluation.classifier import Classifier, TrainedClassifier, save_classifier

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
    (weights / f"{stem}.json").write_text(json.dumps(cfg))
    rows = ["step,epoch,loss,lr"] + [f"{i + 1},1,{1.0 / (i + 1):.5f},0.001" for i in range(loss_steps)]
    (weights / f"{stem}.loss.csv").write_text("\n".join(rows) + "\n")


def make_weights(root: Path) -> Path:
    """Tiny shipped-like weights: every Part B model, a snapshot of the class DDPM, two classifiers."""
    weights = root / "weights"
    weights.mkdir(parents=True)
    specs = {
        "mnist-class": ("class", "ddpm"),
        "mnist-time": ("time", "ddpm"),
        "mnist-flow": ("class", "flow"),
        "mnist-denoiser": ("denoiser", "ddpm"),
        "fashion-mnist-class": ("class", "ddpm"),
    }
    for i, (stem, (kind, objective)) in enumerate(specs.items()):
        run = make_checkpoint(root / "runs" / stem, kind, objective, hidden=4, seed=i)
        if stem.startswith("fashion"):
            cfg = json.loads((run / "model.json").read_text())
            cfg.update(data="fashion-mnist", name="fashion-mnist-class")
            cfg["class_names"] = ["t-shirt/top", "trouser", "pullover", "dress", "coat"] + [
                "sandal",
                "shirt",
                "sneaker",
                "bag",
                "ankle boot",
            ]
            (run / "model.json").write_text(json.dumps(cfg))
        _ship(run, weights, stem)
    snap = make_checkpoint(root / "runs" / "snap", "class", "ddpm", hidden=4, seed=9)
    shutil.copy(snap / WEIGHTS_NAME, weights / "mnist-class.epoch1.safetensors")
    shutil.copy(snap / "model.json", weights / "mnist-class.epoch1.json")
    (weights / "figures").mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(weights / "figures" / "mnist-class_samples_epoch1.png")
    Image.new("RGB", (8, 8), "blue").save(weights / "figures" / "mnist-classifier_confusion.png")
    for data in ("mnist", "fashion-mnist"):
        torch.manual_seed(0)
        net = Classifier((2, 4), 8, 10)
        clf = TrainedClassifier(
            net, {"kind": "classifier", "data": data, "test_accuracy": 0.995, "classifier": net.hparams}
        )
        save_classifier(clf, weights / f"{data}-classifier.safetensors")
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
    assert "99.00 %" in text  # the precomputed score next to the live one


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
    """No data anywhere and only the class DDPM and the MNIST classifier shipped: sections say what is missing,
    the test digits are the shipped sample, and the report still finishes (through the CLI, weights by env)."""
    weights = make_weights(tmp_path / "w")
    shutil.rmtree(weights / "figures")
    (weights / "mnist-class.epoch1.json").unlink()  # a snapshot without its config: noted, not fatal
    (weights / "mnist-class.loss.csv").write_text("a,b\n1,2\n")  # not our loss log: noted
    for p in weights.iterdir():
        if not (p.name.startswith("mnist-class") or p.name.startswith("mnist-classifier")):
            p.unlink()
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


@pytest.mark.browser
def test_report_in_chromium(built):
    """Every <img> of the report loads in headless Chromium (Debian's, through Playwright)."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("no /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    out, _, _, _ = built
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=args, headless=True)
        try:
            page = browser.new_page()
            page.goto((out / "index.html").resolve().as_uri())
            page.wait_for_load_state("load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.getAttribute('src'), e.complete, e.naturalWidth])"
            )
            assert len(images) >= 25
            bad = [src for src, complete, width in images if not complete or width <= 0]
            assert bad == []
            ids = page.eval_on_selector_all("section[data-section]", "els => els.map(e => e.id)")
            assert ids == report.SECTION_IDS
        finally:
            browser.close()


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
