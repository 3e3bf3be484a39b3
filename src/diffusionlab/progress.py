"""Progress bars: tqdm.auto (a widget in Jupyter, text in a terminal), all switched off at once with
set_progress(False) or DIFFUSIONLAB_PROGRESS=0."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

from diffusionlab.environment import env_flag

_state: dict[str, bool | None] = {"enabled": None}  # None: $DIFFUSIONLAB_PROGRESS decides, read when first asked


def set_progress(enabled: bool) -> None:
    """Turn every progress bar of the library on or off (e.g. in a notebook: dl.set_progress(False))."""
    _state["enabled"] = bool(enabled)


def progress_enabled() -> bool:
    if _state["enabled"] is None:  # read here, not at import: a bad value is a one-line error in the command
        _state["enabled"] = env_flag("DIFFUSIONLAB_PROGRESS", True)
    return bool(_state["enabled"])


def bar(iterable: Iterable | None = None, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar, shown when the caller wants it and bars are on globally."""
    return tqdm(iterable, disable=not (enabled and progress_enabled()), **kwargs)
