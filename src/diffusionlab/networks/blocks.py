"""The course UNet's building blocks (SPEC.md Part B). D is the hidden width."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _norm_act(conv: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(channels), nn.GELU())


class Conv(nn.Sequential):
    """Conv2d 3x3 stride 1 pad 1, BatchNorm, GELU: keeps the resolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(*_norm_act(nn.Conv2d(in_channels, out_channels, 3, 1, 1), out_channels))


class DownConv(nn.Sequential):
    """Conv2d 3x3 stride 2 pad 1, BatchNorm, GELU: halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(*_norm_act(nn.Conv2d(in_channels, out_channels, 3, 2, 1), out_channels))


class UpConv(nn.Sequential):
    """ConvTranspose2d 4x4 stride 2 pad 1, BatchNorm, GELU: doubles the resolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(*_norm_act(nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1), out_channels))


class Flatten(nn.Sequential):
    """AvgPool2d(k), GELU: k x k -> 1x1, where k is the bottleneck's size (7 at 28 px, the course's)."""

    def __init__(self, size: int = 7) -> None:
        super().__init__(nn.AvgPool2d(size), nn.GELU())


class Unflatten(nn.Sequential):
    """ConvTranspose2d k x k stride k, BatchNorm, GELU: 1x1 -> k x k (7 at 28 px, the course's)."""

    def __init__(self, channels: int, size: int = 7) -> None:
        super().__init__(*_norm_act(nn.ConvTranspose2d(channels, channels, size, size, 0), channels))


class ConvBlock(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(Conv(in_channels, out_channels), Conv(out_channels, out_channels))


class DownBlock(nn.Sequential):
    """DownConv then a ConvBlock (two Convs), as the course notebook builds it: this is what gives the
    course's parameter counts (1.975 M at D = 64), where a single Conv would give 1.716 M."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(DownConv(in_channels, out_channels), ConvBlock(out_channels, out_channels))


class UpBlock(nn.Sequential):
    """UpConv then a ConvBlock, as DownBlock."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(UpConv(in_channels, out_channels), ConvBlock(out_channels, out_channels))


class FCBlock(nn.Sequential):
    """Linear, GELU, Linear: embeds t (1 value) or a one-hot class vector."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(nn.Linear(in_features, out_features), nn.GELU(), nn.Linear(out_features, out_features))


def concat(*tensors: Tensor) -> Tensor:
    return torch.cat(tensors, dim=1)
