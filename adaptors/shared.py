"""What every adaptor answers the same way, from its operator: the loaded state, the cached
attachments it made (the cache dir is shared: only its own owner tag counts), results from
the cache, and garbage collection of attachments whose owner is gone.

These are the adaptor protocol's read side and GC (`cri_net.network.module.Adaptor`); the
server, the CNI hook and the CLI reach the cache and the conf dir only through them.
"""

from __future__ import annotations

import logging
import os
import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

from cri_net.fsutil import is_temp, remove_stale_temps
from cri_net.libcni import CNIError, GCAttachment, NetworkAttachment, Result, Result100, convert, version
from cri_net.log import kv
from cri_net.network.errors import CNIStateError
from cri_net.network.models import Attachment, GCOutcome, NetworkApiResult, NetworkState
from cri_net.netns import live_netns
from cri_net.operator import CNIOperator, PlaneRef

log = logging.getLogger("cri_net.adaptors")

F = TypeVar("F", bound=Callable[..., Any])


def cni_state_errors(method: F) -> F:
    """An adaptor method's door: a library error that got this far (the cache dir unusable
    while it is listed, e.g. results/ a FIFO) leaves as `CNIStateError`, a network API error
    callers map, never as a libcni exception they do not know."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except CNIError as exc:
            raise CNIStateError(exc) from exc

    return wrapper  # type: ignore[return-value]


class OperatorBacked:
    """The protocol's read side and GC, for an adaptor whose networks are one `operator`."""

    operator: CNIOperator

    def refresh(self) -> None:
        self.operator.update_if_changed()

    def cached_attachments(self, container_id: str | None = None) -> list[Attachment]:
        return cached_attachments(self.operator, container_id)

    def cached_results(self, container_id: str, planes: list[tuple[str, str]],
                       default_interface: str = "eth0") -> list[NetworkApiResult]:
        return cached_results(self.operator, container_id, planes, default_interface)

    def gc(self, stale: Callable[[Attachment], bool],
           hold: Callable[[str], AbstractContextManager[None]] | None = None) -> GCOutcome:
        return gc(self.operator, stale, hold)


def state(operator: CNIOperator, default: str | None) -> NetworkState:
    nets = operator.networks
    return NetworkState(
        conf_dir=operator.conf_dir,
        networks=[{"name": n.name, "cniVersion": n.cni_version, "plugins": n.plugin_types, "file": n.source}
                  for n in nets.networks],
        default=default, skipped=[(s.path, s.reason) for s in nets.skipped],
        last_reload_error=operator.last_reload_error)


def cached_attachments(operator: CNIOperator, container_id: str | None = None) -> list[Attachment]:
    out = []
    try:
        found = operator.own_attachments(container_id)
    except CNIError as exc:  # the results dir itself cannot be listed
        kv(log, logging.WARNING, "cannot list cached attachments", error=str(exc))
        return []
    for a in found:
        try:
            result = operator.cni.cache.read_result(a.network, a.container_id, a.ifname)
        except CNIError:
            result = None
        out.append(_attachment(a, result))
    return out


def _attachment(a: NetworkAttachment, result: Result | None) -> Attachment:
    return Attachment(a.network, a.container_id, a.ifname, a.netns, tuple(a.cni_args), dict(a.capability_args), result)


def _gc_candidates(operator: CNIOperator) -> Iterator[Attachment]:
    """This adaptor's attachments for GC: one cache file at a time and without their results
    (GC needs only who and where; at 10,000 pods a list of them all, results included, was
    the server's memory peak and half of the scan)."""
    try:
        for a in operator.iter_own_attachments():
            yield _attachment(a, None)
    except CNIError as exc:  # the results dir itself cannot be listed
        kv(log, logging.WARNING, "cannot list cached attachments", error=str(exc))


