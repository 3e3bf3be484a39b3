"""figures.grid_image: column labels stay inside their columns, tiles keep their pixels."""

from __future__ import annotations

import numpy as np
import torch

from diffusionlab.figures.grid import grid_image


def test_long_column_labels_widen_their_columns() -> None:
    """B1's "input / noisy sigma=0.5 / denoised" at 28 px ran together: each label now stays inside its column
    (the label band is white at every boundary between columns), and the tiles are the images, centred."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 1, 28, 28, generator=g)
    labels = ["input", "noisy sigma=0.5", "denoised"]
    plain = np.asarray(grid_image(images, 3).convert("L"))
    img = np.asarray(grid_image(images, 3, col_labels=labels).convert("L"))
    pad = 2  # grid_image's default; 2 rows: height = 2 (cell + pad) + pad
    cell = (plain.shape[0] - pad) // 2 - pad
    col_w = (img.shape[1] - pad) // 3 - pad
    assert col_w > cell  # widened for the long label
    top = img.shape[0] - 2 * (cell + pad) - pad
    band = img[:top]
    assert (band < 128).any()  # the labels are drawn
    for c in range(1, 3):  # the boundary between column c-1 and c, in the label band: white
        x = pad + c * (col_w + pad) - pad // 2 - 1
        assert (band[:, x - 1 : x + 2] == 255).all(), f"a label crosses into column {c}"
    for r in range(2):  # each tile is the same as in the unlabelled grid
        for c in range(3):
            x0 = pad + c * (col_w + pad) + (col_w - cell) // 2
            y0 = top + pad + r * (cell + pad)
            px0, py0 = pad + c * (cell + pad), pad + r * (cell + pad)
            assert np.array_equal(img[y0 : y0 + cell, x0 : x0 + cell], plain[py0 : py0 + cell, px0 : px0 + cell])
    # short labels keep the columns as they were
    short = np.asarray(grid_image(images, 3, col_labels=["0", "1", "2"]).convert("L"))
    assert short.shape[1] == plain.shape[1]


def test_a_title_wider_than_the_grid_widens_the_canvas() -> None:
    title = "mnist-class  seed=0  steps=30  cfg=2  a title wider than one tile"
    img = grid_image(torch.zeros(1, 1, 28, 28), nrow=1, title=title)
    narrow = grid_image(torch.zeros(1, 1, 28, 28), nrow=1)
    assert img.width > narrow.width
    ink_cols = np.nonzero((np.asarray(img.convert("L"))[:12] < 128).any(0))[0]
    assert ink_cols.max() < img.width - 2  # the title's last letter lies inside the canvas, not at its edge
