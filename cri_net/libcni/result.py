"""CNI results: one pydantic model per result family, and conversions between them.

Families: 0.1.0/0.2.0 (`ip4`/`ip6`), 0.3.0/0.3.1/0.4.0 (`interfaces`, `ips` with `version`),
1.0.0/1.1.0 (`ips` without `version`; 1.1.0 adds interface `mtu`/`socketPath`/`pciID` and
route `mtu`/`advmss`/`priority`/`table`/`scope`). `to_dict()` renders a result with Go's
field order and omitempty rules, so what we print and cache matches Go libcni.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from . import version
from .errors import CNIError, ErrorCode

FAMILY_020 = ("0.1.0", "0.2.0")
FAMILY_040 = ("0.3.0", "0.3.1", "0.4.0")
FAMILY_100 = ("1.0.0", "1.1.0")


def _cidr(value: str) -> str:
    if "/" not in value or "%" in value:  # Go's ParseCIDR refuses zones
        raise ValueError(f"invalid CIDR address: {value}")
    try:
        return str(ipaddress.ip_interface(value))
    except ValueError:
        raise ValueError(f"invalid CIDR address: {value}") from None


def _ip(value: str) -> str:
    if "%" in value:
        raise ValueError(f"invalid IP address: {value}")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"invalid IP address: {value}") from None


CIDR = Annotated[StrictStr, AfterValidator(_cidr)]
IP = Annotated[StrictStr, AfterValidator(_ip)]


def _empty_is_none(value: object) -> object:
    """Go decodes "gateway": "" as no gateway."""
    return None if value == "" else value


OptionalIP = Annotated[IP | None, BeforeValidator(_empty_is_none)]


class _Model(BaseModel):
    # Unknown keys from a plugin are ignored, as Go's typed decoding does.
    model_config = ConfigDict(extra="ignore", frozen=True)


def _omit(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Go omitempty: drop "", 0, None, empty lists/dicts."""
    return {k: v for k, v in pairs if v not in ("", 0, None) and v != [] and v != {}}


class DNS(_Model):
    nameservers: list[StrictStr] = Field(default_factory=list)
    domain: StrictStr = ""
    search: list[StrictStr] = Field(default_factory=list)
    options: list[StrictStr] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _omit([("nameservers", self.nameservers), ("domain", self.domain), ("search", self.search), ("options", self.options)])


class Route(_Model):
    dst: CIDR
    gw: OptionalIP = None
    mtu: StrictInt = 0
    advmss: StrictInt = 0
    priority: StrictInt = 0
    table: StrictInt | None = None
    scope: StrictInt | None = None

    def to_dict(self, extended: bool = True) -> dict[str, Any]:
        out = _omit([("dst", self.dst), ("gw", self.gw)])
        if extended:
            out.update(_omit([("mtu", self.mtu), ("advmss", self.advmss), ("priority", self.priority)]))
            if self.table is not None:
                out["table"] = self.table
            if self.scope is not None:
                out["scope"] = self.scope
        return out

    @property
    def is_ipv4(self) -> bool:
        return ipaddress.ip_interface(self.dst).version == 4


class Interface(_Model):
    name: StrictStr
    mac: StrictStr = ""
    mtu: StrictInt = 0
    sandbox: StrictStr = ""
    socketPath: StrictStr = ""
    pciID: StrictStr = ""

    def to_dict(self, extended: bool = True) -> dict[str, Any]:
        fields = [("mac", self.mac), ("mtu", self.mtu if extended else 0), ("sandbox", self.sandbox)]
        if extended:
            fields += [("socketPath", self.socketPath), ("pciID", self.pciID)]
        return {"name": self.name, **_omit(fields)}


