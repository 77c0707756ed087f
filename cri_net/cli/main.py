"""Entry point of the `cri-net` command: one sub-command per job."""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from .usage import USAGE_EXIT, UsageError

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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `command` (a sub-command name), only that sub-command
    (the same parser for it: the top level has no options a sub-command reads)."""
    parser = argparse.ArgumentParser(prog="cri-net", description="A network hook for Kubernetes container runtimes.",
                                     epilog="Exit codes: 0 ok, 1 failure, 2 usage error.")
    parser.add_argument("--version", action="version", version=f"cri-net {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="subcommand", required=True)
    for module, commands in COMMAND_MODULES.items():
        if command is None or command in commands:
            importlib.import_module(f".{module}", __package__).add_parser(sub)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The sub-command `argv` runs, when its first word names one; else None (the full parser
    then reports help, --version and bad input with every sub-command listed)."""
    known = {c for commands in COMMAND_MODULES.values() for c in commands}
    return argv[0] if argv and argv[0] in known else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    from .. import log

    log.setup(getattr(args, "log_level", None) or "warning", getattr(args, "log_format", None) or "text")
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:  # our own checks of the command line: exit 2 like argparse's
        command = " ".join(a for a in (args.subcommand, getattr(args, "network_command", None)) if a)
        print(f"cri-net {command}: {exc}", file=sys.stderr)
        return USAGE_EXIT


if __name__ == "__main__":
    sys.exit(main())
