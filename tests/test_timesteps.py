"""One owner of timesteps: sampling.timesteps_for (the model kind) picks them for every front-end, and nothing else in src/ spaces
timesteps itself."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest

from diffusionlab.errors import DiffusionLabError
from diffusionlab.model_kinds import DDPM, IF
from diffusionlab.sampling import timesteps_for
from diffusionlab.schedule import NoiseSchedule

SRC = Path(__file__).resolve().parents[1] / "src" / "diffusionlab"
SPACING = {"spaced_timesteps", "strided_timesteps", "full_timesteps"}


def ours(T: int = 300):
    return SimpleNamespace(kind=DDPM, schedule=NoiseSchedule.linear(T), value_range=(0.0, 1.0))


def if_like(T: int = 1000):
    own = lambda count: list(range(T - 1, -1, -(T // count)))[:count]  # noqa: E731 - a scheduler's own spacing
    return SimpleNamespace(kind=IF, schedule=NoiseSchedule.linear(T), value_range=(-1.0, 1.0), timesteps=own)


def test_our_models_sample_30_spaced_steps_and_edit_along_the_course_stride():
    m = ours()
    assert timesteps_for(m) == timesteps_for(m, 30) and len(timesteps_for(m)) == 30  # a default that --steps remakes
    assert timesteps_for(m, 300) == list(range(299, -1, -1))  # Algorithm B.2: every step, asked for
    assert timesteps_for(m, edit=True) == list(range(290, -1, -10))  # the course's strided schedule at T = 300
    ts = timesteps_for(m, 20)
    assert len(ts) == 20 and ts[0] == 299 and ts[-1] == 0 and ts == sorted(ts, reverse=True)


def test_if_like_models_use_their_own_spacing_and_the_course_stride():
    m = if_like()
    assert timesteps_for(m) == list(range(990, -1, -30))  # the course's strided_timesteps for IF
    assert timesteps_for(m, 20) == m.timesteps(20)


def test_a_bad_count_is_one_line():
    with pytest.raises(DiffusionLabError, match="--steps"):
        timesteps_for(ours(), 0)
    with pytest.raises(DiffusionLabError, match="between 1 and T = 300"):
        timesteps_for(ours(), 301)


def test_no_other_module_spaces_timesteps_itself():
    """The CLI, tools, report and web UI all go through timesteps_for (schedule.py defines the spacings)."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name in ("schedule.py", "model_kinds.py"):  # the spacings, and the kinds that choose them
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in SPACING:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not offenders, f"timesteps chosen outside sampling.timesteps_for: {offenders}"
