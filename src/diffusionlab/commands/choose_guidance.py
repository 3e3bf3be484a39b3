"""`diffusionlab choose-guidance`: a model's default CFG scale, chosen by measurement (the guidance curve) and,
with --write, stored in the model's JSON beside its weights."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from diffusionlab.checks import check_output_file
from diffusionlab.commands.common import (
    DeviceOpt,
    ForceOpt,
    ModelOpt,
    SeedOpt,
    n_callback,
    steps_callback,
    wrote,
)
from diffusionlab.commands.evaluate import ScoringOptions
from diffusionlab.errors import DiffusionLabError

GUIDANCE_KEY = "default_guidance"  # the model JSON's entry (CourseModel.default_guidance_scale reads its cfg_scale)
CURVE_KEYS = (  # what the model's JSON keeps of each measured point
    "cfg_scale",
    "conditional_accuracy",
    "accuracy_standard_error",
    "frechet_distance",
    "frechet_distance_floor",
    "fd_over_floor",
    "n_samples",
)


def parse_scales(text: str) -> list[float]:
    """ "1,1.5,2" -> [1.0, 1.5, 2.0], each scale checked (guidance_curve.check_scales)."""
    from diffusionlab.evaluation.guidance_curve import check_scales

    try:
        return check_scales([float(part) for part in text.replace(" ", ",").split(",") if part])
    except ValueError:
        raise DiffusionLabError(f"--scales takes numbers separated by commas, e.g. 1,2,3,5; got {text!r}") from None


def choose_guidance(
    model: ModelOpt = "mnist",
    scales: Annotated[
        str, typer.Option("--scales", help="The CFG scales to measure, comma-separated.")
    ] = "1,1.5,2,3,4,5,7",
    n: Annotated[int, typer.Option("-n", "--n", help="Samples per class at each scale.", callback=n_callback)] = 100,
    steps: Annotated[
        int, typer.Option("--steps", help="Sampling steps (DDPM: evenly spaced; flow: Euler).", callback=steps_callback)
    ] = 30,
    seed: SeedOpt = 0,
    scoring: ScoringOptions = ScoringOptions(),  # noqa: B008 - a bundle of options (common.with_bundles)
    target: Annotated[
        float | None,
        typer.Option(
            "--target",
            help="Accuracy the default must reach (default 0.99; a folder model's: at most its classifier's "
            "accuracy on the folder's held-out images).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="JSON file for the curve (default guidance-curve.json; --from-curve: none)."),
    ] = None,
    write: Annotated[
        bool, typer.Option("--write", help="Store the chosen scale (and the steps) in the model's JSON.")
    ] = False,
    from_curve: Annotated[
        list[Path] | None,
        typer.Option(
            "--from-curve",
            help="Choose from curve JSONs measured before, no sampling; several (parts of one grid, same model, -n, "
            "--steps and --seed) are merged. Example: --from-curve low.json --from-curve high.json --out all.json",
        ),
    ] = None,
    force: ForceOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Measure a class model's conditional accuracy and Frechet distance at each CFG scale of --scales (same seed
    at every scale) and choose its default: the lowest scale whose accuracy reaches 99 % (a folder model: at most
    its classifier's held-out accuracy); when none does, the lowest within one standard error of the best. Prints
    the curve and the choice and writes the curve as JSON; --write stores the choice in the model's JSON (the
    weights are not touched), which sample, sdedit and inpaint then use as their default --cfg.

    Example: diffusionlab choose-guidance --model fashion-mnist -n 100 --data-dir data/fashion-mnist --out fm.json
    Example: diffusionlab choose-guidance --model fashion-mnist --from-curve fm.json --write
    """
    from diffusionlab.backends import is_if_spec
    from diffusionlab.commands.common import open_model
    from diffusionlab.evaluation.guidance_curve import choose_scale

    grid = parse_scales(scales)
    if target is not None and not 0.0 < target <= 1.0:
        raise DiffusionLabError(f"--target is an accuracy in (0, 1], got {target}")
    if not from_curve:
        out = out or Path("guidance-curve.json")
    out = check_output_file(out, force) if out is not None else None
    json_path = model_json_path(model) if write else None
    if is_if_spec(model):
        raise DiffusionLabError("choose-guidance measures our class models; DeepFloyd IF keeps the course's CFG 7")
    m = open_model(model, device)
    m.require("class", what="choose-guidance")
    if from_curve:
        result = merge_curves([read_curve(path, m.name) for path in from_curve])
        for point in result["curve"]:
            print(format_point(point))
    else:
        result = measure(m, model, grid, scales, n, steps, seed, scoring, out)
    result["target_accuracy"] = goal_for(result, target)
    result["choice"] = choose_scale(result["curve"], result["target_accuracy"])
    print(format_choice(result))
    if out is not None:
        out.write_text(json.dumps(result, indent=2) + "\n")
        wrote(out)
    if json_path is not None:
        store_default_guidance(json_path, stored_guidance(result))
        wrote(json_path, what="stored the default CFG scale in")


