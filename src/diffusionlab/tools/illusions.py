"""Visual anagrams (A1.8) and hybrid images (A1.9) as tools: a model and its prompts in, a Result out with the
images and the figure that shows each reading (every view applied; the far, low-passed view).

Anagrams take 2-4 prompts: the first upright, each later one through its own view. `best_of=K` makes K candidates
per image in the same batch and keeps the one whose weaker reading the shipped ranker (an ensemble of classifiers of
the model's data, `evaluation.classifier.load_ranker`) is surest of (`verified`), optionally showing the runner-ups;
`best_of="auto"` draws until each image passes or a budget is spent (`readings.draw_until`). Every kept image is
judged in every reading where the model has a ranker (`readings.judged`: the settings, the summary line, a green or
red frame per reading in the figure)."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from diffusionlab import edits
from diffusionlab.checks import check_batch
from diffusionlab.errors import DiffusionLabError
from diffusionlab.figures.grid import show_prompt
from diffusionlab.steps import choose_step_rule
from diffusionlab.tools.image import Seed, ran_rule, seed_generator, tool_settings
from diffusionlab.tools.inputs import as_model, prompt_list, prompts_of
from diffusionlab.tools.readings import (
    AUTO_ROUND,
    draw_until,
    framed,
    image_labels,
    judged,
    known_failure,
    parse_best_of,
)
from diffusionlab.tools.readings import reading_scores as reading_scores
from diffusionlab.tools.result import Panel, Result

MAX_READINGS = 4


def _two(prompts: Sequence[str], tool: str, roles: str) -> list[str]:
    prompts = prompt_list(prompts)
    if len(prompts) != 2:
        raise DiffusionLabError(f"{tool} needs exactly two --prompt options ({roles}), got {len(prompts)}")
    return prompts


def anagram_readings(prompts: Sequence[str] | str, view: str | Sequence[str]) -> tuple[list[str], list[str]]:
    """2-4 prompts and one view per prompt after the first (a single view name is fine for two prompts)."""
    prompts = prompt_list(prompts)
    views = [view] if isinstance(view, str) else list(view or [])
    if not 2 <= len(prompts) <= MAX_READINGS:
        raise DiffusionLabError(
            f"anagram needs 2 to {MAX_READINGS} --prompt options (the first upright, one per --view), "
            f"got {len(prompts)}"
        )
    if len(views) == 0 and len(prompts) == 2:
        views = ["rot180"]
    if len(views) != len(prompts) - 1:
        raise DiffusionLabError(
            f"anagram: {len(prompts)} prompts need {len(prompts) - 1} --view options (one per prompt after the "
            f"first), got {len(views)}"
        )
    return prompts, views


def illusion_steps(m, steps: int | None, defaults: dict[str, Any]) -> list:
    """An anagram's or hybrid's timesteps: `steps` of them, else the measured default (edits.illusion_timesteps)."""
    from diffusionlab.sampling import timesteps_for

    return edits.illusion_timesteps(m, defaults) if steps is None else timesteps_for(m, steps, edit=True)


def reading_weights(weights: Sequence[float] | str | None, readings: int) -> Tensor | None:
    """--weights: one positive number per reading, relative ("1,2": the second reading takes two steps in three
    when the views alternate, two thirds of the mean otherwise); None: equal. Returns (1, readings) or None."""
    if weights is None:
        return None
    try:
        w = [float(x) for x in (weights.split(",") if isinstance(weights, str) else weights)]
    except ValueError:
        raise DiffusionLabError(f"--weights takes numbers separated by commas, e.g. 1,2; got {weights!r}") from None
    if len(w) != readings:
        raise DiffusionLabError(f"--weights: {readings} readings need {readings} weights, got {len(w)}")
    if not all(math.isfinite(x) and x > 0 for x in w):
        raise DiffusionLabError(f"--weights must be positive numbers, got {','.join(f'{x:g}' for x in w)}")
    return torch.tensor([w])


def scoring_classifier(model, option: str = "--best-of") -> Any:
    """The shipped ranker of the model's data set (an ensemble), for best-of-K, the readings and the reading
    balance (`option` names it in the errors); a one-line error where there is none."""
    from diffusionlab.evaluation.classifier import load_ranker

    data = model.data  # our models' data set; None for a model not trained here (IF)
    if data is None or not model.conditioned:
        raise DiffusionLabError(
            f"{option} needs the shipped classifier of a class model's data; {model.name} has none"
            + (" (use --best-of 1)" if option == "--best-of" else f" (leave {option} off)")
        )
    clf = load_ranker(data, model.device)
    if tuple(model.image_shape) != (1, 28, 28):
        raise DiffusionLabError(f"{option}: the {data} classifier scores 1x28x28 images, not {model.image_shape}")
    return clf


def labels_of(model, prompts: Sequence[str], option: str = "--best-of") -> list[int]:
    """Class indices of prompts (for scoring); an unconditional prompt has none."""
    cond = model.encode(list(prompts))
    if bool((cond.sum(1) == 0).any()):
        raise DiffusionLabError(f"{option} needs a class for every prompt (an empty prompt has no reading to score)")
    return [int(i) for i in cond.argmax(1).cpu()]


def verified(readings: list[Tensor], labels: list[int], classifier, n: int, k: int) -> tuple[Tensor, Tensor]:
    """readings[r]: reading r of n * k candidates in [0, 1] (image-major: candidates of image j are rows
    j*k .. j*k+k-1). Returns (order (n, k) of candidate rows, best first; their weaker-reading probabilities).
    Candidates read as every prompt come first, then by their weaker reading's probability: with 10 classes a
    reading can be the most likely at 0.4 while a wrong one holds 0.45 of a rival's, so the probability alone
    would keep a failing candidate over a passing one."""
    rank, ok = rank_key(readings, labels, classifier)
    order = rank.reshape(n, k).argsort(1, descending=True)
    rows = order + torch.arange(n).view(-1, 1) * k
    return rows, (rank - ok.float()).reshape(n, k).gather(1, order)


def rank_key(readings: list[Tensor], labels: list[int], classifier) -> tuple[Tensor, Tensor]:
    """Per candidate: the weaker reading's probability, plus 1 when every reading is read as asked (probabilities
    are <= 1: passing candidates rank above), and whether it passes."""
    probs, passed, _ = reading_scores(readings, labels, classifier)
    ok = passed.all(0)
    return probs.min(0).values + ok.float(), ok


def _to_unit(x: Tensor, value_range) -> Tensor:
    from diffusionlab.evaluation.metrics import to_unit

    return to_unit(x.cpu(), value_range)


def _ranker(m, prompts, needed: bool, score: bool | None, classifier) -> tuple[Any, list[int], str | None]:
    """(ranker, labels, None) where the tool can judge the readings; (None, [], why not) where it cannot.
    needed (best-of) or score=True: a one-line error instead."""
    if score is False and not needed:
        return None, [], "not asked"
    try:
        clf = classifier if classifier is not None else scoring_classifier(m, "--best-of" if needed else "scoring")
        return clf, labels_of(m, prompts, "--best-of" if needed else "scoring"), None
    except DiffusionLabError as e:
        if needed or score:
            raise
        return None, [], str(e).split(" (")[0]


def _verdict(unit: list[Tensor], labels, clf, names: list[str], m, why: str | None) -> dict[str, Any]:
    """The kept images' readings (readings.judged), or why they were not checked."""
    if clf is None:
        return {"readings_unchecked": why, "readings": f"readings: not checked ({why})"}
    classes = list(m.class_names or range(10))  # a class model of ours (it has a classifier)
    return judged(unit, labels, clf, names, classes)


