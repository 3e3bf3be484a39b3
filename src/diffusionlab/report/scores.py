"""The report's score section: live scores of the class DDPM next to the shipped ones, as a table."""

from __future__ import annotations

import json
from typing import Any

import torch

from diffusionlab.report.context import Cell, Context, Figure, SectionOut


# -- scores ---------------------------------------------------------------------------------------------------------
def _pct(v: Any) -> str:
    """A rate as a percentage to 0.1 % (what 100 to 1000 samples can tell apart)."""
    return f"{100 * float(v):.1f} %" if isinstance(v, (int, float)) else "n/a"


def _num(v: Any) -> str:
    return f"{float(v):.4g}" if isinstance(v, (int, float)) else "n/a"


def _find(d: Any, *keys: str) -> Any:
    """The first value under any of keys, searched depth-first in nested dicts."""
    if not isinstance(d, dict):
        return None
    for k in keys:
        if k in d and not isinstance(d[k], dict):
            return d[k]
    for v in d.values():
        found = _find(v, *keys)
        if found is not None:
            return found
    return None


def sec_scores(ctx: Context, out: SectionOut) -> None:
    b = ctx.budget
    m = ctx.score_model()
    data = m.config.get("data", "mnist")
    clf = ctx.classifier(data)
    live = _live_scores(ctx, m, clf, data, out)
    a, pairs = _anagram_scores(ctx, m, clf, out)
    live["anagram"] = a
    shipped, classifiers = _shipped_scores(ctx)
    ctx.scores.update(live=live, shipped=shipped, classifiers=classifiers)
    out.table = _score_table(ctx, m, live, shipped, classifiers, out)
    out.caption = (
        "Scores of the MNIST class DDPM with the project's classifier: conditional accuracy (samples classified as "
        "the class asked for), Frechet distance in the classifier's penultimate features next to the same distance "
        "between the train and test sets, and anagram success (upright classified as prompt 1 AND rotated as "
        "prompt 2). 'live' is recomputed now on a small sample; 'precomputed' is read from the shipped JSON."
    )
    out.settings = {
        "model": m.name,
        "live samples per class": b.score_per_class,
        "live steps": f"{b.score_steps} evenly spaced of T = {m.schedule.num_steps}",
        "anagram pairs": len(pairs),
        "classifier": f"{data}-classifier.safetensors",
    }


def _live_scores(ctx: Context, m, clf, data: str, out: SectionOut) -> dict[str, Any]:
    """Conditional accuracy and, with the data set at hand, the Frechet distances, recomputed on a small sample."""
    from diffusionlab import evaluation

    b = ctx.budget
    live: dict[str, Any] = {"model": m.name, "classifier_test_accuracy": clf.test_accuracy}
    test, train = ctx.split(data, "test"), ctx.split(data, "train")
    n = m.num_classes * b.score_per_class
    what = f"sampling {n} digits ({b.score_per_class} per class, CFG 5, {b.score_steps} steps)"
    if test is not None and train is not None:
        ctx.say("scores", f"{what}, then the Frechet distances")
        r = evaluation.evaluate_model(
            m, clf, b.score_per_class, 5.0, b.score_steps, ctx.seed, test, train, progress=ctx.progress
        )
        r.pop("per_class_accuracy", None)
        live.update(r)
    else:
        ctx.say("scores", what)
        labels = torch.arange(m.num_classes).repeat_interleave(b.score_per_class)
        imgs = evaluation.generate_class_samples(m, labels, 5.0, b.score_steps, ctx.seed, progress=ctx.progress)
        live.update(
            conditional_accuracy=evaluation.conditional_accuracy(clf, imgs, labels),
            n_samples=len(labels),
            n_per_class=b.score_per_class,
            cfg_scale=5.0,
            steps=b.score_steps,
        )
        out.notes.append(f"no {data} train/test data in --data-dir or the cache: Frechet distances not computed")
    return live


