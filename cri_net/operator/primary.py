"""Delegate mode: the node's primary CNI network as cri-net's default network.

On a cluster the pod network (kindnet, flannel, calico...) routes pods between nodes; cri-net
must keep it as the pod's default network and only add what annotations ask for (extra planes,
port mappings, bandwidth, IP ranges). As Multus does, the primary is the first usable config
of the runtime's conf dir (file-name order) that is not cri-net's own: not the hook's type or
network name, and no plugin that is a cri-net launcher (it would make cri-net call itself).
Settings may name it instead (``default_network``).

Port mappings and bandwidth are asked for per pod, so they must reach the default network: a
primary whose chain has no plugin with the `portMappings` (or `bandwidth`) capability gets
Debian's `portmap` (or `bandwidth`) appended, as cri-net's own default network has them
(kindnet's chain has portmap, but no bandwidth). Without a request they do nothing.

The primary's file is read when a pod is attached; detach, check and GC use the config cached
with the attachment (chained plugins included), so an upgrade of the primary CNI's file never
breaks a teardown.
"""

from __future__ import annotations

import logging
import json
from collections.abc import Sequence

from ..libcni import NetworkConfigList, conf_list_from_bytes
from ..log import kv
from ..network.errors import NetworkNotReadyError
from .loader import load_networks
from .selfguard import self_reference

log = logging.getLogger("cri_net.operator.primary")

#: The plugin type cri-net's hook is installed as (plugin.launcher.LAUNCHER_NAME).
HOOK_TYPE = "cri-net"
#: capability -> the plugin chained after a primary that lacks it
CHAINED = {"portMappings": "portmap", "bandwidth": "bandwidth"}


def find_primary(conf_dir: str, bin_dirs: Sequence[str], name: str | None = None,
                 hook_types: Sequence[str] = (), hook_network: str = "") -> NetworkConfigList:
    """The primary network of `conf_dir`: the one named `name`, else the first usable one that
    is not cri-net's. Raises NetworkNotReadyError naming the dir and why each file was passed
    over (so a node whose primary CNI is not installed yet reports that, and stays not ready)."""
    found = load_networks(conf_dir)
    passed: list[str] = [f"{s.path}: {s.reason}" for s in found.skipped]
    for net in found.networks:
        why = self_reference(net, bin_dirs, (HOOK_TYPE, *hook_types), hook_network)
        if why is not None:
            passed.append(f"{net.name}: cri-net's own ({why})")
            continue
        if name is None or net.name == name:
            return with_pod_capabilities(net, found.conf_dir)
        passed.append(f"{net.name}: not the network named {name!r}")
    wanted = f"primary network {name!r}" if name else "a primary network that is not cri-net's"
    detail = "; ".join(passed) if passed else "no config files"
    kv(log, logging.DEBUG, "no primary network to delegate to", conf_dir=conf_dir, network=name or "",
       passed_over=detail)
    raise NetworkNotReadyError(f"{conf_dir} (delegate mode: {wanted} not found; {detail})")


def with_pod_capabilities(net: NetworkConfigList, conf_dir: str) -> NetworkConfigList:
    """`net` with portmap/bandwidth chained for the capabilities its own chain lacks."""
    missing = [(cap, plugin) for cap, plugin in CHAINED.items() if cap not in net.capabilities]
    if not missing:
        return net
    doc = json.loads(net.raw)
    if not isinstance(doc.get("plugins"), list):  # a .conf: one plugin
        doc = {"cniVersion": net.cni_version, "plugins": [doc]}
    doc["name"] = net.name
    doc["plugins"] = list(doc["plugins"]) + [{"type": plugin, "capabilities": {cap: True}} for cap, plugin in missing]
    return conf_list_from_bytes(json.dumps(doc).encode(), source=f"{conf_dir}: {net.name} (delegate mode)")
