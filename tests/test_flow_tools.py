"""Flow models take the same estimators as DDPMs (sampling.run dispatches once): CFG on the velocity by its formula,
scale 1 = the plain conditional sampler, and anagrams, hybrids, SDEdit and inpainting run on a tiny random flow
model. (A random course UNet barely depends on its class, |u_c - u_u| ~ 1e-6, so the CFG formulas are checked on
FlowFormulaModel, a velocity field that does.)"""

from __future__ import annotations

import pytest
import torch
from parta_helpers import one_thread  # noqa: F401  (autouse fixture)
from torch import Tensor

from diffusionlab import edits, guidance, sampling, tools
from diffusionlab.course_model import CourseModel
from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_kinds import FLOW
from diffusionlab.model_protocol import DiffusionModel, Prediction
from diffusionlab.views import get_view


class FlowFormulaModel(DiffusionModel):
    """A flow model whose velocity is a fixed smooth function of (x_t, t, class), strongly class-dependent."""

    kind = FLOW
    conditioned = True
    schedule = None
    name = "formula-flow"

    def __init__(self, image_shape=(1, 8, 8), value_range=(0.0, 1.0)):
        self.image_shape, self.value_range = image_shape, value_range
        self.device = torch.device("cpu")

    def velocity(self, x: Tensor, t, cond: Tensor) -> Tensor:
        tt = torch.as_tensor(t, dtype=x.dtype).reshape(-1).expand(x.shape[0]).view(-1, 1, 1, 1)
        c = (cond.float() @ torch.arange(1.0, 11.0)).view(-1, 1, 1, 1)
        return 0.5 * torch.sin(3 * x + tt) + 0.2 * c * torch.cos(x.roll(1, -1)) - 0.3 * x

    def predict(self, x: Tensor, t, cond: Tensor) -> Prediction:
        return Prediction(self.velocity(x, t, cond))  # the kind's output: the velocity

    def encode(self, prompts: list[str]) -> Tensor:
        c = torch.zeros(len(prompts), 10)
        for i, p in enumerate(prompts):
            if p:
                c[i, int(p)] = 1.0
        return c

    def null(self, n: int) -> Tensor:
        return torch.zeros(n, 10)


@pytest.fixture(scope="module")
def fm():
    return FlowFormulaModel()


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    from conftest import make_checkpoint

    run = make_checkpoint(tmp_path_factory.mktemp("flow") / "run", "class", "flow", hidden=4)
    return CourseModel.from_checkpoint(run)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_flow_timesteps_are_the_euler_grid(flow):
    assert sampling.timesteps_for(flow, 4) == [0.0, 0.25, 0.5, 0.75]
    assert len(sampling.timesteps_for(flow, edit=True)) == sampling.FLOW_EDIT_STEPS
    assert len(sampling.timesteps_for(flow)) == 300  # the class model: the course's 300 Euler steps
    with pytest.raises(DiffusionLabError):
        sampling.denoise(flow, torch.zeros(1, 1, 28, 28), [0.5, 0.25], guidance.plain(flow, flow.null(1)))


def test_the_one_loop_gives_each_kind_of_model_only_its_own_step_rules(flow, tmp_path):
    from conftest import make_checkpoint

    x, ddpm = torch.zeros(1, 1, 28, 28), CourseModel.from_checkpoint(make_checkpoint(tmp_path / "ddpm", hidden=4))
    with pytest.raises(DiffusionLabError, match="a flow model takes Euler steps; --sampler ddim is for DDPMs"):
        sampling.denoise(flow, x, [0.0, 0.5], guidance.plain(flow, flow.null(1)), sampler="ddim", progress=False)
    with pytest.raises(DiffusionLabError, match="Euler steps are for flow models"):
        sampling.denoise(ddpm, x, [20, 10], guidance.plain(ddpm, ddpm.null(1)), sampler="euler", progress=False)


