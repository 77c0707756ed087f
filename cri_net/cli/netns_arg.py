"""A netns argument: a path, or a name under the usual netns dirs (as `ip netns` names them)."""

from __future__ import annotations

import os
from typing import Iterable

from .usage import UsageError

NETNS_DIRS = ("/run/netns", "/var/run/netns", "/run/cri-net/netns")


def resolve_netns(arg: str, extra_dirs: Iterable[str] = (), must_exist: bool = True) -> str:
    """The absolute path for `arg`. A bare name is looked up in the netns dirs (never the cwd);
    anything with a slash is a path. Raises UsageError naming the dirs searched."""
    if not arg:
        raise UsageError("NETNS: empty; give a netns name (as in `ip netns list`) or a path")
    if "/" in arg:
        path = os.path.abspath(arg)
        if must_exist and not os.path.exists(path):
            raise UsageError(f"NETNS {arg!r}: no such file")
        return path
    if arg in (".", ".."):
        raise UsageError(f"NETNS {arg!r}: not a netns name")
    dirs = list(dict.fromkeys([*NETNS_DIRS, *extra_dirs]))
    for d in dirs:
        candidate = os.path.join(d, arg)
        if os.path.exists(candidate):
            return candidate
    if not must_exist:
        return os.path.join(dirs[0], arg)
    raise UsageError(f"NETNS {arg!r}: no network namespace of that name in {', '.join(dirs)} (or give a path)")
