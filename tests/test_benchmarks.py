"""The benchmark scripts run end to end (a smoke run at tiny sizes on the CPU) and print every row of RESULTS.md;
the IF-I-XL-shaped config they scale is IF-I-XL's own."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_idx_dir

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
pytestmark = pytest.mark.slow  # each runs a benchmark script end to end, minutes in all
RATIO = r"= (\d+\.\d+)x"


class TopHalf:
    """A stub classifier: reads `top` when an image's top half is brighter, else `bottom`."""

    def __init__(self, top, bottom):
        self.top, self.bottom = top, bottom

    def logits(self, x):
        bright = x[:, :, :14].mean((1, 2, 3)) > x[:, :, 14:].mean((1, 2, 3))
        out = torch.zeros(len(x), 10)
        out[bright, self.top] = out[~bright, self.bottom] = 10.0
        return out

    def classify(self, x):
        return self.logits(x).argmax(1)


def run_script(name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / name), *args], cwd=BENCH, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_bench_train_prints_every_variant_with_accuracy(tmp_path: Path) -> None:
    data = make_idx_dir(tmp_path / "data", n_train=128)  # one batch of the recipe's 128
    out = run_script(
        "bench_train.py", "--steps", "2", "--hidden", "8", "--accuracy", "1", "--sample-steps", "2",
        "--data-dir", str(data),
    )  # fmt: skip
    rows = [line for line in out.splitlines() if "steps/s;" in line]
    assert len(rows) == 5 and rows[0].startswith("reference")
    assert [r.rsplit("; ", 1)[1].split(" (")[0] for r in rows[1:4]] == [
        "precision fp32",
        "precision fp32",
        "precision bf16",
    ]
    assert rows[4].rsplit("; ", 1)[1].startswith("precision ")  # what auto chose on this CPU, and why
    for row in rows:
        assert "2 steps in" in row and "EXTRAPOLATED" in row and "peak RSS" in row
        assert re.search(r"conditional accuracy \d+\.\d% \(1 per digit\)", row)
    assert len(re.findall(r"ratio steps/s .*" + RATIO, out)) == 4


def test_bench_folder_prints_loader_and_training_rows_per_size() -> None:
    out = run_script("bench_folder.py", "--quick", "--threads", "1")
    assert re.search(r"matmul peak: fp32 [\d.]+ GFLOP/s", out)
    for size in (32, 16):
        assert re.search(rf"{size} px: decoded 18 images \(3 channels\) in [\d.]+ s = \d+ images/s; batching", out)
        loader = float(re.search(rf"{size} px: decoded .* = (\d+) images/s \(batch 4\)", out)[1])
        steps, train, ratio = re.search(
            rf"{size} px, fp32: ([\d.]+) steps/s = ([\d.]+) images/s, .* % of the fp32 matmul peak; "
            r"loader/training images/s = ([\d.]+)x",
            out,
        ).groups()
        assert float(train) == pytest.approx(4 * float(steps), rel=0.01)  # a batch of 4 images a step
        assert float(ratio) == pytest.approx(loader / float(train), rel=0.01)
        assert len(re.findall(rf"^\| {size} px \| .* \| fp32 \| ", out, re.M)) == 1


def test_bench_sample_prints_ratios_and_the_big_run() -> None:
    out = run_script("bench_sample.py", "--steps", "1", "--hidden", "8", "--big", "20")
    assert len(re.findall(r"40 samples x 300 steps .* scaled x300", out)) == 5
    assert re.search(r"bf16 \(forced.*; precision bf16 \(asked for\)", out)
    assert re.search(r"auto \(the default.*; precision (fp32|bf16) \(auto: ", out)
    assert len(re.findall(r"ratio speed .*" + RATIO, out)) == 4
    assert re.search(r"ours --fast: 20 samples x 300 steps", out)


