"""The model chooser's list and the in-memory model cache, and the caps on one request (`Limits`)."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusionlab.backends import IF_NAME, cached_deepfloyd, load_model
from diffusionlab.errors import DiffusionLabError
from diffusionlab.files import read_text
from diffusionlab.model_files import WEIGHTS_NAME
from diffusionlab.shipped_models import SHIPPED_MODELS, shipped_path


@dataclass(frozen=True)
class Limits:
    """Caps on what one request may ask for."""

    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    max_images: int = 40  # images per request (prompts x n): the course's ten digits x 4
    max_steps: int = 1000
    max_cached_models: int = 3
    queue_size: int = 64


def deepfloyd_available(cache: Path | None = None) -> str | None:
    """The first DeepFloyd IF stage I variant (e.g. "IF-I-XL-v1.0") whose weights are in the Hugging Face cache, or
    None (backends.cached_deepfloyd: IF's ids and cache layout are the IF adapter's)."""
    return cached_deepfloyd(cache)


def _describe_run(config_path: Path) -> str:
    try:  # files.read_text: a named pipe as a run's model.json would block the model list
        cfg = json.loads(read_text(config_path, limit=2**20))
        shape = cfg.get("image_shape") or [1, 28, 28]
        size = "" if shape == [1, 28, 28] else f", {'RGB' if shape[0] == 3 else 'grey'} {shape[-1]} px"  # issue 40
        return f"{cfg.get('kind', '?')} {cfg.get('objective', 'ddpm')}, {cfg.get('data', '?')}{size}"
    except (DiffusionLabError, ValueError, AttributeError, TypeError, IndexError):  # unreadable, or not our JSON
        return "unreadable config"


class ModelRegistry:
    """Which models the chooser offers, and the loaded ones (an LRU cache) with one lock per model."""

    def __init__(
        self,
        runs_dir: str | Path | None,
        device: str = "auto",
        extra_models: Sequence[str | Path] = (),
        limits: Limits = Limits(),
        max_depth: int = 4,
    ) -> None:
        self.runs_dir = Path(runs_dir).resolve() if runs_dir else None
        self.device = device
        self.extra = [str(Path(m).resolve()) if Path(m).exists() else str(m) for m in extra_models]
        self.limits = limits
        self.max_depth = max_depth
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- the list --------------------------------------------------------------------------------------------
    def choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs: shipped models present, given models, runs under runs_dir, DeepFloyd if cached."""
        out: list[tuple[str, str]] = []
        for name in SHIPPED_MODELS:  # the table in shipped_models.py
            if shipped_path(name).is_file():
                out.append((f"{name} (shipped)", f"shipped:{name}"))
        for spec in self.extra:
            if spec in SHIPPED_MODELS:
                if shipped_path(spec).is_file() and (f"{spec} (shipped)", f"shipped:{spec}") not in out:
                    out.append((f"{spec} (shipped)", f"shipped:{spec}"))
            elif spec != IF_NAME:
                out.append((f"{spec} (given at start)", f"given:{spec}"))
        for rel in self.runs():
            out.append((f"run: {rel} ({_describe_run(self.runs_dir / rel / 'model.json')})", f"run:{rel}"))
        variant = deepfloyd_available()
        if variant:
            out.append((f"DeepFloyd {variant} (stage I, local weights)", f"{IF_NAME}:{variant}"))
        elif IF_NAME in self.extra:
            out.append(("DeepFloyd IF (stage I, --model-dir / cache)", IF_NAME))
        return out

    def runs(self) -> list[str]:
        """Run directories (relative to runs_dir) that hold a model.safetensors, at most max_depth levels down."""
        if self.runs_dir is None or not self.runs_dir.is_dir():
            return []
        found = []
        for path in self.runs_dir.rglob(WEIGHTS_NAME):
            rel = path.parent.relative_to(self.runs_dir)
            if len(rel.parts) > self.max_depth:
                continue
            if not path.resolve().is_relative_to(self.runs_dir):  # a symlink pointing out of the runs dir
                continue
            found.append(rel.as_posix() or ".")
        return sorted(found)

    def default(self, wanted: str | None = None) -> str | None:
        values = [v for _, v in self.choices()]
        if wanted:
            for candidate in (wanted, f"shipped:{wanted}", f"run:{wanted}", f"given:{wanted}"):
                if candidate in values:
                    return candidate
            if self.runs_dir and Path(wanted).exists():
                resolved = Path(wanted).resolve()
                if resolved.is_relative_to(self.runs_dir):
                    return f"run:{resolved.relative_to(self.runs_dir).as_posix() or '.'}"
                if str(resolved) in self.extra:
                    return f"given:{resolved}"
        return values[0] if values else None

    def spec_for(self, value: str | None) -> str:
        """A chooser value -> what `load_model` takes. Anything not on the server's list is refused."""
        if not value:
            raise DiffusionLabError("no model chosen; pick one in the model list (or start the app with --model)")
        values = {v for _, v in self.choices()}
        if value not in values:
            raise DiffusionLabError(f"unknown model {value!r}; pick one from the list (press ↻ to refresh it)")
        if value.startswith("shipped:"):
            return value.removeprefix("shipped:")
        if value.startswith("given:"):
            return value.removeprefix("given:")
        if value.startswith("run:"):
            assert self.runs_dir is not None
            path = (self.runs_dir / value.removeprefix("run:")).resolve()
            if not path.is_relative_to(self.runs_dir):
                raise DiffusionLabError("that run is outside the runs directory")
            return str(path)
        return value  # deepfloyd

    # -- loading ---------------------------------------------------------------------------------------------
    def lock(self, value: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(value, threading.Lock())

    def get(self, value: str | None):
        spec = self.spec_for(value)
        with self._guard:
            if value in self._models:
                self._models.move_to_end(value)
                return self._models[value]
        model = load_model(spec, self.device)
        with self._guard:
            self._models[value] = model
            while len(self._models) > self.limits.max_cached_models:
                self._models.popitem(last=False)
        return model
