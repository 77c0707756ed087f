"""NativeAdaptor: user-created bridge networks (`crinet-<name>.conflist` files in the conf dir,
which the CRI adaptor never reads) and containers attached to them as eth0, eth1, ...

Which containers are attached is read from the CNI result cache, so `rm` refuses an attached
network across restarts without any state of our own.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading

from cri_net import libcni
from cri_net.config import Settings
from cri_net.fsutil import atomic_write
from cri_net.libcni import CNIError, NetworkConfigList
from cri_net.log import kv
from cri_net.netns import live_netns
from ..cri import annotations
from cri_net.network.errors import DetachError, InvalidRequestError, NetworkApiError
from cri_net.network.models import (NetworkApiConf, NetworkApiResult, NetworkCreateRequest, NetworkInfo,
                                     NetworkState)
from cri_net.operator import CNIOperator, PlaneRef
from cri_net.operator.loader import load_networks

from .. import NATIVE_FILE_PREFIX, shared
from ..leases import count_leases, host_local_dirs
from ..listing import filter_infos, network_info
from ..shared import cni_state_errors, plane_result
from ..planes import attach_all, cached_planes, check_all, detach_all, ifname_key, merge_direct_caps, validate_target
from . import bridge

log = logging.getLogger("cri_net.adaptors.native")

FALLBACK_VERSION = "1.0.0"
#: owner tag of the attachments `cri-net network connect` makes (the cache dir is shared)
OWNER = "cri-net/native"


class NativeAdaptor(shared.OperatorBacked):
    kind = "native"

    def __init__(self, settings: Settings, watch: bool = False) -> None:
        self.settings = settings
        self.operator = CNIOperator(settings.conf_dir, settings.bin_dirs, settings.cache_dir,
                                    settings.plugin_timeout, file_filter=lambda n: n.startswith(NATIVE_FILE_PREFIX),
                                    keep_last_good=False,  # networks come and go by create/rm
                                    owner=OWNER)
        self._config_lock = threading.Lock()
        if watch:
            self.operator.watch(settings.conf_poll_interval)

    def ready(self) -> bool:
        return True  # no network is needed before one is created

    def update(self) -> None:
        self.operator.update()

    def state(self) -> NetworkState:
        return shared.state(self.operator, None)  # no default network: containers name theirs

    def status(self) -> None:
        return None  # ready with no network at all: containers are attached to created ones

    @cni_state_errors
    def validate(self, conf: NetworkApiConf) -> None:
        self.plan(conf)

    def close(self) -> None:
        self.operator.close()

    def _path(self, name: str) -> str:
        return os.path.join(self.operator.conf_dir, f"{NATIVE_FILE_PREFIX}{name}.conflist")

    def _get(self, name: str) -> NetworkConfigList:
        net = self.operator.networks.get(name)
        if net is None:
            raise NetworkApiError(f"network {name!r} not found")
        return net

    # ---- configs -----------------------------------------------------------------------
    @cni_state_errors
    def conf_create(self, request: NetworkCreateRequest) -> NetworkInfo:
        if request.driver != "bridge":
            raise InvalidRequestError("driver", f"unsupported driver {request.driver!r} (supported: bridge)")
        if request.name:
            bridge.validate_name(request.name)
        with self._config_lock:
            self.operator.update()
            every = load_networks(self.operator.conf_dir)  # names are unique across the whole dir
            if request.name and every.get(request.name) is not None:
                raise InvalidRequestError("name", f"network {request.name!r} already exists")
            subnets, bridges = [], set(bridge.host_link_names())
            for net in self.operator.networks.networks:
                plugin = net.plugins[0].network.extra
                bridges.add(str(plugin.get("bridge", "")))
                for rs in (plugin.get("ipam") or {}).get("ranges", []):
                    subnets += [ipaddress.ip_network(r["subnet"], strict=False) for r in rs if "subnet" in r]
            p = bridge.plan(request.name, request.subnet, request.gateway, request.internal, subnets, bridges,
                            bridge.host_networks())
            if every.get(p.name) is not None:
                raise InvalidRequestError("name", f"network {p.name!r} already exists")
            optional = [t for t in bridge.OPTIONAL_PLUGINS if bridge.installed(t, self.settings.bin_dirs)]
            version = self._newest_common_version(["bridge", "portmap", "firewall", *optional])
            data = bridge.conflist(p, version, optional)
            path = self._path(p.name)
            try:  # never over a file already there: another network's, or one being edited
                atomic_write(path, data, mode=0o640, dir_mode=0o755, replace=False)
            except FileExistsError:
                raise InvalidRequestError("name", f"{path} already exists (it is not network {p.name!r}); "
                                                  "rename or remove it, or choose another name") from None
            self.operator.update()
        kv(log, logging.INFO, "network created", network=p.name, bridge=p.bridge, subnet=str(p.subnet))
        return network_info(self._get(p.name))

    def _newest_common_version(self, plugin_types: list[str]) -> str:
        """The newest spec version every plugin supports (and we speak)."""
        common: set[str] | None = None
        for t in plugin_types:
            try:
                versions = set(self.operator.cni.version_info(t).supported_versions)
            except CNIError as exc:
                raise NetworkApiError(f"cannot create network: plugin {t}: {exc}") from exc
            common = versions if common is None else common & versions
        usable = [v for v in common or () if libcni.version.is_supported(v)]
        return libcni.version.newest(usable) if usable else FALLBACK_VERSION

    def conf_inspect(self, name: str) -> str:
        net = self._get(name)
        return net.raw.decode("utf-8")

    def conf_list(self, filters: dict[str, list[str]] | None = None) -> list[NetworkInfo]:
        return filter_infos([network_info(n) for n in self.operator.networks.networks], filters)

    def exist(self, name: str) -> bool:
        return self.operator.networks.get(name) is not None

    @cni_state_errors
    def attached_containers(self, name: str) -> list[str]:
        return sorted({a.container_id for a in self.operator.own_attachments() if a.network == name})

    @cni_state_errors
    def attachments(self) -> dict[str, list[str]]:
        """network -> ids of the containers attached to it (this adaptor's attachments only)."""
        return _by_network(self.operator.own_attachments(), self.operator.loopback.name)

    @cni_state_errors
    def conf_rm(self, name: str) -> str:
        with self._config_lock:
            net = self._get(name)
            users = self.attached_containers(name)
            if users:
                raise NetworkApiError(f"network {name!r} has attached containers: {', '.join(users)}")
            plugin = net.plugins[0].network.extra
            bridge_name = str(plugin.get("bridge", ""))
            if bridge_name:
                _delete_link(bridge_name)
            try:
                os.unlink(net.source or self._path(name))
            except FileNotFoundError:
                pass
            _remove_ipam_state(net)
            self.operator.update()
        kv(log, logging.INFO, "network removed", network=name, bridge=bridge_name)
        return name

    # ---- containers --------------------------------------------------------------------
    def plan(self, conf: NetworkApiConf) -> list[tuple[NetworkConfigList, PlaneRef]]:
        validate_target(conf)
        if not conf.networks:
            raise InvalidRequestError("networks", "no network to attach")
        if len(set(conf.networks)) != len(conf.networks):
            raise InvalidRequestError("networks", "a network is listed twice")
        try:
            caps = annotations.capability_args(conf.annotations, conf.port_mappings, None, conf.dns)
        except annotations.AnnotationError as exc:
            raise InvalidRequestError(exc.key, exc.reason) from None
        caps = merge_direct_caps(conf.capabilities, caps)
        args = tuple((k, v) for k, v in [("IgnoreUnknown", "1"), *conf.args.items()])
        planes = []
        for i, name in enumerate(conf.networks):
            net = self.operator.networks.get(name)
            if net is None:
                raise InvalidRequestError(f"networks[{i}]", f"network {name!r} not found")
            planes.append((net, PlaneRef(name, conf.pod_id, conf.netns_path, f"eth{i}", args,
                                         caps if i == 0 else {})))  # port mappings go to the first network
        return planes

    @cni_state_errors
    def attach(self, conf: NetworkApiConf) -> list[NetworkApiResult]:
        planes = self.plan(conf)
        attach_all(self.operator, conf.pod_id, conf.netns_path, planes)
        kv(log, logging.INFO, "container attached", container=conf.pod_id, networks=",".join(conf.networks))
        return [plane_result(p.network, p.ifname, self.operator.cached_result(p)) for _, p in planes]

    def _known_planes(self, conf: NetworkApiConf) -> list[PlaneRef]:
        netns = live_netns(conf.netns_path)
        planes = sorted(cached_planes(self.operator, conf.pod_id, netns), key=lambda p: ifname_key(p.ifname),
                        reverse=True)
        return planes + [PlaneRef(self.operator.loopback.name, conf.pod_id, netns, "lo")]

    @cni_state_errors
    def detach(self, conf: NetworkApiConf) -> None:
        failures = detach_all(self.operator, self._known_planes(conf))
        if failures:
            raise DetachError(failures)
        kv(log, logging.INFO, "container detached", container=conf.pod_id)

    def detach_network(self, conf: NetworkApiConf, name: str) -> None:
        """Detach the container from network `name` only; loopback goes with its last network."""
        netns = live_netns(conf.netns_path)
        planes = cached_planes(self.operator, conf.pod_id, netns)
        mine = [p for p in planes if p.network == name]
        if not mine:
            raise NetworkApiError(f"container {conf.pod_id} is not attached to network {name!r}")
        if len(mine) == len(planes):
            mine.append(PlaneRef(self.operator.loopback.name, conf.pod_id, netns, "lo"))
        failures = detach_all(self.operator, mine)
        if failures:
            raise DetachError(failures)
        kv(log, logging.INFO, "container detached from network", container=conf.pod_id, network=name)

    @cni_state_errors
    def check(self, conf: NetworkApiConf) -> list[NetworkApiResult]:
        planes = check_all(self.operator, self._known_planes(conf))
        return [plane_result(p.network, p.ifname, self.operator.cached_result(p)) for p in reversed(planes)]


def _by_network(attachments: list[libcni.NetworkAttachment], loopback: str) -> dict[str, list[str]]:
    out: dict[str, set[str]] = {}
    for a in attachments:
        if a.network != loopback:
            out.setdefault(a.network, set()).add(a.container_id)
    return {n: sorted(ids) for n, ids in out.items()}


def _remove_ipam_state(net: NetworkConfigList) -> None:
    """host-local keeps `<dataDir>/<network>/` (leases, `lock`, `last_reserved_ip.N`) and never
    removes it: with no container attached, what is left is bookkeeping, gone with the network.
    A lease file there is someone else's: the dir is then kept, and the log says so."""
    for network, lease_dir in host_local_dirs([net]):
        if count_leases(lease_dir):
            kv(log, logging.WARNING, "IPAM state kept: it holds leases", network=network, dir=lease_dir)
            return
        try:
            with os.scandir(lease_dir) as it:
                names = [e.name for e in it]
            for n in names:
                os.unlink(os.path.join(lease_dir, n))
            os.rmdir(lease_dir)
        except FileNotFoundError:
            pass
        except OSError as exc:
            kv(log, logging.WARNING, "IPAM state not removed", network=network, dir=lease_dir, error=str(exc))


def _delete_link(name: str) -> None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if idx:
            try:
                ipr.link("del", index=idx[0])
            except NetlinkError as exc:
                if exc.code != 19:  # ENODEV: already gone
                    raise
