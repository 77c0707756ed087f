"""Usage errors of cri-net's own checks, which exit 2 like argparse's (failures exit 1)."""

from __future__ import annotations

USAGE_EXIT = 2
FAILURE_EXIT = 1


class UsageError(Exception):
    """The command line is wrong (not the system): the message says which argument and why."""
