"""Entry point of the `cri-net` command: one sub-command per job."""

from __future__ import annotations

import os
import sys

from .commands import command_of
from .usage import USAGE_EXIT, UsageError

TYPE_CHECKING = False  # `typing` costs a short-lived CLI ~4 ms
if TYPE_CHECKING:
    from typing import Any

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def _setup_logging(level: str, fmt: str) -> None:
    from .. import log

    log.setup(level, fmt)


def parse(argv: list[str]) -> Any:
    """The parsed command line: a plain `cri-net cni` call without argparse (it is run once
    per plugin call, and argparse costs it ~10 ms), anything else with the full parser."""
    command = command_of(argv)
    if command == "cni":
        from .cni import parse_fast

        args = parse_fast(argv[1:])
        if args is not None:
            return args
        if argv[1:2] == ["help"]:  # cnitool's (cobra's) `help`: the usage on stdout, exit 0
            argv = ["cni", "--help"]
    from .parser import build_parser

    return build_parser(command).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
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
    if command_of(argv) in _NOTHING_TO_TEAR_DOWN:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(rc)  # the ordinary exit reports a stdout it cannot write, as Python does
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    console()
