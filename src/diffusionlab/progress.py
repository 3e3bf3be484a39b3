"""Progress bars: tqdm.auto (a widget in Jupyter, text in a terminal), all switched off at once with
set_progress(False) or DIFFUSIONLAB_PROGRESS=0."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

_state = {"enabled": os.environ.get("DIFFUSIONLAB_PROGRESS", "1").lower() not in ("0", "false", "off", "no")}


def set_progress(enabled: bool) -> None:
    """Turn every progress bar of the library on or off (e.g. in a notebook: dl.set_progress(False))."""
    _state["enabled"] = bool(enabled)


def progress_enabled() -> bool:
    return _state["enabled"]


def bar(iterable: Iterable | None = None, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar, shown when the caller wants it and bars are on globally."""
    return tqdm(iterable, disable=not (enabled and _state["enabled"]), **kwargs)
