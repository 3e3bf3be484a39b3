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

The DDPM rules are one table, SAMPLERS (name -> Sampler: factory, one-line help, options, noise, label): the loop,
choose_step_rule, the CLI's --sampler help, the web UI's choices, the reported names and docs/sampling.md's table
(samplers_markdown) all read it, so a new step rule is one entry there (tests/test_sampler_table.py adds one and
sees it everywhere).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor

from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_protocol import Prediction
from diffusionlab.schedule import VARIANCE_MODES, NoiseSchedule, ddpm_step, is_single_step, step_variance

FLOW_SAMPLER = "euler"  # a flow model's one step rule (not in the table: a DDPM never takes it)
StepRule = Callable[[Tensor, float, float, Tensor, Prediction, Tensor | None], Tensor]


class Sampler(NamedTuple):
    """A DDPM step rule as the table (SAMPLERS) holds it: everything the loop, the checks and the front-ends ask."""

    make: Callable[[NoiseSchedule, str, float], StepRule]  # (schedule, variance, eta) -> a fresh rule for one run
    help: str  # one line: the CLI's --sampler help, the web UI's choices
    options: tuple[str, ...] = ()  # the user options it takes ("variance", "eta"); the others are refused
    adds_noise: Callable[[float, bool], bool] = lambda eta, strided: False  # (eta, strided step) -> draws noise?
    label: Callable[[dict], str] | None = None  # a run's rule as reported (evaluate, report); default: its name


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
        return x + pred.output / (1.0 / (t_next - t))  # = u / N on the uniform grid of N steps, bit for bit

    return step


# -- the table: adding a step rule is one entry here (tests/test_sampler_table.py adds one) -----------------------
SAMPLERS: dict[str, Sampler] = {
    "auto": Sampler(
        lambda schedule, variance, eta: auto_rule(schedule, variance),
        "our models' default: the course's ddpm steps over all T, DDIM eta 0 on strided steps",
        adds_noise=lambda eta, strided: not strided,
        label=lambda rule: "auto ({} when strided, else {})".format(
            *(sampler_name(auto_choice(s, rule.get("variance", "auto"))) for s in (True, False))
        ),
    ),
    "ddpm": Sampler(
        lambda schedule, variance, eta: ddpm_rule(schedule, variance),
        "the DDPM posterior step (Algorithm B.2 on single steps), with --variance",
        options=("variance",),
        adds_noise=lambda eta, strided: True,
        label=lambda rule: f"ddpm ({rule.get('variance', 'auto')})",
    ),
    "ddim": Sampler(
        lambda schedule, variance, eta: ddim_rule(schedule, eta),
        "DDIM, with --eta (0: deterministic)",
        options=("eta",),
        adds_noise=lambda eta, strided: eta > 0,
        label=lambda rule: f"ddim (eta {rule.get('eta', 0.0):g})",
    ),
    "dpm++2m": Sampler(
        lambda schedule, variance, eta: dpmpp_2m_rule(schedule),
        "DPM-Solver++ (2M), second order, deterministic",
    ),
}


def check_sampler(sampler: str, eta: float = 0.0) -> None:
    if sampler not in SAMPLERS:
        raise DiffusionLabError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if not (math.isfinite(eta) and 0.0 <= eta <= 1.0):
        raise DiffusionLabError(f"--eta must be between 0 and 1, got {eta}")


def needs_noise(sampler: str, eta: float = 0.0, strided: bool = False) -> bool:
    """Whether the rule adds fresh noise on this step (so the loop draws it); Euler steps never do."""
    entry = SAMPLERS.get(sampler)
    return entry is not None and entry.adds_noise(eta, strided)


def sampler_name(rule: dict) -> str:
    """ "ddpm (beta-tilde)", "ddim (eta 0)", "dpm++2m", "auto (ddim (eta 0) when strided, else ddpm (auto))":
    how a sampling run's step rule is reported (evaluate, the report)."""
    name = rule.get("sampler", "ddpm")
    label = SAMPLERS[name].label if name in SAMPLERS else None
    return label(rule) if label is not None else name


def sampler_help() -> str:
    """The --sampler help, from the table (built when the CLI's options are defined)."""
    rules = "; ".join(f"{name}: {entry.help}" for name, entry in SAMPLERS.items())
    return (
        f"Step rule (default: the model's, see docs/sampling.md). {rules}. Example: --sampler ddim --eta 0 --steps 20"
    )


def samplers_markdown() -> str:
    """The step rules as a Markdown table, from the table (docs/sampling.md holds a copy; a test compares them)."""
    how = {"variance": f"`--variance` ({', '.join(VARIANCE_MODES)})", "eta": "`--eta` in [0, 1]"}
    rows = [f"| `{n}` | {', '.join(how[o] for o in e.options) or '-'} | {e.help} |" for n, e in SAMPLERS.items()]
    return "\n".join(["| `--sampler` | options | what it is |", "|---|---|---|", *rows])


def samplers_taking(option: str) -> list[str]:
    """The step rules that take a user option ("variance", "eta"): the first is what the option alone picks."""
    return [name for name, entry in SAMPLERS.items() if option in entry.options]


def make_step_rule(
    schedule: NoiseSchedule | None, sampler: str = "ddpm", variance: str = "auto", eta: float = 0.0
) -> StepRule:
    """A fresh rule for one run of the loop (dpm++2m keeps the previous step's estimate); a flow model's
    FLOW_SAMPLER needs no schedule."""
    if sampler == FLOW_SAMPLER:
        return euler_rule()
    check_sampler(sampler, eta)
    return SAMPLERS[sampler].make(schedule, variance, eta)


def _check_option(option: str, choice: dict) -> None:
    """A --variance/--eta that the chosen step rule (or, none chosen, the first that takes it) takes, or one line."""
    takers = samplers_taking(option)
    given = choice.get("sampler", takers[0] if takers else None)
    if given not in takers:
        own = " and ".join(f"--{o}" for o in SAMPLERS[given].options) if given in SAMPLERS else ""
        raise DiffusionLabError(
            f"--{option} is for {' or '.join(takers)} steps; {given} takes {own or 'neither --variance nor --eta'}"
        )
    choice["sampler"] = given


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
        _check_option("variance", choice)
        choice["variance"] = variance
    if eta is not None:
        _check_option("eta", choice)
        check_sampler(choice["sampler"], eta)
        choice["eta"] = eta
    return choice
