"""Checks of user input made before the first heavy step: numbers, batch sizes, seeds and output paths.

The one place for these rules: the command line (as option callbacks and at the top of each command), the web UI
and library code all call the same functions, and each failure is one `DiffusionLabError` line. Image input is
checked where it is read (`images.open_image`: its pixel count before decoding).
"""

from __future__ import annotations

import math
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffusionlab.errors import DiffusionLabError

# All images of a command go through the network in one batch (both CFG branches too), so memory grows with
# them. 4 M pixel values is about 5,100 MNIST-sized images: about 2 GB of CPU memory for our UNets at D = 64
# (measured: -n 20000 took 8.3 GB), or 340 IF stage-I images of 64x64x3.
MAX_BATCH_VALUES = 4_000_000
# evaluate keeps every sample (in batches of 250 through the network) for the Frechet distance.
MAX_SCORED_SAMPLES = 100_000
MAX_SEED = 2**63 - 1


# -- numbers ---------------------------------------------------------------------------------------------------
def check_scale(value: float | None, name: str = "--cfg") -> float | None:
    """A CFG scale: finite and >= 0 (1 = no guidance); None means the model's default."""
    if value is None:
        return None
    if not math.isfinite(value) or value < 0:
        raise DiffusionLabError(f"{name} must be a finite number >= 0 (1 = no guidance), got {value}")
    return value


def check_count(value: int | None, name: str, at_most: int | None = None, why: str = "") -> int | None:
    """A count such as --steps or -n: at least 1 (0 would silently mean 'the default'), at most `at_most`."""
    if value is None:
        return None
    if value < 1 or (at_most is not None and value > at_most):
        upper = f" and at most {at_most}" if at_most is not None else ""
        raise DiffusionLabError(f"{name} must be at least 1{upper}{why}, got {value}")
    return value


def check_batch(images: int, image_shape: tuple[int, ...], name: str = "-n") -> int:
    """`images` images of image_shape in one batch must fit the memory budget (MAX_BATCH_VALUES pixel values)."""
    per_image = math.prod(image_shape)
    most = max(1, MAX_BATCH_VALUES // per_image)
    if images > most:
        size = "x".join(str(s) for s in image_shape)
        raise DiffusionLabError(
            f"{name} asks for {images} images of {size} in one batch; the limit is {most} "
            f"({MAX_BATCH_VALUES / 1e6:g} M pixel values, about 2 GB): make fewer, or run again with another --seed"
        )
    return images


def parse_seed(value: Any, name: str = "seed") -> int:
    """A seed from a form or the command line: a whole number 0 .. 2**63 - 1 ("7", 7 and 7.0 are fine)."""
    seed = value if isinstance(value, int) and not isinstance(value, bool) else None
    if seed is None:
        try:
            number = float(str(value).strip())
            seed = int(number) if number.is_integer() else None
        except (TypeError, ValueError, OverflowError):
            seed = None
    if seed is None or not 0 <= seed <= MAX_SEED:
        raise DiffusionLabError(f"{name} must be a whole number from 0 to {MAX_SEED}, got {value!r}")
    return seed


# -- output paths ----------------------------------------------------------------------------------------------
NAME_MAX, PATH_MAX = 255, 4096  # bytes: Linux's limits, where the file system does not say its own


def _check_name_lengths(p: Path, what: str) -> None:
    """Every name on the path within the file system's limit, and the path within PATH_MAX: else the first
    stat of it fails (ENAMETOOLONG), and a name just under the limit would fail at the end of the work."""
    if len(os.fsencode(p)) > PATH_MAX:
        raise DiffusionLabError(f"{what}: the path is {len(os.fsencode(p))} bytes long; the limit is {PATH_MAX}")
    for name in p.parts:
        size = len(os.fsencode(name))
        if size > NAME_MAX:
            raise DiffusionLabError(
                f"{what} {name[:40]}...: that name is {size} bytes long; a file system allows at most {NAME_MAX} "
                "per name: choose a shorter one"
            )


def _nearest_existing(path: Path, what: str) -> Path:
    """The nearest path on the way up that is there: a symbolic link that leads nowhere (or in a loop) is refused,
    not replaced or written through."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    if path.is_symlink() and not path.exists():
        raise DiffusionLabError(
            f"{what}: {path} is a symbolic link to {os.readlink(path)}, which is missing or a loop; remove the link "
            "or choose another place"
        )
    return path


def _check_can_create_in(folder: Path, target: Path, what: str) -> None:
    """The nearest existing folder on the way to `target` must take new files. Tried, not guessed: os.access says
    yes to root everywhere, even in /proc."""
    base = _nearest_existing(folder, what)
    if not base.is_dir():
        raise DiffusionLabError(f"{what} {target}: {base} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix=".diffusionlab-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise DiffusionLabError(
            f"{what} {target}: cannot write in {base} ({e.strerror or e}); choose another place"
        ) from None


def check_output_file(path: str | Path, force: bool = False, what: str = "--out") -> Path:
    """A file a command will write at its end: checked now, before any work. An existing file is kept unless
    --force; a folder, a device or a path through a file is refused; its folder must take new files."""
    p = Path(path)
    _check_name_lengths(p, what)
    _nearest_existing(p, what)
    if p.is_dir():
        raise DiffusionLabError(f"{what} {p} is a folder; give a file name such as {p / 'out.png'}")
    if p.exists() and not force:
        raise DiffusionLabError(f"{p} already exists; choose another {what} or pass --force to replace it")
    if p.exists() and not p.is_file():
        raise DiffusionLabError(f"{what} {p} is not a regular file; choose another {what}")
    _check_can_create_in(p.parent, p, what)
    return p


def check_output_folder(path: str | Path, what: str = "--save-all") -> Path:
    """A folder a command will write files into (made if missing): not a file, and it must take new files."""
    p = Path(path)
    _check_name_lengths(p, what)
    _nearest_existing(p, what)
    if p.exists() and not p.is_dir():
        raise DiffusionLabError(f"{what} {p} is a file; {what} needs a folder")
    _check_can_create_in(p, p, what)
    return p


def write_together(writers: dict[Path, Callable[[Path], Any]]) -> None:
    """Write every output of a command, or none: each writer writes a hidden file beside its target, and the
    targets are replaced only once all of them are written (a failing GIF never leaves a new PNG beside it)."""
    staged: dict[Path, Path] = {}
    try:
        for target, write in writers.items():
            target.parent.mkdir(parents=True, exist_ok=True)  # check_output_file found where it can be made
            staged[target] = target.parent / staged_name(target.name)
            write(staged[target])
    except BaseException as e:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise DiffusionLabError(f"cannot write {target} ({e.strerror or e}); no output was written") from None
        raise
    for target, tmp in staged.items():  # renames within a folder: they do not fail once the files are written
        os.replace(tmp, target)


def hidden_prefix(name: str, kind: str) -> str:
    """The start of a hidden file's name written beside `name` before it replaces it: `.NAME.`, or `.KIND-` for a
    name so long that the hidden one would pass the file system's 255-byte limit (the write would fail after the
    work). The one rule for atomic writes' temp files (model_files.py) and write_together's staged files."""
    return f".{name}." if len(os.fsencode(name)) <= 200 else f".{kind}-"


def staged_name(name: str) -> str:
    """A hidden name for a file written beside `name` before it replaces it, not `name`'s own temp-file pattern."""
    return f"{hidden_prefix(name, 'partial')}{uuid.uuid4().hex[:8]}.partial"
