"""Visual anagrams (A1.8) and hybrid images (A1.9) as tools: a model and its prompts in, a Result out with the
images and the figure that shows each reading (every view applied; the far, low-passed view).

Anagrams take 2-4 prompts: the first upright, each later one through its own view. `best_of=K` makes K candidates
per image in the same batch and keeps the one whose weaker reading the shipped classifier of the model's data is
surest of (`verified`), optionally showing the runner-ups. `score=True` scores the kept images the same way (each
reading's probability and whether the classifier reads it as its prompt) without ranking candidates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from diffusionlab import edits
from diffusionlab.checks import check_batch, check_count
from diffusionlab.errors import DiffusionLabError
from diffusionlab.figures import show_prompt
from diffusionlab.steps import choose_step_rule
from diffusionlab.tools.image import Seed, seed_generator, tool_settings
from diffusionlab.tools.inputs import as_model, prompts_of
from diffusionlab.tools.result import Panel, Result

MAX_READINGS = 4


def _two(prompts: Sequence[str], tool: str, roles: str) -> list[str]:
    prompts = [prompts] if isinstance(prompts, str) else list(prompts or [])
    if len(prompts) != 2:
        raise DiffusionLabError(f"{tool} needs exactly two --prompt options ({roles}), got {len(prompts)}")
    return prompts


def anagram_readings(prompts: Sequence[str] | str, view: str | Sequence[str]) -> tuple[list[str], list[str]]:
    """2-4 prompts and one view per prompt after the first (a single view name is fine for two prompts)."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts or [])
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
    """The shipped classifier of the model's data set, for best-of-K (and the reading balance: `option` names it
    in the errors); a one-line error where there is none."""
    from diffusionlab.evaluation.classifier import load_classifier
    from diffusionlab.protocol import is_if_like

    if is_if_like(model) or getattr(model, "kind", None) != "class":
        raise DiffusionLabError(
            f"{option} needs the shipped classifier of a class model's data; "
            f"{getattr(model, 'name', 'this model')} has none"
            + (" (use --best-of 1)" if option == "--best-of" else f" (leave {option} off)")
        )
    data = getattr(model, "config", {}).get("data", "mnist")
    clf = load_classifier(data, model.device)
    if tuple(model.image_shape) != (1, 28, 28):
        raise DiffusionLabError(f"{option}: the {data} classifier scores 1x28x28 images, not {model.image_shape}")
    return clf


def labels_of(model, prompts: Sequence[str], option: str = "--best-of") -> list[int]:
    """Class indices of prompts (for scoring); an unconditional prompt has none."""
    cond = model.encode(list(prompts))
    if bool((cond.sum(1) == 0).any()):
        raise DiffusionLabError(f"{option} needs a class for every prompt (an empty prompt has no reading to score)")
    return [int(i) for i in cond.argmax(1).cpu()]


def reading_scores(readings: list[Tensor], labels: list[int], classifier) -> tuple[Tensor, Tensor]:
    """(R, N) each: the classifier's probability that reading r (images in [0, 1]) shows labels[r], and whether
    it reads it so (its most likely class; as evaluation.metrics.anagram_success)."""
    logits = [classifier.logits(x).cpu() for x in readings]
    probs = torch.stack([torch.softmax(lg, 1)[:, lab] for lg, lab in zip(logits, labels, strict=True)])
    passed = torch.stack([lg.argmax(1) == lab for lg, lab in zip(logits, labels, strict=True)])
    return probs, passed


def verified(readings: list[Tensor], labels: list[int], classifier, n: int, k: int) -> tuple[Tensor, Tensor]:
    """readings[r]: reading r of n * k candidates in [0, 1] (image-major: candidates of image j are rows
    j*k .. j*k+k-1). Returns (order (n, k) of candidate rows, best first; their weaker-reading probabilities).
    Candidates read as every prompt come first, then by their weaker reading's probability: with 10 classes a
    reading can be the most likely at 0.4 while a wrong one holds 0.45 of a rival's, so the probability alone
    would keep a failing candidate over a passing one."""
    probs, passed = reading_scores(readings, labels, classifier)
    weakest = probs.min(0).values.reshape(n, k)
    rank = weakest + passed.all(0).reshape(n, k).float()  # probabilities are <= 1: passing ones rank above
    order = rank.argsort(1, descending=True)
    rows = order + torch.arange(n).view(-1, 1) * k
    return rows, weakest.gather(1, order)


