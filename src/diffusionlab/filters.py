"""Gaussian blur with torch only (depthwise conv2d, reflect padding), as torchvision's gaussian_blur does.

Used for classical denoising (A1.2) and for the low/high-pass split of hybrid images (A1.9).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from diffusionlab.errors import DiffusionLabError

# How far "from afar" is (the far view, evaluation.metrics.far_view, and a hybrid's far low-pass): the shipped
# MNIST classifier reads the first 100 real test digits 100 % right as they are, 90 % right average-pooled by 2
# (14 x 14) and 5 % right pooled by 4 (7 x 7): at 4 no image, real or hybrid, can pass the far test
# (docs/illusions.md), so the far view pools by 2.
FAR_FACTOR = 2
REFERENCE_SIZE = 64  # the course's kernel sizes and sigmas are for 64 px images (DeepFloyd IF stage I)


def scaled_blur(image_size: int, kernel_at_64: int = 33, sigma_at_64: float = 2.0) -> tuple[int, float]:
    """The one scaling rule for blur parameters given at 64 px: both scale with the image size.

    kernel = the nearest odd integer >= 3 to kernel_at_64 * size / 64 (rounding up from an even one),
    sigma = sigma_at_64 * size / 64. The hybrid default (33, 2) becomes (33, 2.0) at 64 px, (15, 0.875) at 28 px.
    """
    f = image_size / REFERENCE_SIZE
    k = max(3, int(round(kernel_at_64 * f)))
    if k % 2 == 0:
        k += 1
    return k, sigma_at_64 * f


def gaussian_kernel1d(kernel_size: int, sigma: float, dtype=torch.float32, device=None) -> Tensor:
    half = (kernel_size - 1) / 2
    x = torch.linspace(-half, half, kernel_size, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(device=device, dtype=dtype)


def check_blur(kernel_size: int, sigma: float, height: int, width: int) -> None:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise DiffusionLabError(f"blur kernel size must be a positive odd integer, got {kernel_size}")
    if not sigma > 0:
        raise DiffusionLabError(f"blur sigma must be positive, got {sigma}")
    if kernel_size // 2 >= min(height, width):
        raise DiffusionLabError(
            f"blur kernel {kernel_size} is too large for {height}x{width} images (at most {2 * min(height, width) - 1})"
        )


def gaussian_blur(x: Tensor, kernel_size: int, sigma: float) -> Tensor:
    """Separable Gaussian blur of (N, C, H, W), each channel on its own, reflect padding at the borders."""
    n, c, h, w = x.shape
    check_blur(kernel_size, sigma, h, w)
    k = gaussian_kernel1d(kernel_size, sigma, x.dtype, x.device)
    pad = kernel_size // 2
    y = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, kernel_size), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, kernel_size, 1), groups=c)


def lowpass(x: Tensor, kernel_size: int, sigma: float) -> Tensor:
    return gaussian_blur(x, kernel_size, sigma)


def highpass(x: Tensor, kernel_size: int, sigma: float) -> Tensor:
    """x - lowpass(x): lowpass + highpass of the same x gives x back."""
    return x - gaussian_blur(x, kernel_size, sigma)


def pooled_lowpass(x: Tensor, factor: int = FAR_FACTOR) -> Tensor:
    """What an image keeps at 1/factor of its size: average-pooled by `factor` (ceil), upsampled back bilinearly
    (evaluation.metrics.far_view, the far reading of a hybrid)."""
    if factor < 1:
        raise DiffusionLabError(f"the pooling factor must be at least 1, got {factor}")
    h, w = x.shape[-2:]
    return F.interpolate(F.avg_pool2d(x, factor, ceil_mode=True), size=(h, w), mode="bilinear", align_corners=False)
