"""A small colour data set the package draws itself (issue 40): coloured shapes in one subfolder per class, for a
demo that trains on a CPU in minutes and for tests. Each image is one shape (a random colour, size, position and
rotation) on a white background, drawn at 4x and downsampled so that its edges are smooth."""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from diffusionlab.errors import DiffusionLabError

SHAPES = ("circle", "square", "triangle")
SUPERSAMPLE = 4
AREA_SCALE = {"circle": 1.0, "square": 1.2, "triangle": 1.35}  # circumradius factors: similar areas per class


def _polygon(n_sides: int, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    return [
        (cx + r * math.cos(angle + 2 * math.pi * k / n_sides), cy + r * math.sin(angle + 2 * math.pi * k / n_sides))
        for k in range(n_sides)
    ]


def draw_shape(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB image size x size of `shape`: (circum)radius 20-36 % of the side times AREA_SCALE, anywhere it fits."""
    if shape not in SHAPES:
        raise DiffusionLabError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), "white")
    hue, sat, val = rng.uniform(0, 1), rng.uniform(0.55, 1.0), rng.uniform(0.45, 0.95)
    colour = tuple(round(255 * v) for v in colorsys.hsv_to_rgb(hue, sat, val))
    r = rng.uniform(0.20, 0.36) * big * AREA_SCALE[shape]
    cx, cy = rng.uniform(r + 1, big - r - 1, size=2)
    angle = rng.uniform(0, 2 * math.pi)
    pen = ImageDraw.Draw(image)
    if shape == "circle":
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape == "square":
        pen.polygon(_polygon(4, cx, cy, r, angle), fill=colour)
    else:
        pen.polygon(_polygon(3, cx, cy, r, angle), fill=colour)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def make_shapes(folder: str | Path, per_class: int = 600, size: int = 32, seed: int = 0) -> dict[str, int]:
    """Write per_class PNGs of each shape into folder/<shape>/; returns the count per class."""
    if per_class < 1:
        raise DiffusionLabError(f"-n must be at least 1 image per class, got {per_class}")
    if size < 8:
        raise DiffusionLabError(f"--size must be at least 8 px, got {size}")
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DiffusionLabError(f"{folder}: exists and is not an empty folder; give a new or empty one")
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        (folder / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw_shape(shape, size, rng).save(folder / shape / f"{i:05d}.png")
    return {shape: per_class for shape in SHAPES}
