"""Pieces shared by the commands: the summary line, the --model loader, the options every command shares (their
values are checked while the command line is parsed, by the rules in diffusionlab.checks)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from diffusionlab import checks


def wrote(*paths: str | Path, what: str = "wrote") -> None:
    """The summary line every command ends with."""
    print(f"{what}: " + ", ".join(str(p) for p in paths), file=sys.stdout)


# -- option callbacks: a bad number is refused while the command line is parsed, before anything is loaded ------
def cfg_callback(value: float | None) -> float | None:
    return checks.check_scale(value, "--cfg")


def steps_callback(value: int | None) -> int | None:
    return checks.check_count(value, "--steps")


def n_callback(value: int | None) -> int | None:
    return checks.check_count(value, "-n")  # the upper bound needs the model's image size: checks.check_batch


def seed_callback(value: int) -> int:
    return checks.parse_seed(value, "--seed")


# -- options every model-using command shares (typer Annotated types) ---------------------------------------
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Shipped model name (mnist, fashion-mnist), a run directory or checkpoint of ours, or 'deepfloyd'.",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N; default: CUDA when present, else CPU.")]
SeedOpt = Annotated[
    int, typer.Option("--seed", help="Random seed; the same seed gives the same images.", callback=seed_callback)
]
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
    fast: bool = True,
):
    """--model and its DeepFloyd options -> a model that follows the protocol (model_registry.load_model, which
    gives the IF options to IF only); our UNets on the inference fast path unless fast=False (--plain)."""
    from diffusionlab.model_registry import load_model

    return load_model(model, device, fast=fast, model_dir=model_dir, prompt_embeds=prompt_embeds, offload=offload)


# -- the step rule of the sampler loop (every sampling command) ----------------------------------------------
SamplerOpt = Annotated[
    str | None,
    typer.Option(
        "--sampler",
        help="Step rule: auto (our models' default: the course's ddpm steps over all T, DDIM eta 0 on strided "
        "steps), ddpm, ddim or dpm++2m (default: the model's, see docs/sampling.md). "
        "Example: --sampler ddim --eta 0 --steps 20",
    ),
]
VarianceOpt = Annotated[
    str | None,
    typer.Option(
        "--variance",
        help="ddpm steps: beta (the course's), beta-tilde (the posterior's), learned-range (IF). Example: --variance beta-tilde",
    ),
]
EtaOpt = Annotated[
    float | None, typer.Option("--eta", help="ddim steps: 0 deterministic .. 1 (= ddpm beta-tilde). Example: --eta 0.5")
]
