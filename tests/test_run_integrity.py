"""A training run that is one run (issue 38): one writer per run folder, a checkpoint that proves which run and
which log it belongs to, degenerate settings and file-system limits refused before any work, writes that fail
(a full disk) ending in one line with the last checkpoint intact and --resume exact.

Each case of the corpus is a command that must end in one line `error: ...` with exit status 2 (and, where it says
so, leave the files as they were), or work. The run: 64 images, batch 16 (4 steps an epoch), UNet width 8.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from conftest import make_idx_dir
from safetensors.torch import load_file

from diffusionlab.checks import write_together
from diffusionlab.cli import main
from diffusionlab.model_files import atomic_save_tensors, atomic_write_bytes, load_checkpoint
from diffusionlab.training.losslog import read_log_rows
from diffusionlab.training.runlock import LOCK_NAME, RunLock
from diffusionlab.training.state import read_state, write_state

ARGS = ["train", "class", "--hidden", "8", "--batch-size", "16", "--num-steps", "50", "--no-figures", "--seed", "0"]
TOTAL = 8  # two epochs of 4 steps


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """The data and an uninterrupted run of TOTAL steps (the reference of every resume)."""
    root = tmp_path_factory.mktemp("integrity")
    data = make_idx_dir(root / "data", n_train=64)
    env = {"root": root, "data": data}
    assert cli(env, root / "base", "--epochs", "2")[0] == 0
    env["base"] = root / "base"
    return env


def cli(env: dict, run: Path | str, *extra: str, resume: bool = False) -> tuple[int, list[str], str]:
    """`diffusionlab train` in this process: (exit status, the non-empty lines of stderr, stdout)."""
    args = [*ARGS, "--data-dir", str(env["data"]), "--out", str(run), *extra] + (["--resume"] if resume else [])
    return run_main(args)


def run_main(args: list[str]) -> tuple[int, list[str], str]:
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        try:
            main(args)
            code = 0
        except SystemExit as e:
            code = e.code
    lines = [line for line in err.getvalue().replace("\r", "\n").splitlines() if line.strip()]
    lines = [line for line in lines if "step/s" not in line and "?step" not in line]  # less the progress bar
    return code, lines, out.getvalue()


def refused(result: tuple[int, list[str], str], *words: str) -> str:
    code, lines, _ = result
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, lines)
    assert all(word in lines[0] for word in words), lines[0]
    return lines[0]


def snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}  # the lock file too: gone after


def assert_same_as_base(run: Path, env: dict, up_to: int = TOTAL) -> None:
    """loss.csv and every tensor of the resume state equal the uninterrupted run's (exact)."""
    rows = read_log_rows(run / "loss.csv")
    assert rows == [r for r in read_log_rows(env["base"] / "loss.csv") if r["step"] <= up_to]
    assert [r["step"] for r in rows] == list(range(1, up_to + 1))
    if up_to == TOTAL:
        a, b = load_file(run / "train_state.safetensors"), load_file(env["base"] / "train_state.safetensors")
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
        assert not list(run.rglob("*.tmp")) and not list(run.rglob("*.partial"))


def partial_run(env: dict, run: Path, steps: int = 6, *extra: str) -> Path:
    """The reference run stopped after `steps` (inside epoch 2), to be resumed."""
    assert cli(env, run, "--epochs", "2", "--max-steps", str(steps), *extra)[0] == 0
    return run


