"""--lr-schedule: the course's per-epoch decay, unchanged, and the cosine schedule for short runs, step by step
as its formula says, exact across a resume."""

from __future__ import annotations

import math

import pytest
from test_training import losses, run_cli, tiny

from diffusionlab.data import load_split
from diffusionlab.errors import DiffusionLabError
from diffusionlab.training import open_run, recipe
from diffusionlab.training.config import COSINE_WARMUP, cosine_lr
from diffusionlab.training.losslog import read_log_rows


def lrs(run_dir) -> list[float]:
    return [r["lr"] for r in read_log_rows(run_dir / "loss.csv")]


def test_cosine_lr_warms_up_linearly_then_follows_half_a_cosine_to_zero():
    total, lr = 200, 2e-3
    warmup = round(COSINE_WARMUP * total)  # 10 steps
    assert [cosine_lr(lr, s, total) for s in range(warmup)] == pytest.approx([lr * (s + 1) / warmup for s in range(10)])
    assert cosine_lr(lr, warmup, total) == pytest.approx(lr)
    middle = warmup + (total - warmup) // 2
    assert cosine_lr(lr, middle, total) == pytest.approx(lr / 2)
    later = [cosine_lr(lr, s, total) for s in range(warmup, total)]
    assert all(a > b for a, b in zip(later, later[1:], strict=False))
    assert cosine_lr(lr, total - 1, total) == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * 189 / 190)))
    assert cosine_lr(lr, 0, 1) == lr  # a one-step run: its warm-up is that step


def test_a_cosine_run_uses_the_formula_at_every_step(tmp_path, tiny_data):
    split = load_split("mnist", "train", tiny_data)
    config = tiny(lr_schedule="cosine", lr=1e-2)
    open_run(config, tmp_path / "r", resume=False, progress=False).run(split)
    total = len(lrs(tmp_path / "r"))
    assert total == 8  # 2 epochs of 4 batches
    assert lrs(tmp_path / "r") == pytest.approx([cosine_lr(1e-2, s, total) for s in range(total)], rel=1e-5)


def test_the_course_schedule_decays_once_per_epoch(tmp_path, tiny_data):
    split = load_split("mnist", "train", tiny_data)
    config = tiny()
    open_run(config, tmp_path / "r", resume=False, progress=False).run(split)
    assert lrs(tmp_path / "r") == pytest.approx([1e-3] * 4 + [1e-3 * config.lr_gamma] * 4, rel=1e-5)


def test_a_resumed_cosine_run_continues_it_exactly(tmp_path, tiny_data):
    split = load_split("mnist", "train", tiny_data)
    open_run(tiny(lr_schedule="cosine"), tmp_path / "full", resume=False, progress=False).run(split)

    def interrupt(event):
        raise KeyboardInterrupt

    run = open_run(tiny(lr_schedule="cosine"), tmp_path / "run", resume=False, progress=False, on_epoch_end=interrupt)
    with pytest.raises(KeyboardInterrupt):
        run.run(split)
    assert len(lrs(tmp_path / "run")) == 4
    # the command of the resume need not repeat the schedule: the run keeps its own
    open_run(tiny(), tmp_path / "run", resume=True, progress=False).run(split)
    assert losses(tmp_path / "run") == losses(tmp_path / "full")
    assert lrs(tmp_path / "run") == lrs(tmp_path / "full")


def test_an_unknown_schedule_is_a_one_line_error(tmp_path, tiny_data, capsys):
    with pytest.raises(DiffusionLabError, match="unknown --lr-schedule 'linear'; choose course or cosine"):
        recipe("class", lr_schedule="linear")
    code, _, err = run_cli(
        ["train", "class", "--data-dir", str(tiny_data), "--lr-schedule", "step", "--out", str(tmp_path / "r")], capsys
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "unknown --lr-schedule 'step'" in lines[0]
    assert not (tmp_path / "r").exists()
