"""Entry point of the `cri-net` command: one sub-command per job."""

from __future__ import annotations

import argparse
import sys

from . import cni, cni_plugin_cmd, network, serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cri-net", description="A network hook for Kubernetes container runtimes.")
    sub = parser.add_subparsers(dest="subcommand", required=True)
    cni.add_parser(sub)
    cni_plugin_cmd.add_parser(sub)
    network.add_parser(sub)
    serve.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .. import log

    log.setup(getattr(args, "log_level", None) or "warning", getattr(args, "log_format", None) or "text")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