def _warn(m, readings: int, progress: bool, tool: str = "anagram") -> dict[str, str]:
    """A request the model is measured to fail at: one line on stderr before sampling, and in the settings."""
    warning = known_failure(m, readings, tool)
    if warning is None:
        return {}
    if progress:
        print(warning, file=sys.stderr, flush=True)
    return {"warning": warning}


def _pick(generate, unit_of, labels, clf, n: int, best_of: int | str) -> tuple[Tensor, Tensor | None, dict]:
    """The candidates, their rows per image ((n, k), best first) and how they were drawn: K candidates ranked by
    `verified`, or best-of "auto" (readings.draw_until: the n kept images, rows None)."""
    k, auto_count, auto_seconds = parse_best_of(best_of)
    if k is None:
        score = lambda x: rank_key(unit_of(x), labels, clf)  # noqa: E731
        res, how = draw_until(generate, score, n, auto_count, auto_seconds)
        return res, None, how
    res = generate(n * k)
    rows = torch.arange(n * k).reshape(n, k) if k == 1 else verified(unit_of(res), labels, clf, n, k)[0]
    return res, rows, {"best_of": k} if k > 1 else {}


def _balance_reader(m, prompts, balance: bool | None, default: bool, classifier) -> tuple[Any, list[int]] | None:
    """(classifier, labels) that steer the reading balance, or None. balance None: `default` (the tool's
    measured one) where the model has a shipped classifier and every prompt a class; True: required (a one-line
    error where it cannot be)."""
    if balance is False or (balance is None and not default):
        return None
    try:
        clf = classifier if classifier is not None else scoring_classifier(m, "--balance")
        return clf, labels_of(m, prompts, "--balance")
    except DiffusionLabError:
        if balance:  # asked for: say why it cannot be
            raise
        return None  # the default applies only where it can (IF, other data, an empty prompt: sampled as before)


