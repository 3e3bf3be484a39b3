"""Image folders as data sets (issue 40): layout, size, mode, skipped files, held-out split, bad folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_idx_dir
from PIL import Image

from diffusionlab.errors import DiffusionLabError
from diffusionlab.imagefolder import (
    check_budget,
    holdout_indices,
    is_image_folder,
    load_any_split,
    read_image_folder,
)
from diffusionlab.shapes import SHAPES, make_shapes
from diffusionlab.training import recipe


def solid(path: Path, colour, size=(12, 10), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


def class_folder(root: Path) -> Path:
    """red/ (4 PNGs, one grey), blue/ (3 JPEGs of other sizes) and a text file among them."""
    for i in range(3):
        solid(root / "red" / f"{i}.png", (200 + i, 10, 10))
    solid(root / "red" / "grey.png", 128, mode="L")
    for i in range(3):
        solid(root / "blue" / f"{i}.jpg", (0, 0, 255), size=(20 + 7 * i, 16))
    (root / "blue" / "notes.txt").write_text("not an image")
    (root / "blue" / ".DS_Store").write_bytes(b"\0")
    return root


def test_class_folder_names_labels_and_skipped(tmp_path: Path) -> None:
    folder = read_image_folder(class_folder(tmp_path / "pets"), 8)
    assert folder.class_names == ("blue", "red")  # sorted subfolder names are the prompts
    assert folder.channels == 3
    assert folder.skipped == ("blue/notes.txt",)  # the hidden file is not counted
    assert len(folder.train) + len(folder.test) == 7
    assert folder.train.images.shape[1:] == (3, 8, 8) and folder.train.images.dtype == torch.uint8
    # one image of each class held out (10 % of 3 or 4, at least one)
    assert sorted(folder.test.labels.tolist()) == [0, 1]
    assert "skipped 1 files that are not images (first: blue/notes.txt)" in folder.summary()
    grey = torch.cat([folder.train.images, folder.test.images])
    grey = grey[(grey[:, 0] == grey[:, 1]).all(-1).all(-1) & (grey[:, 1] == grey[:, 2]).all(-1).all(-1)]
    assert grey.shape[0] == 1 and int(grey[0, 0, 0, 0]) == 128  # a grey image in a colour folder: R = G = B


def test_resize_and_centre_crop(tmp_path: Path) -> None:
    # 40 wide, 20 high: red, with its middle 20 columns green; shorter side -> 8, centre crop = the green square
    image = np.zeros((20, 40, 3), np.uint8)
    image[..., 0] = 255
    image[:, 10:30] = (0, 255, 0)
    for i in range(2):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    folder = read_image_folder(tmp_path, 8)
    x = torch.cat([folder.train.images, folder.test.images])
    assert x.shape == (2, 3, 8, 8)
    assert (x[:, 1] == 255).all() and (x[:, 0] == 0).all()


def test_grey_folder_has_one_channel(tmp_path: Path) -> None:
    for i in range(4):
        solid(tmp_path / "a" / f"{i}.png", 10 * i, mode="L")
        solid(tmp_path / "b" / f"{i}.png", (50, 50, 50))  # RGB mode, grey content: still grey
    folder = read_image_folder(tmp_path, 4)
    assert folder.channels == 1 and folder.train.images.shape[1:] == (1, 4, 4)


def test_transparent_pixels_are_white(tmp_path: Path) -> None:
    for i in range(2):
        solid(tmp_path / f"{i}.png", (255, 0, 0, 0), mode="RGBA")
    x = read_image_folder(tmp_path, 4).train.images
    assert (x == 255).all()


def test_holdout_is_fixed_stratified_and_disjoint() -> None:
    labels = np.array([0] * 30 + [1] * 10 + [2])
    held = holdout_indices(labels)
    assert np.array_equal(held, holdout_indices(labels))  # seeded: the same every run
    assert np.bincount(labels[held], minlength=3).tolist() == [3, 1, 0]  # 10 %, at least one, none of one image


def test_flat_folder_is_unconditional(tmp_path: Path) -> None:
    for i in range(5):
        solid(tmp_path / "flat" / f"{i}.png", (i * 40, 0, 0))
    folder = read_image_folder(tmp_path / "flat", 8)
    assert folder.class_names == () and set(folder.train.labels.tolist()) == {0}
    with pytest.raises(DiffusionLabError, match="flat image folder has no classes; train a time model"):
        recipe("class", data="flat", class_names=(), image_size=8, channels=3)
    assert recipe("time", data="flat", class_names=(), image_size=8, channels=3).unet_config().num_classes == 0


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: d.mkdir(), "no images in it"),
        (lambda d: solid(d / "only.png", (1, 2, 3)), "1 image Pillow can read"),
        (lambda d: (d.mkdir(), (d / "a.txt").write_text("x"), (d / "b.txt").write_text("y")), "no images Pillow"),
        (lambda d: (solid(d / "x.png", 0), solid(d / "cats" / "c.png", 0)), "holds both files"),
        (lambda d: (solid(d / "cats" / "c.png", 0), (d / "dogs").mkdir()), "class folder 'dogs' holds no files"),
    ],
    ids=["empty", "one-image", "no-readable", "files-and-classes", "empty-class"],
)
def test_bad_folders_are_one_line_errors(tmp_path: Path, make, message: str) -> None:
    root = tmp_path / "bad"
    make(root)
    with pytest.raises(DiffusionLabError, match=message) as e:
        read_image_folder(root, 8)
    assert "\n" not in str(e.value)


def test_memory_budget_is_refused_with_the_numbers(tmp_path: Path) -> None:
    with pytest.raises(DiffusionLabError, match=r"1000 files x 3 x 32 x 32 bytes = 0.00 GiB decoded, above the"):
        check_budget(1000, 32, tmp_path, budget=1000)


def test_idx_folders_are_read_as_before(tmp_path: Path) -> None:
    idx = make_idx_dir(tmp_path / "idx")
    assert not is_image_folder(idx)
    assert load_any_split("mnist", "test", idx).images.shape == (32, 1, 28, 28)
    assert is_image_folder(class_folder(tmp_path / "pets"))


def test_image_size_must_fit_the_unet() -> None:
    with pytest.raises(DiffusionLabError, match="--image-size must be a positive multiple of 4"):
        recipe("class", data="pets", class_names=("a", "b"), image_size=30, channels=3)
    with pytest.raises(DiffusionLabError, match="IDX data are 28 px"):
        recipe("class", data="mnist", image_size=32)


def test_make_shapes_is_a_class_folder(tmp_path: Path) -> None:
    assert make_shapes(tmp_path / "shapes", per_class=3, size=16) == {s: 3 for s in SHAPES}
    folder = read_image_folder(tmp_path / "shapes", 16)
    assert folder.class_names == tuple(sorted(SHAPES)) and folder.channels == 3
    x = torch.cat([folder.train.images, folder.test.images]).float()
    assert (x[:, :, 0, 0] > 200).all()  # white corners: the shape lies inside the image
    with pytest.raises(DiffusionLabError, match="is not an empty folder"):
        make_shapes(tmp_path / "shapes", per_class=1)
