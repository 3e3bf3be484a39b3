"""The step rules are one table (steps.SAMPLERS): a rule registered there, and nowhere else, is taken by the checks,
listed in the CLI's --sampler help and the web UI's choices, named in reports and run by the sampler loop."""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from parta_helpers import FormulaModel, one_thread  # noqa: F401  (one_thread: autouse fixture)

from diffusionlab import guidance, sampling, steps
from diffusionlab.errors import DiffusionLabError
from diffusionlab.schedule import NoiseSchedule, strided_timesteps

NEW = "ddim-eta-half"
HELP = "DDIM with eta 0.5 (a test's rule)"


def new_rule() -> steps.Sampler:
    """The whole of adding a step rule: this one entry in the table (steps.SAMPLERS[NEW] = new_rule())."""
    return steps.Sampler(
        lambda schedule, variance, eta: steps.ddim_rule(schedule, 0.5),
        HELP,
        adds_noise=lambda eta, strided: True,
        label=lambda rule: "ddim (eta 0.5, fixed)",
    )


def _run(model, x, ts, **rule):
    est = guidance.plain(model, model.null(1))
    return sampling.denoise(model, x, ts, est, generator=torch.Generator().manual_seed(1), progress=False, **rule)


def test_a_rule_added_to_the_table_is_taken_everywhere_then_gone(monkeypatch):
    from diffusionlab.evaluation.evaluate import sampler_name

    model = FormulaModel(NoiseSchedule.linear(300), (1, 8, 8), (0.0, 1.0), variance=False)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ts = strided_timesteps(300)
    with monkeypatch.context() as m:
        m.setitem(steps.SAMPLERS, NEW, new_rule())
        assert steps.choose_step_rule(NEW, None, None) == {"sampler": NEW}
        with pytest.raises(DiffusionLabError, match=f"--eta is for ddim steps; {NEW} takes neither"):
            steps.choose_step_rule(NEW, None, 0.5)
        assert f"{NEW}: {HELP}" in steps.sampler_help()
        assert sampler_name({"sampler": NEW}) == "ddim (eta 0.5, fixed)"
        assert (NEW, NEW) in [(label.split(":")[0], value) for label, value in _ui_choices()]
        got = _run(model, x, ts, sampler=NEW)  # the loop draws the rule's noise (adds_noise) and steps with it
        assert torch.equal(got, _run(model, x, ts, sampler="ddim", eta=0.5))
        assert not torch.allclose(got, _run(model, x, ts, sampler="ddim", eta=0.0), atol=1e-3)
    with pytest.raises(DiffusionLabError, match=f"unknown sampler '{NEW}'; choose one of auto, ddpm, ddim, dpm"):
        steps.choose_step_rule(NEW, None, None)
    assert NEW not in steps.sampler_help() and NEW not in [v for _, v in _ui_choices()]


def _ui_choices() -> list[tuple[str, str]]:
    from diffusionlab.app.tabs import sampler_choices  # the page's modules import gradio only to build the page

    return sampler_choices()


def test_the_cli_help_is_the_tables():
    from diffusionlab.commands.common import EtaOpt, SamplerOpt, VarianceOpt

    def help_of(opt) -> str:
        return typing.get_args(opt)[1].help

    assert help_of(SamplerOpt) == steps.sampler_help()
    assert all(f"{name}: {entry.help}" in help_of(SamplerOpt) for name, entry in steps.SAMPLERS.items())
    assert help_of(VarianceOpt).startswith("ddpm steps:") and help_of(EtaOpt).startswith("ddim steps:")


@pytest.mark.slow  # a fresh interpreter imports the whole CLI (~10 s on a busy 2-core machine)
def test_a_rule_in_the_table_before_the_cli_starts_is_in_its_help():
    """The real CLI, started after the entry is in the table (as when steps.py holds it): `sample --help` lists it."""
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from diffusionlab import steps\nfrom test_sampler_table import NEW, new_rule\nsteps.SAMPLERS[NEW] = new_rule()\n"
        "from diffusionlab.cli import main\nmain(['sample', '--help'])\n"
    )
    env = {**os.environ, "COLUMNS": "400", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert f"{NEW}: {HELP}" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]


def test_the_web_ui_samples_with_the_chosen_rule(runs_dir, tmp_path, monkeypatch):
    """The Generate tab's sampler reaches the tool (its images are the tool's with that rule) and its settings;
    a value outside the table is one line naming the table's rules."""
    from PIL import Image

    from diffusionlab import tools
    from diffusionlab.app import Limits, ModelRegistry
    from diffusionlab.app.handlers import Handlers
    from diffusionlab.app.inputs import Outputs

    monkeypatch.setitem(steps.SAMPLERS, NEW, new_rule())
    limits = Limits()
    h = Handlers(ModelRegistry(runs_dir, "cpu", (), limits), limits, Outputs(tmp_path))
    [(png, _)], info = h.generate("run:tiny", "3", 1, 6, 5.0, 0, NEW)
    assert f"**sampler** {NEW}" in info
    shown = np.asarray(Image.open(png).convert("L"), np.int16)[::8, ::8]  # the UI shows 28 px at 8x
    model = h.registry.get("run:tiny")
    want = tools.sample(model, ["3"], 1, 6, 5.0, 0, progress=False, sampler=NEW).images[0, 0]
    assert np.abs(shown - np.asarray(want.clamp(0, 1).mul(255).round(), np.int16)).max() <= 1
    with pytest.raises(
        DiffusionLabError, match=f"unknown sampler 'heun'; choose one of auto, ddpm, ddim, dpm\\+\\+2m, {NEW}$"
    ):
        h.generate("run:tiny", "3", 1, 2, 5.0, 0, "heun")
