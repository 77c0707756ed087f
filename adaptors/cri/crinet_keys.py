"""cri-net's own settings inside a network's conflist: the top-level `criNet` object.

Plugins never see it as anything but an unknown key. Operators put per-network policy there
(`allowedIPRanges` for the ip-ranges annotation, `namespaces` for Multus selections from other
namespaces); a malformed file or section is the operator's error, named with its file.
"""

from __future__ import annotations

import json
from typing import Any

from cri_net.libcni import NetworkConfigList
from cri_net.network.errors import NetworkApiError

CONFIG_KEY = "criNet"


def section(net: NetworkConfigList) -> dict[str, Any]:
    """The network's `criNet` object ({} when it has none)."""
    try:
        doc = json.loads(net.raw)
    except ValueError as exc:  # loaded once already, so only a changed file gets here
        raise NetworkApiError(f"{net.source or net.name}: cannot read the network config: {exc}") from None
    found = doc.get(CONFIG_KEY) if isinstance(doc, dict) else None
    if found is None:
        return {}
    if not isinstance(found, dict):
        raise NetworkApiError(f"{net.source or net.name}: {CONFIG_KEY} must be an object")
    return found
