"""Every environment variable diffusionlab reads, checked in one place: a bad value ends in one line that names
the variable, what it holds and what it may hold (never a traceback deep inside the work)."""

from __future__ import annotations

import os

from diffusionlab.errors import DiffusionLabError

# name -> what it does (docs and error messages)
VARIABLES = {
    "DIFFUSIONLAB_THREADS": "CPU threads for torch, like --threads (an integer >= 1)",
    "DIFFUSIONLAB_PRECISION": "fp32, bf16 or auto, like --precision",
}


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
