"""Entry point of the `cri-net` command: one sub-command per job."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from . import cni, cni_plugin_cmd, network, pods, serve
from .usage import USAGE_EXIT, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cri-net", description="A network hook for Kubernetes container runtimes.",
                                     epilog="Exit codes: 0 ok, 1 failure, 2 usage error.")
    parser.add_argument("--version", action="version", version=f"cri-net {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="subcommand", required=True)
    cni.add_parser(sub)
    cni_plugin_cmd.add_parser(sub)
    network.add_parser(sub)
    pods.add_parser(sub)
    serve.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
