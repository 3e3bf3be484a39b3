"""MNIST and Fashion-MNIST from their IDX files: a local directory, or a cache filled by a checked download.

A whole split is read once into one uint8 tensor (N, 1, 28, 28); training slices batches from it, so there are
no per-sample Python objects.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from diffusionlab.environment import cache_dir
from diffusionlab.errors import DiffusionLabError
from diffusionlab.files import gunzip, read_bytes, regular_file

MAX_IDX_DIMS = 8  # MNIST-like files have 1 (labels) or 3 (images)
# The most bytes one IDX file may hold once decompressed: 5.7x MNIST's 47 MB of training images. A split becomes
# a uint8 tensor of this size, and training converts batches, not the whole split, to floats.
MAX_IDX_BYTES = 256 * 2**20
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# The four IDX files, named alike in MNIST and Fashion-MNIST: role -> file name (as published, gzipped)
IDX_FILES = {
    "train-images": "train-images-idx3-ubyte.gz",
    "train-labels": "train-labels-idx1-ubyte.gz",
    "test-images": "t10k-images-idx3-ubyte.gz",
    "test-labels": "t10k-labels-idx1-ubyte.gz",
}


def _idx_files(*md5s: str) -> dict[str, tuple[str, str]]:
    """role -> (file name, md5 of the published .gz), from the four md5s in IDX_FILES' order."""
    return dict(zip(IDX_FILES, zip(IDX_FILES.values(), md5s, strict=True), strict=True))


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    files: dict[str, tuple[str, str]]  # role -> (file name, md5 of the published .gz)
    mirrors: tuple[str, ...]
    class_names: tuple[str, ...]


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist",
        _idx_files(
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"),
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        _idx_files(
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        (
            "t-shirt/top",
            "trouser",
            "pullover",
            "dress",
            "coat",
            "sandal",
            "shirt",
            "sneaker",
            "bag",
            "ankle boot",
        ),
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise DiffusionLabError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}") from None


@dataclass(frozen=True)
class Split:
    """One split held as tensors: images uint8 (N, 1, H, W), labels int64 (N,)."""

    images: Tensor
    labels: Tensor
    md5: dict[str, str]  # file name -> md5 of the bytes read

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw), checking its header against its size and the memory budget
    before the data are read or decompressed (a sparse file or a gzip bomb declares gigabytes from a few bytes)."""
    path = Path(path)
    fix = f"put a good copy of {path.name} in {path.parent}"
    if not path.exists():
        raise DiffusionLabError(f"{path}: file not found; {fix}")
    size = regular_file(path).st_size
    with open(path, "rb") as f:
        raw = f.read(4 + 4 * MAX_IDX_DIMS)
    gzipped = raw[:2] == b"\x1f\x8b"
    if gzipped:  # the compressed stream, then its first bytes: the header says how large the rest may be
        raw = read_bytes(path, limit=MAX_IDX_BYTES + 2**20)  # a gzip stream is never much larger than its data
        shape, dtype, header = _idx_header(path, gunzip(raw, 4 + 4 * MAX_IDX_DIMS, str(path), head=True), fix)
    else:
        shape, dtype, header = _idx_header(path, raw, fix)
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: np.prod would wrap around at 2**63
    if expected > MAX_IDX_BYTES:
        raise DiffusionLabError(
            f"{path}: IDX header {shape} declares {expected:,} bytes, more than the memory budget for a data set "
            f"({MAX_IDX_BYTES:,}; MNIST's training images are 47 MB); {fix}"
        )
    if gzipped:
        raw = gunzip(raw, expected, str(path))
    elif size == expected:
        raw = read_bytes(path, limit=expected)
    if len(raw) != expected or (not gzipped and size != expected):
        raise DiffusionLabError(
            f"{path}: size {len(raw) if gzipped else size} bytes does not match its IDX header {shape} "
            f"({expected} bytes); the file is truncated or corrupt, {fix}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _idx_header(path: Path, head: bytes, fix: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length) from an IDX file's first bytes."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES:
        raise DiffusionLabError(f"{path}: wrong IDX magic number {head[:4].hex()!r}; not an IDX file, {fix}")
    ndim = head[3]
    header = 4 + 4 * ndim
    if ndim > MAX_IDX_DIMS:  # the byte allows 255; numpy arrays have at most 64
        raise DiffusionLabError(f"{path}: IDX header says {ndim} dimensions (at most {MAX_IDX_DIMS}); {fix}")
    if ndim == 0 or len(head) < header:
        raise DiffusionLabError(f"{path}: IDX header is truncated; {fix}")
    shape = struct.unpack(f">{ndim}I", head[4:header])
    if math.prod(max(d, 1) for d in shape) > 2**40:  # numpy refuses such a shape even when empty
        raise DiffusionLabError(f"{path}: IDX header {shape} describes more than a terabyte; not a data set, {fix}")
    return shape, np.dtype(IDX_DTYPES[head[2]]), header


def default_cache_dir() -> Path:
    """$DIFFUSIONLAB_CACHE (refused in one line when it is not a usable folder), else ~/.cache/diffusionlab."""
    return cache_dir()


def _find_local(data_dir: Path, file_name: str) -> Path | None:
    for candidate in (file_name, file_name.removesuffix(".gz")):
        if (data_dir / candidate).exists():  # read_idx refuses what is not a regular file, saying what it is
            return data_dir / candidate
    return None


def _download(info: DatasetInfo, file_name: str, md5: str, dest: Path) -> None:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DiffusionLabError(
            f"{dest.parent}: cannot make the cache folder ({e.strerror or e}); set DIFFUSIONLAB_CACHE to a folder "
            "you can write, or pass --data-dir with the four IDX files"
        ) from None
    errors = []
    for mirror in info.mirrors:
        url = mirror + file_name
        try:
            with (
                urllib.request.urlopen(url, timeout=30) as response,
                tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp,
            ):
                shutil.copyfileobj(response, tmp)
            got = md5sum(Path(tmp.name))
            if got != md5:
                os.unlink(tmp.name)
                errors.append(f"{url}: md5 {got} != {md5}")
                continue
            os.replace(tmp.name, dest)
            return
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            errors.append(f"{url}: {e}")
    raise DiffusionLabError(
        f"could not download {file_name} for {info.name} ({'; '.join(errors)}); "
        f"download it yourself and put it in {dest.parent}, or pass --data-dir with the four IDX files"
    )


def dataset_files(name: str, data_dir: str | Path | None = None, download: bool = True) -> dict[str, Path]:
    """Locate the four IDX files: in data_dir if given (raw or .gz), else in the cache, downloading if needed.

    Files from data_dir are checked by their IDX structure (so small hand-made sets work); cached and downloaded
    files must match the published md5.
    """
    info = dataset_info(name)
    paths: dict[str, Path] = {}
    if data_dir is not None:
        data_dir = Path(data_dir)
        for role, (file_name, _) in info.files.items():
            found = _find_local(data_dir, file_name)
            if found is None:
                raise DiffusionLabError(
                    f"{data_dir / file_name}: file not found; put the {info.name} file {file_name} "
                    f"(or its uncompressed form) in {data_dir}"
                )
            paths[role] = found
        return paths
    cache = default_cache_dir() / info.name
    for role, (file_name, md5) in info.files.items():
        dest = cache / file_name
        if dest.is_file() and md5sum(dest) != md5:
            raise DiffusionLabError(
                f"{dest}: md5 {md5sum(dest)} does not match the published {md5}; delete it to download it again, "
                f"or put a good copy there"
            )
        if not dest.is_file():
            if not download:
                raise DiffusionLabError(f"{dest}: file not found and downloads are off; put a good copy there")
            _download(info, file_name, md5, dest)
        paths[role] = dest
    return paths


def load_split(
    name: str = "mnist", split: str = "train", data_dir: str | Path | None = None, download: bool = True
) -> Split:
    """Images (N, 1, H, W) uint8 and labels (N,) int64 of one split ("train" or "test")."""
    if split not in ("train", "test"):
        raise DiffusionLabError(f"unknown split {split!r} (train or test)")
    paths = dataset_files(name, data_dir, download)
    img_path, lbl_path = paths[f"{split}-images"], paths[f"{split}-labels"]
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise DiffusionLabError(
            f"{img_path}: expected images (N, H, W) and labels (N,), got {images.shape} and {labels.shape}; "
            "are the image and label files swapped?"
        )
    if images.shape[0] != labels.shape[0]:
        raise DiffusionLabError(
            f"{img_path} has {images.shape[0]} images but {lbl_path} has {labels.shape[0]} labels; "
            "use the image and label files of the same split"
        )
    if images.shape[1:] != (28, 28):  # the course's UNets take 28x28; any other size fails inside the network
        raise DiffusionLabError(
            f"{img_path}: images are {images.shape[1]}x{images.shape[2]}, the models here take 28x28 (MNIST's size)"
        )
    for path, array in ((img_path, images), (lbl_path, labels)):
        if array.dtype != np.uint8:  # floats would be cast silently (NaN labels to garbage), wider ints wrapped
            raise DiffusionLabError(f"{path}: IDX values are {array.dtype}, expected unsigned bytes (type 0x08)")
    n_classes = len(dataset_info(name).class_names)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DiffusionLabError(f"{lbl_path}: labels must be 0..{n_classes - 1}, found {labels.min()}..{labels.max()}")
    return Split(
        torch.from_numpy(images.astype(np.uint8)).unsqueeze(1).contiguous(),
        torch.from_numpy(labels.astype(np.int64)),
        {img_path.name: md5sum(img_path), lbl_path.name: md5sum(lbl_path)},
    )


def to_float(images: Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> Tensor:
    """uint8 [0, 255] -> float in value_range."""
    lo, hi = value_range
    return images.float().div(255.0).mul(hi - lo).add(lo)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write an IDX file (used by tests and tools that make small data sets)."""
    path = Path(path)
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}
    array = np.ascontiguousarray(array)
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path
