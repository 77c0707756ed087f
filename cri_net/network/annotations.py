"""Pod annotations and CRI inputs -> CNI capability args and CNI_ARGS.

A pod reaches the network code as CRI fields (port mappings, DNS config, the runtime's pod CIDR)
plus free-form annotations written by users. Everything here is a small pure function that
turns one of those inputs into the wire shape CNI plugins expect (`runtimeConfig` capability
args, `CNI_ARGS` pairs), so that:

- all validation happens before any side effect: a bad value raises `AnnotationError` naming
  the annotation key (or CRI field path) and what is wrong, and the caller attaches nothing;
- nothing user-controlled reaches a plugin's environment or stdin unchecked (a NUL, `;` or
  `=` in a CNI_ARGS value or an interface name would corrupt or crash the plugin call);
- iSulad's bugs are not copied (lost host_ip, SCTP mapped to tcp, all-zero bandwidth, holes in
  the extra-network list), while its annotation names stay accepted for compatibility.

The seed API's `network_module_insert_portmapping/bandwidth/iprange` are `insert_portmapping`,
`insert_bandwidth` and `insert_iprange`: each parses one annotation value and returns a new
capability dict with the result added.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Collection, Iterable, Mapping
from fractions import Fraction
from typing import Any, Final, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer

logger = logging.getLogger("cri_net.network")

# --- Annotation keys -------------------------------------------------------------------------

PORT_MAPPINGS_ANNOTATION: Final = "cri-net.io/port-mappings"
IP_RANGES_ANNOTATION: Final = "cri-net.io/ip-ranges"
INGRESS_BANDWIDTH_ANNOTATION: Final = "kubernetes.io/ingress-bandwidth"
EGRESS_BANDWIDTH_ANNOTATION: Final = "kubernetes.io/egress-bandwidth"
#: iSulad's misspelling of the egress key; accepted (deprecated) so iSulad users keep working.
EGRESS_BANDWIDTH_MISSPELT_ANNOTATION: Final = "kubernetes.io/engress-bandwidth"
EXTRA_NETWORKS_ANNOTATION: Final = "network.alpha.kubernetes.io/network"
CNI_ARGS_ANNOTATION_PREFIX: Final = "extension.network.kubernetes.io/cniargs/"
CNI_EXTENSION_ANNOTATION: Final = "extension.network.kubernetes.io/cni"
#: iSulad's spelling ("MUTLINET"), kept because plugins written for iSulad look for it.
CNI_EXTENSION_ARG: Final = "CNI_MUTLINET_EXTENSION"

# --- Capability keys (the names plugins declare in their `capabilities` map) ---------------

CAP_PORT_MAPPINGS: Final = "portMappings"
CAP_BANDWIDTH: Final = "bandwidth"
CAP_IP_RANGES: Final = "ipRanges"
CAP_DNS: Final = "dns"
CAP_POD_ANNOTATIONS: Final = "io.kubernetes.cri.pod-annotations"

# --- Limits ----------------------------------------------------------------------------------

#: Largest value accepted for an annotation this module interprets (protects the server from
#: parsing megabytes of JSON per sandbox request).
MAX_ANNOTATION_VALUE_BYTES: Final = 64 * 1024
MIN_BANDWIDTH_BPS: Final = 1_000  # 1k, as containerd
MAX_BANDWIDTH_BPS: Final = 10**15  # 1P, as containerd
BANDWIDTH_BURST: Final = 2**32 - 1  # math.MaxUint32, what containerd sends for a set direction
MAX_IFNAME_BYTES: Final = 15
#: Largest quantity `parse_quantity` returns (Kubernetes' Quantity.Value() is an int64).
MAX_QUANTITY: Final = 2**63 - 1
_MAX_QUANTITY_DIGITS: Final = 100  # significant digits; Python refuses int() of > 4300 digits

_BUILTIN_CNI_ARG_KEYS: Final = frozenset(
    {"IgnoreUnknown", "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"}
)
_NETWORK_NAME_RE: Final = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
_CIDR_RE: Final = re.compile(r"[^/]+/[0-9]{1,3}")
_QUANTITY_RE: Final = re.compile(
    r"(?P<sign>[+-]?)(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|[mkMGTPE])?"
)
_DECIMAL_SUFFIX: Final = {"m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIX: Final = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_CRI_PROTOCOLS: Final = {0: "tcp", 1: "udp", 2: "sctp"}
_PROTOCOLS: Final = ("tcp", "udp", "sctp")


class AnnotationError(ValueError):
    """A pod annotation or CRI input is invalid; `key` says which one, `reason` what is wrong.

    `key` is the annotation key (`kubernetes.io/ingress-bandwidth`) or a CRI field path
    (`port_mappings[2].host_port`), so the error the kubelet shows points at the culprit.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(key, reason)
        self.key = key
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}"


# --- Wire models -----------------------------------------------------------------------------


