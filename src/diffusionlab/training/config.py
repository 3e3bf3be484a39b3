"""What a training run is: its config, the course's recipes (per-kind defaults) and the JSON beside the weights."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from diffusionlab.data import dataset_info
from diffusionlab.errors import DiffusionLabError
from diffusionlab.networks.unet import UNetConfig, check_image_size
from diffusionlab.schedule import NoiseSchedule

KINDS = ("denoiser", "time", "class")
OBJECTIVES = ("ddpm", "flow")
# course: x lr_gamma after every epoch (the course's ExponentialLR; constant where lr_gamma is None);
# cosine: set every step by cosine_lr over the run's steps, for runs with a short budget (--max-steps)
LR_SCHEDULES = ("course", "cosine")
COSINE_WARMUP = 0.05  # share of the steps of the cosine schedule's linear warm-up


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
    lr_schedule: str = "course"  # LR_SCHEDULES
    sigma: float = 0.5  # the denoiser's noise level
    pure_noise: bool = False  # the denoiser maps pure noise z ~ N(0, I) to digits (Fall 2025 B1.2.3)
    p_uncond: float = 0.1
    num_steps: int = 300  # DDPM T
    seed: int = 0
    max_steps: int | None = None
    snapshot_epochs: tuple[int, ...] = (1, 5, 20)
    value_range: tuple[float, float] = (0.0, 1.0)
    ema_decay: float = 0.999  # EMA of the weights (what the run exports); 0 = off, the raw weights are exported
    # the data's shape (imagefolder.py): an image folder's size, channels and classes; IDX data are 1 x 28 x 28
    image_size: int = 28
    channels: int = 1
    class_names: tuple[str, ...] | None = None  # an image folder's subfolders (() for a flat one); None: IDX data
    hflip: bool = False  # flip each training image left-right with probability 1/2 (augmentation)

    def check(self) -> TrainConfig:
        if self.kind not in KINDS:
            raise DiffusionLabError(f"unknown model kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.objective not in OBJECTIVES:
            raise DiffusionLabError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        self._check_data()
        check_counts(self)
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise DiffusionLabError(f"--lr must be a positive number, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise DiffusionLabError(f"unknown --lr-schedule {self.lr_schedule!r}; choose {' or '.join(LR_SCHEDULES)}")
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise DiffusionLabError(f"--sigma must be a positive number, got {self.sigma}")
        if self.pure_noise and self.kind != "denoiser":
            raise DiffusionLabError(
                "--pure-noise is for the single-step denoiser: diffusionlab train denoiser --pure-noise"
            )
        if not 0 <= self.ema_decay < 1:
            raise DiffusionLabError(f"--ema-decay must be in [0, 1) (0 turns EMA off), got {self.ema_decay}")
        return self

    def _check_data(self) -> None:
        if self.class_names is None:  # an IDX data set: its own name, 28 px grey
            dataset_info(self.data)
            if (self.image_size, self.channels) != (28, 1):
                raise DiffusionLabError(
                    f"--image-size {self.image_size}: IDX data are 28 px; --image-size is for a --data-dir of images"
                )
        check_image_size(self.image_size)
        if self.channels not in (1, 3):
            raise DiffusionLabError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if self.kind == "class" and not self.names:
            raise DiffusionLabError(
                f"{self.data}: a flat image folder has no classes; train a time model on it, "
                "or put its images in one subfolder per class"
            )

    @property
    def names(self) -> tuple[str, ...]:
        """The class names: an image folder's subfolders, or the IDX data set's."""
        return tuple(self.class_names) if self.class_names is not None else dataset_info(self.data).class_names

    @property
    def num_classes(self) -> int:
        return len(self.names) if self.kind == "class" else 0

    @property
    def objective_name(self) -> str:
        return "denoise" if self.kind == "denoiser" else self.objective

    def unet_config(self) -> UNetConfig:
        if self.kind == "denoiser":
            return UNetConfig(self.hidden, self.channels, image_size=self.image_size)
        mul_time = self.objective == "flow" and self.kind == "time"  # the course's flow time model: Unflatten * t1
        return UNetConfig(
            self.hidden,
            self.channels,
            time_conditioned=True,
            num_classes=self.num_classes,
            time_mode="mul" if mul_time else "add",
            image_size=self.image_size,
        )


# what the model loader accepts (model_files.py): a run beyond them would train weights nothing can load
COUNT_LIMITS = {"epochs": None, "batch_size": None, "hidden": 2048, "num_steps": 100_000, "max_steps": None}


def check_counts(config: TrainConfig) -> None:
    """The run's counts are whole numbers of at least 1 (max_steps may be None: no cap), within the loader's
    limits: --epochs 0 or --max-steps 0 would train nothing and export nothing, and a T of 2e9 would fill memory
    building the noise schedule."""
    for name, most in COUNT_LIMITS.items():
        value = getattr(config, name)
        if value is None and name == "max_steps":
            continue
        if type(value) is not int or value < 1 or (most is not None and value > most):
            upper = f" and at most {most:,}" if most is not None else ""
            raise DiffusionLabError(
                f"--{name.replace('_', '-')} must be a whole number of at least 1{upper}, got {value}"
            )


def check_fits_data(config: TrainConfig, n_images: int) -> None:
    """A batch is at most the whole data set: a larger --batch-size would silently train on fewer images per
    step than asked (or fail inside the first step on several processes), so it is refused before any work."""
    if n_images < 1:
        raise DiffusionLabError(f"{config.data}: the training data hold no images")
    if config.batch_size > n_images:
        raise DiffusionLabError(
            f"--batch-size {config.batch_size} is larger than the training data ({n_images} images); "
            f"give at most {n_images}"
        )


def cosine_lr(lr: float, step: int, total: int) -> float:
    """The cosine schedule's LR for optimizer step `step` (0-based) of `total`: a linear warm-up over the first
    COSINE_WARMUP of the steps, then a half cosine from lr toward 0 at the end of the run."""
    warmup = max(1, round(COSINE_WARMUP * total))
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


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
    check_counts(replace(base, **overrides))  # before the LR decay below divides by the epochs
    if "epochs" in overrides and "lr_gamma" not in overrides and base.lr_gamma is not None:
        # the LR decays by 10x over the whole run whatever its length, as the course's gamma = 0.1^(1/epochs)
        overrides["lr_gamma"] = 0.1 ** (1 / overrides["epochs"])
    return replace(base, **overrides).check()


def model_config(config: TrainConfig, provenance: dict) -> dict:
    """The JSON that goes beside the weights: enough to rebuild and use the model, and where it came from."""
    out = {
        "kind": config.kind,
        "objective": config.objective_name,
        "name": f"{config.data}-{config.kind}"
        + ("-flow" if config.objective == "flow" and config.kind != "denoiser" else ""),
        "data": config.data,
        "class_names": list(config.names),
        "image_shape": [config.channels, config.image_size, config.image_size],
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