def _scores(readings: list[Tensor], labels: list[int], classifier, keep: Tensor) -> dict[str, Any]:
    """The kept images' scores, for the settings (and the PNG's text), one entry per image: each reading's
    probability, whether it is read as its prompt, both (`passed`); see `reading_scores`."""
    probs, hits = reading_scores([r[keep] for r in readings], labels, classifier)
    return {
        "reading_probabilities": [[round(float(p), 4) for p in col] for col in probs.T],
        "reading_passed": [[bool(h) for h in col] for col in hits.T],
        "passed": [bool(col.all()) for col in hits.T],
    }


def _to_unit(x: Tensor, value_range) -> Tensor:
    from diffusionlab.evaluation.metrics import to_unit

    return to_unit(x.cpu(), value_range)


def _rank_anagrams(m, res: Tensor, view_names, view_seed: int, clf, labels, n: int, k: int):
    """The candidate rows of each image, best first ((n, k); image-major as generated when there is no
    classifier), and the settings of the kept ones' scores."""
    from diffusionlab.views import get_view

    if clf is None:
        return torch.arange(n * k).reshape(n, k), {}
    x = _to_unit(res, m.value_range)  # the views acting on [0, 1] images, as the classifier sees them
    unit = [x] + [get_view(v, m.image_shape, (0.0, 1.0), view_seed).apply(x) for v in view_names]
    rows, _ = verified(unit, labels, clf, n, k)
    return rows, {"best_of": k if k > 1 else None, **_scores(unit, labels, clf, rows[:, 0])}


