"""Every PNG the CLI writes carries the settings that made it (text chunk 'diffusionlab', JSON), as the UI's do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from diffusionlab.cli import main


def run(args: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code in (0, None)


def settings_of(path: Path) -> dict:
    return json.loads(Image.open(path).text["diffusionlab"])


def test_sample_and_part_a_pngs_carry_their_settings(tiny_class_model: Path, tmp_path: Path) -> None:
    model = str(tiny_class_model)
    run(
        [
            "sample",
            "--model",
            model,
            "-p",
            "3",
            "-n",
            "1",
            "--steps",
            "2",
            "--seed",
            "7",
            "--out",
            str(tmp_path / "s.png"),
        ]
    )
    s = settings_of(tmp_path / "s.png")
    assert s["tool"] == "sample" and s["prompts"] == ["3"] and s["seed"] == 7 and s["steps"] == 2

    run(["noise", "--model", model, "--image", "test:1", "--t", "10,20", "--out", str(tmp_path / "n.png")])
    s = settings_of(tmp_path / "n.png")
    assert s["tool"] == "forward" and s["t"] == [10, 20] and "test images" in s

    run(["anagram", "--model", model, "-p", "6", "-p", "9", "-n", "1", "--out", str(tmp_path / "a.png")])
    s = settings_of(tmp_path / "a.png")
    assert s["tool"] == "anagram" and s["prompts"] == ["6", "9"]
