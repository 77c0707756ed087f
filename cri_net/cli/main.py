"""Entry point of the `cri-net` command: one sub-command per job."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__
from .usage import USAGE_EXIT, UsageError

TYPE_CHECKING = False  # `typing` costs a short-lived CLI ~4 ms
if TYPE_CHECKING:
    from typing import Any

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


def _terminal_width() -> int:
    """shutil.get_terminal_size().columns, as argparse sizes help, without importing shutil."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, sized without shutil: argparse makes a formatter for every
    add_argument and imports shutil (~3 ms: it loads the compression modules) to size it."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _terminal_width() - 2 if width is None else width)


class Parser(argparse.ArgumentParser):
    """cri-net's parsers (sub-commands' too: add_subparsers makes them of the parent's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `command` (a sub-command name), only that sub-command
    (the same parser for it: the top level has no options a sub-command reads)."""
    parser = Parser(prog="cri-net", description="A network hook for Kubernetes container runtimes.",
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


_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def _setup_logging(level: str, fmt: str) -> None:
    from .. import log

    log.setup(level, fmt)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    level, fmt = getattr(args, "log_level", None) or "warning", getattr(args, "log_format", None) or "text"
    if getattr(args, "logs_only_through_libcni", False):
        # set up when libcni first has a record at `level`: most runs never import logging
        from ..libcni.logfields import configure_on_first_use

        configure_on_first_use(lambda: _setup_logging(level, fmt), _LEVELS[level])
    else:
        _setup_logging(level, fmt)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:  # our own checks of the command line: exit 2 like argparse's
        command = " ".join(a for a in (args.subcommand, getattr(args, "network_command", None)) if a)
        print(f"cri-net {command}: {exc}", file=sys.stderr)
        return USAGE_EXIT


#: Sub-commands whose process has nothing to release once main() returns: no server, no
#: threads, no atexit work (their files are closed and their children reaped by then).
_NOTHING_TO_TEAR_DOWN = {"cni"}


def console() -> None:
    """The `cri-net` console script. A `cri-net cni` call, once main() has returned and its
    output is flushed, ends with os._exit: the interpreter's teardown (freeing every module
    and object) costs a process about to exit ~5 ms, an eighth of the budget of a cnitool
    drop-in. Any other sub-command, or an exception, exits the ordinary way."""
    argv = sys.argv[1:]
    rc = main(argv)
    if _command_of(argv) in _NOTHING_TO_TEAR_DOWN:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(rc)  # the ordinary exit reports a stdout it cannot write, as Python does
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    console()
