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

The parsers of each kind of input live beside this module (`reading`, `quantity`, `ports`,
`ranges`, `multus`); this one puts them together into a pod's capabilities, CNI_ARGS and extra planes.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from cri_net.network.capabilities import (MAX_IDENTITY_LEN, CAP_BANDWIDTH, CAP_DNS, CAP_IP_RANGES, CAP_POD_ANNOTATIONS, CAP_PORT_MAPPINGS, AnnotationError, Bandwidth, DNSConfig, ExtraNetwork, IPRange, PortMapping, check_text, cni_arg_text, show, special_purpose, type_name, validate_pod_identity)
from .ports import insert_portmapping, parse_port_mappings
from .quantity import insert_bandwidth, parse_bandwidth, parse_quantity
from .ranges import check_allowed_ip_ranges, insert_iprange, parse_ip_ranges
from .ports import field_of
from .multus import Selection as MultusSelection, parse_multus_networks
from .reading import (BANDWIDTH_BURST, CNI_ARGS_ANNOTATION_PREFIX, CNI_EXTENSION_ANNOTATION, CNI_EXTENSION_ARG,
                      EGRESS_BANDWIDTH_ANNOTATION, EGRESS_BANDWIDTH_MISSPELT_ANNOTATION, EXTRA_NETWORKS_ANNOTATION,
                      INGRESS_BANDWIDTH_ANNOTATION, IP_RANGES_ANNOTATION, MULTUS_NETWORKS_ANNOTATION, MAX_ANNOTATION_VALUE_BYTES,
                      MAX_BANDWIDTH_BPS, MAX_IFNAME_BYTES, MIN_BANDWIDTH_BPS, NETWORK_NAME_RE,
                      PORT_MAPPINGS_ANNOTATION, annotation_value, check_fields, ifname_problem, load_json, MAX_EXTRA_PLANES)

logger = logging.getLogger("cri_net.network")

#: This module is the face of pod-input parsing: the parsers beside it are handed on from here.
__all__ = ["AnnotationError", "Bandwidth", "DNSConfig", "ExtraNetwork", "IPRange", "PortMapping",
           "CAP_BANDWIDTH", "CAP_DNS", "CAP_IP_RANGES", "CAP_POD_ANNOTATIONS", "CAP_PORT_MAPPINGS",
           "special_purpose", "validate_pod_identity", "insert_portmapping", "insert_bandwidth", "insert_iprange",
           "parse_quantity", "parse_bandwidth", "parse_port_mappings", "parse_ip_ranges", "check_allowed_ip_ranges",
           "parse_extra_networks", "parse_multus_networks", "MultusSelection", "MULTUS_NETWORKS_ANNOTATION",
           "build_cni_args", "dns_capability", "pod_annotations_capability",
           "capability_args", "MAX_IDENTITY_LEN", "MAX_CNI_ARGS_BYTES", "BANDWIDTH_BURST", "CNI_ARGS_ANNOTATION_PREFIX",
           "CNI_EXTENSION_ANNOTATION", "CNI_EXTENSION_ARG", "EGRESS_BANDWIDTH_ANNOTATION",
           "EGRESS_BANDWIDTH_MISSPELT_ANNOTATION", "EXTRA_NETWORKS_ANNOTATION", "INGRESS_BANDWIDTH_ANNOTATION",
           "IP_RANGES_ANNOTATION", "MAX_ANNOTATION_VALUE_BYTES", "MAX_BANDWIDTH_BPS", "MAX_IFNAME_BYTES",
           "MIN_BANDWIDTH_BPS", "NETWORK_NAME_RE", "PORT_MAPPINGS_ANNOTATION"]


# --- Extra network planes --------------------------------------------------------------------


