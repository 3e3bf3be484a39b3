"""Image views for visual anagrams: invertible transforms of (N, C, H, W) tensors.

Every view is a *linear map L on the centred signal*, L = sign * P with P a pixel permutation (a flip, a
rotation, a permutation of patches or pixels) and sign = -1 only for `negate`. With c the centre of the model's
value range, (lo + hi) / 2:

- an image goes through `apply(x) = L(x - c) + c` (so `negate` is lo + hi - x, a rotation is just a rotation);
- noise (eps, or anything centred) goes through `apply_noise(e) = L(e)` (so `negate` gives -eps);
- a noisy image x_t = sqrt(abar) x0 + sqrt(1 - abar) eps is centred on sqrt(abar) c, hence
  `apply_noisy(x_t, abar) = L(x_t - sqrt(abar) c) + sqrt(abar) c`: the view of x_t is exactly the noisy view of x0
  with the viewed noise. For [-1, 1] models (IF) c = 0 and all three are the same map;
- per-pixel values that are not signals (IF's variance interpolation v) only move: `apply_spatial` = P.

All inverses are exact (permutations move values, negation is its own inverse in floating point).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from diffusionlab.errors import DiffusionLabError

VIEW_NAMES = (
    "rot180",
    "flip",
    "hflip",
    "rot90",
    "rot270",
    "negate",
    "patch-permute",
    "pixel-permute",
    "inner-circle",
    "identity",
)

VIEW_HELP = {
    "rot180": "rotate by 180 degrees (the course's 'flip', the default)",
    "flip": "upside down (vertical flip; the 'flip' of Visual Anagrams)",
    "hflip": "mirror left-right",
    "rot90": "rotate 90 degrees counter-clockwise (square images)",
    "rot270": "rotate 90 degrees clockwise (square images)",
    "negate": "negative image: lo + hi - x",
    "patch-permute": "shuffle an N x N grid of patches (patch-permute:N, default N=4; seeded)",
    "pixel-permute": "shuffle all pixels (seeded)",
    "inner-circle": "rotate the inner disc by 180 degrees",
    "identity": "the image itself",
}

Fn = Callable[[Tensor], Tensor]


def _same(x: Tensor) -> Tensor:
    return x


@dataclass(frozen=True)
class View:
    """An invertible view. `forward`/`backward` are the spatial permutation P and its inverse."""

    name: str
    forward: Fn = field(repr=False)
    backward: Fn = field(repr=False)
    sign: float = 1.0
    center: float = 0.5

    # images in the model's value range
    def apply(self, x: Tensor) -> Tensor:
        return self.apply_noisy(x, 1.0)

    def inverse(self, x: Tensor) -> Tensor:
        return self.inverse_noisy(x, 1.0)

    # centred signals (noise estimates)
    def apply_noise(self, e: Tensor) -> Tensor:
        y = self.forward(e)
        return -y if self.sign < 0 else y

    def inverse_noise(self, e: Tensor) -> Tensor:
        y = self.backward(e)
        return -y if self.sign < 0 else y

    # noisy images x_t, centred on sqrt(abar_t) * center
    def apply_noisy(self, x_t: Tensor, abar: float | Tensor) -> Tensor:
        if self.sign > 0:
            return self.forward(x_t)
        offset = 2 * math.sqrt(float(abar)) * self.center
        return offset - self.forward(x_t)

    def inverse_noisy(self, x_t: Tensor, abar: float | Tensor) -> Tensor:
        if self.sign > 0:
            return self.backward(x_t)
        offset = 2 * math.sqrt(float(abar)) * self.center
        return self.backward(offset - x_t)

    # per-pixel values that only move (learned variance)
    def apply_spatial(self, v: Tensor) -> Tensor:
        return self.forward(v)

    def inverse_spatial(self, v: Tensor) -> Tensor:
        return self.backward(v)


def _flat_permutation(perm: Tensor, h: int, w: int) -> tuple[Fn, Fn]:
    """A permutation of the H*W pixel positions (the same for every channel) and its inverse."""
    inv = torch.argsort(perm)

    def fwd(x: Tensor) -> Tensor:
        return x.flatten(-2)[..., perm.to(x.device)].reshape(x.shape)

    def bwd(x: Tensor) -> Tensor:
        return x.flatten(-2)[..., inv.to(x.device)].reshape(x.shape)

    return fwd, bwd


def _patch_permutation(h: int, w: int, grid: int, seed: int) -> Tensor:
    if grid < 1 or h % grid or w % grid:
        raise DiffusionLabError(
            f"view patch-permute:{grid} does not fit {h}x{w} images: the grid must divide both sides "
            f"(try patch-permute:{next(g for g in (4, 2, 7, 1) if h % g == 0 and w % g == 0)})"
        )
    ph, pw = h // grid, w // grid
    order = torch.randperm(grid * grid, generator=torch.Generator().manual_seed(seed))
    idx = torch.arange(h * w).reshape(grid, ph, grid, pw).permute(0, 2, 1, 3).reshape(grid * grid, ph, pw)
    # output patch k shows input patch order[k]
    out = idx[order].reshape(grid, grid, ph, pw).permute(0, 2, 1, 3).reshape(h * w)
    return out


def _inner_circle_permutation(h: int, w: int, radius: float) -> Tensor:
    """Pixels within `radius` of the centre go to their 180-degree-rotated position; the rest stay."""
    rows = torch.arange(h, dtype=torch.float64).view(-1, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.float64).view(1, -1).expand(h, w)
    inside = ((rows - (h - 1) / 2) ** 2 + (cols - (w - 1) / 2) ** 2) <= radius**2
    idx = torch.arange(h * w).reshape(h, w)
    rotated = idx.flip(0, 1)
    return torch.where(inside, rotated, idx).reshape(h * w)


def get_view(
    name: str,
    image_shape: tuple[int, int, int],
    value_range: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
) -> View:
    """A view by name (see VIEW_NAMES; `patch-permute:N` picks the grid) for images of image_shape (C, H, W)."""
    _, h, w = image_shape
    base, _, arg = name.partition(":")
    center = (float(value_range[0]) + float(value_range[1])) / 2
    if arg and base != "patch-permute":
        raise DiffusionLabError(f"view {name!r}: only patch-permute takes an argument (patch-permute:N)")
    if base == "identity":
        return View(name, _same, _same, 1.0, center)
    if base == "rot180":
        return View(name, lambda x: x.flip(-2, -1), lambda x: x.flip(-2, -1), 1.0, center)
    if base == "flip":
        return View(name, lambda x: x.flip(-2), lambda x: x.flip(-2), 1.0, center)
    if base == "hflip":
        return View(name, lambda x: x.flip(-1), lambda x: x.flip(-1), 1.0, center)
    if base in ("rot90", "rot270"):
        if h != w:
            raise DiffusionLabError(f"view {name} needs square images, these are {h}x{w}; use rot180 or a flip")
        k = 1 if base == "rot90" else -1
        return View(
            name, lambda x: torch.rot90(x, k, dims=(-2, -1)), lambda x: torch.rot90(x, -k, dims=(-2, -1)), 1.0, center
        )
    if base == "negate":
        return View(name, _same, _same, -1.0, center)
    if base == "patch-permute":
        try:
            grid = int(arg) if arg else 4
        except ValueError:
            raise DiffusionLabError(f"view {name!r}: the grid size after ':' must be an integer") from None
        fwd, bwd = _flat_permutation(_patch_permutation(h, w, grid, seed), h, w)
        return View(name, fwd, bwd, 1.0, center)
    if base == "pixel-permute":
        perm = torch.randperm(h * w, generator=torch.Generator().manual_seed(seed))
        fwd, bwd = _flat_permutation(perm, h, w)
        return View(name, fwd, bwd, 1.0, center)
    if base == "inner-circle":
        fwd, bwd = _flat_permutation(_inner_circle_permutation(h, w, 0.3 * min(h, w)), h, w)
        return View(name, fwd, bwd, 1.0, center)
    raise DiffusionLabError(f"unknown view {name!r}; choose one of {', '.join(VIEW_NAMES)}")


def check_view_name(name: str) -> str:
    """A view's name is known (its fit to an image size is checked by get_view); returns it."""
    if name.partition(":")[0] not in VIEW_NAMES:
        raise DiffusionLabError(f"unknown view {name!r}; choose one of {', '.join(VIEW_NAMES)}")
    return name
