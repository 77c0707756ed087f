"""`cri-net serve` and `cri-net config show`."""

from __future__ import annotations

import argparse
import json
import sys

from .flags import add_common_flags


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="serve the CRI RuntimeService (runtime.v1) on a unix socket")
    _serve_flags(p)
    p.add_argument("--install-default-network", action="store_true",
                   help="if the conf dir is empty, write the cri-net-default bridge network (10.88.0.0/16)")
    p.set_defaults(func=run_serve)
    c = sub.add_parser("config", help="show the effective configuration")
    csub = c.add_subparsers(dest="config_command", required=True)
    show = csub.add_parser("show", help="print the effective config (defaults < file < flags) as JSON",
                           description="cni_listen is shown as the socket path it resolves to (\"\" = off). "
                                       "conf_poll_interval: seconds between conf-dir checks when inotify is "
                                       "unavailable (default 5).")
    _serve_flags(show)
    show.set_defaults(func=run_show)


def _serve_flags(p: argparse.ArgumentParser) -> None:
    add_common_flags(p)
    p.add_argument("--listen", help="unix socket, unix:///path or /path (default /run/cri-net/cri-net.sock)")
    p.add_argument("--cni-listen", dest="cni_listen",
                   help="socket where cri-net-cni hands calls over (default: cni.sock beside --listen; '' = off)")
    p.add_argument("--netns-dir", dest="netns_dir", help="where pod netns are pinned (default /run/cri-net/netns)")
    p.add_argument("--default-network", dest="default_network", help="default network name (default: first file)")
    p.add_argument("--ip-pref", dest="ip_pref", choices=["ipv4", "ipv6", "cni"], help="primary pod IP family")
    p.add_argument("--metrics-listen", dest="metrics_listen", metavar="HOST:PORT",
                   help="serve /metrics (Prometheus), /healthz and /readyz over HTTP here (default: off)")
    p.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"],
                   help="least severe level logged (default info)")
    p.add_argument("--log-format", dest="log_format", choices=["text", "json"],
                   help="key=value text or one JSON object per line; both with ISO-8601 UTC times (default text)")


def run_show(args: argparse.Namespace) -> int:
    from .. import config

    try:
        settings = config.from_args(args)
    except config.ConfigFileError as exc:
        print(f"cri-net config show: {exc}", file=sys.stderr)
        return 1
    from ..server.server import ServeError, cni_socket_path

    shown = settings.model_dump()
    try:
        shown["cni_listen"] = cni_socket_path(settings) or ""  # the path it resolves to, not null
    except ServeError as exc:
        print(f"cri-net config show: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(shown, indent=2))
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from .. import config, log
    from ..server.health import HealthError
    from ..server.server import Server, ServeError
    from .privileges import needs_root_message
    from .stop_signals import StopSignals

    try:
        settings = config.from_args(args)
    except config.ConfigFileError as exc:
        print(f"cri-net serve: {exc}", file=sys.stderr)
        return 1
    log.setup(settings.log_level, settings.log_format)

    # Handlers first: a SIGTERM that arrives as soon as the sockets accept must stop the server.
    stop = StopSignals()
    stop.install()
    try:
        server = Server(settings)
        if args.install_default_network:
            installed = server.manager.adaptor.install_default_network()
            if installed:
                print(f"cri-net: conf dir was empty; installed the default network in {installed}", file=sys.stderr)
        server.start()
    except PermissionError as exc:
        print(f"cri-net serve: {needs_root_message(exc)}", file=sys.stderr)
        return 1
    except (ServeError, HealthError, OSError) as exc:
        print(f"cri-net serve: {exc}", file=sys.stderr)
        return 1
    path = server.path
    print(f"cri-net: serving CRI on unix://{path}\n"
          f"  try: crictl --runtime-endpoint unix://{path} --image-endpoint unix://{path} info", file=sys.stderr)
    stop.wait()
    server.observability.readiness.drain()  # /readyz says no before the drain starts
    server.stop()
    return 0
