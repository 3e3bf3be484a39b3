"""Illusions (issue 13): N-view anagrams and their combination modes, one model call per step with every view and
branch in it, verified best-of-K, per-pair score maps, and the CLI's options and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from parta_helpers import one_thread  # noqa: F401  (autouse fixture)

from diffusionlab import edits, guidance, tools
from diffusionlab.cli import main
from diffusionlab.course_model import CourseModel
from diffusionlab.errors import DiffusionLabError
from diffusionlab.evaluation.metrics import pair_matrix, score_map
from diffusionlab.tools.illusions import anagram_readings, verified
from diffusionlab.views import reading_views

TS = [299, 150, 0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from conftest import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ill") / "run")


@pytest.fixture
def model(run_dir):
    return CourseModel.from_checkpoint(run_dir)


class Counted:
    """Counts the model's forward passes (predict and predict_branches) and the rows in each."""

    def __init__(self, model):
        self.rows: list[int] = []
        for name in ("predict", "predict_branches"):
            own = getattr(model, name, None)
            if own is not None:
                setattr(model, name, self._wrap(own, name))

    def _wrap(self, fn, name):
        def counted(x, *args, **kwargs):
            self.rows.append(x.shape[0] * (args[0] if name == "predict_branches" else 1))
            return fn(x, *args, **kwargs)

        return counted


def _views(model, names):
    return reading_views(names, model.image_shape)


@pytest.mark.parametrize("names", [["rot180"], ["rot90", "rot180"], ["rot90", "rot180", "rot270"]])
@pytest.mark.parametrize("combine", ["mean", "rescaled"])
def test_anagram_is_one_call_per_step_with_every_view_and_branch(model, names, combine):
    views = _views(model, names)
    conds = model.encode([str(i) for i in range(len(views))])
    est = guidance.anagram(model, [(v, conds[i : i + 1]) for i, v in enumerate(views)], model.null(1), 5.0, combine)
    count = Counted(model)
    x = torch.randn(3, *model.image_shape)
    for step, t in enumerate(TS):
        est(x, t)
        assert len(count.rows) == step + 1  # one forward pass per step ...
    assert count.rows == [3 * 2 * len(views)] * len(TS)  # ... holding every view's two CFG branches


def test_cfg_and_hybrid_are_one_call_per_step(model):
    c, u = model.encode(["3"]), model.null(1)
    count = Counted(model)
    guidance.cfg(model, c, u, 5.0)(torch.randn(2, 1, 28, 28), 150)
    guidance.hybrid(model, c, model.encode(["7"]), u, 5.0)(torch.randn(2, 1, 28, 28), 150)
    assert count.rows == [4, 6]


@pytest.mark.parametrize("combine, views_per_call", [("mean", 4), (None, 1)])
def test_sampling_four_views_calls_the_model_once_per_step(model, combine, views_per_call):
    # the default for our models (edits.ANAGRAM_DEFAULTS) alternates: one view's two branches per step
    count = Counted(model)
    x = edits.anagram_views(
        model, ["1", "7", "4", "0"], ["rot90", "rot180", "rot270"], 2, timesteps=TS, progress=False, combine=combine
    )
    assert x.shape == (2, 1, 28, 28) and count.rows == [2 * 2 * views_per_call] * len(TS)


def test_alternate_takes_one_view_per_step_in_turn(model):
    views = _views(model, ["rot180"])
    c = model.encode(["6", "9"])
    pairs = [(views[0], c[:1]), (views[1], c[1:])]
    alt = guidance.anagram(model, pairs, model.null(1), 5.0, "alternate")
    x = torch.randn(2, 1, 28, 28)
    one = [guidance.anagram(model, [p], model.null(1), 5.0)(x, 150).output for p in pairs]
    count = Counted(model)
    assert torch.allclose(alt(x, 150).output, one[0], atol=1e-5)
    assert torch.allclose(alt(x, 150).output, one[1], atol=1e-5)
    assert torch.allclose(alt(x, 150).output, one[0], atol=1e-5)
    assert count.rows == [4, 4, 4]  # one view's two branches per step


def test_rescaled_is_the_mean_at_the_views_std(model):
    views = _views(model, ["rot180"])
    c = model.encode(["6", "9"])
    pairs = [(views[0], c[:1]), (views[1], c[1:])]
    x = torch.randn(2, 1, 28, 28)
    mean = guidance.anagram(model, pairs, model.null(1), 5.0, "mean")(x, 100).output
    res = guidance.anagram(model, pairs, model.null(1), 5.0, "rescaled")(x, 100).output
    ratio = res.flatten(1) / mean.flatten(1)
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-4) and bool((ratio >= 1 - 1e-5).all())
    with pytest.raises(DiffusionLabError, match="unknown view combination"):
        guidance.anagram(model, pairs, model.null(1), 5.0, "median")


