"""Part A image tools as plain functions over the one sampler (sampling.denoise) and the estimators.

forward (A1.1), blur (A1.2), one_step_denoise (A1.3), iterative_denoise (A1.4), sample (A1.5/A1.6),
sdedit / translate (A1.7, A1.7.3), inpaint (A1.7.2), anagram (A1.8), hybrid (A1.9).

Prompts are strings (encoded by the model) or ready conditions (tensors of shape (1, ...) or (n, ...)).
Images are (N, C, H, W) in the model's value range. Randomness comes only from `generator`.
sample, sdedit, inpaint, anagram and hybrid run on flow models too (sampling.run picks the loop; their timesteps
are then flow times, sampling.timesteps_for).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from diffusionlab import guidance, sampling
from diffusionlab.errors import DiffusionLabError
from diffusionlab.filters import FAR_FACTOR, gaussian_blur, scaled_blur
from diffusionlab.model_protocol import DiffusionModel, randn
from diffusionlab.schedule import add_noise
from diffusionlab.views import View, reading_views

Prompt = str | Tensor

SDEDIT_I_STARTS = (1, 3, 5, 7, 10, 20)


# -- defaults ---------------------------------------------------------------------------------------------------
def default_scale(model: DiffusionModel) -> float:
    """CFG scale: the model's measured one (`diffusionlab choose-guidance --write` stores it in the model's JSON),
    else its kind's: 7 for DeepFloyd IF (as the course), 5 for our MNIST models (model_kinds)."""
    return model.kind.guidance_scale(model)


def default_timesteps(model: DiffusionModel) -> list[int]:
    """The course's strided schedule: range(990, -1, -30) for T = 1000, range(290, -1, -10) for T = 300."""
    return sampling.timesteps_for(model, edit=True)


# the illusions' defaults for our models, chosen by measurement over all 90 digit pairs (docs/illusions.md,
# benchmarks/illusion_table.py): anagrams CFG 10 (rot180 29 % vs 26 % at 5) with the views alternating step by
# step (20-epoch model: rot180 48.1 % vs the mean's 46.9 % at N = 8; flip 56.1 vs 48.3 %; half the network work)
# and the sampler default's DDIM steps (rot180 53.1 % vs 48.1 % with ddpm steps at N = 8; flip 50.4 % vs 53.3 %
# at N = 16: equal overall, and one rule for sampling and anagrams). IF keeps the course's (CFG 7, mean, 33/2).
MEASURED_HYBRID_RULE = {"sampler": "ddpm", "variance": "auto"}
ANAGRAM_DEFAULTS: dict[str, Any] = {
    "combine": "alternate",
    "scale": 10.0,
    "steps": None,
    "rule": sampling.OUR_SAMPLER,
    "balance": True,  # reading balance where a classifier exists: rot180 62 vs 53 %, flip 62 vs 49 % (N = 8)
}
# hybrids (docs/illusions.md, "Hybrids by measurement", 90 pairs x 8, held-out judge): the far view's low-pass with
# the ranker's balance on the components' CFG reads both ways 24.3 % (best-of-8 26.7 %), the Gaussian 10.0 (18.9) %
# (chosen by the ranker, 18 pairs x 4: 33 vs 7 %; CFG 10 / 15: 31 %, 15 / 15: 32 %), ddpm steps as measured. The
# Gaussian (a kernel or sigma given) keeps sigma 1.5, kernel 15 (0 % at the course's 0.875: the low prompt wins).
HYBRID_DEFAULTS: dict[str, Any] = {
    "scale": 10.0,  # the far (low-pass) component's CFG, and the near one's where near_scale is None
    "near_scale": None,
    "lowpass": "far",
    "kernel": 15,
    "sigma": 1.5,
    "steps": None,
    "rule": MEASURED_HYBRID_RULE,
    "balance": True,  # where the model has a ranker and both prompts a class
}
HYBRID_LOWPASS = ("gaussian", "far")
HYBRID_FAR_POOL = FAR_FACTOR  # "far": the far view's own pooling (metrics.far_view)


