"""SIGTERM, SIGINT and SIGHUP as a stop request that `cri-net serve`'s main thread waits for.

The handler takes no lock. Python runs a handler between two bytecodes of the main thread,
which may be inside `threading.Event.wait` holding the event's own (non-reentrant) lock: a
handler that called `Event.set()` there deadlocked the main thread for good, and that SIGTERM
never stopped the server (tests/unit/test_stop_signals.py hung it after 56 to 223 signals).
Appending to a list is one atomic step with no Python-level lock.
"""
from __future__ import annotations

import signal
import time
from collections.abc import Iterable
from types import FrameType

#: how often the main thread looks: a process-directed signal may land on another thread
#: (gRPC's, the GC's), and Python runs the handler only when the main thread next runs bytecode
POLL_SECONDS = 0.2


class StopSignals:
    """Catch the stop signals; `wait()` returns the first one received.

    SIGHUP (the terminal running `make run` closed) drains like SIGTERM instead of killing
    the server mid-call, unless it was ignored when we started: `nohup` asked to survive it."""

    def __init__(self, signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)) -> None:
        self.signals = tuple(signals)
        self.received: list[int] = []

    def install(self) -> None:
        """Catch and unblock the signals, whatever disposition and mask this process inherited
        (an ignored SIGTERM and a blocked one both survive exec); an ignored SIGHUP stays ignored."""
        caught = [sig for sig in self.signals
                  if not (sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN)]
        for sig in caught:
            signal.signal(sig, self._on_signal)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(caught))

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)  # no lock: see the module docstring

    def wait(self, poll: float = POLL_SECONDS) -> int:
        """Block until a stop signal has arrived; return its number."""
        while not self.received:
            time.sleep(poll)
        return self.received[0]
