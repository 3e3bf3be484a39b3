import pytest
import torch

from diffusionlab.networks.unet import UNet, UNetConfig, count_parameters


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (UNetConfig(64), 1_975_361),  # SPEC: about 1.975 M unconditional at D = 64
        (UNetConfig(128), 7_891_073),  # 7.891 M at D = 128 (the denoiser)
        (UNetConfig(64, time_conditioned=True, num_classes=10), 2_019_201),  # 2.019 M class-conditioned
        (
            UNetConfig(64, time_conditioned=True),
            1_975_361 + (256 + 16_512) + (128 + 4_160),
        ),  # + FCBlock(1->2D), FCBlock(1->D)
    ],
)
def test_parameter_counts(config, expected):
    assert count_parameters(UNet(config)) == expected


@pytest.mark.parametrize("time_mode", ["add", "mul"])
def test_shapes_and_conditioning_paths(time_mode):
    torch.manual_seed(0)
    net = UNet(UNetConfig(8, time_conditioned=True, num_classes=10 if time_mode == "add" else 0, time_mode=time_mode))
    net.eval()
    x = torch.randn(3, 1, 28, 28)
    c = torch.eye(10)[:3] if time_mode == "add" else None
    y1 = net(x, torch.tensor([0.1, 0.5, 0.9]), c)
    y2 = net(x, torch.tensor([0.9, 0.5, 0.1]), c)
    assert y1.shape == x.shape
    assert torch.allclose(y1[1], y2[1]) and not torch.allclose(y1[0], y2[0])  # t changes the output per sample


def test_flow_time_model_is_multiplicative():
    """The course's flow time model multiplies by the t embedding: if t1 and t2 output zero, so does the conditioning."""
    net = UNet(UNetConfig(8, time_conditioned=True, time_mode="mul")).eval()
    for fc in (net.t1, net.t2):
        torch.nn.init.zeros_(fc[2].weight)
        torch.nn.init.zeros_(fc[2].bias)
    x = torch.randn(2, 1, 28, 28)
    a, b = net(x, torch.tensor([0.2, 0.2])), net(x * 0 + x, torch.tensor([0.7, 0.7]))
    assert torch.allclose(a, b)  # u0 and u1 are zeroed whatever t


def test_class_vector_zero_is_unconditional_branch():
    net = UNet(UNetConfig(8, time_conditioned=True, num_classes=10)).eval()
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([0.3, 0.3])
    out_zero = net(x, t, torch.zeros(2, 10))
    out_one = net(x, t, torch.eye(10)[:2])
    assert not torch.allclose(out_zero, out_one)