def _ours(model: DiffusionModel) -> bool:
    """Whether the defaults measured on our MNIST models apply to the model's kind (not IF's: the course's)."""
    return model.kind.measured_defaults


def anagram_combine(model: DiffusionModel, combine: str | None = None) -> str:
    """How an anagram's views are combined: `combine`, else the measured default for our models, IF the mean."""
    return combine or (ANAGRAM_DEFAULTS["combine"] if _ours(model) else "mean")


def illusion_scale(model: DiffusionModel, defaults: dict[str, Any]) -> float:
    """The CFG scale of an anagram or hybrid: the measured default for our models, else default_scale."""
    own = defaults["scale"] if _ours(model) else None
    return default_scale(model) if own is None else float(own)


def illusion_timesteps(model: DiffusionModel, defaults: dict[str, Any] | None = None) -> list[int]:
    """The timesteps of an anagram or hybrid: `steps` evenly spaced ones for our models where measured, else the
    course's strided schedule."""
    steps = (defaults or ANAGRAM_DEFAULTS)["steps"] if _ours(model) else None
    if steps is None:
        return default_timesteps(model)
    return sampling.timesteps_for(model, int(steps))


def illusion_rule(model: DiffusionModel, defaults: dict[str, Any], sampler: dict[str, Any]) -> dict[str, Any]:
    """The step rule of an anagram or hybrid: the measured default for our DDPMs under the caller's settings (a
    caller's --variance or --eta replaces the rule, not only its option). A kind with one step rule (a flow
    model's Euler) takes no measured rule."""
    if not _ours(model) or model.kind.only_sampler or "sampler" in sampler:
        return dict(sampler)
    return {**defaults["rule"], **sampler}


def unconditional_prompt(model: DiffusionModel) -> str:
    """The prompt for "no particular content", the kind's: "a high quality photo" for IF, the null class for ours."""
    return model.kind.unconditional_prompt


def cond_of(model: DiffusionModel, prompt: Prompt | None) -> Tensor:
    if prompt is None:
        prompt = unconditional_prompt(model)
    if isinstance(prompt, str):
        return model.encode([prompt])
    return prompt


def _estimator(model: DiffusionModel, prompt: Prompt | None, scale: float | None, uncond: Tensor | None):
    """CFG of the prompt (one batched predict per step); scale 1 means the plain conditional estimate."""
    c = cond_of(model, prompt)
    s = default_scale(model) if scale is None else scale
    if s == 1.0:
        return guidance.plain(model, c)
    return guidance.cfg(model, c, model.null(1) if uncond is None else uncond, s)


def _denoise(model: DiffusionModel, x: Tensor, timesteps, estimator, i_start: int, **kwargs: Any) -> Tensor:
    """sampling.run: the model's loop (DDPM with its defaults under the caller's keyword arguments, or flow)."""
    return sampling.run(model, x, timesteps, estimator, i_start, **kwargs)


