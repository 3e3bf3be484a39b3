"""Trainers for B1 (single-step denoiser), B2 (time DDPM), B2.4 (class DDPM) and B3 (flow matching).

One loop for all of them; what differs is the loss (`training_loss`). The split lives in memory as one uint8
tensor and batches are sliced from a seeded permutation. State (weights, optimizer, LR schedule, RNG, position
in the epoch) is checkpointed every epoch and on Ctrl-C, so `resume` continues exactly where the run stopped.
"""

from __future__ import annotations

import math
import os
import platform
import shlex
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from diffusionlab.checkpoint import WEIGHTS_NAME, load_checkpoint, save_checkpoint
from diffusionlab.data import Split, dataset_info, load_split, to_float
from diffusionlab.distributed import (
    SINGLE,
    DistContext,
    all_reduce_mean,
    current,
    shard_rows,
    sharded_mse,
    sync_batchnorm,
    wrap_ddp,
)
from diffusionlab.ema import ema_decay_at, ema_init, ema_state_dict, ema_update
from diffusionlab.errors import DiffusionLabError
from diffusionlab.fastpath import fast_dtype
from diffusionlab.figures import plot_curves
from diffusionlab.model import CourseModel
from diffusionlab.models.unet import UNet, UNetConfig
from diffusionlab.run_state import (
    LOG_HEADER,
    LOG_NAME,
    STATE_NAME,
    RunState,
    clean_temp_files,
    read_log_rows,
    read_state,
    truncate_log,
    write_state,
)
from diffusionlab.schedule import NoiseSchedule, add_noise

KINDS = ("denoiser", "time", "class")
OBJECTIVES = ("ddpm", "flow")


