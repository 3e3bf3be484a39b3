"""Part B sections of the report (B1, B2, B2.4, B3, Fashion-MNIST) and their helpers: loss curves, training
figures, provenance, snapshots."""

from __future__ import annotations

import json
from typing import Any

from diffusionlab.errors import DiffusionLabError
from diffusionlab.report.context import PARTB_MODELS, Context, Figure, SectionOut, Source


# -- Part B ----------------------------------------------------------------------------------------------------------
def _loss_curve(ctx: Context, section: str, src: Source, out: SectionOut, fig_name: str = "loss") -> None:
    """The loss per step (and its moving average) with the epochs marked, drawn with matplotlib; a second model
    in the same section names its own figure (fig_name) and its final loss is keyed by the model's name."""
    from diffusionlab.figures.grid import plot_curves
    from diffusionlab.training.losslog import read_log_rows

    if not src.loss_csv.is_file():
        out.notes.append(f"no loss log: {src.loss_csv.name} is not in {src.loss_csv.parent}")
        return
    try:
        rows = read_log_rows(src.loss_csv)
    except (KeyError, ValueError, TypeError, DiffusionLabError) as e:
        out.notes.append(f"{src.loss_csv.name}: not a loss log of ours ({str(e).split(': ', 1)[-1]}); no loss curve")
        return
    if not rows:
        out.notes.append(f"{src.loss_csv.name} is empty")
        return
    ctx.say(section, f"loss curve of {src.name} ({len(rows)} steps)")
    losses, epochs = [r["loss"] for r in rows], [r["epoch"] for r in rows]
    w = max(1, len(losses) // 50)
    smooth = [
        sum(losses[max(0, i - w + 1) : i + 1]) / len(losses[max(0, i - w + 1) : i + 1]) for i in range(len(losses))
    ]
    path = ctx.fig(section, fig_name)
    series = {"training loss (per step)": losses}
    if w > 1:
        series[f"moving average ({w} steps)"] = smooth
    plot_curves(series, path, title=f"{src.name}: training loss", xlabel="step", epochs=epochs)
    final = sum(losses[-100:]) / len(losses[-100:])
    n_epochs = len(set(epochs))
    out.figures.append(
        Figure(
            ctx.rel(path),
            f"training loss per step: {len(losses)} steps over {n_epochs} epoch{'s' if n_epochs != 1 else ''} "
            f"(dotted lines: epoch boundaries); mean of the last 100 steps {final:.4g}",
        )
    )
    key = "final loss (mean of the last 100 steps)"
    out.settings[key if fig_name == "loss" else f"{src.name}: {key}"] = float(f"{final:.4g}")


def _training_figures(ctx: Context, section: str, src: Source, out: SectionOut) -> None:
    """Figures written at training time (shipped in weights/figures/<name>*, or a --train run's figures/):
    copied into the report so that it stays self-contained."""
    import shutil

    if src.name in ctx.runs:
        found = sorted(p for p in (ctx.runs[src.name] / "figures").glob("*") if p.suffix in (".png", ".gif"))
    else:
        found = sorted(p for p in (ctx.weights / "figures").glob(f"{src.name}*") if p.suffix in (".png", ".gif"))
        found = [p for p in found if src.name in PARTB_MODELS and _owner(p.name) == src.name]
    for p in found:
        dest = ctx.fig(section, f"training_{p.stem}", p.suffix[1:])
        shutil.copyfile(p, dest)
        out.figures.append(Figure(ctx.rel(dest), f"written during training: {p.name}"))


def _owner(file_name: str) -> str | None:
    """The longest Part B model name a file name starts with (mnist-class vs mnist-classifier...)."""
    names = [n for n in PARTB_MODELS if file_name.startswith(n) and not file_name[len(n) :][:1].isalnum()]
    return max(names, key=len) if names else None


def _provenance(ctx: Context, src: Source, out: SectionOut) -> None:
    try:
        cfg = json.loads(src.weights.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return
    prov = cfg.get("provenance", {})
    train = cfg.get("train", {})
    out.settings["weights"] = f"{src.weights.name} ({src.where})"
    # the rest is how the model was made: folded away in the page (<details>), kept whole in scores.json
    for key in ("epoch", "step", "loss", "train_seconds", "device"):
        if prov.get(key) is not None:
            out.provenance[f"trained: {key}"] = prov[key]
    for key in ("epochs", "batch_size", "hidden", "lr"):
        if train.get(key) is not None:
            out.provenance[f"recipe: {key}"] = train[key]
    for key in ("command", "seed", "data_md5", "git_commit"):
        if prov.get(key):
            out.provenance[key] = prov[key]


def _final_epoch(src: Source) -> str:
    """The epoch the final weights were saved at, from their JSON ('?' when it does not say)."""
    try:
        return str(json.loads(src.weights.with_suffix(".json").read_text()).get("provenance", {}).get("epoch", "?"))
    except (OSError, ValueError):
        return "?"


def _snapshots(ctx: Context, src: Source, out: SectionOut):
    """(epoch, model) of each snapshot that loads; one that does not is noted, not fatal."""
    for epoch, path in src.snapshots:
        try:
            yield epoch, ctx.load(path)
        except DiffusionLabError as e:
            out.notes.append(f"snapshot of epoch {epoch} skipped: {e}")


def _snapshots_then_final(ctx: Context, src: Source, out: SectionOut) -> list[tuple[str, Any]]:
    """(epoch, model) of each snapshot, then of the final weights; a snapshot of the final epoch is left out
    (the last snapshot may be the final model itself)."""
    final = _final_epoch(src)
    snaps = [(str(e), m) for e, m in _snapshots(ctx, src, out) if str(e) != final]
    return [*snaps, (final, ctx.load(src.weights))]


def _steps_label(m, count: int | None) -> tuple[list[int] | None, str]:
    """The timesteps of `count` steps (None: all T) and how they are sampled, named after the model's default
    rule (`auto`: Algorithm B.2 on all T steps, DDIM eta 0 on strided ones)."""
    from diffusionlab.evaluation.evaluate import sampler_name
    from diffusionlab.sampling import sampler_defaults, timesteps_for
    from diffusionlab.steps import auto_choice

    T, rule = m.schedule.num_steps, sampler_defaults(m)
    auto = rule["sampler"] == "auto"
    strided = count is not None and count < T
    name = sampler_name(auto_choice(strided, rule.get("variance", "auto")) if auto else rule)
    if not strided:
        return timesteps_for(m, T), f"{name}, every step ({T}{', Algorithm B.2' if auto else ''})"
    name += ", the default on strided steps" if auto else ""
    return timesteps_for(m, count), f"{name}, {count} evenly spaced steps of T = {T} (strided, to save time)"


def sec_b1(ctx: Context, out: SectionOut) -> None:
    from diffusionlab.figures import part_b

    src = ctx.source("mnist-denoiser")
    digits = ctx.digits(ctx.budget.digits, out).cpu()
    path = part_b.noising_grid(digits, ctx.fig("B1", "noising_grid"), seed=ctx.seed)
    out.figures.append(Figure(ctx.rel(path), "z = x + sigma eps at sigma 0, .2, .4, .5, .6, .8, 1"))
    out.caption = "Single-step denoising UNet (D = 128) trained at sigma = 0.5 with an L2 loss."
    out.settings["sigmas"] = list(part_b.NOISE_SIGMAS)
    if not src.exists:
        out.status = "missing"
        out.notes.append(src.missing())
        return
    _provenance(ctx, src, out)
    for epoch, m in _snapshots(ctx, src, out):
        p = part_b.denoiser_results(
            m, digits.to(m.device), ctx.fig("B1", f"denoised_epoch{epoch}"), 0.5, f"after epoch {epoch}", ctx.seed
        )
        out.figures.append(Figure(ctx.rel(p), f"test digits denoised after epoch {epoch} (snapshot)"))
    m = ctx.load(src.weights)
    final_epoch = _final_epoch(src)
    p = part_b.denoiser_results(
        m, digits.to(m.device), ctx.fig("B1", "denoised_final"), 0.5, f"final (epoch {final_epoch})", ctx.seed
    )
    out.figures.append(Figure(ctx.rel(p), f"test digits denoised by the final model (epoch {final_epoch})"))
    p = part_b.sigma_sweep(m, digits[:3].to(m.device), ctx.fig("B1", "sigma_sweep"), seed=ctx.seed)
    out.figures.append(Figure(ctx.rel(p), "out of distribution: noise levels it was not trained for"))
    _loss_curve(ctx, "B1", src, out)
    _training_figures(ctx, "B1", src, out)
    _pure_noise(ctx, out)


PURE_NOISE_DENOISER = "mnist-denoiser-pure-noise"  # the shipped name of `train denoiser --pure-noise`


def _pure_noise(ctx: Context, out: SectionOut) -> None:
    """Fall 2025 B1.2.3 inside B1: what a denoiser trained on pure noise makes of pure noise, after each snapshot's
    epoch and at the end, when that model is shipped (or given as a run); a note when it is not."""
    from diffusionlab.figures import part_b

    src = ctx.source(PURE_NOISE_DENOISER)
    if not src.exists:
        out.notes.append(
            f"Denoising pure noise (Fall 2025 B1.2.3) is not shown: {src.weights.name} is not in {src.weights.parent}; "
            "train it with `diffusionlab train denoiser --pure-noise`."
        )
        return
    for epoch, m in _snapshots_then_final(ctx, src, out):
        label = f"after epoch {epoch}"
        path = ctx.fig("B1", f"pure_noise_epoch{epoch}")
        p = part_b.pure_noise_results(m, path, title=f"pure-noise denoiser {label}", seed=ctx.seed)
        out.figures.append(Figure(ctx.rel(p), f"denoising pure noise (B1.2.3): z ~ N(0, I) and D(z), {label}"))
    out.caption += " Denoising pure noise (B1.2.3): " + part_b.PURE_NOISE_CAPTION


def sec_b2(ctx: Context, out: SectionOut) -> None:
    from diffusionlab.figures import part_b

    src = ctx.source("mnist-time")
    out.caption = "Time-conditioned DDPM (T = 300, D = 64): unconditional samples and the sampling process."
    if not src.exists:
        out.status = "missing"
        out.notes.append(src.missing())
        return
    _provenance(ctx, src, out)
    _loss_curve(ctx, "B2", src, out)
    _training_figures(ctx, "B2", src, out)
    b = ctx.budget
    for epoch, m in _snapshots(ctx, src, out):
        ts, how = _steps_label(m, b.snapshot_steps)
        ctx.say("B2", f"after epoch {epoch}: sampling {b.time_n}; {how}")
        paths = part_b.time_samples(
            m,
            ctx.fig("B2", f"samples_epoch{epoch}"),
            b.time_n,
            ctx.seed,
            f"epoch {epoch}",
            timesteps=ts,
            progress=False,
        )
        out.figures.append(Figure(ctx.rel(paths[0]), f"after epoch {epoch} (snapshot); {how}"))
    m = ctx.load(src.weights)
    ts, how = _steps_label(m, b.time_steps)
    ctx.say("B2", f"final model: sampling {b.time_n} and the GIF; {how}")
    paths = part_b.time_samples(
        m,
        ctx.fig("B2", "samples_final"),
        b.time_n,
        ctx.seed,
        "final",
        gif=ctx.fig("B2", "sampling", "gif"),
        timesteps=ts,
        frame_every=max(1, len(ts) // 30),
        progress=False,
    )
    out.figures.append(
        Figure(ctx.rel(paths[0]), f"{b.time_n} samples of the final model (epoch {_final_epoch(src)}); {how}")
    )
    out.figures.append(Figure(ctx.rel(paths[1]), "the sampling process (GIF)"))
    out.settings["sampler"] = how


def _class_section(ctx: Context, out: SectionOut, section: str, name: str, final_steps, gif: bool) -> None:
    from diffusionlab.figures import part_b

    src = ctx.source(name)
    if not src.exists:
        out.status = "missing"
        out.notes.append(src.missing())
        return
    _provenance(ctx, src, out)
    _loss_curve(ctx, section, src, out)
    _training_figures(ctx, section, src, out)
    b = ctx.budget

    def run(m, label: str, fname: str, steps, with_gif: bool) -> None:
        kw: dict[str, Any] = {"progress": False}
        if m.objective == "flow":
            kw["flow_steps"] = b.flow_steps
            how = f"Euler, {b.flow_steps} steps (the course: 300)"
            every = max(1, b.flow_steps // 30)
        else:
            ts, how = _steps_label(m, steps)
            kw["timesteps"] = ts
            every = max(1, len(ts) // 30)
        ctx.say(section, f"{label}: sampling {b.per_class} per class; {how}")
        g = ctx.fig(section, "sampling", "gif") if with_gif else None
        paths = part_b.class_samples(
            m, ctx.fig(section, fname), b.per_class, 5.0, ctx.seed, label, gif=g, frame_every=every, **kw
        )
        out.figures.append(Figure(ctx.rel(paths[0]), f"{label}: {b.per_class} per class, CFG 5; {how}"))
        if g is not None:
            out.figures.append(Figure(ctx.rel(paths[1]), "the sampling process (GIF), final model"))
        out.settings[f"sampler ({label})"] = how

    for epoch, snap_model in _snapshots(ctx, src, out):
        run(snap_model, f"after epoch {epoch}", f"samples_epoch{epoch}", b.snapshot_steps, False)
    run(ctx.load(src.weights), f"final model (epoch {_final_epoch(src)})", "samples_final", final_steps, gif)


def sec_b2_4(ctx: Context, out: SectionOut) -> None:
    out.caption = (
        "Class-conditioned DDPM (one-hot class, dropped with p = 0.1) with classifier-free guidance, scale 5: "
        "samples of every digit, one column per class."
    )
    _class_section(ctx, out, "B2.4", "mnist-class", ctx.budget.final_class_steps, True)


def sec_b3(ctx: Context, out: SectionOut) -> None:
    out.caption = (
        "Flow matching (class-conditioned, the course's later version): x_t = (1 - t) x0 + t x1, predict "
        "u = x1 - x0, Euler sampling with CFG 5 on the velocity."
    )
    _class_section(ctx, out, "B3", "mnist-flow", None, True)
    _time_flow(ctx, out)


TIME_FLOW = "mnist-time-flow"  # the shipped name of `train time --objective flow`


def _time_flow(ctx: Context, out: SectionOut) -> None:
    """The Fall 2025 version's time-conditioned flow (2.2/2.3) inside B3: unconditional samples after each
    snapshot's epoch and at the end, when that model is shipped (or given as a run); a note when it is not."""
    from diffusionlab.figures import part_b

    src = ctx.source(TIME_FLOW)
    if not src.exists:
        out.notes.append(
            f"The time-conditioned flow (Fall 2025 2.2/2.3) is not shown: {src.weights.name} is not in "
            f"{src.weights.parent}; train it with `diffusionlab train time --objective flow`."
        )
        return
    _loss_curve(ctx, "B3", src, out, fig_name="time_flow_loss")
    b = ctx.budget
    how = f"Euler, {b.flow_steps} steps"
    for epoch, m in _snapshots_then_final(ctx, src, out):
        label = f"time-conditioned flow after epoch {epoch}"
        ctx.say("B3", f"{label}: sampling {b.time_n}; {how}")
        path = ctx.fig("B3", f"time_flow_epoch{epoch}")
        paths = part_b.time_samples(m, path, b.time_n, ctx.seed, label, flow_steps=b.flow_steps, progress=False)
        out.figures.append(Figure(ctx.rel(paths[0]), f"{label}: {b.time_n} unconditional samples; {how}"))
    out.caption += " Below them, the time-conditioned flow (no class, Fall 2025 2.2/2.3): unconditional samples."


def sec_fashion(ctx: Context, out: SectionOut) -> None:
    out.caption = "The same class-conditioned DDPM recipe trained on Fashion-MNIST."
    _class_section(ctx, out, "B-fashion", "fashion-mnist-class", ctx.budget.snapshot_steps, False)
