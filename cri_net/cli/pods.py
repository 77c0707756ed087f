"""`cri-net pods` and `cri-net inspect POD`: crictl's `pods` and `inspectp` for a node without
crictl, over the CRI socket of a running `cri-net serve`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .output import add_output_flag, print_json, print_table
from .usage import UsageError, seconds_arg

STATES = {"ready": 0, "notready": 1}  # runtime.v1 PodSandboxState values


def _endpoint_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="config file whose `listen` is used (default /etc/cri-net/config.toml if present)")
    p.add_argument("--listen", "-r", "--runtime-endpoint", dest="listen",
                   help="CRI socket of cri-net serve (default: the config's listen, /run/cri-net/cri-net.sock)")
    p.add_argument("--timeout", type=seconds_arg, default=10.0, help="seconds to wait for each call (default %(default)s)")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("pods", help="list pod sandboxes of a running cri-net serve, with their IPs")
    _endpoint_flags(p)
    p.add_argument("-q", "--quiet", action="store_true", help="pod ids only")
    p.add_argument("--state", choices=sorted(STATES), help="only pods in this state")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="only pods with this label; repeatable")
    p.add_argument("--name", default="", help="only pods whose name contains this")
    add_output_flag(p)
    p.set_defaults(func=run_pods)
    i = sub.add_parser("inspect", help="show one pod sandbox: state, IPs, netns, networks and CNI results")
    _endpoint_flags(i)
    i.add_argument("pod", help="pod id or a unique prefix of it")
    add_output_flag(i, default="json")
    i.set_defaults(func=run_inspect)


def _endpoint(args: argparse.Namespace) -> str:
    from .. import config

    if args.listen:
        return str(args.listen)
    return config.from_args(argparse.Namespace(config=args.config)).listen


def _labels(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {spec!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _age(created_ns: int) -> str:
    seconds = max(0, int(time.time() - created_ns / 1e9))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _pod_doc(item: Any, status: Any, info: dict[str, str]) -> dict[str, Any]:
    from ..cri.pb.runtime.v1 import api_pb2 as pb

    md = item.metadata
    doc: dict[str, Any] = {
        "id": item.id, "name": md.name, "namespace": md.namespace, "uid": md.uid, "attempt": md.attempt,
        "state": pb.PodSandboxState.Name(item.state), "createdAt": item.created_at,
        "labels": dict(item.labels), "annotations": dict(item.annotations),
        "ip": status.network.ip if status is not None else "",
        "additionalIps": [i.ip for i in status.network.additional_ips] if status is not None else [],
    }
    for key, value in info.items():
        try:
            doc[key] = json.loads(value)
        except ValueError:
            doc[key] = value
    return doc


def _call(args: argparse.Namespace, what: str, fn: Any) -> int:
    import grpc

    from .. import config
    from ..cri.client import CRIClientError

    try:
        return int(fn())
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
        details = exc.details()  # type: ignore[attr-defined]
        hint = " (is cri-net serve running? see --listen)" if code == grpc.StatusCode.UNAVAILABLE else ""
        print(f"cri-net {what}: {code.name}: {details}{hint}", file=sys.stderr)
    except (CRIClientError, config.ConfigFileError) as exc:
        print(f"cri-net {what}: {exc}", file=sys.stderr)
    return 1


def run_pods(args: argparse.Namespace) -> int:
    from ..cri.client import CRIClient

    labels = _labels(args.label)

    def go() -> int:
        with CRIClient(_endpoint(args), timeout=args.timeout) as c:
            items = [p for p in c.pods(state=STATES.get(args.state) if args.state else None, labels=labels)
                     if args.name in p.metadata.name]
            if args.quiet:
                for p in items:
                    print(p.id)
                return 0
            docs = [_pod_doc(p, c.inspectp(p.id, verbose=False).status, {}) for p in items]
        if args.output == "json":
            print_json(docs)
        else:
            print_table(("POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "IP"),
                        [(d["id"][:13], _age(d["createdAt"]), d["state"].removeprefix("SANDBOX_"), d["name"],
                          d["namespace"], d["attempt"], d["ip"]) for d in docs])
        return 0

    return _call(args, "pods", go)


def run_inspect(args: argparse.Namespace) -> int:
    from ..cri.client import CRIClient
    from ..network.results import NETWORK_STATUS_KEY

    def go() -> int:
        with CRIClient(_endpoint(args), timeout=args.timeout) as c:
            resp = c.inspectp(args.pod, verbose=True)
        doc = _pod_doc(resp.status, resp.status, dict(resp.info))
        if args.output == "json":
            print_json(doc)
        else:
            planes = doc.get(NETWORK_STATUS_KEY) or doc.get("planes") or []
            print_table(("POD ID", "NAME", "NAMESPACE", "STATE", "IP", "NETNS"),
                        [(doc["id"][:13], doc["name"], doc["namespace"], doc["state"].removeprefix("SANDBOX_"),
                          doc["ip"], doc.get("netns", ""))])
            if planes:
                print()
                print_table(("NETWORK", "INTERFACE", "IPS", "MAC", "DEFAULT"),
                            [(p.get("name", ""), p.get("interface", ""), ",".join(p.get("ips", [])), p.get("mac", ""),
                              "yes" if p.get("default") else "") for p in planes])
        return 0

    return _call(args, "inspect", go)
