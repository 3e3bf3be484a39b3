"""Checkpoints: safetensors for tensors, JSON for config and provenance, written atomically. Never pickle."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from diffusionlab.checks import hidden_prefix
from diffusionlab.errors import DiffusionLabError
from diffusionlab.files import read_text, regular_file

FORMAT = "diffusionlab-checkpoint"
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what open() would give; mkstemp alone gives 0600
WEIGHTS_NAME = "model.safetensors"
MAX_CONFIG_BYTES = 16 * 2**20  # a config JSON is a few kB
COUNTER_SUFFIX = "num_batches_tracked"  # BatchNorm's step counter: the one integer tensor of our networks


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=hidden_prefix(path.name, "tmp"), suffix=".tmp")
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=hidden_prefix(path.name, "tmp"), suffix=".tmp")
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


def weights_file(path: str | Path, missing: str, label: str | None = None) -> Path:
    """A weights file named by the user: `path`, or the .safetensors beside it when it names the .json; refused in
    one line when absent (`missing`: what to give instead) or not a regular file (a named pipe would block the
    reader; regular_file names it by `label`)."""
    p = with_weights_suffix(Path(path))
    if not p.exists():
        raise DiffusionLabError(missing)
    regular_file(p, label)
    return p


def with_weights_suffix(p: Path) -> Path:
    """The .safetensors beside a .json (the config names its weights), else p."""
    return p.with_suffix(".safetensors") if p.suffix == ".json" else p


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory, a .safetensors file or its .json -> the .safetensors path."""
    p = Path(path) / WEIGHTS_NAME if Path(path).is_dir() else with_weights_suffix(Path(path))
    return weights_file(
        p,
        f"{p}: no checkpoint there; give a run directory (with {WEIGHTS_NAME}), a .safetensors checkpoint, "
        "or a shipped model name (mnist, fashion-mnist)",
    )


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict in float32, config) of a diffusionlab checkpoint, with one-line errors for anything else: the
    files must be regular, the config well-formed, the tensors floating point and finite (check_tensors)."""
    weights = resolve_checkpoint(path)
    meta_path = weights.with_suffix(".json")
    if not meta_path.exists():
        raise DiffusionLabError(f"{meta_path}: missing; a diffusionlab checkpoint has its config JSON beside it")
    try:
        config = json.loads(read_text(meta_path, limit=MAX_CONFIG_BYTES))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: "[[[[..." nested deep
        raise DiffusionLabError(
            f"{meta_path}: not valid JSON ({str(e)[:100]}); the checkpoint config is corrupt"
        ) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise DiffusionLabError(f'{meta_path}: not a diffusionlab checkpoint config (no "format": "{FORMAT}")')
    problem = config_problem(config)
    if problem:
        raise DiffusionLabError(f"{meta_path}: {problem}; the checkpoint config is corrupt or was edited by hand")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise DiffusionLabError(f"{weights}: cannot read the weights ({e}); the file is truncated or corrupt") from None
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    check_tensors(state, weights)
    return state, config


def check_tensors(state: dict[str, torch.Tensor], source: Path | str) -> None:
    """Every tensor floating point (BatchNorm's step counters excepted) and finite, in one pass: int32 weights
    would compute garbage, NaN weights write black images and NaN scores."""
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            if key.endswith(COUNTER_SUFFIX) and tensor.dtype == torch.int64 and tensor.dim() == 0:
                continue
            raise DiffusionLabError(
                f"{source}: tensor {key!r} is {str(tensor.dtype).removeprefix('torch.')}; weights must be floating "
                "point (float32, float16 or bfloat16): the file was not written by diffusionlab"
            )
        if not math.isfinite(tensor.sum(dtype=torch.float64)) and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())  # the sum is one fast pass; a NaN or Inf makes it non-finite
            raise DiffusionLabError(
                f"{source}: tensor {key!r} holds {bad} NaN or infinite values of {tensor.numel()}; the weights are "
                "corrupt (a diverged run?)"
            )


def check_fit(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], source: Path | str, what: str):
    """The state dict has exactly the keys and shapes of `reference` (the state dict of the network its config
    describes, `what`), or one line names the first key that differs."""
    missing = [k for k in reference if k not in state]
    extra = [k for k in state if k not in reference]
    if missing:
        raise DiffusionLabError(
            f"{source}: weights do not fit {what}: {missing[0]!r} is missing ({len(missing)} tensors missing)"
        )
    if extra:
        raise DiffusionLabError(
            f"{source}: weights do not fit {what}: {extra[0]!r} is not in it ({len(extra)} tensors too many)"
        )
    for key, ref in reference.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            raise DiffusionLabError(
                f"{source}: weights do not fit {what}: {key!r} is {list(state[key].shape)} in the file, "
                f"{list(ref.shape)} in the network"
            )


# -- the config's fields: what the loaders read, checked before a network is built from them ----------------------
def _int(lo: int, hi: int):
    return (lambda v: type(v) is int and lo <= v <= hi), f"an integer from {lo} to {hi}"


def _number(lo: float, hi: float):
    return (lambda v: type(v) in (int, float) and lo < v < hi), f"a number between {lo:g} and {hi:g}"


def _is_range(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_number(-1e6, 1e6)[0](x) for x in v) and v[0] < v[1]


def _is_widths(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_int(1, 1024)[0](c) for c in v)


_STRING = (lambda v: isinstance(v, str)), "a string"
_MAPPING = (lambda v: isinstance(v, dict)), "a mapping"
_STRINGS = (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)), "a list of strings"
_SHAPE = (lambda v: isinstance(v, list) and len(v) == 3), "[channels, height, width]"
_BOOL = (lambda v: isinstance(v, bool)), "true or false"
# (field path, (test, what it should be), required once its parent is there). Bounds keep a lying config from
# allocating a network of many GB (the course's UNets have hidden 64 or 128, T = 300).
CONFIG_FIELDS = [
    (("kind",), _STRING, False),
    (("objective",), _STRING, False),
    (("name",), _STRING, False),
    (("class_names",), _STRINGS, False),
    (("image_shape",), _SHAPE, False),
    (("value_range",), (_is_range, "[low, high] with low < high"), False),
    (("sigma",), _number(0, 1e3), False),
    (("unet",), _MAPPING, False),
    (("unet", "hidden"), _int(1, 2048), False),
    (("unet", "in_channels"), _int(1, 4), False),
    (("unet", "time_conditioned"), _BOOL, False),
    (("unet", "num_classes"), _int(0, 1000), False),
    (("unet", "time_mode"), _STRING, False),
    (("unet", "image_size"), ((lambda v: type(v) is int and 4 <= v <= 1024 and v % 4 == 0), "a multiple of 4"), False),
    (("schedule",), _MAPPING, False),
    (("schedule", "type"), _STRING, False),
    (("schedule", "num_steps"), _int(1, 100_000), True),
    (("schedule", "beta_start"), _number(0, 1), False),
    (("schedule", "beta_end"), _number(0, 1), False),
    (("classifier",), _MAPPING, False),
    (("classifier", "channels"), (_is_widths, "[c1, c2], integers from 1 to 1024"), True),
    (("classifier", "feature_dim"), _int(1, 65536), True),
    (("classifier", "num_classes"), _int(1, 1000), True),
    (("classifier", "dropout"), ((lambda v: type(v) in (int, float) and 0 <= v < 1), "a number in [0, 1)"), False),
]


def config_problem(config: dict) -> str | None:
    """The first field of a checkpoint config that a loader could not use, in words, or None."""
    for path, (ok, expected), required in CONFIG_FIELDS:
        parent = config
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue  # checked (or absent) at the level above
        name = ".".join(path)
        if path[-1] not in parent:
            if required:
                return f'"{name}" is missing'
            continue
        if not ok(parent[path[-1]]):
            return f'"{name}" is {json.dumps(parent[path[-1]])[:40]}, expected {expected}'
    unet, shape = config.get("unet"), config.get("image_shape")
    if isinstance(unet, dict) and shape is not None:
        side = unet.get("image_size", 28)  # a config from before sizes other than 28 px: 28
        if shape != [unet.get("in_channels", 1), side, side]:
            return f'"image_shape" is {json.dumps(shape)[:40]}, the course UNet makes [channels, {side}, {side}]'
    return None
