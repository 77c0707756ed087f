"""Attach/detach sequencing shared by the adaptors: loopback first, planes in order; on a
failure everything attached is detached again in reverse; detach carries on past failures."""

from __future__ import annotations

import re
from typing import Any

from cri_net import libcni
from cri_net.libcni import CNIError, NetworkConfigList
from cri_net.network.capabilities import CAP_BANDWIDTH, CAP_PORT_MAPPINGS
from cri_net.network.errors import AttachError, InvalidRequestError
from cri_net.network.models import NetworkApiConf
from cri_net.operator import CNIOperator, PlaneRef
from cri_net.operator import rollback_failures

Failure = tuple[str, str, Exception]


def validate_target(conf: NetworkApiConf, need_netns: bool = True) -> None:
    """What every attach needs: a valid container id and a netns path (a detach may come
    after the netns is gone)."""
    try:
        libcni.validate_container_id(conf.pod_id)
    except CNIError as exc:
        raise InvalidRequestError("pod_id", str(exc)) from None
    if need_netns and not conf.netns_path:
        raise InvalidRequestError("netns_path", "missing network namespace path")


def refuse_attached(operator: CNIOperator, container_id: str, planes: list[tuple[NetworkConfigList, PlaneRef]]) -> bool:
    """Raise InvalidRequestError when an interface the request wants is already attached for
    this container (a second ADD would fail, and its rollback DEL would tear down the live
    attachment); returns whether loopback is attached already. Nothing has been touched yet."""
    cached = operator.own_attachments(container_id)
    taken = {a.ifname: a.network for a in cached}
    for _, plane in planes:
        if plane.ifname in taken:
            raise InvalidRequestError(
                "interface", f"{plane.ifname} of container {container_id} is already attached to network "
                             f"{taken[plane.ifname]!r}; detach it first")
    return taken.get("lo") == operator.loopback.name


def attach_all(operator: CNIOperator, container_id: str, netns: str,
               planes: list[tuple[NetworkConfigList, PlaneRef]], loopback: bool = True) -> None:
    """Loopback (unless the runtime does it, or it is attached already), then each plane; on
    failure roll back what this call attached and raise one AttachError."""
    lo = PlaneRef(operator.loopback.name, container_id, netns, "lo")
    if refuse_attached(operator, container_id, planes):
        loopback = False  # an earlier request's: neither attached again nor rolled back here
    attached: list[PlaneRef] = []
    current = lo
    try:
        if loopback:
            operator.attach_loopback(container_id, netns)
            attached.append(lo)
        for net, plane in planes:
            current = plane
            operator.attach_network_plane(net, plane)
            attached.append(plane)
    except Exception as exc:  # whatever went wrong, nothing may stay half-attached
        failures = detach_all(operator, list(reversed(attached)))
        own = rollback_failures(exc)
        raise AttachError(current.network, current.ifname, exc,
                          own + [f"{n} on {i}: {e}" for n, i, e in failures]) from exc


def detach_all(operator: CNIOperator, planes: list[PlaneRef]) -> list[Failure]:
    """DEL every plane in the given order; returns the failures instead of stopping."""
    failures: list[Failure] = []
    for plane in planes:
        try:
            operator.detach_network_plane(plane)
        except CNIError as exc:
            failures.append((plane.network, plane.ifname, exc))
    return failures


def cached_planes(operator: CNIOperator, container_id: str, netns: str) -> list[PlaneRef]:
    """The container's attachments known to the cache, loopback excluded."""
    return [PlaneRef(a.network, container_id, netns, a.ifname)
            for a in operator.own_attachments(container_id)
            if not (a.network == operator.loopback.name and a.ifname == "lo")]


def ifname_key(ifname: str) -> tuple[str, int]:
    """Natural order of interface names: eth2 before eth10."""
    m = re.fullmatch(r"(.*?)(\d+)", ifname)
    return (m.group(1), int(m.group(2))) if m else (ifname, -1)


def merge_direct_caps(direct: dict[str, Any], caps: dict[str, Any]) -> dict[str, Any]:
    """Capabilities set directly (insert_*, CRI fields) combined with the annotations' ones:
    port mappings add up (a duplicate host port is refused), bandwidth directions combine
    (the direct value wins per direction), anything else set directly replaces."""
    merged = dict(caps)
    for key, value in direct.items():
        if key == CAP_PORT_MAPPINGS:
            seen = {(m.get("hostPort"), m.get("protocol", "tcp"), m.get("hostIP", "")) for m in caps.get(key, [])}
            for m in value:
                if (m.get("hostPort"), m.get("protocol", "tcp"), m.get("hostIP", "")) in seen:
                    raise InvalidRequestError(key, f"host port {m.get('hostPort')}/{m.get('protocol', 'tcp')} "
                                                   "is mapped twice")
            merged[key] = list(value) + list(caps.get(key, []))
        elif key == CAP_BANDWIDTH and isinstance(value, dict):
            merged[key] = {**caps.get(key, {}), **value}
        else:
            merged[key] = value
    return merged
