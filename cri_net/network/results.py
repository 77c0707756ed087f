"""Reading `NetworkApiResult`s: which address a runtime reports as the pod IP."""

from __future__ import annotations

import ipaddress

from .models import NetworkApiResult


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
