"""Crash tests of training, with real processes: SIGKILL between checkpoints and inside every checkpoint write,
SIGTERM and Ctrl-C mid-epoch. Each case is resumed with --resume and compared with an uninterrupted run: the
loss.csv rows are identical (a max loss difference of exactly 0.0) and every tensor of the final resume state
(raw and EMA weights, optimizer, RNG, permutation) is bit-identical; no temp or half-written file is left.

The kills are deterministic: tests/crash_runner.py runs the CLI with os.replace wrapped, and dies at a chosen
replace (temp file empty, half written, complete, or just replaced) or after a chosen step. Run with -s to see
the work each SIGKILL lost. The run: 256 images, batch 16 (16 steps an epoch), 3 epochs, --save-every 3.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_idx_dir
from safetensors import safe_open
from safetensors.torch import load_file

from diffusionlab.cli import main
from diffusionlab.model_files import load_checkpoint
from diffusionlab.training.losslog import read_log_rows
from diffusionlab.training.state import read_state

RUNNER = Path(__file__).with_name("crash_runner.py")
pytestmark = pytest.mark.slow  # each case trains in a subprocess, kills it and resumes
STEPS_PER_EPOCH, EPOCHS, SAVE_EVERY = 16, 3, 3
TOTAL = STEPS_PER_EPOCH * EPOCHS
ARGS = ["train", "class", "--hidden", "8", "--batch-size", "16", "--num-steps", "50", "--epochs", str(EPOCHS)]
ARGS += ["--no-figures", "--seed", "0", "--threads", "1"]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """The data and an uninterrupted run, with a copy of its resume state after every save (states/step_S)."""
    root = tmp_path_factory.mktemp("crash")
    env = {"data": make_idx_dir(root / "data", n_train=256), "root": root, "states": root / "states"}
    env["states"].mkdir()
    proc = train(env, root / "base", "none", resume=False, KEEP_STATES=str(env["states"]))
    assert proc.returncode == 0, proc.stderr[-2000:]
    env["run"] = root / "base"
    return env


def train(env: dict, run: Path, point: str, resume: bool = True, save_every: int | None = SAVE_EVERY, **extra):
    """One training process through the crash runner; KILL_RECORD gets the step it died in."""
    args = [*ARGS, "--data-dir", str(env["data"]), "--out", str(run)]
    args += ["--resume"] if resume else []
    args += ["--save-every", str(save_every)] if save_every else []
    proc_env = {**os.environ, "KILL_RECORD": str(run.parent / f"{run.name}.kill.json"), **extra}
    cmd = [sys.executable, str(RUNNER), point, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=proc_env, timeout=300)


def saved_step(run: Path) -> int:
    path = run / "train_state.safetensors"
    return read_state(path).meta["step"] if path.is_file() else 0


def crash(env: dict, run: Path, point: str, resume: bool = True, save_every: int | None = SAVE_EVERY) -> int:
    """Run until the SIGKILL at point; check what is left against the uninterrupted run; the steps lost."""
    proc = train(env, run, point, resume, save_every)
    assert proc.returncode == -signal.SIGKILL, f"{point}: no kill (rc {proc.returncode}) {proc.stderr[-1500:]}"
    killed = json.loads((run.parent / f"{run.name}.kill.json").read_text())["step"]
    step = saved_step(run)
    lost = max(killed - step, 0)  # killed = 0: died while resuming, before its first step
    print(f"SIGKILL at {point:38s} in step {killed:2d}: state at step {step:2d}, lost {lost} steps")
    if step:
        assert_same_state(run, env["states"] / f"step_{step}.safetensors")
        assert_rows_match(run, env["run"], up_to=step, at_least=step)
    return lost


def assert_same_state(run: Path, reference: Path) -> None:
    """Every tensor of the run's resume state equals the reference's (weights, EMA, Adam, RNG, permutation)."""
    a, b = load_file(run / "train_state.safetensors"), load_file(reference)
    assert a.keys() == b.keys()
    assert all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].equal(b[k]) for k in a)
    ma, mb = read_state(run / "train_state.safetensors").meta, read_state(reference).meta
    for key in ("epoch", "step", "batch_in_epoch", "param_groups", "lr_scheduler"):
        assert ma[key] == mb[key], key


def assert_rows_match(run: Path, base_run: Path, up_to: int = TOTAL, at_least: int = TOTAL) -> float:
    """The whole rows of the run's loss.csv up to a step equal the uninterrupted run's; the max loss difference."""
    rows = [r for r in read_log_rows(run / "loss.csv") if r["step"] <= up_to]
    ref = {r["step"]: r for r in read_log_rows(base_run / "loss.csv")}
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) >= at_least
    assert rows == [ref[r["step"]] for r in rows]
    return max((abs(r["loss"] - ref[r["step"]]["loss"]) for r in rows), default=0.0)


def assert_finished_like_base(run: Path, env: dict) -> None:
    """The resumed run ends as the uninterrupted one, with no temp file and no half-written file."""
    assert assert_rows_match(run, env["run"]) == 0.0
    assert_same_state(run, env["run"] / "train_state.safetensors")
    weights, config = load_checkpoint(run)
    ref_weights, ref_config = load_checkpoint(env["run"])
    assert all(weights[k].equal(ref_weights[k]) for k in ref_weights)  # the exported (EMA) weights
    assert config["provenance"]["step"] == TOTAL
    assert_no_temp_or_torn_files(run)


def assert_no_temp_or_torn_files(run: Path) -> None:
    assert not list(run.rglob("*.tmp")), "temp files left"
    for path in run.rglob("*.safetensors"):  # each one complete (safetensors checks its sizes)
        with safe_open(str(path), "pt") as f:
            assert all(f.get_tensor(k) is not None for k in f.keys())
    for path in run.rglob("*.json"):
        json.loads(path.read_text())
    lines = (run / "loss.csv").read_text().splitlines()
    assert lines[0] == "step,epoch,loss,lr" and len(lines) == len(read_log_rows(run / "loss.csv")) + 1


def test_sigkill_between_checkpoints_then_resume_is_exact(base, tmp_path):
    run, lost = tmp_path / "run", []
    lost.append(crash(base, run, "step:5", resume=False))  # inside epoch 1, 2 steps after a save
    lost.append(crash(base, run, "step:17"))  # 1 step after the end-of-epoch save
    # a loss.csv ending in a partial row, as a kill in the middle of its append leaves
    with (run / "loss.csv").open("a") as f:
        f.write(f"{saved_step(run) + 1},2,0.61")
    lost.append(crash(base, run, "step:47"))
    assert train(base, run, "none").returncode == 0
    assert_finished_like_base(run, base)
    assert max(lost) <= SAVE_EVERY


def test_sigkill_without_save_every_loses_at_most_an_epoch(base, tmp_path):
    run = tmp_path / "run"
    lost = crash(base, run, "step:30", resume=False, save_every=None)  # 14 steps into epoch 2
    assert lost == 30 - STEPS_PER_EPOCH < STEPS_PER_EPOCH
    assert train(base, run, "none", save_every=None).returncode == 0
    assert_finished_like_base(run, base)


# Kill offsets inside the writes of a checkpoint: the resume state, the exported weights and their JSON, and
# the rewrite of loss.csv that a resume makes (step 0: before the first step of that process). In save order.
WRITE_KILLS = [
    ("train_state.safetensors@6:empty", 3),
    ("train_state.safetensors@9:half", 3),
    ("train_state.safetensors@12:full", 3),
    ("train_state.safetensors@15:after", 0),
    ("model.safetensors@16:half", 0),  # the end of epoch 1
    ("model.json@18:full", 0),  # the exports now disagree (weights of step 18, JSON of step 16)
    ("model.safetensors@21:after", 0),
    ("loss.csv@0:half", 0),  # inside the next resume, while it drops the rows after the state's step
    ("train_state.safetensors@32:half", 2),  # the end of epoch 2
    ("train_state.safetensors@48:full", 3),  # the last save of the run
]


def test_sigkill_inside_checkpoint_writes_then_resume_is_exact(base, tmp_path):
    """One run killed at each offset in turn (each process resumes the previous crash), then resumed to the end."""
    run = tmp_path / "run"
    for i, (point, expected_loss) in enumerate(WRITE_KILLS):
        temps_before = set(run.rglob("*.tmp")) if run.exists() else set()
        assert crash(base, run, point, resume=i > 0) == expected_loss, point
        if not point.endswith(":after"):  # the temp file of the cut write is there until the next start
            assert set(run.rglob("*.tmp")) - temps_before
    assert train(base, run, "none").returncode == 0
    assert_finished_like_base(run, base)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_epoch_stops_saves_and_resume_is_exact(base, tmp_path, signum):
    """One signal while step 7 is computed (--save-every 5, so no periodic save writes step 7, and 7 is inside
    the first 16-step epoch): the run finishes that step, saves there and exits 130; resume is exact. The signal
    is sent at a chosen step, not after a sleep, so a faster CPU cannot carry the run to the epoch's end."""
    run = tmp_path / "run"
    proc = train(base, run, f"{signum.name}@7", resume=False, save_every=5)
    step = saved_step(run)
    assert proc.returncode == 130 and "saved the run at step 7" in proc.stderr, proc.stderr[-1500:]
    assert step == 7 and read_state(run / "train_state.safetensors").meta["batch_in_epoch"] == 7
    assert_rows_match(run, base["run"], up_to=step, at_least=step)
    assert_no_temp_or_torn_files(run)
    assert train(base, run, "none").returncode == 0
    assert_finished_like_base(run, base)


