"""Every README example runs as written on a fresh clone.

The commands of every ```bash block are run in order (in-process, through diffusionlab.cli.main) in a temporary
folder holding a copy of docs/examples, so the README's relative paths resolve as they do from the repository's
root, and each must exit 0. A block is skipped only when the line above its fence is
`<!-- not run by tests/test_readme.py: reason -->` with a reason; every command of a block that runs must be a
`diffusionlab` command. Each command sees an empty data cache, as on a fresh clone, except `train` (this test never
downloads), which reads MNIST from the first of:
- a cache holding the four genuine MNIST files, what `train`'s first download leaves there: $DIFFUSIONLAB_CACHE or
  the user's cache when it has them (CI seeds one from ../shared/data), else a cache linked to ../shared/data;
- else, on a machine without MNIST, `--data-dir` added to the command, a folder made from the shipped sample (the
  first 100 test digits, repeated to a train split of 2,000): the cache takes only files with the published md5s.
"""

from __future__ import annotations

import re
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from diffusionlab.cli import main
from diffusionlab.data import dataset_info, default_cache_dir, read_idx, write_idx
from diffusionlab.testdigits import shipped_sample

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP_MARK = re.compile(r"^<!--\s*not run by tests/test_readme\.py:\s*(?P<reason>\S.*?)\s*-->$")
COPIED = ["docs/examples"]  # the files README commands read, relative to the repository's root


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    lines: list[str]
    skip_reason: str | None


def bash_blocks(text: str) -> list[Block]:
    """The ```bash blocks of a Markdown text, each with the reason of its skip marker (None: it runs)."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            above = next((s.strip() for s in reversed(lines[:i]) if s.strip()), "")
            mark = SKIP_MARK.match(above)
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            blocks.append(Block(i + 1, lines[i + 1 : end], mark["reason"] if mark else None))
            i = end
        i += 1
    return blocks


def commands_of(block: Block) -> list[list[str]]:
    """The shell words of each command in a block (comments dropped; `a && b` is two commands)."""
    commands = []
    for line in block.lines:
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            commands.append(words[:cut])
            words = words[cut + 1 :]
    return commands


BLOCKS = bash_blocks(README.read_text())
RUN = [(b, c) for b in BLOCKS if b.skip_reason is None for c in commands_of(b)]
SKIPPED = [(b, c) for b in BLOCKS if b.skip_reason is not None for c in commands_of(b)]


def test_every_block_runs_or_says_why_not():
    assert RUN and SKIPPED, "no README examples found: has the block format changed?"
    for block, words in RUN:
        assert words[0] == "diffusionlab", (
            f"README.md:{block.line}: `{shlex.join(words)}` is not a diffusionlab command; a block with other "
            "commands needs a `<!-- not run by tests/test_readme.py: reason -->` line above it"
        )
        assert "deepfloyd" not in " ".join(words), f"README.md:{block.line}: DeepFloyd IF needs its weights: skip it"
    for block, words in SKIPPED:
        if any(w.startswith("deepfloyd") for w in words):
            assert "DeepFloyd" in block.skip_reason, f"README.md:{block.line}: say that it needs DeepFloyd's weights"


def test_every_command_parses():
    """Also the skipped ones: every subcommand and option a README command names exists (nothing is run)."""
    import click
    import typer

    from diffusionlab.cli import app

    group = typer.main.get_command(app)
    for block, words in RUN + SKIPPED:
        if words[0] != "diffusionlab":
            continue
        where = f"README.md:{block.line}: `{shlex.join(words)}`"
        parent = click.Context(group, info_name="diffusionlab")
        command = group.get_command(parent, words[1])
        assert command is not None, f"{where}: no command {words[1]!r}"
        try:
            command.make_context(words[1], words[2:], parent=parent)  # parses and checks the values, runs nothing
        except Exception as e:  # an unknown option, a bad value (typer's own click raises its own classes)
            pytest.fail(f"{where}: {type(e).__name__}: {e}")


def mnist_cache(tmp_path: Path) -> Path | None:
    """A cache folder holding the four MNIST files (linked from the user's cache or the shared data), or None."""
    info = dataset_info("mnist")
    names = [name for name, _ in info.files.values()]
    for folder in (default_cache_dir() / "mnist", SHARED_DATA / "mnist"):
        if all((folder / n).is_file() for n in names):
            cache = tmp_path / "data-cache"
            (cache / "mnist").mkdir(parents=True)
            for n in names:
                (cache / "mnist" / n).symlink_to(folder / n)
            return cache
    return None


def sample_data_dir(folder: Path, repeats: int = 20) -> Path:
    """MNIST's four files made from the shipped sample: its 100 test digits as the test split and, repeated, as
    the train split (enough for the quick runs' 40 steps of 32 in one epoch)."""
    (images_path, labels_path), _ = shipped_sample("mnist")
    images, labels = read_idx(images_path), read_idx(labels_path)
    folder.mkdir(parents=True)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    write_idx(folder / "train-images-idx3-ubyte.gz", np.tile(images, (repeats, 1, 1)))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.tile(labels, repeats))
    return folder


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """A folder that looks like the repository's root to the README's relative paths; one torch thread, which on a
    busy 2-core machine runs these small models several times faster than two."""
    work = tmp_path / "clone"
    for rel in COPIED:
        shutil.copytree(ROOT / rel, work / rel)
    monkeypatch.chdir(work)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield work
    torch.set_num_threads(threads)


