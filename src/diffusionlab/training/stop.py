"""Stopping a run cleanly: the first SIGINT/SIGTERM asks for a stop at the next step boundary, where the state is
exact and is saved; a second one stops at once, without saving (the last checkpoint stays)."""

from __future__ import annotations

import signal
import threading


class StopAtBoundary(KeyboardInterrupt):
    """Raised by the loop itself between two steps: the state there is exact, so it is saved."""


class StopRequest:
    """Installs the handlers for the length of a run (main thread only) and records the first signal."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def stop_at_boundary(self) -> None:
        """Called by the loop between two steps: raise StopAtBoundary there if a stop was asked for."""
        if self.signum is not None:
            raise StopAtBoundary

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
