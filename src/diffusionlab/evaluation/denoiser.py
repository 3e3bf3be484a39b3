"""Scores of the single-step denoisers (Part B1): the test MSE at a noise level, and what a pure-noise denoiser
(Fall 2025 B1.2.3) makes of noise, measured against the mean training digit it should converge to."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from diffusionlab.data import to_float
from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_protocol import generator_for, randn
from diffusionlab.progress import bar as progress_bar


def _require_denoiser(model: Any, pure_noise: bool) -> None:
    model.require("denoiser", what="denoiser scores")
    if bool(model.config.get("pure_noise")) != pure_noise:
        trained = "pure noise" if model.config.get("pure_noise") else "noisy digits"
        raise DiffusionLabError(f"{model.name} was trained on {trained}; it is scored by the other denoiser score")


@torch.no_grad()
def denoiser_scores(
    model: Any,
    test_images: Tensor,
    sigma: float | None = None,
    seed: int = 0,
    batch_size: int = 250,
    progress: bool = True,
) -> dict[str, Any]:
    """B1's figure of merit: mean over test images and pixels of (D(x + sigma eps) - x)^2, x in the model's value
    range (the training loss, on images it never saw; test_images uint8 (N, 1, H, W)). sigma defaults to the level
    it was trained at. Also the MSE of the noisy input itself, the do-nothing baseline (about sigma^2)."""
    _require_denoiser(model, pure_noise=False)
    sigma = float(model.config.get("sigma", 0.5) if sigma is None else sigma)
    if not (sigma >= 0 and sigma < float("inf")):
        raise DiffusionLabError(f"--sigma must be a finite number >= 0, got {sigma}")
    gen = generator_for(seed)
    sq_err = sq_noisy = 0.0
    bar = progress_bar(None, progress, total=len(test_images), desc="denoising", unit="image")
    for chunk in test_images.split(batch_size):
        x = to_float(chunk, tuple(model.value_range)).to(model.device)
        z = x + sigma * randn(x.shape, gen, device=model.device)
        sq_err += float((model.denoise_once(z).float() - x).pow(2).sum())
        sq_noisy += float((z - x).pow(2).sum())
        bar.update(len(chunk))
    bar.close()
    count = test_images.numel()
    return {
        "model": model.name,
        "kind": "denoiser",
        "sigma": sigma,
        "n_images": len(test_images),
        "seed": int(seed),
        "test_mse": sq_err / count,
        "noisy_input_mse": sq_noisy / count,
    }


@torch.no_grad()
def pure_noise_scores(model: Any, train_images: Tensor, n: int = 256, seed: int = 0) -> dict[str, Any]:
    """B1.2.3: a denoiser trained on z ~ N(0, I) has the mean training digit as its L2 optimum for every z. Over
    `n` draws of z: MSE(D(z), that mean), the pixel std of D(z) across z (how little z matters), and the data's
    variance around its mean (the least training loss any function of pure noise can reach); train_images uint8."""
    _require_denoiser(model, pure_noise=True)
    data = to_float(train_images, tuple(model.value_range))
    mean = data.mean(0, keepdim=True).to(model.device)
    gen = generator_for(seed)
    out = model.denoise_once(randn((n, *model.image_shape), gen, device=model.device)).float()
    return {
        "model": model.name,
        "kind": "pure-noise denoiser",
        "n_draws": n,
        "seed": int(seed),
        "mse_to_mean_digit": float((out - mean).pow(2).mean()),
        "std_across_z": float(out.std(0).mean()),
        "data_variance_around_mean": float((data - mean.cpu()).pow(2).mean()),
    }
