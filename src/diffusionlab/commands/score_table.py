"""The two-column score tables `diffusionlab evaluate` prints (class, unconditional and denoiser scores)."""

from __future__ import annotations

from typing import Any


def frechet_rows(scores: dict[str, Any]) -> list[tuple[str, str]]:
    """The Frechet distance rows of a score table: the distance and its floor, or why there is none."""
    if scores.get("frechet_distance") is None:
        return [("Frechet distance", "not computed: it needs the test set (--data-dir, or the data in the cache)")]
    fd, ref = scores["frechet_distance"], scores["frechet_distance_train_vs_test"]
    return [
        ("Frechet distance (samples vs test)", f"{fd:.3f} ({fd / ref:.1f}x the train-vs-test floor)"),
        ("Frechet distance (train vs test, same N)", f"{ref:.3f}"),
    ]


def format_table(rows: list[tuple[str, str]]) -> str:
    """(name, value) rows as the two aligned columns `evaluate` prints."""
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
