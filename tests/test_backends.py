"""The model registry (diffusionlab.backends) and the import layering around it: the protocol is a leaf, the
core never imports the DeepFloyd IF adapter, and IF is recognised by spec or by the folder's contents."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from diffusionlab import backends as reg
from diffusionlab.errors import DiffusionLabError

CORE = [
    "diffusionlab.model_protocol",
    "diffusionlab.course_model",
    "diffusionlab.backends",
    "diffusionlab.sampling",
    "diffusionlab.guidance",
    "diffusionlab.edits",
    "diffusionlab.schedule",
    "diffusionlab.upscale",
]


def _loaded_after(*modules: str) -> list[str]:
    """The diffusionlab modules in sys.modules after importing `modules` in a fresh interpreter."""
    code = (
        f"import sys, {', '.join(modules)}; print('\\n'.join(m for m in sys.modules if m.startswith('diffusionlab')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.split()


def test_core_does_not_import_the_if_adapter():
    """`python -c 'import diffusionlab.course_model, diffusionlab.sampling, ...'` leaves IF's module unimported."""
    loaded = _loaded_after(*CORE)
    assert set(CORE) <= set(loaded)
    assert not [m for m in loaded if m.startswith("diffusionlab.deepfloyd")], loaded


def test_protocol_is_a_leaf():
    assert set(_loaded_after("diffusionlab.model_protocol")) <= {
        "diffusionlab",
        "diffusionlab.errors",
        "diffusionlab.model_protocol",
    }


def test_old_names_still_import():
    from diffusionlab import course_model as model
    from diffusionlab import model_protocol as protocol
    from diffusionlab import sampling

    assert model.Prediction is protocol.Prediction and model.DiffusionModel is protocol.DiffusionModel
    assert model.resolve_device is protocol.resolve_device and model.default_device is protocol.default_device
    assert sampling.randn is protocol.randn


def _fake_if_folder(path: Path, index: bool = True) -> Path:
    """IF's folder layout (no weights): enough to be recognised; loading it is the IF loader's business."""
    (path / "unet").mkdir(parents=True)
    (path / "unet" / "config.json").write_text(json.dumps({"in_channels": 3, "out_channels": 6}))
    if index:
        (path / "model_index.json").write_text(json.dumps({"_class_name": "IFPipeline"}))
    return path


def test_specs_resolve(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSIONLAB_WEIGHTS_DIR", str(tmp_path / "weights"))
    bare = _fake_if_folder(tmp_path / "IF-I-XL-v1.0")
    unet_only = _fake_if_folder(tmp_path / "if-unet-only", index=False)
    ckpt = tmp_path / "run" / "model.safetensors"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"")
    assert reg.resolve_spec("deepfloyd") == reg.ModelSpec("deepfloyd", "deepfloyd")
    assert reg.resolve_spec("deepfloyd:L") == reg.ModelSpec("deepfloyd", "deepfloyd:L")
    assert reg.resolve_spec(bare) == reg.ModelSpec("deepfloyd", f"deepfloyd:{bare}")
    assert reg.resolve_spec(str(unet_only)).kind == "deepfloyd"
    assert reg.resolve_spec(ckpt.parent) == reg.ModelSpec("course", str(ckpt.parent))
    assert reg.resolve_spec(ckpt) == reg.ModelSpec("course", str(ckpt))
    assert reg.is_if_spec(bare) and reg.is_if_spec("deepfloyd:IF-I-M-v1.0") and reg.is_if_spec("deepfloyd")
    assert not reg.is_if_spec(ckpt.parent) and not reg.is_if_spec("mnist") and not reg.is_if_spec(tmp_path / "none")
    with pytest.raises(DiffusionLabError, match="not in this install"):
        reg.resolve_spec("mnist")
    with pytest.raises(DiffusionLabError, match="no such file or directory"):
        reg.load_model(tmp_path / "none", "cpu")


def test_a_bare_if_folder_goes_to_the_if_loader(tmp_path, monkeypatch):
    """load_model(<IF folder>) reaches the IF loader with `deepfloyd:<folder>` and the IF options."""
    import diffusionlab.deepfloyd as deepfloyd

    seen = {}
    loaded = types.SimpleNamespace()
    monkeypatch.setattr(deepfloyd, "load_deepfloyd", lambda spec, **kw: seen.update(spec=spec, **kw) or loaded)
    bare = _fake_if_folder(tmp_path / "IF-I-L-v1.0")
    assert reg.load_model(bare, "cpu", offload=True) is loaded and loaded.spec == str(bare)  # the spec as given
    assert seen == {"spec": f"deepfloyd:{bare}", "device": torch.device("cpu"), "offload": True}


def test_gpu_slot_takes_turns():
    from diffusionlab.deepfloyd.adapters import GpuSlot

    class Hook:
        def __init__(self) -> None:
            self.offloads = 0

        def offload(self) -> None:
            self.offloads += 1

    slot, a, b = GpuSlot(), Hook(), Hook()
    slot.use(None)  # no offload: nothing to do
    slot.use(a)
    slot.use(a)
    assert slot.active is a and a.offloads == 0
    slot.use(b)
    assert slot.active is b and a.offloads == 1 and b.offloads == 0
    other = GpuSlot()  # another IF model's slot is its own
    other.use(a)
    assert slot.active is b and b.offloads == 0
