"""Reading balance for anagrams (evaluation.balance): the weights against their formula, the classifier's readings
through each view, the step hook in the one sampler loop, the tool's default and its one-line errors."""

from __future__ import annotations

import pytest
import torch
from parta_helpers import one_thread  # noqa: F401  (autouse fixture)

from diffusionlab import edits, tools
from diffusionlab.cli import main
from diffusionlab.course_model import CourseModel
from diffusionlab.errors import DiffusionLabError
from diffusionlab.evaluation.balance import balance_weights, reading_balance
from diffusionlab.views import get_view


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from conftest import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("bal") / "run")


@pytest.fixture
def model(run_dir):
    return CourseModel.from_checkpoint(run_dir)


def test_balance_weights_against_the_formula():
    short = torch.tensor([[0.3, 0.3], [0.6, 0.5], [0.9, 0.1], [0.0, 1.0]])
    w = balance_weights(short, gain=4.0, floor=0.25)
    # w1 = 0.5 + 4 (s1 - s2) / 2, clamped to [0.25, 0.75]
    torch.testing.assert_close(w, torch.tensor([[0.5, 0.5], [0.7, 0.3], [0.75, 0.25], [0.25, 0.75]]))
    four = balance_weights(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.2, 0.2, 0.2, 0.2]]), gain=1.0, floor=0.25)
    want = torch.tensor([1 / 4 + 3 / 4, 1 / 8, 1 / 8, 1 / 8])  # 1/V + (s - mean), floored at 0.25 * 2 / 4
    torch.testing.assert_close(four[0], want / want.sum())
    torch.testing.assert_close(four[1], torch.full((4,), 0.25))


class ReadsLabel:
    """A classifier that is sure of label 1 when the top half of the image is brighter, else of label 2."""

    def logits(self, x):
        top = x[:, :, :14].mean((1, 2, 3)) > x[:, :, 14:].mean((1, 2, 3))
        out = torch.zeros(len(x), 10)
        out[top, 1] = 10.0
        out[~top, 2] = 10.0
        return out


def test_reading_balance_gives_the_steps_to_the_reading_not_seen():
    ident = get_view("identity", (1, 28, 28))
    rot = get_view("rot180", (1, 28, 28))
    x = torch.zeros(2, 1, 28, 28)
    x[:, :, :14] = 1.0  # top bright: read as 1 upright and as 2 rotated
    labels = [torch.tensor([1, 2]), torch.tensor([2, 2])]  # image 0 wants 1 upright: seen; image 1 wants 2: not
    w = reading_balance(ReadsLabel(), [ident, rot], labels, (-1.0, 1.0))(x * 2 - 1)
    torch.testing.assert_close(w, torch.tensor([[0.5, 0.5], [0.75, 0.25]]), atol=1e-3, rtol=0)


def test_anagram_balance_hook_runs_every_step_and_neutral_factors_change_nothing(model):
    seen = []

    def neutral(x0):
        seen.append(x0.shape)
        return torch.ones(x0.shape[0], 2)

    c = [model.encode(["3"]), model.encode(["1"])]
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    ts = [299, 200, 100, 0]
    plain = edits.anagram(model, *c, "rot180", 2, None, g(), ts, progress=False)
    same = edits.anagram(model, *c, "rot180", 2, None, g(), ts, balance=neutral, progress=False)
    torch.testing.assert_close(same, plain, atol=0, rtol=0)
    assert seen == [(2, 1, 28, 28)] * len(ts)
    tilted = edits.anagram(model, *c, "rot180", 2, None, g(), ts, balance=lambda x0: torch.tensor([[1.0, 3.0]] * 2))
    assert not torch.allclose(tilted, plain, atol=1e-3)


def test_tool_balance_is_on_by_default_for_class_models_and_recorded(model, monkeypatch):
    calls = []
    real = edits.anagram_views
    monkeypatch.setattr(edits, "anagram_views", lambda *a, **kw: calls.append(kw["balance"]) or real(*a, **kw))
    on = tools.anagram(model, ["3", "1"], "rot180", n=1, seed=2, progress=False)
    off = tools.anagram(model, ["3", "1"], "rot180", n=1, seed=2, progress=False, balance=False)
    assert on.settings["balance"] is True and off.settings["balance"] is False
    assert calls[0] is not None and calls[1] is None
    assert tools.anagram(model, ["", "1"], "rot180", n=1, progress=False).settings["balance"] is False  # no class
    with pytest.raises(DiffusionLabError, match="--balance needs a class for every prompt"):
        tools.anagram(model, ["", "1"], "rot180", n=1, progress=False, balance=True)
    model.data = "my-letters"  # no shipped classifier for this data: off, silently
    assert tools.anagram(model, ["3", "1"], "rot180", n=1, progress=False).settings["balance"] is False
    model.conditioned = False  # as a time model
    assert tools.anagram(model, ["3", "1"], "rot180", n=1, progress=False).settings["balance"] is False
    with pytest.raises(DiffusionLabError, match="--balance needs the shipped classifier"):
        tools.anagram(model, ["3", "1"], "rot180", n=1, progress=False, balance=True)


def test_cli_balance_options(run_dir, tmp_path, capsys):
    out = tmp_path / "a.png"
    base = ["anagram", "-p", "3", "-p", "1", "-n", "1", "--model", str(run_dir), "--device", "cpu"]
    with pytest.raises(SystemExit) as done:
        main([*base, "--no-balance", "--out", str(out)])
    assert done.value.code in (0, None) and out.is_file()
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["anagram", "-p", "a cat", "-p", "a dog", "--model", "deepfloyd", "--balance"])
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 2 and len(err) == 1 and "IF has none" in err[0]


def test_balanced_anagram_is_still_one_model_call_per_step(model, monkeypatch):
    """Images whose balance differs take different views at the same step: still one predict per step."""
    calls = []
    for name in ("predict", "predict_branches"):
        own = getattr(model, name, None)
        if own is not None:
            monkeypatch.setattr(model, name, lambda *a, _own=own, **kw: calls.append(1) or _own(*a, **kw))
    tilt = lambda x0: torch.tensor([[1.0, 3.0], [3.0, 1.0], [1.0, 1.0]])  # noqa: E731
    c = [model.encode(["3"]), model.encode(["1"])]
    edits.anagram(model, *c, "rot180", 3, None, torch.Generator().manual_seed(0), [299, 200, 100, 0], balance=tilt)
    assert len(calls) == 4
