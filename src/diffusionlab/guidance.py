"""Noise estimators: how the eps of one step is made from a model. Each makes ONE batched `predict` per step.

plain, cfg (classifier-free guidance), anagram (views), hybrid (low/high-pass factorization).

An estimator is a callable `(x_t, t) -> Prediction`. The sampler does not care which one it gets. The estimators
combine whatever the model's kind predicts (Prediction.output: the noise for a DDPM, the velocity for a flow model,
whose t is the flow time in [0, 1), 0 = noise, 1 = data); only the views ask the kind how an output moves.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from diffusionlab.checks import check_scale
from diffusionlab.errors import DiffusionLabError
from diffusionlab.filters import highpass, lowpass, pooled_lowpass, scaled_blur
from diffusionlab.model_protocol import DiffusionModel, Prediction
from diffusionlab.views import View

Estimator = Callable[[Tensor, int], Prediction]


def repeat_cond(cond: Tensor, n: int) -> Tensor:
    """A condition for one prompt (1, ...) or for each image (n, ...) -> (n, ...)."""
    return cond.expand(n, *cond.shape[1:]) if cond.shape[0] == 1 else cond


def cfg_combine(eps_cond: Tensor, eps_uncond: Tensor, scale: float) -> Tensor:
    """eps = eps_u + gamma (eps_c - eps_u)."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def model_output(model: DiffusionModel, x: Tensor, t: int | float, cond: Tensor) -> Prediction:
    """The model on a batch at one time of the loop (a DDPM's integer t, a flow model's flow time)."""
    return model.predict(x, torch.full((x.shape[0],), t, device=x.device), cond)


def view_levels(model: DiffusionModel, t: int | float) -> tuple[float, float]:
    """How views move a step's input and output (views.View.apply_noisy / inverse_noisy take the abar whose root
    scales the image's centre): the model kind's view_levels."""
    return model.kind.view_levels(model, t)


def plain(model: DiffusionModel, cond: Tensor) -> Estimator:
    """The model's own estimate for one condition (null(1) for unconditional)."""

    def estimate(x_t: Tensor, t: int) -> Prediction:
        return model_output(model, x_t, t, repeat_cond(cond, x_t.shape[0]))

    return estimate


def batched_cfg(
    model: DiffusionModel, x_views: list[Tensor], conds: list[Tensor], uncond: Tensor, scale: float, t: int
) -> list[Prediction]:
    """CFG for several (input, condition) pairs in one forward pass: every conditional and unconditional branch.

    Returns one Prediction per pair; its variance is the conditional branch's, as IF's pipeline does.
    """
    n = x_views[0].shape[0]
    k = len(conds)
    cs = torch.cat([repeat_cond(c, n) for c in conds] + [repeat_cond(uncond, n)] * k)
    if all(v is x_views[0] for v in x_views):  # one input (CFG): its branches can share the model's encoder
        out = predict_branches(model, x_views[0], 2 * k, t, cs)
    else:
        out = model_output(model, torch.cat(x_views + x_views), t, cs)
    eps_c, eps_u = out.output[: k * n].split(n), out.output[k * n :].split(n)
    var_c = out.var_values[: k * n].split(n) if out.var_values is not None else [None] * k
    return [Prediction(cfg_combine(c, u, scale), v) for c, u, v in zip(eps_c, eps_u, var_c, strict=True)]


def predict_branches(model: DiffusionModel, x: Tensor, k: int, t: int, conds: Tensor) -> Prediction:
    """The model on k branches of one input x (conds: k N rows, branch-major), in one call: the model's
    predict_branches (our UNet computes its encoder once; the protocol's default runs k copies of x)."""
    return model.predict_branches(x, k, torch.full((x.shape[0] * k,), t, device=x.device), conds)


