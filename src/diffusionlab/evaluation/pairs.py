"""Evaluating the Part A edits over class pairs: visual anagrams and hybrid images of a class DDPM, scored with
`metrics.anagram_success` and `metrics.hybrid_scores`, overall and per ordered pair (a 10x10 map for MNIST)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from diffusionlab import edits
from diffusionlab.evaluation.balance import reading_balance
from diffusionlab.evaluation.metrics import FAR_FACTOR, Scorer, anagram_success, far_view, hybrid_scores, to_unit
from diffusionlab.model_protocol import generator_for
from diffusionlab.views import reading_views


def _ranker(model: Any) -> Any:
    """The shipped ranker of the model's data (an ensemble), which steers the tool's reading balance."""
    from diffusionlab.evaluation.classifier import load_ranker

    return load_ranker(model.config.get("data", "mnist"), "cpu")


def ordered_pairs(num_classes: int) -> list[tuple[int, int]]:
    """Every ordered pair (a, b) of different classes: 90 for 10 classes."""
    return [(a, b) for a in range(num_classes) for b in range(num_classes) if a != b]


def _pair_conds(
    model: Any, pairs: Sequence[tuple[int, int]], n_per_pair: int
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
    first = torch.tensor([a for a, _ in pairs]).repeat_interleave(n_per_pair)
    second = torch.tensor([b for _, b in pairs]).repeat_interleave(n_per_pair)
    eye = torch.eye(model.num_classes, device=model.device)
    return first, second, (eye[first.to(model.device)], eye[second.to(model.device)])


def per_pair(ok: Tensor, pairs: Sequence[tuple[int, int]], n_per_pair: int) -> dict[str, float]:
    """{"a->b": success rate} from per-image successes (n_per_pair images per pair, pair-major)."""
    rates = ok.float().reshape(len(pairs), n_per_pair).mean(1)
    return {f"{a}->{b}": float(r) for (a, b), r in zip(pairs, rates, strict=True)}


@torch.no_grad()
def evaluate_anagrams(
    model: Any,
    classifier: Scorer,
    view: str = "rot180",
    n_per_pair: int = 1,
    cfg_scale: float | None = None,
    seed: int = 0,
    pairs: Sequence[tuple[int, int]] | None = None,
    timesteps: Sequence[int] | None = None,
    progress: bool = True,
    combine: str | None = None,
    rule: dict[str, Any] | None = None,
    weights: Sequence[float] | None = None,
    balance: bool | None = None,
    balance_classifier: Any = None,
) -> dict[str, Any]:
    """Visual anagrams (edits.anagram with its defaults unless given) for every ordered class pair (prompt 1
    upright, prompt 2 through `view`), all pairs in one batch; scores with `anagram_success` (overall and per pair).
    combine: how views are combined (guidance.COMBINE_MODES); rule: the step rule ({"sampler", "variance", ...});
    weights: the two readings' weights, the same for every image (guidance.anagram); balance: the reading balance
    during sampling (evaluation.balance; default edits.ANAGRAM_DEFAULTS, as the anagram tool) by
    balance_classifier (default: the shipped ranker, as the tool)."""
    model.require("class", "ddpm", "anagram evaluation")
    pairs = list(pairs or ordered_pairs(model.num_classes))
    first, second, (c1, c2) = _pair_conds(model, pairs, n_per_pair)
    gen = generator_for(seed)
    identity, v = reading_views([view], model.image_shape, seed=seed)  # built once: sampling, balance, scores
    start = time.perf_counter()
    w = None if weights is None else torch.tensor([list(weights)], dtype=torch.float32).expand(len(first), -1)
    steer = None
    balance = edits.ANAGRAM_DEFAULTS["balance"] if balance is None else balance
    if balance:
        steerer = balance_classifier if balance_classifier is not None else _ranker(model)
        steer = reading_balance(steerer, [identity, v], [first, second], model.value_range)
    x = edits.anagram(
        model,
        c1,
        c2,
        v,
        len(first),
        cfg_scale,
        gen,
        timesteps,
        seed,
        None,
        combine,
        w,
        steer,
        progress=progress,
        **(rule or {}),
    )
    seconds = time.perf_counter() - start
    images = to_unit(x.cpu(), model.value_range)
    scores = anagram_success(classifier, images, v, first, second)
    viewed = v.apply(images, (0.0, 1.0)).clamp(0, 1)
    ok = (classifier.classify(images) == first) & (classifier.classify(viewed) == second)
    return {
        "view": view,
        "n_pairs": len(pairs),
        "n_per_pair": n_per_pair,
        "cfg_scale": cfg_scale,
        "seed": seed,
        "balance": bool(balance),
        **{f"anagram_{k}": val for k, val in scores.items()},
        "per_pair": per_pair(ok, pairs, n_per_pair),
        "sample_seconds": round(seconds, 2),
        "images": images,
    }


@torch.no_grad()
def evaluate_hybrids(
    model: Any,
    classifier: Scorer,
    n_per_pair: int = 1,
    cfg_scale: float | None = None,
    seed: int = 0,
    pairs: Sequence[tuple[int, int]] | None = None,
    timesteps: Sequence[int] | None = None,
    factor: int = FAR_FACTOR,
    progress: bool = True,
    kernel: int | None = None,
    sigma: float | None = None,
    rule: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Hybrid images (edits.hybrid, its defaults unless given) for every ordered class pair (low-pass prompt,
    high-pass prompt), one batch; scores with `hybrid_scores` (overall and per pair)."""
    model.require("class", "ddpm", "hybrid evaluation")
    pairs = list(pairs or ordered_pairs(model.num_classes))
    low, high, (c_low, c_high) = _pair_conds(model, pairs, n_per_pair)
    gen = generator_for(seed)
    start = time.perf_counter()
    x = edits.hybrid(
        model, c_low, c_high, len(low), sigma, kernel, cfg_scale, gen, timesteps, progress=progress, **(rule or {})
    )
    seconds = time.perf_counter() - start
    images = to_unit(x.cpu(), model.value_range)
    scores = hybrid_scores(classifier, images, low, high, factor)
    ok = (classifier.classify(far_view(images, factor)) == low) & (classifier.classify(images) == high)
    k, s = edits.hybrid_blur(model, kernel, sigma)
    return {
        "n_pairs": len(pairs),
        "n_per_pair": n_per_pair,
        "cfg_scale": cfg_scale,
        "kernel": k,
        "sigma": s,
        "seed": seed,
        "far_factor": factor,
        **{f"hybrid_{k}": val for k, val in scores.items()},
        "per_pair": per_pair(ok, pairs, n_per_pair),
        "sample_seconds": round(seconds, 2),
        "images": images,
    }
