"""Anagram views: exact inverses, the right action on images, noise and noisy images, clear errors."""

from __future__ import annotations

import pytest
import torch
from parta_helpers import one_thread  # noqa: F401  (autouse fixture)

from diffusionlab.errors import DiffusionLabError
from diffusionlab.schedule import NoiseSchedule, add_noise
from diffusionlab.views import VIEWS, get_view, reading_views

SHAPE = (3, 16, 16)
U = (0.0, 1.0)  # images in [0, 1]


@pytest.mark.parametrize("name", [*VIEWS, "patch-permute:2", "patch-permute:8"])
def test_inverse_is_exact(name):
    x = torch.rand(2, *SHAPE)
    v = get_view(name, SHAPE, seed=3)
    assert v.name == name
    assert torch.equal(v.inverse_noise(v.apply_noise(x)), x)
    assert torch.equal(v.apply_noise(v.inverse_noise(x)), x)
    assert torch.equal(v.inverse_spatial(v.apply_spatial(x)), x)
    back = v.inverse(v.apply(x, (0.0, 1.0)), (0.0, 1.0))
    assert torch.equal(back, x) if name != "negate" else torch.allclose(back, x, atol=1e-7, rtol=0)


def test_views_do_what_they_say():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    s = (1, 4, 4)
    assert torch.equal(get_view("rot180", s).apply(x, U), torch.rot90(x, 2, (-2, -1)))
    assert torch.equal(get_view("flip", s).apply(x, U), x.flip(-2))  # upside down
    assert torch.equal(get_view("hflip", s).apply(x, U), x.flip(-1))
    assert torch.equal(get_view("rot90", s).apply(x, U), torch.rot90(x, 1, (-2, -1)))
    assert torch.equal(get_view("rot270", s).apply(x, U), torch.rot90(x, -1, (-2, -1)))
    assert torch.equal(get_view("identity", s).apply(x, U), x)
    y = torch.rand(2, 1, 4, 4)
    assert torch.allclose(get_view("negate", s).apply(y, U), 1 - y)
    assert torch.allclose(get_view("negate", s).apply(y, (-1.0, 1.0)), -y)
    assert torch.equal(get_view("negate", s).apply_noise(y), -y)  # noise negates, no offset
    for name in ("patch-permute", "pixel-permute", "inner-circle"):
        out = get_view(name, SHAPE, seed=1).apply(torch.rand(1, *SHAPE), U)
        assert out.shape == (1, *SHAPE)
    p = torch.arange(16 * 16.0).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    for name in ("patch-permute", "pixel-permute", "inner-circle"):
        out = get_view(name, SHAPE, seed=1).apply(p, U)
        assert not torch.equal(out, p)
        assert torch.equal(out.flatten().sort().values, p.flatten().sort().values)  # a permutation
        assert torch.equal(out[:, 0], out[:, 1])  # the same for every channel
    # a patch permutation moves whole patches
    out = get_view("patch-permute:2", SHAPE, seed=0).apply(p, U)[0, 0]
    for r in (0, 8):
        for c in (0, 8):
            patch = out[r : r + 8, c : c + 8]
            assert torch.equal(patch - patch[0, 0], p[0, 0, :8, :8] - p[0, 0, 0, 0])
    # the seed picks the permutation, reproducibly
    a, b = get_view("pixel-permute", SHAPE, seed=1), get_view("pixel-permute", SHAPE, seed=1)
    assert torch.equal(a.apply(p, U), b.apply(p, U))
    assert not torch.equal(a.apply(p, U), get_view("pixel-permute", SHAPE, seed=2).apply(p, U))


@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0)])
@pytest.mark.parametrize("name", VIEWS)
def test_view_of_noisy_image_is_noisy_view(name, value_range):
    """apply_noisy(x_t) = forward(apply(x0), t, apply_noise(eps)): the model sees a valid noisy image."""
    sched = NoiseSchedule.linear(300)
    v = get_view(name, SHAPE, seed=0)
    x0 = torch.rand(2, *SHAPE) * (value_range[1] - value_range[0]) + value_range[0]
    eps = torch.randn(2, *SHAPE)
    for t in (0, 150, 299):
        abar = float(sched.abar(t))
        got = v.apply_noisy(add_noise(x0, t, eps, sched), abar, value_range)
        want = add_noise(v.apply(x0, value_range), t, v.apply_noise(eps), sched)
        assert torch.allclose(got, want, atol=1e-5)
        assert torch.allclose(v.inverse_noisy(got, abar, value_range), add_noise(x0, t, eps, sched), atol=1e-5)


def test_rot180_and_flips_fit_any_size():
    assert get_view("rot180", (1, 28, 32)).apply(torch.rand(1, 1, 28, 32), U).shape == (1, 1, 28, 32)


def test_errors_name_the_view_and_the_table():
    cases = {
        ("rot90", (1, 28, 32)): "view rot90 needs square images, these are 28x32; use rot180 or a flip",
        ("patch-permute:5", (1, 28, 28)): "view patch-permute:5 does not fit 28x28 images: the grid must divide "
        "both sides (try patch-permute:4)",
        ("patch-permute:x", SHAPE): "view patch-permute:x needs an integer grid size after ':'",
        ("rot180:2", SHAPE): "view 'rot180:2' takes no argument after ':' (only patch-permute:N do)",
        ("spin", SHAPE): f"unknown view 'spin'; choose one of {', '.join(VIEWS)}",
    }
    for (name, shape), message in cases.items():
        with pytest.raises(DiffusionLabError) as e:
            get_view(name, shape)
        assert str(e.value) == message


def test_one_view_serves_every_value_range():
    """A view is built without a value range: the same object reflects about each range's centre where applied."""
    neg = get_view("negate", SHAPE)
    x = torch.rand(2, *SHAPE)
    for lo, hi in ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)):
        y = x * (hi - lo) + lo
        assert torch.allclose(neg.apply(y, (lo, hi)), lo + hi - y, atol=1e-5, rtol=0)
        assert torch.allclose(neg.inverse(neg.apply(y, (lo, hi)), (lo, hi)), y, atol=1e-5, rtol=0)
        abar = 0.36  # a noisy image's centre is sqrt(abar) c: reflected about it
        assert torch.allclose(neg.apply_noisy(y, abar, (lo, hi)), 0.6 * (lo + hi) - y, atol=1e-4, rtol=0)


def test_reading_views_build_each_view_once_identity_first():
    p = torch.arange(16 * 16.0).view(1, 1, 16, 16)
    views = reading_views(["pixel-permute", "rot180"], SHAPE, seed=5)
    assert [v.name for v in views] == ["identity", "pixel-permute", "rot180"]
    assert torch.equal(views[1].apply(p, U), get_view("pixel-permute", SHAPE, seed=5).apply(p, U))
    assert reading_views([views[1]], SHAPE, seed=9)[1] is views[1]  # a built view passes through, seed and all
