"""The test-image picker: genuine MNIST / Fashion-MNIST test images (the full test set from the cache when it is
there, else the sample of 100 shipped in the package; never a download), so the image tabs work without an upload.

A pick is the image's index as text ("7"), or "" for "my own upload or drawing". The handlers read a pick as the
tools' `test:N` does, so the image is exactly the test image and the settings name its source; the picture shown
on the page (upscaled) is only for the eye, and a field that holds anything else is the user's own image."""

from __future__ import annotations

from typing import Any

from PIL import Image
from torch import Tensor

from diffusionlab.app.inputs import as_int
from diffusionlab.app.pictures import flatten, to_picture

NO_PICK = ""
NO_PICK_LABEL = "none: my upload or drawing"
PICKER_SIZE = 100  # the shipped sample's size: every pick works on a fresh clone
PICTURE_SCALE = 10  # 28 px -> 280 px on the page, so a mask can be painted on it


def model_data(model) -> str | None:
    """The data set an MNIST-like model of ours was trained on ("mnist", "fashion-mnist"), else None (also for a
    model trained on an image folder: the page has no folder to pick its held-out images from)."""
    from diffusionlab.data import DATASETS

    return model.data if model.data in DATASETS else None


def test_choices(model) -> list[tuple[str, str]]:
    """The picker's (label, value) pairs for the model's data set: "test 0: 7", ...; only NO_PICK for other models."""
    from diffusionlab.data import dataset_info
    from diffusionlab.testdigits import first_test_images

    data = None if model is None else model_data(model)
    if data is None:
        return [(NO_PICK_LABEL, NO_PICK)]
    _, labels, _ = first_test_images(data, PICKER_SIZE)
    names = dataset_info(data).class_names
    return [(NO_PICK_LABEL, NO_PICK)] + [(f"test {i}: {names[int(k)]}", str(i)) for i, k in enumerate(labels)]


def pick_index(pick: Any) -> int | None:
    """The picker's value -> a test-image index, None for NO_PICK; anything else is a one-line error."""
    if pick is None or str(pick).strip() == NO_PICK:
        return None
    return as_int(pick, "test image", 0, 10**6)  # the test set's own size is checked when it is read


def same_picture(im: Image.Image, picture: Image.Image) -> bool:
    """Whether an image from the page is exactly the picture made for a test image (the editor sends its background
    back under a new name, so its pixels tell)."""
    import numpy as np

    if im.size != picture.size:
        return False
    mode = picture.mode if picture.mode in ("L", "RGB") else "RGB"
    return bool(np.array_equal(np.asarray(flatten(im).convert(mode)), np.asarray(picture.convert(mode))))


def test_tensor(model, index: int) -> tuple[Tensor, str]:
    """Test image `index` of the model's data set: ((1, C, H, W) in the model's value range, its source line), as
    the tools' `test:N` reads it (tools.inputs.load_inputs: the cache, else the shipped sample of 100)."""
    from diffusionlab.tools.inputs import load_inputs

    x, _, sources = load_inputs(model, f"test:{as_int(index, 'test image', 0, 10**6)}")
    return x.to(model.device), sources[0]


def test_picture(model, index: int) -> Image.Image:
    """The test image as a picture for the page (upscaled, nearest neighbour: the pixels as the model sees them)."""
    x, _ = test_tensor(model, index)
    return to_picture(x[0], model, PICTURE_SCALE)


def invert_flag(invert: Any) -> bool:
    """The invert radio for a test image: only "yes" inverts (test images already look as the model wants)."""
    return str(invert) == "yes"
