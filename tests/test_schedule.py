"""The schedule math: forward process, strided timesteps, the strided DDPM step against diffusers."""

from __future__ import annotations

import math

import pytest
import torch
from parta_helpers import FormulaModel, one_thread  # noqa: F401  (one_thread: autouse fixture)

from diffusionlab import guidance, sampling
from diffusionlab.edits import forward
from diffusionlab.errors import DiffusionLabError
from diffusionlab.schedule import (
    NoiseSchedule,
    add_noise,
    check_timesteps,
    full_timesteps,
    predict_x0,
    strided_timesteps,
)


def test_strided_timesteps_course_shapes():
    assert strided_timesteps(1000) == list(range(990, -1, -30))
    assert len(strided_timesteps(1000)) == 34
    assert strided_timesteps(300) == list(range(290, -1, -10))
    assert full_timesteps(5) == [4, 3, 2, 1, 0]
    with pytest.raises(DiffusionLabError):
        check_timesteps(NoiseSchedule.linear(300), [10, 20])
    with pytest.raises(DiffusionLabError):
        check_timesteps(NoiseSchedule.linear(300), [300, 0])


def test_forward_matches_formula():
    sched = NoiseSchedule.linear(300)
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 300, dtype=torch.float64), 0)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)
    for t in (0, 75, 150, 299):  # float32 abar: 1 - abar_0 = 1e-4 carries ~6e-4 relative error, hence 2e-5
        want = math.sqrt(abar[t]) * x0.double() + math.sqrt(1 - abar[t]) * eps.double()
        assert torch.allclose(add_noise(x0, t, eps, sched).double(), want, atol=2e-5)
    ts = torch.tensor([0, 100, 299])
    per = add_noise(x0, ts, eps, sched)
    for i, t in enumerate(ts.tolist()):
        assert torch.allclose(per[i], add_noise(x0[i : i + 1], t, eps[i : i + 1], sched)[0])
    # predict_x0 inverts the forward process when given the true noise
    assert torch.allclose(predict_x0(add_noise(x0, 150, eps, sched), 150, eps, sched), x0, atol=1e-5)


