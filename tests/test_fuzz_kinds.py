"""The fuzz tests of tests/test_fuzz.py (same property, same time limit) on what is not bytes: the environment
variables the project reads, and the kinds of file a path can name (a named pipe, a device, a folder, a socket,
symlinks to them, a dangling symlink, a symlink loop, a sparse file of 10 GB). Every reader returns or raises
DiffusionLabError with one line, never another exception, never hangs (a FIFO would block an open() forever)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from conftest import make_checkpoint
from hypothesis import example, given
from hypothesis import strategies as st
from test_fuzz import loads_or_refuses  # noqa: F401  (test_fuzz's hypothesis profile comes with it)

from diffusionlab import environment
from diffusionlab.course_model import CourseModel
from diffusionlab.data import read_idx
from diffusionlab.deepfloyd import load_prompt_embeds
from diffusionlab.environment import VARIABLES, check_environment, torchrun_ranks
from diffusionlab.errors import DiffusionLabError
from diffusionlab.evaluation.classifier import load_classifier
from diffusionlab.images import load_image, load_mask
from diffusionlab.model_files import WEIGHTS_NAME, load_checkpoint

# -- environment variables -------------------------------------------------------------------------------------
ENV_TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=24),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["", " ", "1", "2", "0", "-1", "abc", "1e3", "0x10", "٣", "/dev/null", "/", "~", "x" * 5000]),
)


def with_env(values: dict[str, str]):
    """os.environ with `values` set and every other variable of VARIABLES unset."""
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    return mock.patch.dict(os.environ, {**clean, **values}, clear=True)


@pytest.mark.slow  # fuzzing: hundreds of environments
@given(st.dictionaries(st.sampled_from(sorted(VARIABLES)), ENV_TEXT, max_size=4))
@example({"DIFFUSIONLAB_CACHE": "x" * 5000})  # a name too long for the file system (was OSError)
@example({"DIFFUSIONLAB_CACHE": "/dev/null"})
@example({"DIFFUSIONLAB_CACHE": "~0"})  # ~user for a user that does not exist (was RuntimeError, found on CI)
@example({"WORLD_SIZE": "2"})
def test_any_environment_is_accepted_or_refused_in_one_line(values):
    with with_env(values):
        loads_or_refuses(lambda _: check_environment(), Path("."))


@pytest.mark.slow
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "WORLD_SIZE": st.integers(-2, 4).map(str) | ENV_TEXT,
            "RANK": st.integers(-2, 4).map(str) | ENV_TEXT,
            "LOCAL_RANK": st.integers(-2, 4).map(str),
            "MASTER_ADDR": st.sampled_from(["", "127.0.0.1"]),
            "MASTER_PORT": st.integers(-1, 70000).map(str),
        },
    )
)
def test_torchrun_variables_give_a_rank_in_range_or_one_line(values):
    with with_env(values):
        try:
            ranks = torchrun_ranks()
        except DiffusionLabError as e:
            assert "\n" not in str(e)
            return
    if ranks is not None:
        rank, world, local = ranks
        assert world > 1 and 0 <= rank < world and local >= 0
        assert 1 <= int(values["MASTER_PORT"]) <= 65535 and values["MASTER_ADDR"]


def test_only_environment_py_reads_the_environment():
    """Every variable is read (and checked) in one place: no other module of the package reads os.environ."""
    src = Path(environment.__file__).parent
    readers = [
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if p.name != "environment.py" and any(s in p.read_text() for s in ("os.environ.get", "os.environ[", "getenv"))
    ]
    assert readers == []


# -- kinds of file -----------------------------------------------------------------------------------------------
KINDS = ("fifo", "link_to_fifo", "dev_zero", "link_to_dev_zero", "folder", "socket", "dangling", "loop", "sparse")


def make_kind(path: Path, kind: str) -> Path:
    """`path` made into a file system object of `kind` (parents made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind in ("fifo", "link_to_fifo"):
        target = path if kind == "fifo" else path.with_name(path.name + ".fifo")
        os.mkfifo(target)
        if kind == "link_to_fifo":
            path.symlink_to(target)
    elif kind == "dev_zero":  # the device itself, under its own name
        path = Path("/dev/zero")
    elif kind == "link_to_dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "dangling":
        path.symlink_to(path.with_name("nothing-here"))
    elif kind == "loop":
        path.symlink_to(path)
    elif kind == "sparse":
        with open(path, "wb") as f:
            f.truncate(10 * 2**30)  # 10 GB of zeros, a few kB on disk
    return path


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("kinds") / "good")


@pytest.fixture
def short_tmp():
    """A folder with a short path: a socket's path must fit in 108 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="k", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_with(good_run: Path, folder: Path, special: str, kind: str) -> Path:
    """A copy of good_run whose file `special` (the weights or the JSON) is of `kind`."""
    run = folder / "run"
    run.mkdir()
    for name in (WEIGHTS_NAME, "model.json"):
        if name != special:
            shutil.copy(good_run / name, run / name)
    make_kind(run / special, kind)
    return run


READERS = {
    "idx": (lambda p: read_idx(p), "train-images-idx3-ubyte.gz"),
    "image": (lambda p: load_image(p, (1, 28, 28)), "x.png"),
    "mask": (lambda p: load_mask(p, (1, 28, 28)), "m.png"),
    "prompt_embeds": (load_prompt_embeds, "embeds.pth"),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader", READERS)
def test_file_readers_refuse_what_is_not_a_regular_file(reader, kind, short_tmp):
    read, name = READERS[reader]
    path = make_kind(short_tmp / name, kind)
    assert loads_or_refuses(read, path) is None  # refused (none of these is a good file), within the time limit


CHECKPOINT_READERS = {
    "checkpoint": load_checkpoint,
    "model": lambda p: CourseModel.from_checkpoint(p),
    "classifier": lambda p: load_classifier(p / WEIGHTS_NAME),
}


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "dev_zero"])  # a checkpoint's files have their names
@pytest.mark.parametrize("special", [WEIGHTS_NAME, "model.json"])
@pytest.mark.parametrize("reader", CHECKPOINT_READERS)
def test_checkpoint_readers_refuse_what_is_not_a_regular_file(reader, special, kind, good_run, short_tmp):
    run = run_with(good_run, short_tmp, special, kind)
    assert loads_or_refuses(CHECKPOINT_READERS[reader], run) is None
