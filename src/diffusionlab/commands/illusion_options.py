"""The options of `diffusionlab anagram` and `hybrid` beyond the shared ones: views, how they are combined,
verified best-of-K. Checked while the command line is parsed."""

from __future__ import annotations

from typing import Annotated

import typer

from diffusionlab import checks
from diffusionlab.views import view_help


def _views(values: list[str] | None) -> list[str] | None:
    from diffusionlab.views import check_view_name

    return [check_view_name(v) for v in values] if values else values


def _combine(value: str | None) -> str | None:
    from diffusionlab.guidance import check_combine

    return check_combine(value) if value is not None else None


def _best_of(value: str) -> str:
    from diffusionlab.tools.readings import parse_best_of

    parse_best_of(value)  # a count >= 1 or auto with a budget; one-line errors
    return value


ViewsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--view",
        help=view_help(),  # from the table in views.py
        callback=_views,
    ),
]
CombineOpt = Annotated[
    str | None,
    typer.Option(
        "--combine",
        help="How the views' noise estimates make one step: mean (Visual Anagrams), alternate (one view per "
        "step), rescaled (the mean at the views' std); default: the measured best (docs/illusions.md). "
        "Example: --combine alternate",
        callback=_combine,
    ),
]
BestOfOpt = Annotated[
    str,
    typer.Option(
        "--best-of",
        help="Make K candidates per image in one batch and keep one that the shipped ranker (an ensemble of "
        "classifiers) reads as every prompt, surest of its weaker reading (our class models only); auto: draw 8 "
        "at a time until each image passes or the budget is spent (auto = auto:32 candidates per image; auto:60s "
        "= 60 seconds). Example: --best-of 8, --best-of auto:64",
        callback=_best_of,
    ),
]


def _weights(value: str | None) -> str | None:
    from diffusionlab.tools.illusions import reading_weights

    if value is not None:
        reading_weights(value, len(value.split(",")))  # numbers, positive; their count is checked with the prompts
    return value


WeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--weights",
        help="One weight per prompt, relative (default equal): more for a reading that the others drown, e.g. a "
        "thin 1. With the views alternating, each reading's share of the steps. Example: -p 3 -p 1 --weights 1,2",
        callback=_weights,
    ),
]
BalanceOpt = Annotated[
    bool | None,
    typer.Option(
        "--balance/--no-balance",
        help="While sampling, the shipped classifier reads each image's clean estimate through every view and "
        "gives more steps to the readings it does not see yet (default: on where the model has a classifier; "
        "docs/illusions.md). Example: -p 3 -p 1 --no-balance",
    ),
]
RunnerUpsOpt = Annotated[
    bool, typer.Option("--runner-ups", help="With --best-of: also show the other candidates, best first.")
]


def _scale(value: float | None) -> float | None:
    return checks.check_scale(value, "--cfg")


ScaleOpt = Annotated[
    float | None,
    typer.Option(
        "--scale",
        "--cfg",
        help="CFG scale (default 7 for IF; for our models the measured one of edits.ANAGRAM_DEFAULTS / "
        "HYBRID_DEFAULTS, see docs/illusions.md). Example: --cfg 10",
        callback=_scale,
    ),
]
PromptsOpt = Annotated[
    list[str], typer.Option("--prompt", "-p", help="2-4 prompts: upright, then one per --view. Example: -p 6 -p 9")
]
HybridPromptsOpt = Annotated[
    list[str], typer.Option("--prompt", "-p", help="Two prompts: low frequencies (far), then high (near).")
]
SigmaOpt = Annotated[
    float | None,
    typer.Option(help="Low-pass sigma (default: the measured one, docs/illusions.md). Example: --sigma 2"),
]
KernelOpt = Annotated[
    int | None, typer.Option(help="Low-pass kernel, odd (default: the measured one). Example: --kernel 15")
]


def _far_scale(value: float | None) -> float | None:
    return checks.check_scale(value, "--far-cfg")


def _near_scale(value: float | None) -> float | None:
    return checks.check_scale(value, "--near-cfg")


def _lowpass(value: str | None) -> str | None:
    from diffusionlab.edits import HYBRID_LOWPASS
    from diffusionlab.errors import DiffusionLabError

    if value is not None and value not in HYBRID_LOWPASS:
        raise DiffusionLabError(f"unknown --lowpass {value!r}; choose one of {', '.join(HYBRID_LOWPASS)}")
    return value


FarScaleOpt = Annotated[
    float | None,
    typer.Option(
        "--far-cfg",
        help="The far (low-pass) component's own CFG scale (default: --cfg). Example: --far-cfg 15",
        callback=_far_scale,
    ),
]
NearScaleOpt = Annotated[
    float | None,
    typer.Option(
        "--near-cfg",
        help="The near (high-pass) component's own CFG scale (default: --cfg). Example: --near-cfg 20",
        callback=_near_scale,
    ),
]
LowpassOpt = Annotated[
    str | None,
    typer.Option(
        "--lowpass",
        help="The low-pass that splits the components: gaussian (--kernel, --sigma) or far (the far view's own "
        "filter: pooled by 2, upsampled); default: the measured one (docs/illusions.md). Example: --lowpass far",
        callback=_lowpass,
    ),
]
HybridBalanceOpt = Annotated[
    bool | None,
    typer.Option(
        "--balance/--no-balance",
        help="While sampling, the shipped ranker reads each image's clean estimate far and near and raises the CFG "
        "of the reading it does not see yet (default: the measured one, docs/illusions.md). Example: --balance",
    ),
]


def check_best_of(model: str, best_of: str | int) -> None:
    """--best-of K > 1 or auto needs the shipped ranker of our class models: refused for IF before it loads."""
    from diffusionlab.backends import is_if_spec
    from diffusionlab.errors import DiffusionLabError
    from diffusionlab.tools.readings import parse_best_of

    if parse_best_of(best_of)[0] != 1 and is_if_spec(model):
        raise DiffusionLabError("--best-of ranks candidates with the shipped classifier; DeepFloyd IF has none")


def check_hybrid(model: str, best_of: str | int, balance: bool | None = None) -> None:
    """Before the model loads: --best-of as check_best_of, --balance not for IF."""
    from diffusionlab.backends import is_if_spec
    from diffusionlab.errors import DiffusionLabError

    check_best_of(model, best_of)
    if balance and is_if_spec(model):
        raise DiffusionLabError("--balance reads the images with the shipped classifier; DeepFloyd IF has none")


def check_anagram(
    model: str, best_of: str | int, weights: str | None, readings: int, balance: bool | None = None
) -> None:
    """Before the model loads: --best-of as check_best_of, --weights one per prompt, --balance not for IF."""
    from diffusionlab.backends import is_if_spec
    from diffusionlab.errors import DiffusionLabError
    from diffusionlab.tools.illusions import reading_weights

    check_best_of(model, best_of)
    reading_weights(weights, readings)
    if balance and is_if_spec(model):
        raise DiffusionLabError("--balance reads the images with the shipped classifier; DeepFloyd IF has none")