def plane_result(network: str, ifname: str, result: Result | None) -> NetworkApiResult:
    """The addresses, gateways, MAC, routes and DNS of `ifname` in `result` (sandbox side)."""
    out = NetworkApiResult(name=network, interface=ifname)
    if result is None:
        return out
    try:
        r = result if isinstance(result, Result100) else convert(result, "1.0.0")
    except CNIError:  # nothing convertible: report the plane without addresses
        return out
    assert isinstance(r, Result100)
    index = next((i for i, itf in enumerate(r.interfaces) if itf.name == ifname and itf.sandbox), None)
    if index is None:
        index = next((i for i, itf in enumerate(r.interfaces) if itf.name == ifname), None)
    ips = [ip for ip in r.ips if ip.interface is None or index is None or ip.interface == index]
    out.ips = [ip.address for ip in ips]
    out.gateways = [ip.gateway for ip in ips if ip.gateway]
    if index is not None:
        out.mac = r.interfaces[index].mac
    full = r.to_dict()
    out.routes = list(full.get("routes") or [])
    out.dns = dict(full.get("dns") or {})
    return out


def cached_results(operator: CNIOperator, container_id: str, planes: list[tuple[str, str]],
                   default_interface: str = "eth0") -> list[NetworkApiResult]:
    """One result per (network, ifname) from the cache, default interface first; no plugin runs."""
    out = [plane_result(network, ifname, _cached(operator, PlaneRef(network, container_id, "", ifname)))
           for network, ifname in planes]
    return sorted(out, key=lambda r: r.interface != default_interface)


def _cached(operator: CNIOperator, plane: PlaneRef) -> Result | None:
    try:
        return operator.cached_result(plane)
    except CNIError:  # an unusable cache file (a FIFO, too large): the plane shows no addresses
        return None


def gc(operator: CNIOperator, stale: Callable[[Attachment], bool],
       hold: Callable[[str], AbstractContextManager[None]] | None = None) -> GCOutcome:
    """DEL every attachment of this adaptor's that `stale` says has no owner any more; `hold`
    (the caller's per-container lock) is taken around the second look and the DEL, so a pod
    re-created meanwhile is never torn down. Failures are logged and retried next time.
    Temp files a crash left in the cache are swept first."""
    remove_stale_temps(operator.cni.cache.results_dir)
    removed, failures = 0, []
    for att in _gc_candidates(operator):
        if not stale(att):
            continue
        with (hold or (lambda _: nullcontext()))(att.container_id):
            if not stale(att):
                continue
            try:
                operator.detach_network_plane(PlaneRef(att.network, att.container_id, live_netns(att.netns),
                                                       att.ifname))
                removed += 1
            except CNIError as exc:
                kv(log, logging.ERROR, "GC of stale attachment failed; will retry", network=att.network,
                   container=att.container_id, ifname=att.ifname, error=str(exc))
                failures.append(f"{att.network}/{att.container_id}/{att.ifname}: {exc}")
    _gc_plugins(operator)
    return GCOutcome(removed, failures)


def _gc_plugins(operator: CNIOperator) -> None:
    """Spec 1.1.0 GC for networks that support it. Every attachment still cached is valid,
    including other runtimes' in a shared cache dir; never GC on a cache we could not read."""
    networks = [n for n in operator.networks.networks if version.at_least(n.cni_version, "1.1.0")]
    if not networks:
        return  # nothing to GC: spare a second scan of the whole cache
    remaining = operator.cni.cached_attachments()
    unreadable = _cache_entries(operator.cni.cache.results_dir) - len(remaining)
    if unreadable > 0:  # their attachments would look invalid
        kv(log, logging.WARNING, "plugin GC skipped: cached results that cannot be read",
           dir=operator.cni.cache.results_dir, count=unreadable)
        return
    for net in networks:
        valid = [GCAttachment(a.container_id, a.ifname) for a in remaining if a.network == net.name]
        try:
            operator.cni.gc_network_list(net, valid)
        except CNIError as exc:
            kv(log, logging.WARNING, "plugin GC failed", network=net.name, error=str(exc))


def _cache_entries(results_dir: str) -> int:
    """Entries of the results dir that the attachment listing should have read."""
    try:
        return sum(1 for name in os.listdir(results_dir) if not is_temp(name))
    except OSError:
        return 0
