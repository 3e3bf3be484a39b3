"""The training loop's hooks do what their names say (trainer.py): logging in groups of log_every steps with each
step's epoch, snapshots of an epoch's own end, the sessions and training time a run records, the precision it
reports, and a progress bar that names the epoch (or stays silent)."""

from __future__ import annotations

import json
import time

import pytest
import torch

from diffusionlab import progress
from diffusionlab.data import load_split
from diffusionlab.model_files import load_checkpoint
from diffusionlab.precision import choose_precision
from diffusionlab.training import open_run, recipe
from diffusionlab.training.losslog import StepLosses, read_log_rows


def tiny(**kw):
    """2 epochs of 4 steps on the 64 images of tiny_data."""
    return recipe("class", "ddpm", hidden=8, batch_size=16, epochs=2, num_steps=50, **kw)


@pytest.mark.parametrize(("log_every", "groups"), [(1, [1] * 8), (3, [3, 1, 3, 1])])
def test_losses_leave_the_device_every_log_every_steps_with_their_epoch(
    tmp_path, tiny_data, monkeypatch, log_every, groups
):
    """Pending losses are flushed when log_every of them wait, and at each epoch's end; loss.csv then holds every
    step once, with the epoch it belongs to."""
    flushed, real = [], StepLosses.flush

    def flush(self, *args, **kwargs):
        if self.steps:
            flushed.append(len(self.steps))
        real(self, *args, **kwargs)

    monkeypatch.setattr(StepLosses, "flush", flush)
    open_run(tiny(), tmp_path / "r", resume=False, progress=False, log_every=log_every).run(
        load_split("mnist", "train", tiny_data)
    )
    assert flushed == groups
    rows = read_log_rows(tmp_path / "r" / "loss.csv")
    assert [(r["step"], r["epoch"]) for r in rows] == [(s, 1 + (s - 1) // 4) for s in range(1, 9)]


def test_a_snapshot_holds_its_epochs_end_when_max_steps_stops_in_the_next(tmp_path, tiny_data):
    """max_steps 6 ends the run inside epoch 2: the partial epoch is checkpointed (step 6), but epoch 1's snapshot
    keeps the weights of step 4."""
    run = tmp_path / "r"
    open_run(tiny(max_steps=6, snapshot_epochs=(1,)), run, resume=False, progress=False).run(
        load_split("mnist", "train", tiny_data)
    )
    _, snapshot = load_checkpoint(run / "snapshots" / "epoch_1.safetensors")
    _, exported = load_checkpoint(run)
    assert (snapshot["provenance"]["step"], exported["provenance"]["step"]) == (4, 6)
    assert sorted(p.name for p in (run / "snapshots").glob("*.safetensors")) == ["epoch_1.safetensors"]


def test_each_session_records_where_it_started_and_the_time_it_trained(tmp_path, tiny_data):
    """A run stopped at step 6 and resumed to 8: each says where it stopped, the model records two sessions
    (0 -> 6, 6 -> 8) and the training time, which is counted and no more than the time the two runs took."""
    split, run = load_split("mnist", "train", tiny_data), tmp_path / "r"
    start = time.perf_counter()
    stopped = open_run(tiny(max_steps=6), run, resume=False, progress=False).run(split)
    ended = open_run(tiny(), run, resume=True, progress=False).run(split)
    elapsed = time.perf_counter() - start
    where = ("epoch", "step", "batch_in_epoch", "batches_per_epoch")
    assert [tuple(s[k] for k in where) for s in (stopped, ended)] == [(1, 6, 2, 4), (2, 8, 0, 4)]
    provenance = json.loads((run / "model.json").read_text())["provenance"]
    assert [(s["from_step"], s["to_step"]) for s in provenance["history"]] == [(0, 6), (6, 8)]
    assert 0 < provenance["train_seconds"] <= elapsed


def test_the_precision_reported_is_the_fast_paths_choice_or_the_plain_courses(tmp_path):
    fast = open_run(tiny(), tmp_path / "fast", resume=False, progress=False, precision="auto")
    assert fast.session["precision_reason"] == choose_precision(torch.device("cpu"), "auto").reason
    fast.lock.release()
    plain = open_run(tiny(), tmp_path / "plain", resume=False, progress=False, precision="auto", fast=False)
    assert (plain.session["precision"], plain.session["precision_reason"]) == (
        "fp32",
        "--plain: eager fp32, as the course",
    )
    plain.lock.release()


def test_the_progress_bar_names_each_epoch_and_progress_false_is_silent(tmp_path, tiny_data, monkeypatch, capsys):
    monkeypatch.setitem(progress._state, "enabled", True)  # bars on, whatever DIFFUSIONLAB_PROGRESS says
    split = load_split("mnist", "train", tiny_data)
    open_run(tiny(), tmp_path / "quiet", resume=False, progress=False).run(split)
    assert "epoch" not in capsys.readouterr().err
    open_run(tiny(), tmp_path / "shown", resume=False, progress=True).run(split)
    err = capsys.readouterr().err
    assert "train class epoch 1/2" in err and "train class epoch 2/2" in err and "epoch 0/2" not in err
