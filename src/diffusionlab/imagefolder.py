"""A folder of images as a data set (issue 40): one subfolder per class (the subfolders' names become the prompts)
or a flat folder of images (an unconditional data set), in any format Pillow reads.

Rules, in one place:
- layout: a folder with IDX files is an MNIST-style data set (data.py); otherwise its subfolders are the classes
  (sorted by name) or, with no subfolders, its images are one unlabelled set. Images beside class subfolders are
  refused (which class would they be?). Hidden files (".DS_Store") are ignored.
- a file Pillow cannot read is skipped and counted (the loader says how many, and names the first).
- size: every image is resized so that its shorter side is image_size, then centre-cropped to a square.
- mode: a folder is grey (1 channel) when every image in it is grey (R = G = B after conversion); one colour image
  makes the whole folder RGB (3 channels), its grey images then repeat their value in the three channels.
  Transparent pixels are composited on white.
- memory: the images are decoded once into one uint8 tensor (N, C, S, S), refused before decoding when it would pass
  MAX_FOLDER_BYTES.
- split: a fixed, seeded HOLDOUT share of each class is held out as the "test" split (evaluate, FD); the rest trains.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from diffusionlab.data import Split, load_split
from diffusionlab.errors import DiffusionLabError

MAX_FOLDER_BYTES = 2 * 1024**3  # the decoded uint8 tensor of a whole folder
HOLDOUT = 0.1  # share of each class held out as the test split
HOLDOUT_SEED = 0  # the split is the same on every run, so evaluate's test images were never trained on
DEFAULT_IMAGE_SIZE = 32
IDX_MARK = "-ubyte"  # train-images-idx3-ubyte(.gz): an MNIST-style folder


@dataclass(frozen=True)
class ImageFolder:
    """A decoded image folder: its train and held-out test splits (uint8 (N, C, S, S), int64 labels)."""

    name: str
    root: Path
    train: Split
    test: Split
    class_names: tuple[str, ...]  # () for a flat (unconditional) folder
    channels: int
    image_size: int
    skipped: tuple[str, ...]  # files Pillow could not read

    def summary(self) -> str:
        classes = f"{len(self.class_names)} classes" if self.class_names else "no classes (a flat folder)"
        mode = "RGB" if self.channels == 3 else "grey"
        line = (
            f"image folder {self.root}: {len(self.train) + len(self.test)} images ({len(self.train)} train, "
            f"{len(self.test)} held out as test), {classes}, {mode} {self.image_size}x{self.image_size}"
        )
        if self.skipped:
            line += f"; skipped {len(self.skipped)} files that are not images (first: {self.skipped[0]})"
        return line

    def split(self, which: str) -> Split:
        if which not in ("train", "test"):
            raise DiffusionLabError(f"unknown split {which!r} (train or test)")
        return self.train if which == "train" else self.test


def is_idx_folder(path: str | Path) -> bool:
    """A folder holding MNIST-style IDX files (read by data.py as before)."""
    folder = Path(path)
    return folder.is_dir() and any(IDX_MARK in p.name for p in folder.iterdir() if p.is_file())


def is_image_folder(path: str | Path | None) -> bool:
    """A --data-dir that this module reads: a folder that holds no IDX files."""
    return path is not None and Path(path).is_dir() and not is_idx_folder(path)


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def scan(root: str | Path) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """The candidate files, their labels (0 for a flat folder) and the class names; nothing is decoded yet."""
    root = Path(root)
    if not root.is_dir():
        raise DiffusionLabError(f"--data-dir {root}: no such folder")
    entries = _visible(root)
    subdirs = [p for p in entries if p.is_dir()]
    files = [p for p in entries if p.is_file()]
    if not subdirs:
        return files, [0] * len(files), ()
    if files:
        raise DiffusionLabError(
            f"{root}: holds both files ({files[0].name}, ...) and class subfolders ({subdirs[0].name}, ...); "
            "put every image in a class subfolder, or use a flat folder without subfolders"
        )
    paths, labels = [], []
    for label, sub in enumerate(subdirs):
        inside = [p for p in _visible(sub) if p.is_file()]
        if not inside:
            raise DiffusionLabError(f"{sub}: class folder {sub.name!r} holds no files; remove it or add images")
        paths += inside
        labels += [label] * len(inside)
    return paths, labels, tuple(p.name for p in subdirs)


def check_budget(n_files: int, image_size: int, root: Path, budget: int = MAX_FOLDER_BYTES) -> None:
    """Refuse a folder whose decoded tensor (counted as RGB, the most it can be) would pass the budget."""
    need = n_files * 3 * image_size * image_size
    if need > budget:
        raise DiffusionLabError(
            f"{root}: {n_files} files x 3 x {image_size} x {image_size} bytes = {need / 2**30:.2f} GiB decoded, "
            f"above the {budget / 2**30:.2f} GiB budget; use a smaller --image-size or fewer images"
        )


def centre_square(image: Image.Image, size: int) -> Image.Image:
    """The centred square of the shorter side, resized to size x size (cropped first: nothing outside it blurs in)."""
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return square if side == size else square.resize((size, size), Image.Resampling.LANCZOS)


def decode(path: Path, image_size: int) -> np.ndarray | None:
    """One image as uint8 (S, S, 3), resized (shorter side S) and centre-cropped; None when Pillow cannot read it."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (image_size, image_size))  # JPEG: decode at a reduced scale when that is enough
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            rgb = im.convert("RGB")
            return np.asarray(centre_square(rgb, image_size), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def holdout_indices(labels: np.ndarray, share: float = HOLDOUT, seed: int = HOLDOUT_SEED) -> np.ndarray:
    """A fixed, seeded share of each class (at least one image of a class with two or more), sorted."""
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        k = max(1, round(share * len(members))) if len(members) >= 2 else 0
        held.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)


