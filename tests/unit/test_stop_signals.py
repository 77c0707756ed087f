"""`cri-net serve`'s stop signals: every SIGTERM stops the wait, whenever it lands.

Each test runs a real child interpreter: a handler that deadlocks its main thread can only be
seen from outside, as a child that never ends.
"""
from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A child that waits for stop signals round after round and says when it has taken each one.
# It is single-threaded, as `cri-net serve`'s main thread is busy only with this loop: a signal
# from outside then interrupts whatever bytecode the loop is at (a tiny poll interval makes
# that the loop's own bookkeeping as often as possible). The old handler,
# `threading.Event.set()`, deadlocked here within a few hundred signals: it ran inside
# `Event.wait`, which held the event's own lock.
WAIT_ROUNDS = textwrap.dedent("""
    import os, signal
    from cri_net.cli.stop_signals import StopSignals

    stop = StopSignals()
    stop.install()
    os.write(1, b"ready\\n")
    while True:
        assert stop.wait(poll=0.0005) == signal.SIGTERM
        stop.received.clear()
        os.write(1, b"taken\\n")
""")


def test_a_signal_at_any_point_of_the_wait_stops_it() -> None:
    rounds = 3000
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", WAIT_ROUNDS], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == b"ready\n"
        taken = 0
        for _ in range(rounds):
            time.sleep(random.random() * 0.002)
            proc.send_signal(signal.SIGTERM)
            ready, _, _ = select.select([proc.stdout], [], [], 5.0)
            assert ready, f"the wait did not end within 5 s of SIGTERM number {taken + 1} (main thread stuck)"
            assert proc.stdout.readline() == b"taken\n", proc.stderr.read() if proc.stderr else b""
            taken += 1
    finally:
        proc.kill()
        proc.wait()
    assert taken == rounds


def _ignore_and_block_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


#: The child: the set-up its argv names, then StopSignals; prints "ready", then the signal's name.
WAIT_ONCE = textwrap.dedent("""
    import signal, sys
    if sys.argv[1] == "inherited-sigterm":
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN, "the set-up did not take"
        assert signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, set()), "the set-up did not take"
    elif sys.argv[1] == "nohup":
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup leaves the exec'd program
    from cri_net.cli.stop_signals import StopSignals
    stop = StopSignals()
    stop.install()
    print("ready", flush=True)
    print(signal.Signals(stop.wait(poll=0.01)).name, flush=True)
""")


def wait_once(setup: str, *signals: signal.Signals, preexec_fn: Callable[[], None] | None = None) -> str:
    """Start the child, send `signals` 0.3 s apart (SIGTERM if it still runs after them), and
    return what it printed once it ended (exit 0 asserted)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", WAIT_ONCE, setup], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=preexec_fn)  # noqa: PLW1509
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.stderr else ""
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.3)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return out


def test_an_inherited_ignored_and_blocked_sigterm_still_stops_it() -> None:
    """Both survive exec: a launcher that ignored or blocked SIGTERM must not make the server
    unkillable but by SIGKILL."""
    assert wait_once("inherited-sigterm", signal.SIGTERM, preexec_fn=_ignore_and_block_sigterm) == "SIGTERM\n"


def test_sighup_stops_when_the_terminal_closes() -> None:
    assert wait_once("plain", signal.SIGHUP) == "SIGHUP\n"


def test_sighup_is_survived_under_nohup() -> None:
    assert wait_once("nohup", signal.SIGHUP) == "SIGTERM\n"  # still running after SIGHUP: ended by SIGTERM
