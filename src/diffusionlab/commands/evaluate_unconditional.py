"""`diffusionlab evaluate` on an unconditional (time-conditioned) DDPM or flow model: what it cannot take, and
the table it prints."""

from __future__ import annotations

from typing import Any

from diffusionlab.commands.score_table import format_table, frechet_rows
from diffusionlab.errors import DiffusionLabError

DEFAULT_SAMPLES = 1000


def check_unconditional_options(name: str, cfg: float | None, anagram, hybrid: bool) -> None:
    """The options that steer class-conditioned samples end in one line for a model without classes."""
    given = [k for k, v in {"--anagram": anagram, "--hybrid": hybrid, "--cfg": cfg is not None}.items() if v]
    if given:
        raise DiffusionLabError(
            f"{given[0]} needs class-conditioned samples; {name} is an unconditional (time-conditioned) model"
        )


def format_unconditional_scores(s: dict[str, Any], class_names=None) -> str:
    """The score table `diffusionlab evaluate` prints for an unconditional model."""
    names = list(class_names or [str(i) for i in range(len(s["class_shares"]))])
    rows = [
        ("model", f"{s['model']} (unconditional)"),
        ("samples", f"{s['n_samples']}, {s['sampler']} {s['steps'] or 'all'} steps, seed {s['seed']}"),
        (
            "classes of the samples",
            ", ".join(f"{n} {100 * p:.1f}%" for n, p in zip(names, s["class_shares"], strict=True)),
        ),
        (
            "class spread vs " + s["class_share_reference"],
            f"{100 * s['class_share_distance']:.1f} % total-variation distance (0: the same spread)"
            + (
                f"; a train subset of the same N: {100 * s['class_share_distance_train']:.1f} %"
                if s.get("class_share_distance_train") is not None
                else ""
            ),
        ),
        ("background std (raw samples)", f"{s['background_std']:.4f}"),
        *frechet_rows(s),
    ]
    return format_table(rows)