def read_image_folder(root: str | Path, image_size: int = DEFAULT_IMAGE_SIZE) -> ImageFolder:
    """Decode a folder once (rules in the module's docstring); one-line errors for the folders it cannot use."""
    root = Path(root)
    paths, labels, class_names = scan(root)
    if not paths:
        raise DiffusionLabError(f"{root}: no images in it; put images (any format Pillow reads) or class subfolders")
    check_budget(len(paths), image_size, root)
    arrays, kept, skipped = [], [], []
    for path, label in zip(paths, labels, strict=True):
        array = decode(path, image_size)
        if array is None:
            skipped.append(str(path.relative_to(root)))
            continue
        arrays.append(array)
        kept.append(label)
    if len(arrays) < 2:
        what = "no images" if not arrays else "1 image"
        raise DiffusionLabError(
            f"{root}: {what} Pillow can read ({len(skipped)} other files skipped); a data set needs at least 2 "
            f"(a {HOLDOUT:.0%} share is held out as the test split)"
        )
    for label, name in enumerate(class_names):
        if label not in kept:
            raise DiffusionLabError(f"{root / name}: class folder {name!r} holds no image Pillow can read")
    stacked = np.stack(arrays)  # (N, S, S, 3)
    grey = bool((stacked[..., 0] == stacked[..., 1]).all() and (stacked[..., 1] == stacked[..., 2]).all())
    images = torch.from_numpy(stacked[..., :1] if grey else stacked).permute(0, 3, 1, 2).contiguous()
    label_tensor = torch.tensor(kept, dtype=torch.int64)
    test = torch.from_numpy(holdout_indices(label_tensor.numpy()))
    is_test = torch.zeros(len(kept), dtype=torch.bool)
    is_test[test] = True
    digest = {root.name: _digest(images, label_tensor)}
    return ImageFolder(
        root.name,
        root,
        Split(images[~is_test].contiguous(), label_tensor[~is_test], digest),
        Split(images[is_test].contiguous(), label_tensor[is_test], digest),
        class_names,
        1 if grey else 3,
        image_size,
        tuple(skipped),
    )


def _digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    """The md5 of the decoded images and labels: what a run trained on, whatever the files' formats."""
    h = hashlib.md5(images.numpy().tobytes())
    h.update(labels.numpy().tobytes())
    return h.hexdigest()


_LAST: dict = {}  # the last folder decoded: evaluate reads its test and train splits from one decoding


def open_image_folder(root: str | Path, image_size: int | None = None) -> ImageFolder:
    """read_image_folder, decoded once per (folder, size) in a process."""
    key = (str(Path(root).resolve()), image_size or DEFAULT_IMAGE_SIZE)
    if key not in _LAST:
        _LAST.clear()
        _LAST[key] = read_image_folder(root, key[1])
    return _LAST[key]


def load_any_split(
    data: str, which: str, data_dir: str | Path | None, download: bool = True, image_size: int | None = None
) -> Split:
    """One split of an IDX data set (data.load_split, as before) or of an image folder (data_dir without IDX files,
    its held-out share being the test split)."""
    if is_image_folder(data_dir):
        return open_image_folder(data_dir, image_size).split(which)
    return load_split(data, which, data_dir, download)