def test_bench_parta_scaled_unet_runs_every_row_on_cpu() -> None:
    out = run_script(
        "bench_parta.py", "--device", "cpu", "--width", "1", "--threads", "1", "--repeats", "1", "--warmup", "0",
        "--many", "2",
    )  # fmt: skip
    for row, calls in (("CFG step", 2), ("anagram step", 4), ("hybrid step", 3)):
        assert re.search(rf"{row}: {calls} sequential calls [\d.]+ ms, ours batched [\d.]+ ms, ratio [\d.]+x", out)
    assert re.search(r"2 anagrams: one at a time [\d.]+ ms/step, in one batch [\d.]+ ms/step", out)
    assert "peak RSS" in out


def test_bench_parta_width_11_is_the_if_i_xl_config() -> None:
    pytest.importorskip("diffusers")
    sys.path.insert(0, str(BENCH))
    try:
        import bench_parta
    finally:
        sys.path.remove(str(BENCH))
    config = bench_parta.unet_config()
    assert config["block_out_channels"] == (704, 1408, 2112, 2816)
    assert config["cross_attention_dim"] == 2816
    assert config["encoder_hid_dim"] == 4096 and config["layers_per_block"] == 3
    assert bench_parta.unet_config(1)["block_out_channels"] == (64, 128, 192, 256)


def test_sampler_table_appends_each_row_and_resumes_without_measuring_again(tmp_path: Path) -> None:
    from conftest import make_checkpoint

    data, model = make_idx_dir(tmp_path / "data", n_train=20, n_test=20), make_checkpoint(tmp_path / "m", hidden=4)
    rows = tmp_path / "rows.jsonl"
    args = ["--model", str(model), "--data-dir", str(data), "-n", "2", "--steps", "2", "--threads", "1"]
    first = run_script("sampler_table.py", *args, "--rules", "ddim:0", "--rows", str(rows))
    assert len(rows.read_text().splitlines()) == 1 and re.search(r"\| ddim \(eta 0\) \| 2 \| 20 \| ", first)
    second = run_script("sampler_table.py", *args, "--rules", "ddim:0,dpm++2m", "--rows", str(rows))
    assert "ddim:0 at 2 steps: in" in second  # measured once only
    measured = [json.loads(line) for line in rows.read_text().splitlines()]
    assert [(r["rule"], r["steps"], r["n_samples"]) for r in measured] == [("ddim:0", 2, 20), ("dpm++2m", 2, 20)]
    table = run_script("sampler_table.py", "--rows", str(rows), "--table")
    assert len([line for line in table.splitlines() if line.startswith("| d")]) == 2


def test_multiview_reading_scores_read_each_view_of_the_image() -> None:
    sys.path.insert(0, str(BENCH))
    from multiview_table import digit_tuples, reading_scores

    from diffusionlab.views import get_view

    class Brightest:  # "reads" an image as the index of its brightest pixel (2x2 images: classes 0..3)
        def classify(self, images):
            return images.flatten(1).argmax(1)

    images = torch.zeros(2, 1, 2, 2)
    images[0, 0, 0, 0] = images[1, 0, 0, 1] = 1.0  # brightest pixel 0 (upright) -> 3 after rot180; 1 -> 2
    rot180 = get_view("rot180", (1, 2, 2))
    got = reading_scores(Brightest(), images, [rot180], torch.tensor([[0, 3], [1, 3]]))
    assert got["per_reading"] == [1.0, 0.5] and got["all"] == 0.5 and got["readings"] == 0.75
    assert got["ink"] == pytest.approx(2 / 8)
    tuples = digit_tuples(10, 4, 5, seed=0)
    assert tuples == digit_tuples(10, 4, 5, seed=0) and all(len(set(t)) == 4 for t in tuples)


