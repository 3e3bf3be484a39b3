"""A small mutation run over the algorithm modules: does the test suite notice when the code is wrong?

For each module, every mutable spot (an arithmetic or comparison operator, a boolean operator, a numeric
constant, a unary minus) is changed one at a time; the module's own test files run against the mutant in a copy
of the tree; a mutant is *killed* when a test fails (or its CPU time passes 3x the clean run's: a hang), *survives* when all pass.
The tree it runs in is a throwaway copy (`--tree`: a clone of the repository is made there if absent), never the
work tree. Mutmut was the first choice; this is the same idea in ~150 lines with no fork() under torch.

    python scripts/mutation.py --tree /tmp/mut --module steps --module views --out docs/mutation.json
    python scripts/mutation.py --tree /tmp/mut --module schedule --sample 40   # an estimate from 40 mutants

Writes a JSON list of mutants (module, line, what changed, killed/survived, CPU seconds) and prints the score.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the algorithm modules and the tests that own them (the most targeted file first: with -x a mutant dies early);
# tests/test_mutation_survivors.py holds the tests written for the survivors of earlier runs
SURVIVORS = "tests/test_mutation_survivors.py"
MODULE_TESTS = {
    "steps": ["tests/test_steps.py", "tests/test_sampler_table.py"],
    "schedule": ["tests/test_schedule.py", "tests/test_timesteps.py", "tests/test_model_kinds.py"],
    "views": ["tests/test_views.py", "tests/test_view_table.py"],
    "filters": ["tests/test_guidance.py", "tests/test_edits.py"],
    "guidance": ["tests/test_guidance.py", "tests/test_shared_encoder.py", "tests/test_flow_tools.py"],
    "sampling": [
        "tests/test_steps.py",
        "tests/test_timesteps.py",
        "tests/test_survivors.py",
        "tests/test_flow_tools.py",
        "tests/test_edits.py",
        "tests/test_model_kinds.py",
    ],
    "edits": ["tests/test_edits.py", "tests/test_survivors.py", "tests/test_flow_tools.py"],
    "model_kinds": ["tests/test_model_kinds.py", "tests/test_timesteps.py", "tests/test_flow_tools.py"],
}
MODULE_TESTS = {module: [*tests, SURVIVORS] for module, tests in MODULE_TESTS.items()}

SWAP_BINOP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.Pow: ast.Mult}
SWAP_CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}
SWAP_BOOL = {ast.And: ast.Or, ast.Or: ast.And}


@dataclass
class Mutant:
    module: str
    line: int
    change: str
    status: str = "pending"
    seconds: float = 0.0


def _skipped(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Annotations, and the default values of parameters: every caller in the tested paths passes its own value,
    so a changed default is (nearly always) an equivalent mutant that only adds noise to the score."""
    child, p = node, parents.get(node)
    while p is not None:
        if isinstance(p, ast.arguments) and (child in p.defaults or child in p.kw_defaults):
            return True
        if isinstance(p, (ast.arg, ast.AnnAssign)) and child is getattr(p, "annotation", None):
            return True
        child, p = p, parents.get(p)
    return False


def mutation_sites(tree: ast.Module) -> list[tuple[ast.AST, str, object]]:
    """(node, description, replacement) for every mutable spot; replacement is applied by `apply`."""
    parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    sites: list[tuple[ast.AST, str, object]] = []
    for node in ast.walk(tree):
        if _skipped(node, parents):
            continue
        if isinstance(node, ast.BinOp) and type(node.op) in SWAP_BINOP:
            new = SWAP_BINOP[type(node.op)]
            sites.append((node, f"{type(node.op).__name__} -> {new.__name__}", new))
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in SWAP_CMP:
            new = SWAP_CMP[type(node.ops[0])]
            sites.append((node, f"{type(node.ops[0]).__name__} -> {new.__name__}", new))
        elif isinstance(node, ast.BoolOp):
            new = SWAP_BOOL[type(node.op)]
            sites.append((node, f"{type(node.op).__name__} -> {new.__name__}", new))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            sites.append((node, "drop unary minus", "drop-usub"))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float) and not isinstance(node.value, bool):
            new_value = node.value + 1 if isinstance(node.value, int) else (node.value * 2 if node.value else 1.0)
            sites.append((node, f"{node.value!r} -> {new_value!r}", new_value))
    return sites


