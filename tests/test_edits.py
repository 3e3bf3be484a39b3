"""Part A tools built on the one sampler: denoising, SDEdit, inpainting, anagrams, hybrids, images and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from parta_helpers import FormulaModel, GaussianDataModel, one_thread  # noqa: F401  (one_thread: autouse fixture)
from PIL import Image

from diffusionlab import edits, guidance, sampling
from diffusionlab.course_model import CourseModel
from diffusionlab.errors import DiffusionLabError
from diffusionlab.filters import highpass, lowpass
from diffusionlab.images import default_mask, load_image, load_mask, save_image
from diffusionlab.model_protocol import Prediction, randn
from diffusionlab.schedule import NoiseSchedule, add_noise, predict_x0, strided_timesteps
from diffusionlab.views import get_view


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from conftest import make_checkpoint

    return CourseModel.from_checkpoint(make_checkpoint(tmp_path_factory.mktemp("e") / "run"))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_defaults_follow_the_model():
    if_like = FormulaModel(NoiseSchedule.cosine(1000), (3, 8, 8), (-1.0, 1.0))
    ours = GaussianDataModel(NoiseSchedule.linear(300))
    assert edits.default_scale(if_like) == 7.0 and edits.default_scale(ours) == 5.0
    assert edits.default_timesteps(if_like) == list(range(990, -1, -30))
    assert edits.default_timesteps(ours) == list(range(290, -1, -10))
    assert sampling.sampler_defaults(if_like) == {"sampler": "ddpm", "variance": "auto", "threshold": (0.95, 1.5)}
    assert sampling.sampler_defaults(ours) == {**sampling.OUR_SAMPLER, "threshold": None}


def test_one_step_and_iterative_denoise(model):
    x0 = torch.rand(2, 1, 28, 28)
    x_t = edits.forward(model, x0, [150], gen())[0]
    eps = guidance.plain(model, model.null(1))(x_t, 150).output
    assert torch.allclose(edits.one_step_denoise(model, x_t, 150), predict_x0(x_t, 150, eps, model.schedule))
    ts = strided_timesteps(300)
    frames = []
    out = edits.iterative_denoise(
        model,
        add_noise(x0, ts[25], torch.randn_like(x0), model.schedule),
        25,
        generator=gen(1),
        callback=frames.append,
        progress=False,
    )
    assert out.shape == x0.shape and [f["t"] for f in frames] == ts[25:]
    assert frames[-1]["t_prev"] == -1
    b = edits.blur(x_t)
    assert b.shape == x_t.shape and b.std() < x_t.std()


def test_sdedit_single_istart_is_forward_then_denoise(model):
    x = torch.rand(2, 1, 28, 28)
    got = edits.sdedit(model, x, "3", [24], generator=gen(2), progress=False)
    g = gen(2)
    ts = strided_timesteps(300)
    x_t = add_noise(x, ts[24], sampling.randn(x.shape, g, like=x), model.schedule)
    est = guidance.cfg(model, model.encode(["3"]), model.null(1), 5.0)
    want = sampling.denoise(model, x_t, ts, est, 24, generator=g, progress=False, **sampling.sampler_defaults(model))
    assert got.shape == (1, 2, 1, 28, 28)
    assert torch.allclose(got[0], want, atol=1e-5)


def test_sdedit_batched_starts_follow_their_own_trajectory():
    """In the one-batch SDEdit a later i_start's rows restart from their own noisy image at ts[i_start]."""
    m = GaussianDataModel(NoiseSchedule.linear(300))
    x = torch.rand(3, 1, 8, 8)
    starts = [2, 15, 29]
    seen = {}

    def cb(state):
        seen[state["i"]] = state["x"].clone()

    out = edits.sdedit(m, x, "", starts, generator=gen(0), callback=cb, progress=False)
    assert out.shape == (3, 3, 1, 8, 8)
    ts = strided_timesteps(300)
    # the i_start = 29 rows were reset after step 28 to x noised to ts[29]: close to x, unlike the other rows
    x29 = seen[28][6:9]
    assert ((x29 - x) ** 2).mean() < 0.01 < ((seen[28][:3] - x) ** 2).mean()
    # ... and from there they take exactly the (noise-free) last step on their own
    est = guidance.plain(m, m.null(1))
    assert torch.allclose(sampling.denoise(m, x29, ts, est, 29, progress=False), out[2], atol=1e-5)


