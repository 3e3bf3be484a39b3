"""Test images of MNIST / Fashion-MNIST by index, with no download: the full test split from --data-dir or the
cache when it is there, else the sample shipped in the package (the first 100 test images; see
data_sample/NOTICE.md for their sources and licences). Every answer says which source it came from, so the
terminal and the report can tell the user."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from diffusionlab.data import dataset_info, default_cache_dir, md5sum, read_idx
from diffusionlab.errors import DiffusionLabError

SAMPLE_DIR = Path(__file__).with_name("data_sample")
SAMPLE_SIZE = 100
DISPLAY_NAMES = {"mnist": ("MNIST", "digits"), "fashion-mnist": ("Fashion-MNIST", "images")}
TEST_ROLES = ("test-images", "test-labels")


def _display(data: str) -> tuple[str, str]:
    dataset_info(data)  # an unknown name is a one-line error listing the known ones
    return DISPLAY_NAMES.get(data, (data, "images"))


def _find(folder: Path, file_name: str) -> Path | None:
    """The file in folder, gzip-compressed or raw (as data.dataset_files accepts them)."""
    for candidate in (file_name, file_name.removesuffix(".gz")):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def _from_data_dir(data: str, data_dir: Path) -> list[Path]:
    info = dataset_info(data)
    paths = []
    for role in TEST_ROLES:
        file_name = info.files[role][0]
        found = _find(data_dir, file_name)
        if found is None:
            raise DiffusionLabError(
                f"{data_dir / file_name}: file not found; put the {info.name} test file {file_name} (or its "
                f"uncompressed form) in {data_dir}, or leave out --data-dir to use the shipped sample of {SAMPLE_SIZE}"
            )
        paths.append(found)
    return paths


def _from_cache(data: str) -> list[Path] | None:
    """The two test files in the cache when both are there (md5-checked, as data.dataset_files does); no download."""
    info = dataset_info(data)
    paths = [default_cache_dir() / info.name / info.files[role][0] for role in TEST_ROLES]
    if not all(p.is_file() for p in paths):
        return None
    for path, role in zip(paths, TEST_ROLES, strict=True):
        expected = info.files[role][1]
        if (got := md5sum(path)) != expected:
            raise DiffusionLabError(
                f"{path}: md5 {got} does not match the published {expected}; delete it to download it again, "
                f"or put a good copy there"
            )
    return paths


def _read_pair(images_path: Path, labels_path: Path, data: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) and labels (N,) as uint8, checked as data.load_split checks a split."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DiffusionLabError(f"{images_path}: expected 28x28 uint8 images, got {images.shape} {images.dtype}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.dtype != np.uint8:
        raise DiffusionLabError(
            f"{labels_path}: expected {images.shape[0]} uint8 labels (one per image in {images_path.name}), "
            f"got {labels.shape} {labels.dtype}"
        )
    n_classes = len(dataset_info(data).class_names)
    if labels.size and labels.max() >= n_classes:
        raise DiffusionLabError(f"{labels_path}: labels must be 0..{n_classes - 1}, found up to {labels.max()}")
    return images, labels


def find_test_set(data: str, data_dir: str | Path | None = None) -> tuple[list[Path], str]:
    """Where test images of `data` come from: (the image and label files, one line saying which source).

    --data-dir, when given, must hold the two test files (the train files are not needed); else the cache
    (~/.cache/diffusionlab/<data>, filled by an earlier download) when both are there; else the shipped sample.
    Nothing is downloaded.
    """
    name, noun = _display(data)
    if data_dir is not None:
        return _from_data_dir(data, Path(data_dir)), f"the {name} test set in {data_dir}"
    cached = _from_cache(data)
    if cached is not None:
        return cached, f"the {name} test set in the cache ({cached[0].parent})"
    return shipped_sample(data)


def shipped_sample(data: str, why: str = "no --data-dir, none in the cache") -> tuple[list[Path], str]:
    """The sample of the first SAMPLE_SIZE test images shipped in the package: (its two files, its source line)."""
    name, noun = _display(data)
    info = dataset_info(data)
    sample = [SAMPLE_DIR / info.name / info.files[role][0] for role in TEST_ROLES]
    return sample, f"the shipped sample of {SAMPLE_SIZE} {name} test {noun} ({why})"


def load_test_images(
    data: str, indices: Iterable[int], data_dir: str | Path | None = None
) -> tuple[Tensor, Tensor, str]:
    """Test images `indices` of `data` ("mnist" or "fashion-mnist"): (uint8 (k, 1, 28, 28), int64 labels (k,),
    one line naming the source). An index past the shipped sample asks for --data-dir, in one line."""
    paths, source = find_test_set(data, data_dir)
    images, labels = _read_pair(paths[0], paths[1], data)
    indices = [int(i) for i in indices]
    n = images.shape[0]
    for i in indices:
        if not 0 <= i < n:
            if paths[0].is_relative_to(SAMPLE_DIR):
                raise DiffusionLabError(
                    f"test:{i}: the shipped sample holds {_display(data)[0]} test images 0..{n - 1} only; "
                    f"pass --data-dir with the full test set (t10k files) for the others"
                )
            raise DiffusionLabError(f"test:{i}: the {data} test set has images 0..{n - 1} ({source})")
    return _tensors(images[indices], labels[indices], source)


def first_test_images(
    data: str, k: int, data_dir: str | Path | None = None, sample_because: str | None = None
) -> tuple[Tensor, Tensor, str]:
    """The first k test images (fewer when the test set is smaller, as a hand-made one may be); as load_test_images.
    sample_because: take the shipped sample whatever --data-dir and the cache hold, for this reason (the report's
    fallback when they hold a bad file)."""
    if sample_because is not None:
        paths, source = shipped_sample(data, sample_because)
    else:
        paths, source = find_test_set(data, data_dir)
    images, labels = _read_pair(paths[0], paths[1], data)
    return _tensors(images[:k], labels[:k], source)


def _tensors(images: np.ndarray, labels: np.ndarray, source: str) -> tuple[Tensor, Tensor, str]:
    # a copy: read_idx's arrays view the file's read-only bytes, which torch warns about
    return (
        torch.from_numpy(np.array(images, dtype=np.uint8)).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
        source,
    )
