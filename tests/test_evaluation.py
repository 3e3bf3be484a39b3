"""Scores (Frechet distance, conditional accuracy, anagram and hybrid success), the classifier, `evaluate`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA, make_checkpoint, make_idx_dir

from diffusionlab.backends import shipped_weights_dir
from diffusionlab.cli import main
from diffusionlab.errors import DiffusionLabError
from diffusionlab.evaluation.classifier import load_classifier, train_classifier
from diffusionlab.evaluation.metrics import (
    anagram_success,
    conditional_accuracy,
    far_view,
    frechet_distance,
    frechet_from_stats,
    hybrid_scores,
)


# -- Frechet distance ---------------------------------------------------------------------------------------
def test_frechet_closed_form_diagonal() -> None:
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.5])
    s1, s2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    expected = float((mu1 - mu2).pow(2).sum() + (s1 + s2 - 2 * (s1 * s2).sqrt()).sum())
    assert frechet_from_stats(mu1, torch.diag(s1), mu2, torch.diag(s2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_closed_form_shared_eigenvectors() -> None:
    """Covariances Q diag(a) Q^T and Q diag(b) Q^T commute: FD = ||dmu||^2 + sum (a + b - 2 sqrt(ab))."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    a = torch.rand(6, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(6, generator=g, dtype=torch.float64) * 3
    b[0] = 0.0  # a singular covariance too
    mu = torch.randn(6, generator=g, dtype=torch.float64)
    expected = float(mu.pow(2).sum() + (a + b - 2 * (a * b).sqrt()).sum())
    got = frechet_from_stats(mu, q @ torch.diag(a) @ q.T, torch.zeros(6), q @ torch.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-8)


def test_frechet_of_sample_sets() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 16, generator=g)
    y = torch.randn(150, 16, generator=g) * 1.5 + 0.3
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-8)
    assert frechet_distance(x, y) > 1.0
    shift = torch.linspace(-1, 1, 16)
    # a translated copy has the same covariance: FD = ||shift||^2
    assert frechet_distance(x, x + shift) == pytest.approx(float(shift.double().pow(2).sum()), rel=1e-5)


def test_frechet_bad_input() -> None:
    with pytest.raises(DiffusionLabError):
        frechet_distance(torch.randn(1, 4), torch.randn(5, 4))
    with pytest.raises(DiffusionLabError):
        frechet_distance(torch.randn(5, 4), torch.randn(5, 3))


# -- hand-made classification cases -------------------------------------------------------------------------
class TopRow:
    """Fake classifier: the label is the brightest of the first 10 pixels of the top row."""

    num_classes = 10
    test_accuracy = None

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, 0, 0, :10].argmax(1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)


class FirstPixel:
    """Fake classifier: the label is floor(10 * pixel (0, 0))."""

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        return (images[:, 0, 0, 0] * 10).floor().long().clamp(0, 9)