def measure(
    m, model: str, grid, scales: str, n: int, steps: int, seed: int, scoring: ScoringOptions, out: Path
) -> dict[str, Any]:
    """The curve of model m with how it was measured (the classifier of its data, FD against its test split). Each
    point is printed and the curve so far written to `out` as it is measured: an interrupted measurement keeps its
    points (--from-curve takes them, with the rest measured apart)."""
    from diffusionlab.commands.evaluate import check_inputs
    from diffusionlab.evaluation.guidance_curve import measure_curve

    check_inputs(m, n, 0, None)
    data = m.config.get("data", "mnist")
    clf, test, train = scoring.load(m)
    start = time.perf_counter()
    curve: list[dict[str, Any]] = []

    def on_point(point: dict[str, Any]) -> None:
        print(format_point(point))
        curve.append(point)
        header.setdefault("sampler", point["sampler"])  # the step rule evaluate_model reports
        out.write_text(
            json.dumps(header | {"curve": curve, "seconds": round(time.perf_counter() - start, 1)}, indent=2)
        )

    header = {
        "model": m.name,
        "data": data,
        "classifier": scoring.classifier_name(data),
        "classifier_test_accuracy": clf.test_accuracy,
        "n_per_class": n,
        "steps": steps,
        "seed": seed,
        "command": shlex.join(["diffusionlab", "choose-guidance", "--model", model, "--scales", scales, "-n", str(n)])
        + f" --steps {steps} --seed {seed}",
    }
    measure_curve(m, clf, grid, n, steps, seed, test, train, on_point=on_point)
    return header | {"curve": curve, "seconds": round(time.perf_counter() - start, 1)}


def goal_for(result: dict[str, Any], target: float | None) -> float:
    """The accuracy the default must reach: --target (default 99 %), for a folder model at most its classifier's
    accuracy on the folder's held-out images (IDX data sets' shipped classifiers read real Fashion-MNIST at 92.8 %,
    yet samples reach 99 %: their ceiling is not the samples')."""
    from diffusionlab.data import DATASETS
    from diffusionlab.evaluation.guidance_curve import TARGET_ACCURACY, target_accuracy

    ceiling = None if result["data"] in DATASETS else result["classifier_test_accuracy"]
    return target_accuracy(ceiling, TARGET_ACCURACY if target is None else target)


SAME_MEASUREMENT = ("model", "data", "classifier", "n_per_class", "steps", "sampler", "seed")


