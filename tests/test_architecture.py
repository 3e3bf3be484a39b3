"""The layers hold (the import-linter contracts in pyproject.toml, described in docs/architecture.md), and an import
that breaks one is caught. The same check by hand, in the repository root: `lint-imports`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"

# (module of the copy, the line added to it, what lint-imports must then report)
BREAKS = [
    ("schedule.py", "from diffusionlab.tools import sample", "diffusionlab.schedule -> diffusionlab.tools"),
    ("sampling.py", "import gradio", "diffusionlab.sampling -> gradio"),
    ("guidance.py", "import diffusers", "diffusionlab.guidance -> diffusers"),
    (
        "edits.py",
        "from diffusionlab.deepfloyd import IFModel",
        "diffusionlab.edits -> diffusionlab.deepfloyd",
    ),
    ("report/html.py", "from diffusionlab.commands import common", "diffusionlab.report.html -> diffusionlab.commands"),
    ("app/ui.py", "from diffusionlab import report", "diffusionlab.app.ui -> diffusionlab.report"),
]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """lint-imports with root/pyproject.toml on the package in root/src (not the installed one), no cache."""
    pythonpath = os.pathsep.join([str(root / "src"), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", LINT, "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root,
        env={**os.environ, "PYTHONPATH": pythonpath},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_layers_hold():
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> subprocess.CompletedProcess:
    """A copy of the package with one forbidden import added to each module in BREAKS, linted."""
    root = tmp_path_factory.mktemp("broken")
    skip = shutil.ignore_patterns("__pycache__", "weights", "data_sample")
    shutil.copytree(ROOT / "src" / "diffusionlab", root / "src" / "diffusionlab", ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    for module, line, _ in BREAKS:
        path = root / "src" / "diffusionlab" / module
        path.write_text(path.read_text() + f"\n{line}  # a deliberate break\n")
    return lint_imports(root)


def test_a_broken_layer_fails_the_check(broken):
    assert broken.returncode != 0, broken.stdout
    assert "BROKEN" in broken.stdout


@pytest.mark.parametrize("module,line,reported", BREAKS, ids=[b[0] for b in BREAKS])
def test_each_break_is_reported(broken, module, line, reported):
    assert reported in broken.stdout, broken.stdout