def test_a_second_signal_mid_step_stops_without_saving(base, tmp_path):
    run = tmp_path / "run"
    proc = train(base, run, "twice@5", resume=False)  # inside step 5, after its noise is drawn
    assert proc.returncode == 130
    assert saved_step(run) == 3 and "not saved; the last checkpoint (step 3) is intact" in proc.stderr
    assert train(base, run, "none").returncode == 0
    assert_finished_like_base(run, base)


def test_a_second_ctrl_c_inside_the_stops_save_says_so_and_resume_is_exact(base, tmp_path):
    """Ctrl-C during step 5, and again while the stop saves step 5: that save is cut, one line says where
    --resume continues (the periodic save at step 3), and it continues exactly."""
    run = tmp_path / "run"
    proc = train(base, run, "again@5", resume=False)
    again = [line for line in proc.stderr.splitlines() if "again" in line]
    assert proc.returncode == 130 and again == [
        "interrupted again: stopping now; the last checkpoint (step 3) is intact, --resume continues from it"
    ]
    assert saved_step(run) == 3 and not list(run.rglob("*.tmp"))
    assert train(base, run, "none").returncode == 0
    assert_finished_like_base(run, base)


def test_sigkill_inside_an_epoch_snapshot_then_resume_writes_it(base, tmp_path):
    run = tmp_path / "run"
    crash(base, run, "snapshots/epoch_1.safetensors@16:half", resume=False)
    assert train(base, run, "none").returncode == 0
    assert_finished_like_base(run, base)
    for name in ("snapshots/epoch_1.safetensors", "snapshots/raw/epoch_1.safetensors"):
        assert (run / name).is_file(), f"{name} missing"
        assert load_file(run / name).keys() == load_file(base["run"] / name).keys()


