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
from diffusionlab.guidance import Estimator, cfg, is_flow, plain
from diffusionlab.model_protocol import (
    DiffusionModel,
    is_if_like,
    predicts_variance,  # noqa: F401  (its old home; re-exported)
    randn,
)
from diffusionlab.progress import bar
from diffusionlab.schedule import (
    add_noise,
    check_timesteps,
    dynamic_threshold,
    full_timesteps,
    is_single_step,
    predict_x0,
    spaced_timesteps,
    strided_timesteps,
)
from diffusionlab.steps import FLOW_SAMPLER, SAMPLERS, make_step_rule, needs_noise

# our models' default step rule, "auto": Algorithm B.2 (ddpm, beta) on single steps (all T steps), DDIM with eta 0
# on strided ones (measured in docs/sampling.md, 20-epoch model, N = 1000, 30 steps: FD 2.65 against 3.40 for ddpm
# beta-tilde and 5.56 for beta, which leaves grain; all 100 % accurate)
OUR_SAMPLER = {"sampler": "auto", "variance": "auto"}
AfterStep = Callable[[Tensor, int, int], Tensor]  # (x at t_prev, t_prev, step index) -> x
Callback = Callable[[dict[str, Any]], None]
# a flow model's Euler steps for the Part A edits: as many as the course's strided DDPM schedule (30)
FLOW_EDIT_STEPS = 30