# -- A1.1 - A1.4 ------------------------------------------------------------------------------------------------
def forward(model: DiffusionModel, x0: Tensor, ts: Sequence[int], generator: torch.Generator | None = None) -> Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps for each t in ts (fresh eps each): (len(ts), N, C, H, W).

    t = -1 is allowed and returns x0 itself."""
    out = []
    for t in ts:
        if int(t) != -1:
            model.schedule.check_timestep(int(t))
        noise = randn(x0.shape, generator, like=x0)
        out.append(add_noise(x0, int(t), noise, model.schedule))
    return torch.stack(out)


def blur(x_t: Tensor, kernel_size: int | None = None, sigma: float | None = None) -> Tensor:
    """Classical denoising: a Gaussian blur. Default kernel 5, sigma 2 at 64 px, scaled with the image size."""
    k, s = scaled_blur(x_t.shape[-2], 5, 2.0)
    return gaussian_blur(x_t, kernel_size or k, sigma or s)


def one_step_denoise(
    model: DiffusionModel,
    x_t: Tensor,
    t: int,
    prompt: Prompt | None = None,
    scale: float | None = 1.0,
    uncond: Tensor | None = None,
) -> Tensor:
    """x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), with the plain estimate of the prompt
    ("a high quality photo" for IF, the null class for ours) unless a CFG scale is given."""
    return sampling.one_step(model, x_t, t, _estimator(model, prompt, scale, uncond))


def iterative_denoise(
    model: DiffusionModel,
    x_t: Tensor,
    i_start: int = 10,
    prompt: Prompt | None = None,
    scale: float | None = 1.0,
    timesteps: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    callback: sampling.Callback | None = None,
    uncond: Tensor | None = None,
    **sampler: Any,
) -> Tensor:
    """Strided DDPM denoising of x_t, which is at timesteps[i_start], down to a clean image (A1.4; with i_start = 0
    and pure noise this is sampling, A1.5; with scale > 1 CFG sampling, A1.6). Frames through `callback`."""
    ts = list(timesteps) if timesteps is not None else default_timesteps(model)
    est = _estimator(model, prompt, scale, uncond)
    return _denoise(model, x_t, ts, est, i_start, generator=generator, callback=callback, **sampler)


def sample(
    model: DiffusionModel,
    n: int,
    prompt: Prompt | None = None,
    scale: float | None = None,
    timesteps: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    **sampler: Any,
) -> Tensor:
    """n CFG samples of one prompt from pure noise (A1.5, A1.6)."""
    x = randn((n, *model.image_shape), generator, device=model.device)
    return iterative_denoise(model, x, 0, prompt, scale, timesteps, generator, **sampler)


# -- A1.7 SDEdit, A1.7.3 translation -------------------------------------------------------------------------------
def sdedit(
    model: DiffusionModel,
    x_orig: Tensor,
    prompt_cond: Prompt | None = None,
    i_starts: Sequence[int] = SDEDIT_I_STARTS,
    scale: float | None = None,
    generator: torch.Generator | None = None,
    timesteps: Sequence[int] | None = None,
    uncond: Tensor | None = None,
    callback: sampling.Callback | None = None,
    **sampler: Any,
) -> Tensor:
    """SDEdit: x = forward(x_orig, ts[i_start]), then CFG denoising from i_start; for every i_start.

    Returns (len(i_starts), N, C, H, W). All i_starts run in ONE batch through one `denoise`: the loop starts at
    the smallest i_start, and the rows of a later i_start are (re)set to their own noisy start right when the loop
    reaches ts[i_start] (an after_step hook), so each row sees exactly its own SDEdit trajectory from there on.
    """
    ts = list(timesteps) if timesteps is not None else default_timesteps(model)
    starts = [int(i) for i in i_starts]
    for i in starts:
        sampling.check_i_start(ts, i)
    n = x_orig.shape[0]
    x_orig = x_orig.to(model.device)
    inits = [sampling.noised(model, x_orig, ts[i], randn(x_orig.shape, generator, like=x_orig)) for i in starts]
    x = torch.cat(inits)
    first = min(starts)

    def reset_late_starts(x: Tensor, t_prev: int, step: int) -> Tensor:
        for g, i in enumerate(starts):
            if i == step + 1:
                x = x.clone()
                x[g * n : (g + 1) * n] = inits[g]
        return x

    est = _estimator(model, prompt_cond, scale, uncond)
    out = _denoise(
        model, x, ts, est, first, after_step=reset_late_starts, generator=generator, callback=callback, **sampler
    )
    return out.reshape(len(starts), n, *x_orig.shape[1:])


def translate(
    model: DiffusionModel,
    x_orig: Tensor,
    prompt: Prompt,
    i_starts: Sequence[int] = SDEDIT_I_STARTS,
    scale: float | None = None,
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> Tensor:
    """Text/class-conditional image-to-image (A1.7.3): SDEdit guided by a real prompt ("a rocket ship", "7")."""
    return sdedit(model, x_orig, prompt, i_starts, scale, generator, **kwargs)


# -- A1.7.2 inpainting --------------------------------------------------------------------------------------------
def inpaint(
    model: DiffusionModel,
    x_orig: Tensor,
    mask: Tensor,
    cond: Prompt | None = None,
    scale: float | None = None,
    generator: torch.Generator | None = None,
    timesteps: Sequence[int] | None = None,
    i_start: int = 0,
    uncond: Tensor | None = None,
    callback: sampling.Callback | None = None,
    **sampler: Any,
) -> Tensor:
    """Inpainting (RePaint-style): start from pure noise (or, with i_start > 0, from the noised original), and after
    every step x <- m x + (1 - m) forward(x_orig, t_prev), m = 1 where new content goes. The last step pastes
    forward(x_orig, -1) = x_orig, so outside the mask the result IS the original."""
    ts = list(timesteps) if timesteps is not None else default_timesteps(model)
    sampling.check_i_start(ts, i_start)
    x_orig = x_orig.to(model.device)
    m = mask.to(x_orig.device, x_orig.dtype)
    noise = randn(x_orig.shape, generator, like=x_orig)
    x = noise if i_start == 0 else sampling.noised(model, x_orig, ts[i_start], noise)

    def paste_known(x: Tensor, t_prev: int, step: int) -> Tensor:
        if sampling.is_clean(model, t_prev):
            known = x_orig
        else:
            known = sampling.noised(model, x_orig, t_prev, randn(x.shape, generator, like=x))
        return torch.where(m >= 1, x, known) if bool(((m == 0) | (m == 1)).all()) else m * x + (1 - m) * known

    est = _estimator(model, cond, scale, uncond)
    return _denoise(
        model, x, ts, est, i_start, after_step=paste_known, generator=generator, callback=callback, **sampler
    )


# -- A1.8 anagrams, A1.9 hybrids ----------------------------------------------------------------------------------
def anagram(
    model: DiffusionModel, prompt1: Prompt, prompt2: Prompt, view: str | View = "rot180", *args, **kwargs
) -> Tensor:
    """Visual anagrams: images that look like prompt1 as they are and like prompt2 through `view`: anagram_views of
    two readings (its other arguments: n, scale, generator, timesteps, seed, callback, combine, weights, balance,
    the step rule).

    eps = (CFG(x_t, p1) + view^-1(CFG(view(x_t), p2))) / 2, all four branches in one predict per step.
    Returns the upright images (n, C, H, W); `view.apply` of them shows the second prompt."""
    return anagram_views(model, [prompt1, prompt2], [view], *args, **kwargs)


def anagram_views(
    model: DiffusionModel,
    prompts: Sequence[Prompt],
    views: Sequence[str | View],
    n: int = 1,
    scale: float | None = None,
    generator: torch.Generator | None = None,
    timesteps: Sequence[int] | None = None,
    seed: int = 0,
    callback: sampling.Callback | None = None,
    combine: str | None = None,
    weights: Tensor | None = None,
    balance: Callable[[Tensor], Tensor] | None = None,
    **sampler: Any,
) -> Tensor:
    """Anagrams of 2-4 readings: prompts[0] upright, prompts[k] through views[k - 1]; every view's two CFG
    branches in one predict per step. Defaults (scale, combine, steps) from ANAGRAM_DEFAULTS. `seed` seeds the
    permutation of permutation views; combine: how the views' estimates are combined (guidance.COMBINE_MODES); weights (n, V):
    each image's balance of the readings (guidance.anagram), default equal. balance: x0 -> factors (n, V) on those
    weights after every step (evaluation.balance.reading_balance; guidance.ViewWeights.rebalancing)."""
    if len(prompts) != len(views) + 1:
        raise DiffusionLabError(f"{len(prompts)} prompts need {len(prompts) - 1} views, got {len(views)}")
    vs = reading_views(views, model.image_shape, seed=seed)
    s = illusion_scale(model, ANAGRAM_DEFAULTS) if scale is None else scale
    mode = anagram_combine(model, combine)
    pairs = [(v, cond_of(model, p)) for v, p in zip(vs, prompts, strict=True)]
    if balance is not None:
        live = guidance.ViewWeights(weights if weights is not None else torch.ones(n, len(vs)), len(vs))
        callback = live.rebalancing(balance, callback)
        weights = live
    est = guidance.anagram(model, pairs, model.null(1), s, mode, weights)
    x = randn((n, *model.image_shape), generator, device=model.device)
    ts = list(timesteps) if timesteps is not None else illusion_timesteps(model, ANAGRAM_DEFAULTS)
    rule = illusion_rule(model, ANAGRAM_DEFAULTS, sampler)
    return _denoise(model, x, ts, est, 0, generator=generator, callback=callback, **rule)


def hybrid(
    model: DiffusionModel,
    low_prompt: Prompt,
    high_prompt: Prompt,
    n: int = 1,
    sigma: float | None = None,
    kernel: int | None = None,
    scale: float | tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
    timesteps: Sequence[int] | None = None,
    callback: sampling.Callback | None = None,
    lowpass: str | None = None,
    balance: Callable[[Tensor], Tensor] | None = None,
    **sampler: Any,
) -> Tensor:
    """Hybrid images: low frequencies from low_prompt (seen from afar), high ones from high_prompt (seen close).
    scale: one CFG or (far, near) (hybrid_scales); lowpass: HYBRID_LOWPASS (hybrid_lowpass, hybrid_blur); balance:
    x0 -> (n, 2) weights of the (far, near) readings after each step, scaling each image's CFG (guidance.hybrid)."""
    k, sg = hybrid_blur(model, kernel, sigma)
    s = hybrid_scales(model, scale)
    pool = HYBRID_FAR_POOL if hybrid_lowpass(model, lowpass, kernel, sigma) == "far" else None
    weights = None if balance is None else guidance.ViewWeights(torch.ones(n, 2), 2)
    callback = callback if balance is None else weights.rebalancing(balance, callback)
    conds = cond_of(model, low_prompt), cond_of(model, high_prompt), model.null(1)
    est = guidance.hybrid(model, *conds, s, k, sg, pool, weights)
    x = randn((n, *model.image_shape), generator, device=model.device)
    ts = list(timesteps) if timesteps is not None else illusion_timesteps(model, HYBRID_DEFAULTS)
    rule = illusion_rule(model, HYBRID_DEFAULTS, sampler)
    return _denoise(model, x, ts, est, 0, generator=generator, callback=callback, **rule)


