"""The model backends and the shipped models are tables (backends.BACKENDS, shipped_models.SHIPPED_MODELS): specs
resolve through them, the --model help and the web UI's list are made from them, and a new entry is taken."""

from __future__ import annotations

import typing

import pytest
from conftest import make_checkpoint
from parta_helpers import one_thread  # noqa: F401  (one_thread: autouse fixture)

from diffusionlab import backends
from diffusionlab.errors import DiffusionLabError
from diffusionlab.shipped_models import SHIPPED_MODELS, ShippedModel, shipped_name, shipped_path


def test_shipped_names_map_to_their_files_and_back():
    assert shipped_path("mnist").name == "mnist-class.safetensors"
    assert shipped_path("mnist-flow").name == "mnist-flow.safetensors"
    for name, entry in SHIPPED_MODELS.items():
        assert shipped_name(entry.file) == name  # the name that loads a shipped model's weights again
        assert shipped_path(name).is_file(), name  # every entry ships its file
    assert shipped_name("not-shipped") is None


def test_a_shipped_model_added_to_the_table_loads_and_is_listed(tmp_path, monkeypatch):
    """A new shipped model is one entry (and its file): load_model takes its name, records it as the spec that
    loads it again, and the web UI lists it."""
    from diffusionlab.app import ModelRegistry

    ckpt = make_checkpoint(tmp_path / "run", hidden=8) / "model.safetensors"
    weights = tmp_path / "weights"
    weights.mkdir()
    for suffix in (".safetensors", ".json"):
        (weights / f"tiny-class{suffix}").write_bytes(ckpt.with_suffix(suffix).read_bytes())
    monkeypatch.setenv("DIFFUSIONLAB_WEIGHTS_DIR", str(weights))
    monkeypatch.setitem(SHIPPED_MODELS, "tiny", ShippedModel("tiny-class", "a test's model"))
    model = backends.load_model("tiny", "cpu", fast=False)
    assert model.spec == "tiny"  # the name that loads it again (the settings record it)
    assert ("tiny (shipped)", "shipped:tiny") in ModelRegistry(None).choices()
    assert "tiny" in backends.model_help()
    with pytest.raises(DiffusionLabError, match="^shipped model 'mnist' is not in this install"):
        backends.load_model("mnist", "cpu")  # in the table, but not in this weights folder


def test_specs_go_to_the_first_backend_that_claims_them(tmp_path, monkeypatch):
    seen = []
    toy = backends.Backend(lambda s: s.removeprefix("toy:") if s.startswith("toy:") else None,
                           lambda target, device, fast, precision, **kw: seen.append(target) or type("M", (), {})(),
                           "toy:NAME, a test's backend")  # fmt: skip
    monkeypatch.setitem(backends.BACKENDS, "toy", toy)
    assert backends.resolve_spec("toy:x") == backends.ModelSpec("toy", "x")
    assert backends.load_model("toy:x", "cpu").spec == "toy:x" and seen == ["x"]
    assert backends.resolve_spec("deepfloyd:L") == backends.ModelSpec("deepfloyd", "deepfloyd:L")
    with pytest.raises(DiffusionLabError) as e:
        backends.resolve_spec(str(tmp_path / "none"))
    assert str(e.value) == (
        f"--model '{tmp_path / 'none'}': no such file or directory, and not a shipped model "
        f"({', '.join(SHIPPED_MODELS)}) or 'deepfloyd'"
    )


def test_the_cli_help_is_the_tables():
    from diffusionlab.commands.common import ModelOpt

    help_text = typing.get_args(ModelOpt)[1].help
    assert help_text == backends.model_help()
    assert all(name in help_text for name in SHIPPED_MODELS) and backends.BACKENDS["deepfloyd"].help in help_text


def test_cached_deepfloyd_reads_the_if_adapters_ids(tmp_path):
    """The web UI's DeepFloyd entry: the first of IF's stage I ids (deepfloyd.weights.STAGE1_SHORT) with weights
    in the cache, in its layout (models--DeepFloyd--IF-I-M-v1.0/snapshots/*/unet)."""
    assert backends.cached_deepfloyd(tmp_path) is None
    for variant in ("IF-I-M-v1.0", "IF-I-XL-v1.0"):
        unet = tmp_path / f"models--DeepFloyd--{variant}" / "snapshots" / "abc" / "unet"
        unet.mkdir(parents=True)
        (unet / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    assert backends.cached_deepfloyd(tmp_path) == "IF-I-XL-v1.0"  # XL first
