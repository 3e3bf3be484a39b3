"""A model's default CFG scale, chosen by measurement (issue 40 item 6): the rule on synthetic curves, the curve
of a tiny model, `choose-guidance --write` (only the JSON's default_guidance entry changes), and a model with a
stored scale sampling with it by default."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_checkpoint, make_idx_dir

from diffusionlab.cli import main
from diffusionlab.commands.choose_guidance import GUIDANCE_KEY, parse_scales, store_default_guidance
from diffusionlab.errors import DiffusionLabError
from diffusionlab.evaluation.guidance_curve import (
    accuracy_standard_error,
    choose_scale,
    measure_curve,
    target_accuracy,
)


def points(accuracies: dict[float, float], n: int = 1000) -> list[dict]:
    return [{"cfg_scale": s, "conditional_accuracy": a, "n_samples": n} for s, a in accuracies.items()]


# -- the rule -------------------------------------------------------------------------------------------------
def test_rule_picks_the_lowest_scale_reaching_the_target() -> None:
    curve = points({5.0: 1.0, 1.0: 0.93, 3.0: 0.995, 2.0: 0.99, 1.5: 0.97})  # unsorted on purpose
    assert choose_scale(curve, 0.99) == {"cfg_scale": 2.0, "met_target": True, "threshold": 0.99}
    assert choose_scale(curve, 0.995)["cfg_scale"] == 3.0
    assert choose_scale(curve, 0.9)["cfg_scale"] == 1.0


def test_rule_without_a_scale_reaching_the_target_takes_the_lowest_within_one_standard_error() -> None:
    # the first colour recipe's shape: 93.7 % at 5 and 94.3 % at 8 (N = 300) are one standard error apart
    curve = points({2.0: 0.84, 3.0: 0.887, 5.0: 0.937, 8.0: 0.943}, n=300)
    choice = choose_scale(curve, 0.99)
    se = math.sqrt(0.943 * 0.057 / 300)
    assert choice["met_target"] is False
    assert choice["threshold"] == pytest.approx(0.943 - se)
    assert choice["cfg_scale"] == 5.0
    # more samples, a smaller standard error: 5 is no longer within it
    assert choose_scale(points({5.0: 0.937, 8.0: 0.943}, n=100000), 0.99)["cfg_scale"] == 8.0


def test_target_is_capped_at_the_classifiers_ceiling() -> None:
    assert target_accuracy(None) == 0.99
    assert target_accuracy(1.0) == 0.99
    assert target_accuracy(0.97) == 0.97
    assert target_accuracy(0.97, 0.95) == 0.95
    assert accuracy_standard_error(0.99, 1000) == pytest.approx(math.sqrt(0.99 * 0.01 / 1000))


def test_scales_are_checked() -> None:
    assert parse_scales("3,1, 1.5") == [1.0, 1.5, 3.0]
    with pytest.raises(DiffusionLabError, match="numbers separated by commas"):
        parse_scales("1,two")
    with pytest.raises(DiffusionLabError, match="below 1"):
        parse_scales("0.5,2")
    with pytest.raises(DiffusionLabError, match="given twice"):
        parse_scales("2,2")
    with pytest.raises(DiffusionLabError, match="at least one"):
        parse_scales(",")


# -- the curve of a tiny model ----------------------------------------------------------------------------------
class PixelScorer:
    """A stand-in classifier: class = mean brightness bucket; features = 4 pixel means."""

    num_classes = 10
    test_accuracy = None

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        return (images.mean((1, 2, 3)) * 10).long().clamp(0, 9)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(images, 2).flatten(1)


def test_curve_is_evaluate_model_at_each_scale(tiny_class_model: Path) -> None:
    from diffusionlab.backends import load_model
    from diffusionlab.evaluation.evaluate import evaluate_model

    m = load_model(str(tiny_class_model), "cpu")
    scorer = PixelScorer()
    seen = []
    curve = measure_curve(m, scorer, [3.0, 1.0], 2, 3, 0, progress=False, on_point=seen.append)
    assert [p["cfg_scale"] for p in curve] == [1.0, 3.0] and seen == curve
    one = evaluate_model(m, scorer, 2, 3.0, 3, 0, progress=False)  # the same seed: the same samples
    assert curve[1]["conditional_accuracy"] == one["conditional_accuracy"]
    assert curve[1]["background_std"] == one["background_std"]
    acc = curve[1]["conditional_accuracy"]
    assert curve[1]["accuracy_standard_error"] == pytest.approx(math.sqrt(acc * (1 - acc) / 20))
    assert curve[1]["frechet_distance"] is None  # no splits, no FD


# -- the command --------------------------------------------------------------------------------------------
def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_choose_guidance_writes_the_curve_and_only_the_scale_key(tmp_path: Path, capsys) -> None:
    run = make_checkpoint(tmp_path / "run")
    data = make_idx_dir(tmp_path / "data", n_train=40, n_test=20)
    weights = (run / "model.safetensors").read_bytes()
    before = json.loads((run / "model.json").read_text())
    out = tmp_path / "curve.json"
    args = ["choose-guidance", "--model", str(run), "--scales", "1,2", "-n", "2", "--steps", "2"]
    code, stdout, err = run_cli([*args, "--data-dir", str(data), "--out", str(out), "--write"], capsys)
    assert code == 0, err
    curve = json.loads(out.read_text())
    assert [p["cfg_scale"] for p in curve["curve"]] == [1.0, 2.0]
    assert all(p["fd_over_floor"] == p["frechet_distance"] / p["frechet_distance_floor"] for p in curve["curve"])
    assert curve["choice"] == choose_scale(curve["curve"], 0.99)
    assert f"default CFG {curve['choice']['cfg_scale']:g}" in stdout
    after = json.loads((run / "model.json").read_text())
    stored = after.pop(GUIDANCE_KEY)
    assert after == before  # every other key as it was
    assert stored["cfg_scale"] == curve["choice"]["cfg_scale"] and stored["steps"] == 2
    assert (run / "model.safetensors").read_bytes() == weights
    assert (run / "model.json").read_text().startswith('{\n  "format"')  # the file's own indentation


def test_an_interrupted_measurement_keeps_its_points(tmp_path: Path, capsys, monkeypatch) -> None:
    import diffusionlab.evaluation.guidance_curve as gc

    run = make_checkpoint(tmp_path / "run")
    evaluate_model, calls = gc.evaluate_model, []

    def evaluate_then_stop(*args, **kwargs):  # Ctrl-C while the second scale is measured
        if calls:
            raise KeyboardInterrupt
        calls.append(args)
        return evaluate_model(*args, **kwargs)

    monkeypatch.setattr(gc, "evaluate_model", evaluate_then_stop)
    out = tmp_path / "part.json"
    args = ["choose-guidance", "--model", str(run), "--scales", "1,2", "-n", "1", "--steps", "2", "--out", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 130, err
    part = json.loads(out.read_text())
    assert [p["cfg_scale"] for p in part["curve"]] == [1.0] and "choice" not in part


def test_choose_again_from_a_measured_curve(tmp_path: Path, capsys) -> None:
    run = make_checkpoint(tmp_path / "run")
    name = json.loads((run / "model.json").read_text())["name"]
    curve = {"model": name, "data": "mnist", "classifier_test_accuracy": 0.99, "n_per_class": 10, "steps": 30}
    curve |= {"sampler": "ddim", "seed": 0, "curve": []}
    for scale, acc in ((1.0, 0.5), (2.0, 0.995), (3.0, 1.0)):
        point = {"cfg_scale": scale, "conditional_accuracy": acc, "accuracy_standard_error": 0.01, "n_samples": 100}
        curve["curve"].append(
            point | {"frechet_distance": scale, "frechet_distance_floor": 0.5, "fd_over_floor": 2 * scale}
        )
        curve["curve"][-1]["seconds"] = 1.0
    path = tmp_path / "curve.json"
    path.write_text(json.dumps(curve))
    args = ["choose-guidance", "--model", str(run), "--from-curve", str(path)]
    code, stdout, err = run_cli([*args, "--write"], capsys)
    assert code == 0, err
    assert "default CFG 2 for" in stdout
    assert json.loads((run / "model.json").read_text())[GUIDANCE_KEY]["cfg_scale"] == 2.0
    code, stdout, err = run_cli([*args, "--target", "0.4", "--write"], capsys)
    assert code == 0 and "default CFG 1 for" in stdout, err
    stored = json.loads((run / "model.json").read_text())[GUIDANCE_KEY]
    assert (stored["cfg_scale"], stored["target_accuracy"]) == (1.0, 0.4)
    low, high = tmp_path / "low.json", tmp_path / "high.json"  # parts of one grid, measured apart
    low.write_text(json.dumps(curve | {"curve": curve["curve"][:1], "seconds": 1.0, "command": "a"}))
    high.write_text(json.dumps(curve | {"curve": curve["curve"][1:], "seconds": 2.0, "command": "b"}))
    both = ["choose-guidance", "--model", str(run), "--from-curve", str(high), "--from-curve", str(low)]
    code, stdout, err = run_cli([*both, "--out", str(tmp_path / "all.json")], capsys)
    merged = json.loads((tmp_path / "all.json").read_text())
    assert code == 0 and merged["curve"] == curve["curve"] and merged["seconds"] == 3.0, err
    assert merged["choice"]["cfg_scale"] == 2.0 and merged["command"] == ["b", "a"]
    high.write_text(json.dumps(curve | {"curve": curve["curve"][1:], "seed": 1}))
    code, _, err = run_cli(both, capsys)
    assert code == 2 and "the curves differ in seed: 1 in the first, 0 in another" in err
    code, _, err = run_cli([*args, "--from-curve", str(path)], capsys)
    assert code == 2 and "a scale is in two of the curves" in err
    path.write_text(json.dumps(curve | {"model": "another"}))
    code, _, err = run_cli(args, capsys)
    assert code == 2 and f"was measured on 'another', not on {name}" in err


def test_store_keeps_a_shipped_jsons_indentation(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"format": "x", "unet": {"a": [1, 2]}}, indent=1) + "\n")
    store_default_guidance(path, {"cfg_scale": 2.0})
    assert (
        path.read_text()
        == json.dumps({"format": "x", "unet": {"a": [1, 2]}, GUIDANCE_KEY: {"cfg_scale": 2.0}}, indent=1) + "\n"
    )


def test_choose_guidance_refuses_bad_input_before_sampling(tmp_path: Path, capsys) -> None:
    run = make_checkpoint(tmp_path / "run")
    time_run = make_checkpoint(tmp_path / "time", kind="time")
    base = ["choose-guidance", "--out", str(tmp_path / "c.json")]
    cases = {
        ("--model", str(run), "--scales", "0,2"): "--scales: a CFG scale below 1 (0) guides away from the class",
        ("--model", str(run), "--target", "1.5"): "--target is an accuracy in (0, 1], got 1.5",
        ("--model", str(time_run)): "choose-guidance needs a class model",
        ("--model", "deepfloyd", "--write"): "--write stores a default in one of our models' JSON",
    }
    for extra, message in cases.items():
        code, _, err = run_cli([*base, *extra], capsys)
        assert code == 2 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "c.json").exists()


# -- a model with a stored scale samples with it ------------------------------------------------------------------
def test_stored_scale_is_the_sampling_default(tmp_path: Path) -> None:
    from diffusionlab.backends import load_model
    from diffusionlab.tools.generate import sample

    run = make_checkpoint(tmp_path / "run")
    shutil.copytree(run, tmp_path / "stored")
    store_default_guidance(tmp_path / "stored" / "model.json", {"cfg_scale": 2.5, "steps": 3})
    m = load_model(str(tmp_path / "stored"), "cpu")
    assert m.default_guidance_scale == 2.5
    assert load_model(str(run), "cpu").default_guidance_scale is None
    by_default = sample(m, "3", n=2, steps=3, seed=0, progress=False)
    assert by_default.settings["scale"] == 2.5
    assert torch.equal(by_default.images, sample(m, "3", n=2, steps=3, seed=0, scale=2.5, progress=False).images)


# -- the report's section ---------------------------------------------------------------------------------------
def test_report_section_shows_each_stored_curve(tmp_path: Path) -> None:
    from diffusionlab.report.context import Context, Section
    from diffusionlab.report.guidance_curve import sec_guidance
    from diffusionlab.report.run import run_section

    weights = tmp_path / "weights"
    weights.mkdir()
    run = make_checkpoint(tmp_path / "run", hidden=4)
    curve = [
        {
            "cfg_scale": s,
            "conditional_accuracy": a,
            "accuracy_standard_error": 0.01,
            "frechet_distance": 2 * s,
            "frechet_distance_floor": 0.5,
            "fd_over_floor": 4 * s,
            "n_samples": 100,
        }
        for s, a in ((1.0, 0.9), (2.0, 0.99), (3.0, 1.0))
    ]
    entry = {
        "cfg_scale": 2.0,
        "steps": 30,
        "n_per_class": 10,
        "seed": 0,
        "target_accuracy": 0.99,
        "met_target": True,
        "curve": curve,
    }
    shutil.copy(run / "model.safetensors", weights / "mnist-class.safetensors")
    shutil.copy(run / "model.json", weights / "mnist-class.json")
    section = Section("guidance", "Default CFG scale, measured", "S", sec_guidance)
    ctx = Context(tmp_path / "report", "mnist", device="cpu", weights=weights)
    missing = run_section(ctx, section)
    assert missing.status == "missing" and "choose-guidance" in missing.notes[0]
    store_default_guidance(weights / "mnist-class.json", entry)
    ctx = Context(tmp_path / "report", "mnist", device="cpu", weights=weights)
    out = run_section(ctx, section)
    assert out.status == "ok", out.notes
    assert out.table[1:] == [
        ["mnist-class", "1", "90.0 % +- 1.0", "2.00", "4.0x", "100", ""],
        ["mnist-class", "2", "99.0 % +- 1.0", "4.00", "8.0x", "100", "default"],
        ["mnist-class", "3", "100.0 % +- 1.0", "6.00", "12.0x", "100", ""],
    ]
    assert (tmp_path / "report" / out.figures[0].path).stat().st_size > 1000
    assert out.settings["mnist-class"].startswith("CFG 2 (10 per class, 30 steps")
