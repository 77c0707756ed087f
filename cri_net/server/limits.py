"""Bounds on what one pod may store, so that listing every pod stays answerable and every
file written for it (its record, its CNI cache entries) stays under what is read back.

Kubernetes refuses a pod whose annotations total more than 256 KiB; cri-net applies that
bound to labels and annotations together, and ListPodSandbox trims its answer to a budget
(see service.py), because even pods within the bound add up past any message limit. The
CRI port mappings and DNS config are counted too: 60,000 mappings fit in one gRPC message
but made a 4.5 MB cache entry and record, over the 4 MiB read limit, and the pod could then
never be stopped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..network.capabilities import MAX_IDENTITY_LEN
from ..network.errors import InvalidRequestError

#: Kubernetes' TotalAnnotationSizeLimitB, here for labels and annotations together.
MAX_POD_METADATA_BYTES = 256 * 1024


#: CRI port mappings per pod (host port 0 included: kubelet sends every container port).
MAX_PORT_MAPPINGS = 1024
#: DNS config entries per list; Kubernetes allows 3 nameservers and 32 search domains.
MAX_DNS_ENTRIES = 64
MAX_DNS_ENTRY_LEN = 253


def metadata_bytes(*maps: Mapping[str, str]) -> int:
    return sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for m in maps for k, v in m.items())


def check_pod_metadata(labels: Mapping[str, str], annotations: Mapping[str, str], runtime_handler: str) -> None:
    """Refuse a pod whose stored metadata would be unbounded; INVALID_ARGUMENT names the field."""
    size = metadata_bytes(labels, annotations)
    if size > MAX_POD_METADATA_BYTES:
        field = "config.annotations" if metadata_bytes(annotations) >= metadata_bytes(labels) else "config.labels"
        raise InvalidRequestError(field, f"labels and annotations total {size} bytes; at most "
                                         f"{MAX_POD_METADATA_BYTES} (Kubernetes' annotation limit)")
    if len(runtime_handler) > MAX_IDENTITY_LEN:
        raise InvalidRequestError("runtime_handler", f"is {len(runtime_handler)} characters long; "
                                                     f"at most {MAX_IDENTITY_LEN}")


def check_pod_network_config(port_mappings: Sequence[Any], dns: Mapping[str, Sequence[str]] | None) -> None:
    """Refuse port mappings and DNS config past the bounds above; INVALID_ARGUMENT names the field."""
    if len(port_mappings) > MAX_PORT_MAPPINGS:
        raise InvalidRequestError("config.port_mappings", f"{len(port_mappings)} port mappings; at most "
                                                          f"{MAX_PORT_MAPPINGS}")
    for key, values in (dns or {}).items():
        if len(values) > MAX_DNS_ENTRIES:
            raise InvalidRequestError(f"config.dns_config.{key}", f"{len(values)} entries; at most {MAX_DNS_ENTRIES}")
        for i, value in enumerate(values):
            if len(value) > MAX_DNS_ENTRY_LEN:
                raise InvalidRequestError(f"config.dns_config.{key}[{i}]", f"is {len(value)} characters long; "
                                                                           f"at most {MAX_DNS_ENTRY_LEN}")