# -- degenerate settings: refused before any work, nothing made --------------------------------------------------
DEGENERATE = {
    "epochs-0": (["--epochs", "0"], "--epochs must be a whole number of at least 1, got 0"),
    "epochs-negative": (["--epochs", "-3"], "--epochs must be a whole number of at least 1, got -3"),
    "max-steps-0": (["--max-steps", "0"], "--max-steps must be a whole number of at least 1, got 0"),
    "max-steps-negative": (["--max-steps", "-1"], "--max-steps must be a whole number of at least 1, got -1"),
    "batch-size-0": (["--batch-size", "0"], "--batch-size must be a whole number of at least 1, got 0"),
    "batch-above-data": (["--batch-size", "65"], "--batch-size 65 is larger than the training data (64 images)"),
    "batch-huge": (["--batch-size", str(10**12)], "is larger than the training data (64 images); give at most 64"),
    "num-steps-0": (["--num-steps", "0"], "--num-steps must be a whole number of at least 1"),
    "num-steps-huge": (["--num-steps", "2000000000"], "at least 1 and at most 100,000, got 2000000000"),
    "hidden-0": (["--hidden", "0"], "--hidden must be a whole number of at least 1"),
    "hidden-huge": (["--hidden", "100000"], "--hidden must be a whole number of at least 1 and at most 2,048"),
}


@pytest.mark.parametrize("case", DEGENERATE, ids=list(DEGENERATE))
def test_degenerate_settings_are_refused_before_any_work(env, tmp_path, case):
    args, message = DEGENERATE[case]
    refused(cli(env, tmp_path / "run", *args), message)
    assert not (tmp_path / "run").exists()  # not even the folder (the lock's folder is removed again)


def test_a_run_at_its_end_has_nothing_to_train(env, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(env["base"], run)
    before = snapshot(run)
    refused(cli(env, run, "--epochs", "2", resume=True), "already at step 8", "nothing to train")
    refused(cli(env, run, "--max-steps", "5", resume=True), "the end that --max-steps 5 gives")
    assert snapshot(run) == before


def test_a_diverging_run_stops_before_saving_nan_weights(env, tmp_path):
    run = tmp_path / "run"
    message = refused(cli(env, run, "--epochs", "2", "--lr", "1e30", "--save-every", "1"), "the run diverged")
    step = int(message.split("at step ")[1].split(":")[0])
    assert read_state(run / "train_state.safetensors").meta["step"] == step - 1  # the NaN step is not saved


# -- file-system limits ------------------------------------------------------------------------------------------
def test_out_names_beyond_the_file_system_limit_are_one_line(env, tmp_path):
    refused(cli(env, tmp_path / ("a" * 300)), "300 bytes long", "at most 255")
    refused(cli(env, tmp_path / ("b" * 256) / "run"), "256 bytes long")
    refused(run_main(["sample", "--out", str(tmp_path / ("c" * 300 + ".png"))]), "304 bytes long")
    refused(run_main(["evaluate", "--out", str(tmp_path / ("d" * 300 + ".json"))]), "305 bytes long")
    assert list(tmp_path.iterdir()) == []


def test_a_legal_250_character_out_name_works(env, tmp_path):
    run = tmp_path / ("r" * 250)
    assert cli(env, run, "--epochs", "1", "--max-steps", "2")[0] == 0
    assert (run / "model.safetensors").is_file() and not list(run.glob(".*.tmp"))


def test_temp_names_stay_within_the_name_limit(tmp_path):
    from PIL import Image

    from diffusionlab.figures.grid import save_png

    long = tmp_path / ("x" * 250)
    atomic_write_bytes(long.with_suffix(".bin"), b"data")
    atomic_save_tensors(long.with_suffix(".st"), {})
    write_together({long.with_suffix(".png"): lambda p: save_png(Image.new("L", (2, 2)), p)})
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".bin", ".png", ".st"]


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_a_symlink_to_nowhere_as_out_is_refused_not_replaced(env, tmp_path, kind):
    link = tmp_path / "link"
    os.symlink(tmp_path / "missing" if kind == "dangling" else link, link)
    target = os.readlink(link)
    refused(cli(env, link, "--epochs", "1"), "is a symbolic link", "missing or a loop")
    refused(cli(env, link / "run", "--epochs", "1"), "is a symbolic link")
    for command in (["sample", "--force"], ["evaluate", "--force"]):
        refused(run_main([*command, "--out", str(link)]), "is a symbolic link")
    assert link.is_symlink() and os.readlink(link) == target and sorted(tmp_path.iterdir()) == [link]


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_saving_is_one_line_and_resume_is_exact(env, tmp_path, monkeypatch):
    """The state write at step 4 fails (the save at 3 went through): the checkpoint of step 3 stays intact."""
    import diffusionlab.model_files as checkpoint

    real, calls = checkpoint.save_file, {"n": 0}

    def save_file(tensors, path, metadata=None):
        calls["n"] += 1
        if calls["n"] == 3:  # 1: state at 3, 2: model at 3, 3: state at 4 (the end of epoch 1)
            enospc()
        real(tensors, path, metadata=metadata)

    run = tmp_path / "run"
    monkeypatch.setattr(checkpoint, "save_file", save_file)
    message = refused(cli(env, run, "--epochs", "2", "--save-every", "3"), "No space left on device")
    assert "the last checkpoint (step 3) is intact, --resume continues from it" in message
    monkeypatch.setattr(checkpoint, "save_file", real)
    assert read_state(run / "train_state.safetensors").meta["step"] == 3 and not list(run.glob(".*.tmp"))
    assert cli(env, run, "--epochs", "2", "--save-every", "3", resume=True)[0] == 0
    assert_same_as_base(run, env)


