"""One sampler loop for every Part A tool and DDPM sampling, and the Euler sampler for flow models."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from diffusionlab.checks import check_batch, check_count, check_scale
from diffusionlab.errors import DiffusionLabError
from diffusionlab.guidance import Estimator, cfg, cfg_combine, plain, repeat_cond
from diffusionlab.progress import bar
from diffusionlab.protocol import (
    DiffusionModel,
    is_if_like,
    predicts_variance,  # noqa: F401  (its old home; re-exported)
    randn,
)
from diffusionlab.schedule import (
    check_timesteps,
    dynamic_threshold,
    full_timesteps,
    predict_x0,
    spaced_timesteps,
    strided_timesteps,
)
from diffusionlab.steps import make_step_rule, needs_noise

# our models' default step rule: DDPM steps with "auto" variance = Algorithm B.2's beta on single steps (all T
# steps), the posterior variance beta-tilde on strided ones (measured in docs/sampling.md: beta leaves grain there)
OUR_SAMPLER = {"sampler": "ddpm", "variance": "auto"}
AfterStep = Callable[[Tensor, int, int], Tensor]  # (x at t_prev, t_prev, step index) -> x
Callback = Callable[[dict[str, Any]], None]


def sampler_defaults(model: DiffusionModel, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The step rule and its settings for a model (the one place they are chosen), with a caller's `overrides`
    on top: IF-like models ([-1, 1] and learned variance) take DDPM steps with their learned variance and dynamic
    thresholding (0.95, 1.5), as IF's own scheduler; our models take OUR_SAMPLER (measured: docs/sampling.md), no
    clipping. A model's own `sampler_defaults` dict wins over both defaults."""
    own = getattr(model, "sampler_defaults", None)
    if isinstance(own, dict):
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
    A count: the model's own spacing when it has one (IF's scheduler), else evenly spaced from T-1 down to 0."""
    T = model.schedule.num_steps
    if steps is None:
        return strided_timesteps(T) if edit or is_if_like(model) else full_timesteps(T)
    check_count(steps, "--steps")
    own = getattr(model, "timesteps", None)
    if callable(own):
        return list(own(steps))
    return spaced_timesteps(T, steps)


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
    timesteps: Sequence[int],
    estimator: Estimator,
    i_start: int = 0,
    after_step: AfterStep | None = None,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    variance: str = "auto",
    threshold: tuple[float, float] | None = None,
    clip: bool = False,
    progress: bool = True,
    sampler: str = "ddpm",
    eta: float = 0.0,
) -> Tensor:
    """Iterative denoising of x (at timesteps[i_start]) along strided timesteps down to a clean image.

    sampler: the step rule (steps.py): "ddpm" (with `variance`), "ddim" (with `eta`) or "dpm++2m".
    variance: "auto" (learned-range when the model predicts it, else beta on single steps and beta-tilde on strided
    ones), "learned-range", "beta", "beta-tilde".
    threshold: (ratio, max value) for dynamic thresholding of x0_hat (IF: (0.95, 1.5)); clip clamps x0_hat to
    the model's value range instead. No noise is added on the step to the clean image.
    callback gets {"i", "t", "t_prev", "x" (after the step), "x0" (the estimate)} after every step.
    """
    ts = check_timesteps(model.schedule, timesteps)
    check_i_start(ts, i_start)
    ts = ts[i_start:]
    lo, hi = model.value_range
    rule = make_step_rule(model.schedule, sampler, variance, eta)
    noisy_steps = needs_noise(sampler, eta)
    for i, t in enumerate(bar(ts, progress, desc="denoising", leave=False)):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        pred = estimator(x, t)
        x0 = predict_x0(x, t, pred.eps, model.schedule)
        if threshold is not None:
            x0 = dynamic_threshold(x0, *threshold)
        elif clip:
            x0 = x0.clamp(lo, hi)
        noise = randn(x.shape, generator, like=x) if noisy_steps and t_prev >= 0 else None
        x = rule(x, t, t_prev, x0, pred.var_values, noise)
        if after_step is not None:
            x = after_step(x, t_prev, i_start + i)
        if callback is not None:
            callback({"i": i_start + i, "t": t, "t_prev": t_prev, "x": x, "x0": x0})
    return x


def sample(
    model: DiffusionModel,
    n: int,
    estimator: Estimator,
    timesteps: Sequence[int],
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> Tensor:
    """Sampling = iterative denoising from pure noise (i_start = 0)."""
    x = randn((n, *model.image_shape), generator, device=model.device)
    return denoise(model, x, timesteps, estimator, 0, generator=generator, **kwargs)


def flow_sample(
    model: Any,
    n: int,
    num_steps: int,
    cond: Tensor | None = None,
    uncond: Tensor | None = None,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = True,
) -> Tensor:
    """Euler integration of a flow model from noise (t = 0) to data (t = 1): x += u / N, N steps.

    With a condition and scale != 1, CFG on the velocity, both branches in one batch.
    """
    x = randn((n, *model.image_shape), generator, device=model.device)
    guided = cond is not None and uncond is not None and scale != 1.0
    for i in bar(range(num_steps), progress, desc="flow sampling", leave=False):
        t = i / num_steps
        if guided:
            u_c, u_u = model.velocity(
                torch.cat([x, x]), t, torch.cat([repeat_cond(cond, n), repeat_cond(uncond, n)])
            ).chunk(2)
            u = cfg_combine(u_c, u_u, scale)
        else:
            u = model.velocity(x, t, repeat_cond(cond, n) if cond is not None else None)
        x = x + u / num_steps
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0": x})
    return x


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
    """Samples of any protocol model, n per prompt, all in one batch: a DDPM over `timesteps` (default: every
    step, Algorithm B.2) or a flow model (Euler, `flow_steps`).

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

    if getattr(model, "objective", "ddpm") == "flow":
        steps = flow_steps or (300 if model.num_classes else 50)
        x = flow_sample(model, n, steps, cond, model.null(n), scale if guided else 1.0, g, keep, progress)
    else:
        est = cfg(model, cond, model.null(n), scale) if guided else plain(model, cond)
        ts = list(timesteps) if timesteps is not None else full_timesteps(model.schedule.num_steps)
        x = sample(model, n, est, ts, g, callback=keep, progress=progress, **sampler_defaults(model, step_rule))
    if frames is not None:
        frames.append(x.detach().cpu())
    return x
