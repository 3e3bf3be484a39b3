"""The bad-input corpus for DeepFloyd IF (rules as in tests/test_bad_inputs.py): tiny IF folders built by hand with
one thing wrong, and --prompt-embeds files of the wrong shape, type or kind. Each is refused in one line before
any sampling; a bad stage II is refused before stage I runs (its progress bar would be a second stderr line)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from bad_input_files import Payload, image_files  # noqa: E402
from parta_helpers import one_thread  # noqa: E402, F401  (autouse fixture)
from test_bad_inputs import Case, output_folder, run, snapshot  # noqa: E402
from test_deepfloyd import D_TEXT, build_tiny_if  # noqa: E402

from diffusionlab.deepfloyd import loading  # noqa: E402

STAGE1 = ["--model", "deepfloyd:{if[good]}/IF-I-XL-v1.0"]
EMBEDS = [*STAGE1, "--prompt-embeds"]
STAGE2 = [*STAGE1, "--stage2"]
IF_CASES: list[Case] = [
    Case("embeds-shape", [*EMBEDS, "{if[embeds_shape]}"], "expected floats of shape (1, 77, 4096)"),
    Case("embeds-int", [*EMBEDS, "{if[embeds_int]}"], "int64 tensor"),
    Case("embeds-width", [*EMBEDS, "{if[embeds_width]}"], "width 4096 but this IF UNet takes 16"),
    Case("embeds-mixed-widths", [*EMBEDS, "{if[embeds_mixed]}"], "different widths"),
    Case("embeds-pickle", [*EMBEDS, "{if[embeds_pickle]}"], "not a safe torch dict"),
    Case("embeds-not-a-dict", [*EMBEDS, "{if[embeds_list]}"], "expected a dict"),
    Case("embeds-missing", [*EMBEDS, "{out}/nope.pth"], "no such file"),
    Case("scheduler-unbuildable", ["--model", "deepfloyd:{if[sched_bad]}"], "cannot build its scheduler"),
    Case("scheduler-not-json", ["--model", "deepfloyd:{if[sched_json]}"], "cannot build its scheduler"),
    Case("unet-without-variance", ["--model", "deepfloyd:{if[no_variance]}"], "3 output channels"),
    Case("unet-config-not-json", ["--model", "deepfloyd:{if[unet_json]}"], "cannot read its unet/config.json"),
    Case("unet-weights-corrupt", ["--model", "deepfloyd:{if[unet_weights]}"], "cannot load its UNet weights"),
    Case("stage2-given-as-stage1", ["--model", "deepfloyd:{if[good]}/IF-II-L-v1.0"], "this is stage II"),
    Case("stage2-as-model-dir", ["--model", "deepfloyd", "--model-dir", "{if[good]}/IF-II-L-v1.0"], "this is stage II"),
    Case("stage1-missing", ["--model", "deepfloyd:{out}/none"], "not found"),
    Case("stage2-broken", ["--model", "deepfloyd:{if[s2_broken]}", "--stage2"], "image_noising"),
    Case("stage2-is-stage1", ["--model", "deepfloyd:{if[s2_is_s1]}", "--stage2"], "this is stage I:"),
    Case("stage2-noise-level", [*STAGE2, "--noise-level", "5000"], "--noise-level must be between 0 and 999"),
    Case("stage2-steps-0", [*STAGE2, "--stage2-steps", "0"], "--stage2-steps must be at least 1"),
    Case("cfg-nan", [*STAGE1, "--cfg", "nan"], "--cfg must be a finite number"),
    Case("out-proc", [*STAGE1, "--out", "/proc/x.png"], "cannot write in /proc"),
    Case("sdedit-bomb", ["sdedit", *STAGE1, "-i", "{if[bomb]}"], "too large: 20000 x 20000"),
]


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.fixture(scope="module")
def if_paths(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("if_corpus")
    good = root / "good"
    stage1, stage2 = build_tiny_if(good)
    paths = {"good": good, "bomb": image_files(root / "img")["bomb"]}

    def stage1_copy(name: str) -> Path:
        paths[name] = root / name / "IF-I-XL-v1.0"
        shutil.copytree(stage1, paths[name])
        return paths[name]

    _edit_json(stage1_copy("sched_bad") / "scheduler" / "scheduler_config.json", beta_schedule="no-such-schedule")
    (stage1_copy("sched_json") / "scheduler" / "scheduler_config.json").write_text("{ not json")
    _edit_json(stage1_copy("no_variance") / "unet" / "config.json", out_channels=3)
    (stage1_copy("unet_json") / "unet" / "config.json").write_text("{ not json")
    for weights in (stage1_copy("unet_weights") / "unet").glob("*.safetensors"):
        weights.write_bytes(b"\x00" * 64 + weights.read_bytes()[64:])
    stage1_copy("s2_broken")  # beside it, a stage II with an unbuildable noising scheduler
    shutil.copytree(stage2, root / "s2_broken" / "IF-II-L-v1.0")
    _edit_json(
        root / "s2_broken" / "IF-II-L-v1.0" / "image_noising_scheduler" / "scheduler_config.json", beta_schedule="x"
    )
    stage1_copy("s2_is_s1")
    shutil.copytree(stage1, root / "s2_is_s1" / "IF-II-L-v1.0")
    for name, embeds in {
        "embeds_shape": {"a photo": torch.zeros(1, 10, D_TEXT)},
        "embeds_int": {"a photo": torch.zeros(1, 77, D_TEXT, dtype=torch.long)},
        "embeds_width": {"a photo": torch.zeros(1, 77, 4096)},
        "embeds_mixed": {"a photo": torch.zeros(1, 77, D_TEXT), "": torch.zeros(1, 77, 8)},
        "embeds_pickle": {"a photo": Payload(root / "PICKLE-WAS-EXECUTED")},
        "embeds_list": {"a photo": [1, 2, 3]},
    }.items():
        torch.save(embeds, paths.setdefault(name, root / f"{name}.pth"))
    paths["marker"] = root / "PICKLE-WAS-EXECUTED"
    return paths


@pytest.fixture(autouse=True)
def _quiet(tmp_path, monkeypatch):
    """The T5 cache in tmp; the loader's 'IF on a CPU is slow' warning left out (each case loads IF anew)."""
    monkeypatch.setenv("DIFFUSIONLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(loading, "warn_cpu", lambda: None)


@pytest.mark.parametrize("case", IF_CASES, ids=[c.id for c in IF_CASES])
def test_bad_if_input_is_one_error_line(case: Case, if_paths, tmp_path, capsys):
    out = output_folder(tmp_path)
    before = snapshot(out)
    command = "sdedit" if case.argv[0] == "sdedit" else "sample"
    argv = [a for a in case.argv if a != "sdedit"] + ["--device", "cpu"]
    if "--out" not in argv:
        argv += ["--out", "{out}/new.png"]
    fast = ["-p", "a photo", "-n", "1", "--steps", "2"] if command == "sample" else ["--i-start", "33"]
    argv = [command, *[a.format(out=out, **{"if": if_paths}) for a in argv], *fast]
    code, _, err = run(argv, capsys)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert case.expect in err, err
    assert snapshot(out) == before and not if_paths["marker"].exists()
