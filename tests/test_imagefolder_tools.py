"""A colour model trained on an image folder (issue 40): train (and resume), every Part A tool, the folder's own
classifier and evaluate against its held-out share; bad folders end in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from parta_helpers import one_thread  # noqa: F401  (autouse fixture)
from PIL import Image

from diffusionlab.cli import main
from diffusionlab.shapes import make_shapes


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


TINY = ["--image-size", "8", "--hidden", "8", "--batch-size", "4", "--num-steps", "20", "--no-figures"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("folder")
    make_shapes(root / "shapes", per_class=4, size=16)
    photo = np.zeros((30, 45, 3), np.uint8)
    photo[..., 0], photo[..., 2] = np.linspace(0, 255, 45)[None], 200
    Image.fromarray(photo).save(root / "photo.jpg")
    return {"root": root, "shapes": root / "shapes", "run": root / "run", "photo": root / "photo.jpg"}


def test_train_on_a_class_folder_then_resume(trained, capsys) -> None:
    run_dir = trained["run"]
    argv = ["train", "class", "--data-dir", str(trained["shapes"]), *TINY, "--hflip", "--out", str(run_dir)]
    code, out, err = run([*argv, "--max-steps", "2", "--epochs", "2"], capsys)
    assert code == 0, err
    assert "image folder" in out and "3 classes, RGB 8x8" in out and "9 train, 3 held out" in out
    config = json.loads((run_dir / "model.json").read_text())
    assert config["data"] == "shapes" and config["class_names"] == ["circle", "square", "triangle"]
    assert config["image_shape"] == [3, 8, 8] and config["unet"]["image_size"] == 8
    assert config["unet"]["num_classes"] == 3 and config["train"]["hflip"] is True
    code, out, err = run([*argv, "--max-steps", "4", "--epochs", "2", "--resume"], capsys)
    assert code == 0, err
    assert "step 4 in all" in out


TOOLS = {
    "sample": ["sample", "-p", "circle", "-p", "triangle", "-n", "2", "--steps", "3"],
    "noise": ["noise", "--image", "{photo}", "--t", "5,15"],
    "denoise": ["denoise", "-i", "test:1", "--data-dir", "{shapes}", "--i-start", "2"],
    "sdedit": ["sdedit", "-i", "{photo}", "--prompt", "square", "--i-start", "2", "-n", "2"],
    "inpaint": ["inpaint", "-i", "test:0", "--data-dir", "{shapes}", "--mask", "rect:0:4:0:8", "-p", "circle"],
    "anagram": ["anagram", "-p", "circle", "-p", "square", "--view", "flip", "-n", "2"],
    "hybrid": ["hybrid", "-p", "circle", "-p", "triangle", "-n", "2", "--sigma", "1", "--kernel", "3"],
}


@pytest.mark.parametrize("tool", list(TOOLS))
def test_part_a_tool_on_a_colour_model(trained, tool, capsys) -> None:
    if not (trained["run"] / "model.json").is_file():
        test_train_on_a_class_folder_then_resume(trained, capsys)
    out = trained["root"] / f"{tool}.png"
    argv = [a.format(photo=trained["photo"], shapes=trained["shapes"]) for a in TOOLS[tool]]
    code, stdout, err = run([*argv, "--model", str(trained["run"]), "--device", "cpu", "--out", str(out)], capsys)
    assert code == 0, err
    assert Image.open(out).mode == "RGB" and str(out) in stdout


def test_folder_classifier_and_evaluate(trained, capsys) -> None:
    if not (trained["run"] / "model.json").is_file():
        test_train_on_a_class_folder_then_resume(trained, capsys)
    clf = trained["root"] / "shapes-classifier.safetensors"
    argv = ["train-classifier", "--data-dir", str(trained["shapes"]), "--image-size", "8", "--epochs", "1"]
    code, out, err = run([*argv, "--batch-size", "4", "--out", str(clf)], capsys)  # 9 images: a last batch of 1
    assert code == 0, err
    assert json.loads(clf.with_suffix(".json").read_text())["image_shape"] == [3, 8, 8]
    scores = trained["root"] / "scores.json"
    argv = ["evaluate", "--model", str(trained["run"]), "--classifier", str(clf), "--data-dir", str(trained["shapes"])]
    code, out, err = run([*argv, "-n", "2", "--steps", "2", "--cfg", "5", "--out", str(scores)], capsys)
    assert code == 0, err
    result = json.loads(scores.read_text())
    assert len(result["per_class_accuracy"]) == 3
    assert "frechet" in json.dumps(result).lower()


def test_bad_image_size_is_one_line(trained, tmp_path, capsys) -> None:
    argv = ["train", "class", "--data-dir", str(trained["shapes"]), "--image-size", "30", "--out", str(tmp_path / "r")]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        "error: --image-size must be a positive multiple of 4 (the UNet halves the image twice), got 30"
    ]
    assert not (tmp_path / "r").exists()  # refused before the run folder is made


def test_flat_folder_trains_time_not_class(tmp_path, capsys) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(6):
        Image.new("RGB", (10, 12), (40 * i, 100, 30)).save(flat / f"{i}.png")
    code, _, err = run(["train", "class", "--data-dir", str(flat), "--out", str(tmp_path / "c")], capsys)
    assert code == 2 and "a flat image folder has no classes" in err
    argv = ["train", "time", "--data-dir", str(flat), *TINY, "--max-steps", "1", "--out", str(tmp_path / "t")]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "t" / "model.json").read_text())["class_names"] == []


def test_web_ui_chooser_names_a_colour_run(trained, capsys) -> None:
    from diffusionlab.app.registry import ModelRegistry

    if not (trained["run"] / "model.json").is_file():
        test_train_on_a_class_folder_then_resume(trained, capsys)
    labels = [label for label, _ in ModelRegistry(trained["root"]).choices()]
    assert "run: run (class ddpm, shapes, RGB 8 px)" in labels


def test_denoiser_on_a_folder_is_scored_on_its_held_out_images(trained, tmp_path, capsys) -> None:
    run_dir = tmp_path / "denoiser"
    argv = ["train", "denoiser", "--data-dir", str(trained["shapes"]), *TINY, "--max-steps", "1", "--out", str(run_dir)]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    out = tmp_path / "denoiser.json"
    argv = ["evaluate", "--model", str(run_dir), "--data-dir", str(trained["shapes"]), "--out", str(out)]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    assert f"test images: {trained['shapes']}" in stdout
    assert json.loads(out.read_text())["test_images"] == str(trained["shapes"])


def test_web_ui_test_picker_offers_no_digits_for_a_folder_model(trained, capsys) -> None:
    from diffusionlab.app.testimages import NO_PICK, NO_PICK_LABEL, test_choices
    from diffusionlab.course_model import CourseModel

    if not (trained["run"] / "model.json").is_file():
        test_train_on_a_class_folder_then_resume(trained, capsys)
    assert test_choices(CourseModel.from_checkpoint(trained["run"])) == [(NO_PICK_LABEL, NO_PICK)]


def test_report_part_a_runs_on_a_folder_model_with_its_held_out_images(trained, tmp_path, capsys) -> None:
    """`reproduce --model RUN --data-dir FOLDER`: every Part A section runs on the colour model, on the folder's
    held-out images (the tools' test:N); without the folder the sections say to give it, in one line."""
    from diffusionlab.report.context import QUICK, Context
    from diffusionlab.report.run import SECTIONS, run_section

    if not (trained["run"] / "model.json").is_file():
        test_train_on_a_class_folder_then_resume(trained, capsys)
    part_a = [s for s in SECTIONS if s.part == "A" and s.id in {"A1.1", "A1.4", "A1.7", "A1.7.2", "A1.8"}]
    ctx = Context(tmp_path / "report", str(trained["run"]), data_dir=trained["shapes"], budget=QUICK, progress=False)
    outs = {section.id: run_section(ctx, section) for section in part_a}
    for sid, out in outs.items():
        assert out.status == "ok", (sid, out.notes)
        assert out.figures and all(Image.open(tmp_path / "report" / f.path).mode == "RGB" for f in out.figures)
    assert "held-out images of" in outs["A1.1"].inputs and "held-out images of" in outs["A1.7"].inputs
    without = Context(tmp_path / "r2", str(trained["run"]), budget=QUICK, progress=False)
    out = run_section(without, part_a[0])
    assert out.status == "missing" and "give reproduce --data-dir DIR" in out.notes[0]


@pytest.mark.parametrize("tool", ["anagram", "hybrid"])
def test_illusions_on_a_folder_model_are_read_by_its_own_classifier(trained, tool, capsys) -> None:
    """--classifier: the folder's classifier reads each illusion (the shipped rankers know only MNIST-like data)."""
    clf = trained["root"] / "shapes-classifier.safetensors"
    if not clf.is_file():
        test_folder_classifier_and_evaluate(trained, capsys)
    argv = [a.format(photo=trained["photo"], shapes=trained["shapes"]) for a in TOOLS[tool]]
    out = trained["root"] / f"{tool}-read.png"
    common = ["--model", str(trained["run"]), "--device", "cpu", "--force"]
    code, stdout, err = run([*argv, *common, "--out", str(out)], capsys)
    assert code == 0 and "readings: not checked" in stdout, err  # no shipped classifier of 'shapes'
    code, stdout, err = run([*argv, *common, "--classifier", str(clf), "--out", str(out)], capsys)
    assert code == 0, err
    assert "readings: not checked" not in stdout and " of 2 images read as asked" in stdout
