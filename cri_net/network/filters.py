"""How a listing filter value matches: the same rule for the CLI and the adaptors' listings."""

from __future__ import annotations

import re


def matches(pattern: str, value: str) -> bool:
    """A filter value matches exactly or as a full regular expression (a bad one matches nothing)."""
    if pattern == value:
        return True
    try:
        return re.fullmatch(pattern, value) is not None
    except re.error:
        return False
