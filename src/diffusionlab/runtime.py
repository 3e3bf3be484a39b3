"""Process-wide CPU settings: glibc's allocator and the number of threads worth using."""

from __future__ import annotations

import os
import sys

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


def free_cores() -> int:
    """The CPU threads worth using now: torch's default (one per core) less the cores other processes keep busy
    (the 1-minute load average). On a busy machine one thread is much faster than threads fighting for a core."""
    n = torch.get_num_threads()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return n
    return max(1, min(n, round((os.cpu_count() or n) - load)))
