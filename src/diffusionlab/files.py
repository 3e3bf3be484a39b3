"""Reading the user's files: regular files only, and never more bytes than a budget allows.

Every reader of an input file (checkpoints and their JSON, classifiers, images, masks, IDX data sets) asks here
first. A named pipe would block the reader forever and a device such as /dev/zero never ends; a sparse file or a
gzip stream can declare or expand to gigabytes from a few bytes on disk. So the kind of file is checked with
os.stat before it is opened, and sizes are checked against a budget before anything is allocated.
"""

from __future__ import annotations

import os
import stat
import zlib
from pathlib import Path

from diffusionlab.errors import DiffusionLabError

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """What a stat mode is, in words ("a named pipe (FIFO)", ...); "a regular file" for a plain file."""
    return next((words for test, words in _KINDS if test(mode)), "a regular file" if stat.S_ISREG(mode) else "special")


def regular_file(path: str | Path, label: str | None = None) -> os.stat_result:
    """The stat of `path` (symlinks followed), refused in one line unless it is a regular file that exists.

    os.stat never opens the file, so a FIFO is refused here instead of blocking the open() that would follow."""
    label = label or str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DiffusionLabError(f"{label}: no such file") from None
    except OSError as e:  # a symlink loop, a name too long, a path through a file, no permission
        raise DiffusionLabError(f"{label}: cannot read it ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DiffusionLabError(f"{label}: is {file_kind(st.st_mode)}, not a regular file; give a file")
    return st


def read_bytes(path: str | Path, label: str | None = None, limit: int | None = None) -> bytes:
    """A regular file's bytes, refused before reading when it is larger than `limit` bytes."""
    label = label or str(path)
    size = regular_file(path, label).st_size
    if limit is not None and size > limit:
        raise DiffusionLabError(f"{label}: {size:,} bytes, more than the {limit:,} this file may have")
    try:
        with open(path, "rb") as f:
            return f.read(size + 1 if limit is None else min(size, limit) + 1)
    except OSError as e:
        raise DiffusionLabError(f"{label}: cannot read it ({e.strerror or e})") from None


def read_text(path: str | Path, label: str | None = None, limit: int = 16 * 2**20) -> str:
    """A regular file's text (UTF-8, at most `limit` bytes: a config JSON is a few kB)."""
    return read_bytes(path, label, limit).decode("utf-8")


def gunzip(data: bytes, limit: int, label: str, head: bool = False) -> bytes | bytearray:
    """The gzip stream `data` (one member or several) decompressed, refused as soon as it passes `limit` bytes:
    8 MB of gzip can expand to 8 GB, so the output is produced in pieces and counted, never all at once.
    head=True: the first `limit` bytes only (to read a header that says how large the rest is)."""
    out, rest = bytearray(), data
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            while not inflater.eof:
                piece = inflater.decompress(rest, min(limit - len(out) + 1, 1 << 24))
                rest = inflater.unconsumed_tail
                out += piece
                if len(out) > limit:
                    if head:
                        return bytes(out[:limit])
                    raise DiffusionLabError(
                        f"{label}: expands to more than {limit:,} bytes (what its header declares, within the "
                        "memory budget); the file is corrupt or not a data set"
                    )
                if not piece and not rest:
                    raise DiffusionLabError(f"{label}: the gzip stream ends early; the file is truncated or corrupt")
        except zlib.error as e:
            raise DiffusionLabError(f"{label}: not a valid gzip file ({e}); the file is truncated or corrupt") from None
        rest = inflater.unused_data
        if rest and rest[:2] != b"\x1f\x8b":
            raise DiffusionLabError(f"{label}: bytes after the end of the gzip stream; the file is corrupt")
    return out  # not bytes(out): that would hold the data twice
