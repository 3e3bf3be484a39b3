"""Input and output at the edge (uploads, result PNGs) and checks of the form values; the image conversions are
in app/pictures.py."""

from __future__ import annotations

import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from diffusionlab.app.pictures import to_picture
from diffusionlab.app.registry import Limits, ModelRegistry
from diffusionlab.environment import env_path
from diffusionlab.errors import DiffusionLabError
from diffusionlab.figures.grid import save_png
from diffusionlab.files import regular_file


# ---------------------------------------------------------------------------------------------------------------
# input and output at the edge
# ---------------------------------------------------------------------------------------------------------------
def _upload_roots() -> list[Path]:
    roots = [Path(tempfile.gettempdir()) / "gradio"]
    gradio_temp = env_path("GRADIO_TEMP_DIR")
    if gradio_temp is not None:
        roots.insert(0, gradio_temp)
    return [r.resolve() for r in roots]


URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")  # http://, https://, file://, ftp://, ...


def url_in(values: Any) -> str | None:
    """The first URL given where a file is expected (the "path" of a file payload, at any depth of a request's
    values), or None. Gradio would fetch such a path from the network before our handler runs; a file must be
    uploaded through the page instead (a legitimate upload's path is a file in the upload folder)."""
    if isinstance(values, dict):
        path = values.get("path")
        if isinstance(path, str) and URL.match(path.strip()):
            return path.strip()
        values = list(values.values())
    if isinstance(values, (list, tuple)):
        return next((url for url in map(url_in, values) if url), None)
    return None


def url_message(url: str) -> str:
    return (
        f"a URL was given where a file is expected ({url[:80]}): the page does not fetch files from the network; "
        "download it and upload the file"
    )


def payload_path(payload: Any) -> str | None:
    if payload is None:
        return None
    if isinstance(payload, dict):
        return payload.get("path")
    return getattr(payload, "path", None)


def open_upload(payload: Any, limits: Limits, what: str = "image", required: bool = True) -> Image.Image | None:
    """A file the browser uploaded (Gradio's raw payload) -> a fully decoded PIL image, or a one-line error."""
    path = payload_path(payload)
    if not path:
        if required:
            raise DiffusionLabError(f"no {what}: upload one first")
        return None
    if URL.match(str(path).strip()):
        raise DiffusionLabError(url_message(str(path)))
    p = Path(path).resolve()
    if not any(p.is_relative_to(root) for root in _upload_roots()):
        raise DiffusionLabError(f"the {what} must be a file uploaded through this page")
    if not p.exists():
        raise DiffusionLabError(f"the uploaded {what} is gone from the server; upload it again")
    size = regular_file(p, f"the uploaded {what}").st_size  # a named pipe would block the server's reader
    if size > limits.max_upload_bytes:
        raise DiffusionLabError(
            f"the {what} is {size / 2**20:.1f} MB; the limit is {limits.max_upload_bytes / 2**20:.0f} MB"
        )
    from diffusionlab.images import open_image

    return open_image(p, f"the uploaded {what}", limits.max_pixels)  # pixel count checked before decoding


def painted(layers: list[Image.Image]) -> bool:
    """Whether any brush stroke is in the editor's layers (an untouched layer is fully transparent)."""
    return any(np.asarray(layer.convert("RGBA").getchannel("A")).any() for layer in layers)


def editor_parts(payload: Any, limits: Limits) -> tuple[Image.Image | None, Image.Image | None, list[Image.Image]]:
    """gr.ImageEditor's raw value -> (background, composite, layers) as PIL images (any may be missing)."""
    if not payload:
        return None, None, []
    get = payload.get if isinstance(payload, dict) else lambda k: getattr(payload, k, None)
    background = open_upload(get("background"), limits, "image", required=False)
    composite = open_upload(get("composite"), limits, "drawing", required=False)
    layers = [im for im in (open_upload(x, limits, "layer", required=False) for x in (get("layers") or [])) if im]
    return background, composite, layers


class Outputs:
    """Result PNGs (upscaled for the screen, settings in the PNG text) in a private folder the app serves."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = Path(directory or tempfile.mkdtemp(prefix="diffusionlab-app-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.writes = 0  # PNGs written: every 100th prunes the old ones

    def prune(self, max_age_s: float = 3600.0) -> None:
        """Forget results older than max_age_s (Gradio keeps its own copy for the page that showed them)."""
        cutoff = time.time() - max_age_s
        for f in self.dir.glob("*.png"):
            try:
                if f.stat().st_mtime < cutoff:
                    f.unlink()
            except OSError:
                pass

    def png(self, im: Image.Image, settings: dict[str, Any], stem: str) -> str:
        self.writes += 1
        if self.writes % 100 == 0:
            self.prune()
        path = self.dir / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.png"
        return str(save_png(im, path, settings))

    def tensor_png(self, x: Tensor, model, settings: dict[str, Any], stem: str) -> str:
        return self.png(to_picture(x, model), settings, stem)

    def row_png(self, xs: Tensor, model, settings: dict[str, Any], stem: str) -> str:
        """(N, C, H, W) -> one PNG, side by side."""
        return self.png(to_picture(xs, model), settings, stem)


def settings_text(settings: dict[str, Any]) -> str:
    """The settings line under a result: **key** value, lists comma-separated."""
    shown = {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in settings.items()}
    return " · ".join(f"**{k}** {v}" for k, v in shown.items())


# ---------------------------------------------------------------------------------------------------------------
# parsing and checks of the form values
# ---------------------------------------------------------------------------------------------------------------
def parse_prompts(text: str, what: str = "prompt") -> list[str]:
    prompts = [p.strip() for p in str(text or "").replace("\n", ",").split(",")]
    prompts = [p for p in prompts if p]
    return prompts or [""]


def as_int(value: Any, name: str, lo: int, hi: int) -> int:
    try:
        v = int(round(float(value)))
    except (TypeError, ValueError):
        raise DiffusionLabError(f"{name} must be a whole number, got {value!r}") from None
    if not lo <= v <= hi:
        raise DiffusionLabError(f"{name} must be between {lo} and {hi}, got {v}")
    return v


def as_float(value: Any, name: str, lo: float, hi: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DiffusionLabError(f"{name} must be a number, got {value!r}") from None
    if not (lo <= v <= hi):
        raise DiffusionLabError(f"{name} must be between {lo} and {hi}, got {v}")
    return v


def seed_value(seed: Any) -> int:
    """-1 (or empty) draws a random seed, which is then shown with the result; else checks.parse_seed's rule."""
    from diffusionlab.checks import parse_seed

    if seed is None or str(seed).strip() in ("", "-1", "-1.0"):
        return int(torch.randint(0, 2**31 - 1, (1,)).item())
    return parse_seed(seed, "seed (-1 for a random one)")


def check_ddpm(model, what: str) -> None:
    """The page's edit tabs take a DDPM's noise levels (their sliders are timesteps): one line for another kind."""
    kind = model.kind
    if not kind.supports("iterative_denoise"):
        raise DiffusionLabError(
            f"{what} on this page takes a DDPM's noise levels; {model.name} is {kind.describe}: it runs "
            f"{', '.join(kind.tools)}"
        )


def model_label(registry: ModelRegistry, value: str) -> str:
    return next((label for label, v in registry.choices() if v == value), value)