@dataclass
class TrainConfig:
    """A training run. `recipe(kind, objective)` gives the course's defaults."""

    kind: str = "class"
    objective: str = "ddpm"
    data: str = "mnist"
    epochs: int = 20
    batch_size: int = 128
    hidden: int = 64
    lr: float = 1e-3
    lr_gamma: float | None = 0.1 ** (1 / 20)  # ExponentialLR factor per epoch; None = constant
    sigma: float = 0.5  # the denoiser's noise level
    pure_noise: bool = False  # the denoiser maps pure noise z ~ N(0, I) to digits (Fall 2025 B1.2.3)
    p_uncond: float = 0.1
    num_steps: int = 300  # DDPM T
    seed: int = 0
    max_steps: int | None = None
    snapshot_epochs: tuple[int, ...] = (1, 5, 20)
    value_range: tuple[float, float] = (0.0, 1.0)
    ema_decay: float = 0.999  # EMA of the weights (what the run exports); 0 = off, the raw weights are exported

    def check(self) -> TrainConfig:
        if self.kind not in KINDS:
            raise DiffusionLabError(f"unknown model kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.objective not in OBJECTIVES:
            raise DiffusionLabError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        dataset_info(self.data)
        for name in ("epochs", "batch_size", "hidden", "num_steps"):
            if getattr(self, name) < 1:
                raise DiffusionLabError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise DiffusionLabError(f"--lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise DiffusionLabError(f"--sigma must be a positive number, got {self.sigma}")
        if self.pure_noise and self.kind != "denoiser":
            raise DiffusionLabError(
                "--pure-noise is for the single-step denoiser: diffusionlab train denoiser --pure-noise"
            )
        if not 0 <= self.ema_decay < 1:
            raise DiffusionLabError(f"--ema-decay must be in [0, 1) (0 turns EMA off), got {self.ema_decay}")
        return self

    @property
    def objective_name(self) -> str:
        return "denoise" if self.kind == "denoiser" else self.objective

    def unet_config(self) -> UNetConfig:
        if self.kind == "denoiser":
            return UNetConfig(self.hidden)
        mul_time = self.objective == "flow" and self.kind == "time"  # the course's flow time model: Unflatten * t1
        return UNetConfig(
            self.hidden,
            time_conditioned=True,
            num_classes=10 if self.kind == "class" else 0,
            time_mode="mul" if mul_time else "add",
        )


def recipe(kind: str = "class", objective: str = "ddpm", **overrides) -> TrainConfig:
    """The course recipes (SPEC.md Part B), with any field overridden."""
    if kind == "denoiser":
        base = TrainConfig(
            kind, "ddpm", epochs=5, batch_size=256, hidden=128, lr=1e-4, lr_gamma=None, snapshot_epochs=(1, 5)
        )
    elif objective == "flow":
        base = TrainConfig(
            kind,
            "flow",
            epochs=10,
            batch_size=64,
            hidden=64,
            lr=1e-2,
            lr_gamma=0.1 ** (1 / 10),
            snapshot_epochs=(1, 5, 10),
        )
    else:
        base = TrainConfig(kind, objective)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in overrides and "lr_gamma" not in overrides and base.lr_gamma is not None:
        # the LR decays by 10x over the whole run whatever its length, as the course's gamma = 0.1^(1/epochs)
        overrides["lr_gamma"] = 0.1 ** (1 / overrides["epochs"])
    return replace(base, **overrides).check()


def one_hot_dropped(labels: Tensor, num_classes: int, p_uncond: float, generator: torch.Generator) -> Tensor:
    """One-hot class vectors, each set to zero with probability p_uncond (so the model learns the uncond branch)."""
    c = F.one_hot(labels, num_classes).float()
    keep = torch.rand(labels.shape[0], generator=generator, device=generator.device).to(labels.device) >= p_uncond
    return c * keep[:, None].to(c.dtype)


def _rand(shape, generator: torch.Generator, device: torch.device, like_int_high: int | None = None) -> Tensor:
    if like_int_high is not None:
        return torch.randint(0, like_int_high, shape, generator=generator, device=generator.device).to(device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


_ABAR_TABLES: dict = {}


def _abar_table(schedule: NoiseSchedule, device: torch.device, dtype: torch.dtype) -> Tensor:
    """schedule.abar's table (abar_t for t = 0..T-1, then 1) on the device, copied there once."""
    key = (id(schedule), str(device), dtype)
    hit = _ABAR_TABLES.get(key)
    if hit is None or hit[0] is not schedule:
        table = torch.cat([schedule.alphas_cumprod, torch.ones(1)]).to(device, dtype)
        hit = _ABAR_TABLES[key] = (schedule, table)
    return hit[1]


def training_loss(
    net,
    x: Tensor,
    labels: Tensor,
    config: TrainConfig,
    schedule: NoiseSchedule | None,
    generator: torch.Generator,
    *,
    rows: slice | None = None,
    n_global: int | None = None,
    ctx: DistContext = SINGLE,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> Tensor:
    """The L2 loss of one batch for the run's kind and objective. All randomness comes from `generator`.

    Multi-process (ctx): x and labels are this rank's `rows` of a global batch of n_global rows; the random draws are
    made for the whole global batch (the same on every rank) and sliced, so that every rank sees exactly what one
    process would, and the loss is this rank's share of the global mean (DDP averages the gradients).
    autocast_dtype / channels_last: the fast path (bf16 autocast, channels_last input); the loss is taken in fp32.
    """
    n_local, dev = x.shape[0], x.device
    n = n_global if n_global is not None else n_local
    sel = rows if rows is not None else slice(None)
    shape = (n, *x.shape[1:])

    def call(*args) -> Tensor:
        inp = args[0].contiguous(memory_format=torch.channels_last) if channels_last else args[0]
        with torch.autocast(dev.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            out = net(inp, *args[1:])
        return out.float()

    def mse(pred: Tensor, target: Tensor) -> Tensor:
        return sharded_mse(pred, target, n, ctx) if ctx.enabled else F.mse_loss(pred, target)

    if config.kind == "denoiser":  # B1: z = x + sigma eps, D(z) vs x; pure noise: z = eps (no trace of x)
        noise = _rand(shape, generator, dev)[sel]
        z = noise if config.pure_noise else x + config.sigma * noise
        return mse(call(z), x)
    c = None
    if config.kind == "class":  # one_hot_dropped, with the draw made for the whole global batch
        keep = torch.rand(n, generator=generator, device=generator.device).to(dev)[sel] >= config.p_uncond
        c = F.one_hot(labels, 10).float() * keep[:, None].float()
    if config.objective == "ddpm":  # B2: t ~ U{0..T-1} (the course's 1..T), predict eps
        t = _rand((n,), generator, dev, like_int_high=config.num_steps)[sel]
        eps = _rand(shape, generator, dev)[sel]
        if dev.type == "cpu":
            x_t = add_noise(x, t, eps, schedule)
        else:  # the same formula with abar kept on the device: no CPU indexing, no host round trip per step
            abar = _abar_table(schedule, dev, x.dtype)[t].reshape(-1, 1, 1, 1)
            x_t = abar.sqrt() * x + (1 - abar).sqrt() * eps
        return mse(call(x_t, (t.float() + 1) / config.num_steps, c), eps)
    # B3 flow matching: x_t = (1 - t) x0 + t x1, x0 noise, x1 data, predict u = x1 - x0
    x0 = _rand(shape, generator, dev)[sel]
    t = torch.rand(n, generator=generator, device=generator.device).to(dev)[sel]
    x_t = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * x
    return mse(call(x_t, t, c), x - x0)


def model_config(config: TrainConfig, provenance: dict) -> dict:
    """The JSON that goes beside the weights: enough to rebuild and use the model, and where it came from."""
    info = dataset_info(config.data)
    out = {
        "kind": config.kind,
        "objective": config.objective_name,
        "name": f"{config.data}-{config.kind}"
        + ("-flow" if config.objective == "flow" and config.kind != "denoiser" else ""),
        "data": config.data,
        "class_names": list(info.class_names),
        "image_shape": [1, 28, 28],
        "value_range": list(config.value_range),
        "unet": config.unet_config().to_dict(),
        "train": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        "provenance": provenance,
    }
    if config.kind != "denoiser" and config.objective == "ddpm":
        out["schedule"] = NoiseSchedule.linear(config.num_steps).to_config()
    if config.kind == "denoiser":
        out["sigma"] = config.sigma
        out["pure_noise"] = config.pure_noise
        if config.pure_noise:
            out["name"] = f"{config.data}-denoiser-pure-noise"
    return out


@dataclass
class EpochEnd:
    """What the per-epoch hook receives."""

    epoch: int
    step: int
    mean_loss: float
    model: CourseModel
    run_dir: Path
    partial: bool = False  # True when max_steps ended the run inside an epoch


class StopAtBoundary(KeyboardInterrupt):
    """Raised by the loop itself between two steps: the state there is exact, so it is saved."""


class StopRequest:
    """SIGINT/SIGTERM during a run: the first one asks the loop to stop at the next step boundary (it saves an
    exact checkpoint there); a second one stops at once, without saving (the last checkpoint stays)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


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
    fast: bool | None = None  # the fast path; None = on (bf16 autocast only where native, channels_last, ...)
    compile: bool = True  # torch.compile the train step on the fast path (CUDA only; CUDA graphs on one GPU)
    log_every: int = 50  # losses stay on the device and reach loss.csv (one row per step) every log_every steps
    precision: str = "auto"  # "auto" (bf16 autocast on the fast path where native, else fp32), "fp32" or "bf16"
    save_every: int | None = None  # also checkpoint every this many steps (a SIGKILL loses at most that many)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.device = torch.device(self.device)
        if self.precision not in ("auto", "fp32", "bf16"):
            raise DiffusionLabError(f"unknown precision {self.precision!r}; choose auto, fp32 or bf16")
        if self.log_every < 1:
            raise DiffusionLabError(f"--log-every must be at least 1, got {self.log_every}")
        if self.save_every is not None and self.save_every < 1:
            raise DiffusionLabError(f"--save-every must be at least 1 step, got {self.save_every}")
        cuda = self.device.type == "cuda"
        self.fast = True if self.fast is None else bool(self.fast)
        self.dist = current()  # torch.distributed already initialised (torchrun): DDP over the ranks
        # bf16 autocast on the fast path where the device computes bf16 natively (CUDA; CPUs with AVX512-BF16/AMX)
        self.autocast_dtype = fast_dtype(self.device, self.precision) if self.fast or self.precision == "bf16" else None
        self.channels_last = self.fast
        with torch.random.fork_rng(devices=[]):  # the initial weights depend on the seed alone
            torch.manual_seed(self.config.seed)
            self.net = UNet(self.config.unet_config()).to(self.device)
        if self.dist.enabled:  # global-batch BatchNorm statistics, so N ranks train what one process would
            self.net = sync_batchnorm(self.net, self.device)
        self.ema = ema_init(self.net) if self.config.ema_decay > 0 else None
        self.optimizer = torch.optim.Adam(
            self.net.parameters(), lr=self.config.lr, **({"fused": True} if self.fast and cuda else {"foreach": True})
        )
        self.lr_scheduler = (
            torch.optim.lr_scheduler.ExponentialLR(self.optimizer, self.config.lr_gamma)
            if self.config.lr_gamma
            else None
        )
        self.schedule = NoiseSchedule.linear(self.config.num_steps) if self.config.objective == "ddpm" else None
        self.generator = torch.Generator("cpu").manual_seed(self.config.seed)  # permutations (+ noise off CUDA)
        # on the CUDA fast path the per-step noise is drawn on the GPU (no host round trip); else the same generator
        self.noise_generator = (
            torch.Generator(self.device).manual_seed(self.config.seed) if self.fast and cuda else self.generator
        )
        self.train_net = wrap_ddp(self.net, self.device) if self.dist.enabled else self.net
        self._graphs = False
        if self.fast and cuda and self.compile:
            # CUDA graphs (reduce-overhead) on one GPU; with DDP plain compilation (collectives do not go in a graph)
            self._graphs = not self.dist.enabled
            self.train_net = torch.compile(
                self.train_net, mode="reduce-overhead" if self._graphs else None, dynamic=False
            )
        self.epoch = 0  # completed epochs
        self.step = 0  # completed optimizer steps
        self.batch_in_epoch = 0
        self.perm: Tensor | None = None
        self.train_seconds = 0.0
        self.last_losses: list[float] = []
        self.history: list[dict] = []  # one entry per session of the run (resumes), the last one is this one
        self._segment = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "from_step": 0,
            "device": self._device_name(),
            "threads": torch.get_num_threads(),
            "precision": "bf16" if self.autocast_dtype is not None else "fp32",
            "fast": self.fast,
        }

    def _device_name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return f"cpu ({_cpu_model()})"

    # -- state ----------------------------------------------------------------------------------------------
    def _provenance(self, split: Split, loss: float | None) -> dict:
        return {
            "command": self.command,
            "seed": self.config.seed,
            "data": self.config.data,
            "data_md5": split.md5,
            "epoch": self.epoch,
            "step": self.step,
            "loss": loss,
            "train_seconds": round(self.train_seconds, 2),
            "device": self._device_name() if self.device.type == "cuda" else str(self.device),
            "torch": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "ema_decay": self.config.ema_decay,
            "weights": "ema" if self.ema is not None else "raw",
            "history": self._history(),
        }

    def _history(self) -> list[dict]:
        segment = {**self._segment, "to_step": self.step, "command": self.command}
        return [*self.history, segment]

    def exported_state(self) -> dict[str, Tensor]:
        """The weights the run exports: the EMA when it is on, else the raw weights."""
        return ema_state_dict(self.ema, self.net) if self.ema is not None else self.net.state_dict()

    def save(self, split: Split, loss: float | None) -> Path:
        """The resume state (one atomic file: the checkpoint), then the exported model made from the same step."""
        config = model_config(self.config, self._provenance(split, loss))
        opt = self.optimizer.state_dict()
        meta = {
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "train_seconds": self.train_seconds,
            "param_groups": opt["param_groups"],
            "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler else None,
            "config": config["train"],
            "loss": loss,
            "history": config["provenance"]["history"],
        }
        state = RunState(
            meta,
            self.generator.get_state(),
            self.noise_generator.get_state() if self.noise_generator is not self.generator else None,
            self.perm,
            raw=self.net.state_dict(),
            ema=self.ema,
            optimizer=opt["state"],
        )
        write_state(self.run_dir / STATE_NAME, state)
        save_checkpoint(self.run_dir / WEIGHTS_NAME, self.exported_state(), config)
        return self.run_dir / WEIGHTS_NAME

    def load(self, state: RunState | None = None) -> None:
        """Continue a run from its state file alone (read here unless given): weights, EMA, optimizer, LR
        schedule, RNG and position."""
        state = state or read_state(self.run_dir / STATE_NAME)
        meta = state.meta
        raw = state.raw
        if raw is None:  # a state written before it held the weights: they are model.safetensors of the same step
            raw, saved = load_checkpoint(self.run_dir)
            if saved.get("provenance", {}).get("step") != meta["step"]:
                raise DiffusionLabError(
                    f"{self.run_dir}: cannot resume, model.safetensors is of step {saved.get('provenance', {}).get('step')} "
                    f"and train_state of step {meta['step']} (a write was cut short); start again from a snapshot"
                )
        try:
            self.net.load_state_dict(raw)
        except RuntimeError as e:
            raise DiffusionLabError(
                f"{self.run_dir}: cannot resume, the saved weights do not fit this run's network "
                f"({str(e).strip().splitlines()[0]}); use the run's own command or another --out"
            ) from None
        if self.ema is not None:
            self.ema = {k: v.to(self.device) for k, v in state.ema.items()} if state.ema else ema_init(self.net)
        self.generator.set_state(state.rng)
        if self.noise_generator is not self.generator:
            if state.noise_rng is not None:
                self.noise_generator.set_state(state.noise_rng)
            else:  # a run started on another path: continue with a noise stream derived from the saved one
                self.noise_generator.manual_seed(self.config.seed + 1_000_003 * meta["step"])
        self.perm = state.perm
        opt_state = {
            idx: {name: (v.to(self.device) if name != "step" else v) for name, v in st.items()}
            for idx, st in state.optimizer.items()
        }
        try:
            self.optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            raise DiffusionLabError(
                f"{self.run_dir / STATE_NAME}: its optimizer state does not fit this run's network ({e}); "
                "start a new run with another --out"
            ) from None
        if self.lr_scheduler and meta["lr_scheduler"]:
            self.lr_scheduler.load_state_dict(meta["lr_scheduler"])
        self.epoch, self.step = meta["epoch"], meta["step"]
        self.batch_in_epoch, self.train_seconds = meta["batch_in_epoch"], meta["train_seconds"]
        self.history = list(meta.get("history") or [])
        self._segment["from_step"] = self.step
        if self.dist.is_main:
            truncate_log(self.run_dir / LOG_NAME, self.step)

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self, split: Split | None = None) -> dict:
        with StopRequest() as stop:
            return self._run(split, stop)

    def _run(self, split: Split | None, stop: StopRequest) -> dict:
        cfg, ctx, main = self.config, self.dist, self.dist.is_main
        split = split or load_split(cfg.data, "train", self.data_dir)
        images = split.images.to(self.device)  # uint8 on the device; batches are sliced from it
        labels = split.labels.to(self.device)
        n = len(split)
        batches_per_epoch = math.ceil(n / cfg.batch_size)
        total = cfg.epochs * batches_per_epoch
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        log_path = self.run_dir / LOG_NAME
        log = _LossLog(log_path if main else None)
        bar = tqdm(
            total=total,
            initial=min(self.step, total),
            desc=f"train {cfg.kind} epoch {self.epoch + 1}/{cfg.epochs}",
            disable=not (self.progress and main),
            unit="step",
        )
        epoch_losses: list[float] = []
        pending: list[tuple[int, int, float]] = []  # (step, epoch, lr) of the steps whose loss is still on the device
        pending_losses: list[Tensor] = []
        mean_loss = None

        def flush(reduce: bool = True) -> None:
            """One host synchronisation for the last few steps: their rows go to loss.csv."""
            if not pending:
                return
            values = torch.stack(pending_losses).float()
            if reduce:
                values = all_reduce_mean(values, ctx)  # the global-batch loss (rank shares averaged)
            for (step, epoch, lr), value in zip(pending, values.tolist(), strict=True):
                epoch_losses.append(value)
                log.write(step, epoch, value, lr)
            bar.set_postfix(loss=f"{epoch_losses[-1]:.4f}")
            pending.clear()
            pending_losses.clear()

        self.net.train()
        start = time.perf_counter()
        try:
            while self.epoch < cfg.epochs and self.step < total:
                if self.perm is None:
                    self.perm = torch.randperm(n, generator=self.generator)
                    self.batch_in_epoch = 0
                bar.set_description(f"train {cfg.kind} epoch {self.epoch + 1}/{cfg.epochs}")
                perm = self.perm.to(self.device)  # one copy per epoch, not one per step
                while self.batch_in_epoch < batches_per_epoch and self.step < total:
                    if stop.signum is not None:  # a stop at a step boundary: the saved state is exact
                        raise StopAtBoundary
                    self._train_step(images, labels, perm, pending, pending_losses)
                    bar.update(1)
                    if len(pending) >= self.log_every:
                        flush()
                    if self.save_every and self.step % self.save_every == 0 and self.batch_in_epoch < batches_per_epoch:
                        flush()
                        log.flush()
                        self.train_seconds += time.perf_counter() - start
                        start = time.perf_counter()
                        if main:
                            self.save(split, _mean(epoch_losses))
                flush()
                self.train_seconds += time.perf_counter() - start
                start = time.perf_counter()
                if self.batch_in_epoch < batches_per_epoch:  # stopped by max_steps inside an epoch
                    break
                self.epoch += 1
                self.perm = None
                self.batch_in_epoch = 0
                if self.lr_scheduler:
                    self.lr_scheduler.step()
                mean_loss = _mean(epoch_losses)
                self.last_losses, epoch_losses = epoch_losses, []
                log.flush()
                self._end_of_epoch(split, mean_loss)
                start = time.perf_counter()
        except KeyboardInterrupt as interrupt:
            flush(reduce=False)  # pending losses belong to completed steps; no collective (other ranks may be gone)
            log.close()
            self.train_seconds += time.perf_counter() - start
            bar.close()
            if isinstance(interrupt, StopAtBoundary):  # between two steps: exact, save it
                if main:
                    self.save(split, mean_loss if mean_loss is not None else _mean(epoch_losses))
                    print(
                        f"\ninterrupted: saved the run at step {self.step} in {self.run_dir}; continue with --resume",
                        file=sys.stderr,
                    )
            elif main:
                print(
                    "\nstopped at once (inside a step): not saved; --resume continues from the last checkpoint",
                    file=sys.stderr,
                )
            raise
        finally:
            log.close()
            bar.close()
        if epoch_losses:  # a partial epoch (max_steps): still checkpoint it
            mean_loss = _mean(epoch_losses)
            self.last_losses = epoch_losses
            self._end_of_epoch(split, mean_loss, partial=True)
        self.net.eval()
        if main:
            plot_curves(
                {"training loss": read_loss_log(log_path)},
                self.run_dir / "loss.png",
                title=f"{cfg.data} {cfg.kind} {cfg.objective_name}",
            )
        return {
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "batches_per_epoch": batches_per_epoch,
            "loss": mean_loss,
            "run_dir": str(self.run_dir),
            "seconds": self.train_seconds,
        }

    def _train_step(self, images: Tensor, labels: Tensor, perm: Tensor, pending: list, pending_losses: list) -> None:
        cfg, ctx = self.config, self.dist
        idx = perm[self.batch_in_epoch * cfg.batch_size : (self.batch_in_epoch + 1) * cfg.batch_size]
        n_global = idx.shape[0]
        rows = None
        if ctx.enabled:  # this rank's disjoint slice of the global batch
            rows = shard_rows(n_global, ctx)
            idx = idx[rows]
        x = to_float(images[idx], cfg.value_range)
        if self._graphs:
            torch.compiler.cudagraph_mark_step_begin()
        loss = training_loss(
            self.train_net,
            x,
            labels[idx],
            cfg,
            self.schedule,
            self.noise_generator,
            rows=rows,
            n_global=n_global,
            ctx=ctx,
            autocast_dtype=self.autocast_dtype,
            channels_last=self.channels_last,
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        self.batch_in_epoch += 1
        if self.ema is not None:
            ema_update(self.ema, self.net, ema_decay_at(cfg.ema_decay, self.step))
        pending.append((self.step, self.epoch + 1, self.optimizer.param_groups[0]["lr"]))
        pending_losses.append(loss.detach())

    def _end_of_epoch(self, split: Split, mean_loss: float, partial: bool = False) -> None:
        if not self.dist.is_main:  # checkpoints and figures from rank 0 only
            return
        if not partial and self.epoch in self.config.snapshot_epochs:
            # snapshots before the state: a kill in between makes --resume redo this epoch end and write them again
            config = model_config(self.config, self._provenance(split, mean_loss))
            snap = self.run_dir / "snapshots" / f"epoch_{self.epoch}.safetensors"
            save_checkpoint(snap, self.exported_state(), config)
            if self.ema is not None:
                raw_config = {**config, "name": f"{config['name']} (raw weights)"}
                raw = self.run_dir / "snapshots" / "raw" / f"epoch_{self.epoch}.safetensors"
                save_checkpoint(raw, self.net.state_dict(), raw_config)
        self.save(split, mean_loss)
        if self.on_epoch_end is not None:
            was_training = self.net.training
            self.net.eval()
            model = CourseModel(_export_net(self), model_config(self.config, {}), self.device)
            self.on_epoch_end(EpochEnd(self.epoch, self.step, mean_loss, model, self.run_dir, partial))
            self.net.train(was_training)


def _export_net(trainer: Trainer) -> UNet:
    """The exported weights (EMA or raw) in a network of their own, for the epoch figures."""
    if trainer.ema is None:
        return trainer.net
    net = UNet(trainer.config.unet_config()).to(trainer.device)
    net.load_state_dict(trainer.exported_state())
    return net.eval()


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class _LossLog:
    """loss.csv, one whole row per step: rows are buffered and written whole on flush (a kill can tear only the
    last line of a write, which the reader and resume drop)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.rows: list[str] = []
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.is_file() or path.stat().st_size == 0:
                path.write_text(",".join(LOG_HEADER) + "\n")

    def write(self, step: int, epoch: int, loss: float, lr: float) -> None:
        if self.path is not None:
            self.rows.append(f"{step},{epoch},{loss:.6g},{lr:.6g}\n")

    def flush(self) -> None:
        if self.path is not None and self.rows:
            with self.path.open("a") as f:
                f.write("".join(self.rows))
                f.flush()
                os.fsync(f.fileno())
            self.rows.clear()

    close = flush


def read_loss_log(path: str | Path) -> list[float]:
    return [r["loss"] for r in read_log_rows(Path(path))]


def _only_run_leftovers(run_dir: Path) -> bool:
    """Does the folder hold only what a run writes before its first checkpoint (log, figures, temp files)?"""
    allowed = {LOG_NAME, "loss.png", "figures", "snapshots"}
    return all(p.name in allowed or (p.name.startswith(".") and p.name.endswith(".tmp")) for p in run_dir.iterdir())


def open_run(config: TrainConfig, run_dir: str | Path, resume: bool, **kwargs) -> Trainer:
    """A new run in a new or empty directory, or the continuation of the one there with resume=True."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise DiffusionLabError(f"--out {run_dir}: is a file; a run needs a directory of its own")
    existing = (run_dir / STATE_NAME).exists() or (run_dir / WEIGHTS_NAME).exists()
    leftovers = not existing and run_dir.is_dir() and any(run_dir.iterdir()) and _only_run_leftovers(run_dir)
    if resume and not existing and not leftovers:
        raise DiffusionLabError(
            f"--resume: no run to continue in {run_dir} (no {STATE_NAME}); drop --resume to start one"
        )
    if existing and not resume:
        raise DiffusionLabError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --out")
    if not existing and run_dir.is_dir() and any(run_dir.iterdir()):
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
        config = replace(
            config, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in train.items() if k in known}
        )
        if "ema_decay" not in train:  # a run from before EMA: it continues without one, as it was trained
            config = replace(config, ema_decay=0.0)
    trainer = Trainer(config, run_dir, **kwargs)
    if resume:
        trainer.load(state)
    return trainer
