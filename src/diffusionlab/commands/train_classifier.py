"""`diffusionlab train-classifier`: the small CNN that `evaluate` scores samples with."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from diffusionlab.checks import check_output_file
from diffusionlab.commands.common import DeviceOpt, ForceOpt, SeedOpt, wrote
from diffusionlab.commands.evaluate import DataDirOpt
from diffusionlab.errors import DiffusionLabError


def train_classifier(
    data: Annotated[str, typer.Option("--data", help="mnist or fashion-mnist.")] = "mnist",
    data_dir: DataDirOpt = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the train split.")] = 5,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 128,
    lr: Annotated[float, typer.Option("--lr", help="Peak AdamW learning rate (one-cycle schedule).")] = 3e-3,
    max_shift: Annotated[int, typer.Option("--max-shift", help="Random shifts of up to this many pixels.")] = 2,
    out: Annotated[Path | None, typer.Option("--out", help="Output .safetensors (JSON beside it).")] = None,
    float16: Annotated[bool, typer.Option("--float16/--float32", help="Store the weights in float16.")] = True,
    seed: SeedOpt = 0,
    force: ForceOpt = False,
    device: DeviceOpt = "auto",
    image_size: Annotated[
        int | None, typer.Option(help="Image folder: the size its model was trained at (default 32).")
    ] = None,
) -> None:
    """Train the scoring classifier (a small CNN) on a data set's train split and report its test accuracy.
    An image folder (--data-dir with one subfolder per class) trains on its train part and is tested on its
    held-out part, at --image-size.

    Example: diffusionlab train-classifier --data mnist --data-dir data/mnist --out mnist-classifier.safetensors
    """
    import torch

    from diffusionlab.course_model import resolve_device
    from diffusionlab.data import dataset_info
    from diffusionlab.evaluation.classifier import train_classifier as train_fn
    from diffusionlab.imagefolder import is_image_folder
    from diffusionlab.networks.unet import check_image_size

    if is_image_folder(data_dir):
        data = data_dir.name
        check_image_size(image_size or 32)
    else:
        dataset_info(data)
        if image_size is not None:
            raise DiffusionLabError("--image-size is for a --data-dir of images; IDX data are 28 px")
    out = out or Path(f"{data}-classifier.safetensors")
    if out.suffix != ".safetensors":
        raise DiffusionLabError(f"--out {out}: the classifier file must end in .safetensors")
    check_output_file(out, force)
    check_output_file(out.with_suffix(".json"), force)
    command = shlex.join(
        ["diffusionlab", "train-classifier", "--data", data]
        + (["--data-dir", str(data_dir)] if data_dir else [])
        + ["--epochs", str(epochs), "--batch-size", str(batch_size), "--lr", str(lr), "--max-shift", str(max_shift)]
        + ["--out", str(out), "--seed", str(seed)]
        + (["--image-size", str(image_size)] if image_size else [])
        + ([] if float16 else ["--float32"])
    )
    clf, acc = train_fn(
        data,
        data_dir,
        epochs,
        batch_size,
        lr,
        seed,
        max_shift=max_shift,
        out_path=out,
        device=resolve_device(device),
        dtype=torch.float16 if float16 else None,
        command=command,
        image_size=image_size,
    )
    secs = clf.config["provenance"]["train_seconds"]
    print(f"{data} classifier: test accuracy {100 * acc:.2f} % after {epochs} epochs ({secs:.0f} s)")
    wrote(out, out.with_suffix(".json"))


def register(app: typer.Typer) -> None:
    app.command("train-classifier")(train_classifier)