def apply(source: str, index: int) -> tuple[str, int, str]:
    """The module's source with its index-th site mutated: (new source, line, description)."""
    tree = ast.parse(source)
    node, what, new = mutation_sites(tree)[index]
    if isinstance(node, ast.BinOp) or isinstance(node, ast.BoolOp):
        node.op = new()
    elif isinstance(node, ast.Compare):
        node.ops = [new()]
    elif new == "drop-usub":
        node.op = ast.UAdd()
    else:
        node.value = new
    return ast.unparse(tree), node.lineno, what


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_tests(tree_dir: Path, tests: list[str], cpu_limit: float | None) -> tuple[str, float]:
    """Run the tests on the tree -> (status, CPU seconds). The limit is on CPU time, not wall time, so a machine
    busy with other work slows a run down without making it count as a hang."""
    env = {**os.environ, "PYTHONPATH": str(tree_dir / "src"), "OMP_NUM_THREADS": "1", "DIFFUSIONLAB_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]

    def limit() -> None:
        if cpu_limit is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (int(cpu_limit), int(cpu_limit)))

    t0 = _cpu_seconds()
    rc = subprocess.run(cmd, cwd=tree_dir, env=env, capture_output=True, preexec_fn=limit).returncode
    secs = _cpu_seconds() - t0
    if rc < 0:  # SIGXCPU/SIGKILL from the CPU limit: the mutant made the tests hang
        return "killed (cpu limit)", secs
    return ("survived" if rc == 0 else "killed"), secs


def mutate_module(tree_dir: Path, module: str, sample: int | None, min_cpu: float) -> list[Mutant]:
    path = tree_dir / "src" / "diffusionlab" / f"{module}.py"
    original = path.read_text()
    tests = [t for t in MODULE_TESTS[module] if (tree_dir / t).is_file()]
    status, secs = run_tests(tree_dir, tests, None)
    if status != "survived":
        raise SystemExit(f"{module}: its tests fail on the unmutated tree ({' '.join(tests)}); fix that first")
    count = len(mutation_sites(ast.parse(original)))
    cpu_limit = max(min_cpu, 3 * secs)  # a mutant whose tests take 3x the clean run's CPU time hangs
    print(
        f"{module}: {count} mutants, tests {' '.join(tests)} ({secs:.0f} CPU s clean, limit {cpu_limit:.0f})",
        flush=True,
    )
    out = []
    try:
        # a seeded random sample of the sites when the module has more than `sample` (the score is then an estimate)
        chosen = (
            sorted(random.Random(module).sample(range(count), sample)) if sample and sample < count else range(count)
        )
        for i in chosen:
            src, line, what = apply(original, i)
            path.write_text(src)
            m = Mutant(module, line, what)
            m.status, m.seconds = run_tests(tree_dir, tests, cpu_limit)
            print(f"  {module}:{line} {what}: {m.status} ({m.seconds:.0f} s)", flush=True)
            out.append(m)
    finally:
        path.write_text(original)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", required=True, help="a throwaway copy of the repository to mutate (made if absent)")
    ap.add_argument("--module", action="append", choices=sorted(MODULE_TESTS), help="repeatable; default all")
    ap.add_argument("--sample", type=int, default=None, help="a seeded random sample of this many mutants per module")
    ap.add_argument(
        "--min-cpu",
        type=float,
        default=60.0,
        help="least CPU seconds per test run (else 3x the clean run's); over it counts as killed",
    )
    ap.add_argument("--out", default=None, help="JSON file for the results")
    a = ap.parse_args()
    tree_dir = Path(a.tree)
    if tree_dir.resolve() == ROOT:
        raise SystemExit("--tree must be a copy, not the work tree")
    if not tree_dir.exists():
        subprocess.run(["git", "clone", "-q", str(ROOT), str(tree_dir)], check=True)
    results: list[Mutant] = []
    for module in a.module or sorted(MODULE_TESTS):
        results += mutate_module(tree_dir, module, a.sample, a.min_cpu)
        if a.out:
            Path(a.out).write_text(json.dumps([asdict(m) for m in results], indent=1))
    killed = sum(m.status.startswith("killed") for m in results)
    print(f"score: {killed}/{len(results)} killed = {100 * killed / max(1, len(results)):.1f} %")


if __name__ == "__main__":
    main()
