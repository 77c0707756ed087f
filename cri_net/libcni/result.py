"""CNI results: one class per result family, and conversions between them.

Families: 0.1.0/0.2.0 (`ip4`/`ip6`), 0.3.0/0.3.1/0.4.0 (`interfaces`, `ips` with `version`),
1.0.0/1.1.0 (`ips` without `version`; 1.1.0 adds interface `mtu`/`socketPath`/`pciID` and
route `mtu`/`advmss`/`priority`/`table`/`scope`). `from_dict` checks a decoded result the way
Go's typed decoding does (unknown keys ignored, wrong types refused, addresses canonical);
`to_dict()` renders it with Go's field order and omitempty rules, so what we print and cache
matches Go libcni. Constructors take already-checked values.
"""

from __future__ import annotations

import ipaddress

from . import version
from .errors import CNIError, ErrorCode
from .jsonshape import (FieldError, Path, Value, array, integer, obj, optional_integer, required, string,
                        strings)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FAMILY_020 = ("0.1.0", "0.2.0")
FAMILY_040 = ("0.3.0", "0.3.1", "0.4.0")
FAMILY_100 = ("1.0.0", "1.1.0")


def _cidr(value: Any, path: Path) -> str:
    """An address with prefix, canonical as Go's IPNet prints it (host bits kept)."""
    text = string(value, path)
    if "/" not in text or "%" in text:  # Go's ParseCIDR refuses zones
        raise FieldError(path, f"invalid CIDR address: {text}")
    try:
        return str(ipaddress.ip_interface(text))
    except ValueError:
        raise FieldError(path, f"invalid CIDR address: {text}") from None


def _optional_ip(value: Any, path: Path) -> str | None:
    """Go decodes "gateway": "" (and null) as no gateway."""
    if value is None or value == "":
        return None
    text = string(value, path)
    if "%" in text:
        raise FieldError(path, f"invalid IP address: {text}")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise FieldError(path, f"invalid IP address: {text}") from None


def _list(value: Any, path: Path, item: Any) -> list[Any]:
    return [item(x, (*path, i)) for i, x in enumerate(array(value, path))]


