"""What an illusion reads as: every output image judged in every view (anagrams) or scale (hybrids) by the shipped
ranker, said in words (`summary`), marked in the figure (`framed`), recorded in the settings (`judged`); what the
model is measured to fail at, said before sampling (`known_failure`); best-of "auto" (`draw_until`).

The ranker judges what it ranked, so a pass here is the ranker's word; docs/illusions.md measures how often a
held-out judge that never ranks agrees."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from diffusionlab.errors import DiffusionLabError

# measured on the shipped 28-px mnist model with the reading balance, 60 images each, by the held-out judge
# (docs/illusions.md, "Three and four views"): the share of images that read right every way, what to try instead
KNOWN_RATES = {
    4: (
        "12 %",
        "try three readings (28 %, e.g. -p 2 -p 6 -p 7 --view rot90 --view rot180), two digits under four views "
        "(22 %, e.g. -p 2 -p 7 -p 2 -p 7 --view rot90 --view rot180 --view rot270) or --best-of auto",
    ),
}
# hybrids, by the held-out judge over all 90 ordered digit pairs x 8 images (docs/illusions.md, "Hybrids by
# measurement": the far view's low-pass with the reading balance, the defaults)
HYBRID_RATE = (
    "24 %",
    "best-of-8 keeps one that reads both ways for 27 % of the pairs; far 7 / near 8 and far 1 / near 8 read best "
    "(8 of 8)",
)
AUTO_ROUND = 8  # candidates per image and round of --best-of auto
AUTO_BUDGET = 32  # candidates per image when no budget is given


def known_failure(model: Any, readings: int, tool: str = "anagram") -> str | None:
    """One line for a request the model is measured to fail at (four readings, or a hybrid, on a 28-px model),
    else None."""
    shape = tuple(model.image_shape)
    if shape[-2:] != (28, 28) or (tool == "anagram" and readings not in KNOWN_RATES):
        return None
    if tool == "hybrid":
        rate, advice = HYBRID_RATE
        return f"warning: hybrids on a 28-px model: {rate} of images read both ways (measured, docs/illusions.md); {advice}"
    rate, advice = KNOWN_RATES[readings]
    return (
        f"warning: {readings} readings on a 28-px model: {rate} of images read right every way "
        f"(measured, docs/illusions.md); {advice}"
    )


def reading_scores(readings: list[Tensor], labels: list[int], classifier) -> tuple[Tensor, Tensor, Tensor]:
    """(R, N) each: the classifier's probability that reading r (images in [0, 1]) shows labels[r], whether it
    reads it so (its most likely class; as evaluation.metrics.anagram_success), and the class it reads."""
    logits = [classifier.logits(x).cpu() for x in readings]
    probs = torch.stack([torch.softmax(lg, 1)[:, lab] for lg, lab in zip(logits, labels, strict=True)])
    read_as = torch.stack([lg.argmax(1) for lg in logits])
    return probs, read_as == torch.tensor(labels).view(-1, 1), read_as


def judged(readings: list[Tensor], labels: list[int], classifier, names: Sequence[str], classes) -> dict[str, Any]:
    """The settings of n images' readings (each (n, C, H, W) in [0, 1]; names: one per reading, e.g. "9 (rot180)"):
    per image each reading's probability, whether it is read as asked, what it is read as; `passed` per image;
    `readings`: the summary line."""
    probs, hits, read_as = reading_scores(readings, labels, classifier)
    settings = {
        "reading_names": list(names),
        "reading_probabilities": [[round(float(p), 4) for p in col] for col in probs.T],
        "reading_passed": [[bool(h) for h in col] for col in hits.T],
        "reading_read_as": [[str(classes[int(c)]) for c in col] for col in read_as.T],
        "passed": [bool(col.all()) for col in hits.T],
    }
    return settings | {"readings": summary(settings)}


def summary(settings: dict[str, Any]) -> str:
    """ "readings: K of N images read as asked" and, for each failed image, which reading failed and as what."""
    if "passed" not in settings:
        return f"readings: not checked ({settings.get('readings_unchecked', 'no classifier')})"
    passed = settings["passed"]
    line = f"readings: {sum(passed)} of {len(passed)} images read as asked"
    fails = []
    for j, ok in enumerate(settings["reading_passed"]):
        bad = [
            f"{name} read as {got}"
            for name, hit, got in zip(settings["reading_names"], ok, settings["reading_read_as"][j], strict=True)
            if not hit
        ]
        if bad:
            fails.append(f"image {j + 1}: {', '.join(bad)}")
    if not any(passed):
        line += " - the illusion did not work"
    return line + (f" ({'; '.join(fails)})" if fails else "")


def framed(cells: Tensor, passed: Tensor | None, value_range: tuple[float, float]) -> Tensor:
    """Grid cells (R * n, C, H, W) in value_range (reading-major, n images per row) -> RGB cells with a one-pixel
    frame: green where that reading is read as asked, red where not (passed: (n, R)); unchanged without scores."""
    if passed is None:
        return cells
    lo, hi = value_range
    rgb = cells.expand(-1, 3, -1, -1) if cells.shape[1] == 1 else cells
    ok = passed.T.reshape(-1)  # reading-major, as the cells
    colour = torch.where(ok.view(-1, 1), torch.tensor([lo, hi, lo]), torch.tensor([hi, lo, lo])).to(cells)
    out = colour.view(-1, 3, 1, 1).expand(-1, -1, cells.shape[2] + 2, cells.shape[3] + 2).clone()
    out[:, :, 1:-1, 1:-1] = rgb
    return out


def image_labels(passed: Sequence[bool] | None, n: int) -> list[str] | None:
    """The figure's column labels: each image's verdict; None without scores."""
    if passed is None:
        return None
    return [f"{j + 1}: {'pass' if ok else 'FAIL'}" for j, ok in enumerate(passed)] if n > 1 else None


def parse_best_of(value: int | str) -> tuple[int | None, int | None, float | None]:
    """--best-of: K (an int >= 1) or "auto" / "auto:N" (up to N candidates per image) / "auto:Ss" (up to S
    seconds). Returns (K, None, None) or (None, candidates, seconds)."""
    text = str(value).strip().lower()
    if not text.startswith("auto"):
        try:
            k = int(text)
        except ValueError:
            raise DiffusionLabError(f"--best-of takes a count or auto (auto:32, auto:60s), got {value!r}") from None
        if k < 1:
            raise DiffusionLabError(f"--best-of must be at least 1, got {k}")
        return k, None, None
    budget = text.removeprefix("auto").removeprefix(":")
    try:
        if budget.endswith("s"):
            seconds = float(budget[:-1])
            if not seconds > 0:
                raise ValueError
            return None, None, seconds
        count = int(budget) if budget else AUTO_BUDGET
        if count < 1:
            raise ValueError
        return None, count, None
    except ValueError:
        raise DiffusionLabError(
            f"--best-of auto takes a budget of candidates per image or seconds, e.g. auto:32 or auto:60s; got {value!r}"
        ) from None


def draw_until(
    generate: Callable[[int], Tensor],
    score: Callable[[Tensor], tuple[Tensor, Tensor]],
    n: int,
    candidates: int | None,
    seconds: float | None,
) -> tuple[Tensor, dict[str, Any]]:
    """Best-of "auto": rounds of AUTO_ROUND candidates for each image not yet read as asked, until every image is
    or the budget (candidates per image, or seconds) is spent. generate(count) -> count candidates; score(x) ->
    (rank key (count,): higher is better, passed (count,)). Returns the kept images (n, ...) and what was done."""
    start, drawn = time.perf_counter(), 0
    best, key = None, torch.full((n,), -float("inf"))
    done = torch.zeros(n, dtype=torch.bool)
    while True:
        todo = (~done).nonzero().flatten()
        x = generate(len(todo) * AUTO_ROUND)
        rank, ok = score(x)
        rank = rank.reshape(len(todo), AUTO_ROUND)
        top = rank.argmax(1)
        if best is None:
            best = x[:n].clone()
        for i, j in enumerate(todo.tolist()):
            if rank[i, top[i]] > key[j]:
                key[j], best[j] = rank[i, top[i]], x[i * AUTO_ROUND + top[i]]
            done[j] |= bool(ok.reshape(len(todo), AUTO_ROUND)[i].any())
        drawn += AUTO_ROUND
        spent = time.perf_counter() - start
        if bool(done.all()):
            stop = "every image read as asked"
        elif candidates is not None and drawn >= candidates:
            stop = f"budget spent: {candidates} candidates per image"
        elif seconds is not None and spent >= seconds:
            stop = f"budget spent: {seconds:g} s"
        else:
            continue
        return best, {"best_of": "auto", "candidates_per_image": drawn, "stopped": stop, "seconds": round(spent, 1)}