def cfg(model: DiffusionModel, cond: Tensor, uncond: Tensor, scale: float) -> Estimator:
    """Classifier-free guidance: eps_u + scale (eps_c - eps_u), both branches in one batch."""
    check_scale(scale, "the CFG scale")

    def estimate(x_t: Tensor, t: int) -> Prediction:
        return batched_cfg(model, [x_t], [cond], uncond, scale, t)[0]

    return estimate


def _mean(tensors: list[Tensor], weights: Tensor | None = None) -> Tensor:
    """The mean of per-view tensors (each (n, ...)); weights (n, V): each image's own weighted mean."""
    if weights is None:
        return torch.stack(tensors).mean(0)
    w = weights.to(tensors[0]).T.reshape(len(tensors), -1, *[1] * (tensors[0].ndim - 1))
    return (torch.stack(tensors) * w).sum(0)


COMBINE_MODES = ("mean", "alternate", "rescaled")
COMBINE_HELP = {
    "mean": "the mean of the views' noise estimates at every step (Visual Anagrams)",
    "alternate": "one view per step, in turn (one view's branches per forward pass)",
    "rescaled": "the mean, rescaled per image to the views' mean std (the mean of disagreeing estimates is too "
    "small a noise; as CFG-rescale, Lin et al. 2023)",
}


def check_combine(combine: str) -> str:
    if combine not in COMBINE_MODES:
        raise DiffusionLabError(f"unknown view combination {combine!r}; choose one of {', '.join(COMBINE_MODES)}")
    return combine


def _rescaled(eps: list[Tensor], weights: Tensor | None = None) -> Tensor:
    """The mean of the views' estimates, rescaled per image to their mean standard deviation."""
    mean = _mean(eps, weights)
    want = _mean([e.flatten(1).std(1) for e in eps], weights)
    got = mean.flatten(1).std(1).clamp_min(1e-8)
    return mean * (want / got).view(-1, *[1] * (mean.ndim - 1))


def check_view_weights(weights: Tensor, n_views: int) -> Tensor:
    """Per-image weights of the views, (n, V), non-negative and not all zero in a row; returned normalized."""
    if weights.ndim != 2 or weights.shape[1] != n_views:
        raise DiffusionLabError(f"view weights need one row of {n_views} per image, got shape {tuple(weights.shape)}")
    weights = weights.float()
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()) or bool((weights.sum(1) <= 0).any()):
        raise DiffusionLabError("view weights must be finite, non-negative and not all zero for an image")
    return weights / weights.sum(1, keepdim=True)


def alternating_views(weights: Tensor, taken: Tensor, calls: int) -> Tensor:
    """The view each image takes at call `calls` (0-based) when the views alternate with per-image weights
    (n, V): the one furthest behind its share, (calls + 1) w - taken (ties to the first). Equal weights give
    0, 1, ..., V - 1, 0, ...; weights 1/3, 2/3 give view 1 two steps in three. Updates taken (n, V) in place."""
    choice = ((calls + 1) * weights - taken).argmax(1)
    taken[torch.arange(len(choice)), choice] += 1
    return choice


class ViewWeights:
    """Each image's weights of an anagram's views (n, V), normalized (check_view_weights), and the steps each view
    has had so far (for "alternate"). A step hook may `set` new weights between steps (reading balance: more steps
    for the reading the image lacks); the alternation then catches up with the new shares."""

    def __init__(self, weights: Tensor, n_views: int):
        self.w = check_view_weights(weights, n_views)
        self.taken = torch.zeros_like(self.w)

    def set(self, weights: Tensor) -> None:
        if weights.shape != self.w.shape:
            raise DiffusionLabError(f"new view weights {tuple(weights.shape)} for {tuple(self.w.shape)}")
        self.w = check_view_weights(weights.to(self.w), self.w.shape[1])

    def rebalancing(self, balance: Callable[[Tensor], Tensor], then: Callable | None = None) -> Callable:
        """A sampler step hook (sampling.Callback): after every step, these weights become the ones they started
        as times balance(the step's clean estimate x0); then `then(step)`, the caller's own hook."""
        base = self.w.clone()

        def hook(step: dict) -> None:
            self.set(base * balance(step["x0"]).to(base))
            if then is not None:
                then(step)

        return hook


