"""The one model registry: a --model spec -> a protocol model.

A spec is a shipped name (mnist, fashion-mnist, ...), a run directory or checkpoint of ours, `deepfloyd[:variant]`
(variant: IF-I-XL-v1.0, IF-I-L-v1.0, IF-I-M-v1.0, L, a hub id or a folder) or a DeepFloyd IF folder given as a
path, recognised by what it holds (model_index.json, or unet/config.json).

This is the only module that imports the DeepFloyd IF adapter (diffusionlab.deepfloyd, an optional extra),
and only when an IF spec is loaded: the core (model, sampling, guidance, edits, schedule) never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from diffusionlab.course_model import CourseModel
from diffusionlab.environment import weights_dir_override
from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_protocol import resolve_device

SHIPPED = (
    "mnist",
    "fashion-mnist",
    "mnist-time",
    "mnist-flow",
    "mnist-time-flow",
    "mnist-denoiser",
    "mnist-denoiser-pure-noise",
)
IF_NAME = "deepfloyd"


def shipped_weights_dir() -> Path:
    """The package's weights/ folder, or $DIFFUSIONLAB_WEIGHTS_DIR (tests and custom installs)."""
    return weights_dir_override() or Path(str(resources.files("diffusionlab") / "weights"))


def shipped_path(name: str) -> Path:
    """Shipped model name -> its .safetensors file ("mnist" is the class DDPM)."""
    stem = {"mnist": "mnist-class", "fashion-mnist": "fashion-mnist-class"}.get(name, name)
    return shipped_weights_dir() / f"{stem}.safetensors"


def is_if_folder(path: str | Path) -> bool:
    """A folder laid out as a DeepFloyd IF (diffusers) pipeline: model_index.json or unet/config.json in it.

    Only looks at the files; which stage it is, and whether it loads, is the IF loader's to say."""
    folder = Path(path).expanduser()
    return folder.is_dir() and ((folder / "model_index.json").is_file() or (folder / "unet" / "config.json").is_file())


def is_if_spec(spec: str | Path) -> bool:
    """Whether a --model spec names DeepFloyd IF: `deepfloyd`, `deepfloyd:<variant>` or an IF folder."""
    s = str(spec)
    return s == IF_NAME or s.startswith(IF_NAME + ":") or (s not in SHIPPED and is_if_folder(s))


@dataclass(frozen=True)
class ModelSpec:
    """A resolved --model spec. kind: "course" (target: a checkpoint file or run directory of ours) or
    "deepfloyd" (target: the IF loader's spec, "deepfloyd[:variant or folder]")."""

    kind: str
    target: str


def resolve_spec(spec: str | Path) -> ModelSpec:
    """--model -> what loads it; a shipped name missing from this install or a path that is not there is refused."""
    s = str(spec)
    if s == IF_NAME or s.startswith(IF_NAME + ":"):
        return ModelSpec(IF_NAME, s)
    if s in SHIPPED:
        path = shipped_path(s)
        if not path.is_file():
            raise DiffusionLabError(
                f"shipped model {s!r} is not in this install ({path}); train one with `diffusionlab train` "
                "and pass its run directory"
            )
        return ModelSpec("course", str(path))
    if not Path(s).exists():
        raise DiffusionLabError(
            f"--model {s!r}: no such file or directory, and not a shipped model ({', '.join(SHIPPED)}) or 'deepfloyd'"
        )
    if is_if_folder(s):
        return ModelSpec(IF_NAME, f"{IF_NAME}:{s}")
    return ModelSpec("course", s)


def load_model(
    spec: str | Path = "mnist",
    device: str | torch.device | None = None,
    fast: bool = True,
    precision: str | None = None,
    **kwargs: Any,
) -> Any:
    """--model: a shipped name (mnist, fashion-mnist, ...), a run directory or checkpoint, "deepfloyd[:variant]"
    or an IF folder. kwargs go to the IF loader (model_dir, prompt_embeds, offload); our checkpoints ignore them.

    fast (default): our UNets run on the inference fast path (fastpath.accelerate: BatchNorm folded into the
    convolutions, channels_last); False: as trained. precision (fast path): fp32, bf16 or auto (bf16 only where a
    measured benchmark says it is faster here; None: --precision, else $DIFFUSIONLAB_PRECISION, else auto)."""
    dev = resolve_device(device)
    where = resolve_spec(spec)
    if where.kind == IF_NAME:
        from diffusionlab.deepfloyd import load_deepfloyd  # optional extra, imported only when asked

        return load_deepfloyd(where.target, device=dev, **kwargs)
    return _maybe_fast(CourseModel.from_checkpoint(where.target, dev), fast, precision)


def _maybe_fast(model: CourseModel, fast: bool, precision: str | None) -> CourseModel:
    if not fast:
        return model
    from diffusionlab.fastpath import accelerate

    return accelerate(model, compile=model.device.type == "cuda", precision=precision)