def run_command(words: list[str], capsys) -> tuple[int, str]:
    try:
        main(words[1:])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.slow
def test_readme_examples_run_as_written(workspace, tmp_path, monkeypatch, capsys):
    empty_cache = tmp_path / "empty-cache"
    train_cache, train_extra = mnist_cache(tmp_path), []
    if train_cache is None:  # no MNIST on this machine: each train command as written, on the shipped sample's digits
        train_cache, train_extra = empty_cache, ["--data-dir", str(sample_data_dir(tmp_path / "sample-mnist"))]
    timings = []
    for block, words in RUN:
        training = words[1] == "train"  # only training reads the train split
        monkeypatch.setenv("DIFFUSIONLAB_CACHE", str(train_cache if training else empty_cache))
        words = words + train_extra if training else words
        start = time.perf_counter()
        code, output = run_command(words, capsys)
        timings.append(f"{time.perf_counter() - start:6.1f} s  {shlex.join(words)}")
        tail = "\n".join(output.strip().splitlines()[-5:])
        assert code == 0, f"README.md:{block.line}: `{shlex.join(words)}` exited {code}:\n{tail}"
    with capsys.disabled():
        source = shlex.join(train_extra) or f"MNIST in the cache {train_cache}"
        print(f"\n{len(RUN)} README commands ({len(SKIPPED)} skipped by their blocks' markers); train read {source}:")
        print("\n".join(timings))


def python_blocks(text: str) -> list[tuple[int, str]]:
    lines = text.splitlines()
    starts = [i for i, s in enumerate(lines) if s.strip() == "```python"]
    out = []
    for i in starts:
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        out.append((i + 1, "\n".join(lines[i + 1 : end])))
    return out


@pytest.mark.slow
def test_readme_python_examples_run_as_written(workspace, tmp_path, monkeypatch):
    blocks = python_blocks(README.read_text())
    assert blocks, "the README's Python example is gone: has the block format changed?"
    monkeypatch.setenv("DIFFUSIONLAB_CACHE", str(tmp_path / "empty-cache"))
    for line, code in blocks:
        try:
            exec(compile(code, f"README.md:{line}", "exec"), {})
        finally:
            from diffusionlab.progress import set_progress

            set_progress(True)
    saved = [path for _, code in blocks for path in re.findall(r"\.save\(\"([^\"]+)\"\)", code)]
    assert saved and all((workspace / path).is_file() for path in saved), saved
