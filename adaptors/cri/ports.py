"""Port mappings: the CRI's, and the `cri-net.io/port-mappings` annotation's, merged into the
`portMappings` capability (a host port mapped twice is refused)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from pydantic import ValidationError

from cri_net.network.capabilities import CAP_PORT_MAPPINGS, AnnotationError, PortMapping, show, type_name
from .reading import (PORT_MAPPINGS_ANNOTATION, _CRI_PROTOCOLS, _PROTOCOLS, annotation_value, check_fields, ip_address, load_json, port_number)


def field_of(obj: Any, name: str) -> Any:
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
            raise AnnotationError(key, f"unknown protocol {show(value)} (want TCP, UDP or SCTP)")
        return name
    raise AnnotationError(key, f"must be a protocol name or number, got {type_name(value)}")


def parse_host_ip(key: str, what: str, value: Any) -> tuple[str, str]:
    """(as given, normalised) host IP; empty means all addresses."""
    if value is None or value == "":
        return "", ""
    return value, str(ip_address(key, what, value))


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
                                        f"got {type_name(pm)}")
        host_port = field_of(pm, "host_port")
        if host_port is None or (type(host_port) is not bool and isinstance(host_port, int) and host_port == 0):
            continue  # no host port: nothing for the portmap plugin to do
        host_port = port_number(f"{path}.host_port", "", host_port)
        container_port = port_number(f"{path}.container_port", "", field_of(pm, "container_port"))
        protocol = _cri_protocol(f"{path}.protocol", field_of(pm, "protocol"))
        host_ip, norm_ip = parse_host_ip(f"{path}.host_ip", "", field_of(pm, "host_ip"))
        mapping = PortMapping(host_port=host_port, container_port=container_port, protocol=protocol, host_ip=host_ip)
        out.append(_Mapping(path, "", path, mapping, (host_port, protocol, norm_ip)))
    return out


def _annotation_port_mappings(key: str, value: str) -> list[_Mapping]:
    doc = load_json(key, value)
    if not isinstance(doc, list):
        raise AnnotationError(key, f"must be a JSON array of port mappings, got {type_name(doc)}")
    return _json_port_mappings(key, "", doc)


def json_port_mappings(key: str, where: str, doc: Any) -> list[PortMapping]:
    """A JSON list of `{hostPort, containerPort, protocol, hostIP}` found inside another
    annotation (`where` prefixes each error, e.g. "entry 2: portMappings"); one (hostPort,
    protocol, hostIP) twice is refused."""
    if not isinstance(doc, list):
        raise AnnotationError(key, f"{where} must be an array, got {type_name(doc)}")
    return _merge_port_mappings(_json_port_mappings(key, where, doc))


def _json_port_mappings(key: str, prefix: str, doc: list[Any]) -> list[_Mapping]:
    out: list[_Mapping] = []
    for i, entry in enumerate(doc):
        where = f"{prefix}[{i}]: " if prefix else f"entry {i}: "
        obj = check_fields(key, where, entry, ("hostPort", "containerPort"), ("protocol", "hostIP"))
        host_port = port_number(key, f"{where}hostPort ", obj["hostPort"])
        container_port = port_number(key, f"{where}containerPort ", obj["containerPort"])
        protocol = obj.get("protocol", "tcp")
        if not isinstance(protocol, str) or protocol.lower() not in _PROTOCOLS:
            raise AnnotationError(key, f"{where}protocol must be tcp, udp or sctp, got {show(protocol)}")
        protocol = protocol.lower()
        host_ip, norm_ip = parse_host_ip(key, f"{where}hostIP ", obj.get("hostIP"))
        mapping = PortMapping(host_port=host_port, container_port=container_port, protocol=protocol, host_ip=host_ip)
        label = f"{key} {prefix}[{i}]" if prefix else f"{key} entry {i}"
        out.append(_Mapping(key, where, label, mapping, (host_port, protocol, norm_ip)))
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
    value = annotation_value(annotations, PORT_MAPPINGS_ANNOTATION)
    if value is not None:
        items += _annotation_port_mappings(PORT_MAPPINGS_ANNOTATION, value)
    return _merge_port_mappings(items)


def insert_portmapping(value: str, capabilities: Mapping[str, Any]) -> dict[str, Any]:
    """Seed API: parse one `cri-net.io/port-mappings` value and append it to `portMappings`.

    Returns a new capability dict (the input is not modified); duplicates against mappings
    already present are refused like in `parse_port_mappings`.
    """
    key = PORT_MAPPINGS_ANNOTATION
    value = annotation_value({key: value}, key) or ""
    try:
        existing = [pm if isinstance(pm, PortMapping) else PortMapping.model_validate(pm)
                    for pm in capabilities.get(CAP_PORT_MAPPINGS, ())]
    except ValidationError as exc:
        raise AnnotationError(CAP_PORT_MAPPINGS, f"existing capability is invalid: {exc}") from None
    seen = {(pm.host_port, pm.protocol, parse_host_ip(CAP_PORT_MAPPINGS, f"[{i}].hostIP ", pm.host_ip)[1]):
            f"{CAP_PORT_MAPPINGS}[{i}]" for i, pm in enumerate(existing)}
    added = _merge_port_mappings(_annotation_port_mappings(key, value), seen)
    merged = [pm.model_dump() for pm in existing + added]
    out = dict(capabilities)
    if merged:
        out[CAP_PORT_MAPPINGS] = merged
    return out
