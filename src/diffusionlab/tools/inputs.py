"""What a tool takes from its user, made into tensors once for every front-end: the model (a name or a loaded
one), images (test:N, a file, a PIL image or a tensor), prompts, the seed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from diffusionlab.errors import DiffusionLabError

ImageInput = str | Path | Image.Image | Tensor


def as_model(model: Any, device: str | None = None):
    """A loaded model as it is; a name, run directory or checkpoint is loaded (backends.load_model)."""
    if isinstance(model, str | Path):
        from diffusionlab.backends import load_model

        return load_model(model, device)
    return model


def _test_image(model, spec: str, data_dir: Path | None) -> tuple[Tensor, str]:
    from diffusionlab.data import to_float
    from diffusionlab.imagefolder import is_image_folder, open_image_folder
    from diffusionlab.testdigits import load_test_images

    data = model.data
    if data is None:
        raise DiffusionLabError(f"--image {spec}: test:N needs one of our MNIST-like models; give a file")
    try:
        idx = int(spec[5:])
    except ValueError:
        raise DiffusionLabError(f"--image {spec}: N in test:N must be an integer") from None
    if is_image_folder(data_dir):  # an image folder: its held-out images, at the model's size
        test = open_image_folder(data_dir, model.image_shape[-1]).test
        if not 0 <= idx < len(test):
            raise DiffusionLabError(
                f"--image {spec}: {data_dir} holds {len(test)} held-out images (test:0 to test:{len(test) - 1})"
            )
        return to_float(test.images[idx : idx + 1], model.value_range), f"held-out images of {data_dir}"
    test_image, _, source = load_test_images(data, [idx], data_dir)
    return to_float(test_image, model.value_range), source


def _tensor_image(model, x: Tensor) -> Tensor:
    x = x.unsqueeze(0) if x.dim() == 3 else x
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(model.image_shape):
        raise DiffusionLabError(
            f"an image tensor must be (C, H, W) or (N, C, H, W) = {tuple(model.image_shape)}, got {tuple(x.shape)}"
        )
    return x.float()


def load_inputs(
    model, images: ImageInput | Sequence[ImageInput], data_dir: str | Path | None = None, invert: bool = False
) -> tuple[Tensor, list[str], list[str]]:
    """Images -> ((k, C, H, W) in the model's value range, a short label each, the test-image sources used).

    test:N comes from diffusionlab.testdigits (data_dir, the cache or the shipped sample; never a download); files
    and PIL images are resized and centre-cropped to the model's size; tensors are taken as in its value range.
    invert turns black-on-white drawings into MNIST's white on black."""
    from diffusionlab.images import load_image, pil_to_tensor

    specs = list(images) if isinstance(images, list | tuple) else [images]
    if not specs:
        raise DiffusionLabError("no --image given; pass a PNG/JPEG file or test:N (test image N of the data set)")
    lo, hi = model.value_range
    out, labels, sources = [], [], []
    for spec in specs:
        if isinstance(spec, Tensor):
            out.append(_tensor_image(model, spec))
            labels += [f"image {len(labels) + k}" for k in range(out[-1].shape[0])]
            continue
        if isinstance(spec, Image.Image):
            out.append(pil_to_tensor(spec, model.image_shape, model.value_range, invert))
            labels.append(f"image {len(labels)}")
            continue
        spec = str(spec)
        if spec.startswith("test:"):
            x, source = _test_image(model, spec, Path(data_dir) if data_dir else None)
            out.append(lo + hi - x if invert else x)
            labels.append(f"test {spec[5:]}")
            sources += [source] if source not in sources else []
        else:
            out.append(load_image(spec, model.image_shape, model.value_range, invert))
            labels.append(Path(spec).stem[:12])
    return torch.cat(out).to(model.device), labels, sources


def prompt_of(model, prompt: str | int | None) -> str:
    """The prompt, or the model's unconditional one; an unknown prompt fails here with the list of valid ones."""
    from diffusionlab.edits import unconditional_prompt

    ps = [unconditional_prompt(model)] if prompt is None else prompt_list(prompt)
    if len(ps) != 1:
        raise DiffusionLabError(f"this tool takes one prompt, got {len(ps)}: {ps}")
    model.encode(ps)
    return ps[0]


def prompt_list(prompts: Any) -> list[str]:
    """What the CLI accepts as prompts, as the tools take them: None (no prompt), one prompt or a list of them, each
    text ("3", "three", "a rocket ship") or a class index (the int 3 is the prompt "3"); anything else is refused in
    one line."""
    if prompts is None:
        return []
    one = isinstance(prompts, str | int) and not isinstance(prompts, bool)
    items = [prompts] if one else list(prompts) if isinstance(prompts, list | tuple) else [prompts]
    for p in items:
        if isinstance(p, bool) or not isinstance(p, str | int):
            raise DiffusionLabError(f"a prompt is text or a class index (e.g. '3', 'three' or 3), not {p!r}")
    return [str(p) for p in items]


def cfg_scale(model, scale: float | None) -> float | None:
    """The CFG scale a tool guides with and records: the given one, else the model's default; a model that takes
    no prompt takes no scale either (None; one given is refused in one line)."""
    from diffusionlab.edits import default_scale

    if not model.conditioned:
        if scale is not None:
            raise DiffusionLabError(f"{model.name} is not class-conditioned: it takes no CFG scale; drop --cfg")
        return None
    return default_scale(model) if scale is None else scale


def model_name(model) -> str:
    """The name that loads the model again: the spec backends.load_model was given, else the shipped name whose
    weights file the model's name is (the shipped class DDPM "mnist-class" loads as "mnist"), else its name."""
    from diffusionlab.shipped_models import shipped_name

    return str(model.spec) if model.spec is not None else shipped_name(model.name) or model.name


def prompts_of(model, prompts: Sequence[str]) -> list[str]:
    """Validate (and, for IF, cache the embeddings of) several prompts with ONE encode call: one T5 load at most."""
    model.encode(list(prompts))
    return list(prompts)


def default_noise_levels(model) -> list[int]:
    """T/4, T/2, 3T/4: the course's 250, 500, 750 for T = 1000 (75, 150, 225 for T = 300)."""
    T = model.schedule.num_steps
    return [T // 4, T // 2, 3 * T // 4]


def safe_name(s: str) -> str:
    """A label as part of a file name."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in s) or "none"