def sampler_defaults(model: DiffusionModel, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The step rule and its settings for a model (the one place they are chosen), with a caller's `overrides`
    on top: IF-like models ([-1, 1] and learned variance) take DDPM steps with their learned variance and dynamic
    thresholding (0.95, 1.5), as IF's own scheduler; our models take OUR_SAMPLER (measured: docs/sampling.md), no
    clipping. A model's own `sampler_defaults` dict wins over both defaults."""
    own = getattr(model, "sampler_defaults", None)
    if is_flow(model):
        rule = {"sampler": FLOW_SAMPLER}
    elif isinstance(own, dict):
        rule = {"variance": "auto", "threshold": None, **own}
    elif is_if_like(model):
        rule = {"sampler": "ddpm", "variance": "auto", "threshold": (0.95, 1.5)}
    else:
        rule = {**OUR_SAMPLER, "threshold": None}
    return {**rule, **(overrides or {})}


def timesteps_for(model: DiffusionModel, steps: int | None = None, edit: bool = False) -> list[int]:
    """The one place a model's timesteps are chosen (CLI, tools, report, web UI, evaluation).

    steps None: Part A edits (edit=True) walk the course's strided schedule (990, 960, ... for IF; 290, 280, ...
    for T = 300); sampling walks every step for our DDPMs (Algorithm B.2) and the strided ones for IF.
    A count: the model's own spacing when it has one (IF's scheduler), else evenly spaced from T-1 down to 0.
    A flow model: the flow times of its Euler steps (flow_timesteps): `steps` of them, else FLOW_EDIT_STEPS for
    edits and flow_default_steps for sampling."""
    if is_flow(model):
        n = steps if steps is not None else (FLOW_EDIT_STEPS if edit else flow_default_steps(model))
        check_count(n, "--steps")
        return flow_timesteps(n)
    T = model.schedule.num_steps
    if steps is None:
        return strided_timesteps(T) if edit or is_if_like(model) else full_timesteps(T)
    check_count(steps, "--steps")
    own = getattr(model, "timesteps", None)
    if callable(own):
        return list(own(steps))
    return spaced_timesteps(T, steps)


def flow_default_steps(model: Any) -> int:
    """Euler steps for sampling a flow model: the course's 300 for the class model, 50 for the time model."""
    return 300 if getattr(model, "num_classes", 0) else 50


def flow_timesteps(n: int) -> list[float]:
    """A flow model's Euler grid of n steps: the flow time at the start of each step, 0, 1/n, ..., (n - 1)/n."""
    return [i / n for i in range(n)]


def noised(model: DiffusionModel, x0: Tensor, t: float, noise: Tensor) -> Tensor:
    """x0 at the loop's time t with the given noise: a DDPM's forward process (t = -1: x0 itself), or a flow
    model's path (1 - t) noise + t x0 (t = 1: x0 itself)."""
    if is_flow(model):
        return (1 - t) * noise + t * x0
    return add_noise(x0, int(t), noise, model.schedule)


def clean_estimate(model: DiffusionModel, x: Tensor, t: float, out: Tensor) -> Tensor:
    """The loop's estimate of the clean image from the model's output: a DDPM's
    x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), a flow model's x + (1 - t) u."""
    if is_flow(model):
        return x + (1 - t) * out
    return predict_x0(x, int(t), out, model.schedule)


def is_clean(model: DiffusionModel, t: float) -> bool:
    """Whether t, a time the loop hands to after_step, is its end: the clean image (-1 for DDPMs, 1 for flows)."""
    return t >= 1 if is_flow(model) else t < 0


def one_step(model: DiffusionModel, x_t: Tensor, t: int, estimator: Estimator) -> Tensor:
    """One-step denoising: x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)."""
    model.schedule.check_timestep(t)
    return predict_x0(x_t, t, estimator(x_t, t).eps, model.schedule)


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
    flow = is_flow(model)
    sampler = _check_kind(flow, sampler)
    ts = check_flow_timesteps(timesteps) if flow else check_timesteps(model.schedule, timesteps)
    check_i_start(ts, i_start)
    ts = ts[i_start:]
    end = 1.0 if flow else -1
    lo, hi = model.value_range
    rule = make_step_rule(getattr(model, "schedule", None), sampler, variance, eta)
    desc = "flow sampling" if flow else "denoising"
    for i, t in enumerate(bar(ts, progress, desc=desc, leave=False)):
        t_prev = ts[i + 1] if i + 1 < len(ts) else end
        pred = estimator(x, t)
        x0 = clean_estimate(model, x, t, pred.eps)
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


def _check_kind(flow: bool, sampler: str | None) -> str:
    """The step rule a model's kind takes (default: ddpm for a DDPM, Euler for a flow model), or a one-line error."""
    if sampler is None:
        return FLOW_SAMPLER if flow else "ddpm"
    if flow and sampler != FLOW_SAMPLER:
        raise DiffusionLabError(f"a flow model takes Euler steps; --sampler {sampler} is for DDPMs")
    if not flow and sampler == FLOW_SAMPLER:
        raise DiffusionLabError(f"Euler steps are for flow models; a DDPM takes one of {', '.join(SAMPLERS)}")
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


def check_flow_timesteps(timesteps: Sequence[float]) -> list[float]:
    """Flow times as floats, checked: rising from 0 or more, all below 1 (where the loop ends)."""
    ts = [float(t) for t in timesteps]
    if not ts or ts[0] < 0 or not all(a < b for a, b in zip(ts, ts[1:] + [1.0], strict=True)):
        raise DiffusionLabError(f"flow times must rise from 0 towards 1 (below 1), got {ts[:3]}...")
    return ts


def run(
    model: DiffusionModel,
    x: Tensor,
    timesteps: Sequence[float],
    estimator: Estimator,
    i_start: int = 0,
    after_step: AfterStep | None = None,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    **rule: Any,
) -> Tensor:
    """The loop `denoise` with the model's step rule (sampler_defaults) under the caller's `rule` (sampler,
    variance, eta, threshold, clip; a DDPM's options: a flow model takes Euler steps and none of them)."""
    if is_flow(model) and rule:
        raise DiffusionLabError(
            f"a flow model takes Euler steps; {', '.join(sorted(rule))} is for DDPMs (drop --sampler/--variance/--eta)"
        )
    rule = sampler_defaults(model, rule)
    return denoise(model, x, timesteps, estimator, i_start, after_step, callback, generator, progress=progress, **rule)


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
    timesteps_for, every step for ours, Algorithm B.2) or a flow model (Euler, `flow_steps`).

    prompts None or empty: unconditional. With prompts and scale != 1, CFG. The model's own sampler settings
    (e.g. IF's learned variance and dynamic thresholding, `sampler_defaults`) are used. `frames` collects x every
    `frame_every` steps for a GIF. `step_rule` ({"sampler", "variance", "eta"}) overrides the model's step rule.
    """
    check_count(n_per_prompt, "n_per_prompt")
    check_scale(scale, "the CFG scale")
    g = torch.Generator("cpu").manual_seed(seed)
    n = n_per_prompt * (len(prompts) if prompts else 1)
    check_batch(n, model.image_shape, "n_per_prompt x prompts")
    cond = model.encode([p for p in prompts for _ in range(n_per_prompt)]) if prompts else model.null(n)
    guided = bool(prompts) and getattr(model, "num_classes", 1) > 0 and scale != 1.0

    def keep(state: dict) -> None:
        if frames is not None and (state["i"] % frame_every == 0):
            frames.append(state["x"].detach().cpu())

    ts = list(timesteps) if timesteps is not None else timesteps_for(model, flow_steps if is_flow(model) else None)
    est = cfg(model, cond, model.null(n), scale) if guided else plain(model, cond)
    x = randn((n, *model.image_shape), g, device=model.device)
    x = run(model, x, ts, est, 0, callback=keep, generator=g, progress=progress, **(step_rule or {}))
    if frames is not None:
        frames.append(x.detach().cpu())
    return x
