"""IP ranges a pod asks for (`cri-net.io/ip-ranges`) or the runtime sets (the pod CIDR),
as the `ipRanges` capability: inside what the operator allowed, never special-purpose space."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any


from cri_net.network.capabilities import CAP_IP_RANGES, AnnotationError, IPRange, show, special_purpose, type_name
from .reading import IP_RANGES_ANNOTATION, annotation_value, check_fields, ip_address, load_json, parse_cidr


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


def _ip_range(key: str, where: str, entry: Any) -> IPRange:
    obj = check_fields(key, where, entry, ("subnet",), ("rangeStart", "rangeEnd", "gateway"))
    net = parse_cidr(key, f"{where}subnet ", obj["subnet"], strict=True)
    why = special_purpose(net)
    if why is not None:
        raise AnnotationError(key, f"{where}subnet {obj['subnet']} {why}: never a pod range")
    addrs: dict[str, Any] = {}
    for name in ("rangeStart", "rangeEnd", "gateway"):
        raw = obj.get(name, "")
        if raw == "":
            continue
        addr = ip_address(key, f"{where}{name} ", raw)
        if addr.version != net.version or addr not in net:
            raise AnnotationError(key, f"{where}{name} {show(raw)} is outside subnet {obj['subnet']}")
        addrs[name] = addr
    gateway = addrs.get("gateway")
    if gateway is not None and net.num_addresses > 2 and gateway in (net.network_address, net.broadcast_address):
        raise AnnotationError(key, f"{where}gateway {show(obj['gateway'])} is the network or broadcast address "
                                   f"of {obj['subnet']}")
    if "rangeStart" in addrs and "rangeEnd" in addrs and addrs["rangeStart"] > addrs["rangeEnd"]:
        raise AnnotationError(key, f"{where}rangeStart {show(obj['rangeStart'])} is after "
                                   f"rangeEnd {show(obj['rangeEnd'])}")
    return IPRange(subnet=obj["subnet"], range_start=obj.get("rangeStart", ""),
                   range_end=obj.get("rangeEnd", ""), gateway=obj.get("gateway", ""))


def _annotation_ip_ranges(key: str, value: str) -> list[list[IPRange]]:
    doc = load_json(key, value)
    if not isinstance(doc, list) or not doc:
        got = "an empty array" if isinstance(doc, list) else type_name(doc)
        raise AnnotationError(key, f'must be a non-empty JSON array of range sets ([[{{"subnet": ...}}]]), got {got}')
    sets: list[list[IPRange]] = []
    for i, range_set in enumerate(doc):
        if not isinstance(range_set, list) or not range_set:
            got = "an empty array" if isinstance(range_set, list) else type_name(range_set)
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
        raise AnnotationError(key, f"must be a string, got {type_name(pod_cidr)}")
    if not pod_cidr.strip():
        return None
    sets: list[list[IPRange]] = []
    for i, part in enumerate(pod_cidr.split(",")):
        cidr = part.strip()
        if not cidr:
            raise AnnotationError(key, f"{show(pod_cidr)}: entry {i} is empty")
        parse_cidr(key, "", cidr, strict=False)  # the kubelet's value is used as given
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
    value = annotation_value(annotations, IP_RANGES_ANNOTATION)
    if value is not None:
        sets = _annotation_ip_ranges(IP_RANGES_ANNOTATION, value)
        pod_ranges = [r.subnet for s in default or () for r in s]
        pod_nets = [ipaddress.ip_network(subnet, strict=False) for subnet in pod_ranges]
        check_allowed_ip_ranges(IP_RANGES_ANNOTATION, sets, pod_nets + list(allowed or ()))
        return [[_shared_gateway(IP_RANGES_ANNOTATION, f"range set {i}, range {j}: ", r, pod_ranges)
                 for j, r in enumerate(range_set)] for i, range_set in enumerate(sets)]
    return default


def _shared_gateway(key: str, where: str, r: IPRange, pod_ranges: list[str]) -> IPRange:
    """The range as host-local must see it so that the pod leaves the host's side as every
    other pod has it. The bridge plugin gives its bridge the range's gateway with the subnet's
    prefix, and refuses any pod after one that set another: so a pod may not choose a gateway
    other than host-local's own (the subnet's first address), and a narrower subnet inside the
    pod CIDR becomes that part of the pod CIDR (rangeStart..rangeEnd), not a subnet of its own."""
    net = ipaddress.ip_network(r.subnet)
    if r.gateway and ipaddress.ip_address(r.gateway) != net.network_address + 1:
        raise AnnotationError(key, f"{where}gateway {r.gateway} of {r.subnet}: a pod may not choose its network's "
                                   "gateway (it would readdress the host's bridge for every pod); leave it out "
                                   f"(host-local's is {net.network_address + 1})")
    for given in pod_ranges:
        pod_net = ipaddress.ip_network(given, strict=False)
        if pod_net.version != net.version or net == pod_net or not net.subnet_of(pod_net):  # type: ignore[arg-type]
            continue
        start = max(net.network_address, pod_net.network_address + 1)
        end = min(net.broadcast_address, pod_net.broadcast_address - (1 if net.version == 4 else 0))
        if r.range_start:
            start = max(start, ipaddress.ip_address(r.range_start))  # type: ignore[type-var]
        if r.range_end:
            end = min(end, ipaddress.ip_address(r.range_end))  # type: ignore[type-var]
        if start > end:
            raise AnnotationError(key, f"{where}subnet {r.subnet} holds no address a pod of {given} may have")
        return IPRange(subnet=given, range_start=str(start), range_end=str(end))
    return r


def insert_iprange(value: str, capabilities: Mapping[str, Any]) -> dict[str, Any]:
    """Seed API: parse one `cri-net.io/ip-ranges` value and append its range sets to `ipRanges`.

    Returns a new capability dict; the input is not modified.
    """
    key = IP_RANGES_ANNOTATION
    sets = _annotation_ip_ranges(key, annotation_value({key: value}, key) or "")
    out = dict(capabilities)
    out[CAP_IP_RANGES] = list(capabilities.get(CAP_IP_RANGES, ())) + [[r.model_dump() for r in s] for s in sets]
    return out