def test_sdedit_defaults_to_the_courses_i_starts():
    """SPEC A1.7: SDEdit for i_start in [1, 3, 5, 7, 10, 20] unless told otherwise (the CLI, tools and report)."""
    m = GaussianDataModel(NoiseSchedule.linear(300))
    x = torch.rand(1, 1, 8, 8, generator=gen(4))
    cond = torch.tensor([[0.1]])
    got = edits.sdedit(m, x, cond, scale=1.0, generator=gen(1), progress=False)
    want = edits.sdedit(m, x, cond, [1, 3, 5, 7, 10, 20], 1.0, gen(1), progress=False)
    assert got.shape[0] == 6 and torch.equal(got, want)


def test_sdedit_gets_closer_to_the_input_as_i_start_grows():
    m = GaussianDataModel(NoiseSchedule.linear(300), mu=0.2, s=0.3)
    x = torch.rand(64, 1, 8, 8, generator=gen(9)) * 0.5 + 0.5  # far from the data mean 0.2
    starts = [1, 10, 15, 20, 25, 28]  # (at T = 300 the first few strided steps are all nearly pure noise)
    mse = torch.zeros(len(starts))
    for seed in range(3):
        out = edits.sdedit(m, x, "", starts, generator=gen(seed), progress=False)
        mse += ((out - x) ** 2).mean(dim=(1, 2, 3, 4))
    assert all(a > b for a, b in zip(mse, mse[1:], strict=False)), mse


def test_inpaint_keeps_the_original_exactly_outside_the_mask(model):
    x = torch.rand(3, 1, 28, 28)
    mask = default_mask(model.image_shape)
    ts = [290, 200, 120, 60, 20, 0]
    out = edits.inpaint(model, x, mask, "7", generator=gen(0), timesteps=ts, progress=False)
    keep = mask.expand_as(x) == 0
    assert torch.equal(out[keep], x[keep])
    assert not torch.equal(out[~keep], x[~keep])
    out2 = edits.inpaint(model, x, mask, "7", generator=gen(0), timesteps=ts, i_start=3, progress=False)
    assert torch.equal(out2[keep], x[keep])


def test_translate_is_sdedit_with_a_prompt(model):
    x = torch.rand(1, 1, 28, 28)
    a = edits.translate(model, x, "8", [20, 25], generator=gen(4), progress=False)
    b = edits.sdedit(model, x, "8", [20, 25], generator=gen(4), progress=False)
    assert torch.equal(a, b)


def test_anagram_identity_is_cfg_sampling_and_hybrid_same_prompt_is_too():
    m = GaussianDataModel(NoiseSchedule.linear(300))
    # the same step rule: anagrams take the sampler default, hybrids the ddpm steps they were measured with
    want = edits.sample(m, 3, "ab", scale=5.0, generator=gen(5), progress=False)
    anagram = edits.anagram(m, "ab", "ab", "identity", 3, scale=5.0, generator=gen(5), progress=False)
    assert torch.allclose(anagram, want, atol=1e-5)
    want = edits.sample(m, 3, "ab", scale=5.0, generator=gen(5), progress=False, **edits.MEASURED_HYBRID_RULE)
    hybrid = edits.hybrid(m, "ab", "ab", 3, scale=5.0, generator=gen(5), progress=False)
    assert torch.allclose(hybrid, want, atol=1e-5)
    assert not torch.allclose(hybrid, anagram, atol=1e-3)


@pytest.fixture(scope="module")
def sensitive_model(tmp_path_factory):
    """Our UNet with its weights redrawn (He-scaled, seeded) so that its class input matters: an untrained
    checkpoint's eps moves by ~1e-6 with the class, too little to see a branch mixed up; this one's by ~0.04."""
    from conftest import make_checkpoint

    m = CourseModel.from_checkpoint(make_checkpoint(tmp_path_factory.mktemp("s") / "run"))
    g = gen(3)
    with torch.no_grad():
        for p in m.net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (1.0 if p.dim() < 2 else (2.0 / p[0].numel()) ** 0.5))
    return m


def _one_call_per_branch(model, combine_branches):
    """An estimator written from the formula: every image and every branch its own model call (batch of 1), then
    combine_branches(x_i, t, cfg) -> eps_i, cfg(x, cond) = eps_u + scale (eps_c - eps_u) of x alone."""

    def estimate(x_t, t):
        def cfg_of(scale):
            def cfg(x, cond):
                e_c, e_u = (model.predict(x, torch.full((1,), t), c).output for c in (cond, model.null(1)))
                return e_u + scale * (e_c - e_u)

            return cfg

        return Prediction(torch.cat([combine_branches(x_t[i : i + 1], t, cfg_of) for i in range(len(x_t))]))

    return estimate


def _reference_run(model, estimate, defaults, ts, seed):
    """The loop as the illusions run it (same noise, same step rule), with the given estimator."""
    g = gen(seed)
    x = randn((2, *model.image_shape), g, device=model.device)
    rule = edits.illusion_rule(model, defaults, {})
    return sampling.run(model, x, ts, estimate, generator=g, progress=False, **rule)


