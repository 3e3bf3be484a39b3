"""Super-resolution (DeepFloyd IF stage II, x4) as an edit on the one sampler loop, `sampling.denoise`.

A super-resolution model is a protocol model whose `predict` also sees low-resolution images (`set_low_res`):
here they are made (the stage-I images upsampled bilinearly to its size and noised to `noise_level` on its own
noising schedule, viewed for anagrams), and its images are denoised from pure noise with CFG or any estimator
built on it. IF's IFSuperResolutionPipeline defaults: guidance 4, 50 steps, noise level 250.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from diffusionlab.errors import DiffusionLabError
from diffusionlab.guidance import cfg
from diffusionlab.model_protocol import DiffusionModel, randn
from diffusionlab.sampling import Callback, run, timesteps_for
from diffusionlab.schedule import NoiseSchedule, add_noise
from diffusionlab.views import View


class SuperResolutionModel(DiffusionModel, Protocol):
    """IF stage II (deepfloyd.IFStage2): the protocol, plus its low-res condition and sampler settings."""

    noising_schedule: NoiseSchedule
    sampler_defaults: dict[str, Any]

    def check_noise_level(self, noise_level: int) -> int: ...

    def set_low_res(self, low_res: Tensor, noise_level: int) -> None: ...

    def timesteps(self, num_steps: int) -> list[int]: ...


def _apply_view(view: Any, low: Tensor, abar: float, value_range: tuple[float, float]) -> Tensor:
    """A views.View sees the low-res image as the noisy image it is (apply_noisy); a plain callable is applied."""
    if isinstance(view, View):
        return view.apply_noisy(low, abar, value_range)
    if callable(view):
        return view(low)
    raise DiffusionLabError(f"cannot apply view {view!r} to the stage II low-res images")


def condition(
    model: SuperResolutionModel,
    images: Tensor,
    noise_level: int = 250,
    generator: torch.Generator | None = None,
    views: Sequence[Callable[[Tensor], Tensor]] | None = None,
) -> Tensor:
    """Upsample low-res images (N, 3, h, w) in [-1, 1] bilinearly, noise them to noise_level and give them to the
    model. With views (anagrams), the viewed copies [v1(lr)..vk(lr)], matching the estimator's batch layout."""
    level = model.check_noise_level(noise_level)
    size = model.image_shape[1:]
    up = F.interpolate(images.float().to(model.device), size, mode="bilinear", align_corners=True)
    noise = randn(up.shape, generator, like=up)
    low = add_noise(up, level, noise, model.noising_schedule)
    if views:
        abar = float(model.noising_schedule.abar(level))
        low = torch.cat([_apply_view(v, low, abar, model.value_range) for v in views])
    model.set_low_res(low, level)
    return low


def upscale(
    model: SuperResolutionModel,
    images: Tensor,
    cond: Tensor | None = None,
    uncond: Tensor | None = None,
    scale: float = 4.0,
    timesteps: Sequence[int] | None = None,
    num_steps: int = 50,
    noise_level: int = 250,
    generator: torch.Generator | None = None,
    estimator: Callable | None = None,
    views: Sequence[Any] | None = None,
    progress: bool = True,
    callback: Callback | None = None,
) -> Tensor:
    """Stage-I images (N, 3, 64, 64) in [-1, 1] -> (N, 3, 256, 256) with CFG (IFSuperResolutionPipeline defaults:
    guidance 4, 50 steps, noise level 250), on `sampling.run` (IF's step rule: its scheduler's settings).

    estimator: any estimator built on `model` (anagram, hybrid ...) instead of plain CFG; for anagrams pass the
    same views so the low-res images are viewed too. Noise is drawn as x_T first, then the low-res noise, then
    one per step, all from `generator`.
    """
    n = images.shape[0]
    ts = list(timesteps) if timesteps is not None else timesteps_for(model, num_steps)
    x = randn((n, *model.image_shape), generator, device=model.device)
    condition(model, images, noise_level, generator, views)
    if estimator is None:
        if cond is None:
            raise DiffusionLabError("stage II needs a prompt embedding (cond) or an estimator")
        estimator = cfg(model, cond, uncond if uncond is not None else model.null(1), scale)
    return run(model, x, ts, estimator, generator=generator, progress=progress, callback=callback)  # the kind's rule
