"""The docs' copies of the registries' tables (step rules, views, shipped models; the README's lists of step rules
and views) are the tables', and scripts/docs_tables.py brings every copy along when an entry is added."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from diffusionlab import steps, views

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
import docs_tables  # noqa: E402


@pytest.fixture
def docs_copy(tmp_path, monkeypatch):
    """The script pointed at copies of the docs and the README, so that a test may rewrite them."""
    for doc in ("sampling.md", "illusions.md", "models.md"):
        shutil.copy(docs_tables.DOCS / doc, tmp_path / doc)
    shutil.copy(docs_tables.README, tmp_path / "README.md")
    monkeypatch.setattr(docs_tables, "DOCS", tmp_path)
    monkeypatch.setattr(docs_tables, "README", tmp_path / "README.md")
    return tmp_path


def test_the_docs_copies_are_the_tables():
    assert docs_tables.main(["--check"]) == 0, "run python scripts/docs_tables.py"


def test_a_new_view_reaches_the_docs_and_the_readme_through_the_script(docs_copy, monkeypatch, capsys):
    from test_view_table import HELP, NEW, new_view

    monkeypatch.setitem(views.VIEWS, NEW, new_view())
    assert docs_tables.main(["--check"]) == 1
    assert "stale: illusions.md (views.views_markdown), README.md (views.views_markdown)" in capsys.readouterr().err
    assert docs_tables.main([]) == 0 and docs_tables.main(["--check"]) == 0
    for doc in ("illusions.md", "README.md"):
        assert f"- **{NEW}**: {HELP}\n<!-- end of views.views_markdown() -->" in (docs_copy / doc).read_text()


def test_a_new_step_rule_reaches_the_docs_and_the_readme_through_the_script(docs_copy, monkeypatch, capsys):
    from test_sampler_table import HELP, NEW, new_rule

    monkeypatch.setitem(steps.SAMPLERS, NEW, new_rule())
    assert docs_tables.main(["--check"]) == 1
    assert (
        "stale: sampling.md (steps.samplers_markdown), README.md (steps.samplers_markdown)" in capsys.readouterr().err
    )
    assert docs_tables.main([]) == 0 and docs_tables.main(["--check"]) == 0
    for doc in ("sampling.md", "README.md"):
        assert f"| `{NEW}` | - | {HELP} |\n<!-- end of steps.samplers_markdown() -->" in (docs_copy / doc).read_text()


def test_a_doc_without_its_markers_is_one_line():
    with pytest.raises(SystemExit, match=r"^error: no markers for views.views_markdown\(\) in the doc"):
        docs_tables.rewritten("# a doc\n", "views.views_markdown", "| table |")
