"""Checkpoints: safetensors for tensors, JSON for config and provenance, written atomically. Never pickle."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from diffusionlab.errors import DiffusionLabError

FORMAT = "diffusionlab-checkpoint"
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what open() would give; mkstemp alone gives 0600
WEIGHTS_NAME = "model.safetensors"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(weights_path: Path, state_dict: dict[str, torch.Tensor], config: dict, dtype=None) -> None:
    """Write weights (optionally cast, e.g. float16 for shipping) then the JSON beside them (same stem)."""
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v) for k, v in state_dict.items()}
    atomic_save_tensors(weights_path, tensors, {"format": FORMAT})
    atomic_write_json(weights_path.with_suffix(".json"), {"format": FORMAT, **config})


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory, a .safetensors file or its .json -> the .safetensors path."""
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS_NAME
    elif p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    if not p.is_file():
        raise DiffusionLabError(
            f"{p}: no checkpoint there; give a run directory (with {WEIGHTS_NAME}), a .safetensors checkpoint, "
            "or a shipped model name (mnist, fashion-mnist)"
        )
    return p


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict in float32, config) of a diffusionlab checkpoint, with one-line errors for anything else."""
    weights = resolve_checkpoint(path)
    meta_path = weights.with_suffix(".json")
    try:
        config = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise DiffusionLabError(
            f"{meta_path}: missing; a diffusionlab checkpoint has its config JSON beside it"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DiffusionLabError(f"{meta_path}: not valid JSON ({e}); the checkpoint config is corrupt") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise DiffusionLabError(f'{meta_path}: not a diffusionlab checkpoint config (no "format": "{FORMAT}")')
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise DiffusionLabError(f"{weights}: cannot read the weights ({e}); the file is truncated or corrupt") from None
    return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}, config
