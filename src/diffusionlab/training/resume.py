"""Opening a run's folder: a new run in a new or empty folder, or, with resume, the continuation of the run there
(which keeps its own recipe; the command may only extend its length)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from diffusionlab.distributed import current
from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_files import WEIGHTS_NAME, load_checkpoint
from diffusionlab.training.config import TrainConfig
from diffusionlab.training.losslog import LOG_NAME
from diffusionlab.training.runlock import LOCK_NAME, RunLock
from diffusionlab.training.state import STATE_NAME, RunState, clean_temp_files, read_state
from diffusionlab.training.trainer import Trainer


def _entries(run_dir: Path) -> list[Path]:
    """What the folder holds, less the run lock (taken before the folder is looked at: runlock.py)."""
    return [p for p in run_dir.iterdir() if p.name != LOCK_NAME] if run_dir.is_dir() else []


def _only_run_leftovers(run_dir: Path) -> bool:
    """Does the folder hold only what a run writes before its first checkpoint (log, figures, temp files)?"""
    allowed = {LOG_NAME, "loss.png", "figures", "snapshots"}
    return all(p.name in allowed or (p.name.startswith(".") and p.name.endswith(".tmp")) for p in _entries(run_dir))


def open_run(config: TrainConfig, run_dir: str | Path, resume: bool, **kwargs) -> Trainer:
    """A new run in a new or empty directory, or the continuation of the one there with resume=True. The folder is
    locked before it is looked at, until trainer.run() ends (runlock.py): a second writer is refused in one line."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise DiffusionLabError(f"--out {run_dir}: is a file; a run needs a directory of its own")
    lock = RunLock(run_dir, current())
    try:
        trainer = _open(config, run_dir, resume, **kwargs)
    except BaseException:
        lock.release()
        raise
    trainer.lock = lock
    return trainer


def _open(config: TrainConfig, run_dir: Path, resume: bool, **kwargs) -> Trainer:
    existing = (run_dir / STATE_NAME).exists() or (run_dir / WEIGHTS_NAME).exists()
    leftovers = not existing and any(_entries(run_dir)) and _only_run_leftovers(run_dir)
    if resume and not existing and not leftovers:
        raise DiffusionLabError(
            f"--resume: no run to continue in {run_dir} (no {STATE_NAME}); drop --resume to start one"
        )
    if existing and not resume:
        raise DiffusionLabError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --out")
    if not existing and any(_entries(run_dir)):
        if not leftovers:
            raise DiffusionLabError(
                f"--out {run_dir}: the folder holds other files and no run; give a new or empty folder for the run"
            )
        # a run killed before its first checkpoint: nothing to resume, start it again from step 0 (exact)
        clean_temp_files(run_dir)
        (run_dir / LOG_NAME).unlink(missing_ok=True)
        resume = False
    state = None
    if resume:
        clean_temp_files(run_dir)
        state, config = _resumed(config, run_dir)
    trainer = Trainer(config, run_dir, **kwargs)
    if resume:
        trainer.load(state)
    return trainer


def _resumed(config: TrainConfig, run_dir: Path) -> tuple[RunState | None, TrainConfig]:
    """The run's state (None for a run from before the state file) and its config, extended by the command's."""
    state = None
    if (run_dir / STATE_NAME).exists():
        state = read_state(run_dir / STATE_NAME)
        train = state.meta.get("config", {})
    else:
        train = load_checkpoint(run_dir)[1].get("train", {})
    theirs = (
        train.get("kind"),
        "denoise" if train.get("kind") == "denoiser" else train.get("objective"),
        train.get("data"),
    )
    if theirs != (config.kind, config.objective_name, config.data):
        raise DiffusionLabError(
            f"{run_dir}: cannot resume, it holds a {' '.join(map(str, theirs))} run and this command trains "
            f"{config.kind} {config.objective_name} on {config.data}; use the run's own command or another --out"
        )
    # a resumed run keeps its own recipe; the command may only extend its length
    known = set(TrainConfig.__dataclass_fields__) - {"epochs", "max_steps"}
    config = replace(config, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in train.items() if k in known})
    if "ema_decay" not in train:  # a run from before EMA: it continues without one, as it was trained
        config = replace(config, ema_decay=0.0)
    if "lr_schedule" not in train:  # a run from before --lr-schedule: the course's
        config = replace(config, lr_schedule="course")
    return state, config
