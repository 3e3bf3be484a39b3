"""What a run writes to its folder and reads back: the resume state, the exported model beside it, the snapshots.

train_state.safetensors (state.py) holds everything --resume needs in one atomic file; model.safetensors/.json is
the exported model (EMA weights when EMA is on) of the same step, written right after it. The functions take the
run as a `TrainingRun` (what they read and set of the Trainer), so this module needs no import of trainer.py, which
imports it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from diffusionlab.data import Split
from diffusionlab.distributed import DistContext
from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_files import WEIGHTS_NAME, load_checkpoint, save_checkpoint
from diffusionlab.model_protocol import generator_for
from diffusionlab.networks.unet import UNet
from diffusionlab.precision import cpu_name
from diffusionlab.training.batches import steps_of
from diffusionlab.training.config import TrainConfig, check_fits_data, model_config
from diffusionlab.training.ema import ema_init, ema_state_dict
from diffusionlab.training.losslog import LOG_NAME, StepLosses, check_log_belongs, log_digest, truncate_log
from diffusionlab.training.state import STATE_NAME, RunState, read_state, write_state


class TrainingRun(Protocol):
    """What a checkpoint saves of a run and a resume sets again: the Trainer's state (trainer.py)."""

    config: TrainConfig
    run_dir: Path
    device: torch.device
    dist: DistContext
    command: str
    net: UNet
    ema: dict[str, Tensor] | None
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None
    generator: torch.Generator  # permutations (and the noise, off the CUDA fast path)
    noise_generator: torch.Generator
    perm: Tensor | None
    epoch: int
    step: int
    batch_in_epoch: int
    train_seconds: float
    run_id: str
    history: list[dict]
    session: dict
    saved_step: int | None
    epoch_losses: list[float]
    losses: StepLosses | None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_name()})"


def provenance(trainer: TrainingRun, split: Split, loss: float | None) -> dict:
    """Where the weights came from: the command, data, position, device, and every session (resume) of the run."""
    history = [*trainer.history, {**trainer.session, "to_step": trainer.step, "command": trainer.command}]
    return {
        "command": trainer.command,
        "seed": trainer.config.seed,
        "data": trainer.config.data,
        "data_md5": split.md5,
        "epoch": trainer.epoch,
        "step": trainer.step,
        "loss": loss,
        "train_seconds": round(trainer.train_seconds, 2),
        "device": device_name(trainer.device) if trainer.device.type == "cuda" else str(trainer.device),
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "ema_decay": trainer.config.ema_decay,
        "weights": "ema" if trainer.ema is not None else "raw",
        "run_id": trainer.run_id,
        "history": history,
    }


def exported_state(trainer: TrainingRun) -> dict[str, Tensor]:
    """The weights the run exports: the EMA when it is on, else the raw weights."""
    return ema_state_dict(trainer.ema, trainer.net) if trainer.ema is not None else trainer.net.state_dict()


def export_net(trainer: TrainingRun) -> UNet:
    """The exported weights (EMA or raw) in a network of their own, for the epoch figures."""
    if trainer.ema is None:
        return trainer.net
    net = UNet(trainer.config.unet_config()).to(trainer.device)
    net.load_state_dict(exported_state(trainer))
    return net.eval()


