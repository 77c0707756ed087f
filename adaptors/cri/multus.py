"""Multus's network selection annotation, `k8s.v1.cni.cncf.io/networks`.

Pod specs written for Multus select extra networks in one of two forms (Multus decides by
whether the value holds any of `[`, `{` or `"`):

- text: `net1`, `net1@eth5`, `ns/net2`, comma separated, whitespace around items tolerated;
- JSON: a list of objects `{name, namespace, interface, ips, mac, portMappings, bandwidth,
  cni-args, default-route}` (`interfaceRequest`, Multus's pre-3.2 spelling of `interface`,
  is accepted too).

This module only parses and validates: every value is checked before anything is attached,
and each failure is an `AnnotationError` whose key is `<annotation>[<entry>].<field>`.
Resolving names to networks (and a namespace other than the pod's) needs the conf dir, so
the CRI adaptor does that. Fields Multus reads that need a Kubernetes API server or a
device plugin (`infiniband-guid`, `deviceID`, `ipam-claim-reference`) are refused by name,
as is any unknown field (a typo must not be silently dropped).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cri_net.network.capabilities import (AnnotationError, Bandwidth, PortMapping, check_text, cni_arg_text, show,
                                          special_purpose, type_name)

from .ports import json_port_mappings
from .reading import (BANDWIDTH_BURST, EXTRA_NETWORKS_ANNOTATION, MAX_BANDWIDTH_BPS, MIN_BANDWIDTH_BPS,
                      MAX_EXTRA_PLANES, MULTUS_NETWORKS_ANNOTATION, NETWORK_NAME_RE, annotation_value, ifname_problem,
                      load_json)

KEY: Final = MULTUS_NETWORKS_ANNOTATION
#: a Kubernetes namespace name (DNS-1123 label), as Multus checks it
NAMESPACE_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
FIELDS: Final = ("name", "namespace", "interface", "interfaceRequest", "ips", "mac", "portMappings", "bandwidth",
                 "cni-args", "default-route")
#: Multus fields cri-net does not support, and why (named in the error)
UNSUPPORTED: Final = {
    "infiniband-guid": "needs an InfiniBand device and a plugin that reads the infinibandGUID capability",
    "deviceID": "comes from a device plugin through the kubelet; there is none on a plain node",
    "ipam-claim-reference": "an IPAMClaim is a Kubernetes object; there is no API server here",
}
#: CNI_ARGS keys `cni-args` may not set: the pod's identity and the keys cri-net sets itself
RESERVED_ARGS: Final = frozenset({"IgnoreUnknown", "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID",
                                  "K8S_POD_UID", "CNI_MUTLINET_EXTENSION", "IP", "MAC"})
MAX_ENTRIES: Final = MAX_EXTRA_PLANES
_MAC_RE: Final = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}")


@dataclass(frozen=True)
class Selection:
    """One validated entry: attach network `name` on `interface` (already defaulted)."""

    index: int
    name: str
    namespace: str  # "" = the pod's own
    interface: str
    ips: tuple[str, ...] = ()
    mac: str = ""  # lower case, colon separated
    port_mappings: tuple[PortMapping, ...] = ()
    bandwidth: Bandwidth | None = None
    cni_args: tuple[tuple[str, str], ...] = ()
    default_route: tuple[str, ...] = ()  # gateway addresses, at most one per family

    @property
    def key(self) -> str:
        return f"{KEY}[{self.index}]"


def _err(index: int, field: str, reason: str) -> AnnotationError:
    return AnnotationError(f"{KEY}[{index}].{field}" if field else f"{KEY}[{index}]", reason)


def parse_multus_networks(annotations: Mapping[str, str] | None, *,
                          reserved_interfaces: Collection[str] = ("lo", "eth0")) -> list[Selection]:
    """The pod's Multus selections in annotation order; [] when the annotation is absent or empty.

    Interfaces default to `net<position+1>` (Multus's convention: the first entry is net1
    even when a later one names its own); an interface used twice, or one of
    `reserved_interfaces` (loopback, the default network's), is refused. At most one IPv4 and
    one IPv6 `default-route` gateway across all entries (Multus: no ECMP default route).
    """
    if annotations and KEY in annotations and EXTRA_NETWORKS_ANNOTATION in annotations:
        raise AnnotationError(KEY, f"cannot be used together with {EXTRA_NETWORKS_ANNOTATION}: "
                                   "select extra networks with one of the two annotations")
    value = annotation_value(annotations, KEY)
    if value is None or not value.strip():
        return []
    if any(c in value for c in '[{"'):
        doc = load_json(KEY, value)
        if not isinstance(doc, list):
            raise AnnotationError(KEY, f"must be a JSON array of network selection objects, got {type_name(doc)}")
        raw = doc
    else:
        raw = [_text_item(i, item) for i, item in enumerate(value.split(","))]
    if len(raw) > MAX_ENTRIES:
        raise AnnotationError(KEY, f"selects {len(raw)} networks; at most {MAX_ENTRIES}")
    out = [_entry(i, entry) for i, entry in enumerate(raw)]
    return _check_together(out, reserved_interfaces)


def _text_item(index: int, item: str) -> dict[str, Any]:
    """`[namespace/]name[@interface]`, whitespace around each part ignored."""
    item = item.strip()
    if not item:
        raise _err(index, "", "empty entry (two commas in a row, or a trailing comma)")
    namespace, slash, rest = item.rpartition("/") if "/" in item else ("", "", item)
    if slash and "/" in namespace:
        raise _err(index, "", f"{show(item)} has more than one '/' (want namespace/name@interface)")
    name, at, ifname = rest.partition("@")
    if "@" in ifname:
        raise _err(index, "", f"{show(item)} has more than one '@' (want namespace/name@interface)")
    out: dict[str, Any] = {"name": name.strip()}
    if slash:
        out["namespace"] = namespace.strip()
    if at:
        out["interface"] = ifname.strip()
    return out


def _entry(index: int, entry: Any) -> Selection:
    if not isinstance(entry, dict):
        raise _err(index, "", f"must be an object, got {type_name(entry)}")
    for field in entry:
        if field in UNSUPPORTED:
            raise _err(index, field, f"is not supported by cri-net: it {UNSUPPORTED[field]}")
        if field not in FIELDS:
            raise _err(index, field, f"unknown field (allowed: {', '.join(FIELDS)})")
    if "name" not in entry:
        raise _err(index, "name", "is missing")
    name = _name(index, entry["name"])
    namespace = _namespace(index, entry.get("namespace"))
    interface = _interface(index, entry)
    ips = _ips(index, entry.get("ips"))
    mac = _mac(index, entry.get("mac"))
    mappings = tuple(_port_mappings(index, entry.get("portMappings")))
    bandwidth = _bandwidth(index, entry.get("bandwidth"))
    cni_args = _cni_args(index, entry.get("cni-args"))
    gateways = _default_route(index, entry.get("default-route"))
    return Selection(index, name, namespace, interface, ips, mac, mappings, bandwidth, cni_args, gateways)


def _string(index: int, field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _err(index, field, f"must be a string, got {type_name(value)}")
    check_text(f"{KEY}[{index}].{field}", value)
    return value


def _name(index: int, value: Any) -> str:
    name = _string(index, "name", value)
    if not name:
        raise _err(index, "name", "is empty")
    if not NETWORK_NAME_RE.fullmatch(name):
        raise _err(index, "name", f"{show(name)} is not a network name (^[a-zA-Z0-9][a-zA-Z0-9_.-]*$)")
    return name


def _namespace(index: int, value: Any) -> str:
    if value is None:
        return ""
    namespace = _string(index, "namespace", value)
    if namespace and not NAMESPACE_RE.fullmatch(namespace):
        raise _err(index, "namespace", f"{show(namespace)} is not a Kubernetes namespace name "
                                       "(lower-case DNS label, at most 63 characters)")
    return namespace


def _interface(index: int, entry: Mapping[str, Any]) -> str:
    given = [(f, entry[f]) for f in ("interface", "interfaceRequest") if entry.get(f) not in (None, "")]
    if len(given) == 2 and given[0][1] != given[1][1]:
        raise _err(index, "interfaceRequest", "differs from interface (interfaceRequest is its old name)")
    if not given:
        return ""  # defaulted once every entry is known
    field, value = given[0]
    ifname = _string(index, field, value)
    problem = ifname_problem(ifname)
    if problem:
        raise _err(index, field, f"{show(ifname)} {problem}")
    return ifname


def _address(index: int, field: str, value: Any, *, cidr: bool) -> tuple[str, int]:
    """(normalised text, IP version) of one address; `cidr` also allows `addr/prefix`."""
    text = _string(index, field, value)
    try:
        if "%" in text or text.strip() != text:
            raise ValueError
        if cidr and "/" in text:
            iface = ipaddress.ip_interface(text)
            addr, net, norm = iface.ip, iface.network, str(iface)
        else:
            addr = ipaddress.ip_address(text)
            net, norm = ipaddress.ip_network(addr), str(addr)
    except ValueError:
        want = "an IP address or address/prefix" if cidr else "an IP address"
        raise _err(index, field, f"{show(text)} is not {want}") from None
    why = special_purpose(ipaddress.ip_network(addr))
    if why is not None:
        raise _err(index, field, f"{show(text)} {why}")
    if net.version == 4 and net.prefixlen < 31 and addr in (net.network_address, net.broadcast_address):
        raise _err(index, field, f"{show(text)} is the network or broadcast address of {net}")
    return norm, addr.version


def _ips(index: int, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _err(index, "ips", f"must be an array of addresses, got {type_name(value)}")
    out: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        norm, _ = _address(index, f"ips[{i}]", item, cidr=True)
        bare = norm.split("/")[0]
        if bare in seen:
            raise _err(index, f"ips[{i}]", f"{show(item)} repeats an address")
        seen.add(bare)
        out.append(norm)
    return tuple(out)


def _mac(index: int, value: Any) -> str:
    if value is None:
        return ""
    text = _string(index, "mac", value)
    if not _MAC_RE.fullmatch(text):
        raise _err(index, "mac", f"{show(text)} is not an Ethernet MAC address (six hex octets, ':' or '-')")
    octets = [int(o, 16) for o in re.split("[:-]", text)]
    if octets[0] & 1:
        raise _err(index, "mac", f"{show(text)} is a multicast address; an interface needs a unicast one")
    if not any(octets):
        raise _err(index, "mac", f"{show(text)} is all zeros")
    return ":".join(f"{o:02x}" for o in octets)


def _port_mappings(index: int, value: Any) -> list[PortMapping]:
    if value is None:
        return []
    return json_port_mappings(f"{KEY}[{index}]", "portMappings", value)


_BANDWIDTH_FIELDS: Final = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")


def _bandwidth(index: int, value: Any) -> Bandwidth | None:
    """Multus's bandwidth entry (bits/s and bits); a direction is set by its rate, its burst
    defaults to containerd's "no burst limit"; a burst without a rate is refused (the
    bandwidth plugin refuses it too, after the interface exists)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _err(index, "bandwidth", f"must be an object, got {type_name(value)}")
    for field in value:
        if field not in _BANDWIDTH_FIELDS:
            raise _err(index, f"bandwidth.{field}", f"unknown field (allowed: {', '.join(_BANDWIDTH_FIELDS)})")
    fields: dict[str, int] = {}
    for direction in ("ingress", "egress"):
        rate, burst = value.get(f"{direction}Rate", 0), value.get(f"{direction}Burst", 0)
        for field, number in ((f"{direction}Rate", rate), (f"{direction}Burst", burst)):
            if isinstance(number, bool) or not isinstance(number, int):
                raise _err(index, f"bandwidth.{field}", f"must be an integer, got {type_name(number)}")
        if rate == 0 and burst == 0:
            continue
        if not MIN_BANDWIDTH_BPS <= rate <= MAX_BANDWIDTH_BPS:
            raise _err(index, f"bandwidth.{direction}Rate", f"{rate} bits/s is out of range "
                                                            f"{MIN_BANDWIDTH_BPS}..{MAX_BANDWIDTH_BPS}")
        if not 0 <= burst <= BANDWIDTH_BURST:
            raise _err(index, f"bandwidth.{direction}Burst", f"{burst} is out of range 0..{BANDWIDTH_BURST}")
        fields[f"{direction}_rate"] = rate
        fields[f"{direction}_burst"] = burst or BANDWIDTH_BURST
    if not fields:
        raise _err(index, "bandwidth", "sets no rate (leave bandwidth out instead)")
    return Bandwidth(**fields)


