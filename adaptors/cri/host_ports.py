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

import ipaddress
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from cri_net.fsutil import is_temp, read_regular
from cri_net.libcni import CNIError
from cri_net.libcni.cache import decode_record
from cri_net.network.errors import InvalidRequestError
from cri_net.operator import CNIOperator


_lock = threading.Lock()
#: container id -> (cache dir, pod label, mappings) of attaches in progress
_in_flight: dict[str, tuple[str, str, list[Mapping[str, Any]]]] = {}


def _host_ip(text: str) -> str:
    """One spelling per address ("0::1", "0000::0001" and "::1" are one host IP), "" for all
    addresses (empty, 0.0.0.0, ::, in any spelling); text that is no address stays as it is."""
    if not text:
        return ""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text
    return "" if ip.is_unspecified else str(ip)


def _key(m: Mapping[str, Any]) -> tuple[Any, str, str]:
    return m.get("hostPort"), str(m.get("protocol") or "tcp").lower(), _host_ip(str(m.get("hostIP") or ""))


def conflicts(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Same host port and protocol, and the same host IP or a wildcard on either side."""
    (pa, xa, ia), (pb, xb, ib) = _key(a), _key(b)
    return pa == pb and xa == xb and (ia == ib or not ia or not ib)


def describe(m: Mapping[str, Any]) -> str:
    port, proto, ip = _key(m)
    return f"host port {port}/{proto} on {ip or 'all addresses'}"


#: results dir -> file name -> (stat key, container id, holder, mappings): a cache file is
#: parsed once, not at every attach (a node with many pods has many cache files)
_parsed: dict[str, dict[str, tuple[tuple[int, int, int], str, str, list[Mapping[str, Any]]]]] = {}
MAX_CACHE_FILE = 4 * 1024 * 1024


def _read(path: str) -> tuple[str, str, list[Mapping[str, Any]]] | None:
    try:  # the results dir is shared: a FIFO or /dev/zero there must not hang or fill us
        record = decode_record(read_regular(path, MAX_CACHE_FILE, follow_symlinks=False))
    except (OSError, CNIError, ValueError):
        return None
    if record is None or not isinstance(record.capability_args, dict):
        return None
    mappings = record.capability_args.get("portMappings")
    if not isinstance(mappings, list) or not mappings:
        return record.container_id, "", []
    args = dict(record.cni_args)
    pod = f"{args.get('K8S_POD_NAMESPACE', '?')}/{args.get('K8S_POD_NAME', '?')}"
    return (record.container_id, f"pod {pod} (id {record.container_id[:13]}, network {record.network_name})",
            [m for m in mappings if isinstance(m, dict)])


def _cached_holders(results_dir: str) -> Iterator[tuple[str, str, list[Mapping[str, Any]]]]:
    """(container id, holder, mappings) of every readable cache file; call under _lock."""
    table = _parsed.setdefault(results_dir, {})
    present = set()
    try:
        entries = list(os.scandir(results_dir))
    except OSError:
        entries = []
    for entry in entries:
        if is_temp(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        present.add(entry.name)
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        known = table.get(entry.name)
        if known is None or known[0] != key:
            parsed = _read(entry.path) if entry.is_file(follow_symlinks=False) else None
            known = (key, *(parsed or ("", "", [])))
            table[entry.name] = known
        if known[3]:
            yield known[1], known[2], known[3]
    for name in set(table) - present:
        del table[name]


def _holders(operator: CNIOperator, cache_dir: str, own_id: str) -> Iterator[tuple[str, list[Mapping[str, Any]]]]:
    for cid, holder, mappings in list(_cached_holders(operator.cni.cache.results_dir)):
        if cid != own_id:
            yield holder, mappings
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
                theirs = "" if describe(clash) == describe(m) else f" ({describe(clash)})"
                raise InvalidRequestError("port_mappings", f"{describe(m)} is already mapped by {holder}{theirs}")


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