def save_run(trainer: TrainingRun, split: Split, loss: float | None) -> Path:
    """The resume state (one atomic file: the checkpoint), then the exported model made from the same step."""
    config = model_config(trainer.config, provenance(trainer, split, loss))
    opt = trainer.optimizer.state_dict()
    meta = {
        "epoch": trainer.epoch,
        "step": trainer.step,
        "batch_in_epoch": trainer.batch_in_epoch,
        "train_seconds": trainer.train_seconds,
        "param_groups": opt["param_groups"],
        "lr_scheduler": trainer.lr_scheduler.state_dict() if trainer.lr_scheduler else None,
        "config": config["train"],
        "loss": loss,
        "history": config["provenance"]["history"],
        # who the run is, and what it has seen of its log: --resume checks both (check_belongs)
        "run_id": trainer.run_id,
        "log_sha256": log_digest(trainer.run_dir / LOG_NAME, trainer.step),
        "epoch_losses": trainer.losses.epoch if trainer.losses is not None else [],
    }
    noise_rng = trainer.noise_generator.get_state() if trainer.noise_generator is not trainer.generator else None
    state = RunState(
        meta,
        trainer.generator.get_state(),
        noise_rng,
        trainer.perm,
        raw=trainer.net.state_dict(),
        ema=trainer.ema,
        optimizer=opt["state"],
    )
    write_state(trainer.run_dir / STATE_NAME, state)
    trainer.saved_step = trainer.step
    save_checkpoint(trainer.run_dir / WEIGHTS_NAME, exported_state(trainer), config)
    return trainer.run_dir / WEIGHTS_NAME


def save_snapshots(trainer: TrainingRun, split: Split, mean_loss: float | None) -> None:
    """snapshots/epoch_E.safetensors (the exported weights) and, with EMA, snapshots/raw/epoch_E (raw weights)."""
    config = model_config(trainer.config, provenance(trainer, split, mean_loss))
    snapshots = trainer.run_dir / "snapshots"
    save_checkpoint(snapshots / f"epoch_{trainer.epoch}.safetensors", exported_state(trainer), config)
    if trainer.ema is not None:
        raw_config = {**config, "name": f"{config['name']} (raw weights)"}
        save_checkpoint(snapshots / "raw" / f"epoch_{trainer.epoch}.safetensors", trainer.net.state_dict(), raw_config)


def load_run(trainer: TrainingRun, state: RunState | None = None) -> None:
    """Continue a run from its state file alone (read here unless given): weights, EMA, optimizer, LR schedule, RNG
    and position."""
    state = state or read_state(trainer.run_dir / STATE_NAME)
    meta = state.meta
    check_belongs(trainer.run_dir, meta)
    _load_weights(trainer, state)
    trainer.generator.set_state(state.rng)
    if trainer.noise_generator is not trainer.generator:
        if state.noise_rng is not None:
            trainer.noise_generator.set_state(state.noise_rng)
        else:  # a run started on another path: continue with a noise stream derived from the saved one
            trainer.noise_generator = generator_for(trainer.config.seed + 1_000_003 * meta["step"], trainer.device)
    trainer.perm = state.perm
    _load_optimizer(trainer, state)
    trainer.epoch, trainer.step = meta["epoch"], meta["step"]
    trainer.batch_in_epoch, trainer.train_seconds = meta["batch_in_epoch"], meta["train_seconds"]
    trainer.history = list(meta.get("history") or [])
    trainer.session["from_step"] = trainer.saved_step = trainer.step
    trainer.run_id = meta.get("run_id") or trainer.run_id  # a state from before run ids: the run gets one now
    trainer.epoch_losses = list(meta.get("epoch_losses") or [])
    if trainer.dist.is_main:
        try:
            dropped = truncate_log(trainer.run_dir / LOG_NAME, trainer.step)
        except OSError as e:
            raise DiffusionLabError(
                f"{trainer.run_dir / LOG_NAME}: cannot rewrite it ({e.strerror or e}); the run is unchanged, "
                "--resume again once it can be written"
            ) from None
        if dropped:
            lines = "line" if dropped == 1 else "lines"
            print(
                f"resuming at step {trainer.step}: dropped {dropped} {lines} of loss.csv after it (trained again now)"
            )