def anagram(
    model: DiffusionModel,
    views_prompts: list[tuple[View, Tensor]],
    uncond: Tensor,
    scale: float,
    combine: str = "mean",
    weights: Tensor | ViewWeights | None = None,
) -> Estimator:
    """Visual anagrams: eps = mean over views v of inverse_v(CFG(apply_v(x_t), p_v)) (combine="mean").

    Every view's conditional and unconditional branch go in one batched predict. A view sees x_t as a noisy image
    (see views.View.apply_noisy) and its noise estimate comes back through the inverse, as a noise (negate: -eps).
    The variance is the mean of the conditional branches' variances moved back the same way (Visual Anagrams).
    combine (COMBINE_MODES): "mean"; "alternate" takes the views in turn, one per call of the estimator (a fresh
    estimator per sampling run; one view's two branches per predict); "rescaled" is the mean with the std of the
    views' estimates (per image). On a flow model the views' velocities are averaged, each moved back as an image.
    weights (n, V), optional: each image's balance of the views (check_view_weights): a weighted mean, or with
    "alternate" each view's share of the steps (alternating_views); the images still make one predict per step.
    A ViewWeights is read at every step (a step hook may change it); a tensor is fixed.
    """
    check_scale(scale, "the CFG scale")
    check_combine(combine)
    views = [v for v, _ in views_prompts]
    conds = [c for _, c in views_prompts]
    if weights is not None and not isinstance(weights, ViewWeights):
        weights = ViewWeights(weights, len(views))
    state = {"calls": 0, "weights": weights}  # alternation: equal weights built at the first call when none given

    def estimate(x_t: Tensor, t: int) -> Prediction:
        abar, out_level = view_levels(model, t)
        chosen = range(len(views))
        if combine == "alternate":
            if state["weights"] is None:
                state["weights"] = ViewWeights(torch.ones(x_t.shape[0], len(views)), len(views))
            vws = state["weights"]
            choice = alternating_views(vws.w, vws.taken, state["calls"]).to(x_t.device)
            state["calls"] += 1
            if bool((choice != choice[0]).any()):
                return _per_image_view(model, views, conds, uncond, scale, x_t, t, choice, (abar, out_level))
            chosen = [int(choice[0])]
        vs = [views[k] for k in chosen]
        x_views = [v.apply_noisy(x_t, abar, model.value_range) for v in vs]
        preds = batched_cfg(model, x_views, [conds[k] for k in chosen], uncond, scale, t)
        eps_views = [v.inverse_noisy(p.output, out_level, model.value_range) for v, p in zip(vs, preds, strict=True)]
        mw = weights.w if weights is not None and combine != "alternate" else None
        eps = _rescaled(eps_views, mw) if combine == "rescaled" else _mean(eps_views, mw)
        var = None
        if preds[0].var_values is not None:
            var = _mean([v.inverse_spatial(p.var_values) for v, p in zip(vs, preds, strict=True)], mw)
        return Prediction(eps, var)

    return estimate


def _per_image_view(model, views, conds, uncond, scale, x_t, t, choice, levels) -> Prediction:
    """One CFG predict in which image i is seen through views[choice[i]] with that view's condition; the
    estimates come back through each image's own view."""
    abar, out_level = levels
    n = x_t.shape[0]
    x_in, cond = x_t.clone(), None
    for j in choice.unique().tolist():
        rows = choice == j
        x_in[rows] = views[j].apply_noisy(x_t[rows], abar, model.value_range)
        c = repeat_cond(conds[j], n)[rows]
        cond = torch.zeros((n, *c.shape[1:]), dtype=c.dtype, device=c.device) if cond is None else cond
        cond[rows] = c
    p = batched_cfg(model, [x_in], [cond], uncond, scale, t)[0]
    eps = torch.empty_like(p.output)
    var = None if p.var_values is None else torch.empty_like(p.var_values)
    for j in choice.unique().tolist():
        rows = choice == j
        eps[rows] = views[j].inverse_noisy(p.output[rows], out_level, model.value_range)
        if var is not None:
            var[rows] = views[j].inverse_spatial(p.var_values[rows])
    return Prediction(eps, var)