@pytest.mark.parametrize("view", ["rot180", "flip", "negate"])
def test_anagram_runs_batched_on_our_model(sensitive_model, view):
    """The 2 images x 4 branches in one predict per step give what one model call per image and branch gives:
    eps = (CFG(x_t, "6") + view^-1(CFG(view(x_t), "9"))) / 2 (combine "mean")."""
    model = sensitive_model
    ts, scale = [290, 150, 0], 3.0
    out = edits.anagram(model, "6", "9", view, 2, scale, gen(0), ts, combine="mean", progress=False)
    v = get_view(view, model.image_shape)
    c6, c9 = model.encode(["6"]), model.encode(["9"])

    def mean_of_views(x, t, cfg_of):
        abar, level = guidance.view_levels(model, t)
        cfg = cfg_of(scale)
        vr = model.value_range
        return (cfg(x, c6) + v.inverse_noisy(cfg(v.apply_noisy(x, abar, vr), c9), level, vr)) / 2

    want = _reference_run(model, _one_call_per_branch(model, mean_of_views), edits.ANAGRAM_DEFAULTS, ts, 0)
    assert torch.allclose(out, want, atol=1e-4), (out - want).abs().max()


def test_hybrid_runs_batched_on_our_model(sensitive_model):
    """The 2 images x 3 branches (the encoder shared) in one predict per step give the formula with one model call
    per image and branch: eps = lowpass(CFG(x_t, "0")) + highpass(CFG(x_t, "1"))."""
    model = sensitive_model
    ts, scale, kernel, sigma = [290, 150, 0], 3.0, 7, 1.5
    out = edits.hybrid(model, "0", "1", 2, sigma, kernel, scale, gen(0), ts, progress=False)
    c0, c1 = model.encode(["0"]), model.encode(["1"])

    def low_plus_high(x, t, cfg_of):
        cfg = cfg_of(scale)
        return lowpass(cfg(x, c0), kernel, sigma) + highpass(cfg(x, c1), kernel, sigma)

    want = _reference_run(model, _one_call_per_branch(model, low_plus_high), edits.HYBRID_DEFAULTS, ts, 0)
    assert torch.allclose(out, want, atol=1e-4), (out - want).abs().max()


def test_load_image_any_mode_and_size(tmp_path):
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., 3] = 0  # transparent -> white paper
    rgba[10:30, 25:35] = (0, 0, 0, 255)  # a black stroke
    Image.fromarray(rgba, "RGBA").save(tmp_path / "d.png")
    x = load_image(tmp_path / "d.png", (1, 28, 28), (0.0, 1.0), invert=True)
    assert x.shape == (1, 1, 28, 28) and x.max() > 0.9 and x[0, 0, 0, 0] < 0.05  # white on black
    y = load_image(tmp_path / "d.png", (3, 64, 64), (-1.0, 1.0))
    assert y.shape == (1, 3, 64, 64) and y.min() >= -1 and y[0, :, 0, 0].tolist() == [1.0, 1.0, 1.0]
    Image.fromarray(np.full((10, 10), 128, np.uint8)).convert("P").save(tmp_path / "p.gif")
    assert load_image(tmp_path / "p.gif", (1, 28, 28)).shape == (1, 1, 28, 28)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    for bad in (tmp_path / "bad.png", tmp_path / "missing.png"):
        with pytest.raises(DiffusionLabError) as e:
            load_image(bad, (1, 28, 28))
        assert "\n" not in str(e.value)
    save_image(x, tmp_path / "o.png")
    assert torch.allclose(load_image(tmp_path / "o.png", (1, 28, 28)), x, atol=1 / 255)


def test_masks(tmp_path):
    m = default_mask((3, 64, 64))
    assert m.shape == (1, 1, 64, 64) and m.sum() == 17 * 17 and m[0, 0, 2:19, 24:41].all()
    m28 = default_mask((1, 28, 28))  # at 28 px: over the top half of the digit, not the course's (background) spot
    assert m28.shape == (1, 1, 28, 28) and m28.sum() == 10 * 20 and m28[0, 0, 4:14, 4:24].all()
    assert torch.equal(load_mask("rect:0:14:0:28", (1, 28, 28))[0, 0, :14], torch.ones(14, 28))
    arr = np.zeros((28, 28), np.uint8)
    arr[5:10, 5:10] = 255
    Image.fromarray(arr).save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png", (1, 28, 28)).sum() == 25
    for bad in ("rect:0:40:0:5", "rect:a:b", tmp_path / "m.png"):
        with pytest.raises(DiffusionLabError):
            load_mask(bad, (1, 32, 32) if bad == tmp_path / "m.png" else (1, 28, 28))
