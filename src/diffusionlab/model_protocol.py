"""The model protocol every tool runs on: a leaf module (torch and the error type only), so that the algorithms
(sampling, guidance, edits) and every adapter (our checkpoints, DeepFloyd IF) can import it without importing
each other.

A model answers `predict(x_t, t, cond) -> Prediction(eps, var_values)` for a batch, knows its `schedule`,
`image_shape` and `value_range`, and turns prompts into conditions (`encode`) or the null condition (`null`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from diffusionlab.errors import DiffusionLabError

if TYPE_CHECKING:
    from diffusionlab.schedule import NoiseSchedule


@dataclass
class Prediction:
    """eps: the noise estimate (N, C, H, W). var_values: learned-range variance values in [-1, 1], or None."""

    eps: Tensor
    var_values: Tensor | None = None


@runtime_checkable
class DiffusionModel(Protocol):
    schedule: NoiseSchedule
    image_shape: tuple[int, int, int]
    value_range: tuple[float, float]
    device: torch.device

    def predict(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Prediction: ...

    def encode(self, prompts: list[str]) -> Tensor: ...

    def null(self, n: int) -> Tensor: ...


def predicts_variance(model: Any) -> bool:
    """Whether the model returns learned-range variance values (IF does, our UNets do not): its own
    `predicts_variance` attribute; a model that does not say is taken not to."""
    return bool(getattr(model, "predicts_variance", False))


def is_if_like(model: Any) -> bool:
    """Whether a model is DeepFloyd-IF-like, from its own attributes: images in [-1, 1] and learned-range variance
    (IF's 3 noise + 3 variance channels). Such models take IF's defaults: DDPM steps with their learned variance
    and dynamic thresholding, CFG 7, the course's strided timesteps."""
    return predicts_variance(model) and tuple(float(v) for v in model.value_range) == (-1.0, 1.0)


def generator_for(seed: int) -> torch.Generator:
    """The one way a seed becomes a random stream: a CPU generator, so that a seed gives the same image on every
    device (noise drawn on it is moved to the model's device by randn)."""
    return torch.Generator("cpu").manual_seed(int(seed))


def randn(
    shape: Sequence[int],
    generator: torch.Generator | None,
    like: Tensor | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Gaussian noise drawn on the generator's device (so a seed gives the same image on any device)."""
    if like is not None:
        device, dtype = like.device, like.dtype
    gen_device = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype).to(device)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return default_device()
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise DiffusionLabError(f"unknown device {device!r} ({e}); use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DiffusionLabError(f"device {device!r} asked for but no CUDA GPU is available; use --device cpu")
    return dev
