"""Part B figures: the noising grid, denoiser results and sigma sweep, class/time samples, sampling GIFs.

Used at the end of training epochs (written into the run directory) and by `reproduce`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from diffusionlab.course_model import CourseModel
from diffusionlab.figures.grid import save_gif, save_grid
from diffusionlab.model_protocol import generator_for, randn
from diffusionlab.sampling import generate

NOISE_SIGMAS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0)


def noising_grid(images: Tensor, path: Path, sigmas: Sequence[float] = NOISE_SIGMAS, seed: int = 0) -> Path:
    """B1: z = x + sigma eps for each sigma (columns), one row per test digit."""
    g = generator_for(seed)
    noisy = [images + s * randn(images.shape, g, like=images) for s in sigmas]
    grid = torch.stack(noisy, dim=1).flatten(0, 1)
    return save_grid(grid, path, len(sigmas), col_labels=[f"sigma={s}" for s in sigmas], title="z = x + sigma eps")


def denoiser_results(
    model: CourseModel, images: Tensor, path: Path, sigma: float = 0.5, title: str = "", seed: int = 0
) -> Path:
    """B1: input / noisy (sigma) / denoised, one row per test digit."""
    g = generator_for(seed)
    x = images.to(model.device)
    z = x + sigma * randn(x.shape, g, like=x)
    out = model.denoise_once(z)
    grid = torch.stack([x, z, out], dim=1).flatten(0, 1)
    return save_grid(grid, path, 3, col_labels=["input", f"noisy sigma={sigma}", "denoised"], title=title)


PURE_NOISE_CAPTION = (
    "A denoiser trained on pure noise (z ~ N(0, I), no trace of the digit) cannot tell which digit to make, so the "
    "L2-optimal answer for every input is the same: the mean of the training digits, a blurry superposition of all "
    "of them. Its outputs barely depend on z; a model that adds noise step by step (B2) is what can sample digits."
)


def pure_noise_results(model: CourseModel, path: Path, n: int = 8, title: str = "", seed: int = 0) -> Path:
    """Fall 2025 B1.2.3: inputs z ~ N(0, I) (top) and what the pure-noise denoiser makes of them (bottom)."""
    g = generator_for(seed)
    z = randn((n, *model.image_shape), g, device=model.device)
    grid = torch.cat([z, model.denoise_once(z)])
    return save_grid(grid, path, n, row_labels=["pure noise z", "D(z)"], title=title)


def sigma_sweep(
    model: CourseModel, images: Tensor, path: Path, sigmas: Sequence[float] = NOISE_SIGMAS, seed: int = 0
) -> Path:
    """B1 out-of-distribution test: noisy (top) and denoised (bottom) for each sigma, per digit."""
    g = generator_for(seed)
    x = images.to(model.device)
    rows = []
    for img in x:
        noisy = torch.stack([img + s * randn(img.shape, g, like=img) for s in sigmas])
        rows += [noisy, model.denoise_once(noisy)]
    labels = [lab for i in range(len(x)) for lab in (f"noisy {i}", f"denoised {i}")]
    return save_grid(
        torch.cat(rows),
        path,
        len(sigmas),
        col_labels=[f"{s}" for s in sigmas],
        row_labels=labels,
        title="trained at sigma=0.5; tested at other sigmas",
    )


def class_samples(
    model: CourseModel,
    path: Path,
    per_class: int = 4,
    scale: float = 5.0,
    seed: int = 0,
    title: str = "",
    gif: Path | None = None,
    **kwargs,
) -> list[Path]:
    """B2.4 / B3: `per_class` samples of each class, one column per class."""
    frames: list[Tensor] | None = [] if gif else None
    prompts = [str(i) for i in range(model.num_classes)]
    x = generate(model, prompts, per_class, scale, seed, frames=frames, **kwargs)
    # one column per class: reorder (class, k) -> (k, class)
    order = torch.arange(len(x)).reshape(len(prompts), per_class).t().reshape(-1)
    names = [model.class_names[i] for i in range(len(prompts))]
    out = [save_grid(x[order], path, len(prompts), model.value_range, col_labels=names, title=title)]
    if gif:
        out.append(save_gif([f[order] for f in frames], gif, len(prompts), model.value_range))
    return out


def time_samples(
    model: CourseModel, path: Path, n: int = 40, seed: int = 0, title: str = "", gif: Path | None = None, **kwargs
) -> list[Path]:
    """B2 / B3 time-only: n unconditional samples."""
    frames: list[Tensor] | None = [] if gif else None
    x = generate(model, None, n, seed=seed, frames=frames, **kwargs)
    out = [save_grid(x, path, 10, model.value_range, title=title)]
    if gif:
        out.append(save_gif(frames, gif, 10, model.value_range))
    return out


SAMPLE_EPOCHS = {"ddpm": (5, 20), "flow": (1, 5, 10)}
DENOISER_EPOCHS = (1, 5)


def epoch_figures(event, test_images: Tensor, final_epoch: int, progress: bool = False) -> list[Path]:
    """The figures a run writes after an epoch (a Trainer on_epoch_end hook): what SPEC Part B asks for."""
    model, run_dir, epoch = event.model, event.run_dir, event.epoch
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if event.partial:  # a --max-steps run stopped inside an epoch: quick runs stay quick
        return written
    last = epoch == final_epoch
    if model.network_kind == "denoiser" and model.config.get("pure_noise"):
        if epoch in DENOISER_EPOCHS or last:
            path = fig_dir / f"pure_noise_epoch{epoch}.png"
            written.append(pure_noise_results(model, path, title=f"pure-noise denoiser after epoch {epoch}"))
        return written
    if model.network_kind == "denoiser":
        if epoch == 1:
            written.append(noising_grid(test_images[:6], fig_dir / "noising_grid.png"))
        if epoch in DENOISER_EPOCHS or last:
            written.append(
                denoiser_results(
                    model, test_images[:6], fig_dir / f"denoised_epoch{epoch}.png", title=f"after epoch {epoch}"
                )
            )
        if last:
            written.append(sigma_sweep(model, test_images[:3], fig_dir / "sigma_sweep.png"))
        return written
    epochs = SAMPLE_EPOCHS[model.objective]
    if epoch not in epochs and not last:
        return written
    gif = fig_dir / "sampling.gif" if last else None
    title = f"after epoch {epoch}"
    if model.network_kind == "class":
        written += class_samples(model, fig_dir / f"samples_epoch{epoch}.png", title=title, gif=gif, progress=progress)
    else:
        written += time_samples(model, fig_dir / f"samples_epoch{epoch}.png", title=title, gif=gif, progress=progress)
    return written
