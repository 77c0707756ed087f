"""`cri-net network ...`: native bridge networks in the style of `docker network` / `isula network`."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

from typing import Any

from .flags import add_common_flags


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("network", help="manage native bridge networks and attach network namespaces to them")
    nsub = p.add_subparsers(dest="network_command", required=True)

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        c = nsub.add_parser(name, help=help_text)
        add_common_flags(c)
        return c

    c = cmd("create", "create a bridge network")
    c.add_argument("--driver", default="bridge")
    c.add_argument("--subnet")
    c.add_argument("--gateway")
    c.add_argument("--internal", action="store_true", help="no default route, no masquerading")
    c.add_argument("name", nargs="?", default="")
    c = cmd("ls", "list networks")
    c.add_argument("-q", "--quiet", action="store_true", help="names only")
    c.add_argument("--filter", action="append", default=[], help="name=X or plugin=Y (exact or regex)")
    c = cmd("inspect", "print a network's config list")
    c.add_argument("name", nargs="+")
    c = cmd("rm", "remove networks (refused while containers are attached)")
    c.add_argument("name", nargs="+")
    for name, text in (("connect", "attach a netns to networks (eth0, eth1, ... in order)"),
                       ("disconnect", "detach a netns from every network it is attached to")):
        c = cmd(name, text)
        c.add_argument("--container-id", help="default: derived from the netns path")
        if name == "connect":
            c.add_argument("-p", "--publish", action="append", default=[],
                           help="HOSTPORT:CONTAINERPORT[/PROTO], to the first network")
        c.add_argument("name", help="comma-separated network names" if name == "connect" else "ignored (all)",
                       nargs=None if name == "connect" else "?")
        c.add_argument("netns")
    p.set_defaults(func=run)


def _container_id(args: argparse.Namespace) -> str:
    if args.container_id:
        return str(args.container_id)
    return "crinet-" + hashlib.sha256(os.path.abspath(args.netns).encode()).hexdigest()[:32]


def _publish(specs: list[str]) -> list[dict[str, object]]:
    from ..network import NetworkApiError

    out = []
    for spec in specs:
        ports, _, proto = spec.partition("/")
        host, sep, ctr = ports.partition(":")
        if not sep or not host.isdigit() or not ctr.isdigit():
            raise NetworkApiError(f"--publish {spec!r}: expected HOSTPORT:CONTAINERPORT[/tcp|udp|sctp]")
        out.append({"host_port": int(host), "container_port": int(ctr), "protocol": proto or "tcp"})
    return out


def run(args: argparse.Namespace) -> int:
    from .. import config
    from ..libcni import CNIError
    from ..network import NetworkApiError, NetworkModule

    try:
        settings = config.from_args(args)
        module = NetworkModule.init(settings)
        return _dispatch(module, args)
    except (NetworkApiError, CNIError, config.ConfigFileError, OSError) as exc:
        print(f"cri-net network {args.network_command}: {exc}", file=sys.stderr)
        return 1


def _dispatch(module: Any, args: argparse.Namespace) -> int:
    from ..network import NetworkApiConf, NetworkApiError, NetworkCreateRequest

    kind = "native"
    command = args.network_command
    if command == "create":
        info = module.conf_create(kind, NetworkCreateRequest(name=args.name, driver=args.driver, subnet=args.subnet,
                                                             gateway=args.gateway, internal=args.internal))
        print(info.name)
    elif command == "ls":
        filters: dict[str, list[str]] = {}
        for f in args.filter:
            key, sep, value = f.partition("=")
            if not sep:
                raise NetworkApiError(f"--filter {f!r}: expected KEY=VALUE")
            filters.setdefault(key, []).append(value)
        rows = module.conf_list(kind, filters)
        for skipped in module.adaptor(kind).operator.networks.skipped:  # reported, never fatal
            reason = skipped.reason.removeprefix(skipped.path + ": ")
            print(f"cri-net network ls: skipped {skipped.path}: {reason}", file=sys.stderr)
        if args.quiet:
            print("\n".join(r.name for r in rows))
        else:
            print(f"{'NAME':<24} {'VERSION':<8} PLUGIN")
            for r in rows:
                print(f"{r.name:<24} {r.version:<8} {','.join(r.plugins)}")
    elif command == "inspect":
        docs = [json.loads(module.conf_inspect(kind, name)) for name in args.name]
        print(json.dumps(docs, indent=4))
    elif command == "rm":
        failed = 0
        for name in args.name:
            try:
                print(module.conf_rm(kind, name))
            except NetworkApiError as exc:
                print(f"cri-net network rm: {exc}", file=sys.stderr)
                failed = 1
        return failed
    elif command == "connect":
        conf = NetworkApiConf(pod_id=_container_id(args), netns_path=os.path.abspath(args.netns),
                              networks=[n for n in args.name.split(",") if n], port_mappings=_publish(args.publish))
        results = module.attach(conf, kind)
        print(json.dumps([r.model_dump() for r in results], indent=4))
    elif command == "disconnect":
        module.detach(NetworkApiConf(pod_id=_container_id(args), netns_path=os.path.abspath(args.netns)), kind)
    return 0