def test_multiview_table_appends_rows_and_resumes(tmp_path: Path) -> None:
    from conftest import make_checkpoint

    model, rows = make_checkpoint(tmp_path / "m", hidden=4), tmp_path / "rows.jsonl"
    args = ["--model", str(model), "--tuples", "2", "--n", "1", "--views", "rot90,rot180", "--rows", str(rows)]
    first = run_script("multiview_table.py", *args, "--combine", "alternate")
    assert "alternate: all" in first and len(rows.read_text().splitlines()) == 1
    second = run_script("multiview_table.py", *args, "--combine", "alternate,mean")
    assert "alternate: all" not in second and "mean: all" in second  # the measured row is not measured again
    measured = [json.loads(line) for line in rows.read_text().splitlines()]
    assert [(r["combine"], r["tuples"], r["n"]) for r in measured] == [("alternate", 2, 1), ("mean", 2, 1)]
    assert len([line for line in second.splitlines() if line.startswith("| rot90,rot180 |")]) == 2


def test_illusion_table_rows_say_their_model_and_precision_and_resume_per_model(tmp_path: Path) -> None:
    """A row of another model than the default says which (and the precision it sampled in); run again, the
    same model's row is not measured again, another model's is (they used to share one key)."""
    from conftest import make_checkpoint

    from diffusionlab.backends import load_model

    a, b = make_checkpoint(tmp_path / "a", hidden=4), make_checkpoint(tmp_path / "b", hidden=4, seed=1)
    rows = tmp_path / "rows.jsonl"
    args = ["--views", "rot180", "--n", "1", "--pairs", "0-1", "--anagram", "balance=off", "--judge", "none"]
    run_script("illusion_table.py", "--model", str(a), *args, "--rows", str(rows))
    again = run_script("illusion_table.py", "--model", str(a), *args, "--rows", str(rows))
    assert "anagram rot180" not in again and len(rows.read_text().splitlines()) == 1
    other = run_script("illusion_table.py", "--model", str(b), *args, "--rows", str(rows))
    assert "anagram rot180" in other
    measured = [json.loads(line) for line in rows.read_text().splitlines()]
    ran_in = load_model(str(a)).precision  # what auto (or $DIFFUSIONLAB_PRECISION) picks on this machine
    assert [(r["model"], r["precision"]) for r in measured] == [(str(a), ran_in), (str(b), ran_in)]


def test_illusion_table_ceiling_and_never_solved_pairs() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        from illusion_table import never_solved, solved_share
    finally:
        sys.path.remove(str(BENCH))
    a = {"kind": "anagram", "view": "rot180", "n_per_pair": 8, "per_pair": {"0->1": 0.0, "1->0": 0.125, "0->2": 0.0}}
    b = {"kind": "anagram", "view": "rot180", "n_per_pair": 2, "per_pair": {"0->1": 0.5, "1->0": 0.0, "0->2": 0.0}}
    assert solved_share(a) == pytest.approx(1 / 3) and solved_share(b) == pytest.approx(1 / 3)
    assert never_solved([a, b]) == "rot180: 1 of 3 pairs never solved in 10 images each (2 rows): 0->2"


def test_illusion_table_best_of_ranks_with_the_classifier_and_scores_with_the_judge() -> None:
    """--judge: the shipped classifier still picks the candidate (as the tool does); the judge says if it passes."""
    from types import SimpleNamespace

    sys.path.insert(0, str(BENCH))
    try:
        from illusion_table import best_of
    finally:
        sys.path.remove(str(BENCH))

    images = torch.zeros(2, 1, 28, 28)
    images[0, :, 14:] = 1.0  # candidate 0: bottom bright; candidate 1: top bright
    images[1, :, :14] = 1.0
    model = SimpleNamespace(image_shape=(1, 28, 28), num_classes=10)
    ranker = TopHalf(0, 1)  # candidate 1 reads 0 upright and 1 rotated: the pair 0->1
    assert best_of(ranker, images, "rot180", model, 2, 2, "0-1") == 1.0
    assert best_of(ranker, images, "rot180", model, 2, 2, "0-1", judge=TopHalf(1, 0)) == 0.0  # the judge disagrees


