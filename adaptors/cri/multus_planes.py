"""Multus selections -> planes: which network, which namespace may use it, and how each
per-attachment request reaches the plugins.

There is no API server on a plain node, so no NetworkAttachmentDefinitions: a name resolves
to the network of that name in cri-net's conf dir. A selection may name a namespace other
than the pod's only where the network's own config allows it (a top-level key of its
conflist):

    "criNet": {"namespaces": ["team-a", "team-b"]}     (or ["*"] for every namespace)

Routing per attachment (each refused before anything is attached when it cannot work):
- `ips` and `mac` go as the standard `ips`/`mac` capabilities when a plugin of the network
  declares them (the reference `static` IPAM and `tuning` do), otherwise as `IP=`/`MAC=`
  CNI_ARGS (host-local and static read `IP`, tuning reads `MAC`). Never both: `static`
  appends the addresses of both sources and would add each address twice;
- `portMappings` and `bandwidth` go as those capabilities, as for the default network; a
  network with no plugin declaring the capability is refused (the request would be dropped);
- `cni-args` are appended to the plane's CNI_ARGS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cri_net.libcni import NetworkConfigList
from cri_net.network.capabilities import CAP_BANDWIDTH, CAP_PORT_MAPPINGS
from cri_net.network.errors import InvalidRequestError, NetworkApiError
from cri_net.operator import NetworkSet

from . import crinet_keys, host_ports
from .multus import Selection

CONFIG_KEY: Final = crinet_keys.CONFIG_KEY
NAMESPACES_FIELD: Final = "namespaces"
CAP_IPS: Final = "ips"
CAP_MAC: Final = "mac"


@dataclass(frozen=True)
class ResolvedSelection:
    """A selection bound to its network: the plane's extra CNI_ARGS and capabilities."""

    selection: Selection
    network: NetworkConfigList
    namespace: str  # the namespace it is reported under (the pod's when none was given)
    args: tuple[tuple[str, str], ...]
    capabilities: dict[str, Any]


def allowed_namespaces(net: NetworkConfigList) -> list[str]:
    """The network's `criNet.namespaces`; a malformed one is the operator's error, named with
    its file and key."""
    where = f"{net.source or net.name}: {CONFIG_KEY}.{NAMESPACES_FIELD}"
    entries = crinet_keys.section(net).get(NAMESPACES_FIELD, [])
    if not isinstance(entries, list) or not all(isinstance(e, str) and e for e in entries):
        raise NetworkApiError(f"{where} must be a list of namespace names (or \"*\")")
    return list(entries)


def resolve(selections: Sequence[Selection], networks: NetworkSet, pod_namespace: str, default_name: str,
            default_interface: str) -> list[ResolvedSelection]:
    """Bind each selection to a loaded network. Raises InvalidRequestError naming
    `<annotation>[i].<field>` (NetworkApiError for a malformed `criNet.namespaces`)."""
    out: list[ResolvedSelection] = []
    for sel in selections:
        if sel.name == default_name:
            raise InvalidRequestError(f"{sel.key}.name", f"network {sel.name!r} is the default network, attached on "
                                                         f"{default_interface} already")
        net = networks.get(sel.name)
        if net is None:
            names = ", ".join(networks.names) or "none"
            raise InvalidRequestError(f"{sel.key}.name", f"unknown network {sel.name!r} (there are no "
                                                         f"NetworkAttachmentDefinitions on a node: networks are the "
                                                         f"conf dir's; loaded: {names})")
        namespace = sel.namespace or pod_namespace
        if namespace != pod_namespace:
            allowed = allowed_namespaces(net)
            if "*" not in allowed and namespace not in allowed:
                raise InvalidRequestError(f"{sel.key}.namespace", (
                    f"network {sel.name!r} may not be used from namespace {namespace!r} by a pod in "
                    f"{pod_namespace!r}: its config allows {', '.join(allowed) or 'only the pod own namespace'} "
                    f"({CONFIG_KEY}.{NAMESPACES_FIELD} in {net.source or net.name})"))
        out.append(_route(sel, net, namespace))
    _check_host_ports(out)
    return out


def _route(sel: Selection, net: NetworkConfigList, namespace: str) -> ResolvedSelection:
    caps: dict[str, Any] = {}
    args: list[tuple[str, str]] = []
    declared = net.capabilities
    if sel.ips:
        if CAP_IPS in declared:
            caps[CAP_IPS] = list(sel.ips)
        else:
            args.append(("IP", ",".join(sel.ips)))
    if sel.mac:
        if CAP_MAC in declared:
            caps[CAP_MAC] = sel.mac
        else:
            args.append(("MAC", sel.mac))
    for field, cap, value in (("portMappings", CAP_PORT_MAPPINGS, [pm.model_dump() for pm in sel.port_mappings]),
                              ("bandwidth", CAP_BANDWIDTH, sel.bandwidth.model_dump() if sel.bandwidth else None)):
        if not value:
            continue
        if cap not in declared:
            raise InvalidRequestError(f"{sel.key}.{field}", (
                f"network {net.name!r} has no plugin declaring the {cap!r} capability, so it would be ignored "
                f"(add e.g. {'portmap' if cap == CAP_PORT_MAPPINGS else 'bandwidth'} to its plugins)"))
        caps[cap] = value
    args += list(sel.cni_args)
    return ResolvedSelection(sel, net, namespace, tuple(args), caps)


def _check_host_ports(resolved: Sequence[ResolvedSelection]) -> None:
    seen: list[tuple[dict[str, Any], str]] = []
    for r in resolved:
        for i, m in enumerate(r.capabilities.get(CAP_PORT_MAPPINGS, ())):
            for other, label in seen:
                if host_ports.conflicts(m, other):
                    raise InvalidRequestError(f"{r.selection.key}.portMappings[{i}]",
                                              f"{host_ports.describe(m)} is mapped by {label} already")
            seen.append((m, f"{r.selection.key}.portMappings"))


def check_against(resolved: Sequence[ResolvedSelection], mappings: Sequence[Mapping[str, Any]]) -> None:
    """Refuse an attachment's host port that the pod's default network maps already."""
    for r in resolved:
        for i, m in enumerate(r.capabilities.get(CAP_PORT_MAPPINGS, ())):
            for other in mappings:
                if host_ports.conflicts(m, other):
                    raise InvalidRequestError(f"{r.selection.key}.portMappings[{i}]",
                                              f"{host_ports.describe(m)} is mapped by the default network already")