def merge_curves(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Parts of one grid measured apart (one seed: a scale's point does not depend on the others) as one curve;
    parts measured differently, or a scale measured twice, are refused."""
    first = parts[0]
    for part in parts[1:]:
        differs = [k for k in SAME_MEASUREMENT if part.get(k) != first.get(k)]
        if differs:
            k = differs[0]
            raise DiffusionLabError(
                f"--from-curve: the curves differ in {k}: {first.get(k)!r} in the first, {part.get(k)!r} in another"
            )
    curve = sorted((p for part in parts for p in part["curve"]), key=lambda p: p["cfg_scale"])
    scales = [p["cfg_scale"] for p in curve]
    if len(set(scales)) != len(scales):
        raise DiffusionLabError("--from-curve: a scale is in two of the curves")
    if len(parts) == 1:
        return first
    merged = {k: first.get(k) for k in (*SAME_MEASUREMENT, "classifier_test_accuracy")}
    commands = [part.get("command") for part in parts]
    return merged | {"curve": curve, "seconds": sum(part.get("seconds", 0) for part in parts), "command": commands}


def read_curve(path: Path, name: str) -> dict[str, Any]:
    """A curve JSON written by choose-guidance, of the model called `name`: choosing again needs no sampling."""
    from diffusionlab.files import read_text

    try:
        result = json.loads(read_text(path, limit=2**20))
        ok = isinstance(result, dict) and isinstance(result.get("curve"), list) and result["curve"]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise DiffusionLabError(f"--from-curve {path}: not a curve JSON written by `diffusionlab choose-guidance`")
    if result.get("model") != name:
        raise DiffusionLabError(f"--from-curve {path} was measured on {result.get('model')!r}, not on {name}")
    return result


def model_json_path(model: str) -> Path:
    """The JSON beside a model's weights (a shipped name, a run directory or a checkpoint), checked writable
    before the slow part."""
    from diffusionlab.backends import is_if_spec, resolve_spec
    from diffusionlab.model_files import resolve_checkpoint

    if is_if_spec(model):
        raise DiffusionLabError("--write stores a default in one of our models' JSON; DeepFloyd IF keeps CFG 7")
    path = resolve_checkpoint(resolve_spec(model).target).with_suffix(".json")
    check_output_file(path, force=True, what="--write")
    return path


def stored_guidance(result: dict[str, Any]) -> dict[str, Any]:
    """What the model's JSON keeps: the chosen scale, how it was measured, and the chosen point's figures (no
    machine paths: shipped JSONs say nothing of the machine they were made on)."""
    scale = result["choice"]["cfg_scale"]
    point = next(p for p in result["curve"] if p["cfg_scale"] == scale)
    return {
        "cfg_scale": scale,
        "steps": result["steps"],
        "sampler": result["sampler"],
        "n_per_class": result["n_per_class"],
        "seed": result["seed"],
        "scales": [p["cfg_scale"] for p in result["curve"]],
        "target_accuracy": result["target_accuracy"],
        "met_target": result["choice"]["met_target"],
        "conditional_accuracy": point["conditional_accuracy"],
        "frechet_distance": point["frechet_distance"],
        "fd_over_floor": point["fd_over_floor"],
        "measured_by": "diffusionlab choose-guidance",
        "curve": [{k: p[k] for k in CURVE_KEYS} for p in result["curve"]],  # the report's table and plot
    }


def store_default_guidance(json_path: Path, guidance: dict[str, Any]) -> None:
    """The model's JSON with its GUIDANCE_KEY entry set and everything else as it was, written in the file's own
    indentation (shipped: 1 space, runs: 2), atomically; the weights beside it are not touched."""
    from diffusionlab.model_files import atomic_write_bytes

    text = json_path.read_text()
    lines = text.splitlines()
    indent = len(lines[1]) - len(lines[1].lstrip(" ")) if len(lines) > 1 else 2
    config = json.loads(text)
    config[GUIDANCE_KEY] = guidance
    atomic_write_bytes(json_path, (json.dumps(config, indent=indent or None) + "\n").encode())


def format_point(p: dict[str, Any]) -> str:
    """One measured scale, as it is printed while the curve is measured."""
    acc = f"accuracy {100 * p['conditional_accuracy']:6.2f} % +- {100 * p['accuracy_standard_error']:.2f}"
    if p["frechet_distance"] is None:
        fd = "FD not computed (no test set: --data-dir)"
    else:
        fd = f"FD {p['frechet_distance']:7.3f} ({p['fd_over_floor']:.1f}x the floor {p['frechet_distance_floor']:.3f})"
    return f"CFG {p['cfg_scale']:4g}: {acc}, {fd}, {p['seconds']:.0f} s"


def format_choice(result: dict[str, Any]) -> str:
    """The chosen default and why."""
    c = result["choice"]
    if c["met_target"]:
        why = f"the lowest scale with accuracy >= {100 * result['target_accuracy']:.1f} %"
    else:
        why = (
            f"no scale reached {100 * result['target_accuracy']:.1f} %: the lowest within one standard error of "
            f"the best ({100 * c['threshold']:.1f} %)"
        )
    return f"default CFG {c['cfg_scale']:g} for {result['model']} ({why}; {result['n_per_class']} per class, {result['steps']} steps)"


def register(app: typer.Typer) -> None:
    app.command("choose-guidance")(choose_guidance)
