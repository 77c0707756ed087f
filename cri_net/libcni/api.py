"""The CNI runtime operations: ADD, CHECK, DEL, STATUS, GC, VERSION and the cache queries.

`CNI` is the Python counterpart of Go libcni's `CNIConfig`: it knows where plugins live and
where results are cached, and runs a network's plugin chain for one container attachment
(`RuntimeConf`). It holds no per-container state, so any number of threads may drive
different containers at once; only GC of a network excludes ADD/DEL on that network.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from contextlib import contextmanager

from . import conf as confmod
from . import rawjson, version
from .cache import DEFAULT_CACHE_DIR, CacheRecord, NetworkAttachment, ResultCache
from .conf import NetworkConfigList, PluginConfig
from .errors import CNIError, ErrorCode, PluginError
from .invoke import Executor, PluginArgs, PluginInfo, decode_version_info, find_in_path
from .result import Result, convert, parse_result
from .runtime import GCAttachment, RuntimeConf, validate_encodable, validate_runtime_conf
from .logfields import DEBUG, INFO, WARNING, LazyLogger, kv

TYPE_CHECKING = False  # `typing` costs a short-lived CLI ~4 ms
if TYPE_CHECKING:
    from typing import Any, Iterable, Iterator, Sequence

log = LazyLogger("cri_net.libcni")

class _GCLocks:
    """Per-network reader/writer locks: ADD/DEL share, GC is exclusive."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers: dict[str, int] = defaultdict(int)
        self._writers: set[str] = set()

    @contextmanager
    def shared(self, network: str) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: network not in self._writers)
            self._readers[network] += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers[network] -= 1
                if not self._readers[network]:
                    del self._readers[network]
                self._cond.notify_all()

    @contextmanager
    def exclusive(self, network: str) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: network not in self._writers and not self._readers.get(network))
            self._writers.add(network)
        try:
            yield
        finally:
            with self._cond:
                self._writers.discard(network)
                self._cond.notify_all()


