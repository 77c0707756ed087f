"""Attach/detach sequencing shared by the adaptors: loopback first, then the planes (in order,
or concurrently: each is an independent plugin chain on its own interface); on a failure
everything this request attached is detached again in reverse request order; detach carries
on past failures (loopback last)."""

from __future__ import annotations

import re
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from collections.abc import Callable
from typing import Any

from cri_net import libcni
from cri_net.libcni import CNIError, NetworkConfigList
from cri_net.network.capabilities import CAP_BANDWIDTH, CAP_PORT_MAPPINGS
from cri_net.network.errors import AttachError, CheckError, InvalidRequestError
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


#: How many planes of one request run at once (each plane is one plugin chain, mostly
#: waiting on its plugins' execs); more planes than this queue behind the first ones.
MAX_PLANE_WORKERS = 8


def attach_all(operator: CNIOperator, container_id: str, netns: str,
               planes: list[tuple[NetworkConfigList, PlaneRef]], loopback: bool = True,
               parallel: bool = False, finish: tuple[PlaneRef, Callable[[], None]] | None = None) -> None:
    """Loopback (unless the runtime does it, or it is attached already), then the planes:
    one after another, or with `parallel` concurrently (each is its own plugin chain on its
    own interface), then `finish` (a step on the attached pod, e.g. its default route, blamed
    on the given plane when it fails). On a failure, what has not started is cancelled, what
    runs is waited for, and every plane this call attached is DELed in reverse request order
    (loopback last);
    raises one AttachError naming the first failing plane in request order, its plugin, and
    every other failure."""
    lo = PlaneRef(operator.loopback.name, container_id, netns, "lo")
    if refuse_attached(operator, container_id, planes):
        loopback = False  # an earlier request's: neither attached again nor rolled back here
    attached: list[PlaneRef] = []
    try:
        if loopback:
            _attach_one(operator, operator.loopback, lo)
            attached.append(lo)
        if parallel and len(planes) > 1:
            attached += _attach_concurrently(operator, planes)
        else:
            for net, plane in planes:
                _attach_one(operator, net, plane)
                attached.append(plane)
        if finish is not None:
            try:
                finish[1]()
            except Exception as exc:  # whatever went wrong, nothing may stay half-attached
                raise _PlaneFailed(finish[0], exc) from exc
    except _PlaneFailed as failed:
        failures = detach_all(operator, list(reversed(attached + failed.attached)))
        raise AttachError(failed.plane.network, failed.plane.ifname, failed.cause,
                          failed.others + [f"{n} on {i}: {e}" for n, i, e in failures]) from failed.cause


class _PlaneFailed(Exception):
    """A plane's ADD failed (its own chain already DELed by the operator); `attached`: the
    planes of the same batch that did attach; `others`: the failed plane's rollback notes and
    the other planes that failed alongside it."""

    def __init__(self, plane: PlaneRef, cause: Exception, attached: list[PlaneRef] | None = None,
                 others: list[str] | None = None) -> None:
        super().__init__(str(cause))
        self.plane, self.cause = plane, cause
        self.attached = attached or []
        self.others = rollback_failures(cause) + (others or [])


def _attach_one(operator: CNIOperator, net: NetworkConfigList, plane: PlaneRef) -> None:
    try:
        operator.attach_network_plane(net, plane)
    except Exception as exc:  # whatever went wrong, nothing may stay half-attached
        raise _PlaneFailed(plane, exc) from exc


def _attach_concurrently(operator: CNIOperator, planes: list[tuple[NetworkConfigList, PlaneRef]]) -> list[PlaneRef]:
    """ADD every plane on a bounded pool; returns them in request order, or raises
    _PlaneFailed once nothing of this batch runs any more (each plane's wait is bounded by the
    plugin timeout of its execs). A plane that has not started when another fails never runs:
    the failure is flagged before the failing worker can take the next plane."""
    failed = threading.Event()

    def attach(net: NetworkConfigList, plane: PlaneRef) -> bool:
        if failed.is_set():
            return False
        try:
            operator.attach_network_plane(net, plane)
        except BaseException:
            failed.set()
            raise
        return True

    pool = ThreadPoolExecutor(max_workers=min(MAX_PLANE_WORKERS, len(planes)), thread_name_prefix="plane")
    try:
        futures = [pool.submit(attach, net, plane) for net, plane in planes]
        wait(futures, return_when=FIRST_EXCEPTION)
        if failed.is_set():
            for f in futures:
                f.cancel()  # queued: never runs; running: waited for below
        wait(futures)
    finally:
        pool.shutdown(wait=True)
    outcome = [(plane, f) for f, (_, plane) in zip(futures, planes) if not f.cancelled()]
    ok = [plane for plane, f in outcome if f.exception() is None and f.result()]
    errors = [(plane, f.exception()) for plane, f in outcome if f.exception() is not None]
    if not errors:
        return ok
    (plane, cause), rest = errors[0], errors[1:]
    others = [f"{p.network} on {p.ifname} also failed: {e}" for p, e in rest]
    others += [note for _, e in rest for note in rollback_failures(e)]  # type: ignore[arg-type]
    raise _PlaneFailed(plane, cause, ok, others)  # type: ignore[arg-type]


def detach_all(operator: CNIOperator, planes: list[PlaneRef], parallel: bool = False) -> list[Failure]:
    """DEL every plane in the given order; returns the failures instead of stopping. With
    `parallel`, every plane but loopback runs concurrently and loopback goes last; failures
    are still reported in the given order."""
    lo = [p for p in planes if p.ifname == "lo" and p.network == operator.loopback.name]
    rest = [p for p in planes if p not in lo]
    if not parallel or len(rest) < 2:
        return [f for p in planes if (f := _detach_one(operator, p)) is not None]
    with ThreadPoolExecutor(max_workers=min(MAX_PLANE_WORKERS, len(rest)), thread_name_prefix="plane") as pool:
        found = list(pool.map(lambda p: _detach_one(operator, p), rest))
    found += [_detach_one(operator, p) for p in lo]
    return [f for f in found if f is not None]


def _detach_one(operator: CNIOperator, plane: PlaneRef) -> Failure | None:
    try:
        operator.detach_network_plane(plane)
    except CNIError as exc:
        return (plane.network, plane.ifname, exc)
    return None


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


def check_all(operator: CNIOperator, planes: list[PlaneRef]) -> list[PlaneRef]:
    """CHECK every plane but loopback, in order; the first failure raises CheckError naming
    the plane. Returns the planes checked."""
    checked = [p for p in planes if p.ifname != "lo"]
    for plane in checked:
        try:
            operator.check_network_plane(plane)
        except CNIError as exc:
            raise CheckError(plane.network, plane.ifname, exc) from exc
    return checked
