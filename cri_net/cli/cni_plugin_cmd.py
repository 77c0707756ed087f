"""`cri-net cni-plugin install`: put the `cri-net` launcher into a runtime's CNI bin dir."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cni-plugin", help="set up cri-net-cni for a runtime such as containerd")
    psub = p.add_subparsers(dest="cni_plugin_command", required=True)
    inst = psub.add_parser("install", help="write the `cri-net` plugin launcher into a CNI bin dir")
    inst.add_argument("--bin-dir", default="/opt/cni/bin", help="the runtime's CNI bin dir (default /opt/cni/bin)")
    inst.add_argument("--name", default="cri-net", help="file name, the conflist's plugin type (default cri-net)")
    inst.add_argument("--python-only", action="store_true",
                      help="do not compile the native launcher even if a C compiler is present")
    inst.set_defaults(func=run_install)


def run_install(args: argparse.Namespace) -> int:
    from ..plugin.launcher import ShimBuildError, install

    try:
        path = install(args.bin_dir, args.name, native=not args.python_only)
    except OSError as exc:
        print(f"cri-net cni-plugin install: {args.bin_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except ShimBuildError as exc:
        print(f"cri-net cni-plugin install: cannot build the native launcher ({exc}); "
              "use --python-only", file=sys.stderr)
        return 1
    print(path)
    return 0
