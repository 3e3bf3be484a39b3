"""Figures with Pillow only: labelled image grids, loss curves, GIFs of a sampling process."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin
from torch import Tensor

from diffusionlab.checkpoint import atomic_write_bytes


def to_uint8(images: Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """(N, C, H, W) float in value_range -> (N, H, W, C) uint8, clamped."""
    lo, hi = value_range
    x = ((images.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def to_pil(image: Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> Image.Image:
    """One (C, H, W) image -> PIL (L for one channel, RGB for three)."""
    arr = to_uint8(image.unsqueeze(0), value_range)[0]
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr, "L" if arr.shape[-1] == 1 else "RGB")


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def grid_image(
    images: Tensor,
    nrow: int,
    value_range: tuple[float, float] = (0.0, 1.0),
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    cell: int | None = None,
    pad: int = 2,
) -> Image.Image:
    """Tile (N, C, H, W) images in rows of nrow, upscaled to `cell` px, with optional row/column labels."""
    n, _, h, w = images.shape
    cell = cell or max(h, min(96, 4 * h))
    scale = cell / h
    cw, ch = cell, round(w * scale)
    rows = math.ceil(n / nrow)
    font = _font(max(10, cell // 7))
    left = 0 if not row_labels else max(12 + int(font.getlength(str(s))) for s in row_labels)
    top = (0 if not col_labels else 4 + cell // 5) + (0 if not title else 8 + cell // 5)
    canvas = Image.new("RGB", (left + nrow * (ch + pad) + pad, top + rows * (cw + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 2), title, fill="black", font=font)
    tiles = to_uint8(images, value_range)
    for i, tile in enumerate(tiles):
        pil = Image.fromarray(tile[..., 0] if tile.shape[-1] == 1 else tile).convert("RGB")
        pil = pil.resize((ch, cw), Image.NEAREST if scale >= 2 else Image.BILINEAR)
        r, c = divmod(i, nrow)
        canvas.paste(pil, (left + pad + c * (ch + pad), top + pad + r * (cw + pad)))
    for r, label in enumerate(row_labels or []):
        draw.text((4, top + pad + r * (cw + pad) + cw // 2 - font.size // 2), str(label), fill="black", font=font)
    for c, label in enumerate(col_labels or []):
        x = left + pad + c * (ch + pad)
        draw.text((x + 2, top - cell // 5), str(label), fill="black", font=font)
    return canvas


def stack_vertically(parts: Sequence[Image.Image]) -> Image.Image:
    """Figures one above the other on white (e.g. a grid and its transformed twin)."""
    width = max(p.width for p in parts)
    canvas = Image.new("RGB", (width, sum(p.height for p in parts)), "white")
    y = 0
    for p in parts:
        canvas.paste(p, (0, y))
        y += p.height
    return canvas


def show_prompt(prompt: str) -> str:
    """A prompt as a label: the empty (unconditional) prompt shows as ''."""
    return repr(prompt) if prompt == "" else prompt


def save_png(image: Image.Image, path: str | Path, settings: dict | None = None) -> Path:
    """Written atomically; `settings` go into the PNG's text chunk 'diffusionlab' as JSON (what made the image)."""
    buf = io.BytesIO()
    info = None
    if settings:
        info = PngImagePlugin.PngInfo()
        info.add_text("diffusionlab", json.dumps(settings, sort_keys=True, default=str))
    image.save(buf, format="PNG", pnginfo=info)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def save_grid(
    images: Tensor, path: str | Path, nrow: int, value_range: tuple[float, float] = (0.0, 1.0), **kwargs
) -> Path:
    return save_png(grid_image(images, nrow, value_range, **kwargs), path)


def save_gif(
    frames: Sequence[Tensor], path: str | Path, nrow: int, value_range=(0.0, 1.0), duration_ms: int = 60
) -> Path:
    """Each frame a batch (N, C, H, W), shown as a grid; the last frame is held for a second."""
    pils = [grid_image(f, nrow, value_range, cell=56) for f in frames]
    durations = [duration_ms] * (len(pils) - 1) + [1000]
    buf = io.BytesIO()
    pils[0].save(buf, format="GIF", save_all=True, append_images=pils[1:], duration=durations, loop=0)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def plot_curves(
    series: dict[str, Sequence[float]], path: str | Path, title: str = "", xlabel: str = "step", log_y: bool = True
) -> Path:
    """A line plot of one or more series (e.g. training loss per step), log-scaled y by default."""
    width, height, margin = 640, 400, 60
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = _font(12)
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    values = [np.asarray(v, dtype=np.float64) for v in series.values() if len(v)]
    if not values:
        values = [np.array([1.0])]
    allv = np.concatenate(values)
    allv = allv[np.isfinite(allv)]
    use_log = log_y and allv.size and (allv > 0).all()
    f = np.log10 if use_log else (lambda a: a)
    lo, hi = (float(f(allv).min()), float(f(allv).max())) if allv.size else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    n_max = max(len(v) for v in values)
    box = (margin, 30, width - 20, height - 40)
    draw.rectangle(box, outline="black")

    def xy(i: int, v: float) -> tuple[float, float]:
        x = box[0] + (box[2] - box[0]) * (i / max(1, n_max - 1))
        y = box[3] - (box[3] - box[1]) * ((f(v) - lo) / (hi - lo))
        return x, y

    for k, (name, v) in enumerate(series.items()):
        v = np.asarray(v, dtype=np.float64)
        if len(v) == 0:
            continue
        stride = max(1, len(v) // 2000)  # a long run is drawn from at most ~2000 points
        pts = [xy(i, float(v[i])) for i in range(0, len(v), stride) if np.isfinite(v[i])]
        if len(pts) > 1:
            draw.line(pts, fill=colors[k % len(colors)], width=1)
        draw.text((box[0] + 8, box[1] + 6 + 14 * k), name, fill=colors[k % len(colors)], font=font)
    for frac in (0.0, 0.5, 1.0):
        val = lo + frac * (hi - lo)
        label = f"{10**val:.3g}" if use_log else f"{val:.3g}"
        y = box[3] - (box[3] - box[1]) * frac
        draw.text((4, y - 6), label, fill="black", font=font)
    draw.text(
        (box[0], box[3] + 8), f"0 .. {n_max - 1} {xlabel}" + ("   (log y)" if use_log else ""), fill="black", font=font
    )
    if title:
        draw.text((box[0], 8), title, fill="black", font=font)
    return save_png(img, path)


def show(images, value_range: tuple[float, float] = (0.0, 1.0), nrow: int | None = None, **labels) -> Image.Image:
    """Images as one PIL grid, which a notebook displays inline: a (C, H, W) or (N, C, H, W) tensor in value_range
    (our models: (0, 1); IF: (-1, 1)), a list of them, or anything with a `figure()` (a tool's Result).
    labels: row_labels, col_labels, title as in grid_image."""
    if hasattr(images, "figure"):
        return images.figure()
    if isinstance(images, list | tuple):
        images = torch.cat([x.unsqueeze(0) if x.dim() == 3 else x for x in images])
    x = images.unsqueeze(0) if images.dim() == 3 else images.flatten(0, -4)
    return grid_image(x, nrow or min(len(x), 8), value_range, **labels)
