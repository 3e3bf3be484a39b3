"""The fast path (channels_last, bf16 autocast forced, deferred loss logging) against the plain path on CPU: bf16
autocast runs on any x86 CPU (emulated where not native, slowly), so every precision is checked on every machine."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import make_checkpoint

from diffusionlab.course_model import CourseModel
from diffusionlab.data import load_split
from diffusionlab.fastpath import FastNet, accelerate
from diffusionlab.sampling import generate
from diffusionlab.schedule import spaced_timesteps
from diffusionlab.training import open_run, recipe


def tiny(**kw):
    return recipe("class", "ddpm", hidden=8, batch_size=16, epochs=1, num_steps=50, max_steps=3, **kw)


def losses(run_dir):
    with (run_dir / "loss.csv").open() as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]


def train(tmp_path, name, split, **kw):
    open_run(tiny(), tmp_path / name, resume=False, progress=False, **kw).run(split)
    return losses(tmp_path / name)


@pytest.fixture
def split(tiny_data):
    return load_split("mnist", "train", tiny_data)


def test_fast_fp32_training_matches_the_plain_path(tmp_path, split):
    torch.set_num_threads(1)
    plain = train(tmp_path, "plain", split, fast=False)
    fast = train(tmp_path, "fast", split, fast=True, precision="fp32")
    assert [s for s, _ in fast] == [s for s, _ in plain] == [1, 2, 3]
    for (_, a), (_, b) in zip(plain, fast, strict=True):
        assert b == pytest.approx(a, rel=1e-5)


def test_fast_bf16_training_is_within_bf16_tolerance(tmp_path, split):
    """docs/precision.md: a bf16 run's losses stay within 3 % of the fp32 run's over its first steps."""
    torch.set_num_threads(1)
    plain = train(tmp_path, "plain", split, fast=False)
    fast = train(tmp_path, "fast", split, fast=True, precision="bf16")
    assert [s for s, _ in fast] == [1, 2, 3]
    for (_, a), (_, b) in zip(plain, fast, strict=True):
        assert b == pytest.approx(a, rel=3e-2)
        assert b != a  # bf16 did run: its rounding shows


def test_deferred_logging_writes_one_row_per_step(tmp_path, split):
    torch.set_num_threads(1)
    every = train(tmp_path, "every", split, log_every=1)
    chunked = train(tmp_path, "chunked", split, log_every=2)
    assert chunked == every  # the same values, the same format, written in chunks


def sample(model, **kw):
    return generate(model, ["3", "7"], 2, 5.0, seed=0, timesteps=spaced_timesteps(300, 8), progress=False, **kw)


def test_fast_sampling_matches_the_plain_path(tmp_path):
    torch.set_num_threads(1)
    run = make_checkpoint(tmp_path / "run")
    plain = sample(CourseModel.from_checkpoint(run))
    fast_model = accelerate(CourseModel.from_checkpoint(run), precision="fp32")
    assert isinstance(fast_model.net, FastNet)
    fast = sample(fast_model)
    assert not fast.is_inference() and fast.is_contiguous()
    assert torch.allclose(fast, plain, atol=1e-4, rtol=0)
    bf16_model = accelerate(CourseModel.from_checkpoint(run), precision="bf16")
    assert bf16_model.net.precision.name == "bf16"
    bf16 = sample(bf16_model)
    assert 0 < (bf16 - plain).abs().mean() < 2e-2 and (bf16 - plain).abs().max() < 0.25
