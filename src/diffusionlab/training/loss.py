"""The training loss: one pure function of a batch (and a generator) for every kind and objective.

B1 denoiser: || D(x + sigma eps) - x ||^2 (or D(eps) with pure noise); B2 DDPM: || eps - net(x_t, (t + 1) / T, c) ||^2;
B3 flow matching: || (x - x0) - net((1 - t) x0 + t x, t, c) ||^2. Class models see one-hot labels, each dropped to
zero with probability p_uncond, so that they also learn the unconditional branch classifier-free guidance needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from diffusionlab.distributed import sharded_mse
from diffusionlab.schedule import NoiseSchedule, add_noise
from diffusionlab.training.batches import WHOLE, Shard
from diffusionlab.training.config import TrainConfig


@dataclass(frozen=True)
class CallMode:
    """How the network is called: the fast path's bf16 autocast and channels_last input, or plain fp32."""

    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False


PLAIN = CallMode()


def one_hot_dropped(
    labels: Tensor, num_classes: int, p_uncond: float, generator: torch.Generator, shard: Shard = WHOLE
) -> Tensor:
    """One-hot class vectors, each set to zero with probability p_uncond (so the model learns the uncond branch).
    The draw is made for the whole global batch (`shard`) and sliced to this rank's rows."""
    n = shard.size(labels.shape[0])
    keep = torch.rand(n, generator=generator, device=generator.device).to(labels.device)[shard.sel] >= p_uncond
    c = F.one_hot(labels, num_classes).float()
    return c * keep[:, None].to(c.dtype)


_ABAR_TABLES: dict = {}


def _abar_table(schedule: NoiseSchedule, device: torch.device, dtype: torch.dtype) -> Tensor:
    """schedule.abar's table (abar_t for t = 0..T-1, then 1) on the device, copied there once."""
    key = (id(schedule), str(device), dtype)
    hit = _ABAR_TABLES.get(key)
    if hit is None or hit[0] is not schedule:
        table = torch.cat([schedule.alphas_cumprod, torch.ones(1)]).to(device, dtype)
        hit = _ABAR_TABLES[key] = (schedule, table)
    return hit[1]


def _noised(x: Tensor, t: Tensor, eps: Tensor, schedule: NoiseSchedule) -> Tensor:
    if x.device.type == "cpu":
        return add_noise(x, t, eps, schedule)
    # the same formula with abar kept on the device: no CPU indexing, no host round trip per step
    abar = _abar_table(schedule, x.device, x.dtype)[t].reshape(-1, 1, 1, 1)
    return abar.sqrt() * x + (1 - abar).sqrt() * eps


def _forward(net, mode: CallMode, x: Tensor, *cond) -> Tensor:
    inp = x.contiguous(memory_format=torch.channels_last) if mode.channels_last else x
    dtype = mode.autocast_dtype or torch.bfloat16
    with torch.autocast(x.device.type, dtype=dtype, enabled=mode.autocast_dtype is not None):
        out = net(inp, *cond)
    return out.float()  # the loss is taken in fp32


def training_loss(
    net,
    x: Tensor,
    labels: Tensor,
    config: TrainConfig,
    schedule: NoiseSchedule | None,
    generator: torch.Generator,
    *,
    shard: Shard = WHOLE,
    mode: CallMode = PLAIN,
) -> Tensor:
    """The L2 loss of one batch for the run's kind and objective. All randomness comes from `generator`.

    Multi-process (shard): x and labels are this rank's rows of the global batch and the loss is this rank's share
    of the global mean (DDP averages the gradients)."""
    n, dev = shard.size(x.shape[0]), x.device

    def draw(fn, *shape) -> Tensor:  # for the whole global batch (the same on every rank), then this rank's rows
        return fn(shape, generator=generator, device=generator.device).to(dev)[shard.sel]

    def mse(pred: Tensor, target: Tensor) -> Tensor:
        return sharded_mse(pred, target, n, shard.ctx) if shard.ctx.enabled else F.mse_loss(pred, target)

    if config.hflip:  # augmentation: each image mirrored left-right with probability 1/2
        x = torch.where(draw(torch.rand, n)[:, None, None, None] < 0.5, x.flip(-1), x)
    if config.kind == "denoiser":  # z = x + sigma eps; pure noise: z = eps (no trace of x)
        noise = draw(torch.randn, n, *x.shape[1:])
        z = noise if config.pure_noise else x + config.sigma * noise
        return mse(_forward(net, mode, z), x)
    c = (
        one_hot_dropped(labels, config.num_classes, config.p_uncond, generator, shard)
        if config.kind == "class"
        else None
    )
    if config.objective == "ddpm":  # t ~ U{0..T-1} (the course's 1..T)
        t = draw(partial(torch.randint, 0, config.num_steps), n)
        eps = draw(torch.randn, n, *x.shape[1:])
        x_t = _noised(x, t, eps, schedule)
        return mse(_forward(net, mode, x_t, (t.float() + 1) / config.num_steps, c), eps)
    x0 = draw(torch.randn, n, *x.shape[1:])  # flow: x0 noise, x1 = x data, predict u = x1 - x0
    t = draw(torch.rand, n)
    x_t = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * x
    return mse(_forward(net, mode, x_t, t, c), x - x0)
