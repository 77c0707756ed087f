"""Metrics of the CNI handoff: each call cri-net-cni handed to the server, as an operation
(CNI ADD/DEL/CHECK/STATUS/GC by network) and as a handoff outcome."""

from __future__ import annotations

import json

from .. import metrics

#: the network name is read from at most this much of the config (it comes first in practice)
_NAME_SCAN = 64 * 1024


def network_name(stdin: bytes) -> str:
    """The `name` of the network config the runtime sent; "" when it cannot be read."""
    try:
        doc = json.loads(stdin[:_NAME_SCAN]) if len(stdin) <= _NAME_SCAN else json.loads(stdin)
    except (ValueError, RecursionError):
        return ""
    name = doc.get("name") if isinstance(doc, dict) else None
    return name[:256] if isinstance(name, str) else ""


def observe_cni_call(environ: dict[str, str], stdin: bytes, rc: int, seconds: float, busy: bool = False) -> None:
    """One handed-over call: `busy` when it gave up waiting for an earlier call of its container."""
    command = environ.get("CNI_COMMAND", "")[:16]
    metrics.observe_operation(command, network_name(stdin), seconds, ok=rc == 0)
    metrics.observe_handoff(command, "busy" if busy else ("ok" if rc == 0 else "error"))
