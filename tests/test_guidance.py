"""Noise estimators: batched = sequential, anagram/hybrid reduce to CFG, one predict per step, the blur."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from parta_helpers import FormulaModel, one_thread  # noqa: F401  (one_thread: autouse fixture)

from diffusionlab import guidance
from diffusionlab.course_model import CourseModel
from diffusionlab.errors import DiffusionLabError
from diffusionlab.filters import gaussian_blur, gaussian_kernel1d, highpass, lowpass, scaled_blur
from diffusionlab.schedule import NoiseSchedule
from diffusionlab.views import get_view

ATOL = 1e-5


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from conftest import make_checkpoint

    return CourseModel.from_checkpoint(make_checkpoint(tmp_path_factory.mktemp("g") / "run"))


def _x(n=3, seed=0):
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_batched_cfg_equals_sequential_calls(model):
    x, t = _x(), 150
    c, u = model.encode(["3"]), model.null(1)
    got = guidance.cfg(model, c, u, 5.0)(x, t).output
    eps_c = guidance.plain(model, c)(x, t).output
    eps_u = guidance.plain(model, u)(x, t).output
    assert torch.allclose(got, eps_u + 5.0 * (eps_c - eps_u), atol=ATOL)
    per_image = model.encode(["1", "2", "7"])
    got = guidance.cfg(model, per_image, u, 3.0)(x, t).output
    for i in range(3):
        one = guidance.cfg(model, per_image[i : i + 1], u, 3.0)(x[i : i + 1], t).output
        assert torch.allclose(got[i : i + 1], one, atol=ATOL)


def test_anagram_with_identity_view_is_cfg(model):
    x, t, c, u = _x(), 120, model.encode(["5"]), model.null(1)
    ident = get_view("identity", model.image_shape)
    want = guidance.cfg(model, c, u, 5.0)(x, t).output
    assert torch.allclose(guidance.anagram(model, [(ident, c)], u, 5.0)(x, t).output, want, atol=ATOL)
    assert torch.allclose(guidance.anagram(model, [(ident, c), (ident, c)], u, 5.0)(x, t).output, want, atol=ATOL)


@pytest.mark.parametrize("view", ["rot180", "negate", "patch-permute", "inner-circle"])
def test_anagram_batched_equals_sequential(model, view):
    x, t, u = _x(2), 200, model.null(1)
    c1, c2 = model.encode(["6"]), model.encode(["9"])
    v = get_view(view, model.image_shape, seed=1)
    ident = get_view("identity", model.image_shape)
    abar = float(model.schedule.abar(t))
    eps1 = guidance.cfg(model, c1, u, 5.0)(x, t).output
    eps2 = v.inverse_noise(guidance.cfg(model, c2, u, 5.0)(v.apply_noisy(x, abar, model.value_range), t).output)
    got = guidance.anagram(model, [(ident, c1), (v, c2)], u, 5.0)(x, t).output
    assert torch.allclose(got, (eps1 + eps2) / 2, atol=ATOL)


def test_anagram_combine_modes_against_their_formulas(model):
    """alternate: one view per call, in turn (view 1, view 2, view 1, ...); rescaled: the mean of the views'
    estimates scaled per image to the mean of their standard deviations."""
    x, t, u = _x(2), 200, model.null(1)
    c1, c2 = model.encode(["6"]), model.encode(["9"])
    v = get_view("rot180", model.image_shape)
    ident = get_view("identity", model.image_shape)
    abar = float(model.schedule.abar(t))
    eps1 = guidance.cfg(model, c1, u, 5.0)(x, t).output
    eps2 = v.inverse_noise(guidance.cfg(model, c2, u, 5.0)(v.apply_noisy(x, abar, model.value_range), t).output)
    alternate = guidance.anagram(model, [(ident, c1), (v, c2)], u, 5.0, combine="alternate")
    for want in (eps1, eps2, eps1):
        torch.testing.assert_close(alternate(x, t).output, want, atol=ATOL, rtol=1e-4)
    mean = (eps1 + eps2) / 2
    std = lambda e: e.flatten(1).std(1).view(-1, 1, 1, 1)  # noqa: E731
    want = mean * ((std(eps1) + std(eps2)) / 2) / std(mean)
    got = guidance.anagram(model, [(ident, c1), (v, c2)], u, 5.0, combine="rescaled")(x, t).output
    torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-4)
    assert not torch.allclose(got, mean, atol=1e-3)  # the rescaling does something here


def test_anagram_variance_and_single_predict():
    m = FormulaModel(NoiseSchedule.cosine(1000), (3, 16, 16), (-1.0, 1.0))
    x, t = torch.randn(2, 3, 16, 16), 500
    c1, c2, u = m.encode(["an old man"]), m.encode(["a campfire"]), m.null(1)
    v = get_view("rot90", m.image_shape)
    ident = get_view("identity", m.image_shape)
    m.calls = 0
    got = guidance.anagram(m, [(ident, c1), (v, c2)], u, 7.0)(x, t)
    assert m.calls == 1
    p1 = guidance.cfg(m, c1, u, 7.0)(x, t)
    p2 = guidance.cfg(m, c2, u, 7.0)(v.apply_noisy(x, float(m.schedule.abar(t)), m.value_range), t)
    assert torch.allclose(got.output, (p1.output + v.inverse_noise(p2.output)) / 2, atol=ATOL)
    assert torch.allclose(got.var_values, (p1.var_values + v.inverse_spatial(p2.var_values)) / 2, atol=ATOL)


def test_hybrid_identical_prompts_is_cfg_and_batched_equals_sequential(model):
    x, t, u = _x(), 100, model.null(1)
    c, c_low, c_high = model.encode(["4"]), model.encode(["0"]), model.encode(["1"])
    want = guidance.cfg(model, c, u, 5.0)(x, t).output
    assert torch.allclose(guidance.hybrid(model, c, c, u, 5.0)(x, t).output, want, atol=ATOL)
    k, s = scaled_blur(28)
    e_low = guidance.cfg(model, c_low, u, 5.0)(x, t).output
    e_high = guidance.cfg(model, c_high, u, 5.0)(x, t).output
    got = guidance.hybrid(model, c_low, c_high, u, 5.0)(x, t).output
    assert torch.allclose(got, lowpass(e_low, k, s) + highpass(e_high, k, s), atol=ATOL)


def test_hybrid_single_predict_and_variance():
    m = FormulaModel(NoiseSchedule.cosine(1000), (3, 64, 64), (-1.0, 1.0))
    x, t, u = torch.randn(1, 3, 64, 64), 700, m.null(1)
    c1, c2 = m.encode(["a skull"]), m.encode(["waterfalls"])
    m.calls = 0
    got = guidance.hybrid(m, c1, c2, u, 7.0)(x, t)
    assert m.calls == 1
    p1, p2 = guidance.cfg(m, c1, u, 7.0)(x, t), guidance.cfg(m, c2, u, 7.0)(x, t)
    assert torch.allclose(got.output, lowpass(p1.output, 33, 2.0) + highpass(p2.output, 33, 2.0), atol=ATOL)
    assert torch.allclose(got.var_values, (p1.var_values + p2.var_values) / 2, atol=ATOL)


def test_blur_scaling_rule_and_reference():
    assert scaled_blur(64) == (33, 2.0)
    assert scaled_blur(28) == (15, 0.875)
    assert scaled_blur(256) == (133, 8.0)
    k = gaussian_kernel1d(33, 2.0)
    assert abs(float(k.sum()) - 1) < 1e-6 and torch.equal(k, k.flip(0))
    x = torch.rand(2, 3, 20, 24)
    # separable blur == explicit 2-D Gaussian kernel over a reflect-padded image
    k2 = torch.outer(gaussian_kernel1d(7, 1.5), gaussian_kernel1d(7, 1.5))
    want = F.conv2d(F.pad(x, (3, 3, 3, 3), mode="reflect"), k2.expand(3, 1, 7, 7), groups=3)
    assert torch.allclose(gaussian_blur(x, 7, 1.5), want, atol=1e-6)
    assert torch.allclose(gaussian_blur(torch.full((1, 1, 9, 9), 0.3), 5, 2.0), torch.full((1, 1, 9, 9), 0.3))
    assert torch.allclose(lowpass(x, 7, 1.5) + highpass(x, 7, 1.5), x, atol=1e-6)
    for bad in ((4, 1.0), (7, 0.0), (41, 2.0)):
        with pytest.raises(DiffusionLabError):
            gaussian_blur(x, *bad)


def test_gaussian_kernel_and_blur_limits_against_reference_numbers():
    """The 5-tap sigma-1 kernel is the textbook one (OpenCV's getGaussianKernel(5, 1)); a 1-tap kernel is the
    identity; the smallest scaled kernel is 3; a kernel too large names the largest that fits."""
    want = torch.tensor([0.05448868, 0.24420134, 0.40261995, 0.24420134, 0.05448868])
    torch.testing.assert_close(gaussian_kernel1d(5, 1.0), want, atol=1e-7, rtol=0)
    wide = gaussian_kernel1d(7, 2.5)
    torch.testing.assert_close(wide[3] / wide[0], torch.tensor(math.exp(9 / (2 * 2.5**2)), dtype=wide.dtype))
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(gaussian_blur(x, 1, 1.0), x)
    assert scaled_blur(4) == (3, 0.125)
    with pytest.raises(DiffusionLabError, match=r"too large for 28x28 images \(at most 55\)"):
        gaussian_blur(torch.rand(1, 1, 28, 28), 57, 1.0)


def test_alternating_views_follow_each_images_share_of_the_steps():
    w = torch.tensor([[0.5, 0.5], [1 / 3, 2 / 3], [2 / 3, 1 / 3], [1.0, 0.0]])
    taken = torch.zeros_like(w)
    seq = torch.stack([guidance.alternating_views(w, taken, k) for k in range(12)], 1)
    assert seq[0].tolist() == [0, 1] * 6  # equal weights: in turn, the first view first (as "alternate")
    assert seq[1].tolist().count(1) == 8 and seq[1].tolist()[:3] == [1, 0, 1]  # two steps in three
    assert seq[2].tolist().count(0) == 8 and seq[2].tolist()[:3] == [0, 1, 0]
    assert seq[3].tolist() == [0] * 12
    assert taken.sum(1).tolist() == [12.0] * 4
    four = torch.full((1, 4), 0.25)
    t4 = torch.zeros_like(four)
    assert [int(guidance.alternating_views(four, t4, k)) for k in range(8)] == [0, 1, 2, 3] * 2


def _two_views(model):
    c1, c2 = model.encode(["6"]), model.encode(["9"])
    v = get_view("rot180", model.image_shape)
    ident = get_view("identity", model.image_shape)
    return [(ident, c1), (v, c2)]


def test_anagram_weights_equal_reproduce_alternate_and_the_mean(model):
    x, t, u, pairs = _x(2), 200, model.null(1), _two_views(model)
    eq = torch.full((2, 2), 0.5)
    plain_alt = guidance.anagram(model, pairs, u, 5.0, combine="alternate")
    weighted_alt = guidance.anagram(model, pairs, u, 5.0, combine="alternate", weights=eq * 3)  # normalized
    for _ in range(3):
        torch.testing.assert_close(weighted_alt(x, t).output, plain_alt(x, t).output, atol=0, rtol=0)
    mean = guidance.anagram(model, pairs, u, 5.0)(x, t).output
    torch.testing.assert_close(guidance.anagram(model, pairs, u, 5.0, weights=eq)(x, t).output, mean, atol=ATOL, rtol=0)


def test_anagram_weighted_mean_against_its_formula(model):
    x, t, u, pairs = _x(2), 200, model.null(1), _two_views(model)
    (ident, c1), (v, c2) = pairs
    abar = float(model.schedule.abar(t))
    eps1 = guidance.cfg(model, c1, u, 5.0)(x, t).output
    eps2 = v.inverse_noise(guidance.cfg(model, c2, u, 5.0)(v.apply_noisy(x, abar, model.value_range), t).output)
    w = torch.tensor([[1.0, 3.0], [2.0, 0.0]])
    got = guidance.anagram(model, pairs, u, 5.0, weights=w)(x, t).output
    torch.testing.assert_close(got[0], 0.25 * eps1[0] + 0.75 * eps2[0], atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(got[1], eps1[1], atol=ATOL, rtol=1e-4)


def test_anagram_per_image_views_in_one_predict_equal_each_image_alone():
    """Images with different weights take different views at the same step, all in one predict; each gets what
    it would get sampled alone."""
    m = FormulaModel(NoiseSchedule.cosine(1000), (3, 16, 16), (-1.0, 1.0))
    x, t = torch.randn(3, 3, 16, 16), 500
    pairs = [
        (get_view("identity", m.image_shape), m.encode(["an old man"])),
        (get_view("rot90", m.image_shape), m.encode(["a campfire"])),
    ]
    u = m.null(1)
    w = torch.tensor([[0.5, 0.5], [1.0, 2.0], [2.0, 1.0]])
    together = guidance.anagram(m, pairs, u, 7.0, "alternate", w)
    alone = [guidance.anagram(m, pairs, u, 7.0, "alternate", w[i : i + 1]) for i in range(3)]
    for _ in range(4):
        m.calls = 0
        got = together(x, t)
        assert m.calls == 1
        for i in range(3):
            one = alone[i](x[i : i + 1], t)
            torch.testing.assert_close(got.output[i : i + 1], one.output, atol=ATOL, rtol=1e-4)
            torch.testing.assert_close(got.var_values[i : i + 1], one.var_values, atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize(
    "weights, message",
    [
        (torch.ones(2, 3), "one row of 2 per image"),
        (torch.tensor([[1.0, -1.0], [1.0, 1.0]]), "non-negative"),
        (torch.tensor([[0.0, 0.0], [1.0, 1.0]]), "not all zero"),
        (torch.tensor([[float("nan"), 1.0], [1.0, 1.0]]), "finite"),
    ],
)
def test_anagram_bad_weights_are_one_line_errors(model, weights, message):
    with pytest.raises(DiffusionLabError, match=message):
        guidance.anagram(model, _two_views(model), model.null(1), 5.0, "alternate", weights)


def test_view_weights_set_between_steps_move_the_alternation():
    """A ViewWeights read at every step: after `set`, the view furthest behind its new share goes next; the
    rebalancing hook sets the starting weights times balance(x0) and then calls the caller's hook."""
    m = FormulaModel(NoiseSchedule.cosine(1000), (3, 16, 16), (-1.0, 1.0))
    pairs = [
        (get_view("identity", m.image_shape), m.encode(["an old man"])),
        (get_view("rot90", m.image_shape), m.encode(["a campfire"])),
    ]
    x = torch.randn(2, 3, 16, 16)
    live = guidance.ViewWeights(torch.ones(2, 2), 2)
    est = guidance.anagram(m, pairs, m.null(1), 7.0, "alternate", live)
    fixed = guidance.anagram(m, pairs, m.null(1), 7.0, "alternate")
    for _ in range(2):  # equal weights: 0, 1 as without weights
        torch.testing.assert_close(est(x, 500).output, fixed(x, 500).output, atol=0, rtol=0)
    live.set(torch.tensor([[1.0, 3.0], [3.0, 1.0]]))  # shares 1/4, 3/4 and 3/4, 1/4 from now on
    assert live.taken.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    est(x, 500)  # call 2: (3 w - taken) = (-0.25, 1.25) / (1.25, -0.25): image 0 takes view 1, image 1 view 0
    assert live.taken.tolist() == [[1.0, 2.0], [2.0, 1.0]]
    with pytest.raises(DiffusionLabError, match="new view weights"):
        live.set(torch.ones(3, 2))
    seen = []
    hook = live.rebalancing(lambda x0: torch.tensor([[1.0, 0.0], [1.0, 1.0]]), seen.append)
    hook({"x0": x, "i": 0})
    torch.testing.assert_close(live.w, torch.tensor([[1.0, 0.0], [0.75, 0.25]]))  # start (1/4, 3/4) x factors
    assert len(seen) == 1