def test_readings_and_their_errors():
    assert anagram_readings(["6", "9"], "flip") == (["6", "9"], ["flip"])
    assert anagram_readings(["6", "9"], []) == (["6", "9"], ["rot180"])
    with pytest.raises(DiffusionLabError, match="2 to 4 --prompt"):
        anagram_readings(["1", "2", "3", "4", "5"], ["rot90"] * 4)
    with pytest.raises(DiffusionLabError, match="3 prompts need 2 --view"):
        anagram_readings(["1", "2", "3"], ["rot90"])


def test_tool_four_readings_figure_and_best_of(model):
    res = tools.anagram(model, ["1", "7", "4", "0"], ["rot90", "rot180", "rot270"], n=2, seed=1)
    assert res.images.shape == (2, 1, 28, 28) and res.panels[0].row_labels[3] == "0 (rot270)"
    assert res.panels[0].cells.shape[0] == 8 and "anagram_2_rot90" in res.singles
    best = tools.anagram(model, ["6", "9"], "rot180", n=2, best_of=3, runner_ups=True, seed=1)
    assert best.settings["best_of"] == 3 and len(best.settings["reading_probabilities"]) == 2
    assert all(len(p) == 2 and all(0 <= q <= 1 for q in p) for p in best.settings["reading_probabilities"])
    assert best.panels[1].cells.shape[0] == 2 * 2  # two runner-ups per image
    hyb = tools.hybrid(model, ["0", "1"], n=1, best_of=2, seed=1)
    assert hyb.images.shape == (1, 1, 28, 28) and hyb.settings["best_of"] == 2
    with pytest.raises(DiffusionLabError, match="unknown view"):
        tools.anagram(model, ["1", "2", "3"], ["rot90", "twirl"], n=1)


def test_tool_weights_balance_the_readings(model):
    """Equal weights are the default (the same images); unequal ones change them and are recorded."""
    plain = tools.anagram(model, ["3", "1"], "rot180", n=2, seed=4, progress=False)
    equal = tools.anagram(model, ["3", "1"], "rot180", n=2, seed=4, progress=False, weights=[2, 2])
    torch.testing.assert_close(equal.images, plain.images, atol=0, rtol=0)
    tilted = tools.anagram(model, ["3", "1"], "rot180", n=2, seed=4, progress=False, weights="1,2")
    assert tilted.settings["weights"] == [1.0, 2.0] and "weights" not in plain.settings
    assert not torch.allclose(tilted.images, plain.images, atol=1e-3)
    best = tools.anagram(model, ["6", "9"], "rot180", n=1, best_of=2, seed=1, progress=False, weights=[1, 3])
    assert best.images.shape == (1, 1, 28, 28) and best.settings["weights"] == [1.0, 3.0]


def test_best_of_keeps_the_candidate_whose_weaker_reading_is_surest():
    class Fixed:  # logits: candidate i reads as class 0 with prob p0[i] upright, class 1 with p1[i] viewed
        def __init__(self, p):
            self.p = torch.tensor(p)

        def logits(self, x):
            return torch.stack([self.p.log(), (1 - self.p).log()], 1)

    up, viewed = Fixed([0.9, 0.6, 0.99, 0.7]), Fixed([0.1, 0.3, 0.5, 0.2])  # viewed label 1: 0.9, 0.7, 0.5, 0.8
    readings = [torch.zeros(4), torch.zeros(4)]

    class Both:
        calls = [up, viewed]

        def logits(self, x):
            return self.calls.pop(0).logits(x)

    rows, score = verified(readings, [0, 1], Both(), 2, 2)
    # image 0: candidates min(0.9, 0.9) = 0.9, min(0.6, 0.7) = 0.6; image 1: min(0.99, 0.5), min(0.7, 0.8) = 0.7
    assert rows.tolist() == [[0, 1], [3, 2]]
    assert torch.allclose(score, torch.tensor([[0.9, 0.6], [0.7, 0.5]]))


def test_best_of_keeps_a_candidate_read_as_both_prompts_over_a_surer_failing_one():
    class Table:  # fixed class probabilities per reading call (3 classes)
        def __init__(self, *tables):
            self.tables = [torch.tensor(t) for t in tables]

        def logits(self, x):
            return self.tables.pop(0).log()

    # candidate 0: upright 0 at 0.45 but class 2 at 0.55 (fails), viewed 1 at 0.9 -> weaker 0.45;
    # candidate 1: upright 0 at 0.4 and viewed 1 at 0.4, both the most likely (passes) -> weaker 0.4
    upright = [[0.45, 0.0, 0.55], [0.4, 0.3, 0.3]]
    viewed = [[0.05, 0.9, 0.05], [0.3, 0.4, 0.3]]
    rows, score = verified([torch.zeros(2), torch.zeros(2)], [0, 1], Table(upright, viewed), 1, 2)
    assert rows.tolist() == [[1, 0]]
    assert torch.allclose(score, torch.tensor([[0.4, 0.45]]))