def _reading_balance(m, prompts, view_names, view_seed: int, balance: bool | None, classifier, count: int):
    """The step hook's balance (evaluation.balance.reading_balance) for `count` images, or None. balance None:
    edits.ANAGRAM_DEFAULTS["balance"] where the model has a shipped classifier and every prompt a class;
    True: required (a one-line error where it cannot be)."""
    from diffusionlab.evaluation.balance import reading_balance
    from diffusionlab.views import get_view

    if balance is False or (balance is None and not edits.ANAGRAM_DEFAULTS["balance"]):
        return None
    try:
        clf = classifier if classifier is not None else scoring_classifier(m, "--balance")
        labels = labels_of(m, prompts, "--balance")
    except DiffusionLabError:
        if balance:  # asked for: say why it cannot be
            raise
        return None  # the default applies only where it can (IF, other data, an empty prompt: sampled as before)
    unit = [get_view(v, m.image_shape, (0.0, 1.0), view_seed) for v in ["identity", *view_names]]
    return reading_balance(clf, unit, [torch.full((count,), lab) for lab in labels], m.value_range)


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
    best_of: int = 1,
    runner_ups: bool = False,
    score: bool = False,
    view_seed: int | None = None,
    progress: bool = True,
    classifier: Any = None,
    weights: Sequence[float] | str | None = None,
    balance: bool | None = None,
) -> Result:
    """n images that read as prompts[0] upright and as prompts[k] through view[k - 1] (rot180, flip, rot90, ...;
    see diffusionlab.views): 2-4 readings. combine: guidance.COMBINE_MODES (default: edits.ANAGRAM_DEFAULTS).
    best_of: K candidates per image, the classifier's best kept; score: the kept images scored (both: scores in
    settings, see _scores) by `classifier` (default: the shipped one of the model's data). view_seed: the
    permutation views' seed (default: seed when it is an int, else 0). weights: one per reading, relative (see
    reading_weights): more for a reading that the others drown. balance: the classifier's reading balance while
    sampling (evaluation.balance; default on for class models with a shipped classifier, edits.ANAGRAM_DEFAULTS).
    images: (n, C, H, W); panels[0]: the readings, one row each (the image through each view)."""
    from diffusionlab.guidance import check_combine
    from diffusionlab.views import get_view

    ps, view_names = anagram_readings(prompts, view)
    w = reading_weights(weights, len(ps))
    check_count(best_of, "--best-of")
    if combine is not None:
        check_combine(combine)
    rule = choose_step_rule(sampler, variance, eta)
    m = as_model(model)
    check_batch(n * best_of, m.image_shape, "-n x --best-of")
    permutation_seed = view_seed if view_seed is not None else seed if isinstance(seed, int) else 0
    views = [get_view(v, m.image_shape, m.value_range, permutation_seed) for v in view_names]
    ps = prompts_of(m, ps)
    clf, labels = None, []
    if best_of > 1 or score:
        clf, labels = classifier if classifier is not None else scoring_classifier(m), labels_of(m, ps)
    g = seed_generator(seed)
    combine = edits.anagram_combine(m, combine)  # resolved once: what samples is what the settings record
    per_image = None if w is None else w.expand(n * best_of, -1)
    steer = _reading_balance(m, ps, view_names, permutation_seed, balance, clf, n * best_of)
    res = edits.anagram_views(
        m,
        ps,
        views,
        n * best_of,
        scale,
        g,
        seed=permutation_seed,
        combine=combine,
        weights=per_image,
        balance=steer,
        progress=progress,
        **rule,
    )
    readings = [res] + [v.apply(res) for v in views]
    names = ["upright"] + view_names
    rows, extra = _rank_anagrams(m, res, view_names, permutation_seed, clf, labels, n, best_of)
    keep = rows[:, 0]
    best = [r[keep] for r in readings]
    labels_text = [f"{show_prompt(p)} ({name})" for p, name in zip(ps, names, strict=True)]
    panels = [Panel(torch.cat(best), n, labels_text, None, f"anagram, views {', '.join(view_names)}")]
    if runner_ups and best_of > 1:
        others = rows[:, 1:].reshape(-1)
        panels.append(Panel(res[others], best_of - 1, [f"image {j + 1}" for j in range(n)], None, "runner-ups"))
    singles = {f"anagram_{j + 1}": best[0][j] for j in range(n)}
    singles |= {f"anagram_{j + 1}_{name}": best[r][j] for r, name in enumerate(names) if r for j in range(n)}
    s = edits.illusion_scale(m, edits.ANAGRAM_DEFAULTS) if scale is None else scale
    settings = tool_settings(
        "anagram",
        m,
        seed,
        [],
        prompts=ps,
        views=view_names,
        n=n,
        scale=s,
        combine=combine,
        balance=steer is not None,
        **({} if w is None else {"weights": [round(float(x), 4) for x in w[0]]}),
        **rule,
        **extra,
    )
    return Result(best[0], panels, m.value_range, settings, singles)


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
    best_of: int = 1,
    runner_ups: bool = False,
    progress: bool = True,
) -> Result:
    """n images that read as prompts[0] from afar (low frequencies) and prompts[1] up close (high). kernel/sigma:
    the low-pass (default: edits.hybrid_blur). best_of: K candidates per image, ranked by the classifier (far
    view as prompts[0], the image as prompts[1]). images: (n, C, H, W)."""
    from diffusionlab.evaluation.metrics import far_view
    from diffusionlab.filters import check_blur, lowpass

    two = _two(prompts, "hybrid", "low, high")
    check_count(best_of, "--best-of")
    rule = choose_step_rule(sampler, variance, eta)
    m = as_model(model)
    check_batch(n * best_of, m.image_shape, "-n x --best-of")
    k, sg = edits.hybrid_blur(m, kernel, sigma)
    check_blur(k, sg, m.image_shape[1], m.image_shape[2])
    p1, p2 = prompts_of(m, two)
    clf, labels = (scoring_classifier(m), labels_of(m, [p1, p2])) if best_of > 1 else (None, [])
    res = edits.hybrid(m, p1, p2, n * best_of, sg, k, scale, seed_generator(seed), progress=progress, **rule)
    extra: dict[str, Any] = {}
    keep = torch.arange(n)
    if clf is not None:
        unit = _to_unit(res, m.value_range)
        rows, _ = verified([far_view(unit), unit], labels, clf, n, best_of)
        keep = rows[:, 0]
        extra = {"best_of": best_of, **_scores([far_view(unit), unit], labels, clf, keep)}
    best = res[keep]
    far = lowpass(best, k, sg)
    title = f"hybrid: far {show_prompt(p1)}, near {show_prompt(p2)}; kernel {k}, sigma {sg:g}"
    panels = [Panel(torch.cat([best, far]), n, ["hybrid", f"low-pass ({show_prompt(p1)})"], None, title)]
    if clf is not None and runner_ups:
        others = rows[:, 1:].reshape(-1)
        panels.append(Panel(res[others], best_of - 1, [f"image {j + 1}" for j in range(n)], None, "runner-ups"))
    s = edits.illusion_scale(m, edits.HYBRID_DEFAULTS) if scale is None else scale
    settings = tool_settings("hybrid", m, seed, [], prompts=[p1, p2], n=n, kernel=k, sigma=sg, scale=s, **rule, **extra)
    return Result(best, panels, m.value_range, settings, {f"hybrid_{j + 1}": best[j] for j in range(n)})
