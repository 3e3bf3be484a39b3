"""Step rules: how the one sampler loop (sampling.denoise) moves x from timestep t to t_prev.

A rule gets (x_t, t, t_prev, x0_hat, pred, noise) and returns x at t_prev (t_prev = -1: the clean image; a flow
model's end is t = 1). x0_hat is the loop's estimate of the clean image (after thresholding/clipping); the DDPM rules
derive what else they need from it, so guidance, views and thresholding work the same under every rule. pred is the
estimator's Prediction (the learned variance for IF's ddpm steps, the velocity for Euler steps).

- ddpm: the strided DDPM posterior step (Algorithm B.2 when t_prev = t - 1), with a variance mode:
  "beta" (sigma^2 = 1 - abar_t / abar_t', the course's), "beta-tilde" (the posterior variance) or IF's learned range.
- ddim: DDIM with eta (0 = deterministic; 1 = the DDPM posterior variance, beta-tilde).
- auto: our models' default: the ddpm step (Algorithm B.2 with the course's beta) where a step is one timestep,
  DDIM with eta 0 where it skips timesteps (measured best on strided schedules, docs/sampling.md).
- dpm++2m: DPM-Solver++ (2M), a second-order multistep solver in the data prediction (Lu et al. 2022), first
  order on its first and last steps, as diffusers' DPMSolverMultistepScheduler with final_sigmas_type="zero".
- euler: a flow model's step (the only one it takes): x += (t_next - t) u, u the estimated velocity.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor

from diffusionlab.errors import DiffusionLabError
from diffusionlab.protocol import Prediction
from diffusionlab.schedule import VARIANCE_MODES, NoiseSchedule, ddpm_step, is_single_step, step_variance

SAMPLERS = ("auto", "ddpm", "ddim", "dpm++2m")  # a DDPM's step rules; a flow model takes FLOW_SAMPLER only
FLOW_SAMPLER = "euler"
StepRule = Callable[[Tensor, float, float, Tensor, Prediction, Tensor | None], Tensor]


def needs_noise(sampler: str, eta: float = 0.0, strided: bool = False) -> bool:
    """Whether the rule adds fresh noise on this step (so the loop draws it): `auto` only on single steps."""
    return sampler == "ddpm" or (sampler == "auto" and not strided) or (sampler == "ddim" and eta > 0)


def check_sampler(sampler: str, eta: float = 0.0) -> None:
    if sampler not in SAMPLERS:
        raise DiffusionLabError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if not (math.isfinite(eta) and 0.0 <= eta <= 1.0):
        raise DiffusionLabError(f"--eta must be between 0 and 1, got {eta}")


def _abar(schedule: NoiseSchedule, t: int) -> float:
    return float(schedule.abar(t).double())


def ddpm_rule(schedule: NoiseSchedule, variance: str = "auto") -> StepRule:
    def step(x: Tensor, t: int, t_prev: int, x0: Tensor, pred: Prediction, noise: Tensor | None) -> Tensor:
        log_var = step_variance(schedule, t, t_prev, variance, pred.var_values) if t_prev >= 0 else None
        return ddpm_step(schedule, x, t, t_prev, x0, noise if t_prev >= 0 else None, log_var)

    return step


def ddim_rule(schedule: NoiseSchedule, eta: float = 0.0) -> StepRule:
    def step(x: Tensor, t: int, t_prev: int, x0: Tensor, pred: Prediction, noise: Tensor | None) -> Tensor:
        a_t, a_prev = _abar(schedule, t), _abar(schedule, t_prev)
        eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)  # the noise that x0_hat implies
        var = eta**2 * (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
        out = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - var, 0.0)) * eps
        if var > 0 and noise is not None:
            out = out + math.sqrt(var) * noise
        return out

    return step


def auto_choice(strided: bool, variance: str = "auto") -> dict:
    """The rule `auto` takes on a step: DDIM (eta 0) on strided steps, the ddpm step on single ones (so all T
    steps stay the course's Algorithm B.2). The one place that says it: the loop, evaluate and the report ask."""
    return {"sampler": "ddim", "eta": 0.0} if strided else {"sampler": "ddpm", "variance": variance}


def auto_rule(schedule: NoiseSchedule, variance: str = "auto") -> StepRule:
    single = make_step_rule(schedule, **auto_choice(False, variance))
    strided = make_step_rule(schedule, **auto_choice(True, variance))

    def step(x: Tensor, t: int, t_prev: int, x0: Tensor, pred: Prediction, noise: Tensor | None) -> Tensor:
        return (single if is_single_step(t, t_prev) else strided)(x, t, t_prev, x0, pred, noise)

    return step


def dpmpp_2m_rule(schedule: NoiseSchedule) -> StepRule:
    """Each call is one step of one trajectory: the rule remembers the previous x0_hat and its lambda."""
    history: list[tuple[Tensor, float]] = []  # (x0_hat, lambda) of the previous step

    def lam(a: float) -> float:
        return 0.5 * math.log(a) - 0.5 * math.log(1 - a)  # log(alpha / sigma)

    def step(x: Tensor, t: int, t_prev: int, x0: Tensor, pred: Prediction, noise: Tensor | None) -> Tensor:
        a_t, a_prev = _abar(schedule, t), _abar(schedule, t_prev)
        if t_prev < 0 or a_prev >= 1.0:  # to sigma = 0: the data prediction itself (first order, exp(-h) = 0)
            history.clear()
            return x0
        lam_t, lam_prev = lam(a_t), lam(a_prev)
        h = lam_prev - lam_t
        sigma_ratio = math.sqrt(1 - a_prev) / math.sqrt(1 - a_t)
        phi = math.sqrt(a_prev) * math.expm1(-h)  # alpha_prev (exp(-h) - 1)
        d = x0
        if history:
            x0_last, lam_last = history[-1]
            r = (lam_t - lam_last) / h
            d = x0 + 0.5 / r * (x0 - x0_last)  # the midpoint second-order correction
        history[:] = [(x0, lam_t)]
        return sigma_ratio * x - phi * d

    return step


def euler_rule() -> StepRule:
    def step(x: Tensor, t: float, t_next: float, x0: Tensor, pred: Prediction, noise: Tensor | None) -> Tensor:
        return x + pred.eps / (1.0 / (t_next - t))  # = u / N on the uniform grid of N steps, bit for bit

    return step


def make_step_rule(
    schedule: NoiseSchedule | None, sampler: str = "ddpm", variance: str = "auto", eta: float = 0.0
) -> StepRule:
    """A fresh rule for one run of the loop (dpm++2m keeps the previous step's estimate); a flow model's
    FLOW_SAMPLER needs no schedule."""
    if sampler == FLOW_SAMPLER:
        return euler_rule()
    check_sampler(sampler, eta)
    if sampler == "ddim":
        return ddim_rule(schedule, eta)
    if sampler == "dpm++2m":
        return dpmpp_2m_rule(schedule)
    if sampler == "auto":
        return auto_rule(schedule, variance)
    return ddpm_rule(schedule, variance)


def choose_step_rule(sampler: str | None, variance: str | None, eta: float | None) -> dict:
    """The step-rule options a user gave (CLI, web UI, API), checked before any work: only the given ones, so the
    model's own defaults (sampling.sampler_defaults) fill the rest."""
    choice: dict = {}
    if sampler is not None:
        check_sampler(sampler)
        choice["sampler"] = sampler
    if variance is not None:
        if variance not in VARIANCE_MODES:
            raise DiffusionLabError(f"unknown --variance {variance!r}; choose one of {', '.join(VARIANCE_MODES)}")
        if choice.get("sampler", "ddpm") != "ddpm":
            raise DiffusionLabError("--variance is for ddpm steps; ddim takes --eta, dpm++2m and auto neither")
        choice.update(sampler="ddpm", variance=variance)
    if eta is not None:
        if choice.get("sampler") not in (None, "ddim"):
            raise DiffusionLabError("--eta is for ddim steps: add --sampler ddim")
        check_sampler("ddim", eta)
        choice.update(sampler="ddim", eta=eta)
    return choice
