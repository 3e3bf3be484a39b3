"""Anagram views: exact inverses, the right action on images, noise and noisy images, clear errors."""

from __future__ import annotations

import pytest
import torch
from parta_helpers import one_thread  # noqa: F401  (autouse fixture)

from diffusionlab.errors import DiffusionLabError
from diffusionlab.schedule import NoiseSchedule, add_noise
from diffusionlab.views import VIEW_NAMES, get_view

SHAPE = (3, 16, 16)


@pytest.mark.parametrize("name", [*VIEW_NAMES, "patch-permute:2", "patch-permute:8"])
def test_inverse_is_exact(name):
    x = torch.rand(2, *SHAPE)
    v = get_view(name, SHAPE, (0.0, 1.0), seed=3)
    assert v.name == name
    assert torch.equal(v.inverse_noise(v.apply_noise(x)), x)
    assert torch.equal(v.apply_noise(v.inverse_noise(x)), x)
    assert torch.equal(v.inverse_spatial(v.apply_spatial(x)), x)
    back = v.inverse(v.apply(x))
    assert torch.equal(back, x) if name != "negate" else torch.allclose(back, x, atol=1e-7, rtol=0)


def test_views_do_what_they_say():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    s = (1, 4, 4)
    assert torch.equal(get_view("rot180", s).apply(x), torch.rot90(x, 2, (-2, -1)))
    assert torch.equal(get_view("flip", s).apply(x), x.flip(-2))  # upside down
    assert torch.equal(get_view("hflip", s).apply(x), x.flip(-1))
    assert torch.equal(get_view("rot90", s).apply(x), torch.rot90(x, 1, (-2, -1)))
    assert torch.equal(get_view("rot270", s).apply(x), torch.rot90(x, -1, (-2, -1)))
    assert torch.equal(get_view("identity", s).apply(x), x)
    y = torch.rand(2, 1, 4, 4)
    assert torch.allclose(get_view("negate", s, (0.0, 1.0)).apply(y), 1 - y)
    assert torch.allclose(get_view("negate", s, (-1.0, 1.0)).apply(y), -y)
    assert torch.equal(get_view("negate", s, (0.0, 1.0)).apply_noise(y), -y)  # noise negates, no offset
    for name in ("patch-permute", "pixel-permute", "inner-circle"):
        out = get_view(name, SHAPE, seed=1).apply(torch.rand(1, *SHAPE))
        assert out.shape == (1, *SHAPE)
    p = torch.arange(16 * 16.0).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    for name in ("patch-permute", "pixel-permute", "inner-circle"):
        out = get_view(name, SHAPE, seed=1).apply(p)
        assert not torch.equal(out, p)
        assert torch.equal(out.flatten().sort().values, p.flatten().sort().values)  # a permutation
        assert torch.equal(out[:, 0], out[:, 1])  # the same for every channel
    # a patch permutation moves whole patches
    out = get_view("patch-permute:2", SHAPE, seed=0).apply(p)[0, 0]
    for r in (0, 8):
        for c in (0, 8):
            patch = out[r : r + 8, c : c + 8]
            assert torch.equal(patch - patch[0, 0], p[0, 0, :8, :8] - p[0, 0, 0, 0])
    # the seed picks the permutation, reproducibly
    a, b = get_view("pixel-permute", SHAPE, seed=1), get_view("pixel-permute", SHAPE, seed=1)
    assert torch.equal(a.apply(p), b.apply(p))
    assert not torch.equal(a.apply(p), get_view("pixel-permute", SHAPE, seed=2).apply(p))


@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0)])
@pytest.mark.parametrize("name", VIEW_NAMES)
def test_view_of_noisy_image_is_noisy_view(name, value_range):
    """apply_noisy(x_t) = forward(apply(x0), t, apply_noise(eps)): the model sees a valid noisy image."""
    sched = NoiseSchedule.linear(300)
    v = get_view(name, SHAPE, value_range, seed=0)
    x0 = torch.rand(2, *SHAPE) * (value_range[1] - value_range[0]) + value_range[0]
    eps = torch.randn(2, *SHAPE)
    for t in (0, 150, 299):
        abar = float(sched.abar(t))
        got = v.apply_noisy(add_noise(x0, t, eps, sched), abar)
        want = add_noise(v.apply(x0), t, v.apply_noise(eps), sched)
        assert torch.allclose(got, want, atol=1e-5)
        assert torch.allclose(v.inverse_noisy(got, abar), add_noise(x0, t, eps, sched), atol=1e-5)


def test_views_that_do_not_fit_raise_one_line_errors():
    for name, shape in (("rot90", (1, 28, 32)), ("rot270", (3, 8, 16)), ("patch-permute:5", (1, 28, 28))):
        with pytest.raises(DiffusionLabError) as e:
            get_view(name, shape)
        assert "\n" not in str(e.value)
    with pytest.raises(DiffusionLabError, match="rot180"):
        get_view("spin", SHAPE)
    with pytest.raises(DiffusionLabError):
        get_view("patch-permute:x", SHAPE)
    with pytest.raises(DiffusionLabError):
        get_view("rot180:2", SHAPE)
    assert get_view("rot180", (1, 28, 32)).apply(torch.rand(1, 1, 28, 32)).shape == (1, 1, 28, 32)