def _saved_candidates(tmp_path: Path, image_file, images: torch.Tensor | None = None, pairs="0-1,1-0") -> torch.Tensor:
    """One saved illusion_table row of 16 rot180 candidates (2 pairs, 8 each; default: noise) under tmp_path."""
    row = {"kind": "anagram", "view": "rot180", "n_per_pair": 8, "pairs": pairs, "seed": 0}
    if images is None:
        images = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)) ** 4
    (tmp_path / "images").mkdir()
    torch.save(images, tmp_path / "images" / image_file(row))
    (tmp_path / "rows.jsonl").write_text(json.dumps(row) + "\n")
    return images


def test_ranker_study_scores_each_design_by_both_judges(tmp_path: Path) -> None:
    """ranker_study re-ranks saved candidates: single-shot is the held-out judge's own pass share of the images;
    each design keeps one image of each group of 8, so its rate is a whole number of groups."""
    sys.path.insert(0, str(BENCH))
    try:
        from illusion_judging import image_file, load_judge, pair_labels, passes, readings
    finally:
        sys.path.remove(str(BENCH))
    from types import SimpleNamespace

    images = _saved_candidates(tmp_path, image_file)
    out = run_script("ranker_study.py", "--rows", str(tmp_path / "rows.jsonl"), "--images", str(tmp_path / "images"))
    table = [line.split(" | ") for line in out.splitlines() if line.startswith("| rot180 |")]
    assert len(table) == 6  # single-shot and five designs
    model = SimpleNamespace(image_shape=(1, 28, 28), num_classes=10)
    judge = load_judge(str(BENCH / "judges" / "mnist-judge-lenet.safetensors"))
    ok = passes(judge, readings("anagram", "rot180", model, images), pair_labels(model, 8, "0-1,1-0"))
    assert table[0][1] == "single-shot" and table[0][3] == f"{100 * ok.float().mean():.1f} % |"
    assert all(cells[2] in ("0.0 %", "50.0 %", "100.0 %") for cells in table[1:])


def test_ranker_study_cross_grades_every_networks_picks_by_every_network(tmp_path: Path) -> None:
    """--cross: each of 4 networks ranks and each grades; a network grading its own picks keeps a passing candidate
    whenever a group has one (its best-of-8 is its any-of-8), and single-shot is each grader's own pass share.
    Candidates: real test digits, a few 6s (a 6 turned over reads 9) among 7s for 6->9, one 9 among 7s for 9->6."""
    from diffusionlab.testdigits import first_test_images

    sys.path.insert(0, str(BENCH))
    try:
        from illusion_judging import image_file, load_judge, pair_labels, passes, readings
    finally:
        sys.path.remove(str(BENCH))
    from types import SimpleNamespace

    digits, labels, _ = first_test_images("mnist", 100, sample_because="the test's fixture")
    six, seven, nine = (digits[labels == d].float() / 255 for d in (6, 7, 9))
    candidates = torch.cat([six[:3], seven[:5], nine[:1], seven[5:12]])
    images = _saved_candidates(tmp_path, image_file, candidates, "6-9,9-6")
    args = ["--rows", str(tmp_path / "rows.jsonl"), "--images", str(tmp_path / "images"), "--cross"]
    out = run_script("ranker_study.py", *args)
    header = next(line for line in out.splitlines() if line.startswith("| view |")).split(" | ")[2:]
    rows = {c[1]: c[2:] for c in (line.rstrip(" |").split(" | ") for line in out.splitlines()) if c[0] == "| rot180"}
    graders = [h.removeprefix("graded by the ").rstrip(" |") for h in header]
    assert len(graders) == 4 and set(rows) == {"single-shot", "any of 8"} | {
        f"best-of-8 ranked by the {g}" for g in graders
    }
    for col, grader in enumerate(graders):
        assert rows[f"best-of-8 ranked by the {grader}"][col] == rows["any of 8"][col]
    model = SimpleNamespace(image_shape=(1, 28, 28), num_classes=10)
    judge = load_judge(str(BENCH / "judges" / "mnist-judge-lenet.safetensors"))
    ok = passes(judge, readings("anagram", "rot180", model, images), pair_labels(model, 8, "6-9,9-6"))
    assert 0 < ok.sum() < 8  # some candidates pass, most do not: a wrong pick shows
    assert rows["single-shot"][graders.index("held-out judge")] == f"{100 * ok.float().mean():.1f} %"
    assert rows["any of 8"][graders.index("held-out judge")] == "100.0 %"


