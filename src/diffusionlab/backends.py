"""The model backends: one table, BACKENDS (name -> Backend: which --model specs it claims, its loader, a one-line
help), from a --model spec to a protocol model.

- course: ours, a shipped name (the table in shipped_models.py) or a run directory / checkpoint;
- deepfloyd: `deepfloyd[:variant]` (variant: IF-I-XL-v1.0, IF-I-L-v1.0, IF-I-M-v1.0, L, a hub id or a folder) or a
  DeepFloyd IF folder given as a path, recognised by what it holds (model_index.json, or unet/config.json).

The first backend that claims a spec loads it; the --model help (model_help) and docs/models.md read the table,
so a new backend is one entry here. This is the only module that imports the DeepFloyd IF adapter
(diffusionlab.deepfloyd, an optional extra), and only when an IF spec is loaded or the UI asks for cached IF
weights: the core (sampling, guidance, edits, schedule) never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from diffusionlab.course_model import CourseModel
from diffusionlab.environment import hf_hub_cache
from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_protocol import resolve_device
from diffusionlab.shipped_models import SHIPPED_MODELS, shipped_path, shipped_weights_dir

__all__ = [  # shipped_path and shipped_weights_dir: shipped_models', importable from here as before
    "BACKENDS",
    "IF_NAME",
    "Backend",
    "ModelSpec",
    "cached_deepfloyd",
    "is_if_folder",
    "is_if_spec",
    "load_model",
    "model_help",
    "resolve_spec",
    "shipped_path",
    "shipped_weights_dir",
]

IF_NAME = "deepfloyd"


class Backend(NamedTuple):
    """A backend as the table (BACKENDS) holds it."""

    claims: Callable[[str], str | None]  # a --model spec -> what `load` takes, or None (another backend's)
    load: Callable[..., Any]  # (target, device, fast, precision, **kwargs) -> a model that follows the protocol
    help: str  # one line: the --model help, docs/models.md


def is_if_folder(path: str | Path) -> bool:
    """A folder laid out as a DeepFloyd IF (diffusers) pipeline: model_index.json or unet/config.json in it.

    Only looks at the files; which stage it is, and whether it loads, is the IF loader's to say."""
    folder = Path(path).expanduser()
    return folder.is_dir() and ((folder / "model_index.json").is_file() or (folder / "unet" / "config.json").is_file())


def _if_target(spec: str) -> str | None:
    if spec == IF_NAME or spec.startswith(IF_NAME + ":"):
        return spec
    if spec not in SHIPPED_MODELS and is_if_folder(spec):
        return f"{IF_NAME}:{spec}"
    return None


def _load_if(target: str, device: torch.device, fast: bool, precision: str | None, **kwargs: Any) -> Any:
    from diffusionlab.deepfloyd import load_deepfloyd  # optional extra, imported only when asked

    return load_deepfloyd(target, device=device, **kwargs)


def _course_target(spec: str) -> str | None:
    """A shipped name (its file, which must be in this install) or a path that exists."""
    if spec in SHIPPED_MODELS:
        path = shipped_path(spec)
        if not path.is_file():
            raise DiffusionLabError(
                f"shipped model {spec!r} is not in this install ({path}); train one with `diffusionlab train` "
                "and pass its run directory"
            )
        return str(path)
    return spec if Path(spec).exists() else None


def _load_course(target: str, device: torch.device, fast: bool, precision: str | None, **kwargs: Any) -> CourseModel:
    """Our checkpoints (kwargs, the IF options, do not apply). fast: the inference fast path (fastpath.accelerate:
    BatchNorm folded into the convolutions, channels_last); precision: fp32, bf16 or auto there."""
    model = CourseModel.from_checkpoint(target, device)
    if not fast:
        return model
    from diffusionlab.fastpath import accelerate

    return accelerate(model, compile=model.device.type == "cuda", precision=precision)


# -- the table: a new backend is one entry here; the first that claims a spec loads it ---------------------------
BACKENDS: dict[str, Backend] = {
    IF_NAME: Backend(
        _if_target,
        _load_if,
        "deepfloyd[:IF-I-XL-v1.0|IF-I-L-v1.0|IF-I-M-v1.0|L|M|a folder] or an IF folder (optional extra)",
    ),
    "course": Backend(_course_target, _load_course, "ours: a shipped name or a run directory / checkpoint"),
}


@dataclass(frozen=True)
class ModelSpec:
    """A resolved --model spec: the backend (a key of BACKENDS) and what its loader takes."""

    kind: str
    target: str


def resolve_spec(spec: str | Path) -> ModelSpec:
    """--model -> the backend that loads it; a shipped name missing from this install or a path that is not there
    is refused in one line, before anything loads."""
    s = str(spec)
    for name, backend in BACKENDS.items():
        target = backend.claims(s)
        if target is not None:
            return ModelSpec(name, target)
    raise DiffusionLabError(
        f"--model {s!r}: no such file or directory, and not a shipped model ({', '.join(SHIPPED_MODELS)}) "
        f"or '{IF_NAME}'"
    )


def is_if_spec(spec: str | Path) -> bool:
    """Whether a --model spec names DeepFloyd IF: `deepfloyd`, `deepfloyd:<variant>` or an IF folder."""
    return _if_target(str(spec)) is not None


def load_model(
    spec: str | Path = "mnist",
    device: str | torch.device | None = None,
    fast: bool = True,
    precision: str | None = None,
    **kwargs: Any,
) -> Any:
    """--model: a shipped name (mnist, fashion-mnist, ...), a run directory or checkpoint, "deepfloyd[:variant]"
    or an IF folder. kwargs go to the IF loader (model_dir, prompt_embeds, offload); our checkpoints ignore them.

    fast (default): our UNets run on the inference fast path; False: as trained. precision (fast path): fp32, bf16
    or auto (bf16 only where a measured benchmark says it is faster here; None: --precision, else
    $DIFFUSIONLAB_PRECISION, else auto). The model keeps the spec as given (model.spec): the name that loads it
    again, which the tools' settings record."""
    where = resolve_spec(spec)
    model = BACKENDS[where.kind].load(where.target, resolve_device(device), fast, precision, **kwargs)
    model.spec = str(spec)
    return model


def model_help() -> str:
    """The --model help, from the tables (built when the CLI's options are defined)."""
    return (
        f"A shipped model ({', '.join(SHIPPED_MODELS)}; see docs/models.md), a run directory or checkpoint of ours, "
        f"or {BACKENDS[IF_NAME].help}. Example: --model fashion-mnist"
    )


def cached_deepfloyd(cache: Path | None = None) -> str | None:
    """The first DeepFloyd IF stage I variant (e.g. "IF-I-XL-v1.0") whose weights are in the Hugging Face cache
    ($HF_HUB_CACHE ...), or None: the web UI offers it. Only looks at the files; nothing is loaded."""
    from diffusionlab.deepfloyd.weights import cached_stage1  # the owner of IF's ids and cache layout

    return cached_stage1(cache or hf_hub_cache())