def _omit(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Go omitempty: drop "", 0, None, empty lists/dicts."""
    return {k: v for k, v in pairs if v not in ("", 0, None) and v != [] and v != {}}


class _Part(Value):
    @classmethod
    def from_dict(cls, data: Any, path: Path = ()) -> Any:
        raise NotImplementedError

    @classmethod
    def model_validate(cls, data: Any) -> Any:
        """`from_dict`, under the name these types had as pydantic models (FieldError is a ValueError)."""
        return cls.from_dict(data)


class DNS(_Part):
    _fields = ("nameservers", "domain", "search", "options")

    def __init__(self, nameservers: list[str] | None = None, domain: str = "", search: list[str] | None = None,
                 options: list[str] | None = None) -> None:
        d = self.__dict__
        d["nameservers"], d["domain"] = nameservers or [], domain
        d["search"], d["options"] = search or [], options or []

    @classmethod
    def from_dict(cls, data: Any, path: Path = ()) -> DNS:
        d = obj(data, path)
        return cls(strings(d.get("nameservers", []), (*path, "nameservers")),
                   string(d.get("domain", ""), (*path, "domain")),
                   strings(d.get("search", []), (*path, "search")),
                   strings(d.get("options", []), (*path, "options")))

    def to_dict(self) -> dict[str, Any]:
        return _omit([("nameservers", self.nameservers), ("domain", self.domain), ("search", self.search),
                      ("options", self.options)])


class Route(_Part):
    _fields = ("dst", "gw", "mtu", "advmss", "priority", "table", "scope")

    def __init__(self, dst: str, gw: str | None = None, mtu: int = 0, advmss: int = 0, priority: int = 0,
                 table: int | None = None, scope: int | None = None) -> None:
        d = self.__dict__
        d["dst"], d["gw"], d["mtu"], d["advmss"], d["priority"] = dst, gw, mtu, advmss, priority
        d["table"], d["scope"] = table, scope

    @classmethod
    def from_dict(cls, data: Any, path: Path = ()) -> Route:
        d = obj(data, path)
        return cls(_cidr(required(d, "dst", path), (*path, "dst")), _optional_ip(d.get("gw"), (*path, "gw")),
                   integer(d.get("mtu", 0), (*path, "mtu")), integer(d.get("advmss", 0), (*path, "advmss")),
                   integer(d.get("priority", 0), (*path, "priority")),
                   optional_integer(d.get("table"), (*path, "table")),
                   optional_integer(d.get("scope"), (*path, "scope")))

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
        return ":" not in self.dst  # canonical: only IPv6 text has a colon


class Interface(_Part):
    _fields = ("name", "mac", "mtu", "sandbox", "socketPath", "pciID")

    def __init__(self, name: str, mac: str = "", mtu: int = 0, sandbox: str = "", socketPath: str = "",
                 pciID: str = "") -> None:
        d = self.__dict__
        d["name"], d["mac"], d["mtu"], d["sandbox"], d["socketPath"], d["pciID"] = \
            name, mac, mtu, sandbox, socketPath, pciID

    @classmethod
    def from_dict(cls, data: Any, path: Path = ()) -> Interface:
        d = obj(data, path)
        return cls(string(required(d, "name", path), (*path, "name")), string(d.get("mac", ""), (*path, "mac")),
                   integer(d.get("mtu", 0), (*path, "mtu")), string(d.get("sandbox", ""), (*path, "sandbox")),
                   string(d.get("socketPath", ""), (*path, "socketPath")),
                   string(d.get("pciID", ""), (*path, "pciID")))

    def to_dict(self, extended: bool = True) -> dict[str, Any]:
        fields = [("mac", self.mac), ("mtu", self.mtu if extended else 0), ("sandbox", self.sandbox)]
        if extended:
            fields += [("socketPath", self.socketPath), ("pciID", self.pciID)]
        return {"name": self.name, **_omit(fields)}


class IPConfig(_Part):
    """An address of a 0.3.x/0.4.0/1.x result; `version` is only written for 0.3.x/0.4.0."""

    _fields = ("version", "interface", "address", "gateway")

    def __init__(self, address: str, version: str | None = None, interface: int | None = None,
                 gateway: str | None = None) -> None:
        d = self.__dict__
        d["version"], d["interface"], d["address"], d["gateway"] = version, interface, address, gateway

    @classmethod
    def from_dict(cls, data: Any, path: Path = ()) -> IPConfig:
        d = obj(data, path)
        ver = d.get("version")
        return cls(version=None if ver is None else string(ver, (*path, "version")),
                   interface=optional_integer(d.get("interface"), (*path, "interface")),
                   address=_cidr(required(d, "address", path), (*path, "address")),
                   gateway=_optional_ip(d.get("gateway"), (*path, "gateway")))

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4  # canonical: only IPv6 text has a colon

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


class IPConfig020(_Part):
    _fields = ("ip", "gateway", "routes")

    def __init__(self, ip: str, gateway: str | None = None, routes: list[Route] | None = None) -> None:
        d = self.__dict__
        d["ip"], d["gateway"], d["routes"] = ip, gateway, routes or []

    @classmethod
    def from_dict(cls, data: Any, path: Path = ()) -> IPConfig020:
        d = obj(data, path)
        return cls(_cidr(required(d, "ip", path), (*path, "ip")), _optional_ip(d.get("gateway"), (*path, "gateway")),
                   _list(d.get("routes", []), (*path, "routes"), Route.from_dict))

    def to_dict(self) -> dict[str, Any]:
        return _omit([("ip", self.ip), ("gateway", self.gateway), ("routes", [r.to_dict(False) for r in self.routes])])


class Result020(_Part):
    """0.1.0 / 0.2.0 result."""

    _fields = ("cniVersion", "ip4", "ip6", "dns")

    def __init__(self, cniVersion: str = "0.2.0", ip4: IPConfig020 | None = None, ip6: IPConfig020 | None = None,
                 dns: DNS | None = None) -> None:
        d = self.__dict__
        d["cniVersion"], d["ip4"], d["ip6"], d["dns"] = cniVersion, ip4, ip6, dns if dns is not None else DNS()

    @classmethod
    def from_dict(cls, data: Any, path: Path = ()) -> Result020:
        d = obj(data, path)
        ip4, ip6 = d.get("ip4"), d.get("ip6")
        return cls(string(d.get("cniVersion", "0.2.0"), (*path, "cniVersion")),
                   None if ip4 is None else IPConfig020.from_dict(ip4, (*path, "ip4")),
                   None if ip6 is None else IPConfig020.from_dict(ip6, (*path, "ip6")),
                   DNS.from_dict(d.get("dns", {}), (*path, "dns")))

    def to_dict(self) -> dict[str, Any]:
        out = _omit([("cniVersion", self.cniVersion), ("ip4", self.ip4 and self.ip4.to_dict()),
                     ("ip6", self.ip6 and self.ip6.to_dict())])
        out["dns"] = self.dns.to_dict()  # a Go struct: never omitted
        return out


class _Result0x1x(_Part):
    """The shape shared by the 0.3.0-0.4.0 and 1.x families."""

    _fields = ("cniVersion", "interfaces", "ips", "routes", "dns")
    _default_version = ""

    def __init__(self, cniVersion: str | None = None, interfaces: list[Interface] | None = None,
                 ips: list[IPConfig] | None = None, routes: list[Route] | None = None, dns: DNS | None = None) -> None:
        d = self.__dict__
        d["cniVersion"] = self._default_version if cniVersion is None else cniVersion
        d["interfaces"], d["ips"], d["routes"] = interfaces or [], ips or [], routes or []
        d["dns"] = dns if dns is not None else DNS()

    @classmethod
    def from_dict(cls, data: Any, path: Path = ()) -> Any:
        d = obj(data, path)
        return cls(string(d.get("cniVersion", cls._default_version), (*path, "cniVersion")),
                   _list(d.get("interfaces", []), (*path, "interfaces"), Interface.from_dict),
                   _list(d.get("ips", []), (*path, "ips"), IPConfig.from_dict),
                   _list(d.get("routes", []), (*path, "routes"), Route.from_dict),
                   DNS.from_dict(d.get("dns", {}), (*path, "dns")))


class Result040(_Result0x1x):
    """0.3.0 / 0.3.1 / 0.4.0 result."""

    _default_version = "0.4.0"

    def to_dict(self) -> dict[str, Any]:
        out = _omit([("cniVersion", self.cniVersion),
                     ("interfaces", [i.to_dict(False) for i in self.interfaces]),
                     ("ips", [ip.to_dict(True) for ip in self.ips]),
                     ("routes", [r.to_dict(False) for r in self.routes])])
        out["dns"] = self.dns.to_dict()
        return out


class Result100(_Result0x1x):
    """1.0.0 / 1.1.0 result."""

    _default_version = "1.0.0"

    def to_dict(self) -> dict[str, Any]:
        out = _omit([("cniVersion", self.cniVersion),
                     ("interfaces", [i.to_dict(True) for i in self.interfaces]),
                     ("ips", [ip.to_dict(False) for ip in self.ips]),
                     ("routes", [r.to_dict(True) for r in self.routes])])
        dns = self.dns.to_dict()
        if dns:  # Go libcni >= 1.2 omits an empty dns from 1.x results
            out["dns"] = dns
        return out


Result = Result020 | Result040 | Result100


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
    family = _family(ver)
    try:
        return family.from_dict({**data, "cniVersion": ver})
    except FieldError as exc:
        raise CNIError(ErrorCode.DECODING_FAILURE, f"failed to decode {ver} result: {exc}") from None


def _to_040(result: Result) -> Result040:
    if isinstance(result, Result040):
        return result
    if isinstance(result, Result100):
        return Result040(cniVersion="0.4.0", interfaces=result.interfaces, routes=result.routes, dns=result.dns,
                         ips=[ip.replace(version=str(ip.family)) for ip in result.ips])
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
        return result.replace(cniVersion=to_version)
    mid = _to_040(result)
    if target is Result040:
        return mid.replace(cniVersion=to_version)
    if target is Result100:
        return Result100(cniVersion=to_version, interfaces=mid.interfaces, routes=mid.routes, dns=mid.dns,
                         ips=[ip.replace(version=None) for ip in mid.ips])
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