def test_edits_forward_uses_generator_and_t_minus_one_is_identity():
    model = FormulaModel(NoiseSchedule.linear(300), (1, 8, 8), (0.0, 1.0))
    x0 = torch.rand(2, 1, 8, 8)
    out = forward(model, x0, [50, 200, -1], torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    e1, e2 = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    assert torch.allclose(out[0], add_noise(x0, 50, e1, model.schedule))
    assert torch.allclose(out[1], add_noise(x0, 200, e2, model.schedule))
    assert torch.equal(out[2], x0)
    with pytest.raises(DiffusionLabError):
        forward(model, x0, [300])


def test_cosine_equals_diffusers_squaredcos():
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    assert torch.allclose(NoiseSchedule.cosine(1000).betas, ref.betas.float(), atol=1e-7)
    assert torch.allclose(NoiseSchedule.cosine(1000).alphas_cumprod, ref.alphas_cumprod.float(), atol=1e-6)


def _independent_strided(model, x, ts, g, mode):
    """The A1.4 step written out separately in float64."""
    ac = torch.cumprod(1 - model.schedule.betas.double(), 0)
    x = x.double()
    for i, t in enumerate(ts):
        tp = ts[i + 1] if i + 1 < len(ts) else -1
        pred = model.predict(x.float(), torch.full((x.shape[0],), t), model.null(x.shape[0]))
        eps = pred.output.double()
        a_t, a_p = ac[t], (ac[tp] if tp >= 0 else torch.tensor(1.0, dtype=torch.float64))
        alpha, beta = a_t / a_p, 1 - a_t / a_p
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        mean = a_p.sqrt() * beta / (1 - a_t) * x0 + alpha.sqrt() * (1 - a_p) / (1 - a_t) * x
        if tp >= 0:
            z = torch.randn(x.shape, generator=g).double()
            beta_tilde = (1 - a_p) / (1 - a_t) * beta
            if mode == "learned-range":
                frac = (pred.var_values.double() + 1) / 2
                log_var = frac * beta.log() + (1 - frac) * beta_tilde.log()
            elif mode == "beta":
                log_var = beta.log()
            else:
                log_var = beta_tilde.log()
            mean = mean + (0.5 * log_var).exp() * z
        x = mean
    return x.float()


@pytest.mark.parametrize("mode", ["learned-range", "beta", "beta-tilde"])
@pytest.mark.parametrize("T", [1000, 300])
def test_strided_step_matches_independent_and_diffusers(mode, T):
    diffusers = pytest.importorskip("diffusers")
    sched = NoiseSchedule.cosine(T) if T == 1000 else NoiseSchedule.linear(T)
    model = FormulaModel(sched, (3, 8, 8), (-1.0, 1.0), variance=True)
    ts = strided_timesteps(T)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    est = guidance.plain(model, model.null(1))
    ours = sampling.denoise(
        model, x, ts, est, generator=torch.Generator().manual_seed(1), variance=mode, progress=False
    )

    ind = _independent_strided(model, x, ts, torch.Generator().manual_seed(1), mode)
    assert torch.allclose(ours, ind, atol=1e-5), (ours - ind).abs().max()

    variance_type = {"learned-range": "learned_range", "beta": "fixed_large", "beta-tilde": "fixed_small"}[mode]
    kwargs = {"beta_schedule": "squaredcos_cap_v2"} if T == 1000 else {"beta_start": 1e-4, "beta_end": 0.02}
    ref = diffusers.DDPMScheduler(
        num_train_timesteps=T, variance_type=variance_type, clip_sample=False, thresholding=False, **kwargs
    )
    ref.set_timesteps(timesteps=ts)
    g = torch.Generator().manual_seed(1)
    y = x.clone()
    for t in ref.timesteps:
        pred = model.predict(y, torch.full((y.shape[0],), int(t)), model.null(y.shape[0]))
        out = torch.cat([pred.output, pred.var_values], 1) if mode == "learned-range" else pred.output
        y = ref.step(out, t, y, generator=g).prev_sample
    assert torch.allclose(ours, y, atol=1e-5), (ours - y).abs().max()


def test_full_timesteps_is_algorithm_b2():
    """denoise over every step = x_{t-1} = mean + sqrt(beta_t) z (Algorithm B.2), checked against diffusers."""
    diffusers = pytest.importorskip("diffusers")
    model = FormulaModel(NoiseSchedule.linear(50, 1e-3, 0.2), (1, 6, 6), (0.0, 1.0), variance=False)
    x = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    ours = sampling.denoise(
        model,
        x,
        full_timesteps(50),
        guidance.plain(model, model.null(1)),
        generator=torch.Generator().manual_seed(5),
        progress=False,
    )
    ref = diffusers.DDPMScheduler(
        num_train_timesteps=50, beta_start=1e-3, beta_end=0.2, variance_type="fixed_large", clip_sample=False
    )
    ref.set_timesteps(timesteps=full_timesteps(50))
    g, y = torch.Generator().manual_seed(5), x.clone()
    for t in ref.timesteps:
        y = ref.step(model.predict(y, torch.full((2,), int(t)), model.null(2)).output, t, y, generator=g).prev_sample
    assert torch.allclose(ours, y, atol=1e-5)


def test_schedule_round_trips_through_alphas_cumprod_and_its_config():
    """IF's scheduler hands us alphas_cumprod: beta_t = 1 - abar_t / abar_{t-1} gives the betas back; a checkpoint
    stores the schedule as its config: linear keeps its two ends, cosine its kind."""
    from diffusionlab.schedule import dynamic_threshold

    for s in (NoiseSchedule.linear(300), NoiseSchedule.linear(1000, 1e-4, 0.02), NoiseSchedule.cosine(300)):
        back = NoiseSchedule.from_alphas_cumprod(s.alphas_cumprod)
        torch.testing.assert_close(back.betas, s.betas, rtol=1e-4, atol=1e-7)
        again = NoiseSchedule.from_config(s.to_config())
        assert again.kind == s.kind and torch.allclose(again.betas, s.betas, rtol=1e-5, atol=1e-8)
    assert NoiseSchedule.linear(300).to_config() == {
        "type": "linear", "num_steps": 300, "beta_start": 1e-4, "beta_end": 0.02,
    }  # fmt: skip
    assert NoiseSchedule.cosine(300).to_config() == {"type": "cosine", "num_steps": 300}
    # dynamic thresholding (Imagen, IF): s = the 0.95-quantile of |x0| per sample, at least 1: clamp to s, divide
    x0 = torch.stack([torch.linspace(-2.0, 2.0, 101), torch.linspace(-0.5, 0.5, 101)]).view(2, 1, 1, 101)
    s = torch.quantile(x0[0].abs().flatten(), 0.95).clamp(max=1.5)
    torch.testing.assert_close(dynamic_threshold(x0)[0], x0[0].clamp(-s, s) / s)
    torch.testing.assert_close(dynamic_threshold(x0)[1], x0[1])  # within [-1, 1]: s = 1, unchanged
