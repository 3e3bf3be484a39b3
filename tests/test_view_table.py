"""The views are one table (views.VIEWS): a view registered there, and nowhere else, is known to the checks, listed
in the CLI's --view help and the web UI's chooser, and makes anagrams through the tool and the web UI."""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch
from parta_helpers import one_thread  # noqa: F401  (one_thread: autouse fixture)

from diffusionlab import views
from diffusionlab.errors import DiffusionLabError

NEW = "upside-down"
HELP = "turned over top to bottom (a test's view)"


def new_view() -> views.ViewEntry:
    """The whole of adding a view: this one entry in the table (views.VIEWS[NEW] = new_view())."""

    def make(h: int, w: int, arg: str, seed: int) -> views.View:
        return views.View("", lambda x: x.flip(-2), lambda x: x.flip(-2))

    return views.ViewEntry(make, HELP)


def test_a_view_added_to_the_table_is_known_everywhere_then_gone(monkeypatch):
    from diffusionlab.app.illusion_tabs import view_choices  # the page's modules import gradio only to build it
    from diffusionlab.app.illusions import anagram_request

    x = torch.rand(2, 1, 8, 8)
    with monkeypatch.context() as m:
        m.setitem(views.VIEWS, NEW, new_view())
        assert views.check_view_name(NEW) == NEW
        v = views.get_view(NEW, (1, 8, 8))
        assert v.name == NEW and torch.equal(v.inverse(v.apply(x, (0.0, 1.0)), (0.0, 1.0)), x)
        assert torch.equal(v.apply(x, (0.0, 1.0)), x.flip(-2))
        assert f", {NEW};" in views.view_help()  # listed after the shipped ones
        assert f"- **{NEW}**: {HELP}" in views.views_markdown()
        assert NEW in view_choices()
        assert anagram_request(2, ["6", "9"], [NEW]) == (["6", "9"], [NEW])
    with pytest.raises(DiffusionLabError, match=f"unknown view '{NEW}'; choose one of rot180, flip, .*, identity$"):
        views.get_view(NEW, (1, 8, 8))
    assert NEW not in views.view_help() and NEW not in view_choices()


def test_the_cli_help_is_the_tables():
    from diffusionlab.commands.illusion_options import ViewsOpt

    help_text = typing.get_args(ViewsOpt)[1].help
    assert help_text == views.view_help()
    assert all(name in help_text for name in views.VIEWS) and "patch-permute[:N]" in help_text


def test_the_tool_and_the_web_ui_make_anagrams_with_a_new_view(runs_dir, tmp_path, monkeypatch):
    """The new entry (a vertical flip under another name) makes the same images as the shipped `flip`, through the
    tool and through the web UI's handler, and is named in the settings and the readings' labels."""
    from diffusionlab import tools
    from diffusionlab.app import Limits, ModelRegistry
    from diffusionlab.app.handlers import Handlers
    from diffusionlab.app.inputs import Outputs

    monkeypatch.setitem(views.VIEWS, NEW, new_view())
    limits = Limits()
    h = Handlers(ModelRegistry(runs_dir, "cpu", (), limits), limits, Outputs(tmp_path))
    model = h.registry.get("run:tiny")
    kw = dict(n=2, seed=4, score=False, balance=False, progress=False)
    new, old = tools.anagram(model, ["6", "9"], NEW, **kw), tools.anagram(model, ["6", "9"], "flip", **kw)
    assert torch.equal(new.images, old.images) and new.settings["views"] == [NEW]
    assert torch.equal(new.panels[0].cells, old.panels[0].cells)  # the readings: through the new view
    assert new.panels[0].row_labels[1].endswith(f"({NEW})")
    png, info = h.anagram("run:tiny", 2, "6", "9", "", "", NEW, "", "", 1, 5.0, 0, balance=False)
    assert Path(png).is_file() and f"**views** {NEW}" in info


@pytest.mark.slow  # a fresh interpreter imports the whole CLI (~10 s on a busy 2-core machine)
def test_a_view_in_the_table_before_the_cli_starts_is_in_its_help():
    """The real CLI, started after the entry is in the table (as when views.py holds it): `anagram --help` lists
    it, and `anagram --view` takes it."""
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from diffusionlab import views\nfrom test_view_table import NEW, new_view\nviews.VIEWS[NEW] = new_view()\n"
        "from diffusionlab.cli import main\nmain(['anagram', '--help'])\n"
    )
    env = {**os.environ, "COLUMNS": "400", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert NEW in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
