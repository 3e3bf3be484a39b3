"""DeepFloyd IF stage I (64 px) and stage II (x4 super-resolution) behind the project's model protocol.

Stage II is a protocol model too: its `predict` sees the noised, upsampled stage-I images it was given
(`set_low_res`; diffusionlab.upscale makes them), so CFG, anagram and hybrid estimators and the one `denoise`
loop work on it unchanged. The algorithms live outside this package: sampling, guidance, diffusionlab.upscale.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from diffusionlab.deepfloyd.prompts import PromptEncoder
from diffusionlab.deepfloyd.weights import (
    STAGE2_DEFAULT,
    oom_message,
    resolve_model_id,
    sampler_defaults,
    scheduler_timesteps,
)
from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_kinds import IF
from diffusionlab.model_protocol import DiffusionModel, Prediction
from diffusionlab.schedule import NoiseSchedule


class GpuSlot:
    """Model CPU offload (--offload): the IF networks that share a slot (stage I and its stage II) take turns on
    the GPU; `use(hook)` sends the one there now back to the CPU before another runs. None: no offload."""

    def __init__(self) -> None:
        self.active: Any = None

    def use(self, hook: Any) -> None:
        if hook is None or self.active is hook:
            return
        if self.active is not None:
            self.active.offload()
        self.active = hook


class IFAdapter(DiffusionModel):
    """What both stages share: IF's UNet and scheduler, the T5 prompt encoder, the protocol's predict."""

    kind = IF  # 3 eps channels + 3 learned-range variance values; IF's defaults (model_kinds.IF)
    value_range = (-1.0, 1.0)
    conditioned = True  # text prompts (T5)

    def __init__(
        self,
        unet,
        scheduler,
        prompts: PromptEncoder,
        device,
        dtype,
        model_id: str,
        hook=None,
        slot: GpuSlot | None = None,
    ) -> None:
        self.unet = unet.eval()
        self.scheduler = scheduler
        self.prompts = prompts
        self.device = torch.device(device)
        self.dtype = dtype
        self.precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")
        self.model_id = self.name = model_id
        self._hook = hook
        self.slot = slot if slot is not None else GpuSlot()
        # the betas themselves, so that abar is bit-identical to the scheduler's alphas_cumprod
        self.schedule = NoiseSchedule(scheduler.betas.detach().to("cpu", torch.float32), "cosine")
        size = int(unet.config.sample_size)
        self.image_shape = (int(unet.config.out_channels) // 2, size, size)
        self.sampler_defaults = sampler_defaults(scheduler, self.value_range)

    @property
    def filter_scale(self) -> float:
        """Hybrid-image filter sizes are given for 64 px; scale them by this (4 in stage II)."""
        return self.image_shape[-1] / 64

    def timesteps(self, num_steps: int) -> list[int]:
        return scheduler_timesteps(self.scheduler, num_steps)

    def encode(self, prompts: list[str]) -> Tensor:
        return self.prompts(prompts)

    def null(self, n: int) -> Tensor:
        e = self.prompts([""])
        return e.expand(n, *e.shape[1:])

    def _unet_input(self, x_t: Tensor) -> Tensor:
        return x_t

    def _class_labels(self, n: int) -> Tensor | None:
        return None

    @torch.no_grad()
    def predict(self, x_t: Tensor, t: Tensor | int, cond: Tensor) -> Prediction:
        n = x_t.shape[0]
        self.slot.use(self._hook)
        t = torch.as_tensor(t, device=self.device).reshape(-1).long().expand(n)
        cond = cond.expand(n, *cond.shape[1:]) if cond.shape[0] == 1 else cond
        try:
            out = self.unet(
                self._unet_input(x_t).to(self.device, self.dtype),
                t,
                encoder_hidden_states=cond.to(self.device, self.dtype),
                class_labels=self._class_labels(n),
                return_dict=False,
            )[0]
        except torch.cuda.OutOfMemoryError:
            raise DiffusionLabError(oom_message(f"running the {self.name} UNet on {n} images")) from None
        out = out.to(x_t.dtype)
        c = x_t.shape[1]
        return Prediction(out[:, :c], out[:, c : 2 * c])


class IFModel(IFAdapter):
    """IF stage I (64 px, T = 1000 cosine, learned-range variance, dynamic thresholding) as a protocol model.

    stage2_loader: model id -> its stage II, from the same --model-dir / cache, sharing this T5 cache and GPU slot
    (the loader that built this model gives it)."""

    def __init__(
        self,
        *args,
        model_dir=None,
        offload: bool = False,
        stage2_loader: Callable[[str], IFStage2] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.model_dir, self.offload = model_dir, offload
        self._stage2_loader = stage2_loader
        self._stage2: dict[str, IFStage2] = {}

    def stage2(self, spec: str = STAGE2_DEFAULT) -> IFStage2:
        """The stage-II super-resolution model (loaded once per model id)."""
        model_id = resolve_model_id(spec, STAGE2_DEFAULT)
        if model_id not in self._stage2:
            if self._stage2_loader is None:
                raise DiffusionLabError(f"{self.name} has no stage II loader; load one with load_stage2")
            self._stage2[model_id] = self._stage2_loader(model_id)
        return self._stage2[model_id]


class IFStage2(IFAdapter):
    """IF stage II: predict sees the noised, upsampled low-res images set by `set_low_res`.

    The low-res rows are tiled over the batch (row b uses low_res[b % m]), which fits every estimator's
    batch layout: CFG [x, x], hybrid [x, x, x, x], anagrams [v1(x)..vk(x), v1(x)..vk(x)] with the viewed
    low-res images [v1(lr)..vk(lr)].
    """

    def __init__(self, unet, scheduler, noising_scheduler, *args, **kwargs) -> None:
        super().__init__(unet, scheduler, *args, **kwargs)
        self.noising_schedule = NoiseSchedule(noising_scheduler.betas.detach().to("cpu", torch.float32), "cosine")
        self.low_res: Tensor | None = None
        self.noise_level = 250

    def check_noise_level(self, noise_level: int) -> int:
        if not 0 <= int(noise_level) < self.noising_schedule.num_steps:
            raise DiffusionLabError(f"noise level {noise_level} out of range 0..{self.noising_schedule.num_steps - 1}")
        return int(noise_level)

    def set_low_res(self, low_res: Tensor, noise_level: int) -> None:
        """The condition of the next predicts: low-res images at stage II's size, noised to noise_level."""
        self.low_res, self.noise_level = low_res, self.check_noise_level(noise_level)

    def _unet_input(self, x_t: Tensor) -> Tensor:
        if self.low_res is None:
            raise DiffusionLabError(
                "stage II needs its low-resolution images first: diffusionlab.upscale.upscale (or its condition)"
            )
        m = self.low_res.shape[0]
        if x_t.shape[0] % m:
            raise DiffusionLabError(f"stage II batch of {x_t.shape[0]} does not tile its {m} low-res images")
        low = self.low_res.repeat(x_t.shape[0] // m, 1, 1, 1)
        return torch.cat([x_t, low.to(x_t.device, x_t.dtype)], dim=1)

    def _class_labels(self, n: int) -> Tensor:
        return torch.full((n,), self.noise_level, device=self.device, dtype=torch.long)
