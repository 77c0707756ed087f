"""Multus's `default-route`: the pod's default route goes through one attachment's gateway.

Multus does it after the plugins ran, in the pod's netns: every attachment's default route of
the requested family is deleted, then `default via <gateway> dev <ifname>` is added. cri-net
does the same, once all planes are attached, and only for the families a selection asked for
(Multus also drops the other family's default routes; a pod asking for an IPv4 gateway keeps
its IPv6 default route here). The results reported for the pod (the combined result a
runtime gets) are adjusted the same way, so they describe the routes the pod really has.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cri_net import netns as netns_mod
from cri_net.network.models import NetworkApiResult


@dataclass(frozen=True)
class DefaultRoute:
    ifname: str
    gateway: str

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.gateway).version

    @property
    def dst(self) -> str:
        return "0.0.0.0/0" if self.family == 4 else "::/0"


def apply(netns: str, routes: Sequence[DefaultRoute]) -> None:
    """In `netns`: drop every default route of each requested family, then add the requested
    one. Raises OSError (pyroute2's NetlinkError) naming the interface and gateway; an
    unreachable gateway (not on the attachment's subnet) fails here."""
    if not routes:
        return
    netns_mod.run_in(netns, lambda: _apply_here(netns, routes))


def _apply_here(netns: str, routes: Sequence[DefaultRoute]) -> None:
    """`apply` on the calling thread, already in the pod's netns (pyroute2's own netns
    support forks, which a multi-threaded gRPC server must not do)."""
    from pyroute2 import IPRoute  # heavy import: only for pods that ask for it
    from socket import AF_INET, AF_INET6

    with IPRoute() as ipr:
        for route in routes:
            family = AF_INET if route.family == 4 else AF_INET6
            _delete_defaults(ipr, family)
            links = ipr.link_lookup(ifname=route.ifname)
            if not links:
                raise OSError(f"default-route: interface {route.ifname} not found in {netns}")
            try:
                ipr.route("add", family=family, dst_len=0, gateway=route.gateway, oif=links[0])
            except Exception as exc:  # NetlinkError: e.g. ENETUNREACH for a gateway off the subnet
                raise OSError(f"default-route: cannot add default via {route.gateway} dev {route.ifname}: "
                              f"{exc}") from exc


def _delete_defaults(ipr: object, family: int) -> None:
    """Delete the main table's default routes of `family`, one at a time (the kernel deletes
    the first match) until none is left."""
    from pyroute2.netlink.exceptions import NetlinkError

    for _ in range(256):  # a netns never has that many; bounded all the same
        try:
            ipr.route("del", family=family, dst_len=0, table=254)  # type: ignore[attr-defined]
        except NetlinkError as exc:
            if exc.code == 3:  # ESRCH: no default route left
                return
            raise


def _is_default(route: dict[str, object], family: int) -> bool:
    dst = route.get("dst")
    if not isinstance(dst, str):
        return False
    try:
        net = ipaddress.ip_network(dst, strict=False)
    except ValueError:
        return False
    return net.prefixlen == 0 and net.version == family


def adjust(results: Sequence[NetworkApiResult], routes: Sequence[DefaultRoute]) -> list[NetworkApiResult]:
    """The results as the pod's routes are after `apply`: no other default route of a
    requested family, and the requested one on its attachment."""
    out: list[NetworkApiResult] = []
    for r in results:
        kept = [rt for rt in r.routes if not any(_is_default(rt, d.family) for d in routes)]
        kept += [{"dst": d.dst, "gw": d.gateway} for d in routes if d.ifname == r.interface]
        out.append(r.model_copy(update={"routes": kept}))
    return out
