"""Bounds on what one pod may store, so that listing every pod stays answerable.

Kubernetes refuses a pod whose annotations total more than 256 KiB; cri-net applies that
bound to labels and annotations together, and ListPodSandbox trims its answer to a budget
(see service.py), because even pods within the bound add up past any message limit.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..network.capabilities import MAX_IDENTITY_LEN
from ..network.errors import InvalidRequestError

#: Kubernetes' TotalAnnotationSizeLimitB, here for labels and annotations together.
MAX_POD_METADATA_BYTES = 256 * 1024


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
