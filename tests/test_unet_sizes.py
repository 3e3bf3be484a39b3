"""The course UNet at other sizes and channel counts (issue 40): output shape = input shape, bad sizes refused."""

from __future__ import annotations

import pytest
import torch

from diffusionlab.errors import DiffusionLabError
from diffusionlab.networks.unet import UNet, UNetConfig


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (16, 1), (8, 3)])
def test_unet_keeps_shape(size: int, channels: int) -> None:
    net = UNet(UNetConfig(8, channels, True, 3, image_size=size)).eval()
    x = torch.randn(2, channels, size, size)
    c = torch.eye(3)[:2]
    assert net(x, torch.tensor([0.1, 0.9]), c).shape == x.shape
    assert net.unflatten[0].kernel_size == (size // 4, size // 4)


def test_bottleneck_follows_image_size() -> None:
    # the only weights whose shape depends on the size: Unflatten's k x k transposed convolution
    a = UNet(UNetConfig(8, image_size=28)).state_dict()
    b = UNet(UNetConfig(8, image_size=32)).state_dict()
    differ = sorted(k for k in a if a[k].shape != b[k].shape)
    assert differ == ["unflatten.0.weight"]


@pytest.mark.parametrize("size", [30, 2, 0, -4])
def test_size_not_a_multiple_of_4_is_refused(size: int) -> None:
    with pytest.raises(DiffusionLabError, match=f"image_size must be a positive multiple of 4.*got {size}"):
        UNet(UNetConfig(8, image_size=size))


def test_wrong_input_size_is_one_line() -> None:
    net = UNet(UNetConfig(8, 3, image_size=32))
    with pytest.raises(DiffusionLabError, match=r"takes images \(N, 3, 32, 32\), got \(1, 1, 28, 28\)"):
        net(torch.randn(1, 1, 28, 28))


def test_config_without_image_size_is_28_px() -> None:
    old = {"hidden": 64, "in_channels": 1, "time_conditioned": True, "num_classes": 10, "time_mode": "add"}
    assert UNetConfig.from_dict(old).image_size == 28
    assert UNetConfig.from_dict(UNetConfig(8, 3, image_size=32).to_dict()) == UNetConfig(8, 3, image_size=32)
