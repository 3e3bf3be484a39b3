"""Hybrids with a CFG per component, the far view's own low-pass and the ranker's reading balance (issue 37 item 5):
the estimator against its formula, the defaults' resolution, the balance's direction, the tool's settings and the
CLI's one-line errors."""

from __future__ import annotations

import pytest
import torch
from parta_helpers import FormulaModel, one_thread, run_cli  # noqa: F401  (one_thread: autouse fixture)

from diffusionlab import edits, guidance
from diffusionlab.errors import DiffusionLabError
from diffusionlab.evaluation.balance import BALANCE_FLOOR, hybrid_balance
from diffusionlab.evaluation.metrics import FAR_FACTOR, far_view
from diffusionlab.filters import highpass, lowpass, pooled_lowpass
from diffusionlab.schedule import NoiseSchedule


@pytest.fixture
def m():
    return FormulaModel(NoiseSchedule.linear(300), (1, 12, 12), (0.0, 1.0), variance=False)


def _parts(m, x, t, low, high):
    """The three branches, one model call each: (eps_low, eps_high, eps_uncond)."""
    tt = torch.full((x.shape[0],), t)
    return [m.predict(x, tt, c.expand(x.shape[0], -1)).output for c in (low, high, m.null(1))]


def test_a_cfg_per_component_is_the_formula(m):
    x, low, high = torch.randn(3, 1, 12, 12), m.encode(["a"]), m.encode(["bbb"])
    e_low, e_high, e_u = _parts(m, x, 100, low, high)
    got = guidance.hybrid(m, low, high, m.null(1), (2.0, 7.0), 5, 1.0)(x, 100).output
    want = lowpass(e_u + 2.0 * (e_low - e_u), 5, 1.0) + highpass(e_u + 7.0 * (e_high - e_u), 5, 1.0)
    assert torch.allclose(got, want, atol=1e-6)
    one = guidance.hybrid(m, low, high, m.null(1), 4.0, 5, 1.0)(x, 100).output
    assert torch.equal(one, guidance.hybrid(m, low, high, m.null(1), (4.0, 4.0), 5, 1.0)(x, 100).output)
    with pytest.raises(DiffusionLabError, match="the near .high-pass. CFG scale"):
        guidance.hybrid(m, low, high, m.null(1), (4.0, float("nan")))


def test_the_far_low_pass_is_the_far_view_and_splits_exactly(m):
    x = torch.rand(2, 1, 12, 12)
    low, high = guidance.hybrid_filters(m, pool=FAR_FACTOR)
    assert torch.allclose(low(x), far_view(x), atol=1e-6)
    assert torch.allclose(low(x) + high(x), x, atol=1e-6)
    assert not torch.allclose(pooled_lowpass(x, 2), x, atol=1e-2)
    assert edits.HYBRID_FAR_POOL == FAR_FACTOR
    eps = guidance.hybrid(m, m.encode(["a"]), m.encode(["a"]), m.null(1), 3.0, pool=2)(x, 50).output
    assert torch.allclose(eps, guidance.cfg(m, m.encode(["a"]), m.null(1), 3.0)(x, 50).output, atol=1e-5)


def test_reading_weights_scale_each_images_components(m):
    x, low, high = torch.randn(2, 1, 12, 12), m.encode(["a"]), m.encode(["bbb"])
    e_low, e_high, e_u = _parts(m, x, 100, low, high)
    w = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    got = guidance.hybrid(m, low, high, m.null(1), (2.0, 6.0), 5, 1.0, weights=w)(x, 100).output
    g_low = torch.tensor([2.0, 1.0]).view(-1, 1, 1, 1)  # 2 w times the scale
    g_high = torch.tensor([6.0, 9.0]).view(-1, 1, 1, 1)
    want = lowpass(e_u + g_low * (e_low - e_u), 5, 1.0) + highpass(e_u + g_high * (e_high - e_u), 5, 1.0)
    assert torch.allclose(got, want, atol=1e-6)


def test_scales_and_low_pass_resolve_from_the_defaults(m):
    far = edits.illusion_scale(m, edits.HYBRID_DEFAULTS)
    near = edits.HYBRID_DEFAULTS["near_scale"] or far
    assert edits.hybrid_scales(m) == (far, near)
    assert edits.hybrid_scales(m, 3) == (3.0, 3.0)
    assert edits.hybrid_scales(m, (None, 12)) == (far, 12.0)
    assert edits.hybrid_lowpass(m) == edits.HYBRID_DEFAULTS["lowpass"]
    assert edits.hybrid_lowpass(m, "far") == "far"
    with pytest.raises(DiffusionLabError, match="^unknown hybrid low-pass 'box'; choose one of gaussian, far$"):
        edits.hybrid_lowpass(m, "box")
    assert edits.hybrid_lowpass(m, None, sigma=2.0) == edits.hybrid_lowpass(m, None, 9) == "gaussian"
    with pytest.raises(DiffusionLabError, match="^a kernel or sigma sets the Gaussian low-pass; the far view's"):
        edits.hybrid_lowpass(m, "far", 15)


