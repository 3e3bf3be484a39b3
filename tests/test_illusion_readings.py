"""Every illusion says what it reads as (issue 37): the summary line, the frames, best-of auto, the up-front
warning, the ranker ensemble; and the CLI prints the readings with exit status 0."""

from __future__ import annotations

import json

import pytest
import torch
from parta_helpers import one_thread, run_cli  # noqa: F401  (one_thread: autouse fixture)

from diffusionlab.errors import DiffusionLabError
from diffusionlab.evaluation.classifier import RANKER_TILTS, Ensemble, load_ranker, tilted
from diffusionlab.tools.readings import (
    AUTO_ROUND,
    draw_until,
    framed,
    image_labels,
    judged,
    known_failure,
    parse_best_of,
    summary,
)


class Table:
    """A classifier that returns fixed class probabilities, one table per call."""

    def __init__(self, *tables):
        self.tables = [torch.tensor(t) for t in tables]

    def logits(self, x):
        return self.tables.pop(0).log()


def test_judged_says_which_reading_failed_and_as_what():
    upright = [[0.1, 0.8, 0.1], [0.2, 0.7, 0.1]]  # both images read as 1 upright
    viewed = [[0.1, 0.1, 0.8], [0.6, 0.3, 0.1]]  # image 1 reads 2 through the view, image 2 reads 0
    x = [torch.zeros(2, 1, 2, 2)] * 2
    got = judged(x, [1, 2], Table(upright, viewed), ["1 (upright)", "2 (rot180)"], ["0", "1", "2"])
    assert got["passed"] == [True, False] and got["reading_passed"] == [[True, True], [True, False]]
    assert got["reading_read_as"] == [["1", "2"], ["1", "0"]]
    assert got["readings"] == "readings: 1 of 2 images read as asked (image 2: 2 (rot180) read as 0)"


def test_summary_says_a_failed_illusion_in_words():
    settings = {
        "reading_names": ["3 (far)", "1 (near)"],
        "reading_passed": [[False, True]],
        "reading_read_as": [["8", "1"]],
        "passed": [False],
    }
    assert summary(settings) == (
        "readings: 0 of 1 images read as asked - the illusion did not work (image 1: 3 (far) read as 8)"
    )
    assert summary({"readings_unchecked": "no classifier"}) == "readings: not checked (no classifier)"


def test_frames_are_green_where_read_and_red_where_not():
    cells = torch.full((4, 1, 3, 3), 0.5)  # 2 readings x 2 images, reading-major, in [-1, 1]
    passed = torch.tensor([[True, False], [True, True]])  # (n, R): image 1's second reading fails
    out = framed(cells, passed, (-1.0, 1.0))
    assert out.shape == (4, 3, 5, 5)
    torch.testing.assert_close(out[:, :, 1:-1, 1:-1], torch.full((4, 3, 3, 3), 0.5))
    green, red = torch.tensor([-1.0, 1.0, -1.0]), torch.tensor([1.0, -1.0, -1.0])
    # cells: reading 0 of images 1, 2; reading 1 of images 1, 2
    for cell, colour in zip(out, [green, green, red, green], strict=True):
        torch.testing.assert_close(cell[:, 0, 0], colour)
        torch.testing.assert_close(cell[:, -1, 2], colour)
    assert framed(cells, None, (-1.0, 1.0)) is cells
    assert image_labels([True, False], 2) == ["1: pass", "2: FAIL"]


def test_best_of_values():
    assert parse_best_of(8) == (8, None, None) and parse_best_of("1") == (1, None, None)
    assert parse_best_of("auto") == (None, 32, None) and parse_best_of("auto:64") == (None, 64, None)
    assert parse_best_of("auto:90s") == (None, None, 90.0)
    for bad, needle in [("0", "at least 1"), ("many", "a count or auto"), ("auto:0", "budget"), ("auto:-5s", "budget")]:
        with pytest.raises(DiffusionLabError, match=needle):
            parse_best_of(bad)


def test_best_of_auto_draws_until_each_image_passes_or_the_budget_is_spent():
    calls = []

    def generate(count):  # candidate values: the round number; image 0 passes in round 2, image 1 never
        calls.append(count)
        return torch.full((count, 1), float(len(calls)))

    def score(x):
        todo = len(x) // AUTO_ROUND
        ok = torch.zeros(len(x), dtype=torch.bool)
        if len(calls) == 2:
            ok[0] = True  # the first candidate of the first image still drawn
        return x[:, 0] + ok.float() * 10 + torch.arange(len(x)) * 0.01 * (todo > 0), ok

    kept, how = draw_until(generate, score, 2, 32, None)
    assert calls == [16, 16, 8, 8]  # image 0 is done after round 2: only image 1 is drawn for
    assert how["candidates_per_image"] == 32 and how["stopped"] == "budget spent: 32 candidates per image"
    assert kept[0, 0] == 2.0 and kept[1, 0] == 4.0  # image 0 keeps its passing candidate of round 2