def _reading_balance(m, prompts, views, balance: bool | None, classifier, count: int):
    """The step hook's balance (evaluation.balance.reading_balance) for `count` images, or None (default:
    edits.ANAGRAM_DEFAULTS["balance"]; see _balance_reader). views: the readings' views, the identity first."""
    from diffusionlab.evaluation.balance import reading_balance

    reader = _balance_reader(m, prompts, balance, edits.ANAGRAM_DEFAULTS["balance"], classifier)
    if reader is None:
        return None
    clf, labels = reader
    return reading_balance(clf, views, [torch.full((count,), lab) for lab in labels], m.value_range)


def anagram(
    model,
    prompts: Sequence[str],
    view: str | Sequence[str] = "rot180",
    n: int = 4,
    scale: float | None = None,
    seed: Seed = 0,
    sampler: str | None = None,
    variance: str | None = None,
    eta: float | None = None,
    combine: str | None = None,
    best_of: int | str = 1,
    runner_ups: bool = False,
    score: bool | None = None,
    view_seed: int | None = None,
    progress: bool = True,
    classifier: Any = None,
    weights: Sequence[float] | str | None = None,
    balance: bool | None = None,
    steps: int | None = None,
) -> Result:
    """n images that read as prompts[0] upright and as prompts[k] through view[k - 1] (rot180, flip, rot90, ...;
    see diffusionlab.views): 2-4 readings. combine: guidance.COMBINE_MODES (default: edits.ANAGRAM_DEFAULTS).
    best_of: K candidates per image, the ranker's best kept, or "auto" / "auto:N" / "auto:Ss" (readings.
    parse_best_of). score: judge the kept images' readings (None: where the model has a ranker; settings: see
    readings.judged) by `classifier` (default: the shipped ranker). view_seed: the permutation views' seed
    (default: seed when it is an int, else 0). weights: one per reading, relative (see reading_weights).
    balance: the ranker's reading balance while sampling (evaluation.balance; default on for class models with a
    shipped ranker, edits.ANAGRAM_DEFAULTS). images: (n, C, H, W); panels[0]: the readings, one row each (the
    image through each view), each framed green when read as asked, red when not. steps: sampling steps (None:
    edits.illusion_timesteps, the measured default)."""
    from diffusionlab.guidance import check_combine
    from diffusionlab.views import reading_views

    ps, view_names = anagram_readings(prompts, view)
    w = reading_weights(weights, len(ps))
    k, auto_count, _ = parse_best_of(best_of)
    if combine is not None:
        check_combine(combine)
    rule = choose_step_rule(sampler, variance, eta)
    m = as_model(model)
    m.kind.require(m, "anagram")
    check_batch(n * (k or AUTO_ROUND), m.image_shape, "-n x --best-of")
    permutation_seed = view_seed if view_seed is not None else seed if isinstance(seed, int) else 0
    views = reading_views(view_names, m.image_shape, seed=permutation_seed)  # built once: the identity, then each
    ps = prompts_of(m, ps)
    clf, labels, why = _ranker(m, ps, k != 1, score, classifier)
    warning = _warn(m, len(ps), progress)
    g = seed_generator(seed)
    combine = edits.anagram_combine(m, combine)  # resolved once: what samples is what the settings record
    ts = illusion_steps(m, steps, edits.ANAGRAM_DEFAULTS)
    steered = []

    def generate(count: int) -> Tensor:
        steer = _reading_balance(m, ps, views, balance, clf, count)
        steered.append(steer is not None)
        per_image = None if w is None else w.expand(count, -1)
        kw = dict(combine=combine, weights=per_image, balance=steer, progress=progress)
        return edits.anagram_views(m, ps, views[1:], count, scale, g, timesteps=ts, **kw, **rule)

    def unit_of(x: Tensor) -> list[Tensor]:  # the readings as the ranker sees them: views acting on [0, 1] images
        u = _to_unit(x, m.value_range)
        return [v.apply(u, (0.0, 1.0)) for v in views]

    res, rows, how = _pick(generate, unit_of, labels, clf, n, best_of)
    kept = res if rows is None else res[rows[:, 0]]
    readings = [v.apply(kept, m.value_range) for v in views]
    names = ["upright"] + view_names
    labels_text = [f"{show_prompt(p)} ({name})" for p, name in zip(ps, names, strict=True)]
    verdict = _verdict(unit_of(kept), labels, clf, labels_text, m, why)
    marks = torch.tensor(verdict["reading_passed"]) if "reading_passed" in verdict else None
    title = f"anagram, views {', '.join(view_names)}"
    cells = framed(torch.cat(readings), marks, m.value_range)
    panels = [Panel(cells, n, labels_text, image_labels(verdict.get("passed"), n), title)]
    if runner_ups and rows is not None and rows.shape[1] > 1:
        others = rows[:, 1:].reshape(-1)
        panels.append(Panel(res[others], rows.shape[1] - 1, [f"image {j + 1}" for j in range(n)], None, "runner-ups"))
    singles = {f"anagram_{j + 1}": kept[j] for j in range(n)}
    singles |= {f"anagram_{j + 1}_{name}": readings[r][j] for r, name in enumerate(names) if r for j in range(n)}
    s = edits.illusion_scale(m, edits.ANAGRAM_DEFAULTS) if scale is None else scale
    settings = tool_settings(
        "anagram", m, seed, [], prompts=ps, views=view_names, n=n, scale=s, combine=combine, balance=any(steered),
        **({} if w is None else {"weights": [round(float(x), 4) for x in w[0]]}), steps=len(ts),
        **ran_rule(m, edits.illusion_rule(m, edits.ANAGRAM_DEFAULTS, rule)), **how, **warning, **verdict,
    )  # fmt: skip
    return Result(kept, panels, m.value_range, settings, singles)


