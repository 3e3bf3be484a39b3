"""Every shipped model gives the same output as before the UNet learned other sizes and channels (issue 40).

The numbers are the sum, absolute sum and squared sum of each network's output on one fixed-seed input, computed
at commit 1be5014 (before the change) with one thread; the weights load strictly, so their names and shapes are
unchanged too."""

from __future__ import annotations

import pytest
import torch

from diffusionlab.backends import shipped_weights_dir
from diffusionlab.course_model import CourseModel

BEFORE = {
    "fashion-mnist-class.epoch1.safetensors": (-106.937338, 1826.332480, 3486.676324),
    "fashion-mnist-class.epoch5.safetensors": (-78.422177, 1840.535125, 3528.667707),
    "fashion-mnist-class.safetensors": (-135.536428, 1922.580772, 3940.601231),
    "mnist-class.epoch1.safetensors": (-118.001888, 3383.498442, 14548.181626),
    "mnist-class.epoch5.safetensors": (-81.476602, 1882.338484, 3708.531554),
    "mnist-class.safetensors": (-150.925774, 1947.905223, 4055.276573),
    "mnist-denoiser-pure-noise.epoch1.safetensors": (212.223574, 223.172173, 75.017184),
    "mnist-denoiser-pure-noise.safetensors": (208.980380, 211.677260, 72.096972),
    "mnist-denoiser.epoch1.safetensors": (287.696385, 300.677750, 128.488559),
    "mnist-denoiser.safetensors": (164.063851, 179.490355, 71.158112),
    "mnist-flow.epoch1.safetensors": (397.318204, 1994.558724, 4116.568615),
    "mnist-flow.epoch5.safetensors": (349.087090, 2210.068895, 5135.225852),
    "mnist-flow.safetensors": (247.287077, 2470.735488, 6494.990246),
    "mnist-time-flow.epoch1.safetensors": (256.897816, 1821.641668, 3440.777416),
    "mnist-time-flow.epoch5.safetensors": (308.795464, 2146.978724, 5004.087864),
    "mnist-time-flow.safetensors": (334.996092, 2117.740335, 4899.011161),
    "mnist-time.epoch5.safetensors": (-111.738743, 1935.281405, 3925.066387),
    "mnist-time.safetensors": (-109.886819, 1860.902050, 3656.150120),
}


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_shipped_model_output_unchanged(name: str) -> None:
    path = shipped_weights_dir() / name
    if not path.is_file():
        pytest.skip(f"{name} is not in this install")
    m = CourseModel.from_checkpoint(path)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 28, 28, generator=g)
    cfg = m.net.config
    t = torch.tensor([0.3, 0.7]) if cfg.time_conditioned else None
    c = torch.nn.functional.one_hot(torch.tensor([3, 7]), cfg.num_classes).float() if cfg.num_classes else None
    with torch.no_grad():
        y = m.net(x, t, c).double()
    got = (y.sum().item(), y.abs().sum().item(), (y * y).sum().item())
    assert got == pytest.approx(BEFORE[name], rel=1e-5, abs=1e-3)
    assert m.image_shape == (1, 28, 28)
