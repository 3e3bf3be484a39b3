"""Reading balance for anagrams: a classifier looks at each image's clean estimate after every step, through
each view, and the views' weights move toward the readings it does not see yet (a step hook; edits.anagram_views).

Why: on a digit pair such as 3->1 one reading drowns the other (docs/illusions.md, "The readings' weights"); a
fixed tilt helps such pairs and costs the others. Feedback tilts only the images that need it, only as long as they
need it. No gradient of the classifier enters the image: the weights only choose between the model's own
predictions for each reading."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from diffusionlab.evaluation.metrics import FAR_FACTOR, far_view, to_unit

# measured on the 13 hardest rot180 pairs (docs/illusions.md, "Reading balance"): gain 4 with the weights kept in
# [0.25, 0.75] (two readings) solved the most
BALANCE_GAIN = 4.0
BALANCE_FLOOR = 0.25


def balance_weights(shortfall: Tensor, gain: float = BALANCE_GAIN, floor: float = BALANCE_FLOOR) -> Tensor:
    """Views' weights (n, V) from each reading's shortfall (n, V) = 1 - the classifier's probability of its label:
    1/V + gain * (shortfall - the image's mean shortfall), at least floor * 2/V, normalized. Equal shortfalls give
    equal weights; with two readings w1 = 0.5 + gain (s1 - s2) / 2, clamped to [floor, 1 - floor]."""
    v = shortfall.shape[1]
    w = 1.0 / v + gain * (shortfall - shortfall.mean(1, keepdim=True))
    w = w.clamp_min(floor * 2.0 / v)
    if v == 2:
        w = w.clamp_max(1.0 - floor)
    return w / w.sum(1, keepdim=True)


def reading_balance(
    classifier,
    views: Sequence,
    labels: Sequence[Tensor],
    value_range: tuple[float, float],
    gain: float = BALANCE_GAIN,
    floor: float = BALANCE_FLOOR,
) -> Callable[[Tensor], Tensor]:
    """The balance of anagram_views: x0 (n, C, H, W, in value_range) -> weights (n, V). views: V views (the
    identity first), applied to x0 on a [0, 1] scale; labels: V tensors (n,) of each image's label per reading."""

    @torch.no_grad()
    def weights(x0: Tensor) -> Tensor:
        x = to_unit(x0.clamp(*value_range).cpu(), value_range)
        short = []
        for v, lab in zip(views, labels, strict=True):
            p = torch.softmax(classifier.logits(v.apply(x, (0.0, 1.0)).clamp(0, 1)).cpu(), 1)
            short.append(1.0 - p[torch.arange(len(x)), lab.cpu()])
        return balance_weights(torch.stack(short, 1), gain, floor)

    return weights


class _Seen:
    """A reading as reading_balance takes a view: `apply(x, value_range)` of [0, 1] images."""

    def __init__(self, see: Callable[[Tensor], Tensor]):
        self.see = see

    def apply(self, x: Tensor, value_range: tuple[float, float]) -> Tensor:
        return self.see(x)


def hybrid_balance(
    classifier, low: Tensor, high: Tensor, value_range: tuple[float, float], factor: int = FAR_FACTOR
) -> Callable[[Tensor], Tensor]:
    """The balance of a hybrid's two readings (edits.hybrid): x0 -> weights (n, 2) of (far, near), the far view
    (metrics.far_view) read as `low`, the image itself as `high` (n labels each); as reading_balance."""
    readings = [_Seen(lambda x: far_view(x, factor)), _Seen(lambda x: x)]
    return reading_balance(classifier, readings, [low, high], value_range)
