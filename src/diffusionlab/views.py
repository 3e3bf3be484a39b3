"""Image views for visual anagrams: invertible transforms of (N, C, H, W) tensors, one table (VIEWS).

Every view is a *linear map L on the centred signal*, L = sign * P with P a pixel permutation (a flip, a
rotation, a permutation of patches or pixels) and sign = -1 only for `negate`. A view is built once per call for
one image size (and seed, for the permutations: `get_view`, `reading_views`); the value range is given where it
is applied. With c the centre of that range, (lo + hi) / 2:

- an image goes through `apply(x, value_range) = L(x - c) + c` (so `negate` is lo + hi - x, a rotation is just a
  rotation);
- noise (eps, or anything centred) goes through `apply_noise(e) = L(e)` (so `negate` gives -eps);
- a noisy image x_t = sqrt(abar) x0 + sqrt(1 - abar) eps is centred on sqrt(abar) c, hence
  `apply_noisy(x_t, abar, value_range) = L(x_t - sqrt(abar) c) + sqrt(abar) c`: the view of x_t is exactly the
  noisy view of x0 with the viewed noise. For [-1, 1] models (IF) c = 0 and all three are the same map;
- per-pixel values that are not signals (IF's variance interpolation v) only move: `apply_spatial` = P.

All inverses are exact (permutations move values, negation is its own inverse in floating point).

The views are one table, VIEWS (name -> ViewEntry: factory, one-line help): get_view, the name checks, the CLI's
--view help (view_help), the web UI's chooser and docs/illusions.md read it, so a new view is one entry there
(tests/test_view_table.py adds one and sees it everywhere).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch
from torch import Tensor

from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_protocol import generator_for

Fn = Callable[[Tensor], Tensor]
ValueRange = tuple[float, float]


def _same(x: Tensor) -> Tensor:
    return x


def _offset(abar: float | Tensor, value_range: ValueRange) -> float:
    """2 sqrt(abar) c: what a negation reflects a signal centred on sqrt(abar) c about."""
    return math.sqrt(float(abar)) * (float(value_range[0]) + float(value_range[1]))


@dataclass(frozen=True)
class View:
    """An invertible view of images of one size. `forward`/`backward` are the spatial permutation P and its
    inverse; the value range comes with each image it is applied to."""

    name: str
    forward: Fn = field(repr=False)
    backward: Fn = field(repr=False)
    sign: float = 1.0

    # images in value_range
    def apply(self, x: Tensor, value_range: ValueRange) -> Tensor:
        return self.apply_noisy(x, 1.0, value_range)

    def inverse(self, x: Tensor, value_range: ValueRange) -> Tensor:
        return self.inverse_noisy(x, 1.0, value_range)

    # centred signals (noise estimates)
    def apply_noise(self, e: Tensor) -> Tensor:
        y = self.forward(e)
        return -y if self.sign < 0 else y

    def inverse_noise(self, e: Tensor) -> Tensor:
        y = self.backward(e)
        return -y if self.sign < 0 else y

    # noisy images x_t of images in value_range, centred on sqrt(abar_t) * its centre
    def apply_noisy(self, x_t: Tensor, abar: float | Tensor, value_range: ValueRange) -> Tensor:
        if self.sign > 0:
            return self.forward(x_t)
        return _offset(abar, value_range) - self.forward(x_t)

    def inverse_noisy(self, x_t: Tensor, abar: float | Tensor, value_range: ValueRange) -> Tensor:
        if self.sign > 0:
            return self.backward(x_t)
        return self.backward(_offset(abar, value_range) - x_t)

    # per-pixel values that only move (learned variance)
    def apply_spatial(self, v: Tensor) -> Tensor:
        return self.forward(v)

    def inverse_spatial(self, v: Tensor) -> Tensor:
        return self.backward(v)


def _moves(forward: Fn, backward: Fn) -> View:
    return View("", forward, backward)


def _flat_permutation(perm: Tensor) -> View:
    """A permutation of the H*W pixel positions (the same for every channel) and its inverse."""
    inv = torch.argsort(perm)

    def fwd(x: Tensor) -> Tensor:
        return x.flatten(-2)[..., perm.to(x.device)].reshape(x.shape)

    def bwd(x: Tensor) -> Tensor:
        return x.flatten(-2)[..., inv.to(x.device)].reshape(x.shape)

    return _moves(fwd, bwd)


# -- the views' factories: (height, width, argument after ':', seed) -> the view's map --------------------------
def _identity(h: int, w: int, arg: str, seed: int) -> View:
    return _moves(_same, _same)


def _flip(*dims: int) -> Callable[[int, int, str, int], View]:
    def make(h: int, w: int, arg: str, seed: int) -> View:
        return _moves(lambda x: x.flip(*dims), lambda x: x.flip(*dims))

    return make


# A factory's DiffusionLabError is a predicate ("needs ...", "does not fit ..."); get_view puts "view NAME" first.
def _quarter_turn(k: int) -> Callable[[int, int, str, int], View]:
    def make(h: int, w: int, arg: str, seed: int) -> View:
        if h != w:
            raise DiffusionLabError(f"needs square images, these are {h}x{w}; use rot180 or a flip")
        return _moves(lambda x: torch.rot90(x, k, dims=(-2, -1)), lambda x: torch.rot90(x, -k, dims=(-2, -1)))

    return make


def _negate(h: int, w: int, arg: str, seed: int) -> View:
    return View("", _same, _same, -1.0)


def _patch_permute(h: int, w: int, arg: str, seed: int) -> View:
    try:
        grid = int(arg) if arg else 4
    except ValueError:
        raise DiffusionLabError("needs an integer grid size after ':'") from None
    if grid < 1 or h % grid or w % grid:
        raise DiffusionLabError(
            f"does not fit {h}x{w} images: the grid must divide both sides "
            f"(try patch-permute:{next(g for g in (4, 2, 7, 1) if h % g == 0 and w % g == 0)})"
        )
    ph, pw = h // grid, w // grid
    order = torch.randperm(grid * grid, generator=generator_for(seed))
    idx = torch.arange(h * w).reshape(grid, ph, grid, pw).permute(0, 2, 1, 3).reshape(grid * grid, ph, pw)
    # output patch k shows input patch order[k]
    return _flat_permutation(idx[order].reshape(grid, grid, ph, pw).permute(0, 2, 1, 3).reshape(h * w))


def _pixel_permute(h: int, w: int, arg: str, seed: int) -> View:
    return _flat_permutation(torch.randperm(h * w, generator=generator_for(seed)))


def _inner_circle(h: int, w: int, arg: str, seed: int) -> View:
    """Pixels within 0.3 min(h, w) of the centre go to their 180-degree-rotated position; the rest stay."""
    rows = torch.arange(h, dtype=torch.float64).view(-1, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.float64).view(1, -1).expand(h, w)
    inside = ((rows - (h - 1) / 2) ** 2 + (cols - (w - 1) / 2) ** 2) <= (0.3 * min(h, w)) ** 2
    idx = torch.arange(h * w).reshape(h, w)
    return _flat_permutation(torch.where(inside, idx.flip(0, 1), idx).reshape(h * w))


class ViewEntry(NamedTuple):
    """A view as the table (VIEWS) holds it: everything get_view, the checks and the front-ends ask."""

    make: Callable[[int, int, str, int], View]  # (height, width, argument, seed) -> its map (get_view names it)
    help: str  # one line: the CLI's --view help, the web UI's list of views
    argument: str = ""  # what may follow "name:" ("N": patch-permute:N); empty: none


# -- the table: adding a view is one entry here (tests/test_view_table.py adds one) --------------------------------
VIEWS: dict[str, ViewEntry] = {
    "rot180": ViewEntry(_flip(-2, -1), "rotate by 180 degrees (the course's 'flip', the default)"),
    "flip": ViewEntry(_flip(-2), "upside down (vertical flip; the 'flip' of Visual Anagrams)"),
    "hflip": ViewEntry(_flip(-1), "mirror left-right"),
    "rot90": ViewEntry(_quarter_turn(1), "rotate 90 degrees counter-clockwise (square images)"),
    "rot270": ViewEntry(_quarter_turn(-1), "rotate 90 degrees clockwise (square images)"),
    "negate": ViewEntry(_negate, "negative image: lo + hi - x"),
    "patch-permute": ViewEntry(_patch_permute, "shuffle an N x N grid of patches (default N=4; seeded)", "N"),
    "pixel-permute": ViewEntry(_pixel_permute, "shuffle all pixels (seeded)"),
    "inner-circle": ViewEntry(_inner_circle, "rotate the inner disc by 180 degrees"),
    "identity": ViewEntry(_identity, "the image itself"),
}


def _entry(name: str) -> tuple[ViewEntry, str]:
    """A view's table entry and its argument (after ':'), or one line naming the table's views."""
    base, colon, arg = name.partition(":")
    entry = VIEWS.get(base)
    if entry is None:
        raise DiffusionLabError(f"unknown view {name!r}; choose one of {', '.join(VIEWS)}")
    if colon and not entry.argument:
        with_args = ", ".join(f"{n}:{e.argument}" for n, e in VIEWS.items() if e.argument)
        raise DiffusionLabError(f"view {name!r} takes no argument after ':' (only {with_args or 'none'} do)")
    return entry, arg


def check_view_name(name: str) -> str:
    """A view's name is known (its fit to an image size is checked by get_view); returns it."""
    _entry(name)
    return name


