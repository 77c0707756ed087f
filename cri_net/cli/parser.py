"""The argparse command line. Imported only when a run needs it: argparse, with gettext
looking for translations on disk at every message, costs a short-lived command ~10 ms, and
a well-formed `cri-net cni` call is parsed without it (`cni.parse_fast`)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__
from .commands import COMMAND_MODULES

TYPE_CHECKING = False  # `typing` costs a short-lived CLI ~4 ms
if TYPE_CHECKING:
    from typing import Any


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

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        """argparse drops an option's value of exactly "--" (`--cache-dir=--`, `-i--`) and sets
        the option to [], which a command then trips over: a usage error instead."""
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            self.error(f"argument {'/'.join(action.option_strings)}: expected one argument, not '--'")
        return super()._get_values(action, arg_strings)


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