def test_disk_full_as_safetensors_says_it_is_one_line_too(env, tmp_path, monkeypatch):
    """A full disk inside safetensors is a SafetensorError, not an OSError."""
    from safetensors import SafetensorError

    import diffusionlab.model_files as checkpoint

    def save_file(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    message = refused(cli(env, tmp_path / "run", "--epochs", "1"), "No space left on device (os error 28)")
    assert "no checkpoint was written yet" in message


def test_disk_full_in_the_loss_log_is_one_line_and_resume_is_exact(env, tmp_path, monkeypatch):
    from diffusionlab.training.losslog import LossLog

    run, real, calls = tmp_path / "run", LossLog.flush, {"n": 0}

    def flush(self):
        calls["n"] += 1
        if calls["n"] == 4 and self.rows:
            with self.path.open("a") as f:  # half a row went in, then the disk was full
                f.write(self.rows[0][:5])
            enospc()
        real(self)

    monkeypatch.setattr(LossLog, "flush", flush)
    message = refused(cli(env, run, "--epochs", "2", "--save-every", "2", "--log-every", "1"), "No space left")
    monkeypatch.setattr(LossLog, "flush", real)
    step = read_state(run / "train_state.safetensors").meta["step"]
    assert f"the last checkpoint (step {step}) is intact" in message and step > 0
    assert cli(env, run, "--epochs", "2", "--save-every", "2", resume=True)[0] == 0
    assert_same_as_base(run, env)


def test_disk_full_during_evaluate_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    from diffusionlab.commands.evaluate import write_scores

    monkeypatch.setattr(Path, "write_bytes", enospc)
    with pytest.raises(Exception) as e:
        write_scores(tmp_path / "scores.json", {"fd": 1.0})
    assert type(e.value).__name__ == "DiffusionLabError" and "No space left on device" in str(e.value)
    assert "\n" not in str(e.value) and list(tmp_path.iterdir()) == []


# -- one writer per run folder -----------------------------------------------------------------------------------
def test_a_second_writer_is_refused_while_the_lock_is_held(env, tmp_path):
    run = tmp_path / "run"
    lock = RunLock(run)
    try:
        for resume in (False, True):
            refused(cli(env, run, "--epochs", "1", resume=resume), f"pid {os.getpid()}", "another train")
    finally:
        lock.release()
    assert not run.exists()  # the folder made for the lock alone is gone with it
    assert cli(env, run, "--epochs", "1", "--max-steps", "2")[0] == 0


def test_a_lock_file_of_a_dead_run_is_no_lock(env, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text("pid 999999 on elsewhere since long ago\n")
    assert cli(env, run, "--epochs", "1", "--max-steps", "2")[0] == 0
    assert not (run / LOCK_NAME).exists()  # taken, then removed at the end of the run


def test_two_processes_one_run_folder(env, tmp_path):
    """A real second process: refused while the first trains (fresh and --resume, both naming its pid); after a
    SIGKILL of the first, the lock is gone with it and --resume continues from its checkpoint."""
    run = tmp_path / "run"
    args = [*ARGS, "--data-dir", str(env["data"]), "--out", str(run), "--epochs", "500", "--save-every", "2"]
    first = subprocess.Popen([sys.executable, "-m", "diffusionlab", *args, "--threads", "1"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run / "train_state.safetensors").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read().decode()[-1000:]
        assert (run / LOCK_NAME).read_text().startswith(f"pid {first.pid} ")
        refused(cli(env, run, "--epochs", "500"), f"pid {first.pid}")
        refused(cli(env, run, "--epochs", "500", resume=True), f"pid {first.pid}")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    step = read_state(run / "train_state.safetensors").meta["step"]
    assert cli(env, run, "--epochs", "500", "--max-steps", str(step + 2), resume=True)[0] == 0
    assert read_state(run / "train_state.safetensors").meta["step"] == step + 2


# -- a checkpoint that proves which run and which log it belongs to ----------------------------------------------
def test_a_resume_gives_the_whole_runs_mean_loss(env, tmp_path):
    """Stopped at step 6 (2 steps into epoch 2) and resumed: the summary and provenance.loss are the uninterrupted
    run's, the mean over all 4 steps of epoch 2, not over the 2 resumed ones."""
    run = partial_run(env, tmp_path / "run")
    assert cli(env, run, "--epochs", "2", resume=True)[0] == 0
    assert_same_as_base(run, env)
    ours, base = load_checkpoint(run)[1]["provenance"], load_checkpoint(env["base"])[1]["provenance"]
    assert ours["loss"] == base["loss"] and ours["step"] == base["step"] == TOTAL
    epoch2 = [r["loss"] for r in read_log_rows(run / "loss.csv") if r["epoch"] == 2]
    assert ours["loss"] == pytest.approx(sum(epoch2) / 4, abs=1e-5)  # the log's 6 digits


def other_loss(row: str) -> str:
    step, epoch, _, lr = row.split(",")
    return f"{step},{epoch},0.123456,{lr}"


def edit_log(run: Path, edit) -> None:
    lines = (run / "loss.csv").read_text().splitlines()
    (run / "loss.csv").write_text("\n".join(edit(lines)) + "\n")


# ways the log or the state can disagree with the checkpoint (of step 6): each refused in one line, files unchanged
DISAGREE = {
    "log-deleted": (lambda run: (run / "loss.csv").unlink(), "loss.csv: missing"),
    "log-a-folder": (lambda run: ((run / "loss.csv").unlink(), (run / "loss.csv").mkdir()), "not a regular file"),
    "log-empty": (lambda run: (run / "loss.csv").write_text(""), "it is empty"),
    "garbage-at-its-step": (lambda run: edit_log(run, lambda ls: [*ls[:6], "6,2,garbage,x"]), "line 7"),
    "torn-at-its-step": (lambda run: edit_log(run, lambda ls: [*ls[:6], ls[6][:6]]), "is not a whole row"),
    "garbage-before": (lambda run: edit_log(run, lambda ls: [*ls[:2], "@@", *ls[3:]]), "line 3 ('@@')"),
    "row-deleted": (lambda run: edit_log(run, lambda ls: [*ls[:3], *ls[4:]]), "not 1, 2, 3, ... in order"),
    "rows-cut": (lambda run: edit_log(run, lambda ls: ls[:4]), "it ends at step 3"),
    "value-edited": (lambda run: edit_log(run, lambda ls: [*ls[:2], other_loss(ls[2]), *ls[3:]]), "other values"),
    "header-replaced": (lambda run: edit_log(run, lambda ls: ["a,b,c,d", *ls[1:]]), "is not the header"),
}


@pytest.mark.parametrize("case", DISAGREE, ids=list(DISAGREE))
def test_a_log_that_does_not_belong_to_the_checkpoint_is_refused(env, tmp_path, case):
    run = partial_run(env, tmp_path / "run")
    damage, words = DISAGREE[case]
    damage(run)
    before = snapshot(run)
    message = refused(cli(env, run, "--epochs", "2", resume=True), words)
    assert "step 6" in message and ("does not belong to the checkpoint" in message or "loss.csv:" in message)
    assert snapshot(run) == before


def test_a_state_copied_from_another_run_is_refused(env, tmp_path):
    run, other = partial_run(env, tmp_path / "run"), partial_run(env, tmp_path / "other", 6, "--seed", "1")
    shutil.copy(other / "train_state.safetensors", run / "train_state.safetensors")
    before = snapshot(run)
    refused(cli(env, run, "--epochs", "2", resume=True), "the state was copied from another run")
    for name in ("model.safetensors", "model.json"):  # the exports copied too: the log still tells
        shutil.copy(other / name, run / name)
    refused(cli(env, run, "--epochs", "2", resume=True), "the log does not belong to the checkpoint", "other values")
    assert snapshot(run)["loss.csv"] == before["loss.csv"]


def test_a_same_seed_run_is_another_run(env, tmp_path):
    """Two runs of one command have the same losses; the run ids still tell their checkpoints apart."""
    run, other = partial_run(env, tmp_path / "run"), partial_run(env, tmp_path / "other")
    assert (run / "loss.csv").read_bytes() == (other / "loss.csv").read_bytes()
    shutil.copy(other / "train_state.safetensors", run / "train_state.safetensors")
    refused(cli(env, run, "--epochs", "2", resume=True), "copied from another run")


def test_rows_after_the_checkpoint_are_dropped_and_said(env, tmp_path):
    """A SIGKILL after the rows of steps 7 and 8 reached loss.csv (the last torn) but before their checkpoint."""
    run = partial_run(env, tmp_path / "run")
    later = (env["base"] / "loss.csv").read_text().splitlines()[7:9]
    with (run / "loss.csv").open("a") as f:
        f.write(f"{later[0]}\n{later[1][:7]}")
    code, _, out = cli(env, run, "--epochs", "2", resume=True)
    assert code == 0 and "resuming at step 6: dropped 2 lines of loss.csv after it (trained again now)" in out
    assert_same_as_base(run, env)


def test_a_state_with_a_malformed_identity_is_refused(env, tmp_path):
    run = partial_run(env, tmp_path / "run")
    state = read_state(run / "train_state.safetensors")
    for key, value, words in [
        ("log_sha256", "abc", "log_sha256 is not a SHA-256"),
        ("run_id", "../x", "run_id is not a run id"),
        ("epoch_losses", [0.1] * 9, "epoch_losses is not a list"),
    ]:
        write_state(
            run / "train_state.safetensors", type(state)(**{**state.__dict__, "meta": {**state.meta, key: value}})
        )
        refused(cli(env, run, "--epochs", "2", resume=True), words)


def test_a_state_from_before_run_ids_still_resumes(env, tmp_path):
    run = partial_run(env, tmp_path / "run")
    state = read_state(run / "train_state.safetensors")
    meta = {k: v for k, v in state.meta.items() if k not in ("run_id", "log_sha256", "epoch_losses")}
    write_state(run / "train_state.safetensors", type(state)(**{**state.__dict__, "meta": meta}))
    assert cli(env, run, "--epochs", "2", resume=True)[0] == 0
    assert_same_as_base(run, env)
