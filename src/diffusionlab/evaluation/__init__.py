"""Scores for generated images: a small CNN classifier per data set, and what is measured with it.

- `classifier`: the CNN, its training and its file.
- `metrics`: conditional accuracy, Frechet distance, background std, anagram and hybrid success (plain functions).
- `evaluate`: class-conditional samples of a model, scored; an unconditional model's samples by their FD and
  how they spread over the classes.
- `pairs`: visual anagrams and hybrid images over class pairs, scored.
- `denoiser`: the single-step denoisers (B1): test MSE at a noise level; a pure-noise one against the mean digit.

All scoring functions take images in [0, 1]; `to_unit` maps a model's value range there.
"""

from diffusionlab.evaluation.classifier import (
    CLASSIFIER_FORMAT,
    Classifier,
    TrainedClassifier,
    check_images,
    classifier_path,
    load_classifier,
    save_classifier,
    train_classifier,
)
from diffusionlab.evaluation.denoiser import denoiser_scores, pure_noise_scores
from diffusionlab.evaluation.evaluate import (
    evaluate_model,
    evaluate_unconditional,
    generate_class_samples,
    sampler_name,
)
from diffusionlab.evaluation.metrics import (
    Scorer,
    accuracy,
    anagram_success,
    background_std,
    classify,
    conditional_accuracy,
    far_view,
    frechet_distance,
    frechet_from_stats,
    gaussian_stats,
    hybrid_scores,
    per_class_accuracy,
    to_unit,
)
from diffusionlab.evaluation.pairs import evaluate_anagrams, evaluate_hybrids, ordered_pairs

__all__ = [
    "CLASSIFIER_FORMAT",
    "Classifier",
    "Scorer",
    "TrainedClassifier",
    "accuracy",
    "anagram_success",
    "background_std",
    "check_images",
    "classifier_path",
    "classify",
    "conditional_accuracy",
    "denoiser_scores",
    "evaluate_anagrams",
    "evaluate_hybrids",
    "evaluate_model",
    "evaluate_unconditional",
    "far_view",
    "frechet_distance",
    "frechet_from_stats",
    "gaussian_stats",
    "generate_class_samples",
    "hybrid_scores",
    "load_classifier",
    "ordered_pairs",
    "per_class_accuracy",
    "pure_noise_scores",
    "sampler_name",
    "save_classifier",
    "to_unit",
    "train_classifier",
]
