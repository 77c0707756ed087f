"""The `bridge` driver of the native adaptor: choose a subnet, gateway and bridge name, and
write the network's conflist (bridge + portmap + firewall, + dnsname where installed).

Conflict checks run against the other native networks and every address configured on the
host, so a new network never shadows a route the host already uses.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

from cri_net.network.capabilities import special_purpose
from cri_net.network.errors import InvalidRequestError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
MAX_NAME_LEN = 200
BRIDGE_PREFIX = "crinet-br"
MAX_BRIDGES = 1024
AUTO_POOLS = (ipaddress.ip_network("192.168.0.0/16"), ipaddress.ip_network("172.16.0.0/12"),
              ipaddress.ip_network("10.0.0.0/8"))
OPTIONAL_PLUGINS = ("dnsname",)


@dataclass(frozen=True)
class BridgePlan:
    """Everything a new bridge network needs, decided and checked."""

    name: str
    bridge: str
    subnet: IPNetwork
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address
    internal: bool


RESERVED_NAMES = frozenset({"cni-loopback"})  # the built-in loopback list's name


def validate_name(name: str) -> None:
    if name in RESERVED_NAMES:
        raise InvalidRequestError("name", f"network name {name!r} is reserved")
    if not NAME_RE.fullmatch(name) or len(name) > MAX_NAME_LEN:
        raise InvalidRequestError("name", f"invalid network name {name!r}: must match {NAME_RE.pattern} "
                                          f"and be at most {MAX_NAME_LEN} characters")


def host_networks() -> list[IPNetwork]:
    """Every address/prefix configured on a host interface."""
    from pyroute2 import IPRoute  # heavy import: only where a network is being created

    with IPRoute() as ipr:
        out = []
        for msg in ipr.get_addr():
            addr, plen = msg.get_attr("IFA_ADDRESS"), msg["prefixlen"]
            if addr:
                out.append(ipaddress.ip_network(f"{addr}/{plen}", strict=False))
        return out


def host_link_names() -> set[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def _candidates() -> Iterator[IPNetwork]:
    for pool in AUTO_POOLS:
        yield from pool.subnets(new_prefix=24)


def plan(name: str, subnet: str | None, gateway: str | None, internal: bool,
         used_subnets: Iterable[IPNetwork], used_bridges: set[str], host_nets: Iterable[IPNetwork]) -> BridgePlan:
    """Decide subnet, gateway and bridge name; raise InvalidRequestError naming the bad field."""
    # every host address counts, loopback and link-local included (special subnets are
    # refused below anyway; the overlap check must not depend on that)
    busy = list(used_subnets) + list(host_nets)
    if gateway and not subnet:
        raise InvalidRequestError("gateway", "a gateway needs a subnet (--subnet)")
    if subnet:
        try:
            net = ipaddress.ip_network(subnet, strict=False)
        except ValueError as exc:
            raise InvalidRequestError("subnet", f"invalid subnet {subnet!r}: {exc}") from None
        why = special_purpose(net)
        if why is not None:
            raise InvalidRequestError("subnet", f"subnet {net} {why}: a bridge network cannot use it")
        if net.num_addresses < 4:
            raise InvalidRequestError("subnet", f"subnet {net} is too small for a bridge network")
        clash = next((b for b in busy if b.version == net.version and b.overlaps(net)), None)
        if clash is not None:
            raise InvalidRequestError("subnet", f"subnet {net} overlaps {clash} already in use")
    else:
        net = next((c for c in _candidates() if not any(b.version == 4 and b.overlaps(c) for b in busy)), None)
        if net is None:
            raise InvalidRequestError("subnet", "no free /24 left in 192.168/16, 172.16/12 or 10/8")
    if gateway:
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError:
            raise InvalidRequestError("gateway", f"invalid gateway {gateway!r}") from None
        if gw.version != net.version or gw not in net:
            raise InvalidRequestError("gateway", f"gateway {gw} is not inside subnet {net}")
        if gw == net.network_address or (net.version == 4 and gw == net.broadcast_address):
            raise InvalidRequestError("gateway", f"gateway {gw} is the network or broadcast address of {net}")
    else:
        gw = net.network_address + 1
    bridge = next((f"{BRIDGE_PREFIX}{n}" for n in range(MAX_BRIDGES) if f"{BRIDGE_PREFIX}{n}" not in used_bridges), None)
    if bridge is None:
        raise InvalidRequestError("name", f"all {MAX_BRIDGES} bridge names {BRIDGE_PREFIX}N are in use")
    return BridgePlan(name or bridge, bridge, net, gw, internal)


def conflist(p: BridgePlan, cni_version: str, optional_plugins: Iterable[str] = ()) -> bytes:
    """The network's config list, as written to the conf dir."""
    default_route = "0.0.0.0/0" if p.subnet.version == 4 else "::/0"
    ipam: dict[str, object] = {"type": "host-local", "ranges": [[{"subnet": str(p.subnet), "gateway": str(p.gateway)}]]}
    if not p.internal:
        ipam["routes"] = [{"dst": default_route}]
    plugins: list[dict[str, object]] = [
        {"type": "bridge", "bridge": p.bridge, "isGateway": not p.internal, "ipMasq": not p.internal,
         "hairpinMode": True, "ipam": ipam},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "firewall"},
    ]
    if "dnsname" in optional_plugins:
        plugins.append({"type": "dnsname", "domainName": "dns.podman", "capabilities": {"aliases": True}})
    doc = {"cniVersion": cni_version, "name": p.name, "plugins": plugins}
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def installed(plugin: str, bin_dirs: Iterable[str]) -> bool:
    return any(os.path.isfile(os.path.join(d, plugin)) for d in bin_dirs)
