"""`diffusionlab evaluate` on a single-step denoiser (B1) or a pure-noise denoiser (B1.2.3): loading what each
needs, the table it prints, the command stored in its JSON."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from diffusionlab.checks import check_batch
from diffusionlab.commands.score_table import format_table
from diffusionlab.errors import DiffusionLabError


def score_denoiser(m, model: str, n: int | None, sigma: float | None, seed: int, data_dir: Path | None) -> dict:
    """Print and return the scores of a single-step denoiser (test MSE; without the data set, on the shipped
    sample of the test set, said on the terminal) or a pure-noise one (distance to the mean training digit: it
    needs the train split)."""
    from diffusionlab.evaluation.denoiser import denoiser_scores, pure_noise_scores
    from diffusionlab.imagefolder import is_image_folder, load_any_split, open_image_folder
    from diffusionlab.testdigits import first_test_images

    data = m.config.get("data", "mnist")
    pure = bool(m.config.get("pure_noise"))
    if pure:  # its optimum is the mean of the train split: that split is needed
        if sigma is not None:
            raise DiffusionLabError(f"--sigma: {m.name} was trained on pure noise, it takes no noise level")
        check_batch(n or 256, m.image_shape)  # the draws go through the network in one batch
        try:
            train = load_any_split(data, "train", data_dir, data_dir is not None, m.image_shape[-1])
        except DiffusionLabError as e:
            if data_dir is not None:
                raise
            raise DiffusionLabError(f"scoring {m.name} needs the {data} train split: pass --data-dir ({e})") from None
        s = pure_noise_scores(m, train.images, n or 256, seed)
    else:  # the test set from --data-dir or the cache, else the shipped sample of it, named on the terminal
        if is_image_folder(data_dir):  # an image folder: its held-out images at the model's size
            images, source = open_image_folder(data_dir, m.image_shape[-1]).test.images[: n or None], str(data_dir)
        else:
            images, _, source = first_test_images(data, n or 10**9, data_dir)  # -n: the first n, else all of them
        print(f"test images: {source}")
        s = denoiser_scores(m, images, sigma, seed)
        s["test_images"] = source
    s["command"] = shlex.join(
        ["diffusionlab", "evaluate", "--model", str(model)]
        + (["-n", str(n)] if n else [])
        + (["--sigma", str(sigma)] if sigma is not None else [])
        + ["--seed", str(seed)]
    )
    print(format_denoiser_scores(s))
    return s


def format_denoiser_scores(s: dict[str, Any]) -> str:
    """The score table `diffusionlab evaluate` prints for a denoiser or a pure-noise denoiser."""
    if s["kind"] == "denoiser":
        rows = [
            ("model", f"{s['model']} (single-step denoiser, B1)"),
            ("test images", f"{s['n_images']} at sigma {s['sigma']:g}, seed {s['seed']}"),
            ("test MSE of D(x + sigma eps)", f"{s['test_mse']:.5f}"),
            ("MSE of the noisy input", f"{s['noisy_input_mse']:.5f} (doing nothing)"),
        ]
    else:
        rows = [
            ("model", f"{s['model']} (pure-noise denoiser, B1.2.3)"),
            ("draws of z", f"{s['n_draws']}, seed {s['seed']}"),
            ("MSE(D(z), mean training digit)", f"{s['mse_to_mean_digit']:.5f}"),
            ("pixel std of D(z) across z", f"{s['std_across_z']:.4f}"),
            ("data variance around its mean", f"{s['data_variance_around_mean']:.4f} (the least training loss)"),
        ]
    return format_table(rows)