def _anagram_scores(ctx: Context, m, clf, out: SectionOut) -> tuple[dict[str, Any], list]:
    """Anagram success over the ordered class pairs (rot180), and the figure of the anagrams scored, each cell
    labelled with its pair and the classifier's verdict."""
    from diffusionlab import evaluation
    from diffusionlab.figures.grid import grid_image, save_png
    from diffusionlab.sampling import timesteps_for
    from diffusionlab.views import get_view

    b = ctx.budget
    pairs = evaluation.ordered_pairs(m.num_classes)
    if b.anagram_pairs is not None:
        pairs = pairs[: b.anagram_pairs]
    ts = timesteps_for(m, b.score_steps)
    ctx.say("scores", f"{len(pairs)} visual anagrams (rot180, CFG 5, {len(ts)} steps), scored by the classifier")
    a = evaluation.evaluate_anagrams(m, clf, "rot180", 1, 5.0, ctx.seed, pairs, ts, progress=ctx.progress)
    images = a.pop("images")
    v = get_view("rot180", m.image_shape)
    k = m.num_classes
    full = len(pairs) == k * (k - 1)
    nrow = k - 1 if full else min(10, len(images))
    rows = [f"{a} ->" for a in range(k)] if full else None
    fig = _side_by_side(
        [
            grid_image(images, nrow, row_labels=rows, title="upright: prompt 1 (rows) -> prompt 2", cell=48),
            grid_image(
                v.apply(images, (0.0, 1.0)), nrow, row_labels=rows, title="rotated 180 degrees: prompt 2", cell=48
            ),
        ]
    )
    path = ctx.fig("scores", "anagrams")
    save_png(fig, path)
    rates = a.get("per_pair", {})
    cells = [Cell(f"{p}→{q}", rates[f"{p}->{q}"] >= 0.5 if f"{p}->{q}" in rates else None) for p, q in pairs]
    balanced = ", reading balance on (the classifier steers each image's steps to the reading it lacks)"
    caption = (
        f"the {len(pairs)} anagrams scored, one per ordered pair a->b (0->1, 0->2, ...), {len(ts)} steps, CFG 5"
        f"{balanced if a.get('balance') else ''}; "
        "the table below has the grids' layout: ✓ when the classifier reads a upright AND b rotated"
    )
    out.figures.append(Figure(ctx.rel(path), caption, cells, nrow))
    if full:  # the per-pair map, as `evaluate --anagram` writes it
        from diffusionlab.evaluation.metrics import score_map

        names = list(m.class_names or range(k))
        title = f"anagram success per pair, rot180: {100 * a['anagram_success']:.0f} % overall"
        map_path = ctx.fig("scores", "anagram_map")
        save_png(score_map(rates, [str(c) for c in names], title, "upright", "rotated"), map_path)
        out.figures.append(
            Figure(ctx.rel(map_path), "the same scores as a 10x10 map: % of the pair's images read both ways")
        )
    return a, pairs


def _side_by_side(parts: list) -> Any:
    """Figures next to each other on white, 16 px apart: the two grids of 90 fit one screen that way."""
    from PIL import Image

    gap = 16
    canvas = Image.new(
        "RGB", (sum(p.width for p in parts) + gap * (len(parts) - 1), max(p.height for p in parts)), "white"
    )
    x = 0
    for p in parts:
        canvas.paste(p, (x, 0))
        x += p.width + gap
    return canvas


def _shipped_scores(ctx: Context) -> tuple[dict[str, Any], dict[str, Any]]:
    """The precomputed scores in the shipped models' JSONs, and the classifiers' test accuracies."""
    shipped: dict[str, Any] = {}
    for name in ("mnist-class", "fashion-mnist-class", "mnist-flow", "mnist-time"):
        cfgp = ctx.weights / f"{name}.json"
        try:
            sc = json.loads(cfgp.read_text()).get("scores")
        except (OSError, ValueError):
            sc = None
        if sc:
            shipped[name] = sc
    classifiers = {}
    for d in ("mnist", "fashion-mnist"):
        try:
            classifiers[d] = json.loads((ctx.weights / f"{d}-classifier.json").read_text()).get("test_accuracy")
        except (OSError, ValueError):
            classifiers[d] = None
    return shipped, classifiers


def _score_table(ctx: Context, m, live: dict, shipped: dict, classifiers: dict, out: SectionOut) -> list[list[str]]:
    """live | precomputed, row by score; the precomputed column only when the scored model is the shipped one."""
    b, a = ctx.budget, live["anagram"]
    shipped_model = ctx.source("mnist-class")
    is_shipped = "mnist-class" not in ctx.runs and ctx._models.get(str(shipped_model.weights)) is m
    pre = shipped.get("mnist-class", {}) if is_shipped else {}
    if not is_shipped and shipped.get("mnist-class"):
        out.notes.append("the precomputed column is empty: the scored model is not the shipped mnist-class")
    live_n = f"live: {live.get('n_samples')} samples, CFG 5, {b.score_steps} steps" + (
        f", {live['sampler']}" if live.get("sampler") else ""
    )
    pre_n = (
        f"precomputed: {_find(pre, 'n_samples') or '?'} samples, {_find(pre, 'steps') or 'all'} steps"
        + (f", {_find(pre, 'sampler')}" if _find(pre, "sampler") else "")
        if pre
        else "precomputed: none shipped"
    )
    ana = pre.get("anagram", {}) if isinstance(pre, dict) else {}
    table = [
        ["score", live_n, pre_n],
        [
            "conditional accuracy (CFG 5)",
            _pct(live.get("conditional_accuracy")),
            _pct(_find(pre, "conditional_accuracy")),
        ],
        ["Frechet distance, samples vs test", _num(live.get("frechet_distance")), _num(_find(pre, "frechet_distance"))],
        [
            "Frechet distance, train vs test (same N)",
            _num(live.get("frechet_distance_train_vs_test")),
            _num(_find(pre, "frechet_distance_train_vs_test")),
        ],
        [
            f"anagram success, rot180 ({a['n_pairs']} ordered pairs live)",
            f"{_pct(a['anagram_success'])} (upright {_pct(a['anagram_first'])}, rotated {_pct(a['anagram_second'])})",
            _pct(_find(ana, "anagram_success")) if ana else _pct(_find(pre, "anagram_success")),
        ],
    ]
    for data, title in (("mnist", "MNIST"), ("fashion-mnist", "Fashion-MNIST")):  # measured when trained, not now
        table.append([f"{title} classifier test accuracy", "-", f"{_pct(classifiers.get(data))} (from its JSON)"])
    for name, sc in shipped.items():
        if name != "mnist-class":
            table.append([f"{name}: conditional accuracy", "-", _pct(_find(sc, "conditional_accuracy"))])
    return table
