"""Reading a pod's input: the annotation keys cri-net interprets, their size and text
checks, and the strict JSON and field readers every parser of a CRI field or annotation uses.
Each failure is an `AnnotationError` naming the key (or CRI field path) and what is wrong."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from cri_net.network.capabilities import AnnotationError, check_text, show, type_name

# --- Annotation keys -------------------------------------------------------------------------

PORT_MAPPINGS_ANNOTATION: Final = "cri-net.io/port-mappings"
IP_RANGES_ANNOTATION: Final = "cri-net.io/ip-ranges"
INGRESS_BANDWIDTH_ANNOTATION: Final = "kubernetes.io/ingress-bandwidth"
EGRESS_BANDWIDTH_ANNOTATION: Final = "kubernetes.io/egress-bandwidth"
#: iSulad's misspelling of the egress key; accepted (deprecated) so iSulad users keep working.
EGRESS_BANDWIDTH_MISSPELT_ANNOTATION: Final = "kubernetes.io/engress-bandwidth"
EXTRA_NETWORKS_ANNOTATION: Final = "network.alpha.kubernetes.io/network"
#: Multus's network selection annotation (text `ns/name@ifname, ...` or a JSON list of objects).
MULTUS_NETWORKS_ANNOTATION: Final = "k8s.v1.cni.cncf.io/networks"
CNI_ARGS_ANNOTATION_PREFIX: Final = "extension.network.kubernetes.io/cniargs/"
CNI_EXTENSION_ANNOTATION: Final = "extension.network.kubernetes.io/cni"
#: iSulad's spelling ("MUTLINET"), kept because plugins written for iSulad look for it.
CNI_EXTENSION_ARG: Final = "CNI_MUTLINET_EXTENSION"

# --- Limits ----------------------------------------------------------------------------------

#: Largest value accepted for an annotation this module interprets (protects the server from
#: parsing megabytes of JSON per sandbox request).
MAX_ANNOTATION_VALUE_BYTES: Final = 64 * 1024
MIN_BANDWIDTH_BPS: Final = 1_000  # 1k, as containerd
MAX_BANDWIDTH_BPS: Final = 10**15  # 1P, as containerd
BANDWIDTH_BURST: Final = 2**32 - 1  # math.MaxUint32, what containerd sends for a set direction
MAX_IFNAME_BYTES: Final = 15
#: Extra planes one pod may ask for, through either annotation: each takes an address of a
#: network other pods share, so one pod must not be able to take them all.
MAX_EXTRA_PLANES: Final = 32


def ifname_problem(ifname: str) -> str | None:
    """Why `ifname` cannot name a pod's interface, or None. Linux and libcni refuse more than
    15 bytes, `.` and `..`, and `/`, `:`, NUL or whitespace; the kernel takes `%` as a template
    (`net%d` becomes net0, not what was asked), and `all` and `default` are the sysctl dirs
    (net.ipv4.conf.all) that plugins write under."""
    if len(ifname.encode("utf-8")) > MAX_IFNAME_BYTES:
        return f"is longer than {MAX_IFNAME_BYTES} bytes"
    if ifname in (".", "..", "all", "default"):
        return "is not a valid interface name"
    if any(c in "/:\0" or c.isspace() for c in ifname):
        return "is not a valid interface name: it contains '/', ':', NUL or whitespace"
    if "%" in ifname:
        return "is not a valid interface name: it contains '%' (the kernel would pick the name)"
    return None
#: Largest quantity `parse_quantity` returns (Kubernetes' Quantity.Value() is an int64).
MAX_QUANTITY: Final = 2**63 - 1
_MAX_QUANTITY_DIGITS: Final = 100  # significant digits; Python refuses int() of > 4300 digits

NETWORK_NAME_RE: Final = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
CIDR_RE: Final = re.compile(r"[^/]+/[0-9]{1,3}")
_QUANTITY_RE: Final = re.compile(
    r"(?P<sign>[+-]?)(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|[mkMGTPE])?"
)
_DECIMAL_SUFFIX: Final = {"m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIX: Final = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_CRI_PROTOCOLS: Final = {0: "tcp", 1: "udp", 2: "sctp"}
_PROTOCOLS: Final = ("tcp", "udp", "sctp")


# --- Readers ---------------------------------------------------------------------------------


def annotation_value(annotations: Mapping[str, str] | None, key: str) -> str | None:
    """The value of one interpreted annotation, type- and size-checked; None when absent."""
    if not annotations or key not in annotations:
        return None
    value = annotations[key]
    if not isinstance(value, str):
        raise AnnotationError(key, f"value must be a string, got {type_name(value)}")
    check_text(key, value)
    size = len(value.encode("utf-8"))
    if size > MAX_ANNOTATION_VALUE_BYTES:
        raise AnnotationError(key, f"value is {size} bytes, larger than the {MAX_ANNOTATION_VALUE_BYTES}-byte limit")
    return value


class _DuplicateKey(Exception):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_json(key: str, text: str) -> Any:
    """Strict JSON: no NaN/Infinity, no duplicate object keys (which silently lose data)."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except _DuplicateKey as exc:
        raise AnnotationError(key, f"invalid JSON: duplicate object key {show(exc.args[0])}") from None
    except RecursionError:
        raise AnnotationError(key, "invalid JSON: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise AnnotationError(key, f"invalid JSON: {exc}") from None
    except ValueError as exc:  # NaN/Infinity, or a number beyond Python's int() digit limit
        reason = str(exc) if "not valid JSON" in str(exc) else "a number has too many digits"
        raise AnnotationError(key, f"invalid JSON: {reason}") from None


def check_fields(key: str, where: str, obj: Any, required: tuple[str, ...],
                  optional: tuple[str, ...]) -> dict[str, Any]:
    """`obj` must be a JSON object with all `required` fields and no unknown ones (typos)."""
    if not isinstance(obj, dict):
        raise AnnotationError(key, f"{where}must be an object, got {type_name(obj)}")
    unknown = sorted(set(obj) - set(required) - set(optional))
    if unknown:
        allowed = ", ".join(required + optional)
        raise AnnotationError(key, f"{where}unknown field {show(unknown[0])} (allowed: {allowed})")
    for name in required:
        if name not in obj:
            raise AnnotationError(key, f"{where}missing field {show(name)}")
    return obj


def port_number(key: str, what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnnotationError(key, f"{what}must be an integer, got {type_name(value)}")
    if not 1 <= value <= 65535:
        raise AnnotationError(key, f"{what}{value} is out of range 1..65535")
    return value


def ip_address(key: str, what: str, value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A plain IP address (no IPv6 zone: Go's net.ParseIP, used by the plugins, refuses it)."""
    if not isinstance(value, str):
        raise AnnotationError(key, f"{what}must be a string, got {type_name(value)}")
    try:
        if "%" in value:
            raise ValueError
        return ipaddress.ip_address(value)
    except ValueError:
        raise AnnotationError(key, f"{what}{show(value)} is not an IP address") from None


def parse_cidr(key: str, what: str, value: Any, *, strict: bool) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR in `addr/prefix` form; `strict` also refuses host bits set (`10.0.0.1/24`)."""
    if not isinstance(value, str):
        raise AnnotationError(key, f"{what}must be a string, got {type_name(value)}")
    if not CIDR_RE.fullmatch(value) or "%" in value:
        raise AnnotationError(key, f"{what}{show(value)} is not a CIDR (address/prefix-length)")
    try:
        return ipaddress.ip_network(value, strict=strict)
    except ValueError as exc:
        raise AnnotationError(key, f"{what}{show(value)} is not a valid CIDR: {exc}") from None
