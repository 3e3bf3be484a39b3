"""Model kinds (diffusionlab.model_kinds): each kind's declarations against their formulas, the kind each of our
checkpoints declares, the tools a kind refuses in one line, one step default for sample and evaluate, and no test of
a model's kind outside the kinds' module."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import make_checkpoint
from parta_helpers import FormulaModel, GaussianDataModel, one_thread  # noqa: F401  (autouse fixture)

from diffusionlab import sampling, tools
from diffusionlab.course_model import CourseModel
from diffusionlab.errors import DiffusionLabError
from diffusionlab.evaluation.evaluate import evaluate_unconditional
from diffusionlab.model_kinds import DDPM, DENOISER, FLOW, IF, TOOLS
from diffusionlab.schedule import NoiseSchedule

SRC = Path(__file__).resolve().parents[1] / "src" / "diffusionlab"


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    spec = {"class": ("class", "ddpm"), "flow": ("class", "flow"), "time-flow": ("time", "flow")}
    spec["denoiser"] = ("denoiser", "ddpm")
    return {k: CourseModel.from_checkpoint(make_checkpoint(root / k, *v, hidden=4)) for k, v in spec.items()}


def test_ddpm_noising_and_clean_estimate_are_the_forward_process_and_its_inverse():
    m = GaussianDataModel(NoiseSchedule.linear(300))
    x0, eps = rand(2, 1, 8, 8), rand(2, 1, 8, 8, seed=1)
    abar = float(m.schedule.alphas_cumprod[150])
    x_t = DDPM.noised(m, x0, 150, eps)
    torch.testing.assert_close(x_t, abar**0.5 * x0 + (1 - abar) ** 0.5 * eps)
    out = rand(2, 1, 8, 8, seed=2)  # any noise estimate: x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)
    torch.testing.assert_close(DDPM.clean_estimate(m, x_t, 150, out), (x_t - (1 - abar) ** 0.5 * out) / abar**0.5)
    torch.testing.assert_close(DDPM.clean_estimate(m, x_t, 150, eps), x0, rtol=1e-5, atol=1e-5)
    assert torch.equal(DDPM.noised(m, x0, -1, eps), x0)  # t = -1, the loop's end, is the clean image
    assert DDPM.end_time == -1 and DDPM.is_clean(-1) and not DDPM.is_clean(0)
    assert DDPM.view_levels(m, 150) == (pytest.approx(abar), 0.0)
    torch.testing.assert_close(DDPM.network_time(m, torch.tensor([0, 299])), torch.tensor([1 / 300, 1.0]))


def test_ddpm_edit_steps_given_as_the_strided_count_remake_the_strided_schedule():
    """A Result records steps = len(timesteps): passing it back (strided) gives the same timesteps."""
    m = GaussianDataModel(NoiseSchedule.linear(300))
    strided = DDPM.timesteps(m, edit=True)
    assert strided == list(range(290, -1, -10)) and DDPM.timesteps(m, len(strided), edit=True) == strided
    few = DDPM.timesteps(m, 5, edit=True)
    assert len(few) == 5 and few[0] == 290 and few[-1] == 0 and few == sorted(few, reverse=True)
    assert DDPM.timesteps(m, 4) == [299, 199, 100, 0]  # sampling: evenly spaced from T - 1
    with pytest.raises(DiffusionLabError, match="between 1 and 291"):
        DDPM.timesteps(m, 292, edit=True)


def test_flow_noising_and_clean_estimate_follow_the_straight_path():
    m = GaussianDataModel(NoiseSchedule.linear(300))  # the flow kind reads nothing of the model here
    x0, noise = rand(2, 1, 8, 8), rand(2, 1, 8, 8, seed=1)
    x_t = FLOW.noised(m, x0, 0.25, noise)
    torch.testing.assert_close(x_t, 0.75 * noise + 0.25 * x0)
    u = rand(2, 1, 8, 8, seed=2)  # any velocity: x0 = x_t + (1 - t) u
    torch.testing.assert_close(FLOW.clean_estimate(m, x_t, 0.25, u), x_t + 0.75 * u)
    torch.testing.assert_close(FLOW.clean_estimate(m, x_t, 0.25, x0 - noise), x0)  # the true velocity lands on x0
    assert FLOW.end_time == 1.0 and FLOW.is_clean(1.0) and not FLOW.is_clean(0.75)
    assert FLOW.view_levels(m, 0.5) == (0.25, 1.0)
    assert FLOW.timesteps(m, 4) == [0.0, 0.25, 0.5, 0.75]
    with pytest.raises(DiffusionLabError, match="flow times must rise"):
        FLOW.check_times(m, [0.5, 0.25])


def test_if_kind_takes_the_courses_defaults_and_the_models_own_settings():
    m = FormulaModel(NoiseSchedule.cosine(1000), (3, 8, 8), (-1.0, 1.0))
    assert m.kind is IF and IF.guidance_scale(m) == 7.0 and IF.unconditional_prompt == "a high quality photo"
    assert IF.timesteps(m) == list(range(990, -1, -30)) and IF.default_steps(m) == 34
    assert IF.sampler_defaults(m) == {"sampler": "ddpm", "variance": "auto", "threshold": (0.95, 1.5)}
    m.sampler_defaults = {"variance": "learned-range", "threshold": None, "clip": True}  # a scheduler's own
    assert IF.sampler_defaults(m, {"eta": 0.5}) == {
        "sampler": "ddpm",
        "variance": "learned-range",
        "threshold": None,
        "clip": True,
        "eta": 0.5,
    }
    m.timesteps = lambda count: list(range(999, -1, -(1000 // count)))[:count]  # its scheduler's spacing
    assert IF.timesteps(m, 4) == [999, 749, 499, 249]
    assert not IF.measured_defaults and IF.iterative_i_start == 10


def test_our_checkpoints_declare_their_kind(ours):
    assert ours["class"].kind is DDPM and ours["class"].network_kind == "class" and ours["class"].conditioned
    assert ours["flow"].kind is FLOW and ours["time-flow"].kind is FLOW and not ours["time-flow"].conditioned
    assert ours["denoiser"].kind is DENOISER and ours["denoiser"].network_kind == "denoiser"
    # the default step counts: every step for a DDPM, the course's 300 Euler steps for the class flow, 50 for time
    assert DDPM.default_steps(ours["class"]) == 30 and len(sampling.timesteps_for(ours["class"])) == 30
    assert len(sampling.timesteps_for(ours["flow"])) == 300 and len(sampling.timesteps_for(ours["time-flow"])) == 50
    assert sampling.sampler_defaults(ours["class"]) == {"sampler": "auto", "variance": "auto", "threshold": None}
    assert sampling.sampler_defaults(ours["flow"]) == {"sampler": "euler"}


def test_a_measured_guidance_scale_in_the_json_is_the_models_default(ours):
    m = ours["class"]
    assert m.default_guidance_scale is None and m.kind.guidance_scale(m) == 5.0
    measured = CourseModel(m.net, {**m.config, "default_guidance": {"cfg_scale": 2.5, "steps": 30}})
    assert measured.default_guidance_scale == 2.5 and measured.kind.guidance_scale(measured) == 2.5


def test_the_precision_a_model_runs_in_is_declared(tmp_path):
    from diffusionlab.fastpath import accelerate

    m = CourseModel.from_checkpoint(make_checkpoint(tmp_path / "p", hidden=4))
    assert m.precision == "fp32" and m.spec is None  # as trained, built by hand
    assert accelerate(m, compile=False, precision="bf16").precision == "bf16"


def test_a_flow_models_prediction_is_its_velocity(ours):
    m, x = ours["flow"], rand(2, 1, 28, 28)
    c = m.encode(["3", "7"])
    want = m.net(x, torch.tensor([0.25, 0.25]), c)
    torch.testing.assert_close(m.predict(x, 0.25, c).output, want)
    assert m.kind.output == "velocity" and DDPM.output == "noise"


@pytest.mark.parametrize(
    ("model", "call", "tool"),
    [
        ("denoiser", lambda m: tools.sample(m, n=1, progress=False), "sample"),
        ("denoiser", lambda m: tools.forward(m, "test:0"), "forward"),
        ("denoiser", lambda m: tools.iterative_denoise(m, "test:0", progress=False), "iterative_denoise"),
        ("denoiser", lambda m: tools.anagram(m, ["", ""], n=1, progress=False), "anagram"),
        ("flow", lambda m: tools.one_step_denoise(m, "test:0"), "one_step_denoise"),
    ],
)
def test_a_tool_the_kind_does_not_run_is_refused_in_one_line(ours, model, call, tool):
    m = ours[model]
    with pytest.raises(DiffusionLabError) as e:
        call(m)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg == f"{tool} needs {TOOLS[tool]}; {m.name} is {m.kind.describe}: it runs {', '.join(m.kind.tools)}"
    assert tool not in m.kind.tools


def test_the_denoiser_without_times_says_what_it_runs(ours):
    m = ours["denoiser"]
    with pytest.raises(
        DiffusionLabError, match=r"is a single-step denoiser: it has no diffusion times; it runs denoise_once"
    ):
        m.predict(rand(1, 1, 28, 28), 10, m.null(1))


def test_evaluate_samples_with_the_steps_sample_takes(ours, monkeypatch):
    """No own default in evaluate: its timesteps are the kind's, the ones tools.sample walks."""
    seen = []

    def fake_run(model, x, timesteps, *args, **kwargs):
        seen.append(list(timesteps))
        return x

    monkeypatch.setattr(sampling, "run", fake_run)
    for m in (ours["time-flow"], ours["flow"]):
        tools.sample(m, n=2, progress=False)
    evaluate_unconditional(ours["time-flow"], _Uniform(), n=2, progress=False)
    assert seen[0] == seen[2] == sampling.flow_timesteps(50) and len(seen[1]) == 300


class _Uniform:
    num_classes, test_accuracy = 10, None

    def classify(self, images):
        return torch.zeros(len(images), dtype=torch.long)

    def features(self, images):
        return images.flatten(1)


def test_no_module_but_the_kinds_tests_a_models_kind():
    """is_flow / is_if_like / predicts_variance are gone: the algorithms and front-ends ask model.kind."""
    pattern = re.compile(r"\b(is_flow|is_if_like|predicts_variance)\b")
    offenders = [
        f"{p.relative_to(SRC)}:{i}"
        for p in SRC.rglob("*.py")
        if p.name != "model_kinds.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders
