"""Where a class model's Frechet distance comes from: its mean and covariance terms, how widely each class spreads in
the classifier's features, and each class's mean intensity, against the test set's.

    python scripts/fd_breakdown.py --data fashion-mnist --data-dir DIR/fashion-mnist --cfg 5 -n 30 MODEL [MODEL ...]

A diagnostic for docs/models.md (why Fashion's full recipe has a higher FD at CFG 5 than its 5-epoch model), not a
score: `diffusionlab evaluate` gives the scores.
"""

from __future__ import annotations

import argparse
import sys

import torch

from diffusionlab.backends import load_model
from diffusionlab.data import load_split, to_float
from diffusionlab.errors import DiffusionLabError
from diffusionlab.evaluation.classifier import load_classifier
from diffusionlab.evaluation.evaluate import generate_class_samples
from diffusionlab.evaluation.metrics import frechet_from_stats, gaussian_stats


def per_class_spread(feats: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Mean over classes of the trace of the features' covariance within the class."""
    return sum(torch.cov(feats[labels == c].T).trace().item() for c in range(num_classes)) / num_classes


def per_class_ink(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float]:
    return [round(images[labels == c].mean().item(), 3) for c in range(num_classes)]


def breakdown(args: argparse.Namespace) -> None:
    models = {name: load_model(name) for name in args.models}  # a bad name fails before the slow part
    for model in models.values():
        model.require("class", what="fd_breakdown")
    classifier = load_classifier(args.data)
    test = load_split(args.data, "test", data_dir=args.data_dir)
    test_images = to_float(test.images)
    test_feats = classifier.features(test_images)
    test_mu, test_cov = gaussian_stats(test_feats)  # once, for every model
    k = int(test.labels.max()) + 1
    print(f"test set: per-class feature spread {per_class_spread(test_feats, test.labels, k):.2f}")
    print(f"test set: mean intensity per class {per_class_ink(test_images, test.labels, k)}")
    for name, model in models.items():
        labels = torch.arange(k).repeat_interleave(args.n)
        images = generate_class_samples(model, labels, args.cfg, steps=args.steps, seed=args.seed, progress=False)
        feats = classifier.features(images)
        mu, cov = gaussian_stats(feats)
        print(
            f"{name} (CFG {args.cfg:g}, {args.n} per class): FD {frechet_from_stats(mu, cov, test_mu, test_cov):.2f}, "
            f"mean term {(mu - test_mu).pow(2).sum().item():.2f}, "
            f"per-class feature spread {per_class_spread(feats, labels, k):.2f}"
        )
        print(f"{name}: mean intensity per class {per_class_ink(images, labels, k)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="shipped names, run directories or checkpoints")
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--cfg", type=float, default=5.0)
    ap.add_argument("-n", type=int, default=30, help="samples per class (at least 2: a spread needs two)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.n < 2:
        ap.error(f"-n must be at least 2 per class, got {args.n}")
    try:
        breakdown(args)
    except DiffusionLabError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
