"""Noise estimators: how the eps of one step is made from a model. Each makes ONE batched `predict` per step.

An estimator is a callable `(x_t, t) -> Prediction`. The sampler does not care which one it gets.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from diffusionlab.model import DiffusionModel, Prediction

Estimator = Callable[[Tensor, int], Prediction]


def repeat_cond(cond: Tensor, n: int) -> Tensor:
    """A condition for one prompt (1, ...) or for each image (n, ...) -> (n, ...)."""
    return cond.expand(n, *cond.shape[1:]) if cond.shape[0] == 1 else cond


def cfg_combine(eps_cond: Tensor, eps_uncond: Tensor, scale: float) -> Tensor:
    """eps = eps_u + gamma (eps_c - eps_u)."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def plain(model: DiffusionModel, cond: Tensor) -> Estimator:
    """The model's own estimate for one condition (null(1) for unconditional)."""

    def estimate(x_t: Tensor, t: int) -> Prediction:
        return model.predict(x_t, torch.full((x_t.shape[0],), t, device=x_t.device), repeat_cond(cond, x_t.shape[0]))

    return estimate


def batched_cfg(
    model: DiffusionModel, x_views: list[Tensor], conds: list[Tensor], uncond: Tensor, scale: float, t: int
) -> list[Prediction]:
    """CFG for several (input, condition) pairs in one forward pass: every conditional and unconditional branch.

    Returns one Prediction per pair; its variance is the conditional branch's, as IF's pipeline does.
    """
    n = x_views[0].shape[0]
    xs = torch.cat(x_views + x_views)
    cs = torch.cat([repeat_cond(c, n) for c in conds] + [repeat_cond(uncond, n)] * len(conds))
    out = model.predict(xs, torch.full((xs.shape[0],), t, device=xs.device), cs)
    k = len(conds)
    eps_c, eps_u = out.eps[: k * n].split(n), out.eps[k * n :].split(n)
    var_c = out.var_values[: k * n].split(n) if out.var_values is not None else [None] * k
    return [Prediction(cfg_combine(c, u, scale), v) for c, u, v in zip(eps_c, eps_u, var_c, strict=True)]


def cfg(model: DiffusionModel, cond: Tensor, uncond: Tensor, scale: float) -> Estimator:
    """Classifier-free guidance: eps_u + scale (eps_c - eps_u), both branches in one batch."""

    def estimate(x_t: Tensor, t: int) -> Prediction:
        return batched_cfg(model, [x_t], [cond], uncond, scale, t)[0]

    return estimate
