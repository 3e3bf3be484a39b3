"""The adapter for the project's own checkpoints (CourseModel) behind the model protocol (diffusionlab.model_protocol).

The protocol names (Prediction, DiffusionModel, default_device, resolve_device) live in diffusionlab.model_protocol and
stay importable from here for older code; the spec -> model lookup (load_model, SHIPPED, shipped_path,
shipped_weights_dir) is diffusionlab.backends's, which imports this module (never the other way round).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor

from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_files import check_fit, load_checkpoint
from diffusionlab.model_kinds import DDPM, DENOISER, FLOW, ModelKind
from diffusionlab.model_protocol import DiffusionModel, Prediction, default_device, resolve_device  # noqa: F401  (old home)
from diffusionlab.networks.unet import UNet, UNetConfig
from diffusionlab.schedule import NoiseSchedule

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# kind -> (time-conditioned, class-conditioned): what the network of each kind of model takes
KIND_NETWORKS = {"denoiser": (False, False), "time": (True, False), "class": (True, True)}
_WORDS = re.compile(r"[a-z]+(?:[ _/-][a-z]+)*")  # letters, words joined by one space, _, / or -


def network_kind_problem(kind: str, unet: UNetConfig) -> str | None:
    """What is wrong with a config whose "kind" does not match the network its "unet" entry describes, or None."""
    if kind not in KIND_NETWORKS:
        return f'"kind" is {kind!r}; a course model is one of {", ".join(KIND_NETWORKS)}'
    timed, classes = KIND_NETWORKS[kind]
    if unet.time_conditioned != timed or bool(unet.num_classes) != classes:
        takes = ["time" if unet.time_conditioned else "", f"{unet.num_classes} classes" if unet.num_classes else ""]
        has = " and ".join(t for t in takes if t) or "no condition"
        return f'"kind" is {kind!r} but its network ("unet") takes {has}'
    return None


def prompt_aliases(class_names: list[str]) -> dict[str, int]:
    """Every accepted spelling (lower case, separators removed) -> class index: the names, each part of a name
    with a slash ("T-shirt/top": tshirttop, tshirt, top), and for digit classes the number words."""
    aliases: dict[str, int] = {}
    digits = class_names[:10] == [str(d) for d in range(10)][: len(class_names)]
    for i, name in enumerate(class_names):
        for spelling in (name, *name.split("/"), NUMBER_WORDS[i] if digits and i < 10 else ""):
            key = re.sub(r"[ _/-]", "", spelling.lower())
            if key:
                aliases.setdefault(key, i)
    return aliases


def class_index(prompt: str | int, class_names: list[str]) -> int | None:
    """ "3", "three", "sneaker", "T-shirt/top", "tshirt", or the int 3 -> class index; "" (the one way to ask
    for no class) -> None. Anything else is refused with the valid prompts: "-1", "1.", "one!" or an emoji are not
    quietly read as a class or as unconditional."""
    if isinstance(prompt, int) and not isinstance(prompt, bool):
        if 0 <= prompt < len(class_names):
            return prompt
        raise DiffusionLabError(_unknown(prompt, class_names, f"class index {prompt} is out of range"))
    if not isinstance(prompt, str):
        raise DiffusionLabError(
            _unknown(prompt, class_names, f"a prompt is text or a class index, not {type(prompt).__name__}")
        )
    p = prompt.strip().lower()
    if not p:
        return None
    if p in [str(i) for i in range(len(class_names))]:
        return int(p)
    if _WORDS.fullmatch(p):
        index = prompt_aliases(class_names).get(re.sub(r"[ _/-]", "", p))
        if index is not None:
            return index
    raise DiffusionLabError(_unknown(prompt, class_names, f"unknown prompt {prompt!r}"))


def _unknown(prompt, class_names: list[str], what: str) -> str:
    if class_names == [str(d) for d in range(10)]:
        valid = "the digits 0-9 or their names (zero, one, ..., nine)"
    else:
        valid = ", ".join(f"{i}={n}" for i, n in enumerate(class_names)) + " (the number or the name)"
    return f"{what}; valid prompts for this model: {valid}; '' for no class"


def model_kind(network_kind: str, objective: str) -> ModelKind:
    """The model kind of one of our checkpoints: a denoiser, else a DDPM or a flow model by its objective."""
    if network_kind == "denoiser":
        return DENOISER
    return FLOW if objective == "flow" else DDPM


class CourseModel(DiffusionModel):
    """One of our checkpoints (denoiser, time or class UNet; DDPM or flow) behind the model protocol.

    `kind` is the model kind (model_kinds: DDPM, FLOW or DENOISER); `network_kind` the config's "kind" word, what
    the network is conditioned on ("denoiser", "time", "class"). DDPM timesteps are 0-indexed integers; the network
    sees (t + 1) / T, the course's t / T with its 1-indexed t. Flow models take t in [0, 1] (0 = noise, 1 = data)
    and predict the velocity (the kind's network_time and output say so).
    """

    def __init__(self, net: UNet, config: dict, device: torch.device | None = None) -> None:
        self.device = device or torch.device("cpu")
        self.net = net.to(self.device).eval()
        self.config = config
        self.network_kind: str = config["kind"]
        self.objective: str = config.get("objective", "ddpm")
        self.kind = model_kind(self.network_kind, self.objective)
        self.class_names: list[str] = list(config.get("class_names", []))
        self.num_classes = net.config.num_classes
        self.conditioned = bool(self.num_classes)
        measured = (config.get("default_guidance") or {}).get("cfg_scale")
        self.default_guidance_scale = None if measured is None else float(measured)  # `choose-guidance --write`
        shape = config.get("image_shape", [1, 28, 28])
        self.image_shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.value_range = tuple(config.get("value_range", (0.0, 1.0)))
        self.schedule = NoiseSchedule.from_config(config["schedule"]) if "schedule" in config else None
        self.data: str | None = config.get("data")
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
        kind_problem = network_kind_problem(config["kind"], net.config)
        if kind_problem:
            raise DiffusionLabError(f"{path}: {kind_problem}; the config was edited or belongs to another model")
        check_fit(state, net.state_dict(), path, f"the config's {config['kind']} network (its 'unet' entry)")
        net.load_state_dict(state)
        return cls(net, config, device)

    def require(self, kind: str | tuple[str, ...], objective: str | None = None, what: str = "this") -> None:
        """A one-line error unless this is a `kind` ("denoiser", "time", "class"; or several) network, of
        `objective` ("ddpm", "flow") when given."""
        kinds = (kind,) if isinstance(kind, str) else kind
        if self.network_kind not in kinds or (objective is not None and self.objective != objective):
            want = "/".join(kinds) + (f" {objective}" if objective else "")
            raise DiffusionLabError(
                f"{what} needs a {want} model, but {self.name} is a {self.network_kind} {self.objective} model"
            )

    # -- conditions -----------------------------------------------------------------------------------------
    def encode(self, prompts: list[str]) -> Tensor:
        if not self.num_classes:
            bad = [p for p in prompts if not isinstance(p, str) or p.strip()]
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

    def _time_input(self, t: Tensor | float, n: int, like: Tensor) -> Tensor:
        """The network's time input for the loop's times t (one, or one per row): the kind's network_time."""
        t = torch.as_tensor(t, device=like.device)
        t = t.to(like.dtype) if t.is_floating_point() else t
        return self.kind.network_time(self, t.reshape(-1).expand(n))

    @torch.no_grad()
    def predict(self, x_t: Tensor, t: Tensor | float, cond: Tensor | None = None) -> Prediction:
        """The kind's output (a DDPM's noise at integer t, a flow model's velocity at flow time t)."""
        n = x_t.shape[0]  # a denoiser has no times: the kind's network_time refuses it in one line
        return Prediction(self.net(x_t, self._time_input(t, n, x_t), self._class_input(cond, n)))

    @torch.no_grad()
    def predict_branches(self, x_t: Tensor, k: int, t: Tensor | float, cond: Tensor | None = None) -> Prediction:
        """predict(cat([x_t] * k), t, cond) for k branches of one input (cond and t branch-major, k N rows), with
        the layers before the first condition computed once (UNet.branches): CFG's two branches, a hybrid's three
        (DDPM and flow alike: on the CPU bit for bit the k copies' output)."""
        n = x_t.shape[0] * k
        return Prediction(self.net.branches(x_t, k, self._time_input(t, n, x_t), self._class_input(cond, n)))

    @torch.no_grad()
    def denoise_once(self, z: Tensor) -> Tensor:
        self.require("denoiser", what="single-step denoising")
        return self.net(z)
