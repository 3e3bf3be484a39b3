"""The shipped test-image sample and where test:N images come from (--data-dir, the cache, the sample)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import SHARED_DATA, make_idx_dir

from diffusionlab.data import read_idx
from diffusionlab.errors import DiffusionLabError
from diffusionlab.testdigits import SAMPLE_DIR, SAMPLE_SIZE, first_test_images, load_test_images

DATA = ("mnist", "fashion-mnist")


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSIONLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("data", DATA)
def test_sample_is_the_first_test_images(data):
    images, labels, source = load_test_images(data, range(SAMPLE_SIZE))
    assert images.shape == (SAMPLE_SIZE, 1, 28, 28) and labels.shape == (SAMPLE_SIZE,)
    assert source.startswith(f"the shipped sample of {SAMPLE_SIZE} ")
    assert (SAMPLE_DIR / "NOTICE.md").is_file()
    if not (SHARED_DATA / data).is_dir():
        pytest.skip(f"no full {data} files in {SHARED_DATA} to compare with")
    full_images = read_idx(SHARED_DATA / data / "t10k-images-idx3-ubyte.gz")[:SAMPLE_SIZE]
    full_labels = read_idx(SHARED_DATA / data / "t10k-labels-idx1-ubyte.gz")[:SAMPLE_SIZE]
    assert np.array_equal(images[:, 0].numpy(), full_images)
    assert np.array_equal(labels.numpy(), full_labels)


def test_mnist_sample_starts_with_the_known_labels():
    _, labels, _ = load_test_images("mnist", [0, 1, 2, 3, 4])
    assert labels.tolist() == [7, 2, 1, 0, 4]  # MNIST's test set starts 7 2 1 0 4


def test_index_past_the_sample_asks_for_data_dir():
    with pytest.raises(DiffusionLabError, match=r"test:100: the shipped sample .* 0\.\.99 .*--data-dir"):
        load_test_images("mnist", [100])


def test_data_dir_needs_only_the_test_files(tmp_path):
    folder = make_idx_dir(tmp_path / "d", n_train=4, n_test=6)
    for p in folder.glob("train-*"):
        p.unlink()
    images, labels, source = load_test_images("mnist", [5], folder)
    assert images.shape == (1, 1, 28, 28) and source == f"the MNIST test set in {folder}"
    with pytest.raises(DiffusionLabError, match=r"test:6: the mnist test set has images 0\.\.5"):
        load_test_images("mnist", [6], folder)
    assert len(first_test_images("mnist", 8, folder)[0]) == 6  # fewer than asked: a small hand-made set
    with pytest.raises(DiffusionLabError, match="file not found"):
        load_test_images("mnist", [0], tmp_path / "nothing")


def test_the_cache_is_used_when_it_holds_the_test_files(empty_cache):
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"no MNIST files in {SHARED_DATA}")
    (empty_cache / "mnist").mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(SHARED_DATA / "mnist" / name, empty_cache / "mnist" / name)
    _, labels, source = load_test_images("mnist", [9999])
    assert "in the cache" in source and labels.tolist() == [6]
    (empty_cache / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the published file")
    with pytest.raises(DiffusionLabError, match="does not match the published"):
        load_test_images("mnist", [0])


def test_unknown_data_set_is_one_line():
    with pytest.raises(DiffusionLabError, match="unknown data set"):
        load_test_images("cifar", [0])


def test_cli_test_image_without_data(tmp_path, capsys):
    """--image test:N with no data anywhere: the shipped sample, said in one line; past it, one error line."""
    from conftest import make_checkpoint

    from diffusionlab.cli import main

    model = make_checkpoint(tmp_path / "run", hidden=8)
    common = ["noise", "--model", str(model), "--device", "cpu", "--t", "100"]
    with pytest.raises(SystemExit) as e:
        main([*common, "--image", "test:99", "--out", str(tmp_path / "a.png")])
    out = capsys.readouterr()
    assert e.value.code in (0, None), out.err
    assert "test images: the shipped sample of 100 MNIST test digits (no --data-dir, none in the cache)\n" in out.out
    with pytest.raises(SystemExit) as e:
        main([*common, "--image", "test:100", "--out", str(tmp_path / "b.png")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "pass --data-dir" in err, err


def test_web_ui_test_image():
    """The web UI's picker reads test:N through the tools' load_inputs: the shipped sample without a data set."""
    import torch

    from diffusionlab.tools.inputs import load_inputs

    class Model:  # what the protocol declares that load_inputs reads
        data = "fashion-mnist"
        image_shape, value_range, device = (1, 28, 28), (-1.0, 1.0), torch.device("cpu")

    x, _, sources = load_inputs(Model(), "test:3")
    assert x.shape == (1, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert sources[0].startswith("the shipped sample of 100 Fashion-MNIST test images")
    with pytest.raises(DiffusionLabError, match="0..99"):
        load_inputs(Model(), "test:100")
