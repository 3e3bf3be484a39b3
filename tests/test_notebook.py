"""The example notebook runs top to bottom (small settings, tiny training data made here), and the notebook-first
API does what docs/api.md says: `import diffusionlab as dl`, results that display inline, one progress switch."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA
from PIL import Image

import diffusionlab as dl
from diffusionlab.data import dataset_info

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "course.ipynb"


def _execute(nb, folder: Path, env: dict[str, str]) -> None:
    nbclient = pytest.importorskip("nbclient")
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = nbclient.NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": folder}}
        )
        client.execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _code_cell(nb, first_line: str):
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(first_line))


@pytest.mark.slow
def test_the_example_notebook_runs(tmp_path: Path) -> None:
    """Top to bottom with small settings and an empty data cache: Part B trains on the shipped sample, and no
    progress bar lands in the saved outputs (the first cell turns them off, not only in the test's settings)."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cache = tmp_path / "empty-cache"
    _execute(
        nb, tmp_path, {"DIFFUSIONLAB_NOTEBOOK_SMALL": "1", "DIFFUSIONLAB_CACHE": str(cache), "OMP_NUM_THREADS": "2"}
    )
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) >= 10, "every tool's result should display as an inline image"
    assert (tmp_path / "runs" / "notebook" / "model.safetensors").is_file(), "the Part B cell trained a model"
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "training data: the 100 MNIST test digits shipped in the package" in text
    assert str(cache / "mnist") in text  # why: what was looked for, where
    assert not re.search(r"\d+%\|", text), "a progress bar was saved into the notebook"
    assert "IProgress" not in text  # nor tqdm's warning that ipywidgets is missing
    assert "dl.set_progress(False)\n" in nb.cells[1].source


def test_the_notebook_trains_on_the_cache_when_mnist_is_there(tmp_path: Path, monkeypatch) -> None:
    """Part B's data cell (run alone) takes MNIST from the cache `diffusionlab train` downloads into, not from a
    folder beside the notebook."""
    nbformat = pytest.importorskip("nbformat")
    names = [name for name, _ in dataset_info("mnist").files.values()]
    if not all((SHARED_DATA / "mnist" / n).is_file() for n in names):
        pytest.skip(f"needs MNIST's four files in {SHARED_DATA / 'mnist'} (the cache checks their md5)")
    cache = tmp_path / "cache"
    (cache / "mnist").mkdir(parents=True)
    for n in names:
        (cache / "mnist" / n).symlink_to(SHARED_DATA / "mnist" / n)
    monkeypatch.setenv("DIFFUSIONLAB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    cell = _code_cell(nbformat.read(NOTEBOOK, as_version=4), "# Part B's training data")
    scope = {"dl": dl}
    exec(cell.source, scope)
    assert scope["data_dir"] == cache / "mnist" and scope["batch_size"] == 128
    assert not (tmp_path / "runs").exists()


def test_the_api_names_the_course_functions() -> None:
    for name in (
        "load_model",
        "forward",
        "one_step_denoise",
        "iterative_denoise",
        "sample",
        "sdedit",
        "inpaint",
        "anagram",
        "hybrid",
        "train",
        "show",
        "to_pil",
        "set_progress",
    ):
        assert callable(getattr(dl, name)), name
    with pytest.raises(AttributeError):
        dl.no_such_tool  # noqa: B018


def test_a_result_displays_saves_its_settings_and_matches_the_algorithm(tiny_class_model: Path, tmp_path) -> None:
    from diffusionlab import edits
    from diffusionlab.model_protocol import generator_for

    m = dl.load_model(tiny_class_model)
    dl.set_progress(False)
    try:
        r = dl.forward(m, ["test:0", "test:3"], t=[10, 100])
    finally:
        dl.set_progress(True)
    assert r.images.shape == (2, 2, 1, 28, 28)
    from diffusionlab.tools.inputs import load_inputs

    x, _, sources = load_inputs(m, ["test:0", "test:3"])
    assert torch.equal(r.images, edits.forward(m, x, [10, 100], generator_for(0)))
    assert r._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = Image.open(r.save(tmp_path / "f.png"))
    settings = json.loads(saved.text["diffusionlab"])
    assert settings["tool"] == "forward" and settings["t"] == [10, 100] and settings["seed"] == 0
    assert settings["test images"] == sources[0]


def test_tools_take_pil_images_and_tensors_and_refuse_wrong_shapes(tiny_class_model: Path) -> None:
    m = dl.load_model(tiny_class_model)
    pil = Image.new("L", (50, 40), 255)
    r = dl.forward(m, [pil, torch.zeros(1, 28, 28)], t=5)
    assert r.images.shape == (1, 2, 1, 28, 28)
    with pytest.raises(dl.DiffusionLabError, match=r"\(C, H, W\) or \(N, C, H, W\)"):
        dl.forward(m, torch.zeros(3, 32, 32), t=5)


def test_the_progress_switch_silences_sampling(tiny_class_model: Path, capsys) -> None:
    m = dl.load_model(tiny_class_model)
    dl.set_progress(False)
    try:
        dl.sample(m, ["1"], n=1, steps=3)
        assert "0/3" not in capsys.readouterr().err  # the bar counts the 3 steps, whatever it is called
    finally:
        dl.set_progress(True)
    dl.sample(m, ["1"], n=1, steps=3)
    assert "0/3" in capsys.readouterr().err
