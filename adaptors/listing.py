"""`conf list` rows and their filters (`name=` / `plugin=`, exact or regular expression)."""

from __future__ import annotations

from cri_net.libcni import NetworkConfigList
from cri_net.network.errors import InvalidRequestError
from cri_net.network.filters import matches
from cri_net.network.models import NetworkInfo

FILTER_KEYS = ("name", "plugin")


def network_info(net: NetworkConfigList) -> NetworkInfo:
    return NetworkInfo(name=net.name, version=net.cni_version, plugins=net.plugin_types, file=net.source)


def filter_infos(infos: list[NetworkInfo], filters: dict[str, list[str]] | None) -> list[NetworkInfo]:
    """Keep rows matching every filter key (any of its values)."""
    for key in filters or {}:
        if key not in FILTER_KEYS:
            raise InvalidRequestError(f"filter {key}", f"unknown filter (supported: {', '.join(FILTER_KEYS)})")
    out = []
    for info in infos:
        ok = True
        for key, patterns in (filters or {}).items():
            values = [info.name] if key == "name" else info.plugins
            if not any(matches(p, v) for p in patterns for v in values):
                ok = False
        if ok:
            out.append(info)
    return out
