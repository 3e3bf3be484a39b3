"""`diffusionlab make-shapes`: the coloured-shapes image folder of the colour demo (issue 40)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffusionlab.commands.common import wrote


def make_shapes(
    folder: Annotated[Path, typer.Argument(help="New (or empty) folder: one subfolder per shape is written in it.")],
    n: Annotated[int, typer.Option("-n", help="Images per class.")] = 600,
    size: Annotated[int, typer.Option(help="Side of the images in pixels.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the colours, sizes, positions and rotations.")] = 0,
) -> None:
    """Draw a small colour data set: circles, squares and triangles in random colours, sizes, positions and
    rotations on white, one subfolder per class (an image folder for `train --data-dir`).

    Example: diffusionlab make-shapes out/shapes -n 600 && diffusionlab train class --data-dir out/shapes
    """
    from diffusionlab.shapes import make_shapes as draw

    counts = draw(folder, n, size, seed)
    print(f"drew {sum(counts.values())} images of {size} px: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    wrote(*(folder / k for k in counts))


def register(app: typer.Typer) -> None:
    app.command("make-shapes", no_args_is_help=True)(make_shapes)
