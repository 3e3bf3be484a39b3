"""The model protocol every tool runs on: a leaf module (torch and the error type only), so that the algorithms
(sampling, guidance, edits) and every adapter (our checkpoints, DeepFloyd IF) can import it without importing
each other.

A model answers `predict(x_t, t, cond) -> Prediction(output, var_values)` for a batch, says its `kind`
(diffusionlab.model_kinds: what its output means, its times, defaults and tools), knows its `schedule`,
`image_shape` and `value_range`, and turns prompts into conditions (`encode`) or the null condition (`null`).
Adapters subclass DiffusionModel to take its defaults (no measured CFG scale, no own step-rule settings, CFG's
branches as k copies of the batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import Tensor

from diffusionlab.errors import DiffusionLabError

if TYPE_CHECKING:
    from diffusionlab.model_kinds import ModelKind
    from diffusionlab.schedule import NoiseSchedule


@dataclass
class Prediction:
    """output: what the model's kind predicts (model.kind.output: the noise eps for DDPMs and IF, the velocity u
    for flow models), (N, C, H, W). var_values: learned-range variance values in [-1, 1] (IF), or None."""

    output: Tensor
    var_values: Tensor | None = None


@runtime_checkable
class DiffusionModel(Protocol):
    name: str
    kind: ModelKind
    schedule: NoiseSchedule | None  # a DDPM's (None: a kind without a noise schedule)
    image_shape: tuple[int, int, int]
    value_range: tuple[float, float]
    device: torch.device
    conditioned: bool  # whether prompts change the output (class or text conditioned)
    data: str | None = None  # the data set it was trained on where ours ("mnist", ...): its test images, classifier
    class_names: Sequence[str] = ()  # a class-conditioned model's classes (none for IF's text prompts)
    spec: str | None = None  # the --model spec it was loaded from (backends.load_model); None when built by hand
    precision: str = "fp32"  # what its network runs in: "fp32", "bf16" (the fast path's choice), "fp16" (IF)
    default_guidance_scale: float | None = None  # a measured CFG scale; None: the kind's (kind.guidance_scale)
    sampler_defaults: Mapping = MappingProxyType({})  # the model's own step-rule settings over its kind's

    def predict(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Prediction: ...

    def predict_branches(self, x_t: Tensor, k: int, t: Tensor, conds: Tensor) -> Prediction:
        """predict(cat([x_t] * k), t, conds) for k branches of one input (conds branch-major, k N rows): CFG's
        two, a hybrid's three. A model that can share work between the branches overrides it."""
        return self.predict(torch.cat([x_t] * k), t, conds)

    def encode(self, prompts: list[str]) -> Tensor: ...

    def null(self, n: int) -> Tensor: ...


def generator_for(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The one way a seed becomes a random stream: a CPU generator, so that a seed gives the same image on every
    device (noise drawn on it is moved to the model's device by randn). `device` only where the draws must stay on
    the device (the training noise on the CUDA fast path: no host round trip per step)."""
    return torch.Generator(device).manual_seed(int(seed))


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
