"""The report's guidance section: each class model's measured CFG curve (accuracy and Frechet distance over the
scale) and the default it chose, as `diffusionlab choose-guidance --write` stored them in the model's JSON.
Nothing is sampled here: the curve is the model's own, measured when it was trained or shipped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusionlab.errors import DiffusionLabError
from diffusionlab.report.context import Context, Figure, MissingError, SectionOut

GUIDANCE_KEY = "default_guidance"  # commands/choose_guidance.py writes it; the report only reads
SHIPPED_CLASS_MODELS = ("mnist-class", "fashion-mnist-class")


def measured_guidance(ctx: Context) -> dict[str, dict[str, Any]]:
    """Model name -> its stored guidance entry (with a curve): Part A's model when it is one of ours, then the
    shipped class models; a model without a measured curve is left out."""
    from diffusionlab.backends import is_if_spec

    models = []
    try:
        if not is_if_spec(ctx.model_spec):  # IF keeps the course's CFG 7, measured by no one here
            models.append(ctx.part_a_model())
    except DiffusionLabError:
        pass  # a missing file: the shipped models still show
    for name in SHIPPED_CLASS_MODELS:
        try:
            models.append(ctx.partb_model(name))
        except DiffusionLabError:
            pass
    found = {}
    for m in models:
        entry = m.config.get(GUIDANCE_KEY) or {}
        if entry.get("curve") and m.name not in found:
            found[m.name] = entry
    return found


def curve_table(found: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per measured scale: model, CFG, accuracy +- its standard error, FD, FD over the train-vs-test floor,
    and which scale is the model's default."""
    rows = [["model", "CFG", "accuracy", "FD", "FD / floor", "samples", "default"]]
    for name, entry in found.items():
        for p in entry["curve"]:
            fd, ratio = p.get("frechet_distance"), p.get("fd_over_floor")
            rows.append(
                [
                    name,
                    f"{p['cfg_scale']:g}",
                    f"{100 * p['conditional_accuracy']:.1f} % +- {100 * p['accuracy_standard_error']:.1f}",
                    "-" if fd is None else f"{fd:.2f}",
                    "-" if ratio is None else f"{ratio:.1f}x",
                    str(p["n_samples"]),
                    "default" if p["cfg_scale"] == entry["cfg_scale"] else "",
                ]
            )
    return rows


def plot_guidance(found: dict[str, dict[str, Any]], path: Path) -> Path:
    """Accuracy (left) and FD over its floor (right) against the CFG scale, one line per model, its default
    circled."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    from diffusionlab.model_files import atomic_write_bytes

    fig = MplFigure(figsize=(9, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    acc_ax, fd_ax = fig.subplots(1, 2)
    for name, entry in found.items():
        scales = [p["cfg_scale"] for p in entry["curve"]]
        accs = [100 * p["conditional_accuracy"] for p in entry["curve"]]
        errs = [100 * p["accuracy_standard_error"] for p in entry["curve"]]
        line = acc_ax.errorbar(scales, accs, yerr=errs, marker="o", markersize=3, capsize=2, label=name)
        colour = line[0].get_color()
        ratios = [p.get("fd_over_floor") for p in entry["curve"]]
        if all(r is not None for r in ratios):
            fd_ax.plot(scales, ratios, marker="o", markersize=3, color=colour, label=name)
        chosen = next(p for p in entry["curve"] if p["cfg_scale"] == entry["cfg_scale"])
        acc_ax.plot([chosen["cfg_scale"]], [100 * chosen["conditional_accuracy"]], "o", mfc="none", ms=11, color=colour)
        if chosen.get("fd_over_floor") is not None:
            fd_ax.plot([chosen["cfg_scale"]], [chosen["fd_over_floor"]], "o", mfc="none", ms=11, color=colour)
    targets = {entry["target_accuracy"] for entry in found.values()}
    for t in targets:
        acc_ax.axhline(100 * t, color="grey", linestyle=":", linewidth=0.8)
    acc_ax.set(xlabel="CFG scale", ylabel="conditional accuracy (%)", title="accuracy (dotted: target)")
    fd_ax.set(xlabel="CFG scale", ylabel="FD / train-vs-test floor", title="Frechet distance over its floor")
    for ax in (acc_ax, fd_ax):
        ax.grid(True, alpha=0.4)
        ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return path


def sec_guidance(ctx: Context, out: SectionOut) -> None:
    out.caption = (
        "Each model's default CFG scale was chosen by measurement: the lowest scale whose samples the data set's "
        "classifier reads as the class asked for at least 99 % of the time (a folder model: at most its "
        "classifier's held-out accuracy). More guidance than that buys no accuracy and costs diversity: the "
        "Frechet distance to the test set grows. Circled: the default sample, sdedit and inpaint use."
    )
    found = measured_guidance(ctx)
    if not found:
        raise MissingError(
            "no model here carries a measured guidance curve; measure one with "
            "`diffusionlab choose-guidance --model MODEL --data-dir DATA --write`"
        )
    out.table = curve_table(found)
    path = plot_guidance(found, ctx.fig("guidance", "curve"))
    out.figures.append(Figure(ctx.rel(path), "accuracy and FD/floor over the CFG scale"))
    for name, entry in found.items():
        out.settings[name] = (
            f"CFG {entry['cfg_scale']:g} ({entry['n_per_class']} per class, {entry['steps']} steps, "
            f"seed {entry['seed']}, target {100 * entry['target_accuracy']:.0f} %"
            + ("" if entry["met_target"] else ", not reached: the lowest within one standard error of the best")
            + ")"
        )
