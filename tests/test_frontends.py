"""Front-ends only render the tool's Result, and the API has one set of defaults (#39 items 3 and 7): a Result's
settings remake its images, prompts take what the CLI takes (ints too) or are refused in one line, every sampling
tool takes `steps`, an unconditional model takes no CFG scale, `r.images` is what the PNG shows before clamping,
and the CLI's `sample` writes the tool's figure and settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import diffusionlab as dl
from diffusionlab.cli import main
from diffusionlab.errors import DiffusionLabError


@pytest.fixture(scope="module")
def mnist():
    torch.set_num_threads(1)
    return dl.load_model("mnist", "cpu")


def test_a_results_settings_remake_its_images(mnist) -> None:
    r = dl.sample(mnist, ["3", "seven"], n=1, steps=4, seed=11, progress=False)
    s = json.loads(json.dumps(r.settings))  # as read back from a PNG's text
    assert s["model"] == "mnist" and s["steps"] == 4 and s["strided"] is False and s["sampler"] and s["precision"]
    again = dl.load_model(s["model"], "cpu", precision=s["precision"])
    rule = {k: s[k] for k in ("sampler", "variance", "eta") if k in s}
    remade = dl.sample(again, s["prompts"], s["n"], s["steps"], s["scale"], s["seed"], progress=False, **rule)
    assert torch.equal(remade.images, r.images) and remade.settings == r.settings


def test_int_prompts_are_the_cli_prompts_and_others_are_refused_in_one_line(mnist) -> None:
    as_int = dl.sample(mnist, [3, 7], n=1, steps=2, progress=False)
    as_text = dl.sample(mnist, ["3", "7"], n=1, steps=2, progress=False)
    assert torch.equal(as_int.images, as_text.images) and as_int.settings == as_text.settings
    one = dl.sample(mnist, 3, n=1, steps=2, progress=False)
    assert torch.equal(one.images, dl.sample(mnist, ["3"], n=1, steps=2, progress=False).images)
    with pytest.raises(DiffusionLabError) as e:
        dl.sample(mnist, [3.5], n=1, steps=2, progress=False)
    assert str(e.value) == "a prompt is text or a class index (e.g. '3', 'three' or 3), not 3.5"


def test_every_sampling_tool_takes_steps_and_records_them(mnist) -> None:
    short = dl.anagram(mnist, [6, 9], n=1, steps=3, score=False, balance=False, progress=False)
    longer = dl.anagram(mnist, [6, 9], n=1, steps=5, score=False, balance=False, progress=False)
    assert short.settings["steps"] == 3 and longer.settings["steps"] == 5
    assert not torch.equal(short.images, longer.images)
    hybrid = dl.hybrid(mnist, [0, 1], n=1, steps=3, score=False, progress=False)
    edited = dl.sdedit(mnist, "test:0", 3, [1, 2], steps=4, progress=False)
    painted = dl.inpaint(mnist, "test:0", prompt=3, steps=4, progress=False)
    assert [x.settings["steps"] for x in (hybrid, edited, painted)] == [3, 4, 4]
    ts = mnist.kind.timesteps(mnist, 4, edit=True)  # 4 steps span T = 300: i_start indexes them
    assert len(ts) == 4 and ts[0] > ts[1] > ts[2] > ts[3] >= 0
    assert edited.panels[0].col_labels[:2] == [f"i=1 (t={ts[1]})", f"i=2 (t={ts[2]})"]


def test_an_unconditional_model_takes_no_scale_and_records_none() -> None:
    m = dl.load_model("mnist-time", "cpu")
    r = dl.sample(m, n=1, steps=2, progress=False)
    assert "scale" not in r.settings and "cfg" not in r.panels[0].title
    with pytest.raises(DiffusionLabError) as e:
        dl.sample(m, n=1, steps=2, scale=3.0, progress=False)
    assert str(e.value) == "mnist-time is not class-conditioned: it takes no CFG scale; drop --cfg"


def test_images_are_unclamped_and_the_png_shows_them_clamped(mnist, tmp_path: Path) -> None:
    r = dl.sample(mnist, [1], n=2, steps=2, progress=False)  # two steps leave pixels outside [0, 1]
    lo, hi = r.value_range
    assert bool(((r.images < lo) | (r.images > hi)).any())
    shown = np.asarray(r.to_pil(1), np.int16)
    want = r.images[1, 0].clamp(lo, hi).sub(lo).div(hi - lo).mul(255).round().numpy().astype(np.int16)
    assert np.abs(shown - want).max() <= 1


def test_the_cli_sample_writes_the_tools_figure_and_settings(mnist, tmp_path: Path) -> None:
    out = tmp_path / "s.png"
    with pytest.raises(SystemExit) as done:
        main(["sample", "-p", "3", "-n", "2", "--steps", "3", "--seed", "4", "--out", str(out), "--device", "cpu"])
    assert done.value.code == 0
    r = dl.sample(mnist, ["3"], 2, 3, seed=4, progress=False)
    with Image.open(out) as im:
        assert json.loads(im.text["diffusionlab"]) == json.loads(json.dumps(r.settings))
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(r.figure()))


def test_the_shared_options_are_one_bundle_on_every_model_command() -> None:
    from typer.main import get_command

    from diffusionlab.cli import app

    cli = get_command(app)
    sampling = ("sample", "sdedit", "inpaint", "anagram", "hybrid", "denoise")
    for name in (*sampling, "noise"):
        options = {o for p in cli.commands[name].params for o in p.opts}
        assert {"--model", "--seed", "--device", "--force", "--model-dir", "--prompt-embeds", "--offload"} <= options
        assert ({"--steps", "--sampler", "--variance", "--eta"} <= options) == (name in sampling), name


def test_a_tool_the_models_kind_does_not_run_is_refused_in_one_line() -> None:
    m = dl.load_model("mnist-denoiser", "cpu")
    for tool, call in (("sample", lambda: dl.sample(m, n=1)), ("sdedit", lambda: dl.sdedit(m, "test:0"))):
        with pytest.raises(DiffusionLabError) as e:
            call()
        assert str(e.value).startswith(f"{tool} needs ") and str(e.value).endswith(f"it runs {', '.join(m.kind.tools)}")


def test_an_unconditional_sdedit_records_no_scale_and_refuses_one() -> None:
    m = dl.load_model("mnist-time", "cpu")
    r = dl.sdedit(m, torch.zeros(1, 28, 28), i_starts=[20], progress=False)
    assert "scale" not in r.settings and "cfg" not in r.panels[0].title
    with pytest.raises(DiffusionLabError, match="^mnist-time is not class-conditioned: it takes no CFG scale"):
        dl.inpaint(m, torch.zeros(1, 28, 28), scale=2.0, progress=False)