class Rot180:
    def apply(self, x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
        return torch.flip(x, dims=(-2, -1))

    inverse = apply


def dot_images(first: list[int], second: list[int]) -> torch.Tensor:
    """Top-row pixel at column first[i]; pixel (27, 27 - second[i]), which rot180 moves to (0, second[i])."""
    x = torch.zeros(len(first), 1, 28, 28)
    for i, (a, b) in enumerate(zip(first, second, strict=True)):
        x[i, 0, 0, a] = 1.0
        x[i, 0, 27, 27 - b] = 1.0
    return x


def test_conditional_accuracy_hand_made() -> None:
    x = dot_images([3, 3, 5, 7], [0, 0, 0, 0])
    assert conditional_accuracy(TopRow(), x, 3) == 0.5
    assert conditional_accuracy(TopRow(), x, torch.tensor([3, 3, 5, 7])) == 1.0
    with pytest.raises(DiffusionLabError):
        conditional_accuracy(TopRow(), x, [1, 2])


def test_anagram_success_hand_made() -> None:
    x = dot_images([1, 1, 2, 4], [6, 0, 6, 6])
    scores = anagram_success(TopRow(), x, Rot180(), 1, 6)
    assert scores == {"first": 0.5, "second": 0.75, "success": 0.25}
    assert anagram_success(TopRow(), x, Rot180(), [1, 1, 2, 4], [6, 0, 6, 6])["success"] == 1.0


def test_anagram_success_with_project_view() -> None:
    views = pytest.importorskip("diffusionlab.views")
    view = views.get_view("rot180", (1, 28, 28))
    x = dot_images([2, 9], [8, 8])
    assert anagram_success(TopRow(), x, view, [2, 9], 8)["success"] == 1.0


def test_hybrid_scores_hand_made() -> None:
    """Checkerboard +-0.3 around 0.45: the far view is flat 0.45 (class 4), pixel (0, 0) is 0.75 (class 7)."""
    yy, xx = torch.meshgrid(torch.arange(28), torch.arange(28), indexing="ij")
    checker = torch.where((yy + xx) % 2 == 0, 0.3, -0.3)
    x = (0.45 + checker).expand(3, 1, 28, 28).clone()
    assert far_view(x).sub(0.45).abs().max() < 1e-5
    assert hybrid_scores(FirstPixel(), x, 4, 7) == {"far": 1.0, "near": 1.0, "success": 1.0}
    assert hybrid_scores(FirstPixel(), x, 7, 7) == {"far": 0.0, "near": 1.0, "success": 0.0}


# -- the classifier -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Tiny IDX data (blob position = label) and a tiny classifier trained on it: (data dir, classifier file)."""
    root = tmp_path_factory.mktemp("evaluation")
    data_dir = make_idx_dir(root / "data", n_train=200, n_test=64)
    out = root / "tiny-classifier.safetensors"
    torch.manual_seed(0)
    train_classifier(
        "mnist", data_dir, epochs=3, batch_size=32, channels=(4, 8), feature_dim=16, out_path=out, progress=False
    )
    return data_dir, out


def test_tiny_classifier_learns_and_round_trips(tiny_setup: tuple[Path, Path]) -> None:
    data_dir, path = tiny_setup
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["kind"] == "classifier" and meta["data"] == "mnist"
    prov = meta["provenance"]
    assert set(prov) >= {"command", "data_md5", "seed", "epochs", "test_accuracy", "train_seconds", "device"}
    assert "train-images-idx3-ubyte.gz" in prov["data_md5"]
    assert meta["test_accuracy"] > 0.5  # blobs are easy; chance is 0.1
    clf = load_classifier(path)
    assert clf.test_accuracy == meta["test_accuracy"]
    x = torch.rand(5, 1, 28, 28)
    assert clf.features(x).shape == (5, 16)
    assert clf.classify(x).shape == (5,)
    # float16 on disk: the in-memory weights were scored after the same cast, so a reload gives the same logits
    again = load_classifier(str(path.with_suffix(".json")))
    assert torch.equal(clf.logits(x), again.logits(x))
    with pytest.raises(DiffusionLabError, match="shape"):
        clf.classify(torch.rand(2, 3, 28, 28))


def test_load_classifier_errors(tmp_path: Path) -> None:
    with pytest.raises(DiffusionLabError, match="no such file"):
        load_classifier(tmp_path / "missing.safetensors")
    run = make_checkpoint(tmp_path / "unet_run")
    with pytest.raises(DiffusionLabError, match="not a classifier"):
        load_classifier(run / "model.safetensors")


# -- the command line ---------------------------------------------------------------------------------------
def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_evaluate_cli_samples_at_the_models_stored_cfg_by_default(tiny_setup, tiny_class_model, tmp_path, capsys):
    """Without --cfg, evaluate samples at the scale the model carries (choose-guidance --write), as sample does."""
    data_dir, clf = tiny_setup
    config_path = tiny_class_model / "model.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "default_guidance": {"cfg_scale": 2.5}}))
    out = tmp_path / "scores.json"
    args = ["evaluate", "--model", str(tiny_class_model), "--classifier", str(clf), "--data-dir", str(data_dir)]
    code, _, _ = run_cli([*args, "-n", "1", "--steps", "2", "--out", str(out), "--device", "cpu"], capsys)
    assert code == 0 and json.loads(out.read_text())["cfg_scale"] == 2.5
    assert "--cfg" not in json.loads(out.read_text())["command"]  # the command remakes it through the model


def test_evaluate_cli_writes_scores(tiny_setup, tiny_class_model: Path, tmp_path: Path, capsys) -> None:
    data_dir, clf = tiny_setup
    out = tmp_path / "scores" / "scores.json"
    args = ["evaluate", "--model", str(tiny_class_model), "--classifier", str(clf), "--data-dir", str(data_dir)]
    args += ["-n", "2", "--steps", "3", "--cfg", "5", "--seed", "1", "--out", str(out), "--device", "cpu"]
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0
    scores = json.loads(out.read_text())
    assert scores["n_samples"] == 20 and scores["cfg_scale"] == 5.0 and scores["steps"] == 3
    assert 0.0 <= scores["conditional_accuracy"] <= 1.0
    assert len(scores["per_class_accuracy"]) == 10
    assert math.isfinite(scores["frechet_distance"]) and scores["frechet_distance"] >= 0
    assert math.isfinite(scores["frechet_distance_train_vs_test"])
    assert "conditional accuracy" in stdout and str(out) in stdout
    # the same seed gives the same scores; an existing file is kept without --force
    code, _, err = run_cli(args, capsys)
    assert code == 2 and err.startswith("error:") and "--force" in err and len(err.strip().splitlines()) == 1
    code, _, _ = run_cli([*args, "--force"], capsys)
    assert code == 0 and json.loads(out.read_text())["conditional_accuracy"] == scores["conditional_accuracy"]


def test_evaluate_cli_bad_input(tiny_setup, tiny_class_model: Path, tmp_path: Path, capsys) -> None:
    data_dir, clf = tiny_setup
    base = ["--data-dir", str(data_dir), "-n", "1", "--steps", "2", "--device", "cpu"]
    missing = ["evaluate", "--model", str(tiny_class_model), "--classifier", str(tmp_path / "nope.safetensors")]
    code, _, err = run_cli([*missing, *base, "--out", str(tmp_path / "a.json")], capsys)
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    time_run = make_checkpoint(tmp_path / "time_run", kind="time")
    other = ["evaluate", "--model", str(time_run), "--classifier", str(clf)]
    for option in (["--cfg", "3"], ["--anagram", "rot180"], ["--hybrid"]):  # they steer class-conditioned samples
        code, _, err = run_cli([*other, *base, *option, "--out", str(tmp_path / "b.json")], capsys)
        assert code == 2 and f"{option[0]} needs class-conditioned" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "b.json").exists()