class IPConfig(_Model):
    """An address of a 0.3.x/0.4.0/1.x result; `version` is only written for 0.3.x/0.4.0."""

    version: StrictStr | None = None
    interface: StrictInt | None = None
    address: CIDR
    gateway: OptionalIP = None

    @property
    def family(self) -> int:
        return ipaddress.ip_interface(self.address).version

    def to_dict(self, with_version: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if with_version:
            out["version"] = self.version or str(self.family)
        if self.interface is not None:
            out["interface"] = self.interface
        out["address"] = self.address
        if self.gateway:
            out["gateway"] = self.gateway
        return out


class IPConfig020(_Model):
    ip: CIDR
    gateway: OptionalIP = None
    routes: list[Route] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _omit([("ip", self.ip), ("gateway", self.gateway), ("routes", [r.to_dict(False) for r in self.routes])])


class Result020(_Model):
    """0.1.0 / 0.2.0 result."""

    cniVersion: StrictStr = "0.2.0"
    ip4: IPConfig020 | None = None
    ip6: IPConfig020 | None = None
    dns: DNS = Field(default_factory=DNS)

    def to_dict(self) -> dict[str, Any]:
        out = _omit([("cniVersion", self.cniVersion), ("ip4", self.ip4 and self.ip4.to_dict()),
                     ("ip6", self.ip6 and self.ip6.to_dict())])
        out["dns"] = self.dns.to_dict()  # a Go struct: never omitted
        return out


class Result040(_Model):
    """0.3.0 / 0.3.1 / 0.4.0 result."""

    cniVersion: StrictStr = "0.4.0"
    interfaces: list[Interface] = Field(default_factory=list)
    ips: list[IPConfig] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    dns: DNS = Field(default_factory=DNS)

    def to_dict(self) -> dict[str, Any]:
        out = _omit([("cniVersion", self.cniVersion),
                     ("interfaces", [i.to_dict(False) for i in self.interfaces]),
                     ("ips", [ip.to_dict(True) for ip in self.ips]),
                     ("routes", [r.to_dict(False) for r in self.routes])])
        out["dns"] = self.dns.to_dict()
        return out


class Result100(_Model):
    """1.0.0 / 1.1.0 result."""

    cniVersion: StrictStr = "1.0.0"
    interfaces: list[Interface] = Field(default_factory=list)
    ips: list[IPConfig] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    dns: DNS = Field(default_factory=DNS)

    def to_dict(self) -> dict[str, Any]:
        out = _omit([("cniVersion", self.cniVersion),
                     ("interfaces", [i.to_dict(True) for i in self.interfaces]),
                     ("ips", [ip.to_dict(False) for ip in self.ips]),
                     ("routes", [r.to_dict(True) for r in self.routes])])
        dns = self.dns.to_dict()
        if dns:  # Go libcni >= 1.2 omits an empty dns from 1.x results
            out["dns"] = dns
        return out


Result = Union[Result020, Result040, Result100]


def _family(ver: str) -> type[Result020] | type[Result040] | type[Result100]:
    ver = ver or "0.1.0"
    if ver in FAMILY_020:
        return Result020
    if ver in FAMILY_040:
        return Result040
    if ver in FAMILY_100:
        return Result100
    raise CNIError(ErrorCode.INCOMPATIBLE_CNI_VERSION, f'unsupported CNI result version "{ver}"')


def parse_result(data: dict[str, Any], default_version: str = "") -> Result:
    """Decode a result object; a result without `cniVersion` takes `default_version`."""
    if not isinstance(data, dict):
        raise CNIError(ErrorCode.DECODING_FAILURE, "failed to decode result: not a JSON object")
    ver = data.get("cniVersion") or default_version or "0.1.0"
    if not isinstance(ver, str):
        raise CNIError(ErrorCode.DECODING_FAILURE, "failed to decode result: cniVersion is not a string")
    model = _family(ver)
    try:
        return model.model_validate({**data, "cniVersion": ver})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise CNIError(ErrorCode.DECODING_FAILURE, f"failed to decode {ver} result: {where}: {err['msg']}") from None


def _to_040(result: Result) -> Result040:
    if isinstance(result, Result040):
        return result
    if isinstance(result, Result100):
        return Result040(cniVersion="0.4.0", interfaces=result.interfaces, routes=result.routes, dns=result.dns,
                         ips=[ip.model_copy(update={"version": str(ip.family)}) for ip in result.ips])
    ips, routes = [], []
    for fam, cfg in (("4", result.ip4), ("6", result.ip6)):
        if cfg is not None:
            ips.append(IPConfig(version=fam, address=cfg.ip, gateway=cfg.gateway))
            routes.extend(cfg.routes)
    return Result040(cniVersion="0.4.0", ips=ips, routes=routes, dns=result.dns)


def convert(result: Result, to_version: str) -> Result:
    """Convert `result` to spec `to_version` (any pair of supported versions)."""
    to_version = to_version or "0.1.0"
    target = _family(to_version)
    if isinstance(result, target):
        return result.model_copy(update={"cniVersion": to_version})
    mid = _to_040(result)
    if target is Result040:
        return mid.model_copy(update={"cniVersion": to_version})
    if target is Result100:
        return Result100(cniVersion=to_version, interfaces=mid.interfaces, routes=mid.routes, dns=mid.dns,
                         ips=[ip.model_copy(update={"version": None}) for ip in mid.ips])
    # down to 0.2.0: first address of each family; routes follow their family
    ip4 = next((ip for ip in mid.ips if ip.family == 4), None)
    ip6 = next((ip for ip in mid.ips if ip.family == 6), None)
    if ip4 is None and ip6 is None:
        raise CNIError(ErrorCode.INCOMPATIBLE_CNI_VERSION, "cannot convert: no valid IP addresses")
    def cfg(ip: IPConfig | None, v4: bool) -> IPConfig020 | None:
        if ip is None:
            return None
        return IPConfig020(ip=ip.address, gateway=ip.gateway, routes=[r for r in mid.routes if r.is_ipv4 == v4])
    return Result020(cniVersion=to_version, ip4=cfg(ip4, True), ip6=cfg(ip6, False), dns=mid.dns)


def result_version(result: Result) -> str:
    return result.cniVersion


def is_version_at_least(result: Result, minimum: str) -> bool:
    return version.at_least(result.cniVersion, minimum)
