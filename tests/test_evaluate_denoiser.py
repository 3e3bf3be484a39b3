"""`evaluate` on the single-step denoisers (B1): the test MSE at sigma and the pure-noise denoiser's distance to
the mean training digit, checked against their formulas on models whose output is known, and the CLI's errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_checkpoint, make_idx_dir
from test_evaluation import run_cli

from diffusionlab.backends import load_model
from diffusionlab.data import load_split, to_float
from diffusionlab.errors import DiffusionLabError
from diffusionlab.evaluation.denoiser import denoiser_scores, pure_noise_scores


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return make_idx_dir(tmp_path / "data", n_train=40, n_test=24)


def _denoiser(tmp_path: Path, name: str, output, pure_noise: bool = False):
    """A tiny denoiser checkpoint whose network is replaced by `output(z)`: a model with a known answer."""
    m = load_model(str(make_checkpoint(tmp_path / name, "denoiser", hidden=4)), device="cpu")
    m.config["pure_noise"] = pure_noise
    m.net = output
    return m


def test_test_mse_is_the_mean_square_error_over_pixels(tmp_path: Path, data_dir: Path) -> None:
    test = load_split("mnist", "test", data_dir).images
    x = to_float(test[:10])
    zeros = denoiser_scores(_denoiser(tmp_path, "z", torch.zeros_like), test[:10], progress=False)
    assert zeros["n_images"] == 10 and zeros["sigma"] == 0.5  # the level it was trained at
    assert zeros["test_mse"] == pytest.approx(float(x.pow(2).mean()), rel=1e-6)
    # doing nothing scores the noise itself: about sigma^2 (24 images x 784 pixels of eps^2)
    identity = denoiser_scores(_denoiser(tmp_path, "i", lambda z: z), test, sigma=0.2, progress=False)
    assert identity["n_images"] == 24 and identity["test_mse"] == identity["noisy_input_mse"]
    assert identity["test_mse"] == pytest.approx(0.04, rel=0.05)
    # the draws come from the seed: same seed, same score; a perfect denoiser scores 0
    again = denoiser_scores(_denoiser(tmp_path, "i2", lambda z: z), test, sigma=0.2, progress=False)
    assert again["test_mse"] == identity["test_mse"]
    with pytest.raises(DiffusionLabError, match="--sigma must be a finite number"):
        denoiser_scores(_denoiser(tmp_path, "n", lambda z: z), test, sigma=float("nan"), progress=False)


def test_pure_noise_scores_measure_the_distance_to_the_mean_digit(tmp_path: Path, data_dir: Path) -> None:
    train = load_split("mnist", "train", data_dir).images
    data = to_float(train)
    mean = data.mean(0, keepdim=True)
    at_mean = pure_noise_scores(_denoiser(tmp_path, "m", lambda z: mean.expand_as(z), True), train, n=16)
    assert at_mean["mse_to_mean_digit"] == pytest.approx(0.0, abs=1e-12) and at_mean["std_across_z"] == 0.0
    assert at_mean["data_variance_around_mean"] == pytest.approx(float((data - mean).pow(2).mean()), rel=1e-6)
    black = pure_noise_scores(_denoiser(tmp_path, "b", torch.zeros_like, True), train, n=16)
    assert black["mse_to_mean_digit"] == pytest.approx(float(mean.pow(2).mean()), rel=1e-6)
    # each score belongs to its own kind of denoiser
    with pytest.raises(DiffusionLabError, match="trained on noisy digits"):
        pure_noise_scores(_denoiser(tmp_path, "d", torch.zeros_like), train)
    with pytest.raises(DiffusionLabError, match="trained on pure noise"):
        denoiser_scores(_denoiser(tmp_path, "p", torch.zeros_like, True), train)


def test_evaluate_cli_scores_a_denoiser(tmp_path: Path, data_dir: Path, capsys, monkeypatch) -> None:
    run = make_checkpoint(tmp_path / "run", "denoiser", hidden=4)
    out = tmp_path / "d.json"
    args = ["evaluate", "--model", str(run), "--data-dir", str(data_dir), "-n", "8", "--sigma", "0.3"]
    code, stdout, _ = run_cli([*args, "--out", str(out), "--device", "cpu"], capsys)
    assert code == 0 and "test MSE of D(x + sigma eps)" in stdout and "MSE of the noisy input" in stdout
    scores = json.loads(out.read_text())
    assert scores["n_images"] == 8 and scores["sigma"] == 0.3 and scores["test_mse"] > 0
    assert scores["command"] == f"diffusionlab evaluate --model {run} -n 8 --sigma 0.3 --seed 0"

    def one_line_error(extra: list[str], expect: str) -> None:
        code, _, err = run_cli([*extra, "--out", str(tmp_path / "x.json")], capsys)
        assert code == 2 and expect in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "x.json").exists()

    one_line_error([*args, "--anagram", "rot180"], "--anagram scores class-conditioned samples")
    one_line_error([*args, "--steps", "3"], "--steps scores class-conditioned samples")
    class_run = make_checkpoint(tmp_path / "class", hidden=4)
    one_line_error(["evaluate", "--model", str(class_run), "--sigma", "0.5"], "--sigma scores a single-step denoiser")
    # without a data set: the shipped sample of the test set, said so; the pure-noise one needs the train split
    monkeypatch.setenv("DIFFUSIONLAB_CACHE", str(tmp_path / "empty-cache"))
    code, stdout, _ = run_cli(["evaluate", "--model", str(run), "-n", "3", "--out", str(tmp_path / "s.json")], capsys)
    assert code == 0 and "test images: the shipped sample of 100 MNIST test digits" in stdout
    assert json.loads((tmp_path / "s.json").read_text())["n_images"] == 3
    pure = make_checkpoint(tmp_path / "pure", "denoiser", hidden=4)
    cfg = json.loads((pure / "model.json").read_text())
    (pure / "model.json").write_text(json.dumps({**cfg, "pure_noise": True}))
    one_line_error(["evaluate", "--model", str(pure)], "needs the mnist train split: pass --data-dir")
    one_line_error(["evaluate", "--model", str(pure), "--sigma", "0.5"], "trained on pure noise, it takes no noise")
    args = ["evaluate", "--model", str(pure), "--data-dir", str(data_dir), "-n", "4", "--out", str(tmp_path / "p.json")]
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0 and "MSE(D(z), mean training digit)" in stdout
