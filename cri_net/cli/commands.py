"""Which module defines which sub-command: the one table main and the parser both read."""

from __future__ import annotations

#: The modules that define the sub-commands, in help order, and the sub-commands each adds.
#: A run loads only the module of its sub-command: `cri-net cni` is a cnitool drop-in, run
#: once per plugin call, and must not pay for the server's and the pods' imports.
COMMAND_MODULES = {
    "cni": ("cni",),
    "cni_plugin_cmd": ("cni-plugin",),
    "network": ("network",),
    "pods": ("pods", "inspect"),
    "serve": ("serve", "config"),
}


def command_of(argv: list[str]) -> str | None:
    """The sub-command `argv` runs, when its first word names one; else None (the full parser
    then reports help, --version and bad input with every sub-command listed)."""
    known = {c for commands in COMMAND_MODULES.values() for c in commands}
    return argv[0] if argv and argv[0] in known else None