def get_view(name: str, image_shape: Sequence[int], *, seed: int = 0) -> View:
    """A view by name (a key of VIEWS; `patch-permute:N` picks the grid) for images of image_shape (C, H, W); seed
    picks the permutation views' permutation. Build it once per call and give the value range where it is applied."""
    entry, arg = _entry(name)
    h, w = int(image_shape[-2]), int(image_shape[-1])
    try:
        return replace(entry.make(h, w, arg, int(seed)), name=name)
    except DiffusionLabError as e:  # a factory says what does not fit ("needs ...", "does not fit ...")
        raise DiffusionLabError(f"view {name} {e}") from None


def reading_views(names: Sequence[str | View], image_shape: Sequence[int], *, seed: int = 0) -> list[View]:
    """An anagram's readings, built once: the identity (upright) and each named view (Views pass through)."""
    return [get_view("identity", image_shape)] + [
        v if isinstance(v, View) else get_view(v, image_shape, seed=seed) for v in names
    ]


def view_help() -> str:
    """The CLI's --view help, from the table (built when the CLI's options are defined)."""
    names = ", ".join(f"{n}[:{e.argument}]" if e.argument else n for n, e in VIEWS.items())
    return (
        f"One view per --prompt after the first (default rot180 for two prompts): {names}; see docs/illusions.md. "
        "Example: -p 1 -p 7 -p 4 -p 0 --view rot90 --view rot180 --view rot270"
    )


def views_markdown() -> str:
    """The views as a Markdown list (the web UI's "the views", docs/illusions.md)."""
    return "\n".join(f"- **{n}**{f'[:{e.argument}]' if e.argument else ''}: {e.help}" for n, e in VIEWS.items())