def test_best_of_needs_a_classifier(model):
    model.conditioned = False  # as a time model
    with pytest.raises(DiffusionLabError, match="has none"):
        tools.anagram(model, ["6", "9"], n=1, best_of=2)


def test_score_map_and_pair_matrix():
    per = {"0->1": 0.5, "1->0": 1.0}
    assert pair_matrix(per, 2) == [[None, 0.5], [1.0, None]]
    img = score_map(per, ["0", "1"], "title")
    assert img.size[0] > 100 and img.size[1] > 100


def run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


def test_cli_four_view_anagram(run_dir, tmp_path, capsys):
    out = tmp_path / "four.png"
    argv = ["anagram", "-p", "1", "-p", "7", "-p", "4", "-p", "0", "--view", "rot90", "--view", "rot180"]
    argv += ["--view", "rot270", "-n", "1", "--best-of", "2", "--runner-ups", "--combine", "mean"]
    code, stdout, err = run([*argv, "--model", str(run_dir), "--device", "cpu", "--out", str(out)], capsys)
    assert code == 0, err
    assert out.is_file() and "wrote:" in stdout


@pytest.mark.parametrize("option, recorded", [([], "alternate"), (["--combine", "mean"], "mean")])
def test_anagram_png_records_the_combination_it_used(run_dir, tmp_path, capsys, option, recorded):
    from PIL import Image

    out = tmp_path / "a.png"
    argv = ["anagram", "-p", "6", "-p", "9", "-n", "1", *option, "--model", str(run_dir), "--out", str(out)]
    code, _, err = run([*argv, "--device", "cpu"], capsys)
    assert code == 0, err
    assert json.loads(Image.open(out).info["diffusionlab"])["combine"] == recorded


BAD = {
    "counts differ": (["anagram", "-p", "1", "-p", "7", "-p", "4", "--view", "rot90"], "3 prompts need 2 --view"),
    "five prompts": (["anagram", *sum([["-p", str(i)] for i in range(5)], [])], "2 to 4 --prompt"),
    "unknown view": (["anagram", "-p", "6", "-p", "9", "--view", "twirl"], "unknown view"),
    "best-of 0": (["anagram", "-p", "6", "-p", "9", "--best-of", "0"], "--best-of"),
    "hybrid best-of -1": (["hybrid", "-p", "6", "-p", "9", "--best-of", "-1"], "--best-of"),
    "IF best-of": (["hybrid", "-p", "a cat", "-p", "a dog", "--model", "deepfloyd", "--best-of", "2"], "IF has none"),
    "bad combine": (["anagram", "-p", "6", "-p", "9", "--combine", "median"], "unknown view combination"),
    "weights count": (["anagram", "-p", "6", "-p", "9", "--weights", "1,2,3"], "2 readings need 2 weights"),
    "weights text": (["anagram", "-p", "6", "-p", "9", "--weights", "1;2"], "numbers separated by commas"),
    "weights zero": (["anagram", "-p", "6", "-p", "9", "--weights", "0,1"], "positive numbers"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_cli_bad_values_one_line(run_dir, case, capsys):
    argv, needle = BAD[case]
    own = [] if "--model" in argv else ["--model", str(run_dir)]
    code, _, err = run([*argv, *own, "--device", "cpu"], capsys)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code != 0 and needle in err and len(lines) == 1 and lines[0].startswith("error:"), err


@pytest.mark.parametrize("command", ["anagram", "hybrid", "evaluate"])
def test_help_shows_the_new_options_with_examples(command, capsys):
    code, stdout, _ = run([command, "--help"], capsys)
    assert code == 0 and "Example" in stdout
    for option in {"anagram": ["--best-of", "--combine", "--view", "--weights"], "hybrid": ["--best-of"]}.get(
        command, []
    ):
        assert option in stdout


def test_evaluate_writes_score_maps(tmp_path, run_dir, capsys, monkeypatch):
    import diffusionlab.evaluation.pairs

    monkeypatch.setattr(diffusionlab.evaluation.pairs, "ordered_pairs", lambda k: [(1, 6), (6, 1), (3, 4)])
    monkeypatch.setattr(edits, "default_timesteps", lambda model: TS)
    out = tmp_path / "s.json"
    argv = ["evaluate", "--model", str(run_dir), "-n", "1", "--steps", "2", "--anagram", "rot180", "--hybrid"]
    code, stdout, err = run([*argv, "--out", str(out), "--device", "cpu"], capsys)
    assert code == 0, err
    scores = json.loads(out.read_text())
    assert set(scores["hybrid"]["per_pair"]) == {"1->6", "6->1", "3->4"}
    assert scores["anagram"]["balance"] is True  # sampled as the anagram tool samples
    assert (tmp_path / "s-anagram-rot180.png").is_file() and (tmp_path / "s-hybrid.png").is_file()
