"""Usage errors of cri-net's own checks, which exit 2 like argparse's (failures exit 1), and
the one rule for durations given on a command line or in a config file."""

from __future__ import annotations

USAGE_EXIT = 2
FAILURE_EXIT = 1

#: the longest duration (timeout, interval) cri-net takes, in seconds: one day
MAX_SECONDS = 86400.0


class UsageError(Exception):
    """The command line is wrong (not the system): the message says which argument and why."""


def seconds_problem(value: float, minimum: float = 0.0, zero_ok: bool = False) -> str | None:
    """Why `value` is not a usable duration in seconds (None: it is): it must be finite, above
    `minimum` (or 0 when `zero_ok`) and at most MAX_SECONDS. Infinity, NaN or 1e20 would
    overflow a deadline; 0 or less would time out every plugin."""
    if value == 0 and zero_ok:
        return None
    if not minimum < value <= MAX_SECONDS:  # also false for NaN
        low = f"greater than {minimum:g}" + (" (or 0)" if zero_ok else "")
        return f"must be a number of seconds {low} and at most {MAX_SECONDS:g} (1 day), got {value!r}"
    return None


def seconds_arg(text: str) -> float:
    """argparse `type=` of a timeout flag: a usage error naming the flag for a bad value."""
    import argparse  # only the argparse path calls this

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    problem = seconds_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value
