"""Evaluating a class-conditional model: class-conditional samples -> conditional accuracy, background std, and
the Frechet distance to the test set next to the reference Frechet distance of a same-size subset of the train
set to the test set. An unconditional (time) model: its samples' Frechet distance and how the classifier spreads
them over the classes, each next to the same measure of a same-size train subset."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from diffusionlab import guidance, sampling
from diffusionlab.data import Split, to_float
from diffusionlab.errors import DiffusionLabError
from diffusionlab.evaluation.metrics import (
    Scorer,
    background_std,
    conditional_accuracy,
    frechet_distance,
    per_class_accuracy,
    to_unit,
)
from diffusionlab.model_protocol import generator_for, randn
from diffusionlab.progress import bar as progress_bar
from diffusionlab.steps import sampler_name  # the reported names come from the step-rule table


def _sample_in_chunks(
    model: Any,
    n: int,
    estimator_for: Callable[[int, int], Any],
    steps: int | None,
    seed: int,
    batch_size: int,
    progress: bool,
    sampler: dict[str, Any] | None,
    raw: list[Tensor] | None,
) -> Tensor:
    """n samples in chunks of `batch_size` that share one generator (bounded memory; the scores of a seed stay
    those already published), in [0, 1] on the CPU. `estimator_for(start, stop)` is the chunk's estimator; `raw`
    (a list) receives the unclamped samples, chunk by chunk."""
    gen = generator_for(seed)
    ts = sampling.timesteps_for(model, steps)  # the kind's, as every tool samples (steps None: its default)
    out = []
    bar = progress_bar(None, progress, total=n, desc="sampling", unit="image")
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        est = estimator_for(start, stop)
        x = randn((stop - start, *model.image_shape), gen, device=model.device)
        x = sampling.run(model, x, ts, est, generator=gen, progress=False, **(sampler or {}))
        if raw is not None:
            raw.append(x.cpu())
        out.append(to_unit(x.cpu(), model.value_range))
        bar.update(stop - start)
    bar.close()
    return torch.cat(out)


@torch.no_grad()
def generate_class_samples(
    model: Any,
    labels: Tensor,
    cfg_scale: float = 5.0,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int = 250,
    progress: bool = True,
    sampler: dict[str, Any] | None = None,
    raw: list[Tensor] | None = None,
) -> Tensor:
    """Class-conditional samples of a class DDPM or flow model of ours, one per label, in [0, 1] on the CPU.

    CFG over the model kind's timesteps, as `sample` takes them (sampling.timesteps_for: `steps`, default the
    kind's: 30 spaced steps for our DDPMs (steps=T: Algorithm B.2); a flow model's default Euler steps), with the step rule
    of `sampler` ({"sampler", "variance", "eta"}; default: the kind's, sampling.sampler_defaults).
    `raw` (a list) receives the unclamped samples, chunk by chunk.

    Not sampling.generate: that draws a whole batch from a fresh generator, while here chunks of `batch_size`
    share one generator (bounded memory; the scores of a seed stay those already published).
    """
    model.require("class", what="evaluate")
    names = model.class_names or [str(i) for i in range(model.num_classes)]

    def estimator_for(start: int, stop: int):
        cond = model.encode([names[int(c)] for c in labels[start:stop]])
        return guidance.cfg(model, cond, model.null(1), cfg_scale)

    return _sample_in_chunks(model, len(labels), estimator_for, steps, seed, batch_size, progress, sampler, raw)


def _check_inputs(model: Any, classifier: Scorer, n_per_class: int) -> None:
    model.require("class", what="evaluate")
    if n_per_class < 1:
        raise DiffusionLabError(f"-n must be at least 1 per class, got {n_per_class}")
    k = model.num_classes
    if classifier.num_classes != k:
        raise DiffusionLabError(f"the classifier has {classifier.num_classes} classes but the model has {k}")


def check_unconditional_count(n: int) -> None:
    """An unconditional model's scores compare a spread and a Frechet distance: one sample has neither."""
    if n < 2:
        raise DiffusionLabError(f"-n must be at least 2 samples for an unconditional model, got {n}")


def _train_subset(train_split: Split, n: int, seed: int) -> Tensor:
    """The random train subset of the samples' N (as float images) that the floors are measured on."""
    gen = generator_for(int(seed) + 1)
    return to_float(train_split.images[torch.randperm(len(train_split), generator=gen)[: min(n, len(train_split))]])


def _frechet_scores(classifier: Scorer, images: Tensor, test_split: Split, train_subset: Tensor) -> dict[str, Any]:
    """FD of the samples to the test set, and of a random train subset of the same N (same small-sample bias)."""
    if images.shape[0] < 2:
        raise DiffusionLabError("the Frechet distance needs at least 2 samples; raise -n")
    test_feats = classifier.features(to_float(test_split.images))
    return {
        "frechet_distance": frechet_distance(classifier.features(images), test_feats),
        "frechet_distance_train_vs_test": frechet_distance(classifier.features(train_subset), test_feats),
        "n_test": len(test_split),
        "n_train_subset": int(train_subset.shape[0]),
    }


def _sample_scores(
    model: Any, classifier: Scorer, raw: list[Tensor], steps, seed: int, sampler, seconds: float
) -> dict[str, Any]:
    """What every evaluation of samples reports: the model, how it sampled, the raw samples' background std, the
    classifier's accuracy, the seconds, and no Frechet distance yet (`_frechet_scores` fills it in)."""
    rule = sampling.sampler_defaults(model, sampler)
    return {
        "model": model.name,
        "data": model.config.get("data", "mnist"),
        "steps": steps,
        "sampler": model.kind.rule_label or sampler_name(rule),
        "seed": seed,
        "background_std": background_std(torch.cat(raw), model.value_range),
        "frechet_distance": None,
        "frechet_distance_train_vs_test": None,
        "classifier_test_accuracy": classifier.test_accuracy,
        "sample_seconds": round(seconds, 2),
    }


def evaluate_model(
    model: Any,
    classifier: Scorer,
    n_per_class: int = 100,
    cfg_scale: float = 5.0,
    steps: int | None = None,
    seed: int = 0,
    test_split: Split | None = None,
    train_split: Split | None = None,
    batch_size: int = 250,
    progress: bool = True,
    sampler: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Scores of a class-conditional model: conditional accuracy (overall and per class) of n_per_class samples
    per class at CFG scale cfg_scale, the background std of the raw samples, and, when the splits are given, their
    Frechet distance to the test set next to the reference: the Frechet distance of a random same-size subset of
    the train set to the test set (same N, so the same small-sample bias). Without splits no FD is computed."""
    _check_inputs(model, classifier, n_per_class)
    k = model.num_classes
    labels = torch.arange(k).repeat_interleave(n_per_class)
    start = time.perf_counter()
    raw: list[Tensor] = []
    images = generate_class_samples(model, labels, cfg_scale, steps, seed, batch_size, progress, sampler, raw)
    scores = {
        "n_per_class": n_per_class,
        "n_samples": labels.numel(),
        "cfg_scale": cfg_scale,
        "conditional_accuracy": conditional_accuracy(classifier, images, labels),
        "per_class_accuracy": per_class_accuracy(classifier, images, labels, k),
        **_sample_scores(model, classifier, raw, steps, seed, sampler, time.perf_counter() - start),
    }
    if test_split is not None and train_split is not None:
        scores.update(_frechet_scores(classifier, images, test_split, _train_subset(train_split, len(images), seed)))
    return scores


@torch.no_grad()
def evaluate_unconditional(
    model: Any,
    classifier: Scorer,
    n: int = 1000,
    steps: int | None = None,
    seed: int = 0,
    test_split: Split | None = None,
    train_split: Split | None = None,
    batch_size: int = 250,
    progress: bool = True,
    sampler: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Scores of an unconditional (time-conditioned) DDPM or flow model: the background std of n raw samples, how
    the classifier spreads them over the classes (`class_shares`) and the total-variation distance of that spread
    from the test set's labels (from uniform without the test set): a model that drops or favours digits shows
    there; with the splits, that distance and the Frechet distance to the test set next to their floors: a random
    train subset of the same N (small samples spread unevenly by chance alone)."""
    model.require("time", what="evaluate (unconditional)")
    check_unconditional_count(n)
    start = time.perf_counter()
    raw: list[Tensor] = []

    def estimator_for(a: int, b: int):
        return guidance.plain(model, model.null(b - a))

    images = _sample_in_chunks(model, n, estimator_for, steps, seed, batch_size, progress, sampler, raw)
    seconds = time.perf_counter() - start
    k = int(classifier.num_classes)

    def spread(images: Tensor) -> Tensor:
        return torch.bincount(classifier.classify(images), minlength=k).float() / len(images)

    def distance(shares: Tensor) -> float:  # total variation
        return float(0.5 * (shares - expected).abs().sum())

    shares = spread(images)
    if test_split is not None:
        expected = torch.bincount(test_split.labels.cpu(), minlength=k).float() / len(test_split)
    else:
        expected = torch.full((k,), 1.0 / k)
    scores = {
        "n_samples": n,
        "class_shares": [round(float(s), 4) for s in shares],
        "class_share_distance": distance(shares),
        "class_share_reference": "test labels" if test_split is not None else "uniform",
        "class_share_distance_train": None,
        **_sample_scores(model, classifier, raw, steps, seed, sampler, seconds),
    }
    if train_split is not None:  # the floors: a train subset of the same N, scored the same way
        subset = _train_subset(train_split, n, seed)
        scores["class_share_distance_train"] = distance(spread(subset))
        if test_split is not None:
            scores.update(_frechet_scores(classifier, images, test_split, subset))
    return scores
