"""The report's B1 shows the pure-noise denoiser (Fall 2025 B1.2.3) when it is shipped: z and D(z) after each
snapshot's epoch and at the end, with the caption that says why D(z) is the mean digit; without it, one note."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import make_checkpoint, make_idx_dir
from test_report import TINY, make_weights

from diffusionlab import report
from diffusionlab.figures.part_b import PURE_NOISE_CAPTION
from diffusionlab.model_files import WEIGHTS_NAME


def _b1(out: Path, weights: Path, data: Path) -> dict:
    res = report.reproduce(
        out, data_dir=data, weights=weights, budget=TINY, sections=["B1"], progress=False, device="cpu"
    )  # fmt: skip
    return res["sections"][0]


def _ship_pure_noise(root: Path, weights: Path) -> None:
    run = make_checkpoint(root / "runs" / "pure", "denoiser", hidden=4, seed=3)
    cfg = json.loads((run / "model.json").read_text())
    cfg["provenance"]["epoch"] = 5
    for stem in ("mnist-denoiser-pure-noise", "mnist-denoiser-pure-noise.epoch1"):
        shutil.copy(run / WEIGHTS_NAME, weights / f"{stem}.safetensors")
        (weights / f"{stem}.json").write_text(json.dumps(cfg))
    shutil.copy(run / WEIGHTS_NAME, weights / "mnist-denoiser-pure-noise.epoch5.safetensors")  # = the final
    (weights / "mnist-denoiser-pure-noise.epoch5.json").write_text(json.dumps(cfg))


def test_b1_shows_the_pure_noise_denoiser_after_each_epoch_when_shipped(tmp_path):
    weights = make_weights(tmp_path)
    make_idx_dir(tmp_path / "data" / "mnist", n_train=8, n_test=8)
    data = tmp_path / "data" / "mnist"

    without = _b1(tmp_path / "r0", weights, data)
    assert without["status"] == "ok"
    assert any("`diffusionlab train denoiser --pure-noise`" in n for n in without["notes"])
    assert not any("pure_noise" in f for f in without["figures"])

    _ship_pure_noise(tmp_path, weights)
    out = tmp_path / "r1"
    b1 = _b1(out, weights, data)
    pure = [f for f in b1["figures"] if "pure_noise" in f]
    # the epoch-5 snapshot is the final model: shown once, as the final
    assert [Path(f).stem.rsplit("_", 1)[1] for f in pure] == ["epoch1", "epoch5"]
    assert all((out / f).is_file() for f in pure)
    html = (out / "index.html").read_text()
    assert PURE_NOISE_CAPTION in html and "z ~ N(0, I) and D(z), after epoch 1" in html
    assert "not shown" not in html
