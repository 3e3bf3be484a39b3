"""The Part A commands on a tiny random checkpoint: each writes its PNG; bad input ends in one `error:` line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_idx_dir
from parta_helpers import one_thread  # noqa: F401  (autouse fixture)
from PIL import Image

from diffusionlab.cli import main


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    from conftest import make_checkpoint

    root = tmp_path_factory.mktemp("cli")
    model = make_checkpoint(root / "run")
    data = make_idx_dir(root / "data", n_train=8, n_test=4)
    drawing = np.full((50, 40, 3), 255, np.uint8)
    drawing[10:40, 18:24] = 0
    Image.fromarray(drawing).save(root / "drawing.png")
    return {"root": root, "common": ["--model", str(model), "--device", "cpu"], "data": ["--data-dir", str(data)]}


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


COMMANDS = {
    "noise": ["noise", "--image", "test:0", "--t", "50,150", "--t", "250"],
    "denoise": ["denoise", "-i", "test:1", "-i", "{root}/drawing.png", "--invert", "--i-start", "26", "--every", "2"],
    "sdedit": ["sdedit", "-i", "test:0", "--prompt", "seven", "--i-start", "25,28", "-n", "2"],
    "inpaint": ["inpaint", "-i", "test:2", "--mask", "rect:0:14:0:28", "-p", "3", "-n", "2"],
    "anagram": ["anagram", "-p", "6", "-p", "9", "--view", "flip", "-n", "2"],
    "hybrid": ["hybrid", "-p", "0", "-p", "1", "-n", "2", "--sigma", "1", "--kernel", "9"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_writes_its_grid(env, command, capsys):
    root: Path = env["root"]
    out, singles = root / f"{command}.png", root / f"{command}_all"
    argv = [a.format(root=root) for a in COMMANDS[command]]
    argv += env["common"] + env["data"] * (command in ("noise", "denoise", "sdedit", "inpaint"))
    code, stdout, err = run([*argv, "--out", str(out), "--save-all", str(singles)], capsys)
    assert code == 0, err
    assert out.is_file() and Image.open(out).size[0] > 28
    assert any(singles.glob("*.png"))
    assert "wrote:" in stdout and str(out) in stdout
    # never overwrite without --force
    code, _, err = run([*argv, "--out", str(out)], capsys)
    assert code == 2 and "already exists" in err


def test_help_has_examples(capsys):
    for command in COMMANDS:
        code, stdout, _ = run([command, "--help"], capsys)
        assert code == 0 and "Example" in stdout


BAD = {
    "unreadable image": (["noise", "-i", "{root}/garbage.png"], "cannot read"),
    "missing image": (["sdedit", "-i", "{root}/nope.png"], "no such image"),
    "t out of range": (["noise", "-i", "test:0", "--t", "300"], "out of range"),
    "i_start out of range": (["sdedit", "-i", "test:0", "--i-start", "30"], "i_start=30"),
    "test index out of range": (["noise", "-i", "test:99"], "test set has images 0..3"),
    "unknown prompt": (["anagram", "-p", "cat", "-p", "9"], "valid prompts"),
    "mask of another size": (["inpaint", "-i", "test:0", "--mask", "{root}/mask.png"], "mask is 10x12"),
    "bad mask spec": (["inpaint", "-i", "test:0", "--mask", "rect:0:99:0:5"], "does not fit"),
    "view does not fit": (["anagram", "-p", "6", "-p", "9", "--view", "patch-permute:5"], "does not fit"),
    "unknown view": (["anagram", "-p", "6", "-p", "9", "--view", "twirl"], "unknown view"),
    "one prompt": (["hybrid", "-p", "6"], "exactly two"),
    "unknown method": (["denoise", "-i", "test:0", "--method", "magic"], "unknown --method"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_error_line(env, case, capsys):
    root: Path = env["root"]
    (root / "garbage.png").write_bytes(b"\x89PNG not really")
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(root / "mask.png")
    argv, message = BAD[case]
    argv = [a.format(root=root) for a in argv] + env["common"] + env["data"] * ("-i" in argv)
    code, _, err = run([*argv, "--out", str(root / "never.png")], capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (root / "never.png").exists()