def test_four_readings_on_28_px_warn_up_front():
    from types import SimpleNamespace

    small, big = SimpleNamespace(image_shape=(1, 28, 28)), SimpleNamespace(image_shape=(3, 64, 64))
    line = known_failure(small, 4)
    assert line.startswith("warning: 4 readings on a 28-px model: 12 % of images") and "three readings (28 %" in line
    assert known_failure(small, 2) is None and known_failure(small, 3) is None and known_failure(big, 4) is None
    assert known_failure(small, 2, "hybrid").startswith("warning: hybrids on a 28-px model: 24 %")
    assert known_failure(big, 2, "hybrid") is None


def test_ensemble_reads_the_mean_of_its_members_probabilities():
    class Fixed:
        def __init__(self, p):
            self.p = torch.tensor(p)

        def logits(self, x):
            return self.p.log().expand(len(x), -1)

    ens = Ensemble([Fixed([0.6, 0.4]), Fixed([0.0001, 0.9999])])
    probs = torch.softmax(ens.logits(torch.zeros(3, 1)), 1)
    torch.testing.assert_close(probs, torch.tensor([[0.30005, 0.69995]] * 3))
    assert ens.classify(torch.zeros(1, 1)).tolist() == [1]  # the first alone would read 0


def test_tilted_turns_about_the_centre_and_zero_is_the_image_itself():
    x = torch.rand(2, 1, 28, 28)
    assert tilted(x, 0.0) is x
    # a quarter turn maps pixel centres onto pixel centres: it is rot90 (counter-clockwise as displayed)
    torch.testing.assert_close(tilted(x, 90.0), torch.rot90(x, 1, dims=(2, 3)), atol=1e-5, rtol=0)
    assert not torch.allclose(tilted(x, 10.0), x, atol=1e-2)


def test_a_tilted_ensemble_averages_every_member_over_every_tilt():
    class ReadsTheTopRow:  # probability of class 1 = the mean of the image's top row
        def logits(self, x):
            p1 = x[:, 0, 0, :].mean(1).clamp(1e-6, 1 - 1e-6)
            return torch.stack([1 - p1, p1], 1).log()

    x = torch.zeros(1, 1, 28, 28)
    x[:, :, 0, :] = 1.0  # a bright top row: read as 1 upright; tilted, the row moves and reads less
    member = ReadsTheTopRow()
    expected = torch.stack([torch.softmax(member.logits(tilted(x, d)), 1) for d in (0.0, 10.0, -10.0)]).mean(0)
    got = torch.softmax(Ensemble([member, member], (0.0, 10.0, -10.0)).logits(x), 1)
    torch.testing.assert_close(got, expected)
    assert got[0, 1] < 0.999  # the tilts took part
    shipped = load_ranker("mnist")
    assert shipped.tilts == RANKER_TILTS and len(shipped.members) == 3


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from conftest import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("readings") / "run")


def test_cli_says_the_readings_and_exits_0(run_dir, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "a.png"
    argv = ["anagram", "-p", "6", "-p", "9", "-n", "2", "--model", str(run_dir), "--device", "cpu", "--out", str(out)]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    settings = json.loads(Image.open(out).info["diffusionlab"])
    line = next(s for s in stdout.splitlines() if s.startswith("readings:"))
    assert line == settings["readings"] and f"{sum(settings['passed'])} of 2 images read as asked" in line
    assert len(settings["reading_probabilities"]) == 2 and settings["reading_names"] == ["6 (upright)", "9 (rot180)"]


def test_cli_four_readings_warn_before_sampling_and_best_of_auto_says_how_it_ended(run_dir, tmp_path, capsys):
    argv = ["anagram", "-p", "1", "-p", "7", "-p", "4", "-p", "0", "--view", "rot90", "--view", "rot180"]
    argv += ["--view", "rot270", "-n", "1", "--best-of", "auto:8", "--model", str(run_dir), "--device", "cpu"]
    code, stdout, err = run_cli([*argv, "--out", str(tmp_path / "four.png")], capsys)
    assert code == 0, err
    assert [line for line in err.splitlines() if line.startswith("warning:")][0].count("12 %") == 1
    assert "best-of auto: 8 candidates per image, " in stdout and "readings: " in stdout
