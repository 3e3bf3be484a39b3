"""The web UI's handlers stand on the tool layer: the same seed gives the tools' own images (the CLI's, the
report's); the test-image picker offers the model's test set; best-of-K is verified and says so. No browser."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("gradio")

from parta_helpers import one_thread  # noqa: E402, F401  (autouse fixture)
from PIL import Image  # noqa: E402

from diffusionlab.app import Limits, ModelRegistry  # noqa: E402
from diffusionlab.app.illusions import LOWPASS_CHOICES  # noqa: E402
from diffusionlab.errors import DiffusionLabError  # noqa: E402


@pytest.fixture(scope="module")
def handlers(runs_dir, tmp_path_factory):
    from diffusionlab.app.handlers import Handlers
    from diffusionlab.app.inputs import Outputs

    limits = Limits()
    return Handlers(ModelRegistry(runs_dir, "cpu", (), limits), limits, Outputs(tmp_path_factory.mktemp("results")))


def _pixels(path) -> list:
    import numpy as np

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).tolist()


def _as_shown(handlers, x, stem: str):
    """A tool's image (C, H, W), or a row (N, C, H, W), drawn as the handlers draw their results."""
    model = handlers.registry.get("run:tiny")
    settings = {"expected": True}
    if x.dim() == 4:
        return _pixels(handlers.out.row_png(x, model, settings, stem))
    return _pixels(handlers.out.tensor_png(x, model, settings, stem))


@pytest.mark.slow
def test_handlers_give_the_tools_images_for_the_same_seed(handlers):
    """Noise, SDEdit, inpaint, anagram and hybrid through the page equal the tool layer's own results (the CLI's)."""
    import numpy as np

    from diffusionlab import tools
    from diffusionlab.images import default_mask

    m = handlers.registry.get("run:tiny")
    *pngs, info = handlers.noise("run:tiny", None, 140, 3, 0.875, "", 1.0, 4, "auto", "0")
    one = tools.one_step_denoise(m, "test:0", [140], None, 1.0, ("blur", "one-step"), 3, 0.875, 4)
    it = tools.iterative_denoise(m, "test:0", 15, 30, None, 1.0, seed=4)  # t = 140 is strided step 15 of T = 300
    want = [one.singles[f"test_0_{name}_t140"] for name in ("noisy", "blur", "one-step")] + [it.images[0]]
    for png, x in zip(pngs[1:], want, strict=True):
        assert _pixels(png) == _as_shown(handlers, x, "want")
    assert "test image from" in info and "iterative from t** 140" in info

    gallery, _ = handlers.sdedit("run:tiny", None, "3", "5 20", 5.0, 1, "auto", "2")
    r = tools.sdedit(m, "test:2", "3", [5, 20], 1, 5.0, 1)
    assert [_pixels(p) for p, _ in gallery[1:]] == [_as_shown(handlers, r.images[k, 0], "w") for k in range(2)]
    assert [caption for _, caption in gallery] == [
        "input",
        "i=5 (t=240)",
        "i=20 (t=90)",
    ]  # the tool's own column labels

    _, _, row, _ = handlers.inpaint("run:tiny", None, "", "default mask", 2, 5.0, 3, "auto", "1")
    r = tools.inpaint(m, "test:1", default_mask(m.image_shape), None, 2, 5.0, 3)
    assert _pixels(row) == _as_shown(handlers, r.images, "w")

    figure, _ = handlers.anagram("run:tiny", 3, "1", "7", "4", "", "rot90", "rot180", "rot270", 2, 10.0, 5)
    r = tools.anagram(m, ["1", "7", "4"], ["rot90", "rot180"], 2, 10.0, 5)
    assert _pixels(figure) == np.asarray(r.figure().convert("RGB")).tolist()  # the tool's figure, as rendered

    near, _, _ = handlers.hybrid("run:tiny", "0", "1", 1.5, 15, 2, 10.0, 6)
    want = tools.hybrid(m, ["0", "1"], 2, 15, 1.5, 10.0, 6).figure()
    assert _pixels(near) == np.asarray(want.convert("RGB")).tolist()
    # the tab's first low-pass choice is the model's measured one: sigma and kernel are not passed
    near, _, info = handlers.hybrid("run:tiny", "0", "1", 1.5, 15, 2, 10.0, 6, 1, LOWPASS_CHOICES[0])
    want = tools.hybrid(m, ["0", "1"], 2, scale=10.0, seed=6)
    assert want.settings["lowpass"] == "far" and "**lowpass** far" in info and "sigma" not in info
    assert _pixels(near) == np.asarray(want.figure().convert("RGB")).tolist()


