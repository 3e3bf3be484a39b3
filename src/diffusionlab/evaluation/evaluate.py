"""Evaluating a class-conditional model: class-conditional samples -> conditional accuracy, background std, and
the Frechet distance to the test set next to the reference Frechet distance of a same-size subset of the train
set to the test set."""

from __future__ import annotations

import time
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
from diffusionlab.progress import bar as progress_bar
from diffusionlab.protocol import randn
from diffusionlab.steps import auto_choice


def sampler_name(rule: dict[str, Any]) -> str:
    """ "ddpm (beta-tilde)", "ddim (eta 0)", "dpm++2m", "auto (ddim (eta 0) when strided, else ddpm (auto))":
    how a sampling run's step rule is reported."""
    name = rule.get("sampler", "ddpm")
    if name == "auto":
        strided, single = (sampler_name(auto_choice(s, rule.get("variance", "auto"))) for s in (True, False))
        return f"auto ({strided} when strided, else {single})"
    if name == "ddpm":
        return f"ddpm ({rule.get('variance', 'auto')})"
    if name == "ddim":
        return f"ddim (eta {rule.get('eta', 0.0):g})"
    return name


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

    DDPM: CFG over every step T-1..0 (Algorithm B.2), or `steps` evenly spaced timesteps, with the step rule of
    `sampler` ({"sampler", "variance", "eta"}; default: the model's own, sampling.sampler_defaults). Flow: Euler
    with `steps` steps (default: the config's `sample_steps`, else the course's N = 300), CFG on the velocity.
    `raw` (a list) receives the unclamped samples, chunk by chunk.

    Not sampling.generate: that draws a whole batch from a fresh generator, while here chunks of `batch_size`
    share one generator (bounded memory; the scores of a seed stay those already published).
    """
    model.require("class", what="evaluate")
    gen = torch.Generator("cpu").manual_seed(int(seed))
    names = model.class_names or [str(i) for i in range(model.num_classes)]
    out = []
    if guidance.is_flow(model):
        ts = sampling.flow_timesteps(steps or int(model.config.get("sample_steps", 300)))
    else:
        T = model.schedule.num_steps  # more steps than T means every step
        ts = sampling.timesteps_for(model, None if steps is None or steps >= T else steps)
    bar = progress_bar(None, progress, total=len(labels), desc="sampling", unit="image")
    for chunk in labels.split(batch_size):
        cond = model.encode([names[int(c)] for c in chunk])
        uncond = model.null(1)
        x = randn((len(chunk), *model.image_shape), gen, device=model.device)
        est = guidance.cfg(model, cond, uncond, cfg_scale)
        x = sampling.run(model, x, ts, est, generator=gen, progress=False, **(sampler or {}))
        if raw is not None:
            raw.append(x.cpu())
        out.append(to_unit(x.cpu(), model.value_range))
        bar.update(len(chunk))
    bar.close()
    return torch.cat(out)


def _check_inputs(model: Any, classifier: Scorer, n_per_class: int) -> None:
    model.require("class", what="evaluate")
    if n_per_class < 1:
        raise DiffusionLabError(f"-n must be at least 1 per class, got {n_per_class}")
    k = model.num_classes
    if getattr(classifier, "num_classes", k) != k:
        raise DiffusionLabError(f"the classifier has {classifier.num_classes} classes but the model has {k}")


def _frechet_scores(
    classifier: Scorer, images: Tensor, test_split: Split, train_split: Split, seed: int
) -> dict[str, Any]:
    """FD of the samples to the test set, and of a random train subset of the same N (same small-sample bias)."""
    n = images.shape[0]
    if n < 2:
        raise DiffusionLabError("the Frechet distance needs at least 2 samples; raise -n")
    test_feats = classifier.features(to_float(test_split.images))
    gen = torch.Generator("cpu").manual_seed(int(seed) + 1)
    subset = torch.randperm(len(train_split), generator=gen)[: min(n, len(train_split))]
    return {
        "frechet_distance": frechet_distance(classifier.features(images), test_feats),
        "frechet_distance_train_vs_test": frechet_distance(
            classifier.features(to_float(train_split.images[subset])), test_feats
        ),
        "n_test": len(test_split),
        "n_train_subset": int(subset.numel()),
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
    sample_seconds = time.perf_counter() - start
    step_rule = sampling.sampler_defaults(model, sampler)
    scores = {
        "model": getattr(model, "name", "model"),
        "data": model.config.get("data", "mnist"),
        "n_per_class": n_per_class,
        "n_samples": labels.numel(),
        "cfg_scale": cfg_scale,
        "steps": steps,
        "sampler": "flow-euler" if guidance.is_flow(model) else sampler_name(step_rule),
        "seed": seed,
        "conditional_accuracy": conditional_accuracy(classifier, images, labels),
        "per_class_accuracy": per_class_accuracy(classifier, images, labels, k),
        "background_std": background_std(torch.cat(raw), model.value_range),
        "frechet_distance": None,
        "frechet_distance_train_vs_test": None,
        "classifier_test_accuracy": getattr(classifier, "test_accuracy", None),
        "sample_seconds": round(sample_seconds, 2),
    }
    if test_split is not None and train_split is not None:
        scores.update(_frechet_scores(classifier, images, test_split, train_split, seed))
    return scores