def test_ranker_study_refuses_rows_it_cannot_group_and_rows_without_images(tmp_path: Path) -> None:
    """Rows of 8 per pair cannot make groups of 3; rows whose images are not saved give no table: one line each."""
    sys.path.insert(0, str(BENCH))
    try:
        from illusion_judging import image_file
    finally:
        sys.path.remove(str(BENCH))
    _saved_candidates(tmp_path, image_file)
    args = [sys.executable, "ranker_study.py", "--rows", str(tmp_path / "rows.jsonl"), "--cross"]
    for extra, said in (
        (["--images", str(tmp_path / "images"), "--best-of", "3"], "--best-of 3 needs rows of a multiple of 3"),
        (["--images", str(tmp_path / "elsewhere")], "no anagram rows of"),
    ):
        done = subprocess.run([*args, *extra], cwd=BENCH, capture_output=True, text=True, timeout=300)
        assert done.returncode == 1 and said in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_judge_trainer_takes_another_data_set_and_scores_it_as_saved(tmp_path: Path) -> None:
    """judges/train.py judge --data fashion-mnist: the JSON says the data set, and the test accuracy it records is
    the one the saved (float16) judge gives on that test split when loaded again; ranker members stay MNIST's."""
    sys.path.insert(0, str(BENCH))
    try:
        from illusion_judging import load_judge
    finally:
        sys.path.remove(str(BENCH))
    from diffusionlab.data import load_split, to_float

    data, out = make_idx_dir(tmp_path / "data", n_train=128), tmp_path / "fashion-judge.safetensors"
    args = ["judge", "--data", "fashion-mnist", "--data-dir", str(data), "--epochs", "1", "--out", str(out)]
    run_script("judges/train.py", *args)
    config = json.loads(out.with_suffix(".json").read_text())
    assert (config["data"], config["kind"], config["epochs"]) == ("fashion-mnist", "judge", 1)
    test = load_split("fashion-mnist", "test", str(data))
    read = load_judge(str(out)).classify(to_float(test.images))
    assert config["test_accuracy"] == round(float((read == test.labels).float().mean()), 5)
    done = subprocess.run(
        [sys.executable, str(BENCH / "judges" / "train.py"), "ranker", "--data", "fashion-mnist", "--data-dir", "x"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "mnist only" in done.stderr


def test_a_flip_symmetric_member_is_trained_and_ranker_study_tries_it(tmp_path: Path) -> None:
    """judges/train.py ranker-flip-symmetric adds an upside-down copy of every 0, 1, 3 and 8 (as themselves) and
    writes a classifier the tools can load; ranker_study --extra ranks with it alone and beside the shipped members."""
    sys.path.insert(0, str(BENCH))
    try:
        from illusion_judging import image_file
    finally:
        sys.path.remove(str(BENCH))
    from diffusionlab.data import load_split
    from diffusionlab.evaluation.classifier import load_classifier

    data, member = make_idx_dir(tmp_path / "data", n_train=128), tmp_path / "flipsym.safetensors"
    said = run_script("judges/train.py", "ranker-flip-symmetric", "--data-dir", str(data), "--out", str(member))
    labels = load_split("mnist", "train", str(data)).labels
    assert f"{int(torch.isin(labels, torch.tensor([0, 1, 3, 8])).sum())} upside-down images added" in said
    assert load_classifier(str(member), "cpu").num_classes == 10
    _saved_candidates(tmp_path, image_file)
    args = ["--rows", str(tmp_path / "rows.jsonl"), "--images", str(tmp_path / "images"), "--extra", str(member)]
    out = run_script("ranker_study.py", *args)
    designs = [line.split(" | ")[1] for line in out.splitlines() if line.startswith("| rot180 |")]
    assert designs == [
        "single-shot",
        "best-of-8: ensemble, tilts (shipped)",
        "best-of-8: shipped + flipsym",
        "best-of-8: flipsym alone, tilts",
    ]
    done = subprocess.run(
        [sys.executable, str(BENCH / "judges" / "train.py"), "ranker-flip-symmetric", "--data-dir", str(data)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "needs --out" in done.stderr


def test_best_of_auto_keeps_the_first_round_the_ranker_passes_and_the_judge_grades_it() -> None:
    """best_of_auto.simulate runs the tool's own loop (draw_until) over saved rounds: it stops at the first round
    with a candidate the ranker reads as asked and keeps that one; a judge that reads otherwise fails the kept
    image although another candidate passes it; with no passing round every round is drawn."""
    sys.path.insert(0, str(BENCH))
    try:
        from best_of_auto import simulate
    finally:
        sys.path.remove(str(BENCH))

    failing = torch.zeros(8, 1, 28, 28)
    failing[:, :, 14:] = 1.0  # bottom bright: reads 1 upright and 0 flipped, not the pair 0->1
    one_passes = failing.clone()
    one_passes[3] = failing[3].flip(-2)  # top bright: 0 upright, 1 flipped
    rounds = [failing, one_passes, one_passes.flip(-2)]
    agrees, disagrees = TopHalf(0, 1), TopHalf(1, 0)
    out = simulate(rounds, (0, 1), "flip", agrees, {"same": agrees, "other": disagrees})
    assert out["candidates"] == 16
    assert out["same"] == {"auto": True, "best of all": True, "any": True}
    assert out["other"] == {"auto": False, "best of all": False, "any": True}
    out = simulate([failing, failing, failing], (0, 1), "flip", agrees, {"same": agrees})
    assert out["candidates"] == 24 and out["same"] == {"auto": False, "best of all": False, "any": False}


def test_illusion_table_refuses_a_factor_it_would_not_apply(tmp_path: Path) -> None:
    """A factor measure() does not read (far_cfg was once run as the base and recorded as varied) is refused in
    one line before any model loads, in the varied factor and in the base; known factors still pass."""
    sys.path.insert(0, str(BENCH))
    try:
        from illusion_table import HYBRID_BASE, settings
    finally:
        sys.path.remove(str(BENCH))
    assert [s["near_cfg"] for s in settings(HYBRID_BASE, "near_cfg=10,15", "hybrid")] == ["10", "15"]
    rows = tmp_path / "rows.jsonl"
    for extra in (["--hybrid", "far_cfg=5"], ["--hybrid-base", "cfg=default far_cfg=5", "--hybrid", "sigma=1.5"]):
        done = subprocess.run(
            [sys.executable, str(BENCH / "illusion_table.py"), *extra, "--rows", str(rows), "--model", "nope"],
            cwd=BENCH,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode != 0
        assert done.stderr.strip().splitlines()[-1].startswith("illusion_table: unknown hybrid factor far_cfg; known:")
    with pytest.raises(SystemExit, match="unknown anagram factor near_cfg"):
        settings("cfg=default", "near_cfg=3", "anagram")
    for base, vary in ((HYBRID_BASE, "sigma"), (HYBRID_BASE, "sigma="), ("cfg", "sigma=1.5")):
        with pytest.raises(SystemExit, match="expected FACTOR=VALUE"):
            settings(base, vary, "hybrid")
    assert not rows.exists()