def test_evaluate_unconditional(tiny_setup, tmp_path: Path, capsys) -> None:
    """A time model: the class spread of its samples and its distance to the test labels' spread (by the formula,
    from the classifier's labels of the same samples), FD next to its floor, the same scores for the same seed."""
    from diffusionlab.backends import load_model
    from diffusionlab.data import load_split
    from diffusionlab.evaluation.evaluate import evaluate_unconditional
    from diffusionlab.evaluation.metrics import to_unit
    from diffusionlab.sampling import generate, timesteps_for

    data_dir, clf_path = tiny_setup
    clf = load_classifier(clf_path)
    run = make_checkpoint(tmp_path / "time_run", kind="time")
    model = load_model(run, "cpu")
    test, train = load_split("mnist", "test", data_dir), load_split("mnist", "train", data_dir)
    scores = evaluate_unconditional(model, clf, 12, 3, 0, test, train, progress=False)
    # one chunk draws what sampling.generate draws for the same seed: recompute the spread from those samples
    x = generate(model, None, 12, seed=0, timesteps=timesteps_for(model, 3), progress=False)
    shares = torch.bincount(clf.classify(to_unit(x, model.value_range)), minlength=10).float() / 12
    expected = torch.bincount(test.labels, minlength=10).float() / len(test)
    assert scores["class_shares"] == pytest.approx(shares.tolist(), abs=1e-4)
    assert scores["class_share_distance"] == pytest.approx(float(0.5 * (shares - expected).abs().sum()), abs=1e-6)
    assert 0 <= scores["class_share_distance_train"] <= 1 and scores["n_train_subset"] == 12
    assert math.isfinite(scores["frechet_distance"]) and math.isfinite(scores["frechet_distance_train_vs_test"])
    # the command: the table, the JSON, the command that makes it
    out = tmp_path / "time.json"
    args = ["evaluate", "--model", str(run), "--classifier", str(clf_path), "--data-dir", str(data_dir)]
    args += ["-n", "12", "--steps", "3", "--out", str(out), "--device", "cpu"]
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0 and "(unconditional)" in stdout and "total-variation distance" in stdout
    saved = json.loads(out.read_text())
    assert saved["class_shares"] == scores["class_shares"] and saved["n_samples"] == 12
    assert saved["command"].endswith("-n 12 --steps 3 --seed 0") and "--cfg" not in saved["command"]
    with pytest.raises(DiffusionLabError, match="time"):
        evaluate_unconditional(load_model(make_checkpoint(tmp_path / "c", kind="class"), "cpu"), clf, 4)


