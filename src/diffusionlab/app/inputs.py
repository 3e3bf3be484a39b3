"""Input and output at the edge (uploads, image and mask conversion, result PNGs) and checks of the form values."""

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

from diffusionlab.app.registry import Limits, ModelRegistry
from diffusionlab.environment import env_path
from diffusionlab.errors import DiffusionLabError
from diffusionlab.figures.grid import save_png, to_pil
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


def flatten(im: Image.Image, background: str = "white") -> Image.Image:
    """RGBA -> RGB over a background (drawings on a transparent canvas)."""
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        base = Image.new("RGBA", im.size, background)
        return Image.alpha_composite(base, im).convert("RGB")
    return im.convert("RGB")


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


def image_to_tensor(im: Image.Image, model, invert: str = "auto") -> Tensor:
    """A PIL image -> (1, C, H, W) in the model's value range and size (images.py's loader: resize + centre crop).

    invert "auto": one-channel (MNIST-like) models see light strokes on a dark ground, so a light picture (a
    drawing on white) is inverted; "yes"/"no" force it.
    """
    from diffusionlab.images import pil_to_tensor

    flat = flatten(im)
    if invert == "auto":
        gray = flat.convert("L")
        mean = sum(i * c for i, c in enumerate(gray.histogram())) / max(1, gray.width * gray.height) / 255
        do_invert = model.image_shape[0] == 1 and mean > 0.5
    else:
        do_invert = invert == "yes"
    return pil_to_tensor(flat, model.image_shape, model.value_range, invert=do_invert).to(model.device)


def mask_from_layers(layers: list[Image.Image], size: tuple[int, int], model) -> Tensor | None:
    """Brush strokes (the editor's layers, painted = opaque) -> a (1, 1, H, W) 0/1 mask at the model's size,
    cropped like the image it was painted on. None when nothing was painted."""
    from diffusionlab.images import resize_crop

    alpha = Image.new("L", size, 0)
    for layer in layers:
        a = layer.convert("RGBA").getchannel("A")
        if a.size != size:
            a = a.resize(size, Image.Resampling.NEAREST)
        alpha = Image.fromarray(np.maximum(np.asarray(alpha), np.asarray(a)))
    if not np.asarray(alpha).any():
        return None
    _, h, w = model.image_shape
    small = np.asarray(resize_crop(alpha, h, w), dtype=np.float32) / 255.0
    return torch.from_numpy((small >= 0.25).astype(np.float32)).view(1, 1, h, w).to(model.device)


def display_scale(h: int) -> int:
    return max(1, 224 // h)


def upscale(im: Image.Image, scale: int) -> Image.Image:
    return im if scale == 1 else im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)


class Outputs:
    """Result PNGs (upscaled for the screen, settings in the PNG text) in a private folder the app serves."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = Path(directory or tempfile.mkdtemp(prefix="diffusionlab-app-"))
        self.dir.mkdir(parents=True, exist_ok=True)

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
        self.writes = getattr(self, "writes", 0) + 1
        if self.writes % 100 == 0:
            self.prune()
        path = self.dir / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.png"
        return str(save_png(im, path, settings))

    def tensor_png(self, x: Tensor, model, settings: dict[str, Any], stem: str) -> str:
        im = to_pil(x.detach().cpu(), model.value_range)
        return self.png(upscale(im, display_scale(x.shape[-2])), settings, stem)

    def row_png(self, xs: Tensor, model, settings: dict[str, Any], stem: str, pad: int = 4) -> str:
        """(N, C, H, W) -> one PNG, side by side."""
        ims = [upscale(to_pil(x.detach().cpu(), model.value_range), display_scale(x.shape[-2])) for x in xs]
        w = sum(i.width for i in ims) + pad * (len(ims) - 1)
        canvas = Image.new("RGB", (w, max(i.height for i in ims)), "white")
        left = 0
        for i in ims:
            canvas.paste(i.convert("RGB"), (left, 0))
            left += i.width + pad
        return self.png(canvas, settings, stem)


def settings_text(settings: dict[str, Any]) -> str:
    return " · ".join(f"**{k}** {v}" for k, v in settings.items())


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
    require = getattr(model, "require", None)
    if require is not None:
        require(("time", "class"), "ddpm", what)


def model_label(registry: ModelRegistry, value: str) -> str:
    return next((label for label, v in registry.choices() if v == value), value)
