"""The Trainer: one loop for B1 (single-step denoiser), B2 (time DDPM), B2.4 (class DDPM) and B3 (flow matching).

What differs between them is the loss (loss.py). The whole loop is `Trainer._loop`, one screen: the step
(`_train_step`) with named hooks around it, each a method below it in the order the loop calls them: stop requests,
EMA, logging, checkpointing, snapshots and the epoch figures. State (weights, optimizer, LR schedule, RNG, position
in the epoch) is checkpointed every epoch, every save_every steps and on a stop request, so `resume` continues
exactly where the run stopped (checkpoints.py).
"""

from __future__ import annotations

import shlex
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import Tensor

from diffusionlab.course_model import CourseModel
from diffusionlab.data import Split, load_split
from diffusionlab.distributed import current, sync_batchnorm, wrap_ddp
from diffusionlab.errors import DiffusionLabError
from diffusionlab.figures.grid import plot_curves
from diffusionlab.model_protocol import generator_for
from diffusionlab.networks.unet import UNet
from diffusionlab.precision import Precision, choose_precision, requested_precision
from diffusionlab.progress import bar as progress_bar
from diffusionlab.schedule import NoiseSchedule
from diffusionlab.training.batches import draw_batch, new_permutation, steps_of
from diffusionlab.training.checkpoints import (
    check_run_length,
    device_name,
    export_net,
    exported_state,
    last_checkpoint,
    load_run,
    save_run,
    save_snapshots,
    write_failed,
)
from diffusionlab.training.config import TrainConfig, cosine_lr, model_config
from diffusionlab.training.ema import ema_decay_at, ema_init, ema_update
from diffusionlab.training.loss import CallMode, training_loss
from diffusionlab.training.losslog import LOG_NAME, LossLog, StepLosses, mean, read_log_rows
from diffusionlab.training.state import RunState
from diffusionlab.training.stop import StopAtBoundary, StopRequest


@dataclass
class EpochEnd:
    """What the per-epoch hook receives."""

    epoch: int
    step: int
    mean_loss: float
    model: CourseModel
    run_dir: Path
    partial: bool = False  # True when max_steps ended the run inside an epoch


