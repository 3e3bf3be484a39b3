"""What every tool returns: the images, the figure that shows them (labelled panels), and the settings that made
them. The CLI saves it, the report embeds it, a notebook displays it inline (`_repr_png_`)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from torch import Tensor

from diffusionlab.figures.grid import grid_image, save_png, stack_vertically, to_pil


@dataclass
class Panel:
    """One labelled grid: cells (rows * ncol, C, H, W) in reading order."""

    cells: Tensor
    ncol: int
    row_labels: list[str] | None = None
    col_labels: list[str] | None = None
    title: str | None = None


@dataclass
class Result:
    """images: the tool's output, (N, C, H, W) (or (len(i_starts), N, C, H, W) for SDEdit), as the sampler left
    them: NOT clamped, so a few pixels may lie outside `value_range` (the raw numbers, for measuring); the figure,
    `to_pil`, `save` and every PNG clamp to `value_range` first, so `images.clamp(*value_range)` is what they show;
    panels: the figure; singles: name -> (C, H, W) for saving each image alone; settings: what made them (the
    tool, a model name that `load_model` takes, its precision, the seed, steps and step rule, the rest: passing
    them back to the tool remakes the images);
    parts: the named image stacks the figure is made of (e.g. "noisy", "blurred"), for a front-end that draws its
    own figure from them."""

    images: Tensor
    panels: list[Panel]
    value_range: tuple[float, float]
    settings: dict[str, Any] = field(default_factory=dict)
    singles: dict[str, Tensor] = field(default_factory=dict)
    parts: dict[str, Tensor] = field(default_factory=dict)

    def figure(self) -> Image.Image:
        """The panels one above the other, labelled."""
        parts = [
            grid_image(p.cells, p.ncol, self.value_range, p.row_labels, p.col_labels, p.title) for p in self.panels
        ]
        return stack_vertically(parts)

    def to_pil(self, index: int = 0) -> Image.Image:
        """Output image `index` alone (unlabelled, at the model's size)."""
        return to_pil(self.images.flatten(0, -4)[index], self.value_range)

    def save(self, path: str | Path) -> Path:
        """The figure as a PNG whose text chunk 'diffusionlab' holds the settings (JSON)."""
        return save_png(self.figure(), path, self.settings)

    def _repr_png_(self) -> bytes:  # Jupyter shows the figure inline
        buf = io.BytesIO()
        self.figure().save(buf, format="PNG")
        return buf.getvalue()

    def __repr__(self) -> str:
        tool = self.settings.get("tool", "result")
        return f"<{tool}: images {tuple(self.images.shape)}, settings {json.dumps(self.settings, default=str)}>"


def stacked(results: list[Result]) -> Result:
    """Several results as one figure (the CLI's `denoise` with more than one method)."""
    first = results[0]
    settings = {k: v for r in results for k, v in r.settings.items()}
    singles = {k: v for r in results for k, v in r.singles.items()}
    panels = [p for r in results for p in r.panels]
    parts = {k: v for r in results for k, v in r.parts.items()}
    return Result(first.images, panels, first.value_range, settings, singles, parts)