def check_belongs(run_dir: Path, meta: dict) -> None:
    """The checkpoint is this run's: its run id is that of the exported model.json beside it (when both have one),
    and loss.csv up to its step is what it saw (the digest). States from before run ids are not checked."""
    step, run_id = meta["step"], meta.get("run_id")
    if run_id is None or "log_sha256" not in meta:
        return
    theirs = _exported_run_id(run_dir)
    if theirs not in (None, run_id):
        raise DiffusionLabError(
            f"{run_dir / STATE_NAME}: it is of run {run_id} and {WEIGHTS_NAME} beside it of run {theirs}: the state "
            "was copied from another run; put back this run's own state, or start a new run with another --out"
        )
    checkpoint = f"{STATE_NAME} of step {step}, run {run_id}"
    check_log_belongs(run_dir / LOG_NAME, step, meta["log_sha256"], checkpoint)


def _exported_run_id(run_dir: Path) -> str | None:
    """The run id in model.json's provenance; None without one (no export yet, or unreadable: not our concern here)."""
    try:
        config = json.loads((run_dir / WEIGHTS_NAME).with_suffix(".json").read_text())
        return config["provenance"].get("run_id")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def check_run_length(trainer: TrainingRun, n_images: int) -> None:
    """Before any work: the batch fits the data, and the run has steps left to train."""
    check_fits_data(trainer.config, n_images)
    per_epoch, total = steps_of(n_images, trainer.config)
    if trainer.step >= total:
        cfg = trainer.config
        by_steps = cfg.max_steps is not None and total == cfg.max_steps
        end = f"--max-steps {cfg.max_steps}" if by_steps else f"--epochs {cfg.epochs} ({total} steps)"
        raise DiffusionLabError(
            f"{trainer.run_dir}: the run is already at step {trainer.step}, the end that {end} gives: nothing to "
            "train; give a larger --epochs or --max-steps to train it further"
        )


def last_checkpoint(trainer: TrainingRun) -> str:
    """Where --resume would continue, for the messages of a run that stops without saving."""
    if trainer.saved_step is None:
        return "no checkpoint was written yet, so --resume has nothing to continue: start the run again"
    return f"the last checkpoint (step {trainer.saved_step}) is intact, --resume continues from it"


def write_failed(trainer: TrainingRun, error: Exception) -> str:
    """The one line for a write that failed during training (a full disk, a folder removed)."""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error).split(": ", 1)[-1]
    where = getattr(error, "filename", None) or trainer.run_dir
    return f"cannot write {where} ({reason}): training stopped at step {trainer.step}; {last_checkpoint(trainer)}"


def _load_weights(trainer: TrainingRun, state: RunState) -> None:
    raw, run_dir, step = state.raw, trainer.run_dir, state.meta["step"]
    if raw is None:  # a state written before it held the weights: they are model.safetensors of the same step
        raw, saved = load_checkpoint(run_dir)
        if saved.get("provenance", {}).get("step") != step:
            raise DiffusionLabError(
                f"{run_dir}: cannot resume, model.safetensors is of step {saved.get('provenance', {}).get('step')} "
                f"and train_state of step {step} (a write was cut short); start again from a snapshot"
            )
    try:
        trainer.net.load_state_dict(raw)
    except RuntimeError as e:
        raise DiffusionLabError(
            f"{run_dir}: cannot resume, the saved weights do not fit this run's network "
            f"({str(e).strip().splitlines()[0]}); use the run's own command or another --out"
        ) from None
    if trainer.ema is not None:
        trainer.ema = {k: v.to(trainer.device) for k, v in state.ema.items()} if state.ema else ema_init(trainer.net)


def _load_optimizer(trainer: TrainingRun, state: RunState) -> None:
    opt_state = {
        idx: {name: (v.to(trainer.device) if name != "step" else v) for name, v in st.items()}
        for idx, st in state.optimizer.items()
    }
    try:
        trainer.optimizer.load_state_dict({"state": opt_state, "param_groups": state.meta["param_groups"]})
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise DiffusionLabError(
            f"{trainer.run_dir / STATE_NAME}: its optimizer state does not fit this run's network ({e}); "
            "start a new run with another --out"
        ) from None
    if trainer.lr_scheduler and state.meta["lr_scheduler"]:
        trainer.lr_scheduler.load_state_dict(state.meta["lr_scheduler"])
