"""A model's default CFG scale, chosen by measurement: conditional accuracy and Frechet distance over a grid of
scales (the guidance curve), and the rule that picks the default from it.

The rule: the lowest scale whose conditional accuracy reaches the target (99 %, or less where the scoring
classifier itself reads held-out real images worse: a folder's classifier at 97 % cannot certify 99 %). Past
the lowest such scale guidance buys no accuracy and costs diversity (FD grows: fashion-mnist's FD at CFG 5 is
about 3x its FD at CFG 2). When no scale reaches the target, the lowest scale within one standard error of
the best accuracy measured: more guidance than that is not shown to help.

Every scale is sampled from the same seed (the same starting noise), so the differences between scales are not
differences of noise draws.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from diffusionlab.data import Split
from diffusionlab.errors import DiffusionLabError
from diffusionlab.evaluation.evaluate import evaluate_model
from diffusionlab.evaluation.metrics import Scorer

DEFAULT_SCALES = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)
TARGET_ACCURACY = 0.99
MEASURED_STEPS = 30  # the strided (DDIM) sampling the shipped scores use; a curve costs 7 samplings


def accuracy_standard_error(accuracy: float, n: int) -> float:
    """The binomial standard error of an accuracy measured on n samples."""
    return math.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / n)


def target_accuracy(classifier_accuracy: float | None, target: float = TARGET_ACCURACY) -> float:
    """The accuracy a default scale must reach: `target`, capped at the classifier's own accuracy on held-out
    real images (its ceiling; unknown: no cap)."""
    if classifier_accuracy is None:
        return target
    return min(target, float(classifier_accuracy))


def check_scales(scales: Sequence[float]) -> list[float]:
    """The grid sorted, each scale at least 1 (1 = the plain conditional estimate) and given once."""
    grid = sorted(float(s) for s in scales)
    if not grid:
        raise DiffusionLabError("--scales needs at least one CFG scale, e.g. --scales 1,2,3,5")
    if grid[0] < 1.0:
        raise DiffusionLabError(f"--scales: a CFG scale below 1 ({grid[0]:g}) guides away from the class")
    if len(set(grid)) != len(grid):
        raise DiffusionLabError("--scales: a scale is given twice")
    return grid


def choose_scale(curve: Sequence[dict[str, Any]], target: float) -> dict[str, Any]:
    """The default scale of a measured curve (points with cfg_scale, conditional_accuracy, n_samples) by the rule
    above: {"cfg_scale", "met_target", "threshold"} (threshold: the accuracy the chosen point had to reach)."""
    if not curve:
        raise DiffusionLabError("no measured scales to choose from")
    points = sorted(curve, key=lambda p: p["cfg_scale"])
    met = [p for p in points if p["conditional_accuracy"] >= target]
    if met:
        return {"cfg_scale": met[0]["cfg_scale"], "met_target": True, "threshold": target}
    best = max(points, key=lambda p: p["conditional_accuracy"])
    threshold = best["conditional_accuracy"] - accuracy_standard_error(best["conditional_accuracy"], best["n_samples"])
    first = next(p for p in points if p["conditional_accuracy"] >= threshold)
    return {"cfg_scale": first["cfg_scale"], "met_target": False, "threshold": threshold}


def curve_point(scores: dict[str, Any]) -> dict[str, Any]:
    """One point of the curve from `evaluate_model`'s scores: accuracy with its standard error, FD and its floor."""
    acc, n = scores["conditional_accuracy"], scores["n_samples"]
    fd, floor = scores.get("frechet_distance"), scores.get("frechet_distance_train_vs_test")
    return {
        "cfg_scale": scores["cfg_scale"],
        "conditional_accuracy": acc,
        "accuracy_standard_error": accuracy_standard_error(acc, n),
        "per_class_accuracy": scores["per_class_accuracy"],
        "frechet_distance": fd,
        "frechet_distance_floor": floor,
        "fd_over_floor": fd / floor if fd is not None and floor else None,
        "background_std": scores["background_std"],
        "n_samples": n,
        "sampler": scores["sampler"],
        "sample_seconds": scores["sample_seconds"],
    }


def measure_curve(
    model: Any,
    classifier: Scorer,
    scales: Sequence[float] = DEFAULT_SCALES,
    n_per_class: int = 100,
    steps: int | None = MEASURED_STEPS,
    seed: int = 0,
    test_split: Split | None = None,
    train_split: Split | None = None,
    progress: bool = True,
    on_point: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """The guidance curve: `evaluate_model` at each scale (n_per_class samples per class, the same seed), one
    `curve_point` each with its seconds (sampling and scoring), low scale first; `on_point` sees each point as it
    is measured. Without the splits the points have no FD."""
    curve = []
    for scale in check_scales(scales):
        start = time.perf_counter()
        scores = evaluate_model(
            model, classifier, n_per_class, scale, steps, seed, test_split, train_split, progress=progress
        )
        curve.append({**curve_point(scores), "seconds": round(time.perf_counter() - start, 2)})
        if on_point is not None:
            on_point(curve[-1])
    return curve
