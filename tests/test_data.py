import gzip
import hashlib

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, make_idx_dir

from diffusionlab import data
from diffusionlab.data import DATASETS, DatasetInfo, dataset_files, load_split, read_idx, write_idx
from diffusionlab.errors import DiffusionLabError


def test_idx_round_trip_gzip_and_raw(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a.gz", "a"):
        write_idx(tmp_path / name, arr)
        np.testing.assert_array_equal(read_idx(tmp_path / name), arr)
    assert (tmp_path / "a.gz").read_bytes()[:2] == b"\x1f\x8b"


def test_load_split_from_dir(tiny_data):
    split = load_split("mnist", "train", tiny_data)
    assert split.images.shape == (64, 1, 28, 28) and split.images.dtype == torch.uint8
    assert split.labels.shape == (64,) and split.labels.dtype == torch.int64
    assert set(split.md5) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"}


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated or corrupt"),
        (lambda p: p.write_bytes(gzip.compress(b"\x00\x00\x07\x03" + b"\x00" * 40)), "wrong IDX magic"),
        (
            lambda p: p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-10])),
            "does not match its IDX header",
        ),
        (lambda p: p.unlink(), "file not found"),
    ],
    ids=["truncated-gzip", "wrong-magic", "short-payload", "missing"],
)
def test_bad_files_give_one_line_errors(tiny_data, corrupt, message):
    path = tiny_data / "train-images-idx3-ubyte.gz"
    corrupt(path)
    with pytest.raises(DiffusionLabError) as e:
        load_split("mnist", "train", tiny_data)
    text = str(e.value)
    assert message in text and "\n" not in text
    assert "train-images-idx3-ubyte" in text  # says which file


def test_mismatched_counts(tmp_path):
    d = make_idx_dir(tmp_path)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(DiffusionLabError, match="64 images but .* 5 labels"):
        load_split("mnist", "train", d)


def _fake_dataset(tmp_path, monkeypatch, md5_override=None):
    """A data set whose 'mirror' is a local folder (file:// URL), to exercise the download + md5 path offline."""
    mirror = make_idx_dir(tmp_path / "mirror")
    files = {}
    for role, (name, _) in DATASETS["mnist"].files.items():
        md5 = hashlib.md5((mirror / name).read_bytes()).hexdigest()
        files[role] = (name, md5_override or md5)
    info = DatasetInfo("mnist", files, (mirror.as_uri() + "/",), DATASETS["mnist"].class_names)
    monkeypatch.setitem(DATASETS, "mnist", info)
    monkeypatch.setenv("DIFFUSIONLAB_CACHE", str(tmp_path / "cache"))
    return mirror


def test_download_checks_md5_and_caches(tmp_path, monkeypatch):
    _fake_dataset(tmp_path, monkeypatch)
    paths = dataset_files("mnist")
    assert all(p.parent == tmp_path / "cache" / "mnist" and p.is_file() for p in paths.values())
    assert len(load_split("mnist", "test")) == 32


def test_download_with_wrong_md5_fails_and_leaves_nothing(tmp_path, monkeypatch):
    _fake_dataset(tmp_path, monkeypatch, md5_override="0" * 32)
    with pytest.raises(DiffusionLabError, match="md5") as e:
        dataset_files("mnist")
    assert "put it in" in str(e.value)
    assert not any((tmp_path / "cache" / "mnist").glob("*.gz"))


def test_offline_download_error(tmp_path, monkeypatch):
    monkeypatch.setitem(
        DATASETS, "mnist", DatasetInfo("mnist", DATASETS["mnist"].files, ((tmp_path / "nowhere").as_uri() + "/",), ())
    )
    monkeypatch.setenv("DIFFUSIONLAB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DiffusionLabError, match="could not download train-images-idx3-ubyte.gz"):
        dataset_files("mnist")


def test_corrupt_cached_file_is_reported(tmp_path, monkeypatch):
    _fake_dataset(tmp_path, monkeypatch)
    paths = dataset_files("mnist")
    paths["test-labels"].write_bytes(b"junk")
    with pytest.raises(DiffusionLabError, match="does not match the published"):
        dataset_files("mnist")


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="shared MNIST files not present")
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_files_match_published_md5_and_counts(name):
    folder = SHARED_DATA / name
    for file_name, md5 in DATASETS[name].files.values():
        assert data.md5sum(folder / file_name) == md5
    test = load_split(name, "test", folder)
    assert test.images.shape == (10_000, 1, 28, 28)
    counts = torch.bincount(test.labels, minlength=10).tolist()
    assert counts == ([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009] if name == "mnist" else [1000] * 10)
