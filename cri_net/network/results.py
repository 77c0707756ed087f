"""Turning cached CNI results into `NetworkApiResult`s (no plugin runs)."""

from __future__ import annotations

import ipaddress

from ..libcni import CNIError, Result, Result100, convert
from .models import NetworkApiResult


def plane_result(network: str, ifname: str, result: Result | None) -> NetworkApiResult:
    """The addresses, gateways and MAC of `ifname` in `result` (sandbox-side interface)."""
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
    return out


def split_ips(results: list[NetworkApiResult], default_ifname: str, pref: str = "ipv4") -> tuple[str, list[str]]:
    """(primary IP, additional IPs) as containerd reports them: primary from the default
    interface (first IPv4, first IPv6, or the first in CNI order), the rest across all planes."""
    default = [r for r in results if r.interface == default_ifname]
    others = [r for r in results if r.interface != default_ifname]
    addrs = [ip.split("/")[0] for r in default for ip in r.ips]
    primary = ""
    if addrs:
        if pref in ("ipv4", "ipv6"):
            want = 4 if pref == "ipv4" else 6
            primary = next((a for a in addrs if ipaddress.ip_address(a).version == want), addrs[0])
        else:
            primary = addrs[0]
    rest = [a for a in addrs if a != primary] + [ip.split("/")[0] for r in others for ip in r.ips]
    return primary, rest
