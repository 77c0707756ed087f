"""CNIOperator: the layer between the adaptors and libcni (seed 000, cni_operator_design).

It owns the current `NetworkSet` of one conf dir (swapped atomically on reload; a reload that
finds nothing usable keeps the last good set) and attaches, checks and detaches one plane at
a time. Two rules make teardown reliable:
- a failed ADD is followed by a DEL of that plane, so earlier plugins release what they took;
- DEL uses the config and args cached at ADD time, so editing or deleting a file after a pod
  started still tears down exactly what was set up.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from .. import libcni, metrics
from .. import orphans
from ..plugin.wire import CALLER_ENV
from ..libcni import CNI, CNIError, NetworkAttachment, NetworkConfigList, PluginInfo, Result, RuntimeConf, SkippedFile
from ..libcni.errors import PluginError, PluginNotFoundError
from ..log import kv
from ..netns import live_netns
from .loader import FileFilter, NetworkSet, load_networks
from .masq_sweep import sweep_masquerade
from .selfguard import self_reference
from .timed_executor import TimedExecutor
from .watcher import ConfDirWatcher, dir_signature

log = logging.getLogger("cri_net.operator")

LOOPBACK_CONFLIST = b'{"cniVersion":"0.3.1","name":"cni-loopback","plugins":[{"type":"loopback"}]}'
LOOPBACK_IFNAME = "lo"


@dataclass(frozen=True)
class PlaneRef:
    """One attachment of a container to a network on an interface."""

    network: str
    container_id: str
    netns: str
    ifname: str
    args: tuple[tuple[str, str], ...] = ()
    capability_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def runtime_conf(self) -> RuntimeConf:
        return RuntimeConf(self.container_id, self.netns, self.ifname, self.args, self.capability_args)


def rollback_failures(exc: BaseException) -> list[str]:
    """What the rollback DEL of a failed ADD could not undo ("<network> on <ifname>: <error>"),
    as `attach_network_plane` leaves it on the exception it re-raises."""
    return list(getattr(exc, "rollback_failures", ()))


class CNIOperator:
    """Networks of one conf dir, and plane operations on them."""

    def __init__(self, conf_dir: str, bin_dirs: Sequence[str], cache_dir: str = libcni.DEFAULT_CACHE_DIR,
                 timeout: float | None = None, file_filter: FileFilter | None = None,
                 keep_last_good: bool = True, owner: str = "", hook_types: Sequence[str] = (),
                 hook_network: str = "") -> None:
        """`owner` tags every attachment this operator makes, and `own_attachments` lists only
        those: the cache dir is shared with the runtime and other tools by default.
        `hook_types`/`hook_network`: how the runtime names the cri-net hook that calls us;
        networks naming it (or any cri-net launcher) are refused at load."""
        self.conf_dir = conf_dir
        self.keep_last_good = keep_last_good
        self.file_filter = file_filter
        self.owner = owner
        self.hook_types = tuple(hook_types)
        self.hook_network = hook_network
        # plugins run with CALLER_ENV set, so a launcher reached anyway refuses instead of nesting;
        # its value names this process, so a restarted server can stop the plugins it left running
        executor = TimedExecutor(timeout=timeout, extra_env={CALLER_ENV: orphans.caller_tag()})
        self.cni = CNI(bin_dirs, cache_dir=cache_dir, executor=executor, owner=owner)
        self.loopback = libcni.conf_list_from_bytes(LOOPBACK_CONFLIST, source="<built-in loopback>")
        self._networks = NetworkSet(conf_dir)
        self._last_error = ""
        self._reload_lock = threading.Lock()
        self._watcher: ConfDirWatcher | None = None
        self._signature = dir_signature(conf_dir)
        self.update()

    # ---- configs -----------------------------------------------------------------------
    @property
    def networks(self) -> NetworkSet:
        return self._networks

    @property
    def last_reload_error(self) -> str:
        """Why the last reload kept the previous set ("" when it was applied)."""
        return self._last_error

    def update(self) -> NetworkSet:
        """Re-read the conf dir. With `keep_last_good`, an empty or wholly bad result keeps
        the last good set (a node must not lose its pod network to a botched edit)."""
        with self._reload_lock:
            try:
                fresh = self._refuse_self_references(load_networks(self.conf_dir, self.file_filter))
            except Exception as exc:  # noqa: BLE001 - whatever the dir holds, report it and keep serving
                self._last_error = str(exc) if isinstance(exc, CNIError) else f"{type(exc).__name__}: {exc}"
                metrics.observe_conf_reload(self.conf_dir, "failed")
                kv(log, logging.WARNING, "conf dir reload failed; keeping previous networks",
                   conf_dir=self.conf_dir, error=str(exc))
                return self._networks
            if self.keep_last_good and not fresh.networks and self._networks.networks:
                reasons = "; ".join(f"{s.path}: {s.reason}" for s in fresh.skipped) or "no config files"
                self._last_error = f"no usable network config in {self.conf_dir} ({reasons})"
                metrics.observe_conf_reload(self.conf_dir, "kept_previous")
                kv(log, logging.WARNING, "conf dir has no usable networks; keeping previous set",
                   conf_dir=self.conf_dir, kept=",".join(self._networks.names), reason=reasons)
                # keep the networks, but report what the dir holds now
                self._networks = dataclasses.replace(self._networks, skipped=fresh.skipped)
                return self._networks
            self._last_error = ""
            for skipped in fresh.skipped:
                kv(log, logging.WARNING, "skipped network config", file=skipped.path, reason=skipped.reason)
            self._networks = fresh
            metrics.observe_conf_reload(self.conf_dir, "applied")
            kv(log, logging.INFO, "loaded networks", conf_dir=self.conf_dir, networks=",".join(fresh.names),
               skipped=len(fresh.skipped))
            return fresh

    def update_if_changed(self) -> NetworkSet:
        """Re-read the conf dir only when its entries changed since the last load (cheap:
        one stat per entry), for callers that keep an operator without a watcher."""
        signature = dir_signature(self.conf_dir)
        if signature != self._signature:
            self._signature = signature
            self.update()
        return self._networks

    def _refuse_self_references(self, found: NetworkSet) -> NetworkSet:
        kept, skipped = [], list(found.skipped)
        for net in found.networks:
            why = self_reference(net, self.cni.bin_dirs, self.hook_types, self.hook_network)
            if why is None:
                kept.append(net)
            else:
                skipped.append(SkippedFile(net.source, why))
        if len(kept) == len(found.networks):
            return found
        return dataclasses.replace(found, networks=tuple(kept), skipped=tuple(skipped))

    def own_attachments(self, container_id: str | None = None) -> list[NetworkAttachment]:
        """Cached attachments this operator's owner made (all of them when it has no owner):
        the only ones cri-net may DEL, check or report, since the cache dir is shared."""
        return self.cni.cached_attachments(container_id, owner=self.owner or None)

    def iter_own_attachments(self) -> Iterator[NetworkAttachment]:
        """`own_attachments()` of every container, one cache file at a time."""
        return self.cni.iter_cached_attachments(owner=self.owner or None)

    def watch(self, poll_interval: float = 5.0) -> None:
        """Reload on changes in the conf dir (inotify, else polling) until `close()`."""
        if self._watcher is None:
            self._watcher = ConfDirWatcher(self.conf_dir, self.update, poll_interval).start()

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    def get(self, name: str) -> NetworkConfigList:
        net = self._networks.get(name)
        if net is None:
            raise CNIError(libcni.ErrorCode.INVALID_NETWORK_CONFIG,
                           f'no net configuration with name "{name}" in {self.conf_dir}')
        return net

    # ---- loopback ----------------------------------------------------------------------
    def attach_loopback(self, container_id: str, netns: str) -> Result:
        return self.attach_network_plane(self.loopback, PlaneRef(self.loopback.name, container_id, netns,
                                                                 LOOPBACK_IFNAME))

    def detach_loopback(self, container_id: str, netns: str) -> None:
        self.detach_network_plane(PlaneRef(self.loopback.name, container_id, netns, LOOPBACK_IFNAME))

    # ---- planes ------------------------------------------------------------------------
    def attach_network_plane(self, net: NetworkConfigList, plane: PlaneRef) -> Result:
        """ADD `net` for `plane`; on failure DEL it again (best effort) and re-raise."""
        rt = plane.runtime_conf()
        try:
            result = self.cni.add_network_list(net, rt)
        except Exception as exc:  # a plugin failure or anything else: release what earlier plugins took
            kv(log, logging.WARNING, "attach failed; rolling back plane", network=net.name,
               container=plane.container_id, ifname=plane.ifname, error=str(exc))
            try:
                self.cni.del_network_list(net, rt)
            except CNIError as del_exc:
                kv(log, logging.ERROR, "rollback DEL failed", network=net.name, container=plane.container_id,
                   ifname=plane.ifname, error=str(del_exc))
                if not (isinstance(del_exc, PluginError) and isinstance(del_exc.cause, PluginNotFoundError)):
                    # a plugin that cannot be found never ran, so it left nothing to undo
                    failure = f"{net.name} on {plane.ifname}: {del_exc}"
                    exc.rollback_failures = [*rollback_failures(exc), failure]  # type: ignore[attr-defined]
                    exc.add_note(f"rollback DEL failed: {failure}")  # for a human reading the traceback
            raise
        # DEBUG: the adaptor logs the pod once at INFO, naming every network
        kv(log, logging.DEBUG, "attached plane", network=net.name, container=plane.container_id, ifname=plane.ifname)
        return result

    def cached_plane_config(self, plane: PlaneRef) -> tuple[NetworkConfigList, RuntimeConf] | None:
        """The list and runtime args this plane was attached with, from the result cache."""
        record = self.cni.cache.read(plane.network, plane.container_id, plane.ifname)
        if record is None or not record.config:
            return None
        try:
            net = libcni.conf_list_from_bytes(record.config, source=f"<cached config of {plane.network}>")
        except CNIError as exc:
            kv(log, logging.WARNING, "cached config unusable", network=plane.network,
               container=plane.container_id, error=str(exc))
            return None
        if net.name != record.network_name:  # e.g. a conf that had no name: its file name was used
            net = net.replace(name=record.network_name)
        netns = plane.netns or record.netns
        netns = live_netns(netns)  # gone (or an unmounted leftover file): DEL still releases IPAM and host-side state
        rt = RuntimeConf(record.container_id, netns, record.ifname, tuple(record.cni_args), record.capability_args)
        return net, rt

    def detach_network_plane(self, plane: PlaneRef) -> None:
        """DEL with the cached config and args; without a cache entry, with today's config."""
        cached = self.cached_plane_config(plane)
        if cached is not None:
            net, rt = cached
        elif plane.network == self.loopback.name:
            net, rt = self.loopback, plane.runtime_conf()
        else:
            current = self._networks.get(plane.network)
            if current is None:
                kv(log, logging.INFO, "nothing to detach: no cached attachment and no such network",
                   network=plane.network, container=plane.container_id, ifname=plane.ifname)
                return
            net, rt = current, plane.runtime_conf()
        self.cni.del_network_list(net, rt)
        if cached is not None and not rt.netns:
            sweep_masquerade(net.name, rt.container_id)  # plugins skip ipMasq teardown without a netns
        kv(log, logging.DEBUG, "detached plane", network=plane.network, container=plane.container_id,
           ifname=plane.ifname)

    def check_network_plane(self, plane: PlaneRef) -> None:
        cached = self.cached_plane_config(plane)
        if cached is None:
            raise CNIError(libcni.ErrorCode.UNKNOWN_CONTAINER,
                           f"no cached attachment of {plane.container_id} to network {plane.network} "
                           f"on {plane.ifname}")
        net, rt = cached
        self.cni.check_network_list(net, rt)

    def cached_result(self, plane: PlaneRef) -> Result | None:
        """The plane's result from the cache (no plugin runs)."""
        raw = self.cni.cache.read_result(plane.network, plane.container_id, plane.ifname)
        if raw is None:
            return None
        try:
            return libcni.parse_result(raw)
        except CNIError:
            return None

    def version_network_plane(self, net: NetworkConfigList) -> dict[str, PluginInfo]:
        """VERSION of each plugin type in the plane."""
        return {t: self.cni.version_info(t) for t in dict.fromkeys(net.plugin_types)}