class _Wire(BaseModel):
    """Base of the wire shapes: immutable, strict, built by field name or by wire name."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid", validate_by_name=True,
                              validate_by_alias=True)


class PortMapping(_Wire):
    """One `portMappings` entry, as the portmap plugin reads it."""

    host_port: int = Field(alias="hostPort", ge=1, le=65535)
    container_port: int = Field(alias="containerPort", ge=1, le=65535)
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    host_ip: str = Field(default="", alias="hostIP")

    @model_serializer
    def _wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hostPort": self.host_port, "containerPort": self.container_port,
                               "protocol": self.protocol}
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out


class Bandwidth(_Wire):
    """The `bandwidth` capability (bits/s); a direction that is not set is not sent."""

    ingress_rate: int | None = Field(default=None, alias="ingressRate", ge=0)
    ingress_burst: int | None = Field(default=None, alias="ingressBurst", ge=0)
    egress_rate: int | None = Field(default=None, alias="egressRate", ge=0)
    egress_burst: int | None = Field(default=None, alias="egressBurst", ge=0)

    @model_serializer
    def _wire(self) -> dict[str, Any]:
        pairs = (("ingressRate", self.ingress_rate), ("ingressBurst", self.ingress_burst),
                 ("egressRate", self.egress_rate), ("egressBurst", self.egress_burst))
        return {k: v for k, v in pairs if v is not None}


class IPRange(_Wire):
    """One `ipRanges` range (host-local's shape); empty fields are not sent."""

    subnet: str
    range_start: str = Field(default="", alias="rangeStart")
    range_end: str = Field(default="", alias="rangeEnd")
    gateway: str = ""

    @model_serializer
    def _wire(self) -> dict[str, Any]:
        pairs = (("subnet", self.subnet), ("rangeStart", self.range_start),
                 ("rangeEnd", self.range_end), ("gateway", self.gateway))
        return {k: v for k, v in pairs if v}


class ExtraNetwork(_Wire):
    """An extra network plane: attach network `name` on interface `interface`."""

    name: str
    interface: str


class DNSConfig(_Wire):
    """The `dns` capability, with the keys containerd sends (empty lists are not sent)."""

    servers: list[str] = Field(default_factory=list)
    searches: list[str] = Field(default_factory=list)
    options: list[str] = Field(default_factory=list)

    @model_serializer
    def _wire(self) -> dict[str, Any]:
        pairs = (("servers", self.servers), ("searches", self.searches), ("options", self.options))
        return {k: list(v) for k, v in pairs if v}


# --- Small helpers ---------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "integer", float: "number"}.get(type(value), type(value).__name__)


def _show(value: Any, limit: int = 60) -> str:
    """repr() of a user value, shortened so an error never echoes 64 KiB back."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _check_text(key: str, text: str) -> None:
    """Refuse text that cannot go into a plugin's environment or stdin as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise AnnotationError(key, "is not valid UTF-8 text") from None


def _annotation(annotations: Mapping[str, str] | None, key: str) -> str | None:
    """The value of one interpreted annotation, type- and size-checked; None when absent."""
    if not annotations or key not in annotations:
        return None
    value = annotations[key]
    if not isinstance(value, str):
        raise AnnotationError(key, f"value must be a string, got {_type_name(value)}")
    _check_text(key, value)
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


def _load_json(key: str, text: str) -> Any:
    """Strict JSON: no NaN/Infinity, no duplicate object keys (which silently lose data)."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except _DuplicateKey as exc:
        raise AnnotationError(key, f"invalid JSON: duplicate object key {_show(exc.args[0])}") from None
    except RecursionError:
        raise AnnotationError(key, "invalid JSON: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise AnnotationError(key, f"invalid JSON: {exc}") from None
    except ValueError as exc:  # NaN/Infinity, or a number beyond Python's int() digit limit
        reason = str(exc) if "not valid JSON" in str(exc) else "a number has too many digits"
        raise AnnotationError(key, f"invalid JSON: {reason}") from None


def _check_fields(key: str, where: str, obj: Any, required: tuple[str, ...],
                  optional: tuple[str, ...]) -> dict[str, Any]:
    """`obj` must be a JSON object with all `required` fields and no unknown ones (typos)."""
    if not isinstance(obj, dict):
        raise AnnotationError(key, f"{where}must be an object, got {_type_name(obj)}")
    unknown = sorted(set(obj) - set(required) - set(optional))
    if unknown:
        allowed = ", ".join(required + optional)
        raise AnnotationError(key, f"{where}unknown field {_show(unknown[0])} (allowed: {allowed})")
    for name in required:
        if name not in obj:
            raise AnnotationError(key, f"{where}missing field {_show(name)}")
    return obj


def _port(key: str, what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnnotationError(key, f"{what}must be an integer, got {_type_name(value)}")
    if not 1 <= value <= 65535:
        raise AnnotationError(key, f"{what}{value} is out of range 1..65535")
    return value


def _ip(key: str, what: str, value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A plain IP address (no IPv6 zone: Go's net.ParseIP, used by the plugins, refuses it)."""
    if not isinstance(value, str):
        raise AnnotationError(key, f"{what}must be a string, got {_type_name(value)}")
    try:
        if "%" in value:
            raise ValueError
        return ipaddress.ip_address(value)
    except ValueError:
        raise AnnotationError(key, f"{what}{_show(value)} is not an IP address") from None


def _cidr(key: str, what: str, value: Any, *, strict: bool) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR in `addr/prefix` form; `strict` also refuses host bits set (`10.0.0.1/24`)."""
    if not isinstance(value, str):
        raise AnnotationError(key, f"{what}must be a string, got {_type_name(value)}")
    if not _CIDR_RE.fullmatch(value) or "%" in value:
        raise AnnotationError(key, f"{what}{_show(value)} is not a CIDR (address/prefix-length)")
    try:
        return ipaddress.ip_network(value, strict=strict)
    except ValueError as exc:
        raise AnnotationError(key, f"{what}{_show(value)} is not a valid CIDR: {exc}") from None


# --- Special-purpose address space ----------------------------------------------------------

#: Address blocks no pod network may use, with why: assigning one to a bridge or routing it
#: to pods breaks the host (loopback, 0.0.0.0/8), or the address is never a unicast host
#: address on a link (multicast, link-local, reserved, broadcast, IPv4-mapped, unspecified).
SPECIAL_PURPOSE_NETWORKS: Final = tuple((ipaddress.ip_network(cidr), why) for cidr, why in (
    ("0.0.0.0/8", "'this network' (0.0.0.0/8)"),
    ("127.0.0.0/8", "loopback (127.0.0.0/8)"),
    ("169.254.0.0/16", "link-local (169.254.0.0/16)"),
    ("224.0.0.0/4", "multicast (224.0.0.0/4)"),
    ("240.0.0.0/4", "reserved or broadcast (240.0.0.0/4)"),
    ("::/8", "unspecified, loopback or IPv4-mapped (::/8)"),
    ("fe80::/10", "link-local (fe80::/10)"),
    ("fec0::/10", "deprecated site-local (fec0::/10)"),
    ("ff00::/8", "multicast (ff00::/8)"),
))


def special_purpose(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str | None:
    """Why `net` can never be a pod or bridge subnet (it overlaps a special-purpose block), or
    None. Overlap, not containment: 0.0.0.0/0 contains every special block and is refused."""
    for block, why in SPECIAL_PURPOSE_NETWORKS:
        if block.version == net.version and block.overlaps(net):
            return f"overlaps {why}"
    return None


def check_allowed_ip_ranges(key: str, sets: Iterable[Iterable[IPRange]],
                            allowed: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] | None) -> None:
    """Ranges a pod asked for must lie inside what the operator allowed (`allowed`: the pod
    CIDR and the network's allow-list); with nothing allowed the pod may ask for nothing."""
    allowed = list(allowed or ())
    for i, range_set in enumerate(sets):
        for j, r in enumerate(range_set):
            net = ipaddress.ip_network(r.subnet)
            if not allowed:
                raise AnnotationError(key, f"range set {i}, range {j}: subnet {r.subnet} refused: the operator "
                                           "allows no pod-chosen ranges (no pod CIDR from UpdateRuntimeConfig and "
                                           'no "criNet": {"allowedIPRanges": [...]} in the network config)')
            if not any(a.version == net.version and net.subnet_of(a) for a in allowed):  # type: ignore[arg-type]
                shown = ", ".join(str(a) for a in allowed)
                raise AnnotationError(key, f"range set {i}, range {j}: subnet {r.subnet} is outside the allowed "
                                           f"ranges ({shown})")


# --- Quantities and bandwidth ----------------------------------------------------------------


def parse_quantity(text: str, key: str = "quantity") -> int:
    """Parse a Kubernetes resource.Quantity ("10M", "1Mi", "1.5k", "1e3", "100m") to an int.

    Kubernetes' grammar (no surrounding whitespace): an optionally signed decimal number, then
    a decimal SI suffix (m k M G T P E), a binary suffix (Ki .. Ei) or an exponent (e3, E-2).
    Fractions are rounded up, as Kubernetes' Quantity.Value() does; negative values, garbage
    and values above 2**63-1 raise `AnnotationError(key, ...)`.
    """
    if not isinstance(text, str):
        raise AnnotationError(key, f"quantity must be a string, got {_type_name(text)}")
    if not text:
        raise AnnotationError(key, "quantity is empty")
    m = _QUANTITY_RE.fullmatch(text)
    if m is None or not (m["int"] or m["frac"]):
        raise AnnotationError(key, f"{_show(text)} is not a quantity (like 10M, 1Mi, 1.5k or 1e3)")
    int_part, frac_part, suffix = m["int"], m["frac"] or "", m["suffix"] or ""
    digits = (int_part + frac_part).lstrip("0")
    if not digits:
        return 0  # zero, whatever its sign, suffix or exponent
    if m["sign"] == "-":
        raise AnnotationError(key, f"{_show(text)} is negative")
    exp10 = -len(frac_part)
    stripped = digits.rstrip("0")
    exp10 += len(digits) - len(stripped)
    digits = stripped
    if len(digits) > _MAX_QUANTITY_DIGITS:
        raise AnnotationError(key, f"quantity has more than {_MAX_QUANTITY_DIGITS} significant digits")
    binary = 0
    if suffix in _BINARY_SUFFIX:
        binary = _BINARY_SUFFIX[suffix]
    elif suffix in _DECIMAL_SUFFIX:
        exp10 += _DECIMAL_SUFFIX[suffix]
    else:  # exponent: e3, E-2, e+05
        exp_digits = suffix[1:].lstrip("+-").lstrip("0") or "0"
        negative_exp = suffix[1] == "-"
        if len(exp_digits) > 6:
            if negative_exp:
                return 1  # a positive value times 10**-huge: rounds up to 1
            raise AnnotationError(key, f"quantity is larger than {MAX_QUANTITY}")
        exp10 += -int(exp_digits) if negative_exp else int(exp_digits)
    magnitude = len(digits) + exp10  # value < 10**magnitude (before a binary suffix <= 2**60)
    if magnitude > 40:
        raise AnnotationError(key, f"quantity is larger than {MAX_QUANTITY}")
    if magnitude < -40:
        return 1
    value = Fraction(int(digits)) * Fraction(10) ** exp10 * 2 ** (10 * binary)
    result = -(-value.numerator // value.denominator)  # ceiling
    if result > MAX_QUANTITY:
        raise AnnotationError(key, f"quantity is larger than {MAX_QUANTITY}")
    return result


def _bandwidth_rate(key: str, value: str) -> int:
    rate = parse_quantity(value, key)
    if not MIN_BANDWIDTH_BPS <= rate <= MAX_BANDWIDTH_BPS:
        raise AnnotationError(key, f"{_show(value)} is {rate} bits/s, out of range 1k..1P "
                                   f"({MIN_BANDWIDTH_BPS}..{MAX_BANDWIDTH_BPS})")
    return rate


def _egress_value(annotations: Mapping[str, str] | None, pod: str) -> tuple[str, str] | None:
    """(key, value) of the egress annotation, honouring iSulad's misspelt alias."""
    canonical = _annotation(annotations, EGRESS_BANDWIDTH_ANNOTATION)
    alias = _annotation(annotations, EGRESS_BANDWIDTH_MISSPELT_ANNOTATION)
    if alias is None:
        return None if canonical is None else (EGRESS_BANDWIDTH_ANNOTATION, canonical)
    logger.warning("deprecated annotation key kubernetes.io/engress-bandwidth (misspelt), "
                   "use kubernetes.io/egress-bandwidth",
                   extra={"fields": {"key": EGRESS_BANDWIDTH_MISSPELT_ANNOTATION, "pod": pod}})
    if canonical is None:
        return EGRESS_BANDWIDTH_MISSPELT_ANNOTATION, alias
    if canonical != alias:
        raise AnnotationError(EGRESS_BANDWIDTH_MISSPELT_ANNOTATION,
                              f"{_show(alias)} conflicts with {EGRESS_BANDWIDTH_ANNOTATION}={_show(canonical)}; "
                              f"remove the deprecated key")
    return EGRESS_BANDWIDTH_ANNOTATION, canonical


def parse_bandwidth(annotations: Mapping[str, str] | None, *, pod: str = "") -> Bandwidth | None:
    """The `bandwidth` capability from the Kubernetes bandwidth annotations, None when unset.

    Rates are bits/s between 1k and 1P; a set direction gets burst 4294967295 (containerd's
    choice, effectively "no burst limit"); an unset direction is not sent, fixing iSulad's
    all-zero capability. `pod` only labels the deprecation warning for the misspelt key.
    """
    ingress = _annotation(annotations, INGRESS_BANDWIDTH_ANNOTATION)
    egress = _egress_value(annotations, pod)
    if ingress is None and egress is None:
        return None
    fields: dict[str, int] = {}
    if ingress is not None:
        fields["ingress_rate"] = _bandwidth_rate(INGRESS_BANDWIDTH_ANNOTATION, ingress)
        fields["ingress_burst"] = BANDWIDTH_BURST
    if egress is not None:
        fields["egress_rate"] = _bandwidth_rate(*egress)
        fields["egress_burst"] = BANDWIDTH_BURST
    return Bandwidth(**fields)


# --- Port mappings ---------------------------------------------------------------------------


def _get(obj: Any, name: str) -> Any:
    """A field of a dict-like or attribute object (protobuf message, dataclass)."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _cri_protocol(key: str, value: Any) -> str:
    """CRI protocol: enum number (TCP=0, UDP=1, SCTP=2) or name, any case; unset = TCP."""
    if value is None or value == "":
        return "tcp"
    if isinstance(value, bool):
        raise AnnotationError(key, "must be a protocol name or number, got boolean")
    if isinstance(value, int):
        if int(value) not in _CRI_PROTOCOLS:
            raise AnnotationError(key, f"unknown protocol number {int(value)} (TCP=0, UDP=1, SCTP=2)")
        return _CRI_PROTOCOLS[int(value)]
    if isinstance(value, str):
        name = value.lower()
        if name not in _PROTOCOLS:
            raise AnnotationError(key, f"unknown protocol {_show(value)} (want TCP, UDP or SCTP)")
        return name
    raise AnnotationError(key, f"must be a protocol name or number, got {_type_name(value)}")


def _host_ip(key: str, what: str, value: Any) -> tuple[str, str]:
    """(as given, normalised) host IP; empty means all addresses."""
    if value is None or value == "":
        return "", ""
    return value, str(_ip(key, what, value))


class _Mapping(NamedTuple):
    """A validated mapping plus where it came from, for the duplicate check's error."""

    key: str  # error key: CRI path or annotation key
    where: str  # reason prefix inside that key ("entry 1: ") or ""
    label: str  # how another entry's error refers to this one
    pm: PortMapping
    ident: tuple[int, str, str]  # (hostPort, protocol, normalised hostIP)


def _cri_port_mappings(cri_mappings: Iterable[Any] | None) -> list[_Mapping]:
    out: list[_Mapping] = []
    for i, pm in enumerate(cri_mappings or ()):
        path = f"port_mappings[{i}]"
        if not isinstance(pm, Mapping) and not hasattr(pm, "host_port"):
            raise AnnotationError(path, f"must be a port mapping (host_port, container_port, protocol, host_ip), "
                                        f"got {_type_name(pm)}")
        host_port = _get(pm, "host_port")
        if host_port is None or (type(host_port) is not bool and isinstance(host_port, int) and host_port == 0):
            continue  # no host port: nothing for the portmap plugin to do
        host_port = _port(f"{path}.host_port", "", host_port)
        container_port = _port(f"{path}.container_port", "", _get(pm, "container_port"))
        protocol = _cri_protocol(f"{path}.protocol", _get(pm, "protocol"))
        host_ip, norm_ip = _host_ip(f"{path}.host_ip", "", _get(pm, "host_ip"))
        mapping = PortMapping(host_port=host_port, container_port=container_port, protocol=protocol, host_ip=host_ip)
        out.append(_Mapping(path, "", path, mapping, (host_port, protocol, norm_ip)))
    return out


def _annotation_port_mappings(key: str, value: str) -> list[_Mapping]:
    doc = _load_json(key, value)
    if not isinstance(doc, list):
        raise AnnotationError(key, f"must be a JSON array of port mappings, got {_type_name(doc)}")
    out: list[_Mapping] = []
    for i, entry in enumerate(doc):
        where = f"entry {i}: "
        obj = _check_fields(key, where, entry, ("hostPort", "containerPort"), ("protocol", "hostIP"))
        host_port = _port(key, f"{where}hostPort ", obj["hostPort"])
        container_port = _port(key, f"{where}containerPort ", obj["containerPort"])
        protocol = obj.get("protocol", "tcp")
        if not isinstance(protocol, str) or protocol.lower() not in _PROTOCOLS:
            raise AnnotationError(key, f"{where}protocol must be tcp, udp or sctp, got {_show(protocol)}")
        protocol = protocol.lower()
        host_ip, norm_ip = _host_ip(key, f"{where}hostIP ", obj.get("hostIP"))
        mapping = PortMapping(host_port=host_port, container_port=container_port, protocol=protocol, host_ip=host_ip)
        out.append(_Mapping(key, where, f"{key} entry {i}", mapping, (host_port, protocol, norm_ip)))
    return out


def _merge_port_mappings(items: Iterable[_Mapping], seen: dict[tuple[int, str, str], str] | None = None,
                         ) -> list[PortMapping]:
    """Refuse two mappings of one (hostPort, protocol, hostIP): the second could never work."""
    seen = {} if seen is None else dict(seen)
    out: list[PortMapping] = []
    for item in items:
        if item.ident in seen:
            port, proto, ip = item.ident
            raise AnnotationError(item.key, f"{item.where}duplicates {seen[item.ident]}: host port "
                                            f"{port}/{proto} on {ip or 'all addresses'}")
        seen[item.ident] = item.label
        out.append(item.pm)
    return out


def parse_port_mappings(cri_mappings: Iterable[Any] | None,
                        annotations: Mapping[str, str] | None) -> list[PortMapping]:
    """The `portMappings` capability: CRI port_mappings first, then `cri-net.io/port-mappings`.

    CRI entries (dicts or protobuf messages with host_port, container_port, protocol, host_ip)
    with host_port 0 are skipped unchecked (kubelet sends every container port); protocol may
    be TCP/UDP/SCTP by name or number and is sent lowercase; host_ip is kept (iSulad drops it).
    A second mapping of the same (hostPort, protocol, hostIP) is an error.
    """
    items = _cri_port_mappings(cri_mappings)
    value = _annotation(annotations, PORT_MAPPINGS_ANNOTATION)
    if value is not None:
        items += _annotation_port_mappings(PORT_MAPPINGS_ANNOTATION, value)
    return _merge_port_mappings(items)


def insert_portmapping(value: str, capabilities: Mapping[str, Any]) -> dict[str, Any]:
    """Seed API: parse one `cri-net.io/port-mappings` value and append it to `portMappings`.

    Returns a new capability dict (the input is not modified); duplicates against mappings
    already present are refused like in `parse_port_mappings`.
    """
    key = PORT_MAPPINGS_ANNOTATION
    value = _annotation({key: value}, key) or ""
    try:
        existing = [pm if isinstance(pm, PortMapping) else PortMapping.model_validate(pm)
                    for pm in capabilities.get(CAP_PORT_MAPPINGS, ())]
    except ValidationError as exc:
        raise AnnotationError(CAP_PORT_MAPPINGS, f"existing capability is invalid: {exc}") from None
    seen = {(pm.host_port, pm.protocol, _host_ip(CAP_PORT_MAPPINGS, f"[{i}].hostIP ", pm.host_ip)[1]):
            f"{CAP_PORT_MAPPINGS}[{i}]" for i, pm in enumerate(existing)}
    added = _merge_port_mappings(_annotation_port_mappings(key, value), seen)
    merged = [pm.model_dump() for pm in existing + added]
    out = dict(capabilities)
    if merged:
        out[CAP_PORT_MAPPINGS] = merged
    return out


# --- IP ranges -------------------------------------------------------------------------------


def _ip_range(key: str, where: str, entry: Any) -> IPRange:
    obj = _check_fields(key, where, entry, ("subnet",), ("rangeStart", "rangeEnd", "gateway"))
    net = _cidr(key, f"{where}subnet ", obj["subnet"], strict=True)
    why = special_purpose(net)
    if why is not None:
        raise AnnotationError(key, f"{where}subnet {obj['subnet']} {why}: never a pod range")
    addrs: dict[str, Any] = {}
    for name in ("rangeStart", "rangeEnd", "gateway"):
        raw = obj.get(name, "")
        if raw == "":
            continue
        addr = _ip(key, f"{where}{name} ", raw)
        if addr.version != net.version or addr not in net:
            raise AnnotationError(key, f"{where}{name} {_show(raw)} is outside subnet {obj['subnet']}")
        addrs[name] = addr
    gateway = addrs.get("gateway")
    if gateway is not None and net.num_addresses > 2 and gateway in (net.network_address, net.broadcast_address):
        raise AnnotationError(key, f"{where}gateway {_show(obj['gateway'])} is the network or broadcast address "
                                   f"of {obj['subnet']}")
    if "rangeStart" in addrs and "rangeEnd" in addrs and addrs["rangeStart"] > addrs["rangeEnd"]:
        raise AnnotationError(key, f"{where}rangeStart {_show(obj['rangeStart'])} is after "
                                   f"rangeEnd {_show(obj['rangeEnd'])}")
    return IPRange(subnet=obj["subnet"], range_start=obj.get("rangeStart", ""),
                   range_end=obj.get("rangeEnd", ""), gateway=obj.get("gateway", ""))


def _annotation_ip_ranges(key: str, value: str) -> list[list[IPRange]]:
    doc = _load_json(key, value)
    if not isinstance(doc, list) or not doc:
        got = "an empty array" if isinstance(doc, list) else _type_name(doc)
        raise AnnotationError(key, f'must be a non-empty JSON array of range sets ([[{{"subnet": ...}}]]), got {got}')
    sets: list[list[IPRange]] = []
    for i, range_set in enumerate(doc):
        if not isinstance(range_set, list) or not range_set:
            got = "an empty array" if isinstance(range_set, list) else _type_name(range_set)
            raise AnnotationError(key, f"range set {i}: must be a non-empty array of ranges, got {got}")
        ranges = [_ip_range(key, f"range set {i}, range {j}: ", r) for j, r in enumerate(range_set)]
        families = {ipaddress.ip_network(r.subnet).version for r in ranges}
        if len(families) > 1:
            raise AnnotationError(key, f"range set {i}: mixes IPv4 and IPv6 subnets (one set allocates one address)")
        sets.append(ranges)
    return sets


def _pod_cidr_ranges(pod_cidr: str | None) -> list[list[IPRange]] | None:
    """`[[{"subnet": cidr}]]` per CIDR of the runtime's (possibly dual-stack) pod CIDR."""
    key = "pod_cidr"
    if pod_cidr is None:
        return None
    if not isinstance(pod_cidr, str):
        raise AnnotationError(key, f"must be a string, got {_type_name(pod_cidr)}")
    if not pod_cidr.strip():
        return None
    sets: list[list[IPRange]] = []
    for i, part in enumerate(pod_cidr.split(",")):
        cidr = part.strip()
        if not cidr:
            raise AnnotationError(key, f"{_show(pod_cidr)}: entry {i} is empty")
        _cidr(key, "", cidr, strict=False)  # the kubelet's value is used as given
        sets.append([IPRange(subnet=cidr)])
    return sets


def parse_ip_ranges(annotations: Mapping[str, str] | None, pod_cidr: str | None, *,
                    allowed: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] | None = None,
                    ) -> list[list[IPRange]] | None:
    """The `ipRanges` capability: `cri-net.io/ip-ranges`, else the runtime's pod CIDR, else None.

    The annotation is `[[{subnet, rangeStart, rangeEnd, gateway}]]`: every subnet a CIDR
    without host bits, every address inside its subnet, rangeStart <= rangeEnd, one IP family
    per range set. A dual-stack pod CIDR ("10.0.0.0/24,fd00::/64") gives one set per CIDR.
    The pod CIDR is validated even when the annotation overrides it.

    A pod author writes the annotation, so its ranges must never be special-purpose and must
    lie inside `allowed` (the pod CIDR's networks plus the operator's allow-list): without
    anything allowed, the annotation is refused (it would set the host bridge's address).
    """
    default = _pod_cidr_ranges(pod_cidr)
    value = _annotation(annotations, IP_RANGES_ANNOTATION)
    if value is not None:
        sets = _annotation_ip_ranges(IP_RANGES_ANNOTATION, value)
        pod_nets = [ipaddress.ip_network(r.subnet, strict=False) for s in default or () for r in s]
        check_allowed_ip_ranges(IP_RANGES_ANNOTATION, sets, pod_nets + list(allowed or ()))
        return sets
    return default


def insert_iprange(value: str, capabilities: Mapping[str, Any]) -> dict[str, Any]:
    """Seed API: parse one `cri-net.io/ip-ranges` value and append its range sets to `ipRanges`.

    Returns a new capability dict; the input is not modified.
    """
    key = IP_RANGES_ANNOTATION
    sets = _annotation_ip_ranges(key, _annotation({key: value}, key) or "")
    out = dict(capabilities)
    out[CAP_IP_RANGES] = list(capabilities.get(CAP_IP_RANGES, ())) + [[r.model_dump() for r in s] for s in sets]
    return out


def insert_bandwidth(value: str, capabilities: Mapping[str, Any],
                     direction: Literal["ingress", "egress"] = "ingress") -> dict[str, Any]:
    """Seed API: parse one bandwidth annotation value and set that direction in `bandwidth`.

    Returns a new capability dict; the other direction, if present, is kept.
    """
    if direction not in ("ingress", "egress"):
        raise AnnotationError("direction", f"must be 'ingress' or 'egress', not {_show(direction)}")
    key = INGRESS_BANDWIDTH_ANNOTATION if direction == "ingress" else EGRESS_BANDWIDTH_ANNOTATION
    rate = _bandwidth_rate(key, _annotation({key: value}, key) or "")
    bw = dict(capabilities.get(CAP_BANDWIDTH) or {})
    bw[f"{direction}Rate"] = rate
    bw[f"{direction}Burst"] = BANDWIDTH_BURST
    out = dict(capabilities)
    out[CAP_BANDWIDTH] = Bandwidth.model_validate(bw).model_dump()
    return out


# --- Extra network planes --------------------------------------------------------------------


def _interface_name(key: str, ifname: Any, what: str = "") -> str:
    """Linux/libcni interface-name rules: 1..15 bytes, not . or .., no / : whitespace or NUL."""
    if not isinstance(ifname, str):
        raise AnnotationError(key, f"{what}interface must be a string, got {_type_name(ifname)}")
    if not ifname:
        raise AnnotationError(key, f"{what}interface is empty")
    _check_text(key, ifname)
    if len(ifname.encode("utf-8")) > MAX_IFNAME_BYTES:
        raise AnnotationError(key, f"{what}interface {_show(ifname)} is longer than {MAX_IFNAME_BYTES} bytes")
    if ifname in (".", ".."):
        raise AnnotationError(key, f"{what}interface {_show(ifname)} is not a valid name")
    if any(c in "/:\0" or c.isspace() for c in ifname):
        raise AnnotationError(key, f"{what}interface {_show(ifname)} contains '/', ':', NUL or whitespace")
    return ifname


def parse_extra_networks(annotations: Mapping[str, str] | None, *,
                         reserved_interfaces: Collection[str] = ("lo", "eth0")) -> list[ExtraNetwork]:
    """Extra network planes from `network.alpha.kubernetes.io/network`, in annotation order.

    Every entry needs a network name (`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`) and a valid interface
    name; a bad entry fails the pod (iSulad instead left a hole and dropped an entry). Two
    planes on one interface, or a plane on a `reserved_interfaces` name (loopback, the default
    network's interface), would clash at attach time, so they are refused here.
    """
    key = EXTRA_NETWORKS_ANNOTATION
    value = _annotation(annotations, key)
    if value is None:
        return []
    doc = _load_json(key, value)
    if not isinstance(doc, list):
        raise AnnotationError(key, f"must be a JSON array of {{name, interface}}, got {_type_name(doc)}")
    out: list[ExtraNetwork] = []
    used: dict[str, int] = {}
    for i, entry in enumerate(doc):
        where = f"entry {i}: "
        obj = _check_fields(key, where, entry, ("name", "interface"), ())
        name = obj["name"]
        if not isinstance(name, str):
            raise AnnotationError(key, f"{where}name must be a string, got {_type_name(name)}")
        if not name:
            raise AnnotationError(key, f"{where}name is empty")
        if not _NETWORK_NAME_RE.fullmatch(name):
            raise AnnotationError(key, f"{where}name {_show(name)} must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
        ifname = _interface_name(key, obj["interface"], where)
        if ifname in reserved_interfaces:
            raise AnnotationError(key, f"{where}interface {_show(ifname)} is reserved "
                                       f"(loopback or the default network)")
        if ifname in used:
            raise AnnotationError(key, f"{where}interface {_show(ifname)} is already used by entry {used[ifname]}")
        used[ifname] = i
        out.append(ExtraNetwork(name=name, interface=ifname))
    return out


# --- CNI_ARGS --------------------------------------------------------------------------------


#: Kubernetes names are at most 253 characters (namespaces 63, uids 36); anything longer is
#: not a pod identity, and a huge one would only fail later, at exec.
MAX_IDENTITY_LEN = 253
#: CNI_ARGS is one environment variable; Linux refuses one longer than 128 KiB at exec.
MAX_CNI_ARGS_BYTES = 64 * 1024
_ZONE = re.compile(r"[A-Za-z0-9_.\-]{1,15}")


def _cni_arg_text(key: str, what: str, value: Any) -> str:
    """A CNI_ARGS key or value: a string without ';', '=' or NUL (they break `K=V;K=V`)."""
    if not isinstance(value, str):
        raise AnnotationError(key, f"{what}must be a string, got {_type_name(value)}")
    _check_text(key, value)
    bad = next((c for c in value if c in ";=\0"), None)
    if bad is not None:
        raise AnnotationError(key, f"{what}{_show(value)} contains {_show(bad)}, which CNI_ARGS cannot carry")
    return value


def validate_pod_identity(namespace: str, name: str, uid: str) -> None:
    """A pod's identity as every network mode must accept it (host-network pods too): the
    text CNI_ARGS can carry, at most MAX_IDENTITY_LEN characters each."""
    for path, val in (("metadata.namespace", namespace), ("metadata.name", name), ("metadata.uid", uid)):
        _cni_arg_text(path, "", val)
        if len(val) > MAX_IDENTITY_LEN:
            raise AnnotationError(path, f"is {len(val)} characters long; at most {MAX_IDENTITY_LEN}")


def build_cni_args(namespace: str, name: str, sandbox_id: str, uid: str,
                   annotations: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """CNI_ARGS pairs for a pod: the fixed Kubernetes ones, then the annotation extensions.

    Order: IgnoreUnknown=1, K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID,
    K8S_POD_UID; then CNI_MUTLINET_EXTENSION from `extension.network.kubernetes.io/cni`
    (reserved, so an extension cannot override it); then each
    `extension.network.kubernetes.io/cniargs/*` value `K=V` in sorted annotation-key order.
    Extensions never override a key already present (the first one wins), because a repeated
    key in CNI_ARGS is applied last-wins by Go plugins and could spoof the pod identity.
    """
    args: list[tuple[str, str]] = [("IgnoreUnknown", "1")]
    for arg, path, val in (("K8S_POD_NAMESPACE", "metadata.namespace", namespace),
                           ("K8S_POD_NAME", "metadata.name", name),
                           ("K8S_POD_INFRA_CONTAINER_ID", "sandbox_id", sandbox_id),
                           ("K8S_POD_UID", "metadata.uid", uid)):
        args.append((arg, _cni_arg_text(path, "", val)))
        if len(val) > MAX_IDENTITY_LEN:
            raise AnnotationError(path, f"is {len(val)} characters long; at most {MAX_IDENTITY_LEN}")
    extension = _annotation(annotations, CNI_EXTENSION_ANNOTATION)
    if extension is not None:
        args.append((CNI_EXTENSION_ARG, _cni_arg_text(CNI_EXTENSION_ANNOTATION, "", extension)))
    seen = {k for k, _ in args}
    extension_keys = (k for k in (annotations or {}) if isinstance(k, str) and k.startswith(CNI_ARGS_ANNOTATION_PREFIX))
    for key in sorted(extension_keys):
        value = _annotation(annotations, key)
        assert value is not None
        if value.count("=") != 1:
            raise AnnotationError(key, f"{_show(value)} must be K=V with exactly one '='")
        arg_key, arg_value = value.split("=")
        if not arg_key:
            raise AnnotationError(key, f"{_show(value)} has an empty key")
        _cni_arg_text(key, "", arg_key)
        _cni_arg_text(key, "", arg_value)
        if arg_key in seen:
            logger.debug("CNI_ARGS extension ignored: key already set",
                         extra={"fields": {"key": key, "arg": arg_key}})
            continue
        seen.add(arg_key)
        args.append((arg_key, arg_value))
        size = sum(len(k) + len(v) + 2 for k, v in args)
        if size > MAX_CNI_ARGS_BYTES:
            raise AnnotationError(key, f"makes CNI_ARGS {size} bytes long; at most {MAX_CNI_ARGS_BYTES} "
                                       "(one environment variable)")
    return args


# --- DNS and pod annotations -----------------------------------------------------------------


def _string_list(key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise AnnotationError(key, f"must be a list of strings, got {_type_name(value)}")
    items = list(value)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise AnnotationError(f"{key}[{i}]", f"must be a string, got {_type_name(item)}")
        _check_text(f"{key}[{i}]", item)
    return items


def dns_capability(dns_config: Any) -> dict[str, Any] | None:
    """The `dns` capability from the CRI DNSConfig ({servers, searches, options}), None if empty.

    Accepts a `DNSConfig`, a dict or a protobuf message. Servers must be IP addresses (a
    scoped IPv6 address is fine: resolv.conf allows it); searches and options non-empty and
    without whitespace, since they end up as resolv.conf words.
    """
    if dns_config is None:
        return None
    servers = _string_list("dns_config.servers", _get(dns_config, "servers"))
    searches = _string_list("dns_config.searches", _get(dns_config, "searches"))
    options = _string_list("dns_config.options", _get(dns_config, "options"))
    for i, server in enumerate(servers):
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise AnnotationError(f"dns_config.servers[{i}]", f"{_show(server)} is not an IP address") from None
        _, percent, zone = server.partition("%")
        if percent and not _ZONE.fullmatch(zone):
            # ipaddress accepts any zone text; a newline there would add a resolv.conf line
            raise AnnotationError(f"dns_config.servers[{i}]", f"{_show(server)} has an invalid zone "
                                                              "(an interface name is expected)")
    for field, items in (("searches", searches), ("options", options)):
        for i, item in enumerate(items):
            if not item or any(c.isspace() or c == "\0" for c in item):
                raise AnnotationError(f"dns_config.{field}[{i}]", f"{_show(item)} must be non-empty without whitespace")
    wire = DNSConfig(servers=servers, searches=searches, options=options).model_dump()
    return wire or None


def pod_annotations_capability(annotations: Mapping[str, str] | None) -> dict[str, str] | None:
    """`io.kubernetes.cri.pod-annotations`: all pod annotations, as containerd sends them."""
    if not annotations:
        return None
    out: dict[str, str] = {}
    for key, value in annotations.items():
        if not isinstance(key, str):
            raise AnnotationError(repr(key), "annotation key must be a string")
        if not isinstance(value, str):
            raise AnnotationError(key, f"value must be a string, got {_type_name(value)}")
        _check_text(key, key)
        _check_text(key, value)
        out[key] = value
    return out


def capability_args(annotations: Mapping[str, str] | None, port_mappings: Iterable[Any] | None,
                    pod_cidr: str | None, dns: Any, *, pod: str = "",
                    allowed_ip_ranges: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] | None = None,
                    ) -> dict[str, Any]:
    """All CNI capability args for one pod, validated before anything is returned.

    Keys (only the non-empty ones): portMappings, bandwidth, ipRanges, dns,
    io.kubernetes.cri.pod-annotations; values are plain JSON-ready data. Any invalid input
    raises `AnnotationError` and nothing is returned, so the caller attaches nothing. Extra
    planes and CNI_ARGS are not capabilities: validate them with `parse_extra_networks` and
    `build_cni_args` before attaching too.
    """
    mappings = parse_port_mappings(port_mappings, annotations)
    bandwidth = parse_bandwidth(annotations, pod=pod)
    ranges = parse_ip_ranges(annotations, pod_cidr, allowed=allowed_ip_ranges)
    dns_cap = dns_capability(dns)
    pod_annotations = pod_annotations_capability(annotations)
    caps: dict[str, Any] = {}
    if mappings:
        caps[CAP_PORT_MAPPINGS] = [pm.model_dump() for pm in mappings]
    if bandwidth is not None:
        caps[CAP_BANDWIDTH] = bandwidth.model_dump()
    if ranges:
        caps[CAP_IP_RANGES] = [[r.model_dump() for r in s] for s in ranges]
    if dns_cap:
        caps[CAP_DNS] = dns_cap
    if pod_annotations:
        caps[CAP_POD_ANNOTATIONS] = pod_annotations
    return caps
