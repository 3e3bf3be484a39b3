"""Tests written for the survivors of the mutation run (scripts/mutation.py, docs/mutation.md): each pins a formula
that a mutant changed without any other test noticing (checked by re-applying the mutant and seeing it fail)."""

from __future__ import annotations

import pytest
import torch
from parta_helpers import FormulaModel, GaussianDataModel, one_thread  # noqa: F401  (one_thread: autouse fixture)

from diffusionlab.edits import ANAGRAM_DEFAULTS, HYBRID_DEFAULTS, anagram_views, blur, hybrid_blur, illusion_scale
from diffusionlab.errors import DiffusionLabError
from diffusionlab.filters import gaussian_blur
from diffusionlab.guidance import plain
from diffusionlab.model_kinds import FLOW
from diffusionlab.model_protocol import Prediction
from diffusionlab.sampling import check_i_start, generate, sample
from diffusionlab.schedule import NoiseSchedule
from diffusionlab.steps import euler_rule, sampler_name
from diffusionlab.views import get_view

U = (0.0, 1.0)


def test_inner_circle_turns_exactly_the_disc_of_radius_0_3_min_side():
    """views.py `_inner_circle`: pixel (r, c) moves to (h-1-r, w-1-c) iff its squared distance from the centre is at
    most (0.3 min(h, w))^2; the rest stay (mutants: `+` -> `-` and `**` -> `*` in the distance)."""
    h, w = 10, 14
    x = torch.arange(float(h * w)).view(1, 1, h, w)
    out = get_view("inner-circle", (1, h, w)).apply(x, U)[0, 0]
    cy, cx, radius = (h - 1) / 2, (w - 1) / 2, 0.3 * min(h, w)
    for r in range(h):
        for c in range(w):
            inside = (r - cy) ** 2 + (c - cx) ** 2 <= radius**2
            source = (h - 1 - r, w - 1 - c) if inside else (r, c)
            assert out[r, c] == x[0, 0, source[0], source[1]], (r, c, inside)