def _cni_args(index: int, value: Any) -> tuple[tuple[str, str], ...]:
    """`cni-args` as CNI_ARGS pairs: strings, integers and booleans (as true/false)."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise _err(index, "cni-args", f"must be an object, got {type_name(value)}")
    out: list[tuple[str, str]] = []
    for k, v in value.items():
        where = f"{KEY}[{index}].cni-args.{k}"
        if not k:
            raise _err(index, "cni-args", "has an empty key")
        cni_arg_text(where, "key ", k)
        if k in RESERVED_ARGS:
            raise AnnotationError(where, f"{show(k)} is set by cri-net (pod identity, IP, MAC) and cannot be "
                                         "overridden")
        if isinstance(v, bool):
            text = "true" if v else "false"
        elif isinstance(v, int):
            text = str(v)
        elif isinstance(v, str):
            text = cni_arg_text(where, "", v)
        else:
            raise AnnotationError(where, f"must be a string, integer or boolean (CNI_ARGS carries text), "
                                         f"got {type_name(v)}")
        out.append((k, text))
    return tuple(out)


def _default_route(index: int, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _err(index, "default-route", f"must be an array of gateway addresses, got {type_name(value)}")
    if not value:
        raise _err(index, "default-route", "is empty (leave it out instead)")
    out: list[str] = []
    families: dict[int, int] = {}
    for i, item in enumerate(value):
        norm, family = _address(index, f"default-route[{i}]", item, cidr=False)
        if family in families:
            raise _err(index, f"default-route[{i}]", f"second IPv{family} gateway (a pod has one default route "
                                                     "per family; Multus does not support ECMP)")
        families[family] = i
        out.append(norm)
    return tuple(out)


def _check_together(entries: list[Selection], reserved: Collection[str]) -> list[Selection]:
    used: dict[str, int] = {}
    for e in entries:
        if e.interface:
            if e.interface in reserved:
                raise _err(e.index, "interface", f"{show(e.interface)} is reserved (loopback or the default "
                                                 "network)")
            if e.interface in used:
                raise _err(e.index, "interface", f"{show(e.interface)} is already used by entry {used[e.interface]}")
            used[e.interface] = e.index
    out: list[Selection] = []
    for e in entries:
        if not e.interface:
            ifname = f"net{e.index + 1}"
            if ifname in used or ifname in reserved:
                raise _err(e.index, "interface", f"defaults to {ifname}, which another entry names: give it an "
                                                 "interface")
            used[ifname] = e.index
            e = Selection(e.index, e.name, e.namespace, ifname, e.ips, e.mac, e.port_mappings, e.bandwidth,
                          e.cni_args, e.default_route)
        out.append(e)
    gateways: dict[int, int] = {}
    for e in out:
        for gw in e.default_route:
            family = ipaddress.ip_address(gw).version
            if family in gateways:
                raise _err(e.index, "default-route", f"entry {gateways[family]} sets the IPv{family} default route "
                                                     "already (one per family)")
            gateways[family] = e.index
    return out