def _interface_name(key: str, ifname: Any, what: str = "") -> str:
    """A pod interface name (`ifname_problem`'s rules) from annotation `key`."""
    if not isinstance(ifname, str):
        raise AnnotationError(key, f"{what}interface must be a string, got {type_name(ifname)}")
    if not ifname:
        raise AnnotationError(key, f"{what}interface is empty")
    check_text(key, ifname)
    problem = ifname_problem(ifname)
    if problem:
        raise AnnotationError(key, f"{what}interface {show(ifname)} {problem}")
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
    value = annotation_value(annotations, key)
    if value is None:
        return []
    doc = load_json(key, value)
    if not isinstance(doc, list):
        raise AnnotationError(key, f"must be a JSON array of {{name, interface}}, got {type_name(doc)}")
    if len(doc) > MAX_EXTRA_PLANES:
        raise AnnotationError(key, f"asks for {len(doc)} extra planes; at most {MAX_EXTRA_PLANES}")
    out: list[ExtraNetwork] = []
    used: dict[str, int] = {}
    for i, entry in enumerate(doc):
        where = f"entry {i}: "
        obj = check_fields(key, where, entry, ("name", "interface"), ())
        name = obj["name"]
        if not isinstance(name, str):
            raise AnnotationError(key, f"{where}name must be a string, got {type_name(name)}")
        if not name:
            raise AnnotationError(key, f"{where}name is empty")
        if not NETWORK_NAME_RE.fullmatch(name):
            raise AnnotationError(key, f"{where}name {show(name)} must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
        ifname = _interface_name(key, obj["interface"], where)
        if ifname in reserved_interfaces:
            raise AnnotationError(key, f"{where}interface {show(ifname)} is reserved "
                                       f"(loopback or the default network)")
        if ifname in used:
            raise AnnotationError(key, f"{where}interface {show(ifname)} is already used by entry {used[ifname]}")
        used[ifname] = i
        out.append(ExtraNetwork(name=name, interface=ifname))
    return out


# --- CNI_ARGS --------------------------------------------------------------------------------


#: Kubernetes names are at most 253 characters (namespaces 63, uids 36); anything longer is
#: not a pod identity, and a huge one would only fail later, at exec.
#: CNI_ARGS is one environment variable; Linux refuses one longer than 128 KiB at exec.
MAX_CNI_ARGS_BYTES = 64 * 1024
_ZONE = re.compile(r"[A-Za-z0-9_.\-]{1,15}")


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
        args.append((arg, cni_arg_text(path, "", val)))
        if len(val) > MAX_IDENTITY_LEN:
            raise AnnotationError(path, f"is {len(val)} characters long; at most {MAX_IDENTITY_LEN}")
    extension = annotation_value(annotations, CNI_EXTENSION_ANNOTATION)
    if extension is not None:
        args.append((CNI_EXTENSION_ARG, cni_arg_text(CNI_EXTENSION_ANNOTATION, "", extension)))
    seen = {k for k, _ in args}
    extension_keys = (k for k in (annotations or {}) if isinstance(k, str) and k.startswith(CNI_ARGS_ANNOTATION_PREFIX))
    for key in sorted(extension_keys):
        value = annotation_value(annotations, key)
        assert value is not None
        if value.count("=") != 1:
            raise AnnotationError(key, f"{show(value)} must be K=V with exactly one '='")
        arg_key, arg_value = value.split("=")
        if not arg_key:
            raise AnnotationError(key, f"{show(value)} has an empty key")
        cni_arg_text(key, "", arg_key)
        cni_arg_text(key, "", arg_value)
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
        raise AnnotationError(key, f"must be a list of strings, got {type_name(value)}")
    items = list(value)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise AnnotationError(f"{key}[{i}]", f"must be a string, got {type_name(item)}")
        check_text(f"{key}[{i}]", item)
    return items


def dns_capability(dns_config: Any) -> dict[str, Any] | None:
    """The `dns` capability from the CRI DNSConfig ({servers, searches, options}), None if empty.

    Accepts a `DNSConfig`, a dict or a protobuf message. Servers must be IP addresses (a
    scoped IPv6 address is fine: resolv.conf allows it); searches and options non-empty and
    without whitespace, since they end up as resolv.conf words.
    """
    if dns_config is None:
        return None
    servers = _string_list("dns_config.servers", field_of(dns_config, "servers"))
    searches = _string_list("dns_config.searches", field_of(dns_config, "searches"))
    options = _string_list("dns_config.options", field_of(dns_config, "options"))
    for i, server in enumerate(servers):
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise AnnotationError(f"dns_config.servers[{i}]", f"{show(server)} is not an IP address") from None
        _, percent, zone = server.partition("%")
        if percent and not _ZONE.fullmatch(zone):
            # ipaddress accepts any zone text; a newline there would add a resolv.conf line
            raise AnnotationError(f"dns_config.servers[{i}]", f"{show(server)} has an invalid zone "
                                                              "(an interface name is expected)")
    for field, items in (("searches", searches), ("options", options)):
        for i, item in enumerate(items):
            if not item or any(c.isspace() or c == "\0" for c in item):
                raise AnnotationError(f"dns_config.{field}[{i}]", f"{show(item)} must be non-empty without whitespace")
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
            raise AnnotationError(key, f"value must be a string, got {type_name(value)}")
        check_text(key, key)
        check_text(key, value)
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
