"""Clear messages for commands that need root, instead of a bare `Permission denied`."""

from __future__ import annotations

import os


def needs_root_message(exc: OSError) -> str:
    """Name the path that was refused and say that the command needs root."""
    where = exc.filename or "a host resource"
    who = "" if os.geteuid() == 0 else f" (running as uid {os.geteuid()})"
    return (f"{where}: {exc.strerror or 'permission denied'}: this command needs root{who}: it manages network "
            "namespaces, links, iptables rules and cri-net's state and socket directories")
