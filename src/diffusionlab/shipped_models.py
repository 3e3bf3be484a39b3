"""The shipped models: one table, SHIPPED_MODELS (--model name -> its weights file and a one-line help).

The weights lie in the package's weights/ folder (or $DIFFUSIONLAB_WEIGHTS_DIR) as <file>.safetensors with
<file>.json beside it; how each was trained and how good it is: docs/models.md. The --model help, the web UI's
model list, `backends.load_model` and the names that settings record all read this table, so shipping a model is
one entry here (and its files).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import NamedTuple

from diffusionlab.environment import weights_dir_override


class ShippedModel(NamedTuple):
    file: str  # the weights' stem in the weights folder (also the model's name once loaded)
    help: str  # one line: the --model help, the web UI's model list, docs/models.md


SHIPPED_MODELS: dict[str, ShippedModel] = {
    "mnist": ShippedModel("mnist-class", "class-conditioned DDPM on MNIST (Part B2.4; the default)"),
    "fashion-mnist": ShippedModel("fashion-mnist-class", "class-conditioned DDPM on Fashion-MNIST"),
    "mnist-time": ShippedModel("mnist-time", "time-conditioned DDPM on MNIST, no class (Part B2)"),
    "mnist-flow": ShippedModel("mnist-flow", "class-conditioned flow matching on MNIST (Part B3)"),
    "mnist-time-flow": ShippedModel("mnist-time-flow", "time-conditioned flow on MNIST, no class (Fall 2025)"),
    "mnist-denoiser": ShippedModel("mnist-denoiser", "single-step denoiser at sigma 0.5 (Part B1)"),
    "mnist-denoiser-pure-noise": ShippedModel("mnist-denoiser-pure-noise", "denoiser of pure noise (Fall 2025 B1.2.3)"),
}


def shipped_weights_dir() -> Path:
    """The package's weights/ folder, or $DIFFUSIONLAB_WEIGHTS_DIR (tests and custom installs)."""
    return weights_dir_override() or Path(str(resources.files("diffusionlab") / "weights"))


def shipped_path(name: str) -> Path:
    """A shipped model's name -> its .safetensors file ("mnist" is mnist-class.safetensors)."""
    return shipped_weights_dir() / f"{SHIPPED_MODELS[name].file}.safetensors"


def shipped_name(file: str) -> str | None:
    """The --model name that loads a shipped weights file (by stem: "mnist-class" -> "mnist"), or None."""
    return next((name for name, entry in SHIPPED_MODELS.items() if entry.file == file), None)


def shipped_markdown() -> str:
    """The shipped models as a Markdown table (docs/models.md's generated part)."""
    rows = [f"| `{name}` | `{e.file}` | {e.help} |" for name, e in SHIPPED_MODELS.items()]
    return "\n".join(["| --model | weights file | what |", "|---|---|---|", *rows])
