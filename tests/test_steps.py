"""The step rules of the sampler loop (DDIM, DPM-Solver++ 2M) against diffusers' schedulers and closed forms."""

from __future__ import annotations

import pytest
import torch
from parta_helpers import FormulaModel, one_thread  # noqa: F401  (one_thread: autouse fixture)

from diffusionlab import guidance, sampling
from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_protocol import Prediction
from diffusionlab.schedule import NoiseSchedule, spaced_timesteps, strided_timesteps
from diffusionlab.steps import make_step_rule

LINEAR = {"beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}


def _ours(model, x, ts, seed=1, **kw):
    est = guidance.plain(model, model.null(1))
    return sampling.denoise(model, x, ts, est, generator=torch.Generator().manual_seed(seed), progress=False, **kw)


def _diffusers_loop(model, scheduler, x, **step_kw):
    y = x.clone()
    for t in scheduler.timesteps:
        eps = model.predict(y, torch.full((y.shape[0],), int(t)), model.null(y.shape[0])).output
        y = scheduler.step(eps, t, y, **step_kw).prev_sample
    return y


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_matches_diffusers(eta):
    diffusers = pytest.importorskip("diffusers")
    model = FormulaModel(NoiseSchedule.linear(300), (1, 8, 8), (0.0, 1.0), variance=False)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ts = strided_timesteps(300)  # 290, 280, ..., 0: diffusers' "leading" spacing for 30 steps
    ref = diffusers.DDIMScheduler(num_train_timesteps=300, clip_sample=False, set_alpha_to_one=True, **LINEAR)
    ref.set_timesteps(30)
    assert [int(t) for t in ref.timesteps] == ts
    want = _diffusers_loop(model, ref, x, eta=eta, generator=torch.Generator().manual_seed(1))
    got = _ours(model, x, ts, sampler="ddim", eta=eta)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


@pytest.mark.parametrize("count", [10, 20])
def test_dpmpp_2m_matches_diffusers(count):
    diffusers = pytest.importorskip("diffusers")
    model = FormulaModel(NoiseSchedule.linear(300), (1, 8, 8), (0.0, 1.0), variance=False)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ts = spaced_timesteps(300, count)
    ref = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=300,
        solver_order=2,
        algorithm_type="dpmsolver++",
        solver_type="midpoint",
        final_sigmas_type="zero",
        lower_order_final=True,
        **LINEAR,
    )
    ref.set_timesteps(timesteps=ts)
    want = _diffusers_loop(model, ref, x)
    got = _ours(model, x, ts, sampler="dpm++2m")
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_ddim_eta0_is_deterministic_and_beta_tilde_is_eta1_variance():
    model = FormulaModel(NoiseSchedule.linear(300), (1, 8, 8), (0.0, 1.0), variance=False)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ts = strided_timesteps(300)
    a = _ours(model, x, ts, seed=1, sampler="ddim")
    b = _ours(model, x, ts, seed=9, sampler="ddim")
    assert torch.equal(a, b)  # eta = 0 draws no noise
    # one step with eta = 1 is the DDPM posterior with beta-tilde variance (same noise)
    s = NoiseSchedule.linear(300)
    x0, noise = torch.rand(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    ddim = make_step_rule(s, "ddim", eta=1.0)(x, 150, 140, x0, Prediction(x0), noise)
    ddpm = make_step_rule(s, "ddpm", "beta-tilde")(x, 150, 140, x0, Prediction(x0), noise)
    assert torch.allclose(ddim, ddpm, atol=1e-5)


def test_unknown_sampler_and_bad_eta_are_one_line_errors():
    s = NoiseSchedule.linear(300)
    with pytest.raises(DiffusionLabError, match="unknown sampler 'heun'"):
        make_step_rule(s, "heun")
    for eta in (-0.1, 1.5, float("nan")):
        with pytest.raises(DiffusionLabError, match="--eta"):
            make_step_rule(s, "ddim", eta=eta)


def test_auto_variance_is_b2_on_single_steps_and_beta_tilde_when_strided():
    """Our models' default: Algorithm B.2's sigma^2 = beta_t over all T steps; the posterior's beta-tilde on strided
    steps (where beta leaves grain the last steps cannot remove: docs/sampling.md)."""
    from diffusionlab.schedule import step_variance

    s = NoiseSchedule.linear(300)
    assert torch.equal(step_variance(s, 150, 149, "auto"), step_variance(s, 150, 149, "beta"))
    assert torch.equal(step_variance(s, 150, 140, "auto"), step_variance(s, 150, 140, "beta-tilde"))
    assert not torch.equal(step_variance(s, 150, 140, "beta"), step_variance(s, 150, 140, "beta-tilde"))


def test_auto_rule_is_b2_over_all_steps_and_ddim_eta0_when_strided():
    """Our models' default rule (sampling.OUR_SAMPLER): all T steps are the course's Algorithm B.2 (the same
    numbers as ddpm with beta, the same noise draws), a strided run is DDIM with eta 0 (seed-independent)."""
    assert sampling.OUR_SAMPLER["sampler"] == "auto"
    model = FormulaModel(NoiseSchedule.linear(300), (1, 8, 8), (0.0, 1.0), variance=False)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    every, strided = list(range(299, -1, -1)), strided_timesteps(300)
    assert torch.equal(_ours(model, x, every, sampler="auto"), _ours(model, x, every, sampler="ddpm", variance="beta"))
    want = _ours(model, x, strided, sampler="ddim", eta=0.0)
    assert torch.allclose(_ours(model, x, strided, sampler="auto"), want, atol=1e-6)
    assert torch.allclose(_ours(model, x, strided, seed=9, sampler="auto"), want, atol=1e-6)
    assert not torch.allclose(want, _ours(model, x, strided, sampler="ddpm"), atol=1e-3)


def test_the_python_api_refuses_bad_numbers_like_the_cli(tmp_path):
    """The same input rules in the API as on the command line: CFG scale finite and >= 0, n >= 1 and bounded."""
    from conftest import make_checkpoint

    from diffusionlab.backends import load_model

    model = load_model(make_checkpoint(tmp_path / "run"), "cpu")
    for kwargs, message in (
        ({"scale": float("nan")}, "CFG scale must be a finite number"),
        ({"scale": -1.0}, "CFG scale must be a finite number"),
        ({"n_per_prompt": 0}, "n_per_prompt must be at least 1"),
        ({"n_per_prompt": 10**6}, "the limit is"),
    ):
        with pytest.raises(DiffusionLabError, match=message):
            sampling.generate(model, ["3"], **{"n_per_prompt": 1, "scale": 5.0, **kwargs})
    with pytest.raises(DiffusionLabError, match="CFG scale"):
        guidance.hybrid(model, model.encode(["1"]), model.encode(["2"]), model.null(1), float("inf"))


def test_the_loop_draws_fresh_noise_exactly_when_the_rule_uses_it():
    """DDPM steps and DDIM with eta > 0 are stochastic (another seed, another sample from the same x_T); DDIM with
    eta 0 and DPM-Solver++ are deterministic."""
    from diffusionlab.steps import needs_noise

    assert [needs_noise("ddpm"), needs_noise("ddim", 0.0), needs_noise("ddim", 0.5), needs_noise("dpm++2m")] == [
        True,
        False,
        True,
        False,
    ]
    assert [needs_noise("auto", strided=False), needs_noise("auto", strided=True)] == [True, False]
    model = FormulaModel(NoiseSchedule.linear(300), (1, 8, 8), (0.0, 1.0), variance=False)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ts = strided_timesteps(300)
    for kw, stochastic in (
        ({"sampler": "ddpm"}, True),
        ({"sampler": "ddim", "eta": 0.5}, True),
        ({"sampler": "dpm++2m"}, False),
    ):
        a, b = _ours(model, x, ts, seed=1, **kw), _ours(model, x, ts, seed=9, **kw)
        assert torch.equal(a, b) is not stochastic, kw
    # auto: B.2 on single steps draws noise; its strided (DDIM eta 0) steps leave the generator untouched
    every_step = list(range(299, 249, -1))
    assert not torch.equal(
        _ours(model, x, every_step, 1, sampler="auto"), _ours(model, x, every_step, 9, sampler="auto")
    )
    generator = torch.Generator().manual_seed(1)
    before = generator.get_state()
    est = guidance.plain(model, model.null(1))
    sampling.denoise(model, x, ts, est, generator=generator, progress=False, sampler="auto")
    assert torch.equal(generator.get_state(), before)


def test_choose_step_rule_keeps_only_what_the_user_gave_and_refuses_mixtures():
    from diffusionlab.steps import choose_step_rule

    assert choose_step_rule(None, None, None) == {}
    assert choose_step_rule(None, "beta-tilde", None) == {"sampler": "ddpm", "variance": "beta-tilde"}
    assert choose_step_rule("ddpm", "beta", None) == {"sampler": "ddpm", "variance": "beta"}
    assert choose_step_rule(None, None, 0.5) == {"sampler": "ddim", "eta": 0.5}
    assert choose_step_rule("dpm++2m", None, None) == {"sampler": "dpm++2m"}
    with pytest.raises(DiffusionLabError, match="--variance is for ddpm steps"):
        choose_step_rule("ddim", "beta", None)
    with pytest.raises(DiffusionLabError, match="--eta is for ddim steps"):
        choose_step_rule("ddpm", None, 0.5)
    with pytest.raises(DiffusionLabError, match="unknown --variance"):
        choose_step_rule(None, "wide", None)


def test_ddpm_steps_add_their_noise_down_to_t0_and_none_on_the_last_step():
    """The step to t = 0 is still a noisy step (its posterior variance beta-tilde), only the step past 0 is not."""
    s = NoiseSchedule.linear(300)
    x, x0, noise = torch.randn(2, 1, 8, 8), torch.rand(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    rule, pred = make_step_rule(s, "ddpm", "beta-tilde"), Prediction(torch.zeros(2, 1, 8, 8))
    abar_t, abar_0 = float(s.abar(10)), float(s.abar(0))
    beta_tilde = (1 - abar_0) / (1 - abar_t) * (1 - abar_t / abar_0)
    with_noise, without = rule(x, 10, 0, x0, pred, noise), rule(x, 10, 0, x0, pred, torch.zeros_like(noise))
    torch.testing.assert_close(with_noise - without, beta_tilde**0.5 * noise, atol=1e-6, rtol=1e-4)
    assert torch.equal(rule(x, 0, -1, x0, pred, noise), rule(x, 0, -1, x0, pred, None))
