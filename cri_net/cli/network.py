"""`cri-net network ...`: native bridge networks in the style of `docker network` / `isula network`."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

from typing import Any

from .flags import add_common_flags
from .netns_arg import resolve_netns
from .output import add_output_flag, print_json, print_table
from .usage import UsageError

#: which adaptor's networks are listed and under which owner name
KINDS = ("native", "cri")
FILTER_KEYS = ("name", "plugin", "owner")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("network", help="manage native bridge networks and attach network namespaces to them",
                       description="NETNS is a path, or a name under /run/netns, /var/run/netns, /run/cri-net/netns "
                                   "or the netns_dir of the --config file (there is no --netns-dir flag).")
    nsub = p.add_subparsers(dest="network_command", required=True)

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        c = nsub.add_parser(name, help=help_text)
        add_common_flags(c)
        return c

    c = cmd("create", "create a bridge network")
    c.add_argument("--driver", default="bridge", help="network driver (only bridge; default %(default)s)")
    c.add_argument("--subnet", help="IPv4 or IPv6 CIDR (default: a free /24 in 10.0.0.0/8)")
    c.add_argument("--gateway", help="gateway address in the subnet (default: its first host)")
    c.add_argument("--internal", action="store_true", help="no default route, no masquerading")
    c.add_argument("name", nargs="?", default="", help="network name (default: generated)")
    c = cmd("ls", "list every network in the conf dir, its owner (native/cri) and attached containers")
    c.add_argument("-q", "--quiet", action="store_true", help="names only")
    c.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="name=X, plugin=Y or owner=native|cri (exact or regex); repeatable")
    add_output_flag(c)
    c = cmd("inspect", "print networks' config lists, owners and attached containers")
    c.add_argument("name", nargs="+", help="network names")
    add_output_flag(c, default="json")
    c = cmd("rm", "remove native networks (refused while containers are attached)")
    c.add_argument("name", nargs="+", help="network names")
    c = cmd("connect", "attach a netns to networks (eth0, eth1, ... in order)")
    c.add_argument("--container-id", help="default: derived from the netns path")
    c.add_argument("-p", "--publish", action="append", default=[],
                   help="HOSTPORT:CONTAINERPORT[/PROTO], to the first network")
    c.add_argument("name", help="comma-separated network names")
    c.add_argument("netns", help="netns path or name")
    add_output_flag(c, default="json")
    c = cmd("disconnect", "detach a netns from one network (or from all of them when NAME is omitted)")
    c.add_argument("--container-id", help="default: derived from the netns path")
    c.add_argument("name", nargs="?", help="the network to leave (default: every network)")
    c.add_argument("netns", help="netns path or name (it may be gone already)")
    p.set_defaults(func=run)


def _container_id(args: argparse.Namespace, netns: str) -> str:
    if args.container_id:
        return str(args.container_id)
    return "crinet-" + hashlib.sha256(netns.encode()).hexdigest()[:32]


def _publish(specs: list[str]) -> list[dict[str, object]]:
    from ..network import NetworkApiError

    out = []
    for spec in specs:
        ports, _, proto = spec.partition("/")
        host, sep, ctr = ports.partition(":")
        if not sep or not host.isdigit() or not ctr.isdigit():
            raise UsageError(f"--publish {spec!r}: expected HOSTPORT:CONTAINERPORT[/tcp|udp|sctp]")
        out.append({"host_port": int(host), "container_port": int(ctr), "protocol": proto or "tcp"})
    return out


def run(args: argparse.Namespace) -> int:
    from .. import config
    from ..libcni import CNIError
    from ..network import NetworkApiError, NetworkModule

    if os.geteuid() != 0:
        print(f"cri-net network {args.network_command}: needs root: the networks, the CNI cache and the "
              f"namespaces it reads and changes are root's (running as uid {os.geteuid()})", file=sys.stderr)
        return 1
    try:
        settings = config.from_args(args)
        module = NetworkModule.init(settings)
        try:
            return _dispatch(module, settings, args)
        finally:
            module.exit()
    except (NetworkApiError, CNIError, config.ConfigFileError, OSError) as exc:
        print(f"cri-net network {args.network_command}: {exc}", file=sys.stderr)
        return 1


def _filters(specs: list[str]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for f in specs:
        key, sep, value = f.partition("=")
        if not sep or key not in FILTER_KEYS:
            raise UsageError(f"--filter {f!r}: expected KEY=VALUE with KEY one of {', '.join(FILTER_KEYS)}")
        filters.setdefault(key, []).append(value)
    return filters


def network_rows(module: Any, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """Every network of the conf dir: name, owner, version, plugins, file, attached containers."""
    from ..network.filters import matches

    filters = dict(filters or {})
    owners = filters.pop("owner", None)
    rows = []
    for kind in KINDS:
        if owners and not any(matches(o, kind) for o in owners):
            continue
        adaptor = module.adaptor(kind)
        attached = adaptor.attachments()
        for info in adaptor.conf_list(filters):
            rows.append({"name": info.name, "owner": kind, "version": info.version, "plugins": info.plugins,
                         "file": info.file, "containers": attached.get(info.name, [])})
    return sorted(rows, key=lambda r: r["name"])


def _dispatch(module: Any, settings: Any, args: argparse.Namespace) -> int:
    from ..network import NetworkApiConf, NetworkApiError, NetworkCreateRequest

    kind = "native"
    command = args.network_command
    if command == "create":
        info = module.conf_create(kind, NetworkCreateRequest(name=args.name, driver=args.driver, subnet=args.subnet,
                                                             gateway=args.gateway, internal=args.internal))
        print(info.name)
    elif command == "ls":
        rows = network_rows(module, _filters(args.filter))
        for adaptor_kind in ("cri", "native"):  # skipped files are reported, never fatal
            for path, reason in module.adaptor(adaptor_kind).state().skipped:
                print(f"cri-net network ls: skipped {path}: {reason.removeprefix(path + ': ')}", file=sys.stderr)
        if args.quiet:
            for r in rows:
                print(r["name"])
        elif args.output == "json":
            print_json(rows)
        else:
            print_table(("NAME", "OWNER", "VERSION", "PLUGINS", "CONTAINERS"),
                        [(r["name"], r["owner"], r["version"], ",".join(r["plugins"]),
                          ",".join(c[:12] for c in r["containers"]) or "-") for r in rows])
    elif command == "inspect":
        rows = {r["name"]: r for r in network_rows(module)}
        missing = [n for n in args.name if n not in rows]
        if missing:
            raise NetworkApiError(f"no such network: {', '.join(missing)} (in {settings.conf_dir})")
        docs = [{**rows[n], "config": json.loads(module.conf_inspect(rows[n]["owner"], n))} for n in args.name]
        if args.output == "json":
            print_json(docs)
        else:
            print_table(("NAME", "OWNER", "VERSION", "PLUGINS", "FILE", "CONTAINERS"),
                        [(d["name"], d["owner"], d["version"], ",".join(d["plugins"]), d["file"],
                          ",".join(d["containers"]) or "-") for d in docs])
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
        netns = resolve_netns(args.netns, [settings.netns_dir])
        conf = NetworkApiConf(pod_id=_container_id(args, netns), netns_path=netns,
                              networks=[n for n in args.name.split(",") if n], port_mappings=_publish(args.publish))
        results = module.attach(conf, kind)
        if args.output == "json":
            print_json([r.model_dump() for r in results])
        else:
            print_table(("NETWORK", "INTERFACE", "IPS", "MAC"),
                        [(r.name, r.interface, ",".join(r.ips), r.mac) for r in results])
    elif command == "disconnect":
        netns = resolve_netns(args.netns, [settings.netns_dir], must_exist=False)
        conf = NetworkApiConf(pod_id=_container_id(args, netns), netns_path=netns)
        if args.name:
            module.adaptor(kind).detach_network(conf, args.name)
        else:
            module.detach(conf, kind)
    return 0