def hybrid(
    model: DiffusionModel,
    low_cond: Tensor,
    high_cond: Tensor,
    uncond: Tensor,
    scale: float | tuple[float, float],
    kernel_size: int | None = None,
    sigma: float | None = None,
    pool: int | None = None,
    weights: Tensor | ViewWeights | None = None,
) -> Estimator:
    """Hybrid images: eps = lowpass(CFG(x_t, p_low)) + highpass(CFG(x_t, p_high)), highpass = x - lowpass.

    scale: one CFG scale for both components, or (low, high): the far reading's and the near reading's own.
    lowpass is a Gaussian blur; kernel and sigma default to the course's 33 and 2 at 64 px, scaled with the image
    size by filters.scaled_blur (15 and 0.875 at 28 px). pool: the far view's own filter instead (average-pooled
    by `pool`, upsampled bilinearly: filters.pooled_lowpass), so the near component is what the far view drops.
    weights (n, 2), optional: each image's balance of the two readings (check_view_weights), which scales its
    components' CFG by 2 w (equal weights: the scales as given); a ViewWeights is read at every step (a step hook
    may change it: the reading balance). The three branches (low, high, uncond) are one predict.
    The variance (IF) is the mean of the two conditional branches', as for anagrams and the reference code.
    """
    s_low, s_high = (scale, scale) if isinstance(scale, int | float) else scale
    check_scale(s_low, "the far (low-pass) CFG scale")
    check_scale(s_high, "the near (high-pass) CFG scale")
    if weights is not None and not isinstance(weights, ViewWeights):
        weights = ViewWeights(weights, 2)
    low, high = hybrid_filters(model, kernel_size, sigma, pool)

    def estimate(x_t: Tensor, t: int) -> Prediction:
        n = x_t.shape[0]
        cs = torch.cat([repeat_cond(low_cond, n), repeat_cond(high_cond, n), repeat_cond(uncond, n)])
        out = predict_branches(model, x_t, 3, t, cs)
        e_low, e_high, e_u = out.output.split(n)
        g_low, g_high = _component_scales(s_low, s_high, weights, x_t)
        eps = low(cfg_combine(e_low, e_u, g_low)) + high(cfg_combine(e_high, e_u, g_high))
        var = None
        if out.var_values is not None:
            v_low, v_high, _ = out.var_values.split(n)
            var = _mean([v_low, v_high])
        return Prediction(eps, var)

    return estimate


def hybrid_filters(
    model: DiffusionModel, kernel_size: int | None = None, sigma: float | None = None, pool: int | None = None
) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """A hybrid's (lowpass, highpass = x - lowpass): the far view's pooling by `pool`, else a Gaussian blur
    (kernel and sigma default to the course's 33 and 2 at 64 px, scaled with the image size)."""
    if pool is not None:
        return (lambda x: pooled_lowpass(x, pool)), (lambda x: x - pooled_lowpass(x, pool))
    k_default, s_default = scaled_blur(model.image_shape[1])
    k = kernel_size if kernel_size is not None else k_default
    s = sigma if sigma is not None else s_default
    return (lambda x: lowpass(x, k, s)), (lambda x: highpass(x, k, s))


def _component_scales(s_low: float, s_high: float, weights: ViewWeights | None, x: Tensor):
    """The CFG scales of the two components: as given, or per image times 2 w (n, 1, 1, 1 each)."""
    if weights is None:
        return s_low, s_high
    w = 2.0 * weights.w.to(x).view(-1, 2, *[1] * (x.ndim - 1))
    return s_low * w[:, 0], s_high * w[:, 1]