@pytest.mark.parametrize("scale", [0.0, 3.0, 7.5])
def test_flow_cfg_is_the_velocity_formula_for_one_step(fm, scale):
    """One Euler step from t = 0: x1 = x0 + ((1 - s) u(x0, null) + s u(x0, c))."""
    cond, null = fm.encode(["3", "7"]), fm.null(2)
    x0 = torch.randn((2, *fm.image_shape), generator=gen(3))
    x = sampling.run(fm, x0, sampling.flow_timesteps(1), guidance.cfg(fm, cond, null, scale), progress=False)
    u_u, u_c = fm.velocity(x0, 0.0, null), fm.velocity(x0, 0.0, cond)
    torch.testing.assert_close(x, x0 + ((1 - scale) * u_u + scale * u_c), rtol=1e-5, atol=1e-5)
    # the tool (sampling.generate) gives the same images for the same seed
    r = tools.sample(fm, ["3", "7"], 1, steps=1, scale=scale, seed=3, progress=False)
    torch.testing.assert_close(r.images, x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model", ["fm", "flow"])
def test_flow_scale_one_is_the_plain_conditional_sampler(model, request):
    """CFG scale 1 = Euler on u(x, c) alone, written out by hand; a different scale gives different images."""
    m = request.getfixturevalue(model)
    cond = m.encode(["5"])
    steps = 4
    x = torch.randn((2, *m.image_shape), generator=gen(1))
    for i in range(steps):
        x = x + m.predict(x, i / steps, cond.expand(2, -1)).output / steps  # the velocity
    r = tools.sample(m, ["5"], 2, steps=steps, scale=1.0, seed=1, progress=False)
    torch.testing.assert_close(r.images, x, rtol=1e-5, atol=1e-5)
    x0 = torch.randn((2, *m.image_shape), generator=gen(1))
    plain = guidance.plain(m, cond)
    torch.testing.assert_close(sampling.run(m, x0, sampling.flow_timesteps(steps), plain, progress=False), x)
    if model == "fm":
        guided = tools.sample(m, ["5"], 2, steps=steps, scale=4.0, seed=1, progress=False).images
        assert (guided - x).abs().max() > 1e-2


def test_flow_anagram_estimator_moves_the_velocity_back_as_an_image(fm):
    """negate on [0, 1] images: the view of x_t is t - x_t, and its velocity comes back as 1 - u (an image)."""
    c1, c2, null = fm.encode(["1"]), fm.encode(["4"]), fm.null(1)
    neg = get_view("negate", fm.image_shape)
    ident = get_view("identity", fm.image_shape)
    est = guidance.anagram(fm, [(ident, c1), (neg, c2)], null, 2.0)
    x, t = torch.rand(2, *fm.image_shape), 0.4

    def cfg(x_in, c):
        u, c_ = fm.velocity(x_in, t, null.expand(2, -1)), fm.velocity(x_in, t, c.expand(2, -1))
        return u + 2.0 * (c_ - u)

    want = (cfg(x, c1) + (1 - cfg(t - x, c2))) / 2
    torch.testing.assert_close(est(x, t).output, want, rtol=1e-5, atol=1e-5)
    # a hybrid of one prompt twice is CFG of it (lowpass + highpass = identity), on velocities as on eps
    same = guidance.hybrid(fm, c1, c1, null, 2.0, 3, 1.0)(x, t).output
    torch.testing.assert_close(same, cfg(x, c1), rtol=1e-5, atol=1e-5)


def test_anagram_and_hybrid_run_on_a_flow_model(flow):
    a = tools.anagram(flow, ["6", "9"], "rot180", n=2, seed=0, progress=False)
    assert a.images.shape == (2, 1, 28, 28) and torch.isfinite(a.images).all()
    rows = a.panels[0].cells
    torch.testing.assert_close(rows[2:], torch.rot90(rows[:2], 2, (-2, -1)))  # the second reading is the view
    h = tools.hybrid(flow, ["0", "1"], n=2, seed=0, progress=False)
    assert h.images.shape == (2, 1, 28, 28) and torch.isfinite(h.images).all()
    # an anagram with the identity view is CFG sampling of its prompt (the mean of one estimate twice)
    same = edits.anagram(flow, "3", "3", "identity", 2, 5.0, gen(2), progress=False)
    cfg = tools.sample(flow, ["3"], 2, steps=sampling.FLOW_EDIT_STEPS, scale=5.0, seed=2, progress=False).images
    torch.testing.assert_close(same, cfg, rtol=1e-4, atol=1e-4)


def test_sdedit_and_inpaint_run_on_a_flow_model(flow):
    x = torch.rand(1, 1, 28, 28)
    ts = sampling.timesteps_for(flow, edit=True)
    s = tools.sdedit(flow, x, "2", [5, 20], seed=gen(0), progress=False)
    assert s.images.shape == (2, 1, 1, 28, 28) and torch.isfinite(s.images).all()
    # SDEdit from i_start = 20 is x noised to the flow time ts[20] then Euler from there
    g = gen(4)
    start = sampling.noised(flow, x, ts[20], torch.randn(x.shape, generator=g))
    est = guidance.cfg(flow, flow.encode(["2"]), flow.null(1), 5.0)
    want = sampling.denoise(flow, start, ts, est, 20, progress=False)
    got = edits.sdedit(flow, x, "2", [20], 5.0, gen(4), progress=False)[0]
    torch.testing.assert_close(got, want)
    mask = torch.zeros(1, 1, 28, 28)
    mask[..., :14, :] = 1
    out = tools.inpaint(flow, x, mask, "4", seed=1, progress=False).images
    assert torch.equal(out[..., 14:, :], x[..., 14:, :])  # the original, exactly, outside the mask


def test_flow_models_take_no_ddpm_step_rule_nor_ddpm_noise_levels(flow):
    with pytest.raises(DiffusionLabError, match="Euler"):
        tools.anagram(flow, ["6", "9"], n=1, sampler="ddim", progress=False)
    with pytest.raises(DiffusionLabError, match="flow model"):
        tools.forward(flow, torch.rand(1, 1, 28, 28))