def hybrid_scales(model: DiffusionModel, scale: float | Sequence[float | None] | None = None) -> tuple[float, float]:
    """A hybrid's (far, near) CFG: one for both, or a pair whose None entries take HYBRID_DEFAULTS' (IF: its own)."""
    far = illusion_scale(model, HYBRID_DEFAULTS)
    near = float(HYBRID_DEFAULTS["near_scale"]) if _ours(model) and HYBRID_DEFAULTS["near_scale"] else far
    a, b = (far, near) if scale is None else (scale, scale) if isinstance(scale, int | float) else scale
    return (far if a is None else float(a)), (near if b is None else float(b))


def hybrid_lowpass(model: DiffusionModel, lowpass: str | None = None, kernel=None, sigma=None) -> str:
    """A hybrid's low-pass (HYBRID_LOWPASS): the caller's, else Gaussian for a kernel, sigma or IF, else the default."""
    name = lowpass or ("gaussian" if kernel or sigma or not _ours(model) else HYBRID_DEFAULTS["lowpass"])
    if name not in HYBRID_LOWPASS:
        raise DiffusionLabError(f"unknown hybrid low-pass {name!r}; choose one of {', '.join(HYBRID_LOWPASS)}")
    if name == "far" and (kernel or sigma):
        raise DiffusionLabError("a kernel or sigma sets the Gaussian low-pass; the far view's low-pass takes none")
    return name


def hybrid_blur(model: DiffusionModel, kernel: int | None = None, sigma: float | None = None) -> tuple[int, float]:
    """The low-pass (kernel, sigma) of a hybrid: the caller's, else HYBRID_DEFAULTS for our models, else the
    course's 33 and 2 at 64 px scaled to the image size."""
    k0, s0 = scaled_blur(model.image_shape[1])
    if _ours(model):
        k0, s0 = HYBRID_DEFAULTS["kernel"] or k0, HYBRID_DEFAULTS["sigma"] or s0
    return (kernel or k0), (sigma or s0)
