"""The one sampler loop (`denoise`) for every Part A tool, DDPM and flow sampling, and `run`, which fills in a
model's step rule. DDPMs and flow models differ only in their times, their clean estimate and their step rule
(steps.py: ddpm/ddim/dpm++2m, or Euler for flows); the estimators (guidance.py) are the same, so every edit runs on
both."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from diffusionlab.checks import check_batch, check_count, check_scale
from diffusionlab.errors import DiffusionLabError
from diffusionlab.guidance import Estimator, cfg, plain
from diffusionlab.model_kinds import FLOW_EDIT_STEPS, OUR_SAMPLER, flow_timesteps  # noqa: F401  (their old home)
from diffusionlab.model_protocol import DiffusionModel, generator_for, randn
from diffusionlab.progress import bar
from diffusionlab.schedule import dynamic_threshold, is_single_step, predict_x0
from diffusionlab.steps import FLOW_SAMPLER, SAMPLERS, make_step_rule, needs_noise

AfterStep = Callable[[Tensor, int, int], Tensor]  # (x at t_prev, t_prev, step index) -> x
Callback = Callable[[dict[str, Any]], None]


def sampler_defaults(model: DiffusionModel, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The step rule and its settings for a model (the one place they are chosen): its kind's (model_kinds: our
    DDPMs OUR_SAMPLER, measured in docs/sampling.md, no clipping; IF DDPM steps with the learned variance and
    dynamic thresholding (0.95, 1.5); flow models Euler), the model's own settings over them (IF's scheduler's),
    and a caller's `overrides` on top."""
    return model.kind.sampler_defaults(model, overrides)


def timesteps_for(model: DiffusionModel, steps: int | None = None, edit: bool = False) -> list:
    """The one place a model's timesteps are chosen (CLI, tools, report, web UI, evaluation): its kind's.

    steps None: Part A edits (edit=True) walk the course's strided schedule (990, 960, ... for IF; 290, 280, ...
    for T = 300); sampling walks the kind's default (30 spaced steps for our DDPMs, DDIM by the auto rule; the strided ones
    for IF; a flow model's default Euler steps). A count: the model's own spacing when it has one (IF's scheduler),
    else evenly spaced from T-1 down to 0; a flow model's `steps` Euler steps (flow_timesteps)."""
    return model.kind.timesteps(model, steps, edit)


def noised(model: DiffusionModel, x0: Tensor, t: float, noise: Tensor) -> Tensor:
    """x0 at the loop's time t with the given noise: the kind's forward process (a DDPM's, t = -1: x0 itself; a
    flow model's path (1 - t) noise + t x0, t = 1: x0 itself)."""
    return model.kind.noised(model, x0, t, noise)


def clean_estimate(model: DiffusionModel, x: Tensor, t: float, out: Tensor) -> Tensor:
    """The loop's estimate of the clean image from the model's output: the kind's (a DDPM's
    x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), a flow model's x + (1 - t) u)."""
    return model.kind.clean_estimate(model, x, t, out)


def is_clean(model: DiffusionModel, t: float) -> bool:
    """Whether t, a time the loop hands to after_step, is its end: the clean image (-1 for DDPMs, 1 for flows)."""
    return model.kind.is_clean(t)


def one_step(model: DiffusionModel, x_t: Tensor, t: int, estimator: Estimator) -> Tensor:
    """One-step denoising: x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)."""
    model.schedule.check_timestep(t)
    return predict_x0(x_t, t, estimator(x_t, t).output, model.schedule)


def check_i_start(timesteps: Sequence[int], i_start: int) -> None:
    if not 0 <= i_start < len(timesteps):
        raise DiffusionLabError(
            f"i_start={i_start} is out of range: it indexes the {len(timesteps)} strided timesteps, 0..{len(timesteps) - 1}"
        )


def denoise(
    model: DiffusionModel,
    x: Tensor,
    timesteps: Sequence[float],
    estimator: Estimator,
    i_start: int = 0,
    after_step: AfterStep | None = None,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    variance: str = "auto",
    threshold: tuple[float, float] | None = None,
    clip: bool = False,
    progress: bool = True,
    sampler: str | None = None,
    eta: float = 0.0,
) -> Tensor:
    """Iterative denoising of x (at timesteps[i_start]) along the timesteps down to a clean image: the one loop.

    A DDPM walks falling integer timesteps to t = -1; a flow model rising flow times (flow_timesteps) to t = 1.
    sampler: the step rule (steps.py): "ddpm" (with `variance`), "ddim" (with `eta`), "dpm++2m" or "auto" (ddpm on
    single steps, ddim eta 0 on strided) for a DDPM (default "ddpm"); "euler", the only one, for a flow model
    (x += (t_next - t) u; default).
    variance: "auto" (learned-range when the model predicts it, else beta on single steps and beta-tilde on strided
    ones), "learned-range", "beta", "beta-tilde".
    threshold: (ratio, max value) for dynamic thresholding of x0_hat (IF: (0.95, 1.5)); clip clamps x0_hat to
    the model's value range instead (the DDPM rules step from x0_hat; Euler steps from the velocity, so neither
    changes a flow model's path). No noise is added on the step to the clean image.
    callback gets {"i", "t", "t_prev", "x" (after the step), "x0" (the estimate)} after every step.
    """
    kind = model.kind
    sampler = _check_rule(kind, sampler)
    ts = kind.check_times(model, timesteps)
    check_i_start(ts, i_start)
    ts = ts[i_start:]
    end = kind.end_time
    lo, hi = model.value_range
    rule = make_step_rule(model.schedule, sampler, variance, eta)
    for i, t in enumerate(bar(ts, progress, desc=f"sampling ({kind.name})", leave=False)):
        t_prev = ts[i + 1] if i + 1 < len(ts) else end
        pred = estimator(x, t)
        x0 = kind.clean_estimate(model, x, t, pred.output)
        if threshold is not None:
            x0 = dynamic_threshold(x0, *threshold)
        elif clip:
            x0 = x0.clamp(lo, hi)
        noisy = t_prev != end and needs_noise(sampler, eta, strided=not is_single_step(t, t_prev))
        noise = randn(x.shape, generator, like=x) if noisy else None
        x = rule(x, t, t_prev, x0, pred, noise)
        if after_step is not None:
            x = after_step(x, t_prev, i_start + i)
        if callback is not None:
            callback({"i": i_start + i, "t": t, "t_prev": t_prev, "x": x, "x0": x0})
    return x


