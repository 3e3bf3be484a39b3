"""The adapter for the project's own checkpoints (CourseModel) behind the model protocol (diffusionlab.protocol).

The protocol names (Prediction, DiffusionModel, default_device, resolve_device) live in diffusionlab.protocol and
stay importable from here for older code; the spec -> model lookup (load_model, SHIPPED, shipped_path,
shipped_weights_dir) is diffusionlab.model_registry's, which imports this module (never the other way round).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from diffusionlab.checkpoint import load_checkpoint
from diffusionlab.errors import DiffusionLabError
from diffusionlab.models.unet import UNet, UNetConfig
from diffusionlab.protocol import DiffusionModel, Prediction, default_device, resolve_device  # noqa: F401  (old home)
from diffusionlab.schedule import NoiseSchedule

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NULL_PROMPTS = ("", "none", "uncond", "unconditional", "null")


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def class_index(prompt: str, class_names: list[str]) -> int | None:
    """ "3", "three", "sneaker", "T-shirt/top", "tshirt" -> class index; a null prompt -> None."""
    p = _normalise(prompt)
    if p in NULL_PROMPTS:
        return None
    for i, name in enumerate(class_names):
        aliases = {_normalise(name), str(i)} | {_normalise(part) for part in name.split("/")}
        if class_names[:10] == [str(d) for d in range(10)][: len(class_names)]:
            aliases.add(NUMBER_WORDS[i])
        if p in aliases:
            return i
    valid = ", ".join(f"{i}={n}" for i, n in enumerate(class_names))
    raise DiffusionLabError(f"unknown prompt {prompt!r}; valid prompts for this model: {valid} (or '' for none)")


class CourseModel:
    """One of our checkpoints (denoiser, time or class UNet; DDPM or flow) behind the model protocol.

    DDPM timesteps are 0-indexed integers; the network sees (t + 1) / T, the course's t / T with its 1-indexed t.
    Flow models take t in [0, 1] (0 = noise, 1 = data) through `velocity`.
    """

    predicts_variance = False  # eps only (protocol.is_if_like)

    def __init__(self, net: UNet, config: dict, device: torch.device | None = None) -> None:
        self.device = device or torch.device("cpu")
        self.net = net.to(self.device).eval()
        self.config = config
        self.kind: str = config["kind"]
        self.objective: str = config.get("objective", "ddpm")
        self.class_names: list[str] = list(config.get("class_names", []))
        self.num_classes = net.config.num_classes
        shape = config.get("image_shape", [1, 28, 28])
        self.image_shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.value_range = tuple(config.get("value_range", (0.0, 1.0)))
        self.schedule = NoiseSchedule.from_config(config["schedule"]) if "schedule" in config else None
        self.name = config.get("name", config.get("data", "model"))

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device | None = None) -> CourseModel:
        state, config = load_checkpoint(path)
        if "unet" not in config or "kind" not in config:
            raise DiffusionLabError(
                f"{path}: checkpoint config has no 'unet'/'kind' entry; not a course UNet checkpoint"
            )
        try:
            net = UNet(UNetConfig.from_dict(config["unet"]))
        except (TypeError, ValueError, RuntimeError, AttributeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DiffusionLabError(
                f"{path}: the config's 'unet' entry does not describe a network ({first})"
            ) from None
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise DiffusionLabError(f"{path}: weights do not fit the config's network ({first})") from None
        return cls(net, config, device)

    def require(self, kind: str | tuple[str, ...], objective: str | None = None, what: str = "this") -> None:
        kinds = (kind,) if isinstance(kind, str) else kind
        if self.kind not in kinds or (objective is not None and self.objective != objective):
            want = "/".join(kinds) + (f" {objective}" if objective else "")
            raise DiffusionLabError(
                f"{what} needs a {want} model, but {self.name} is a {self.kind} {self.objective} model"
            )

    # -- conditions -----------------------------------------------------------------------------------------
    def encode(self, prompts: list[str]) -> Tensor:
        if not self.num_classes:
            bad = [p for p in prompts if _normalise(p) not in NULL_PROMPTS]
            if bad:
                raise DiffusionLabError(f"{self.name} is not class-conditioned; it takes no prompt (got {bad[0]!r})")
            return self.null(len(prompts))
        c = torch.zeros(len(prompts), self.num_classes, device=self.device)
        for row, prompt in enumerate(prompts):
            idx = class_index(prompt, self.class_names)
            if idx is not None:
                c[row, idx] = 1.0
        return c

    def null(self, n: int) -> Tensor:
        return torch.zeros(n, max(self.num_classes, 1), device=self.device)

    # -- network calls --------------------------------------------------------------------------------------
    def _class_input(self, cond: Tensor | None, n: int) -> Tensor | None:
        if not self.num_classes:
            return None
        return cond if cond is not None else self.null(n)

    @torch.no_grad()
    def predict(self, x_t: Tensor, t: Tensor | int, cond: Tensor | None = None) -> Prediction:
        self.require(("time", "class"), "ddpm", "DDPM noise prediction")
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        t_in = (t.float() + 1) / self.schedule.num_steps
        return Prediction(self.net(x_t, t_in, self._class_input(cond, x_t.shape[0])))

    @torch.no_grad()
    def predict_branches(self, x_t: Tensor, k: int, t: Tensor | int, cond: Tensor | None = None) -> Prediction:
        """predict(cat([x_t] * k), t, cond) for k branches of one input (cond and t branch-major, k N rows), with
        the layers before the first condition computed once (UNet.branches): CFG's two branches, a hybrid's three."""
        self.require(("time", "class"), "ddpm", "DDPM noise prediction")
        n = x_t.shape[0] * k
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(n)
        t_in = (t.float() + 1) / self.schedule.num_steps
        return Prediction(self.net.branches(x_t, k, t_in, self._class_input(cond, n)))

    @torch.no_grad()
    def velocity(self, x_t: Tensor, t: Tensor | float, cond: Tensor | None = None) -> Tensor:
        self.require(("time", "class"), "flow", "flow sampling")
        t = torch.as_tensor(t, device=x_t.device, dtype=x_t.dtype).reshape(-1).expand(x_t.shape[0])
        return self.net(x_t, t, self._class_input(cond, x_t.shape[0]))

    @torch.no_grad()
    def denoise_once(self, z: Tensor) -> Tensor:
        self.require("denoiser", what="single-step denoising")
        return self.net(z)