def test_test_image_picker_offers_the_models_test_set(handlers):
    from diffusionlab.testdigits import load_test_images

    choices = handlers.test_choices("run:tiny")
    _, labels, _ = load_test_images("mnist", range(100))
    assert choices[0][1] == "" and len(choices) == 101
    assert choices[1:] == [(f"test {i}: {int(k)}", str(i)) for i, k in enumerate(labels)]
    assert handlers.test_picture("run:tiny", "") is None
    with Image.open(handlers.test_picture("run:tiny", "3")) as im:
        assert im.size == (280, 280)
    assert handlers.test_choices("deepfloyd") == [("none: my upload or drawing", "")]  # never loads IF for a list


def test_best_of_keeps_the_classifiers_choice_and_says_so(handlers):
    figure, info = handlers.anagram("run:tiny", 2, "6", "9", "", "", "rot180", "", "", 1, 10.0, 0, 3)
    assert Path(figure).is_file() and "best of** 3" in info and "ranker" in info
    _, _, info = handlers.hybrid("run:tiny", "0", "1", 1.5, 15, 1, 10.0, 0, 2)
    assert "best of** 2" in info


def test_anagram_weights_and_balance_through_the_page_equal_the_tools(handlers):
    import numpy as np

    from diffusionlab import tools

    m = handlers.registry.get("run:tiny")
    figure, info = handlers.anagram("run:tiny", 2, "3", "1", "", "", "rot180", "", "", 2, 10.0, 5, 1, " 1,2 ")
    r = tools.anagram(m, ["3", "1"], "rot180", 2, 10.0, 5, weights=[1, 2])
    assert _pixels(figure) == np.asarray(r.figure().convert("RGB")).tolist() and "weights** 1,2" in info
    with pytest.raises(DiffusionLabError, match="2 readings need 2 weights"):
        handlers.anagram("run:tiny", 2, "3", "1", "", "", "rot180", "", "", 2, 10.0, 5, 1, "1,2,3")
    assert "reading balance** on" in info
    figure, info = handlers.anagram("run:tiny", 2, "3", "1", "", "", "rot180", "", "", 2, 10.0, 5, 1, "", False)
    r = tools.anagram(m, ["3", "1"], "rot180", 2, 10.0, 5, balance=False)
    assert _pixels(figure) == np.asarray(r.figure().convert("RGB")).tolist() and "reading balance** off" in info
    assert f"readings** {r.settings['readings'].removeprefix('readings: ')}" in info  # the verdict, said


def test_a_pick_is_used_while_its_picture_is_in_the_field(handlers):
    """The picker's test image is the input while the field is empty or shows its picture; the user's own upload
    wins even when the picker still names a test image (no browser event has to reset it)."""
    import shutil
    import tempfile

    root = Path(tempfile.gettempdir()) / "gradio" / "diffusionlab-test-picks"
    root.mkdir(parents=True, exist_ok=True)
    try:
        picture = Path(shutil.copy(handlers.test_picture("run:tiny", "5"), root / "background.png"))
        other = root / "mine.png"
        Image.new("L", (64, 64), 0).save(other)
        for upload, shown in ((None, "test:5"), (picture, "test:5"), (other, "upload")):
            payload = {"path": str(upload)} if upload else None
            *_, info = handlers.noise("run:tiny", payload, 20, 3, 0.875, "", 1.0, 0, "auto", "5")
            assert f"**image** {shown}" in info
            editor = {"background": payload} if upload else None
            _, info = handlers.sdedit("run:tiny", editor, "", "28", 5.0, 0, "auto", "5")
            assert f"**image** {shown if upload != other else 'upload/drawing'}" in info
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_cfg_slider_starts_at_the_chosen_models_measured_default(tmp_path):
    """The page's CFG sliders start at, and follow, the model's own default: a scale measured and stored in its
    JSON (choose-guidance --write), else its kind's (5 for ours), as the API and the CLI sample with."""
    import json

    from conftest import make_checkpoint

    from diffusionlab.app.handlers import Handlers
    from diffusionlab.app.inputs import Outputs
    from diffusionlab.model_files import WEIGHTS_NAME

    runs = tmp_path / "runs"
    make_checkpoint(runs / "plain")
    tuned = make_checkpoint(runs / "tuned") / WEIGHTS_NAME
    config_path = tuned.with_suffix(".json")
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "default_guidance": {"cfg_scale": 2.5}}))
    limits = Limits()
    h = Handlers(ModelRegistry(runs, "cpu", (), limits), limits, Outputs(tmp_path / "results"))
    assert h.guidance_scale("run:tuned") == 2.5
    assert h.guidance_scale("run:plain") == 5.0
    assert h.guidance_scale("deepfloyd") == 7.0  # IF's, without loading IF