def _check_rule(kind, sampler: str | None) -> str:
    """The step rule a model's kind takes (default: ddpm for a DDPM, Euler for a flow model), or a one-line error."""
    only = kind.only_sampler
    if sampler is None:
        return only or "ddpm"
    if only is not None and sampler != only:
        raise DiffusionLabError(f"{kind.describe} takes {only.capitalize()} steps; --sampler {sampler} is for DDPMs")
    if only is None and sampler == FLOW_SAMPLER:
        raise DiffusionLabError(f"Euler steps are for flow models; {kind.describe} takes one of {', '.join(SAMPLERS)}")
    return sampler


def sample(
    model: DiffusionModel,
    n: int,
    estimator: Estimator,
    timesteps: Sequence[int],
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> Tensor:
    """Sampling = iterative denoising from pure noise (i_start = 0); `denoise`'s keyword arguments."""
    x = randn((n, *model.image_shape), generator, device=model.device)
    return denoise(model, x, timesteps, estimator, 0, generator=generator, **kwargs)


RULE_OPTIONS = ("sampler", "variance", "eta", "threshold", "clip")  # denoise's step-rule keywords


def run(
    model: DiffusionModel, x: Tensor, timesteps: Sequence[float], estimator: Estimator, i_start: int = 0, **kwargs: Any
) -> Tensor:
    """The loop `denoise` (its keyword arguments) with the model's step rule (sampler_defaults) under the caller's
    rule options (RULE_OPTIONS: a DDPM's; a kind with one step rule, a flow model's Euler, takes none of them)."""
    rule = {k: kwargs.pop(k) for k in RULE_OPTIONS if k in kwargs}
    only = model.kind.only_sampler
    if only is not None and rule:
        raise DiffusionLabError(
            f"{model.kind.describe} takes {only.capitalize()} steps; {', '.join(sorted(rule))} is for DDPMs "
            "(drop --sampler/--variance/--eta)"
        )
    return denoise(model, x, timesteps, estimator, i_start, **sampler_defaults(model, rule), **kwargs)


def generate(
    model: DiffusionModel,
    prompts: Sequence[str] | None,
    n_per_prompt: int,
    scale: float = 5.0,
    seed: int = 0,
    timesteps: Sequence[int] | None = None,
    flow_steps: int | None = None,
    frames: list[Tensor] | None = None,
    frame_every: int = 10,
    progress: bool = True,
    step_rule: dict[str, Any] | None = None,
) -> Tensor:
    """Samples of any protocol model, n per prompt, all in one batch: a DDPM over `timesteps` (default:
    timesteps_for: 30 spaced steps for ours; `timesteps_for(m, T)` is Algorithm B.2) or a flow model (Euler, `flow_steps`).

    prompts None or empty: unconditional. With prompts and scale != 1, CFG. The model's own sampler settings
    (e.g. IF's learned variance and dynamic thresholding, `sampler_defaults`) are used. `frames` collects x every
    `frame_every` steps for a GIF. `step_rule` ({"sampler", "variance", "eta"}) overrides the model's step rule.
    """
    check_count(n_per_prompt, "n_per_prompt")
    check_scale(scale, "the CFG scale")
    g = generator_for(seed)
    n = n_per_prompt * (len(prompts) if prompts else 1)
    check_batch(n, model.image_shape, "n_per_prompt x prompts")
    cond = model.encode([p for p in prompts for _ in range(n_per_prompt)]) if prompts else model.null(n)
    guided = bool(prompts) and model.conditioned and scale != 1.0

    def keep(state: dict) -> None:
        if frames is not None and (state["i"] % frame_every == 0):
            frames.append(state["x"].detach().cpu())

    ts = list(timesteps) if timesteps is not None else timesteps_for(model, flow_steps)
    est = cfg(model, cond, model.null(n), scale) if guided else plain(model, cond)
    x = randn((n, *model.image_shape), g, device=model.device)
    x = run(model, x, ts, est, 0, callback=keep, generator=g, progress=progress, **(step_rule or {}))
    if frames is not None:
        frames.append(x.detach().cpu())
    return x