def test_euler_step_moves_by_the_velocity_times_the_time_step():
    """steps.py `euler_rule`: x_next = x + u (t_next - t), forwards and backwards in time (mutant: `+` -> `-`)."""
    x, u = torch.rand(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    step = euler_rule()
    assert torch.allclose(step(x, 0.25, 0.5, x, Prediction(u, None), None), x + 0.25 * u, atol=1e-6, rtol=0)
    assert torch.allclose(step(x, 0.5, 0.25, x, Prediction(u, None), None), x - 0.25 * u, atol=1e-6, rtol=0)


def test_classical_blur_defaults_to_kernel_5_sigma_2_at_64_px_scaled_with_the_size():
    """edits.py `blur`: the course's 5 and 2 at 64 px, (3, 0.875) at 28 px (mutant: sigma 2.0 -> 4.0)."""
    for size, kernel, sigma in ((64, 5, 2.0), (28, 3, 0.875)):
        x = torch.rand(1, 1, size, size)
        assert torch.equal(blur(x), gaussian_blur(x, kernel, sigma)), size


def test_illusions_use_the_measured_defaults_on_our_models_and_the_courses_on_if():
    """edits.py: hybrids on our models blur with kernel 15, sigma 1.5 and guide with CFG 10, anagrams with CFG 10
    (the measured defaults of docs/illusions.md); IF keeps the course's 33 and 2 at 64 px and its CFG 7; a caller's
    values win (mutants: `HYBRID_DEFAULTS["sigma"] or s0` -> `and`, the hybrid scale 10.0 -> 20.0)."""
    ours = GaussianDataModel(NoiseSchedule.linear(300))  # (1, 8, 8)
    if_like = FormulaModel(NoiseSchedule.cosine(1000), (3, 64, 64), (-1.0, 1.0))
    assert hybrid_blur(ours) == (15, 1.5)
    assert hybrid_blur(ours, 7, 0.5) == (7, 0.5)
    assert hybrid_blur(if_like) == (33, 2.0)
    assert illusion_scale(ours, HYBRID_DEFAULTS) == 10.0 == illusion_scale(ours, ANAGRAM_DEFAULTS)
    assert illusion_scale(if_like, HYBRID_DEFAULTS) == 7.0 == illusion_scale(if_like, ANAGRAM_DEFAULTS)


class _BatchSizes(FormulaModel):
    """A DDPM formula model that records the batch each network call sees."""

    def __init__(self):
        super().__init__(NoiseSchedule.linear(300), (1, 4, 4), variance=False)
        self.batches: list[int] = []

    def predict(self, x_t, t, cond):
        self.batches.append(x_t.shape[0])
        return super().predict(x_t, t, cond)


def test_generate_runs_the_unconditional_branch_only_when_guidance_needs_it():
    """sampling.py `generate`: CFG (both branches in one batch of 2n) only with prompts and a scale other than 1;
    no prompts, or scale 1, runs n images per call (mutant: `prompts and conditioned and scale != 1` -> `or`)."""
    for prompts, scale, per_call in ((None, 5.0, 3), (["1"], 1.0, 3), (["1"], 5.0, 6)):
        m = _BatchSizes()
        generate(m, prompts, 3, scale=scale, timesteps=[290, 150, 10], progress=False)
        assert m.batches == [per_call] * 3, (prompts, scale)


def test_a_patch_grid_that_does_not_fit_suggests_one_that_does():
    """views.py `_patch_permute`: the message suggests the first of 4, 2, 7, 1 dividing both sides (mutant: 7 -> 8)."""
    for side, suggested in ((16, 4), (14, 2), (7, 7), (5, 1)):
        with pytest.raises(DiffusionLabError, match=rf"\(try patch-permute:{suggested}\)$"):
            get_view("patch-permute:3", (1, side, side))


def test_an_anagram_with_the_wrong_number_of_views_says_how_many_it_needs():
    """edits.py `anagram_views`: k prompts need k - 1 views (mutant: the message's `- 1` -> `+ 1`)."""
    m = GaussianDataModel(NoiseSchedule.linear(300))
    with pytest.raises(DiffusionLabError, match=r"^3 prompts need 2 views, got 1$"):
        anagram_views(m, ["1", "2", "3"], ["rot180"])


def test_sample_runs_every_timestep_from_pure_noise():
    """sampling.py `sample`: i_start 0, so the network runs once per timestep (mutant: i_start 0 -> 1)."""
    m = FormulaModel(NoiseSchedule.linear(300), (1, 4, 4), variance=False)
    sample(m, 2, plain(m, m.null(2)), [290, 150, 10], generator=torch.Generator().manual_seed(0), progress=False)
    assert m.calls == 3


def test_plain_estimate_repeats_one_condition_to_the_batch():
    """guidance.py `plain`: one condition serves a batch of any size (mutant: `x_t.shape[0]` -> `shape[1]`, the
    channels, which broadcasting hid where they were 1)."""
    m = FormulaModel(NoiseSchedule.linear(300), (3, 4, 4), variance=False)
    x = torch.rand(2, 3, 4, 4)
    want = m.predict(x, torch.full((2,), 100), m.encode(["7", "7"])).output
    assert torch.equal(plain(m, m.encode(["7"]))(x, 100).output, want)


def test_generate_keeps_a_frame_every_frame_every_steps_and_the_last():
    """sampling.py `generate`: frames at steps 0, k, 2k, ... and the result (mutant: `== 0` -> `!= 0`)."""
    m = FormulaModel(NoiseSchedule.linear(300), (1, 4, 4), variance=False)
    frames: list[torch.Tensor] = []
    x = generate(m, None, 1, timesteps=[290, 230, 170, 110, 50], frames=frames, frame_every=2, progress=False)
    assert len(frames) == 4  # after steps 0, 2, 4, and the result
    assert torch.equal(frames[-1], x) and not torch.equal(frames[0], frames[1])


def test_out_of_range_messages_give_the_range():
    """sampling.py `check_i_start`, schedule.py `check_timestep`: the messages name the last valid value (mutants:
    `len - 1` -> `len - 2`, `num_steps - 1` -> `num_steps + 1`)."""
    with pytest.raises(
        DiffusionLabError, match=r"^i_start=3 is out of range: it indexes the 3 strided timesteps, 0\.\.2$"
    ):
        check_i_start([290, 150, 10], 3)
    with pytest.raises(DiffusionLabError, match=r"^timestep t=300 is out of range: this model's t goes from 0 to 299$"):
        NoiseSchedule.linear(300).check_timestep(300)


def test_a_ddim_rule_without_eta_is_reported_as_eta_0():
    """steps.py: the reported name of a ddim rule whose eta was left out is its default, eta 0 (mutant: 0.0 -> 1.0)."""
    assert sampler_name({"sampler": "ddim"}) == "ddim (eta 0)"
    assert sampler_name({"sampler": "ddim", "eta": 0.5}) == "ddim (eta 0.5)"


def test_a_flow_models_edits_take_as_many_euler_steps_as_the_courses_strided_schedule():
    """model_kinds.py FLOW_EDIT_STEPS: Part A's edits on a flow model walk 30 Euler steps, as many as the course's
    range(290, -1, -10) for T = 300 (mutant: 30 -> 31); a count given is taken as it is."""
    from test_flow_tools import FlowFormulaModel

    m = FlowFormulaModel()
    assert len(FLOW.timesteps(m, None, True)) == len(range(290, -1, -10))
    assert len(FLOW.timesteps(m, 12, True)) == 12


def test_flow_times_must_rise_strictly_and_stay_below_1():
    """model_kinds.py FLOW.check_times: times rise strictly from 0 or more and stay below 1, the end of the loop;
    the message shows the first three (mutants: `a < b` -> `<=`, `ts[:3]` -> `ts[:4]`)."""
    from test_flow_tools import FlowFormulaModel

    m = FlowFormulaModel()
    assert FLOW.check_times(m, [0, 0.5, 0.75]) == [0.0, 0.5, 0.75]
    for times in ([0.0, 0.5, 0.5], [0.0, 0.5, 1.0], [-0.1, 0.5]):
        with pytest.raises(DiffusionLabError, match=r"^flow times must rise from 0 towards 1 \(below 1\)"):
            FLOW.check_times(m, times)
    message = r"^flow times must rise from 0 towards 1 \(below 1\), got \[0\.5, 0\.25, 0\.125\]\.\.\.$"
    with pytest.raises(DiffusionLabError, match=message):
        FLOW.check_times(m, [0.5, 0.25, 0.125, 0.0625])
