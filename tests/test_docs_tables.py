"""The docs' copies of the registries' tables (step rules, views, shipped models) are the tables', and
scripts/docs_tables.py brings a copy along when an entry is added."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from diffusionlab import views

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
import docs_tables  # noqa: E402


def test_the_docs_copies_are_the_tables():
    assert docs_tables.main(["--check"]) == 0, "run python scripts/docs_tables.py"


def test_a_new_view_reaches_the_docs_through_the_script(tmp_path, monkeypatch, capsys):
    from test_view_table import HELP, NEW, new_view

    for doc in ("sampling.md", "illusions.md", "models.md"):
        shutil.copy(docs_tables.DOCS / doc, tmp_path / doc)
    monkeypatch.setattr(docs_tables, "DOCS", tmp_path)
    monkeypatch.setitem(views.VIEWS, NEW, new_view())
    assert docs_tables.main(["--check"]) == 1
    assert "stale: illusions.md (views.views_markdown)" in capsys.readouterr().err
    assert docs_tables.main([]) == 0 and docs_tables.main(["--check"]) == 0
    assert f"- **{NEW}**: {HELP}\n<!-- end of views.views_markdown() -->" in (tmp_path / "illusions.md").read_text()


def test_a_doc_without_its_markers_is_one_line():
    with pytest.raises(SystemExit, match=r"^error: no markers for views.views_markdown\(\) in the doc"):
        docs_tables.rewritten("# a doc\n", "views.views_markdown", "| table |")
