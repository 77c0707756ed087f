"""Which IP ranges a pod may ask for with `cri-net.io/ip-ranges`.

A pod author writes that annotation; the ranges end up on the host (the bridge plugin gives
its bridge the range's gateway and routes the subnet), so only the operator may widen what
is allowed: the pod CIDR (UpdateRuntimeConfig, or the runtime's own `ipRanges` under
containerd) and the default network's allow-list, a top-level key of its conflist:

    "criNet": {"allowedIPRanges": ["10.88.0.0/16", "fd00:88::/64"]}
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from cri_net.libcni import NetworkConfigList
from cri_net.network.errors import NetworkApiError

from . import annotations, crinet_keys

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

CONFIG_KEY = crinet_keys.CONFIG_KEY
ALLOW_FIELD = "allowedIPRanges"


def config_allow_list(net: NetworkConfigList) -> list[IPNetwork]:
    """The network's `criNet.allowedIPRanges`; a malformed one is the operator's error, named
    with its file and key (never silently read as "nothing allowed" or "everything")."""
    where = f"{net.source or net.name}: {CONFIG_KEY}.{ALLOW_FIELD}"
    entries = crinet_keys.section(net).get(ALLOW_FIELD, [])
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise NetworkApiError(f"{where} must be a list of CIDR strings")
    out: list[IPNetwork] = []
    for i, entry in enumerate(entries):
        try:
            out.append(ipaddress.ip_network(entry, strict=True))
        except ValueError as exc:
            raise NetworkApiError(f"{where}[{i}] {entry!r} is not a CIDR: {exc}") from None
    return out


def runtime_ranges(capabilities: Mapping[str, Any]) -> list[IPNetwork]:
    """The subnets of `ipRanges` the runtime set directly (containerd passes its pod CIDR)."""
    out: list[IPNetwork] = []
    for range_set in capabilities.get(annotations.CAP_IP_RANGES) or []:
        for r in range_set if isinstance(range_set, list) else []:
            subnet = r.get("subnet") if isinstance(r, dict) else None
            try:
                out.append(ipaddress.ip_network(subnet, strict=False))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue  # validated where it was set; an unusable one allows nothing
    return out


def allowed(net: NetworkConfigList, capabilities: Mapping[str, Any]) -> list[IPNetwork]:
    """Everything the operator allows besides the pod CIDR (which the annotations module adds)."""
    return config_allow_list(net) + runtime_ranges(capabilities)
