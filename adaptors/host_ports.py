"""Host ports are a node-wide resource: one (port, protocol, host IP) can DNAT to one pod.

portmap happily installs a second pod's DNAT for a port another pod holds; the first rule
wins and the second mapping is silently dead. So an attach first claims its host ports
against every live attachment (the CNI cache, which records each attachment's portMappings,
including other runtimes' in a shared cache dir) and every attach in flight in this process;
the check and the in-flight claim happen under one lock, so two concurrent attaches cannot
both pass. A wildcard host IP (empty, 0.0.0.0, ::) conflicts with any host IP.

Limit: the lock is per process. `cri-net serve` (gRPC and cni.sock) is one process; plugin
calls running in-process without a server are only checked against the cache.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from cri_net.network.errors import InvalidRequestError
from cri_net.operator import CNIOperator

WILDCARDS = frozenset({"", "0.0.0.0", "::"})

_lock = threading.Lock()
#: container id -> (cache dir, pod label, mappings) of attaches in progress
_in_flight: dict[str, tuple[str, str, list[Mapping[str, Any]]]] = {}


def _key(m: Mapping[str, Any]) -> tuple[Any, str, str]:
    ip = str(m.get("hostIP") or "")
    return m.get("hostPort"), str(m.get("protocol") or "tcp").lower(), "" if ip in WILDCARDS else ip


def conflicts(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Same host port and protocol, and the same host IP or a wildcard on either side."""
    (pa, xa, ia), (pb, xb, ib) = _key(a), _key(b)
    return pa == pb and xa == xb and (ia == ib or not ia or not ib)


def describe(m: Mapping[str, Any]) -> str:
    port, proto, ip = _key(m)
    return f"host port {port}/{proto} on {ip or 'all addresses'}"


def _holders(operator: CNIOperator, cache_dir: str, own_id: str) -> Iterator[tuple[str, list[Mapping[str, Any]]]]:
    for att in operator.cni.cached_attachments():
        mappings = att.capability_args.get("portMappings") if isinstance(att.capability_args, dict) else None
        if att.container_id == own_id or not isinstance(mappings, list):
            continue
        args = dict(att.cni_args)
        pod = f"{args.get('K8S_POD_NAMESPACE', '?')}/{args.get('K8S_POD_NAME', '?')}"
        yield f"pod {pod} (id {att.container_id[:13]}, network {att.network})", [
            m for m in mappings if isinstance(m, dict)]
    for cid, (cdir, pod, mappings) in _in_flight.items():
        if cid != own_id and cdir == cache_dir:
            yield f"pod {pod} (id {cid[:13]}, being created)", mappings


def check(operator: CNIOperator, own_id: str, mappings: Iterable[Mapping[str, Any]]) -> None:
    """Raise InvalidRequestError naming the port and the pod holding it; call under _lock."""
    wanted = list(mappings)
    if not wanted:
        return
    for holder, held in _holders(operator, operator.cni.cache.cache_dir, own_id):
        for m in wanted:
            clash = next((h for h in held if conflicts(m, h)), None)
            if clash is not None:
                raise InvalidRequestError("port_mappings", f"{describe(m)} is already mapped by {holder} "
                                                           f"({describe(clash)})")


@contextmanager
def claim(operator: CNIOperator, own_id: str, pod: str, mappings: list[Mapping[str, Any]]) -> Iterator[None]:
    """Hold the pod's host ports for the duration of its attach (afterwards its cache entry
    holds them); refuse them when another live or in-flight pod has one."""
    if not mappings:
        yield
        return
    with _lock:
        check(operator, own_id, mappings)
        _in_flight[own_id] = (operator.cni.cache.cache_dir, pod, list(mappings))
    try:
        yield
    finally:
        with _lock:
            _in_flight.pop(own_id, None)
