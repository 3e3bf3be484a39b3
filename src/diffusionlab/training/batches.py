"""Batch drawing. The split lives on the device as one uint8 tensor; each epoch is a seeded permutation of it and
batch i is the i-th slice of that permutation (so a run resumed mid-epoch draws the same batches)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from diffusionlab.data import to_float
from diffusionlab.distributed import SINGLE, DistContext, shard_rows
from diffusionlab.training.config import TrainConfig


@dataclass(frozen=True)
class Shard:
    """This process's rows of a global batch of n_global rows (multi-process); the default is the whole batch.

    Random draws are made for all n_global rows and sliced to `rows`, so every rank sees what one process would."""

    rows: slice | None = None
    n_global: int | None = None
    ctx: DistContext = SINGLE

    def size(self, n_local: int) -> int:
        return self.n_global if self.n_global is not None else n_local

    @property
    def sel(self) -> slice:
        return self.rows if self.rows is not None else slice(None)


WHOLE = Shard()


def steps_of(n_images: int, config: TrainConfig) -> tuple[int, int]:
    """(batches per epoch, total steps of the run): the last batch of an epoch may be short; max_steps caps."""
    per_epoch = math.ceil(n_images / config.batch_size)
    total = config.epochs * per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    return per_epoch, total


def new_permutation(n_images: int, generator: torch.Generator) -> Tensor:
    """An epoch's order; drawn from the run's CPU generator, so it is part of the resume state."""
    return torch.randperm(n_images, generator=generator)


def draw_batch(
    images: Tensor, labels: Tensor, perm: Tensor, index: int, config: TrainConfig, ctx: DistContext = SINGLE
) -> tuple[Tensor, Tensor, Shard]:
    """Batch `index` of the epoch: this rank's float images and labels, and where they sit in the global batch."""
    idx = perm[index * config.batch_size : (index + 1) * config.batch_size]
    n_global = idx.shape[0]
    rows = None
    if ctx.enabled:  # this rank's disjoint slice of the global batch
        rows = shard_rows(n_global, ctx)
        idx = idx[rows]
    return to_float(images[idx], config.value_range), labels[idx], Shard(rows, n_global, ctx)
