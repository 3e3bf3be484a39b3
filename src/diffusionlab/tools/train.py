"""Training as a tool (Part B): a course UNet from scratch with the course's recipe, into a run directory that
resumes exactly. Under torchrun every rank calls this; rank 0 writes the run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from diffusionlab.checks import check_output_folder


def default_run_dir(kind: str, objective: str = "ddpm", data: str = "mnist", pure_noise: bool = False) -> Path:
    suffix = "-flow" if objective == "flow" and kind != "denoiser" else ("-pure-noise" if pure_noise else "")
    return Path("runs") / f"{data}-{kind}{suffix}"


def train(
    kind: str,
    objective: str = "ddpm",
    data: str = "mnist",
    data_dir: str | Path | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    figures: bool = True,
    device: str | None = None,
    fast: bool = True,
    compile: bool = True,
    log_every: int = 50,
    save_every: int | None = None,
    precision: str | None = None,
    **recipe_overrides: Any,
) -> dict[str, Any]:
    """Train `kind` (denoiser, time, class) with `objective` (ddpm, flow) on `data`; every recipe value
    (epochs, batch_size, hidden, lr, num_steps, max_steps, seed, ema_decay, sigma, pure_noise) defaults to the
    course's. precision: fp32, bf16 or auto (bf16 only where measured faster; None: --precision, else
    $DIFFUSIONLAB_PRECISION, else auto). Returns the summary (epoch, step, loss, seconds, run_dir) on rank 0, None on the other ranks.

    Example: dl.train("class", data_dir="data/mnist", epochs=1, max_steps=50, out="runs/t")"""
    from diffusionlab.course_model import resolve_device
    from diffusionlab.data import load_split
    from diffusionlab.distributed import destroy, init_from_env
    from diffusionlab.figures.part_b import epoch_figures
    from diffusionlab.imagefolder import DEFAULT_IMAGE_SIZE, is_image_folder, open_image_folder, scan
    from diffusionlab.testdigits import first_test_images
    from diffusionlab.training import open_run, recipe

    folder = is_image_folder(data_dir)  # a folder of images (imagefolder.py), named after the folder
    if folder:
        data = Path(data_dir).name
        size = recipe_overrides.get("image_size") or DEFAULT_IMAGE_SIZE
        recipe_overrides |= dict(class_names=scan(data_dir)[2], image_size=size)  # listed, not decoded yet
    config = recipe(kind, objective, data=data, **recipe_overrides)
    run_dir = Path(out) if out is not None else default_run_dir(kind, objective, data, bool(config.pure_noise))
    check_output_folder(run_dir, "--out")  # a folder we can write, before the data is read
    ctx, dev = init_from_env(resolve_device(device))
    if folder:
        images = open_image_folder(data_dir, config.image_size)
        print(images.summary())
        config = replace(config, channels=images.channels).check()  # grey or RGB: decided by its images
        split = images.train
    else:
        split = load_split(data, "train", data_dir)
    hook = None
    if figures:
        # the figures' test digits: from data_dir or the cache like the train split, else the shipped sample
        if folder:
            test_digits, source = images.test.images[:8], f"the first 8 held-out images of {data_dir}"
        else:
            test_digits, _, source = first_test_images(data, 8, data_dir)
        test_images = (test_digits.float() / 255.0).to(dev)

        def hook(event) -> None:
            epoch_figures(event, test_images, config.epochs)

    trainer = open_run(
        config,
        run_dir,
        resume,
        device=dev,
        data_dir=data_dir,
        on_epoch_end=hook,
        fast=fast,
        compile=compile,
        log_every=log_every,
        save_every=save_every,
        precision=precision,
    )
    if ctx.is_main:
        print(trainer.first_line())  # the run's first line: device, threads, precision and why
        if figures:
            print(f"test images for the figures: {source}")
    try:
        summary = trainer.run(split)
    finally:
        destroy(ctx)
    if not ctx.is_main:
        return None
    return {**summary, "run_dir": run_dir, "config": config}
