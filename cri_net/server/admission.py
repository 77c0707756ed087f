"""Admission for the RPCs that run plugins, so that cheap RPCs never wait behind them.

gRPC's sync server runs every RPC on one thread pool. A plugin exec can take up to the plugin
timeout, so without a bound a burst of pod starts on a slow plugin would hold every worker and
Version, Status and List would queue behind them. Each `Admission` lets `running` calls in
at once and `waiting` more wait (never longer than the caller's deadline); the rest are
refused at once with `Busy`. The gRPC pool is sized so the admitted and waiting calls can
never take all of its workers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Busy(Exception):
    """Refused: too many calls running and waiting (`full`), or no slot within the wait."""

    def __init__(self, msg: str, full: bool) -> None:
        super().__init__(msg)
        self.full = full


class Admission:
    def __init__(self, name: str, running: int, waiting: int) -> None:
        self.name, self.running, self.waiting = name, running, waiting
        self._slots = threading.BoundedSemaphore(running)
        self._lock = threading.Lock()
        self._waiters = 0

    @property
    def capacity(self) -> int:
        """Threads this admission can ever hold: running plus waiting."""
        return self.running + self.waiting

    @contextmanager
    def slot(self, wait: float) -> Iterator[None]:
        """Run the body in a slot; wait at most `wait` seconds for one."""
        if not self._slots.acquire(blocking=False):
            with self._lock:
                if self._waiters >= self.waiting:
                    raise Busy(f"{self.name}: {self.running} calls running and {self.waiting} waiting; "
                               "try again later", full=True)
                self._waiters += 1
            try:
                got = self._slots.acquire(timeout=max(0.0, wait))
            finally:
                with self._lock:
                    self._waiters -= 1
            if not got:
                raise Busy(f"{self.name}: no free slot within {wait:.1f} s ({self.running} calls running)",
                           full=False)
        try:
            yield
        finally:
            self._slots.release()
