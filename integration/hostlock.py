"""The host-wide lock of the integration suites, taken so that a wait is never silent: a run
queued behind another engineer's (or a benchmark) says what it waits for, on the terminal
even under pytest's capture."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, Callable, TextIO

WAITING = "waiting for the integration host lock"


def terminal_writer(config: Any) -> Callable[[str], None]:
    """Write to /dev/tty when there is one, else through pytest's terminal reporter, else stderr."""
    try:
        tty: TextIO | None = open("/dev/tty", "w")  # noqa: SIM115 - closed after each line
        tty.close()
    except OSError:
        tty = None
    if tty is not None:
        def to_tty(line: str) -> None:
            with open("/dev/tty", "w") as fh:
                fh.write(line + "\n")
        return to_tty
    reporter = config.pluginmanager.get_plugin("terminalreporter") if config is not None else None
    capman = config.pluginmanager.get_plugin("capturemanager") if config is not None else None
    if reporter is not None and capman is not None:
        def to_reporter(line: str) -> None:
            with capman.global_and_fixture_disabled():  # fixture set-up runs under capture
                reporter.write_line(line)
                reporter.flush()  # a pipe is block-buffered: the message must show while we wait
        return to_reporter
    return lambda line: print(line, file=sys.stderr, flush=True)


def holder(path: str) -> str:
    """Who holds the lock, from /proc/locks (best effort: "" when unknown)."""
    try:
        inode = os.stat(path).st_ino
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) > 5 and parts[5].endswith(f":{inode}"):
                    return f"pid {parts[4]}"
    except OSError:
        pass
    return ""


def acquire(fh: TextIO, path: str, say: Callable[[str], None]) -> None:
    """flock(LOCK_EX) on `fh`, announcing a wait before it starts and when it ends."""
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    who = holder(path)
    say(f"cri-net: {WAITING} {path}{f' (held by {who})' if who else ''}: another integration run or "
        "benchmark is using this host; this run starts when it ends")
    start = time.monotonic()
    fcntl.flock(fh, fcntl.LOCK_EX)
    say(f"cri-net: got the integration host lock after {time.monotonic() - start:.0f} s")


#: The lock every host-network run takes: integration sessions and benchmarks alike.
HOST_LOCK = "/run/lock/cri-net-host.lock"
#: Set (to the holder's pid) while a process holds the lock for its children too: a benchmark
#: that run_all starts must not wait for the lock its own parent holds.
HELD_ENV = "CRI_NET_HOST_LOCK_HELD"


@contextlib.contextmanager
def hold(say: Callable[[str], None], path: str = HOST_LOCK, for_children: bool = False) -> Iterator[None]:
    """Hold the host lock (waiting, announced, if another run has it); a no-op when a parent
    holds it for us. `for_children`: the processes we start run under our hold (run_all's
    benchmarks); otherwise a child that asks for the lock waits like anyone else (a second
    test session started by a test)."""
    if os.environ.get(HELD_ENV):
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as fh:
        acquire(fh, path, say)
        if for_children:
            os.environ[HELD_ENV] = str(os.getpid())
        try:
            yield
        finally:
            if for_children:
                os.environ.pop(HELD_ENV, None)
            fcntl.flock(fh, fcntl.LOCK_UN)
