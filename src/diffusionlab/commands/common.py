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