class _Reads:
    """A classifier that reads any image as class 0 with probability p0 (the rest spread evenly)."""

    def __init__(self, p0: torch.Tensor):  # per image, (n,)
        self.p0 = p0

    def logits(self, x):
        p = ((1 - self.p0) / 9).view(-1, 1).expand(-1, 10).clone()
        p[:, 0] = self.p0
        return p.log()


def test_the_balance_raises_the_reading_that_is_not_seen():
    """Far should read 0, near 1; the classifier sees 0 everywhere: the near reading lags, its weight rises to
    1 - floor (its CFG x 1.5); an image seen as neither keeps equal weights."""
    x0 = torch.rand(2, 1, 28, 28)
    clf = _Reads(torch.tensor([0.99, 0.1]))
    w = hybrid_balance(clf, torch.tensor([0, 0]), torch.tensor([1, 1]), (0.0, 1.0))(x0)
    assert torch.allclose(w[0], torch.tensor([BALANCE_FLOOR, 1 - BALANCE_FLOOR]))
    assert torch.allclose(w[1], torch.tensor([0.5, 0.5]))


def test_hybrid_sampling_steers_with_the_balance(m):
    """edits.hybrid with a balance: the hook's weights reach the estimator (a balance that favours the near
    reading changes the images), a balance of equal weights gives the plain hybrid's images."""
    kw = dict(scale=(3.0, 3.0), timesteps=[200, 100, 0], progress=False, lowpass="far")
    plain = edits.hybrid(m, "a", "bbb", 2, generator=torch.Generator().manual_seed(0), **kw)
    even = edits.hybrid(
        m, "a", "bbb", 2, generator=torch.Generator().manual_seed(0), balance=lambda x: torch.ones(2, 2), **kw
    )
    tilted = edits.hybrid(
        m, "a", "bbb", 2, generator=torch.Generator().manual_seed(0), balance=lambda x: torch.tensor([[1, 3]] * 2), **kw
    )
    assert torch.allclose(even, plain, atol=1e-6)
    assert not torch.allclose(tilted, plain, atol=1e-3)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from conftest import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("hybrid") / "run")


def test_cli_options_reach_the_settings(run_dir, tmp_path, capsys):
    import json

    from PIL import Image

    out = tmp_path / "h.png"
    argv = ["hybrid", "-p", "0", "-p", "8", "-n", "1", "--lowpass", "far", "--far-cfg", "6", "--near-cfg", "12"]
    code, _, err = run_cli([*argv, "--balance", "--model", str(run_dir), "--device", "cpu", "--out", str(out)], capsys)
    assert code == 0, err
    settings = json.loads(Image.open(out).info["diffusionlab"])
    assert (settings["lowpass"], settings["scale"], settings["near_scale"], settings["balance"]) == ("far", 6, 12, True)
    assert "kernel" not in settings and "sigma" not in settings  # they would ask for a Gaussian on a remake


def test_settings_remake_the_hybrid(run_dir):
    """A Result's settings, passed back, make the same images: the far low-pass records no kernel or sigma (which
    would ask for a Gaussian), the Gaussian records both."""
    from diffusionlab import tools
    from diffusionlab.backends import load_model

    m = load_model(str(run_dir), device="cpu")
    for low in ("far", "gaussian"):
        r = tools.hybrid(m, ["0", "8"], 1, seed=3, lowpass=low, balance=False, progress=False)
        s = r.settings
        again = tools.hybrid(
            m, s["prompts"], s["n"], s.get("kernel"), s.get("sigma"), s["scale"], s["seed"], steps=s["steps"],
            near_scale=s["near_scale"], lowpass=s["lowpass"], balance=s["balance"], progress=False,
        )  # fmt: skip
        assert ("kernel" in s) == (low == "gaussian")
        torch.testing.assert_close(again.images, r.images)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--lowpass", "box"], "error: unknown --lowpass 'box'; choose one of gaussian, far"),
        (["--near-cfg", "-1"], "error: --near-cfg must be a finite number >= 0 (1 = no guidance), got -1.0"),
        (["--far-cfg", "inf"], "error: --far-cfg must be a finite number >= 0 (1 = no guidance), got inf"),
        (["--balance", "--model", "deepfloyd"], "error: --balance reads the images with the shipped classifier; "
         "DeepFloyd IF has none"),
    ],
)  # fmt: skip
def test_cli_refuses_bad_hybrid_options_in_one_line(option, message, capsys):
    code, _, err = run_cli(["hybrid", "-p", "0", "-p", "8", "-n", "1", *option], capsys)
    assert code == 2 and err.strip().splitlines() == [message]
