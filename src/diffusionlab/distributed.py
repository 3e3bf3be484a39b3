"""Multi-process training and sampling on PyTorch's own engine (torch.distributed).

`torchrun --nproc_per_node N -m diffusionlab train ...` starts N processes; each reads its rank from the
environment (RANK, WORLD_SIZE, LOCAL_RANK) and `init_from_env` joins the process group: nccl on CUDA (one GPU per
process, cuda:LOCAL_RANK), gloo on CPU. The trainer then wraps the UNet in DistributedDataParallel and every rank
takes a disjoint slice of each global batch (`shard_rows`); checkpoints, logs and figures come from rank 0 only.

BatchNorm: DDP with plain BatchNorm normalises with each rank's own batch statistics, so N ranks would not train the
same model as one process. `sync_batchnorm` makes the statistics global: torch's SyncBatchNorm on CUDA (it refuses CPU
tensors), and `GlobalBatchNorm2d` below on CPU (two differentiable all-reduces per layer). With it, N ranks over the
same global batches give one process's weights up to floating-point summation order (tests/test_distributed.py).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from diffusionlab.environment import local_rank, torchrun_ranks


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank r of world_size processes (world_size 1 = no torch.distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistContext()


def launched_by_torchrun() -> bool:
    return torchrun_ranks() is not None


def init_from_env(device: torch.device | None = None) -> tuple[DistContext, torch.device | None]:
    """Join the process group torchrun set up (if any). Returns the context and the device this rank should use:
    on CUDA, cuda:LOCAL_RANK (when the asked device is CUDA); otherwise the asked device unchanged. The variables
    are checked first (environment.torchrun_ranks): a half-set environment ends in one line."""
    ranks = torchrun_ranks()
    if ranks is None:
        return SINGLE, device
    ctx = DistContext(*ranks)
    if device is not None and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        _joined["group"] = True
    return ctx, device


_joined = {"group": False}  # this process joined a torchrun process group (init_from_env)


def end_rank_process(code: object) -> None:
    """A torchrun rank's process ends here, skipping the interpreter's finalization: a rank that has trained under
    gloo can abort while Python tears down ("terminate called without an active exception", SIGABRT/SIGSEGV with
    no Python frame: 2 of ~200 two-rank bf16 runs on a Zen 5 EPYC, once in CI), after all its work is written.
    multiprocessing's workers end the same way (os._exit after flushing). A plain process returns untouched."""
    if not _joined["group"]:
        return
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code or 0)


def current() -> DistContext:
    """The context of an already initialised process group (SINGLE when there is none)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return DistContext(dist.get_rank(), dist.get_world_size(), local_rank())
    return SINGLE


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shard_rows(n: int, ctx: DistContext) -> slice:
    """Rank r's contiguous slice of a global batch of n rows (sizes differ by at most one)."""
    base, extra = divmod(n, ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return slice(start, start + base + (1 if ctx.rank < extra else 0))


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch over all ranks (any backend, CPU too).

    Same parameters and buffers as nn.BatchNorm2d (checkpoints are unchanged). Mean and variance are computed in two
    passes, each one all-reduce (sum) through torch.distributed.nn, whose backward all-reduces the gradient, so the
    gradients are those of the single-process batch norm over the whole global batch.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = (0, 2, 3)
        in_dtype = x.dtype
        x = x.float()  # statistics in fp32 also under bf16 autocast
        count = torch.tensor([float(x.numel() // x.shape[1])], device=x.device, dtype=x.dtype)
        packed = all_reduce(torch.cat([x.sum(dims), count]))
        total = packed[-1]
        mean = packed[:-1] / total
        centred = x - mean[None, :, None, None]
        var = all_reduce((centred * centred).sum(dims)) / total  # biased, as batch norm normalises
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * (total / (total - 1).clamp(min=1))
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        return y.to(in_dtype)


def sync_batchnorm(net: nn.Module, device: torch.device) -> nn.Module:
    """Make every BatchNorm of net use global-batch statistics (in place; state_dict keys unchanged)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    for module in net.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = GlobalBatchNorm2d
    return net


def plain_batchnorm(net: nn.Module) -> nn.Module:
    """Undo `sync_batchnorm`'s CPU conversion (the weights are the same modules)."""
    for module in net.modules():
        if type(module) is GlobalBatchNorm2d:
            module.__class__ = nn.BatchNorm2d
    return net


def wrap_ddp(net: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel over net (whose BatchNorms should be `sync_batchnorm`ed first)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # buffers (running statistics) are identical on every rank with global statistics: no need to broadcast them
    return DistributedDataParallel(net, device_ids=ids, broadcast_buffers=False)


def all_reduce_mean(values: Tensor, ctx: DistContext) -> Tensor:
    """Mean over ranks of a tensor (for logging; one collective)."""
    if not ctx.enabled:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / ctx.world_size


def sharded_mse(pred: Tensor, target: Tensor, n_global: int, ctx: DistContext) -> Tensor:
    """This rank's part of the global-batch mean squared error, scaled so that DDP's gradient averaging over ranks
    gives the gradient of the mean over the whole global batch (also with unequal shards)."""
    if not ctx.enabled:
        return F.mse_loss(pred, target)
    per_row = pred[0].numel() if len(pred) else 1
    return F.mse_loss(pred, target, reduction="sum") * (ctx.world_size / (n_global * per_row))


def gather_to_main(x: Tensor, ctx: DistContext) -> Tensor | None:
    """Concatenate every rank's tensor (any first-dimension sizes) on rank 0, in rank order; None elsewhere."""
    if not ctx.enabled:
        return x
    parts: list = [None] * ctx.world_size
    dist.all_gather_object(parts, x.detach().cpu())
    return torch.cat(parts) if ctx.is_main else None


def destroy(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def sharded_generate(
    model,
    prompts: list[str] | None,
    n_per_prompt: int,
    scale: float,
    seed: int,
    ctx: DistContext,
    frames: list[Tensor] | None = None,
    **kwargs,
) -> Tensor | None:
    """`sampling.generate` with the images split across the ranks: rank r samples a contiguous share of the
    (prompt, image) list with the seed seed + 1_000_003 r; rank 0 gets every image in order (None elsewhere), and
    `frames` (rank 0) the gathered GIF frames."""
    from diffusionlab.sampling import generate

    per_image = [p for p in prompts for _ in range(n_per_prompt)] if prompts else None
    total = len(per_image) if per_image else n_per_prompt
    rows = shard_rows(total, ctx)
    count = rows.stop - rows.start
    local_frames: list[Tensor] | None = [] if frames is not None else None
    if count:
        x = generate(
            model,
            per_image[rows] if per_image else None,
            1 if per_image else count,
            scale,
            seed + 1_000_003 * ctx.rank,
            frames=local_frames,
            progress=ctx.is_main,
            **kwargs,
        )
    else:
        x = torch.empty(0, *model.image_shape)
    x = x.detach().cpu()
    if not ctx.enabled:
        if frames is not None:
            frames.extend(local_frames or [])
        return x
    parts: list = [None] * ctx.world_size
    dist.all_gather_object(parts, (x, local_frames))
    if not ctx.is_main:
        return None
    if frames is not None:
        lists = [f for _, f in parts if f]
        frames.extend(torch.cat(step) for step in zip(*lists, strict=True))
    return torch.cat([p for p, _ in parts])
