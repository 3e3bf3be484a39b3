"""Tests that notice the breakages a mutation run once let through (issue 12's "four survivors"; the fourth, class
dropout removed from the training loss, is test_training's):

(a) inpainting that does not re-noise the known region after every step,
(b) the CLI's anagram grid showing the upright image twice instead of the image and its view,
(c) flow sampling that ignores the CFG scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from parta_helpers import GaussianDataModel, one_thread  # noqa: F401  (one_thread: autouse fixture)
from PIL import Image
from test_flow_tools import FlowFormulaModel

from diffusionlab import edits, guidance, sampling, tools
from diffusionlab.schedule import NoiseSchedule, add_noise, strided_timesteps


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def top_half_mask(shape) -> torch.Tensor:
    m = torch.zeros(1, 1, *shape[1:])
    m[..., : shape[1] // 2, :] = 1  # new content in the top half; the bottom half is known
    return m


# -- (a) inpainting re-noises the known region at every step --------------------------------------------------------
def test_inpaint_known_region_is_the_renoised_original_after_every_step():
    """After each step the known region is forward(x_orig, t_prev) with fresh noise drawn from the loop's generator
    (a hand-written re-noising after_step on the one loop gives the same images, step by step); after the last step
    it is x_orig itself."""
    model = GaussianDataModel(NoiseSchedule.linear(300), image_shape=(1, 16, 16))
    ts = strided_timesteps(300)
    x_orig = torch.rand(2, 1, 16, 16, generator=gen(5))
    mask = top_half_mask(model.image_shape)
    cond = torch.tensor([[0.3]])
    got, ref = [], []
    out = edits.inpaint(
        model, x_orig, mask, cond, 3.0, gen(1), ts, callback=lambda s: got.append(s["x"]), progress=False
    )

    g = gen(1)
    x = torch.randn(x_orig.shape, generator=g)

    def renoise(x: torch.Tensor, t_prev: int, step: int) -> torch.Tensor:
        known = x_orig if t_prev < 0 else add_noise(x_orig, t_prev, torch.randn(x.shape, generator=g), model.schedule)
        return mask * x + (1 - mask) * known

    est = guidance.cfg(model, cond, model.null(1), 3.0)
    rule = sampling.sampler_defaults(model)
    want = sampling.denoise(
        model, x, ts, est, 0, renoise, lambda s: ref.append(s["x"]), g, progress=False, **rule
    )  # fmt: skip
    assert len(got) == len(ts) == len(ref)
    for step, (a, b) in enumerate(zip(got, ref, strict=True)):
        torch.testing.assert_close(a, b, msg=f"step {step}")
    torch.testing.assert_close(out, want)
    assert torch.equal(out[..., 8:, :], x_orig[..., 8:, :])
    # the known region of a middle step is a noisy original: its implied noise is a fresh standard Gaussian
    t_mid = ts[len(ts) // 2]
    abar = float(model.schedule.abar(t_mid))
    eps = (got[len(ts) // 2 - 1][..., 8:, :] - abar**0.5 * x_orig[..., 8:, :]) / (1 - abar) ** 0.5
    assert 0.7 < float(eps.std()) < 1.3 and abs(float(eps.mean())) < 0.3


def test_flow_inpaint_known_region_is_on_the_flow_path_after_every_step():
    """The same on a flow model: the known region after the step to t is (1 - t) noise + t x_orig."""
    model = FlowFormulaModel()
    ts = sampling.timesteps_for(model, 6)
    x_orig = torch.rand(1, *model.image_shape, generator=gen(2))
    mask = top_half_mask(model.image_shape)
    got = []
    out = edits.inpaint(
        model, x_orig, mask, "3", 2.0, gen(0), ts, callback=lambda s: got.append(s["x"]), progress=False
    )
    g = gen(0)
    x = torch.randn(x_orig.shape, generator=g)

    def renoise(x: torch.Tensor, t: float, step: int) -> torch.Tensor:
        known = x_orig if t >= 1 else (1 - t) * torch.randn(x.shape, generator=g) + t * x_orig
        return mask * x + (1 - mask) * known

    est = guidance.cfg(model, model.encode(["3"]), model.null(1), 2.0)
    ref = []
    want = sampling.denoise(model, x, ts, est, 0, renoise, lambda s: ref.append(s["x"]), progress=False)
    for step, (a, b) in enumerate(zip(got, ref, strict=True)):
        torch.testing.assert_close(a, b, msg=f"step {step}")
    torch.testing.assert_close(out, want)
    assert torch.equal(out[..., 4:, :], x_orig[..., 4:, :])


def test_inpaint_with_a_soft_mask_blends_new_and_renoised_known_content_by_the_mask():
    """A mask between 0 and 1 (a feathered edge) blends: x <- m x + (1 - m) forward(x_orig, t_prev) after every
    step, the same formula as the hard mask's; where m = 0 the result is still the original exactly."""
    model = GaussianDataModel(NoiseSchedule.linear(300), image_shape=(1, 16, 16))
    ts = strided_timesteps(300)[20:]
    x_orig = torch.rand(1, 1, 16, 16, generator=gen(6))
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :6, :], mask[..., 6, :], mask[..., 7, :] = 1.0, 0.75, 0.25
    cond = torch.tensor([[0.3]])
    out = edits.inpaint(model, x_orig, mask, cond, 3.0, gen(2), ts, progress=False)

    g = gen(2)
    x = torch.randn(x_orig.shape, generator=g)

    def blend(x: torch.Tensor, t_prev: int, step: int) -> torch.Tensor:
        known = x_orig if t_prev < 0 else add_noise(x_orig, t_prev, torch.randn(x.shape, generator=g), model.schedule)
        return mask * x + (1 - mask) * known

    est = guidance.cfg(model, cond, model.null(1), 3.0)
    want = sampling.denoise(model, x, ts, est, 0, blend, None, g, progress=False, **sampling.sampler_defaults(model))
    torch.testing.assert_close(out, want)
    assert torch.equal(out[..., 8:, :], x_orig[..., 8:, :])
    hard = edits.inpaint(model, x_orig, (mask > 0.5).float(), cond, 3.0, gen(2), ts, progress=False)
    assert not torch.allclose(out[..., 6:8, :], hard[..., 6:8, :])  # the feathered rows are a blend, not a cut


