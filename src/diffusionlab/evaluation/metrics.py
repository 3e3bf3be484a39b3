"""Scores of images in [0, 1]: plain functions over tensors and a classifier (anything with `classify`/`features`).

- `conditional_accuracy`: the fraction of class-conditional samples classified as the class asked for.
- `frechet_distance`: the Frechet distance between Gaussians fitted to the classifier's penultimate features
  (FID's formula, with our classifier in place of Inception).
- `background_std`: the grain a sampler leaves where there is no ink.
- `anagram_success`: the image is classified as prompt 1 AND its view as prompt 2.
- `hybrid_scores`: the far view (the image downscaled by `factor` with average pooling, then upsampled back) is
  classified as the low-pass prompt; the near view (the image itself, as seen up close) as the high-pass prompt.

`to_unit` maps a model's value range to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from diffusionlab.errors import DiffusionLabError
from diffusionlab.filters import FAR_FACTOR, pooled_lowpass

Labels = int | Sequence[int] | Tensor


class Scorer(Protocol):
    """What the scores need: labels and features of images in [0, 1], the number of classes, and the test accuracy
    reported beside the scores (None where unknown). `TrainedClassifier` is one."""

    num_classes: int
    test_accuracy: float | None

    def classify(self, images: Tensor) -> Tensor: ...

    def features(self, images: Tensor) -> Tensor: ...


def classify(classifier: Scorer, images: Tensor) -> Tensor:
    """Predicted labels (N,) of images in [0, 1]."""
    return classifier.classify(images)


def to_unit(images: Tensor, value_range: Sequence[float] = (0.0, 1.0)) -> Tensor:
    """Images in a model's value range -> [0, 1], clamped (samples can overshoot the range)."""
    lo, hi = float(value_range[0]), float(value_range[1])
    return ((images.float() - lo) / (hi - lo)).clamp(0.0, 1.0)


# -- classification -------------------------------------------------------------------------------------------
def _labels(labels: Labels, n: int) -> Tensor:
    t = torch.as_tensor(labels, dtype=torch.long).reshape(-1).cpu()
    if t.numel() == 1:
        return t.expand(n)
    if t.numel() != n:
        raise DiffusionLabError(f"{t.numel()} labels for {n} images")
    return t


@torch.no_grad()
def accuracy(classifier: Scorer, images: Tensor, labels: Tensor) -> float:
    """Fraction of images in [0, 1] classified as their labels."""
    if len(labels) == 0:
        raise DiffusionLabError("no images to score")
    return float((classifier.classify(images) == labels.cpu()).float().mean())


def conditional_accuracy(classifier: Scorer, images: Tensor, labels: Labels) -> float:
    """Fraction of images (in [0, 1]) classified as the class they were generated for."""
    return accuracy(classifier, images, _labels(labels, images.shape[0]))


def per_class_accuracy(
    classifier: Scorer, images: Tensor, labels: Tensor, num_classes: int | None = None
) -> list[float | None]:
    """Conditional accuracy of each class (None for a class with no images)."""
    labels = _labels(labels, images.shape[0])
    pred = classifier.classify(images)
    k = num_classes or int(labels.max()) + 1
    return [float((pred[labels == c] == c).float().mean()) if (labels == c).any() else None for c in range(k)]


