"""Entry point of the `cri-net` command: one sub-command per job."""

from __future__ import annotations

import argparse
import sys

from . import cni, network


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cri-net", description="A network hook for Kubernetes container runtimes.")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    sub = parser.add_subparsers(dest="subcommand", required=True)
    cni.add_parser(sub)
    network.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .. import log

    log.setup(args.log_level, args.log_format)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
