"""Is a path a live network namespace? Existence alone is not enough.

A netns pinned by a bind mount can be unmounted while its file stays behind (an empty file on
the host filesystem). Plugins given such a path fail every DEL ("unknown FS magic"), so the
attachment could never be removed. A live netns is a file on nsfs: the same filesystem as
this process's own /proc/self/ns/net.
"""

from __future__ import annotations

import os

_NSFS_DEV: int | None = None


def _nsfs_dev() -> int:
    global _NSFS_DEV
    if _NSFS_DEV is None:
        _NSFS_DEV = os.stat("/proc/self/ns/net").st_dev
    return _NSFS_DEV


def is_netns(path: str) -> bool:
    """True if `path` is a namespace file (nsfs) that can be handed to a plugin."""
    if not path:
        return False
    try:
        return os.stat(path).st_dev == _nsfs_dev()
    except OSError:
        return False


def live_netns(path: str) -> str:
    """`path` if it is a live netns, else "" (how a DEL is told the netns is gone)."""
    return path if is_netns(path) else ""