# -- Frechet distance -----------------------------------------------------------------------------------------
def gaussian_stats(feats: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and (unbiased) covariance of features (N, D), in float64."""
    f = torch.as_tensor(feats).detach().cpu().double()
    if f.ndim != 2 or f.shape[0] < 2:
        raise DiffusionLabError(f"the Frechet distance needs at least 2 feature vectors (N, D), got {tuple(f.shape)}")
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(m: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues set to 0)."""
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_from_stats(mu_a: Tensor, cov_a: Tensor, mu_b: Tensor, cov_b: Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(Sa + Sb - 2 (Sa Sb)^1/2), with Tr (Sa Sb)^1/2 = Tr (Sa^1/2 Sb Sa^1/2)^1/2.

    The symmetric form keeps every eigen decomposition on a symmetric PSD matrix (stable, real, float64).
    """
    mu_a, cov_a, mu_b, cov_b = (torch.as_tensor(t).double() for t in (mu_a, cov_a, mu_b, cov_b))
    s = _sqrt_psd(cov_a)
    inner = s @ cov_b @ s
    tr_covmean = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
    fd = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * tr_covmean
    return max(float(fd), 0.0)


def frechet_distance(feats_a: Tensor, feats_b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two sets of features (N_a, D) and (N_b, D)."""
    fa, fb = torch.as_tensor(feats_a), torch.as_tensor(feats_b)
    if fa.ndim != 2 or fb.ndim != 2 or fa.shape[1] != fb.shape[1]:
        raise DiffusionLabError(
            f"feature sets must be (N, D) with the same D, got {tuple(fa.shape)}, {tuple(fb.shape)}"
        )
    return frechet_from_stats(*gaussian_stats(fa), *gaussian_stats(fb))


# -- raw samples ----------------------------------------------------------------------------------------------
def background_std(raw: Tensor, value_range: Sequence[float] = (0.0, 1.0)) -> float:
    """Mean over images of the pixel std of the darkest half of each raw (unclamped) sample, on a [0, 1] scale.

    Real MNIST backgrounds are exactly 0, so this measures the grain a sampler leaves where there is no ink."""
    lo, hi = float(value_range[0]), float(value_range[1])
    flat = ((raw.float() - lo) / (hi - lo)).reshape(raw.shape[0], -1)
    darkest = flat.sort(dim=1).values[:, : flat.shape[1] // 2]
    return float(darkest.std(dim=1).mean())


# -- anagrams and hybrids -------------------------------------------------------------------------------------
def anagram_success(classifier: Scorer, images: Tensor, view: Any, label1: Labels, label2: Labels) -> dict[str, float]:
    """Anagram scores of images in [0, 1]: "first" = classified as label1, "second" = view.apply(image) classified
    as label2, "success" = both (per image, then averaged). `view` is a diffusionlab.views View (or any object with
    `apply(x, value_range)`), applied to these [0, 1] images."""
    n = images.shape[0]
    l1, l2 = _labels(label1, n), _labels(label2, n)
    ok1 = classifier.classify(images) == l1
    ok2 = classifier.classify(view.apply(images, (0.0, 1.0)).clamp(0, 1)) == l2
    return {
        "first": float(ok1.float().mean()),
        "second": float(ok2.float().mean()),
        "success": float((ok1 & ok2).float().mean()),
    }


def far_view(images: Tensor, factor: int = FAR_FACTOR) -> Tensor:
    """What the image looks like from afar: average-pooled by `factor` (28 -> 14 for 2), upsampled back bilinearly
    (filters.pooled_lowpass, also a hybrid's far low-pass)."""
    return pooled_lowpass(images, factor)


def hybrid_scores(
    classifier: Scorer, images: Tensor, low_label: Labels, high_label: Labels, factor: int = FAR_FACTOR
) -> dict[str, float]:
    """Hybrid-image scores of images in [0, 1]: "far" = the far view (`far_view`, downscaled by `factor`)
    classified as the low-pass prompt; "near" = the image itself (what is seen up close, where the high
    frequencies dominate) classified as the high-pass prompt; "success" = both."""
    n = images.shape[0]
    lo, hi = _labels(low_label, n), _labels(high_label, n)
    ok_far = classifier.classify(far_view(images, factor)) == lo
    ok_near = classifier.classify(images) == hi
    return {
        "far": float(ok_far.float().mean()),
        "near": float(ok_near.float().mean()),
        "success": float((ok_far & ok_near).float().mean()),
    }


# -- per-pair score maps --------------------------------------------------------------------------------------
def pair_matrix(per_pair: dict[str, float], num_classes: int) -> list[list[float | None]]:
    """{"a->b": rate} -> a num_classes x num_classes matrix (rows a, columns b; None where not measured)."""
    m: list[list[float | None]] = [[None] * num_classes for _ in range(num_classes)]
    for name, rate in per_pair.items():
        a, _, b = name.partition("->")
        m[int(a)][int(b)] = float(rate)
    return m


def score_map(
    per_pair: dict[str, float],
    class_names: Sequence[str],
    title: str,
    rows: str = "upright",
    cols: str = "viewed",
    cell: int = 44,
):
    """A labelled heatmap (PIL image) of per-pair success: rows `rows` class, columns `cols` class; each cell shows
    its rate in percent, from dark red (0 %) to green (100 %); the diagonal (not a pair) is grey."""
    from PIL import Image, ImageDraw

    from diffusionlab.figures.grid import _font

    k = len(class_names)
    m = pair_matrix(per_pair, k)
    font, small = _font(14), _font(12)
    left, top = 110, 80
    img = Image.new("RGB", (left + k * cell + 20, top + k * cell + 20), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 8), title, fill="black", font=font)
    d.text((10, 30), f"rows: {rows} class; columns: {cols} class", fill="black", font=small)
    for i in range(k):
        d.text((left + i * cell + 4, top - 18), str(class_names[i])[:5], fill="black", font=small)
        d.text((60, top + i * cell + cell // 3), str(class_names[i])[:6], fill="black", font=small)
        for j in range(k):
            v = m[i][j]
            box = (left + j * cell, top + i * cell, left + (j + 1) * cell - 1, top + (i + 1) * cell - 1)
            color = (200, 200, 200) if v is None else (int(200 * (1 - v)) + 30, int(170 * v) + 30, 40)
            d.rectangle(box, fill=color)
            if v is not None:
                d.text((box[0] + 6, box[1] + cell // 3), f"{100 * v:.0f}", fill="white", font=small)
    return img