def test_sigkill_before_the_first_checkpoint_can_be_restarted(base, tmp_path):
    run = tmp_path / "run"
    assert crash(base, run, "train_state.safetensors@3:full", resume=False) == 3
    proc = train(base, run, "none")
    if proc.returncode == 2:  # or the folder is accepted for a new start
        proc = train(base, run, "none", resume=False)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert_finished_like_base(run, base)


def corrupt_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8:16] = b"\xff" * 8  # the JSON header starts with garbage
    path.write_bytes(bytes(data))


def flip_a_data_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x10  # in the tensors: safetensors reads it, the state's CRC-32 does not match
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), id="truncated"),
        pytest.param(lambda p: p.write_bytes(b""), id="empty"),
        pytest.param(lambda p: p.write_bytes(b"\x00" * 8 + b"not json"), id="bad-header-length"),
        pytest.param(corrupt_header, id="garbage-header"),
        pytest.param(flip_a_data_bit, id="flipped-data-bit"),
        pytest.param(lambda p: p.write_text("step,epoch\n"), id="text"),
    ],
)
def test_a_corrupt_state_is_a_one_line_error(base, tmp_path, capsys, corrupt):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("train_state.safetensors", "model.safetensors", "model.json", "loss.csv"):
        (run / name).write_bytes((base["run"] / name).read_bytes())
    corrupt(run / "train_state.safetensors")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    args = [*ARGS[:-2], "--data-dir", str(base["data"]), "--out", str(run), "--resume"]  # no --threads in-process
    with pytest.raises(SystemExit) as e:
        main(args)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error:") and "train_state" in err[0]
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing of the run changed