class CNI:
    """Runs CNI plugins found in `bin_dirs`, caching results under `cache_dir`."""

    def __init__(self, bin_dirs: Sequence[str], cache_dir: str = DEFAULT_CACHE_DIR,
                 timeout: float | None = None, executor: Executor | None = None, owner: str = "") -> None:
        """`owner`: a tag written into every cache record this instance makes, so a runtime
        sharing `cache_dir` with others can list only its own attachments (`attachments(owner=)`)."""
        self.bin_dirs = tuple(bin_dirs)
        self.owner = owner
        self.cache = ResultCache(cache_dir)
        self.executor = executor or Executor(timeout=timeout)
        self._locks = _GCLocks()

    @property
    def cache_dir(self) -> str:
        return self.cache.cache_dir

    # ---- one plugin --------------------------------------------------------------------
    def _exec(self, plugin: PluginConfig, command: str, network: str, stdin_values: dict[str, Any],
              rt: RuntimeConf | None) -> bytes:
        start = time.monotonic()
        try:
            path = find_in_path(plugin.type, self.bin_dirs)
            stdin = confmod.inject(plugin, stdin_values).encode("utf-8")
            args = PluginArgs(
                command=command, container_id=rt.container_id if rt else "", netns=rt.netns if rt else "",
                ifname=rt.ifname if rt else "", args=rt.args if rt else (), path=self.bin_dirs,
            )
            out = self.executor.run(path, stdin, args)
        except CNIError as exc:
            kv(log, INFO, "plugin failed", network=network, plugin=plugin.type, command=command,
               container=rt.container_id if rt else "", error=str(exc))
            raise PluginError(plugin.type, command, network, exc) from exc
        kv(log, DEBUG, "plugin ran", network=network, plugin=plugin.type, command=command,
           container=rt.container_id if rt else "", ms=round((time.monotonic() - start) * 1000, 2))
        return out

    def _stdin_values(self, plugin: PluginConfig, network: str, cni_version: str,
                      prev: Result | None, rt: RuntimeConf) -> dict[str, Any]:
        values: dict[str, Any] = {"cniVersion": cni_version, "name": network}
        if prev is not None:
            values["prevResult"] = prev.to_dict()
        runtime_config = {cap: rt.capability_args[cap] for cap, on in plugin.network.capabilities.items()
                          if on and cap in rt.capability_args}
        if runtime_config:
            values["runtimeConfig"] = runtime_config
        return values

    # ---- chains ------------------------------------------------------------------------
    def _add(self, network: str, cni_version: str, plugins: Sequence[PluginConfig], config: bytes,
             rt: RuntimeConf) -> Result:
        validate_runtime_conf(network, rt)
        with self._locks.shared(network):
            prev: Result | None = None
            for plugin in plugins:
                out = self._exec(plugin, "ADD", network, self._stdin_values(plugin, network, cni_version, prev, rt), rt)
                try:
                    prev = _decode_result(out, cni_version)
                except CNIError as exc:
                    raise PluginError(plugin.type, "ADD", network, exc) from exc
            assert prev is not None  # lists always have a plugin
            self.cache.write(CacheRecord(
                container_id=rt.container_id, config=config, ifname=rt.ifname, network_name=network,
                netns=rt.netns, cni_args=list(rt.args), capability_args=dict(rt.capability_args),
                result=rawjson.loads(rawjson.dumps(prev.to_dict())), owner=self.owner,
            ))
            return prev

    def _cached_prev(self, network: str, cni_version: str, rt: RuntimeConf) -> Result | None:
        """The cached result as prevResult; an unreadable cache is logged, not fatal."""
        try:
            return self._cached_result(network, cni_version, rt)
        except CNIError as exc:
            kv(log, WARNING, "ignoring unusable cached result", network=network,
               container=rt.container_id, ifname=rt.ifname, error=str(exc))
            return None

    def _del(self, network: str, cni_version: str, plugins: Sequence[PluginConfig], rt: RuntimeConf) -> None:
        validate_encodable(rt)
        with self._locks.shared(network):
            prev = self._cached_prev(network, cni_version, rt) if version.at_least(cni_version, "0.4.0") else None
            self._del_chain(network, cni_version, plugins, rt, prev)
            self._drop_cache(network, rt)

    def _del_chain(self, network: str, cni_version: str, plugins: Sequence[PluginConfig], rt: RuntimeConf,
                   prev: Result | None) -> None:
        """DEL every plugin in reverse order, carrying on past failures (unlike Go libcni, which
        stops at the first): a missing or broken plugin must not keep the others from
        releasing what they hold. Raises the first failure, naming every failed plugin."""
        failures: list[PluginError] = []
        for plugin in reversed(plugins):
            try:
                self._exec(plugin, "DEL", network, self._stdin_values(plugin, network, cni_version, prev, rt), rt)
            except PluginError as exc:
                failures.append(exc)
        if len(failures) == 1:
            raise failures[0]
        if failures:
            first = failures[0]
            raise PluginError(first.plugin, "DEL", network, CNIError(
                first.cause.code, "; ".join(f"{f.plugin}: {f.cause}" for f in failures)))

    def _drop_cache(self, network: str, rt: RuntimeConf) -> None:
        """After a successful DEL; like Go libcni, a cache file that cannot go is not fatal."""
        try:
            self.cache.delete(network, rt.container_id, rt.ifname)
        except CNIError as exc:
            kv(log, WARNING, "could not remove cached result after DEL", network=network,
               container=rt.container_id, ifname=rt.ifname, error=str(exc))

    def _check(self, network: str, cni_version: str, plugins: Sequence[PluginConfig], rt: RuntimeConf,
               disable_check: bool = False) -> None:
        if not version.at_least(cni_version, "0.4.0"):
            raise CNIError(ErrorCode.INCOMPATIBLE_CNI_VERSION,
                           f'configuration version "{cni_version}" does not support the CHECK command')
        if disable_check:
            return
        validate_encodable(rt)
        prev = self._cached_result(network, cni_version, rt, strict=True)
        for plugin in plugins:
            self._exec(plugin, "CHECK", network, self._stdin_values(plugin, network, cni_version, prev, rt), rt)

    def _cached_result(self, network: str, cni_version: str, rt: RuntimeConf, strict: bool = False) -> Result | None:
        """The cached result in `cni_version`; None when nothing is cached. `strict` (CHECK, as
        Go's getCachedResult): a cache file that exists but holds no decodable result is an
        error, never "no prevResult"."""
        try:
            raw = self.cache.read_result(network, rt.container_id, rt.ifname, strict=strict)
            if raw is None:
                return None
            return convert(parse_result(raw, cni_version), cni_version)
        except CNIError as exc:
            raise CNIError(exc.code, f'failed to get network "{network}" cached result: {exc.msg}') from exc

    # ---- public: lists -----------------------------------------------------------------
    def add_network_list(self, net: NetworkConfigList, rt: RuntimeConf) -> Result:
        """ADD every plugin in order, chaining prevResult; cache and return the final result.

        On a plugin failure nothing is cached; the caller should DEL the list to release what
        earlier plugins allocated (the network module does).
        """
        return self._add(net.name, net.cni_version, net.plugins, net.raw, rt)

    def check_network_list(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        self._check(net.name, net.cni_version, net.plugins, rt, net.disable_check)

    def del_network_list(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        """DEL every plugin in reverse order with the cached result; idempotent."""
        self._del(net.name, net.cni_version, net.plugins, rt)

    def status_network_list(self, net: NetworkConfigList) -> None:
        """STATUS (spec >= 1.1.0): raises the first plugin's error, keeping its code (50/51)."""
        if not version.at_least(net.cni_version, "1.1.0"):
            return
        for plugin in net.plugins:
            self._exec(plugin, "STATUS", net.name, {"cniVersion": net.cni_version, "name": net.name}, None)

    def gc_network_list(self, net: NetworkConfigList,
                        valid_attachments: Iterable[GCAttachment] | None = None) -> None:
        """DEL cached attachments of `net` not in `valid_attachments`, then GC each plugin.

        `None` means "no valid attachments known": every cached attachment is removed.
        Raises one CNIError listing every failure.
        """
        if net.disable_gc:
            return
        valid = None if valid_attachments is None else list(valid_attachments)
        keep = {(a.container_id, a.ifname) for a in valid or ()}
        errors: list[str] = []
        with self._locks.exclusive(net.name):
            for att in self.cache.attachments():
                if att.network != net.name or (att.container_id, att.ifname) in keep:
                    continue
                rt = RuntimeConf(att.container_id, att.netns, att.ifname, att.cni_args, att.capability_args)
                try:
                    prev = self._cached_prev(net.name, net.cni_version, rt) \
                        if version.at_least(net.cni_version, "0.4.0") else None
                    self._del_chain(net.name, net.cni_version, net.plugins, rt, prev)
                    self._drop_cache(net.name, rt)
                except CNIError as exc:
                    errors.append(f"failed to delete stale attachment {att.container_id} {att.ifname}: {exc}")
            if version.at_least(net.cni_version, "1.1.0"):
                values: dict[str, Any] = {"cniVersion": net.cni_version, "name": net.name}
                if valid is not None:
                    listed = [{"containerID": a.container_id, "ifname": a.ifname} for a in valid]
                    values["cni.dev/valid-attachments"] = listed
                    values["cni.dev/attachments"] = listed  # the name an older spec draft used
                for plugin in net.plugins:
                    try:
                        self._exec(plugin, "GC", net.name, values, None)
                    except CNIError as exc:
                        cause = exc.cause if isinstance(exc, PluginError) else exc  # Go: the plugin's own error
                        errors.append(f"failed to GC plugin {plugin.type}: {cause}")
        if errors:
            raise CNIError(ErrorCode.INTERNAL, "; ".join(errors))

    def validate_network_list(self, net: NetworkConfigList) -> list[str]:
        """Check every plugin exists and supports the list's version; return its capabilities."""
        errors = []
        for plugin in net.plugins:
            try:
                self._validate_plugin(plugin.type, net.cni_version)
            except CNIError as exc:
                errors.append(str(exc))
        if errors:
            raise CNIError(ErrorCode.INCOMPATIBLE_CNI_VERSION, f"network {net.name!r}: " + "; ".join(errors))
        return sorted(net.capabilities)

    def _validate_plugin(self, plugin_type: str, expected: str) -> None:
        expected = expected or "0.1.0"
        info = self.version_info(plugin_type)
        if expected not in info.supported_versions:
            raise CNIError(ErrorCode.INCOMPATIBLE_CNI_VERSION,
                           f'plugin {plugin_type} does not support config version "{expected}"')

    def version_info(self, plugin_type: str) -> PluginInfo:
        """VERSION: what spec versions the plugin supports (a 0.1.0 plugin that predates
        VERSION answers "unknown CNI_COMMAND: VERSION", which means it supports 0.1.0)."""
        path = find_in_path(plugin_type, self.bin_dirs)
        args = PluginArgs("VERSION", "dummy", "dummy", "dummy", (), ("dummy",))
        try:
            out = self.executor.run(path, f'{{"cniVersion":"{version.CURRENT}"}}'.encode(), args)
        except CNIError as exc:
            if str(exc) == "unknown CNI_COMMAND: VERSION":
                return PluginInfo("0.1.0", ("0.1.0",))
            raise PluginError(plugin_type, "VERSION", "", exc) from exc
        return decode_version_info(out)

    # ---- public: single confs (a plugin conf used on its own) --------------------------
    def add_network(self, plugin: PluginConfig, rt: RuntimeConf) -> Result:
        net = plugin.network
        return self._add(net.name, net.cniVersion, (plugin,), plugin.raw.encode("utf-8"), rt)

    def check_network(self, plugin: PluginConfig, rt: RuntimeConf) -> None:
        self._check(plugin.network.name, plugin.network.cniVersion, (plugin,), rt)

    def del_network(self, plugin: PluginConfig, rt: RuntimeConf) -> None:
        self._del(plugin.network.name, plugin.network.cniVersion, (plugin,), rt)

    def validate_network(self, plugin: PluginConfig) -> list[str]:
        self._validate_plugin(plugin.type, plugin.network.cniVersion)
        return sorted(c for c, on in plugin.network.capabilities.items() if on)

    # ---- cache queries -----------------------------------------------------------------
    def cached_result(self, net: NetworkConfigList, rt: RuntimeConf) -> Result | None:
        """The cached result of this attachment, in the list's version; None if not cached."""
        return self._cached_result(net.name, net.cni_version, rt)

    def cached_config(self, network: str, rt: RuntimeConf) -> tuple[bytes, RuntimeConf] | None:
        """The config bytes and runtime args the attachment was created with."""
        record = self.cache.read(network, rt.container_id, rt.ifname)
        if record is None:
            return None
        return record.config, RuntimeConf(record.container_id, record.netns, record.ifname,
                                          tuple(record.cni_args), record.capability_args)

    def cached_attachments(self, container_id: str | None = None, owner: str | None = None) -> list[NetworkAttachment]:
        """Cached attachments, optionally one container's and only those tagged `owner`."""
        return list(self.iter_cached_attachments(container_id, owner))

    def iter_cached_attachments(self, container_id: str | None = None,
                                owner: str | None = None) -> Iterator[NetworkAttachment]:
        """`cached_attachments()` one file at a time (a listing error comes with the first item)."""
        for a in self.cache.iter_attachments(container_id):
            if owner is None or a.owner == owner:
                yield a


def _decode_result(stdout: bytes, conf_version: str) -> Result:
    """A plugin's result; one whose cniVersion is missing, empty or not a string takes the
    config's (Go's fixupResultVersion only keeps a non-empty string)."""
    try:
        obj = rawjson.loads(stdout)
    except ValueError as exc:
        raise CNIError(ErrorCode.DECODING_FAILURE, f"failed to unmarshal raw result: {exc}") from None
    if obj is None:
        obj = {}
    if isinstance(obj, dict) and not (isinstance(obj.get("cniVersion"), str) and obj["cniVersion"]):
        obj = {**obj, "cniVersion": conf_version or "0.1.0"}
    return parse_result(obj, conf_version)
