"""Exponential moving average of a network's weights (the weights that sampling, figures and shipping use).

Plain functions over a state dict: `ema_init` copies the floating-point entries (parameters and BatchNorm
running statistics), `ema_update` moves them towards the network's after each optimizer step. The decay warms up
as min(decay, (1 + step) / (10 + step)), so the average is not dominated by the random initial weights early on.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def ema_decay_at(decay: float, step: int) -> float:
    """The decay used after optimizer step `step` (1-based): warmed up, never above `decay`."""
    return min(decay, (1 + step) / (10 + step))


def ema_init(net: nn.Module) -> dict[str, Tensor]:
    """A float32 copy of the network's floating-point state (integer counters are taken from the net at save)."""
    return {k: v.detach().float().clone() for k, v in net.state_dict().items() if v.is_floating_point()}


@torch.no_grad()
def ema_update(ema: dict[str, Tensor], net: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * net, for every floating-point entry, in one foreach call."""
    state = net.state_dict()
    names = list(ema)
    torch._foreach_lerp_([ema[k] for k in names], [state[k].detach().float() for k in names], 1.0 - decay)


def ema_state_dict(ema: dict[str, Tensor], net: nn.Module) -> dict[str, Tensor]:
    """The network's state dict with the averaged entries in place of its own (same keys, same dtypes)."""
    return {k: (ema[k].to(v.dtype) if k in ema else v.detach().clone()) for k, v in net.state_dict().items()}
