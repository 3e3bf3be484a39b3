"""The Chromium that the browser tests drive, and what happens without one: a skip on a developer's machine, a
failure where DIFFUSIONLAB_REQUIRE_BROWSER=1 (CI sets it), so that no browser test is skipped there unnoticed."""

from __future__ import annotations

import importlib.util
import os

import pytest

from diffusionlab.report.run import CHROMIUM_ENV, find_chromium

REQUIRE_ENV = "DIFFUSIONLAB_REQUIRE_BROWSER"


def chromium_or_skip(playwright: bool = True) -> str:
    """The path of the Chromium `reproduce --pdf` would use ($DIFFUSIONLAB_CHROMIUM, PATH, /usr/bin/chromium);
    with `playwright`, also check that Playwright is importable. Skips without them, or fails under CI."""
    chromium = find_chromium()
    if chromium is None:
        missing = (
            f"no Chromium (${CHROMIUM_ENV}, chromium or chromium-browser on PATH, /usr/bin/chromium): "
            "apt-get install chromium"
        )
    elif playwright and importlib.util.find_spec("playwright") is None:
        missing = "no Playwright: pip install -e '.[test]'"
    else:
        return chromium
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{missing} ({REQUIRE_ENV}=1: the browser tests must run here)")
    pytest.skip(missing)
