"""IP leases in use per network, for the metrics: host-local keeps one file per leased address
in `<dataDir>/<network>`, so counting is a bounded directory scan (no plugin runs)."""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

HOST_LOCAL_DATA_DIR = "/var/lib/cni/networks"
MAX_LEASES_COUNTED = 1 << 16


def host_local_dirs(networks: Iterable[Any]) -> Iterator[tuple[str, str]]:
    """(network, lease dir) of every loaded network whose chain uses host-local IPAM."""
    for net in networks:
        for plugin in net.plugins:
            ipam = plugin.network.extra.get("ipam")
            if isinstance(ipam, dict) and ipam.get("type") == "host-local":
                data_dir = ipam.get("dataDir") if isinstance(ipam.get("dataDir"), str) else HOST_LOCAL_DATA_DIR
                yield net.name, os.path.join(data_dir or HOST_LOCAL_DATA_DIR, net.name)
                break


def count_leases(lease_dir: str) -> int:
    """host-local keeps one file per leased IP, plus `lock` and `last_reserved_ip.N`."""
    n = 0
    try:
        with os.scandir(lease_dir) as it:
            for entry in it:
                if entry.name == "lock" or entry.name.startswith("last_reserved_ip."):
                    continue
                n += 1
                if n >= MAX_LEASES_COUNTED:
                    break
    except OSError:
        return 0  # no lease yet (the dir appears with the first ADD)
    return n


def ip_leases(networks: Iterable[Any]) -> Iterator[tuple[str, int]]:
    for network, lease_dir in host_local_dirs(networks):
        yield network, count_leases(lease_dir)
