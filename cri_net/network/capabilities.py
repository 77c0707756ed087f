"""The values of the network API's CNI capabilities, and the identity every pod must have.

The typed shapes a request carries into the adaptors (`PortMapping`, `Bandwidth`, `IPRange`,
`DNSConfig`: the wire shapes CNI plugins read), the capability names, the address blocks no
pod network may ever use, and the rule for text that must fit into CNI_ARGS. `AnnotationError`
is how every layer says which key or field of the caller's input is wrong.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

CAP_PORT_MAPPINGS: Final = "portMappings"
CAP_BANDWIDTH: Final = "bandwidth"
CAP_IP_RANGES: Final = "ipRanges"
CAP_DNS: Final = "dns"
CAP_POD_ANNOTATIONS: Final = "io.kubernetes.cri.pod-annotations"


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


# --- Wire models ---------------------------------------------------------------------------------


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


# --- Small helpers ----------------------------------------------------------------------------


def type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "integer", float: "number"}.get(type(value), type(value).__name__)


def show(value: Any, limit: int = 60) -> str:
    """repr() of a user value, shortened so an error never echoes 64 KiB back."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def check_text(key: str, text: str) -> None:
    """Refuse text that cannot go into a plugin's environment or stdin as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise AnnotationError(key, "is not valid UTF-8 text") from None


# --- Special-purpose address space ----------------------------------------------------------

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


# --- Pod identity ------------------------------------------------------------------------------

MAX_IDENTITY_LEN = 253


def cni_arg_text(key: str, what: str, value: Any) -> str:
    """A CNI_ARGS key or value: a string without ';', '=' or NUL (they break `K=V;K=V`)."""
    if not isinstance(value, str):
        raise AnnotationError(key, f"{what}must be a string, got {type_name(value)}")
    check_text(key, value)
    bad = next((c for c in value if c in ";=\0"), None)
    if bad is not None:
        raise AnnotationError(key, f"{what}{show(value)} contains {show(bad)}, which CNI_ARGS cannot carry")
    return value


def validate_pod_identity(namespace: str, name: str, uid: str) -> None:
    """A pod's identity as every network mode must accept it (host-network pods too): the
    text CNI_ARGS can carry, at most MAX_IDENTITY_LEN characters each."""
    for path, val in (("metadata.namespace", namespace), ("metadata.name", name), ("metadata.uid", uid)):
        cni_arg_text(path, "", val)
        if len(val) > MAX_IDENTITY_LEN:
            raise AnnotationError(path, f"is {len(val)} characters long; at most {MAX_IDENTITY_LEN}")
