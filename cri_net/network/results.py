"""Reading `NetworkApiResult`s: which address a runtime reports as the pod IP, and the
Multus-shaped network status of a pod."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Final

from .models import NetworkApiResult


#: the key (annotation in Multus, verbose-info key in cri-net) of a pod's network status
NETWORK_STATUS_KEY: Final = "k8s.v1.cni.cncf.io/network-status"


def split_ips(results: list[NetworkApiResult], default_ifname: str, pref: str = "ipv4") -> tuple[str, list[str]]:
    """(primary IP, additional IPs) as containerd reports them: both from the default
    interface only (an extra plane's addresses are not the pod's IPs); the primary is its
    first IPv4, first IPv6, or first address in CNI order, the additional ones the rest (the
    other family of a dual-stack pod)."""
    default = [r for r in results if r.interface == default_ifname]
    addrs = [ip.split("/")[0] for r in default for ip in r.ips]
    primary = ""
    if addrs:
        if pref in ("ipv4", "ipv6"):
            want = 4 if pref == "ipv4" else 6
            primary = next((a for a in addrs if ipaddress.ip_address(a).version == want), addrs[0])
        else:
            primary = addrs[0]
    rest = [a for a in addrs if a != primary]
    return primary, rest


def network_status(results: list[NetworkApiResult], default_ifname: str,
                   namespaces: Mapping[str, str] | None = None, pod_namespace: str = "") -> list[dict[str, Any]]:
    """Multus's `network-status`: one `{name, interface, ips, mac, default, dns}` per plane,
    the default network first. An extra plane is named `namespace/network` (the namespace it
    was selected in, `namespaces[ifname]`, else the pod's); addresses without prefix length."""
    ordered = sorted(results, key=lambda r: r.interface != default_ifname)
    out: list[dict[str, Any]] = []
    for r in ordered:
        default = r.interface == default_ifname
        namespace = "" if default else ((namespaces or {}).get(r.interface) or r.namespace or pod_namespace)
        entry: dict[str, Any] = {"name": f"{namespace}/{r.name}" if namespace else r.name, "interface": r.interface,
                                 "ips": [ip.split("/")[0] for ip in r.ips]}
        if r.mac:
            entry["mac"] = r.mac
        entry["default"] = default
        entry["dns"] = dict(r.dns)
        out.append(entry)
    return out
