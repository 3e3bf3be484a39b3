"""Fail unless every test marked `browser` in tests/ ran and passed in a JUnit XML report: CI must never skip them,
nor lose them with a module that was skipped whole. Prints one line per browser test, the log's proof that it ran.

    python .ci/check_browser_tests.py test-artifacts/junit.xml
"""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def browser_tests() -> list[str]:
    """module::function of every test function decorated with pytest.mark.browser."""
    found = []
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any("mark.browser" in ast.unparse(d) for d in node.decorator_list):
                found.append(f"{path.stem}::{node.name}")
    return found


def outcomes(junit: Path) -> dict[str, list[str]]:
    """module::function -> the outcome of each of its test cases (parametrized ones have several)."""
    seen: dict[str, list[str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        key = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name', '').split('[')[0]}"
        bad = [child.tag for child in case if child.tag in ("skipped", "failure", "error")]
        seen.setdefault(key, []).append(bad[0] if bad else "passed")
    return seen


def main() -> int:
    wanted, seen = browser_tests(), outcomes(Path(sys.argv[1]))
    if not wanted:
        print("ci: no test is marked browser: has the marker been renamed?")
        return 1
    failed = 0
    for name in wanted:
        results = seen.get(name, ["not run"])
        ok = all(r == "passed" for r in results)
        failed += not ok
        print(f"ci: browser test {name}: {', '.join(results)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
