"""Shared fixtures: tiny IDX data sets and tiny random checkpoints, made by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffusionlab.data import write_idx
from diffusionlab.model_files import WEIGHTS_NAME, save_checkpoint
from diffusionlab.networks.unet import UNet
from diffusionlab.training import model_config, recipe

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_collection_modifyitems(items):
    """A browser test is a slow one too: `-m "not slow"` starts no Chromium."""
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)


def make_idx_dir(directory: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """Four gzip IDX files of random 28x28 'digits' (a bright blob whose position encodes the label)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, lab in enumerate(labels):
            r, c = 4 + 2 * (lab // 5) * 5, 4 + 4 * (lab % 5)
            images[i, r : r + 8, c : c + 6] = 255
        write_idx(directory / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{split}-labels-idx1-ubyte.gz", labels)
    return directory


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return make_idx_dir(tmp_path / "data")


def make_checkpoint(
    run_dir: Path, kind: str = "class", objective: str = "ddpm", hidden: int = 8, num_steps: int = 300, seed: int = 0
) -> Path:
    """A random (untrained) checkpoint of our format in run_dir; returns run_dir."""
    config = recipe(kind, objective, hidden=hidden, num_steps=num_steps)
    torch.manual_seed(seed)
    net = UNet(config.unet_config())
    save_checkpoint(run_dir / WEIGHTS_NAME, net.state_dict(), model_config(config, {"command": "test"}))
    return run_dir


@pytest.fixture
def tiny_class_model(tmp_path: Path) -> Path:
    """Run directory of a random class-conditioned DDPM (hidden 8, T = 300)."""
    return make_checkpoint(tmp_path / "class_run")


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """A runs directory holding one tiny class model, runs/tiny (the web UI's tests)."""
    runs = tmp_path_factory.mktemp("runs")
    make_checkpoint(runs / "tiny", hidden=8)
    return runs
