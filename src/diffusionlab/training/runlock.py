"""One writer per run folder: an OS file lock (flock) on .train.lock in the folder, held for the run's life.

The kernel drops the lock when the process ends, however it ends (a SIGKILL too), so a lock file left by a dead
run is no lock: the next `train` takes it without asking. The file holds the holder's pid, host and start time for
the refusal message, and is removed at the end while still locked (a process that has just locked the removed file
sees that it is gone and locks the folder's new one instead: one holder at a time). Under
torchrun rank 0, the one that writes the run, takes it, and every rank learns the outcome, so all of them stop
with the same one line.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import BinaryIO

import torch.distributed as dist

from diffusionlab.distributed import SINGLE, DistContext
from diffusionlab.errors import DiffusionLabError

LOCK_NAME = ".train.lock"


class RunLock:
    """The run folder's lock, taken by rank 0 when made (or every rank ends with one line naming the holder) and
    held until release() or until the object is collected (its file closes). release() removes the lock file, and
    a folder made here for the lock alone when the run left nothing in it (e.g. a refused --resume)."""

    def __init__(self, run_dir: Path, ctx: DistContext = SINGLE) -> None:
        self.run_dir, self.file = Path(run_dir), None
        self._made = ctx.is_main and not self.run_dir.exists()
        problem = None
        if ctx.is_main:
            try:
                self.file = _take(self.run_dir)
            except DiffusionLabError as e:
                problem = str(e)
        if ctx.enabled:  # every rank stops with rank 0's message, instead of waiting for it in a collective
            shared = [problem]
            dist.broadcast_object_list(shared, src=0)
            problem = shared[0]
        if problem:
            raise DiffusionLabError(problem)

    def release(self) -> None:
        if self.file is None:
            return
        with contextlib.suppress(OSError):  # the folder may be gone (removed by hand while the run ran)
            (self.run_dir / LOCK_NAME).unlink(missing_ok=True)  # still locked: see the module's docstring
            if self._made and not os.listdir(self.run_dir):
                self.run_dir.rmdir()
        self.file.close()  # closing the file releases the lock
        self.file = None


def _take(run_dir: Path) -> BinaryIO | None:
    """The locked file; None where the file system has no locks (said once, the run goes on)."""
    path = run_dir / LOCK_NAME
    while True:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as e:
            raise DiffusionLabError(f"--out {run_dir}: cannot open its lock file {LOCK_NAME} ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise DiffusionLabError(
                    f"--out {run_dir}: another train is writing this run ({_holder(path)}); wait for it to end or "
                    "stop it (Ctrl-C saves it), or choose another --out"
                ) from None
            print(f"warning: {run_dir}: cannot lock the run folder ({e.strerror}); make sure no other train writes it")
            return None
        if _same_file(fd, path):
            break
        os.close(fd)  # the file was removed or replaced between open and lock: lock the one the folder holds now
    holder = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder.encode(), 0)
    return os.fdopen(fd, "r+b", buffering=0)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
    except FileNotFoundError:
        return False


def _holder(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()[:200] or "pid unknown"
    except OSError:
        return "pid unknown"