def hybrid(
    model,
    prompts: Sequence[str],
    n: int = 4,
    kernel: int | None = None,
    sigma: float | None = None,
    scale: float | None = None,
    seed: Seed = 0,
    sampler: str | None = None,
    variance: str | None = None,
    eta: float | None = None,
    best_of: int | str = 1,
    runner_ups: bool = False,
    progress: bool = True,
    score: bool | None = None,
    steps: int | None = None,
    classifier: Any = None,
    far_scale: float | None = None,
    near_scale: float | None = None,
    lowpass: str | None = None,
    balance: bool | None = None,
) -> Result:
    """n images that read as prompts[0] from afar (low frequencies) and prompts[1] up close (high). kernel/sigma:
    the Gaussian low-pass (default: edits.hybrid_blur); lowpass: edits.HYBRID_LOWPASS ("far": the far view's own
    pooling). scale: both components' CFG; far_scale / near_scale: one component's own (edits.hybrid_scales).
    balance: the ranker reads each clean estimate far and near after every step and raises the CFG of the reading
    it does not see yet (evaluation.balance.hybrid_balance; default edits.HYBRID_DEFAULTS). best_of: K candidates
    per image or "auto" (as anagram), ranked by the ranker (the far view, metrics.far_view, as prompts[0]; the
    image as prompts[1]); score: as anagram. images: (n, C, H, W); panels[0]: the images (framed by the near
    reading) and their low-pass (by the far). steps, classifier: as anagram's."""
    from diffusionlab.evaluation.balance import hybrid_balance
    from diffusionlab.evaluation.metrics import far_view
    from diffusionlab.filters import check_blur
    from diffusionlab.filters import lowpass as gaussian_lowpass

    two = _two(prompts, "hybrid", "low, high")
    k, _, _ = parse_best_of(best_of)
    rule = choose_step_rule(sampler, variance, eta)
    m = as_model(model)
    m.kind.require(m, "hybrid")
    check_batch(n * (k or AUTO_ROUND), m.image_shape, "-n x --best-of")
    ks, sg = edits.hybrid_blur(m, kernel, sigma)
    check_blur(ks, sg, m.image_shape[1], m.image_shape[2])
    low_pass = edits.hybrid_lowpass(m, lowpass, kernel, sigma)
    scales = edits.hybrid_scales(
        m, (scale if far_scale is None else far_scale, scale if near_scale is None else near_scale)
    )
    p1, p2 = prompts_of(m, two)
    clf, labels, why = _ranker(m, [p1, p2], k != 1, score, classifier)
    reader = _balance_reader(m, [p1, p2], balance, edits.HYBRID_DEFAULTS["balance"], classifier)
    warning = _warn(m, 2, progress, "hybrid")
    g = seed_generator(seed)
    ts = illusion_steps(m, steps, edits.HYBRID_DEFAULTS)

    def generate(count: int) -> Tensor:
        steer = None
        if reader is not None:
            steer = hybrid_balance(reader[0], *(torch.full((count,), lab) for lab in reader[1]), m.value_range)
        kw = dict(timesteps=ts, progress=progress, lowpass=low_pass, balance=steer)
        blur = (sg, ks) if low_pass == "gaussian" else (None, None)
        return edits.hybrid(m, p1, p2, count, *blur, scales, g, **kw, **rule)

    def unit_of(x: Tensor) -> list[Tensor]:
        u = _to_unit(x, m.value_range)
        return [far_view(u), u]

    res, rows, how = _pick(generate, unit_of, labels, clf, n, best_of)
    kept = res if rows is None else res[rows[:, 0]]
    names = [f"{show_prompt(p1)} (far)", f"{show_prompt(p2)} (near)"]
    verdict = _verdict(unit_of(kept), labels, clf, names, m, why)
    marks = torch.tensor(verdict["reading_passed"]).flip(1) if "reading_passed" in verdict else None  # rows: near, far
    if low_pass == "far":  # the far view's own filter: no kernel or sigma to record (they would ask for a Gaussian)
        seen_far, blur, blur_settings = far_view(kept), "far-view low-pass", {}
    else:
        seen_far, blur, blur_settings = (
            gaussian_lowpass(kept, ks, sg),
            f"kernel {ks}, sigma {sg:g}",
            {"kernel": ks, "sigma": sg},
        )
    title = f"hybrid: far {show_prompt(p1)}, near {show_prompt(p2)}; {blur}"
    cells = framed(torch.cat([kept, seen_far]), marks, m.value_range)
    rows_text = ["hybrid", f"low-pass ({show_prompt(p1)})"]
    panels = [Panel(cells, n, rows_text, image_labels(verdict.get("passed"), n), title)]
    if runner_ups and rows is not None and rows.shape[1] > 1:
        others = rows[:, 1:].reshape(-1)
        panels.append(Panel(res[others], rows.shape[1] - 1, [f"image {j + 1}" for j in range(n)], None, "runner-ups"))
    settings = tool_settings(
        "hybrid", m, seed, [], prompts=[p1, p2], n=n, lowpass=low_pass, **blur_settings, scale=scales[0],
        near_scale=scales[1], balance=reader is not None, steps=len(ts),
        **ran_rule(m, edits.illusion_rule(m, edits.HYBRID_DEFAULTS, rule)), **how, **warning, **verdict,
    )  # fmt: skip
    return Result(kept, panels, m.value_range, settings, {f"hybrid_{j + 1}": kept[j] for j in range(n)})