@dataclass
class Trainer:
    """A run in a directory: train_state.safetensors (everything --resume needs, one atomic file), the exported
    model.safetensors/.json (EMA weights when EMA is on), loss.csv, loss.png and snapshots/epoch_E.safetensors
    (EMA) with snapshots/raw/epoch_E.safetensors (raw weights) at the snapshot epochs."""

    config: TrainConfig
    run_dir: Path
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    data_dir: str | Path | None = None
    progress: bool = True
    on_epoch_end: object = None  # callable(EpochEnd) -> None, e.g. the Part B figures
    command: str = field(default_factory=lambda: shlex.join(["diffusionlab", *sys.argv[1:]]))
    fast: bool | None = None  # the fast path; None = on (channels_last, foreach Adam, the precision below, ...)
    compile: bool = True  # torch.compile the train step on the fast path (CUDA only; CUDA graphs on one GPU)
    log_every: int = 50  # losses stay on the device and reach loss.csv (one row per step) every log_every steps
    precision: str | None = None  # "auto" (bf16 where measured faster: precision.py), "fp32", "bf16"; None: --precision
    save_every: int | None = None  # also checkpoint every this many steps (a SIGKILL loses at most that many)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.device = torch.device(self.device)
        self._check_options()
        self.fast = True if self.fast is None else bool(self.fast)
        self.dist = current()  # torch.distributed already initialised (torchrun): DDP over the ranks
        self.precision_choice = self._choose_precision()
        self.autocast_dtype = self.precision_choice.autocast_dtype
        self.channels_last = self.fast
        self._build_net_and_optimizer()
        cuda_fast = self.fast and self.device.type == "cuda"
        self.schedule = NoiseSchedule.linear(self.config.num_steps) if self.config.objective == "ddpm" else None
        self.generator = generator_for(self.config.seed)  # permutations (+ noise off CUDA)
        # on the CUDA fast path the per-step noise is drawn on the GPU (no host round trip); else the same generator
        self.noise_generator = generator_for(self.config.seed, self.device) if cuda_fast else self.generator
        self.train_net = wrap_ddp(self.net, self.device) if self.dist.enabled else self.net
        self._graphs = False
        if cuda_fast and self.compile:
            # CUDA graphs (reduce-overhead) on one GPU; with DDP plain compilation (collectives do not go in a graph)
            self._graphs = not self.dist.enabled
            mode = "reduce-overhead" if self._graphs else None
            self.train_net = torch.compile(self.train_net, mode=mode, dynamic=False)
        self.epoch = 0  # completed epochs
        self.step = 0  # completed optimizer steps
        self.total_steps = 0  # the run's length in steps, set by run()
        self.batch_in_epoch = 0
        self.perm: Tensor | None = None
        self.train_seconds = 0.0
        self.history: list[dict] = []  # one entry per session of the run (resumes), the last one is this one
        self.run_id = uuid.uuid4().hex[:16]  # the run's identity, in its checkpoints (a resume keeps the saved one)
        self.saved_step: int | None = None  # the step of the last checkpoint written or resumed from
        self.epoch_losses: list[float] = []  # the current epoch's losses before this session (a resumed run's)
        self.losses: StepLosses | None = None  # the losses of this session, while run() runs
        self.mean_loss: float | None = None  # the mean loss of the last epoch this session completed
        self.lock = None  # the run folder's lock (runlock.py), given by open_run and released at the end of run()
        self.session = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "from_step": 0,
            "device": device_name(self.device),
            "threads": torch.get_num_threads(),
            "precision": self.precision_choice.name,
            "precision_reason": self.precision_choice.reason,
            "fast": self.fast,
        }

    def _choose_precision(self) -> Precision:
        """As asked; "auto" on the fast path by measurement (precision.py); --plain alone is the course's fp32."""
        asked = requested_precision(self.precision)
        if self.fast or asked != "auto":
            return choose_precision(self.device, asked)
        return Precision("fp32", "--plain: eager fp32, as the course")

    def first_line(self) -> str:
        """What the run says first: where and how it trains (also in provenance's history)."""
        s = self.session
        return f"training on {s['device']}, {s['threads']} thread{'s' if s['threads'] != 1 else ''}, {self.precision_choice.describe()}"

    def _check_options(self) -> None:
        requested_precision(self.precision)  # an unknown precision is refused before any work
        if self.log_every < 1:
            raise DiffusionLabError(f"--log-every must be at least 1, got {self.log_every}")
        if self.save_every is not None and self.save_every < 1:
            raise DiffusionLabError(f"--save-every must be at least 1 step, got {self.save_every}")

    def _build_net_and_optimizer(self) -> None:
        cfg = self.config
        with torch.random.fork_rng(devices=[]):  # the initial weights depend on the seed alone
            torch.manual_seed(cfg.seed)
            self.net = UNet(cfg.unet_config()).to(self.device)
        if self.dist.enabled:  # global-batch BatchNorm statistics, so N ranks train what one process would
            self.net = sync_batchnorm(self.net, self.device)
        self.ema = ema_init(self.net) if cfg.ema_decay > 0 else None
        fused = self.fast and self.device.type == "cuda"
        self.optimizer = torch.optim.Adam(
            self.net.parameters(), lr=cfg.lr, **({"fused": True} if fused else {"foreach": True})
        )
        course = cfg.lr_schedule == "course" and cfg.lr_gamma
        self.lr_scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, cfg.lr_gamma) if course else None

    # -- state (checkpoints.py) -----------------------------------------------------------------------------
    def exported_state(self) -> dict[str, Tensor]:
        """The weights the run exports: the EMA when it is on, else the raw weights."""
        return exported_state(self)

    def save(self, split: Split, loss: float | None) -> Path:
        """The resume state (one atomic file), then the exported model made from the same step."""
        return save_run(self, split, loss)

    def load(self, state: RunState | None = None) -> None:
        """Continue the run from its state file (read here unless given)."""
        load_run(self, state)

    # -- the loop: everything around the step is a named hook (below) ----------------------------------------
    def run(self, split: Split | None = None) -> dict:
        """Train from where the run stands to its end (epochs or max_steps); a summary of where it stopped. A write
        that fails (a full disk) ends it in one line: the last checkpoint is intact and --resume continues it."""
        try:
            split = split or load_split(self.config.data, "train", self.data_dir)
            check_run_length(self, len(split))
            with StopRequest() as stop:
                return self._loop(split, stop)
        except (OSError, SafetensorError) as e:  # safetensors says a full disk in an error of its own
            raise DiffusionLabError(write_failed(self, e)) from None
        finally:
            if self.lock is not None:
                self.lock.release()

    def _loop(self, split: Split, stop: StopRequest) -> dict:
        """The whole loop: epochs of steps; what happens around a step or an epoch is a hook named for it."""
        images, labels = split.images.to(self.device), split.labels.to(self.device)  # batches are sliced from them
        per_epoch, self.total_steps = steps_of(len(split), self.config)  # the cosine schedule spans this length
        self._open_log()
        self.net.train()
        try:
            while self.epoch < self.config.epochs and self.step < self.total_steps:
                perm = self._start_epoch(len(split))
                while self.batch_in_epoch < per_epoch and self.step < self.total_steps:
                    stop.stop_at_boundary()  # a stop request ends the run here, between two steps, and saves it
                    loss = self._train_step(images, labels, perm)
                    self._update_ema()
                    self._log_step(loss)
                    if self.save_every and self.step % self.save_every == 0 and self.batch_in_epoch < per_epoch:
                        self._checkpoint_mid_epoch(split)
                self._log_epoch()
                if self.batch_in_epoch < per_epoch:  # max_steps ended the run inside this epoch
                    break
                self._end_epoch()
                self._save_epoch(split, self.mean_loss)  # snapshots, checkpoint, epoch figures
        except KeyboardInterrupt as interrupt:  # a stop request, or Ctrl-C inside a step
            self._save_on_stop(interrupt, split)
            raise
        finally:
            self.losses.close()
        return self._finish(split, per_epoch)

    def _train_step(self, images: Tensor, labels: Tensor, perm: Tensor) -> Tensor:
        """One optimizer step on batch batch_in_epoch of perm; its loss (on the device)."""
        cfg = self.config
        x, y, shard = draw_batch(images, labels, perm, self.batch_in_epoch, cfg, self.dist)
        if self._graphs:
            torch.compiler.cudagraph_mark_step_begin()
        mode = CallMode(self.autocast_dtype, self.channels_last)
        loss = training_loss(self.train_net, x, y, cfg, self.schedule, self.noise_generator, shard=shard, mode=mode)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.lr_schedule == "cosine":  # a function of the step alone, so a resumed run continues it exactly
            for group in self.optimizer.param_groups:
                group["lr"] = cosine_lr(cfg.lr, self.step, self.total_steps)
        self.optimizer.step()
        self.step += 1
        self.batch_in_epoch += 1
        return loss.detach()

    # -- the hooks, in the order the loop calls them ----------------------------------------------------------
    def _open_log(self) -> None:
        """Logging: loss.csv (rank 0) and the progress bar; a resumed epoch's mean is over all its steps."""
        log = LossLog(self.run_dir / LOG_NAME if self.dist.is_main else None)
        self.losses = StepLosses(log, self._bar(self.total_steps), self.dist)
        self.losses.epoch = list(self.epoch_losses)
        self.mean_loss = None  # the mean loss of the last epoch this session completed
        self._tick = time.perf_counter()

    def _start_epoch(self, n_images: int) -> Tensor:
        """This epoch's order on the device (one copy per epoch); a resumed run continues its saved one."""
        if self.perm is None:
            self.perm = new_permutation(n_images, self.generator)
            self.batch_in_epoch = 0
        self.losses.bar.set_description(self._epoch_name())
        return self.perm.to(self.device)

    def _update_ema(self) -> None:
        """EMA: the exported weights follow the raw ones after every optimizer step (ema.py)."""
        if self.ema is not None:
            ema_update(self.ema, self.net, ema_decay_at(self.config.ema_decay, self.step))

    def _log_step(self, loss: Tensor) -> None:
        """Logging: the loss stays on the device until log_every steps are pending (no host sync per step)."""
        self.losses.add(self.step, self.epoch + 1, self.optimizer.param_groups[0]["lr"], loss)
        self.losses.bar.update(1)
        if len(self.losses.steps) >= self.log_every:
            self.losses.flush()

    def _checkpoint_mid_epoch(self, split: Split) -> None:
        """Checkpointing every save_every steps inside an epoch (a SIGKILL loses at most that many)."""
        self.losses.flush()
        self.losses.log.flush()
        self._clock()
        if self.dist.is_main:
            self.save(split, mean(self.losses.epoch))

    def _log_epoch(self) -> None:
        """Logging at the end of the epoch's steps (or of the run's): the pending losses, the training time."""
        self.losses.flush()
        self._clock()

    def _end_epoch(self) -> None:
        """The epoch is complete: count it, step the course's LR schedule, take its mean loss."""
        self.epoch += 1
        self.perm = None
        self.batch_in_epoch = 0
        if self.lr_scheduler:
            self.lr_scheduler.step()
        self.mean_loss = mean(self.losses.take_epoch())
        self.losses.log.flush()

    def _save_epoch(self, split: Split, mean_loss: float | None, partial: bool = False) -> None:
        """Snapshots (at the snapshot epochs), the checkpoint and the epoch figures, from rank 0 only."""
        if self.dist.is_main:
            if not partial and self.epoch in self.config.snapshot_epochs:
                # snapshots before the state: a kill in between makes --resume redo this epoch end and write them
                save_snapshots(self, split, mean_loss)
            self.save(split, mean_loss)
            self._epoch_figures(mean_loss, partial)
        self._tick = time.perf_counter()  # the epoch end's checkpoint and figures are not training time

    def _epoch_figures(self, mean_loss: float | None, partial: bool) -> None:
        """The on_epoch_end hook (e.g. the Part B figures), given the exported model in eval mode."""
        if self.on_epoch_end is None:
            return
        was_training = self.net.training
        self.net.eval()
        model = CourseModel(export_net(self), model_config(self.config, {}), self.device)
        self.on_epoch_end(EpochEnd(self.epoch, self.step, mean_loss, model, self.run_dir, partial))
        self.net.train(was_training)

    def _save_on_stop(self, interrupt: KeyboardInterrupt, split: Split) -> None:
        """A stop request (between two steps) is saved; a Ctrl-C inside a step, or a second one, is not."""
        try:
            self._save_stopped(interrupt, split)
        except KeyboardInterrupt:  # a second Ctrl-C while saving: the save is cut, the previous checkpoint stays
            if self.dist.is_main:
                print(f"\ninterrupted again: stopping now; {last_checkpoint(self)}", file=sys.stderr)
            raise

    def _save_stopped(self, interrupt: KeyboardInterrupt, split: Split) -> None:
        self.losses.flush(reduce=False)  # pending losses are of completed steps; no collective (ranks may be gone)
        self.losses.close()
        self._clock()
        if not self.dist.is_main:
            return
        if isinstance(interrupt, StopAtBoundary):  # between two steps: exact, save it
            self.save(split, self.mean_loss if self.mean_loss is not None else mean(self.losses.epoch))
            print(
                f"\ninterrupted: saved the run at step {self.step} in {self.run_dir}; continue with --resume",
                file=sys.stderr,
            )
        else:
            print(f"\nstopped at once (inside a step): not saved; {last_checkpoint(self)}", file=sys.stderr)

    def _finish(self, split: Split, per_epoch: int) -> dict:
        """After the loop: checkpoint a partial epoch (max_steps), draw loss.png, and say where the run stands."""
        mean_loss = self.mean_loss
        if self.losses.epoch:
            mean_loss = mean(self.losses.epoch)
            self._save_epoch(split, mean_loss, partial=True)
        self.net.eval()
        if self.dist.is_main:
            cfg = self.config
            rows = read_log_rows(self.run_dir / LOG_NAME)
            curves = {"training loss": [r["loss"] for r in rows]}
            title = f"{cfg.data} {cfg.kind} {cfg.objective_name}"
            plot_curves(curves, self.run_dir / "loss.png", title=title, epochs=[r["epoch"] for r in rows])
        return {
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "batches_per_epoch": per_epoch,
            "loss": mean_loss,
            "run_dir": str(self.run_dir),
            "seconds": self.train_seconds,
        }

    # -- small helpers ----------------------------------------------------------------------------------------
    def _bar(self, total: int):
        return progress_bar(
            None,
            self.progress and self.dist.is_main,
            total=total,
            initial=min(self.step, total),
            desc=self._epoch_name(),
            unit="step",
        )

    def _epoch_name(self) -> str:
        return f"train {self.config.kind} epoch {self.epoch + 1}/{self.config.epochs}"

    def _clock(self) -> None:
        """Count the time since the last tick as training time."""
        now = time.perf_counter()
        self.train_seconds += now - self._tick
        self._tick = now
