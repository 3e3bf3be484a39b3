"""Figures: labelled image grids and GIFs of a sampling process with Pillow; loss curves with matplotlib
(imported inside plot_curves, so that importing diffusionlab stays fast)."""

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

from diffusionlab.model_files import atomic_write_bytes


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
    # a column as wide as its widest label, so that labels never run into each other; tiles centred in it
    col_w = max([ch] + [6 + int(font.getlength(str(s))) for s in col_labels or []])
    width = left + nrow * (col_w + pad) + pad
    width = max(width, 2 * pad + int(font.getlength(title))) if title else width  # never cut the title
    canvas = Image.new("RGB", (width, top + rows * (cw + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 2), title, fill="black", font=font)
    tiles = to_uint8(images, value_range)
    for i, tile in enumerate(tiles):
        pil = Image.fromarray(tile[..., 0] if tile.shape[-1] == 1 else tile).convert("RGB")
        pil = pil.resize((ch, cw), Image.NEAREST if scale >= 2 else Image.BILINEAR)
        r, c = divmod(i, nrow)
        canvas.paste(pil, (left + pad + c * (col_w + pad) + (col_w - ch) // 2, top + pad + r * (cw + pad)))
    for r, label in enumerate(row_labels or []):
        draw.text((4, top + pad + r * (cw + pad) + cw // 2 - font.size // 2), str(label), fill="black", font=font)
    for c, label in enumerate(col_labels or []):
        x = left + pad + c * (col_w + pad) + (col_w - int(font.getlength(str(label)))) // 2
        draw.text((x, top - cell // 5), str(label), fill="black", font=font)
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
    series: dict[str, Sequence[float]],
    path: str | Path,
    title: str = "",
    xlabel: str = "step",
    log_y: bool | None = None,
    epochs: Sequence[int] | None = None,
    ylabel: str = "loss",
) -> Path:
    """A matplotlib line plot of one or more series (e.g. training loss per step), 800 x 450 px, with a grid.

    log_y: None = log scale when the values span more than a decade (and are all positive), else as given.
    epochs: the epoch of each step (1-based, as in loss.csv); the epoch boundaries are drawn as dotted lines and
    the epochs named on a second x axis at the top."""
    # a Figure on its own Agg canvas, not pyplot: no display needed, and a notebook's backend is left alone
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = [np.asarray(v, dtype=np.float64) for v in series.values() if len(v)]
    finite = np.concatenate(values) if values else np.array([])
    finite = finite[np.isfinite(finite)]
    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, v in series.items():
        if len(v):
            ax.plot(np.arange(1, len(v) + 1), np.asarray(v, dtype=np.float64), label=name, linewidth=1)
    if _wants_log(finite, log_y):
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 0.02, 0.05, 0.1 ...: plain numbers
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.15)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel + (" (log scale)" if ax.get_yscale() == "log" else ""))
    if title:
        ax.set_title(title, pad=22 if epochs is not None else 6)
    if epochs is not None and len(epochs):
        _mark_epochs(ax, epochs)
    if len(series) > 1:
        ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def _wants_log(values: np.ndarray, log_y: bool | None) -> bool:
    if values.size == 0 or (values <= 0).any():
        return False
    if log_y is not None:
        return log_y
    return float(values.max()) / float(values.min()) > 10.0  # more than a decade: a linear axis hides the tail


def _mark_epochs(ax, epochs: Sequence[int]) -> None:
    """Dotted lines where an epoch starts, and a top axis naming each epoch at its middle (thinned to ~12)."""
    ep = np.asarray(epochs)
    starts = [0] + [i for i in range(1, len(ep)) if ep[i] != ep[i - 1]]
    ends = starts[1:] + [len(ep)]
    for s in starts[1:]:
        ax.axvline(s + 0.5, color="grey", linestyle=":", linewidth=0.8)
    every = max(1, math.ceil(len(starts) / 12))
    top = ax.secondary_xaxis("top")
    top.set_xticks([(s + e) / 2 + 0.5 for s, e in zip(starts, ends, strict=True)][::every])
    top.set_xticklabels([str(int(ep[s])) for s in starts][::every])
    top.set_xlabel("epoch")


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
