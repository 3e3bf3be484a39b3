"""Process-wide CPU settings: glibc's allocator and the number of threads worth using."""

from __future__ import annotations

import os
import sys
import time

import torch


def tune_malloc() -> bool:
    """Keep freed memory in glibc's heap instead of returning it to the OS after every large tensor: on CPU the
    big activations of batched sampling are otherwise mmap'ed and page-faulted afresh each time (about 2x slower
    for a batch of 360 28x28 images). Linux/glibc only; returns whether it applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


def cpu_ticks(stat: str = "/proc/stat") -> tuple[int, int] | None:
    """(all, idle + iowait) CPU time of the whole machine so far, from the kernel's counters; None without them."""
    try:
        with open(stat) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 6 or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:]]
    return sum(ticks), ticks[3] + ticks[4]


def busy_share(first: tuple[int, int], second: tuple[int, int]) -> float | None:
    """The non-idle share of the CPU time between two cpu_ticks readings (None if no time passed)."""
    total = second[0] - first[0]
    if total <= 0:
        return None
    return min(1.0, max(0.0, 1 - (second[1] - first[1]) / total))


def busy_cores(seconds: float = 0.5, stat: str = "/proc/stat") -> float | None:
    """How many cores the machine keeps busy now (busy_share over `seconds`, times the cores); None where the
    kernel has no counters (not Linux). Unlike the load average it does not remember the last minute: a job that
    has just ended does not count."""
    first = cpu_ticks(stat)
    if first is None:
        return None
    time.sleep(seconds)
    second = cpu_ticks(stat)
    share = None if second is None else busy_share(first, second)
    return None if share is None else share * (os.cpu_count() or 1)


def free_cores() -> int:
    """The CPU threads worth using now: torch's default (one per core) less the cores other processes keep busy
    (busy_cores, else the 1-minute load average). On a busy machine one thread is much faster than threads
    fighting for a core."""
    n = torch.get_num_threads()
    if n == 1:
        return 1
    busy = busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):
            return n
    return max(1, min(n, round((os.cpu_count() or n) - busy)))