# -- (b) the CLI's anagram grid shows each image and its view ------------------------------------------------------
def _cells(png: Path, n: int, rows: int, size: int = 28, cell: int = 96, pad: int = 2) -> np.ndarray:
    """The (rows, n) cells of a figures.grid_image PNG (one panel, default cell and pad), back at `size` px."""
    img = Image.open(png).convert("L")
    left, top = img.width - n * (cell + pad) - pad, img.height - rows * (cell + pad) - pad
    out = np.zeros((rows, n, size, size), np.uint8)
    for r in range(rows):
        for c in range(n):
            x, y = left + pad + c * (cell + pad), top + pad + r * (cell + pad)
            out[r, c] = np.asarray(img.crop((x, y, x + cell, y + cell)).resize((size, size), Image.NEAREST))
    return out


@pytest.mark.parametrize("view, turn", [("rot180", lambda a: np.rot90(a, 2)), ("flip", lambda a: a[::-1])])
def test_cli_anagram_grid_shows_the_image_and_its_view(tmp_path, capsys, monkeypatch, view, turn):
    from conftest import make_checkpoint

    import diffusionlab.tools.result as result_module
    from diffusionlab.cli import main

    drawn = []
    grid_image = result_module.grid_image
    monkeypatch.setattr(
        result_module, "grid_image", lambda cells, *a, **k: drawn.append(cells) or grid_image(cells, *a, **k)
    )
    model = make_checkpoint(tmp_path / "run", hidden=4)
    out, singles = tmp_path / "anagram.png", tmp_path / "all"
    argv = ["anagram", "-p", "6", "-p", "9", "--view", view, "-n", "2", "--model", str(model), "--device", "cpu"]
    with pytest.raises(SystemExit) as e:
        main([*argv, "--out", str(out), "--save-all", str(singles)])
    assert (e.value.code or 0) == 0, capsys.readouterr().err
    # what was drawn: row 1 = the images, row 2 = the same images through the view (inside each cell's one-pixel
    # pass/fail frame, tools/readings.framed)
    (cells,) = drawn
    assert cells.shape[-2:] == (30, 30)
    cells = cells[..., 1:-1, 1:-1]
    v = {"rot180": lambda x: torch.rot90(x, 2, (-2, -1)), "flip": lambda x: torch.flip(x, (-2,))}[view]
    assert torch.equal(cells[2:], v(cells[:2])) and not torch.equal(cells[2:], cells[:2])
    # what was saved: the grid's cells (inside their frames) and the single images
    grid = _cells(out, n=2, rows=2, size=30)[..., 1:-1, 1:-1]
    for j in range(2):
        upright = np.asarray(Image.open(singles / f"anagram_{j + 1}.png").convert("L"))
        viewed = np.asarray(Image.open(singles / f"anagram_{j + 1}_{view}.png").convert("L"))
        assert np.array_equal(grid[0, j], upright) and np.array_equal(grid[1, j], viewed)
        assert np.array_equal(viewed, turn(upright)) and not np.array_equal(viewed, upright)


# -- (c) flow sampling follows the CFG scale -----------------------------------------------------------------------
def _euler_cfg(model, x: torch.Tensor, cond: torch.Tensor, scale: float, steps: int) -> torch.Tensor:
    """Euler by hand with u = (1 - s) u(x, null) + s u(x, c)."""
    null = model.null(x.shape[0])
    for i in range(steps):
        t = i / steps
        x = x + ((1 - scale) * model.velocity(x, t, null) + scale * model.velocity(x, t, cond)) / steps
    return x


@pytest.mark.parametrize("scale", [1.0, 3.0, 6.0])
def test_flow_sampling_follows_the_cfg_scale(scale):
    model = FlowFormulaModel()
    cond = model.encode(["2", "2", "8", "8"])
    x0 = torch.randn((4, *model.image_shape), generator=gen(7))
    want = _euler_cfg(model, x0, cond, scale, 3)
    r = tools.sample(model, ["2", "8"], 2, steps=3, scale=scale, seed=7, progress=False)  # the CLI's, the UI's
    torch.testing.assert_close(r.images, want, rtol=1e-5, atol=1e-5)
    est = guidance.cfg(model, cond, model.null(1), scale)
    direct = sampling.run(model, x0, sampling.flow_timesteps(3), est, progress=False)  # evaluation's
    torch.testing.assert_close(direct, want, rtol=1e-5, atol=1e-5)
    if scale != 1.0:
        plain = tools.sample(model, ["2", "8"], 2, steps=3, scale=1.0, seed=7, progress=False).images
        assert (r.images - plain).abs().max() > 1e-2  # the scale changes the images
