"""Every environment variable diffusionlab reads, checked in one place: a bad value ends in one line that names
the variable, what it holds and what it may hold (never a traceback deep inside the work)."""

from __future__ import annotations

import os
from pathlib import Path

from diffusionlab.errors import DiffusionLabError

# name -> what it does (docs and error messages). Only this module reads os.environ (tests/test_fuzz.py checks).
VARIABLES = {
    "DIFFUSIONLAB_THREADS": "CPU threads for torch, like --threads (an integer >= 1)",
    "DIFFUSIONLAB_PRECISION": "fp32, bf16 or auto, like --precision",
    "DIFFUSIONLAB_CACHE": "the folder for downloaded data sets and cached measurements (default ~/.cache/diffusionlab)",
    "DIFFUSIONLAB_WEIGHTS_DIR": "a folder of shipped weights used instead of the package's own",
    "DIFFUSIONLAB_PROGRESS": "progress bars on or off: 1/0, true/false, yes/no, on/off",
    "DIFFUSIONLAB_CHROMIUM": "the Chromium that prints the report to PDF",
    "WORLD_SIZE": "set by torchrun: the number of processes (an integer >= 1)",
    "RANK": "set by torchrun: this process's number, 0 to WORLD_SIZE - 1",
    "LOCAL_RANK": "set by torchrun: this process's number on its machine (an integer >= 0)",
    "MASTER_ADDR": "set by torchrun: the host of rank 0",
    "MASTER_PORT": "set by torchrun: the port of rank 0 (1 to 65535)",
    "HF_HUB_CACHE": "the Hugging Face cache searched for DeepFloyd IF's weights",
    "HF_HOME": "the Hugging Face home (its hub/ folder is the cache when HF_HUB_CACHE is unset)",
    "GRADIO_TEMP_DIR": "the folder the web UI's uploads land in",
}
FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def env_text(name: str) -> str | None:
    """The variable's value with surrounding blanks removed; None when unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or None


def env_int(name: str, minimum: int | None = None) -> int | None:
    """An integer variable (None when unset), refused in one line when it is not an integer >= minimum."""
    value = env_text(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise DiffusionLabError(f"{name}={value!r} is not an integer ({VARIABLES.get(name, name)})") from None
    if minimum is not None and number < minimum:
        raise DiffusionLabError(f"{name}={number} must be at least {minimum} ({VARIABLES.get(name, name)})")
    return number


def env_choice(name: str, choices: tuple[str, ...]) -> str | None:
    """A variable that names one of `choices` (case-insensitive); None when unset."""
    value = env_text(name)
    if value is None:
        return None
    if value.lower() not in choices:
        raise DiffusionLabError(f"{name}={value!r}: choose {', '.join(choices)} ({VARIABLES.get(name, name)})")
    return value.lower()


def env_flag(name: str, default: bool) -> bool:
    """A yes/no variable (1/0, true/false, yes/no, on/off, any case); `default` when unset."""
    value = env_text(name)
    if value is None:
        return default
    if value.lower() not in FLAGS:
        raise DiffusionLabError(f"{name}={value!r}: use 1 or 0 (or true/false, yes/no, on/off) ({VARIABLES[name]})")
    return FLAGS[value.lower()]


def env_path(name: str) -> Path | None:
    """A path variable, with ~ expanded; None when unset."""
    value = env_text(name)
    if value is None:
        return None
    try:
        return Path(value).expanduser()
    except RuntimeError:  # ~user with no such user, or no home directory to expand ~ to
        raise DiffusionLabError(
            f"{name}={value[:200]!r}: cannot expand {value.split('/')[0][:50]!r} to a home folder ({VARIABLES[name]})"
        ) from None


def env_folder(name: str, default: Path | None = None, must_exist: bool = False) -> Path | None:
    """A folder variable (else `default`): refused when the path is something other than a folder (a file, a
    device such as /dev/null) or lies under one, and, with must_exist, when it is missing."""
    path = env_path(name)
    if path is None:
        return default
    what = f"{name}={str(path)[:200]!r}"
    try:
        if path.exists() and not path.is_dir():
            raise DiffusionLabError(f"{what} is not a folder ({VARIABLES[name]})")
        if must_exist and not path.is_dir():
            raise DiffusionLabError(f"{what}: no such folder ({VARIABLES[name]})")
        above = next((p for p in path.parents if p.exists()), None)
    except OSError as e:  # a name too long for the file system, no permission to look
        raise DiffusionLabError(f"{what}: not a usable folder ({e.strerror or e}) ({VARIABLES[name]})") from None
    if above is not None and not above.is_dir():
        raise DiffusionLabError(f"{what}: {above} is not a folder, so no folder can be made there ({VARIABLES[name]})")
    return path


def cache_dir() -> Path:
    """$DIFFUSIONLAB_CACHE (checked to be a usable folder), else ~/.cache/diffusionlab."""
    return env_folder("DIFFUSIONLAB_CACHE", Path.home() / ".cache" / "diffusionlab")


def weights_dir_override() -> Path | None:
    """$DIFFUSIONLAB_WEIGHTS_DIR (a folder, or a path where none is yet: an install without shipped weights), or
    None."""
    return env_folder("DIFFUSIONLAB_WEIGHTS_DIR")


def hf_hub_cache() -> Path:
    """$HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub (where huggingface_hub looks)."""
    home = env_path("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return env_path("HF_HUB_CACHE") or home / "hub"


def torchrun_ranks() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when torchrun started this process with WORLD_SIZE > 1, else None. A
    half-set environment (WORLD_SIZE without RANK, MASTER_ADDR or MASTER_PORT) is refused here in one line,
    before torch.distributed would fail with a traceback or wait for peers that never come."""
    world = env_int("WORLD_SIZE", 1)
    if world is None or world == 1:
        return None
    launch = "start it with torchrun, or unset WORLD_SIZE for one process"
    rank = env_int("RANK", 0)
    if rank is None:
        raise DiffusionLabError(f"WORLD_SIZE={world} but RANK is not set ({VARIABLES['RANK']}); {launch}")
    if rank >= world:
        raise DiffusionLabError(f"RANK={rank} must be below WORLD_SIZE={world}; {launch}")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if env_text(name) is None:
            raise DiffusionLabError(f"WORLD_SIZE={world} but {name} is not set ({VARIABLES[name]}); {launch}")
    port = env_int("MASTER_PORT", 1)
    if port > 65535:
        raise DiffusionLabError(f"MASTER_PORT={port} is not a port ({VARIABLES['MASTER_PORT']})")
    return rank, world, local_rank()


def local_rank() -> int:
    """$LOCAL_RANK (0 when unset)."""
    return env_int("LOCAL_RANK", 0) or 0


def check_environment() -> None:
    """Every variable of VARIABLES that is set, checked at once (a command calls this before its work): a bad
    value ends in one line even when the code that reads it would run late, or not at all in this command."""
    env_int("DIFFUSIONLAB_THREADS", 1)
    env_choice("DIFFUSIONLAB_PRECISION", ("auto", "fp32", "bf16"))  # the order of precision.PRECISIONS
    env_flag("DIFFUSIONLAB_PROGRESS", True)
    cache_dir()
    weights_dir_override()
    local_rank()
    torchrun_ranks()