def test_train_classifier_cli(tiny_setup, tmp_path: Path, capsys) -> None:
    data_dir, _ = tiny_setup
    out = tmp_path / "c.safetensors"
    args = ["train-classifier", "--data", "mnist", "--data-dir", str(data_dir), "--epochs", "1", "--out", str(out)]
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0 and "test accuracy" in stdout
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["provenance"]["command"].startswith("diffusionlab train-classifier --data mnist")
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "--force" in err


# -- the shipped classifiers --------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "minimum", "real_minimum"), [("mnist", 0.993, 0.98), ("fashion-mnist", 0.91, 0.88)])
def test_shipped_classifier(name: str, minimum: float, real_minimum: float) -> None:
    path = shipped_weights_dir() / f"{name}-classifier.safetensors"
    if not path.is_file():
        pytest.skip(f"no shipped {name} classifier")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["test_accuracy"] >= minimum
    assert path.stat().st_size < 2_000_000
    if not (SHARED_DATA / name).is_dir():
        pytest.skip(f"no real {name} data in {SHARED_DATA}")
    from diffusionlab.data import load_split, to_float

    test = load_split(name, "test", SHARED_DATA / name)
    clf = load_classifier(name)
    assert conditional_accuracy(clf, to_float(test.images[:500]), test.labels[:500]) >= real_minimum


def test_ordered_pairs() -> None:
    from diffusionlab.evaluation.pairs import ordered_pairs

    pairs = ordered_pairs(10)
    assert len(pairs) == 90 == len(set(pairs)) and (0, 0) not in pairs and (3, 8) in pairs and (8, 3) in pairs


def test_evaluate_model_flow(tiny_setup, tmp_path: Path) -> None:
    from diffusionlab.backends import load_model
    from diffusionlab.data import load_split
    from diffusionlab.evaluation.evaluate import evaluate_model

    data_dir, clf_path = tiny_setup
    model = load_model(make_checkpoint(tmp_path / "flow_run", objective="flow"), "cpu")
    test, train = load_split("mnist", "test", data_dir), load_split("mnist", "train", data_dir)
    scores = evaluate_model(model, load_classifier(clf_path), 1, 3.0, 2, 0, test, train, progress=False)
    assert scores["sampler"] == "flow-euler" and scores["n_samples"] == 10 and scores["n_train_subset"] == 10
    assert math.isfinite(scores["frechet_distance"])


def test_evaluate_cli_anagram_and_hybrid(
    tiny_setup, tiny_class_model: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    import diffusionlab.edits
    import diffusionlab.evaluation.pairs

    data_dir, clf = tiny_setup
    # every ordered pair and the course's 30 strided steps are too slow for a unit test: 3 pairs, 3 steps
    monkeypatch.setattr(diffusionlab.evaluation.pairs, "ordered_pairs", lambda k: [(1, 6), (6, 1), (3, 4)])
    monkeypatch.setattr(diffusionlab.edits, "default_timesteps", lambda model: [299, 150, 0])
    out = tmp_path / "s.json"
    args = ["evaluate", "--model", str(tiny_class_model), "--classifier", str(clf), "--data-dir", str(data_dir)]
    args += ["-n", "1", "--steps", "2", "--anagram", "rot180", "--hybrid", "--out", str(out), "--device", "cpu"]
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0 and "anagram success (rot180, 3 pairs)" in stdout
    scores = json.loads(out.read_text())
    assert scores["anagram"]["n_pairs"] == 3 and set(scores["anagram"]["per_pair"]) == {"1->6", "6->1", "3->4"}
    assert 0.0 <= scores["anagram"]["anagram_success"] <= scores["anagram"]["anagram_first"]
    assert 0.0 <= scores["hybrid"]["hybrid_success"] <= 1.0


def test_package_reexports_its_rooms() -> None:
    """Callers that import from diffusionlab.evaluation keep working; the CLI text lives in the command."""
    import diffusionlab.evaluation as ev
    from diffusionlab.evaluation import classifier, denoiser, evaluate, metrics, pairs

    rooms = (classifier, denoiser, evaluate, metrics, pairs)
    for name in ev.__all__:
        assert any(getattr(room, name, None) is getattr(ev, name) for room in rooms), name
    assert not hasattr(ev, "format_scores")
