"""Pieces shared by the commands: output checks, seeds, the summary line."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from diffusionlab.errors import DiffusionLabError


def register(app) -> None:  # this module holds helpers, no commands
    return None


def check_new_file(path: str | Path, force: bool = False) -> Path:
    """An output file we may write: never replace a user's file unless --force; parent dirs are created."""
    p = Path(path)
    if p.exists() and not force:
        raise DiffusionLabError(f"{p} already exists; choose another --out or pass --force to replace it")
    if p.exists() and p.is_dir():
        raise DiffusionLabError(f"{p} is a directory; --out needs a file name such as {p / 'out.png'}")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def generator_for(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Noise is drawn on the CPU so that a seed gives the same image on every device."""
    return torch.Generator("cpu").manual_seed(int(seed))


def wrote(*paths: str | Path, what: str = "wrote") -> None:
    """The summary line every command ends with."""
    print(f"{what}: " + ", ".join(str(p) for p in paths), file=sys.stdout)


# -- options every model-using command shares (typer Annotated types) ---------------------------------------
from typing import Annotated  # noqa: E402

import typer  # noqa: E402

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Shipped model name (mnist, fashion-mnist), a run directory or checkpoint of ours, or 'deepfloyd'.",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N; default: CUDA when present, else CPU.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same images.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing output file.")]
ModelDirOpt = Annotated[
    Path | None,
    typer.Option("--model-dir", help="DeepFloyd IF: a folder with the downloaded weights (else the HF cache)."),
]
PromptEmbedsOpt = Annotated[
    Path | None,
    typer.Option(
        "--prompt-embeds", help="DeepFloyd IF: a .pth dict {prompt: (1, 77, 4096) tensor}, as the course ships."
    ),
]
OffloadOpt = Annotated[bool, typer.Option("--offload", help="DeepFloyd IF: model CPU offload for small GPUs.")]


def open_model(
    model: str,
    device: str = "auto",
    model_dir: Path | None = None,
    prompt_embeds: Path | None = None,
    offload: bool = False,
):
    """--model and its DeepFloyd options -> a model that follows the protocol (see diffusionlab.model)."""
    from diffusionlab.model import load_model

    extra = {}
    if model == "deepfloyd" or model.startswith("deepfloyd:"):
        extra = {"model_dir": model_dir, "prompt_embeds": prompt_embeds, "offload": offload}
    return load_model(model, device, **extra)
