"""One way to wait in a test: poll a predicate until it holds or a deadline passes, and say
what was awaited when it never came (a test must never pass by sleeping past a condition)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(pred: Callable[[], T], timeout: float = 10.0, what: str = "condition", step: float = 0.02) -> T:
    """The first truthy value of `pred()`; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)


def wait_for_path(path: Path, timeout: float = 20.0) -> None:
    wait_for(path.exists, timeout, f"{path} to appear", step=0.01)


def eventually(pred: Callable[[], Any], timeout: float = 5.0, step: float = 0.02) -> bool:
    """Whether `pred()` became true within `timeout` s (for tests asserting it must, or must not)."""
    try:
        wait_for(pred, timeout, step=step)
        return True
    except AssertionError:
        return bool(pred())
