"""A CNI runtime library (spec 0.1.0 to 1.1.0), file-compatible with Go libcni.

    from cri_net import libcni
    net = libcni.load_conf_list("/etc/cni/net.d", "mynet")
    cni = libcni.CNI(["/usr/lib/cni"], cache_dir="/var/lib/cni", timeout=30)
    result = cni.add_network_list(net, libcni.RuntimeConf("ctr1", "/run/netns/x", "eth0"))

Names are loaded on first use, so a caller that needs only `libcni.errors` or
`libcni.version` (a CNI plugin answering VERSION) does not pay for the rest.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # `typing` costs a plugin answering VERSION ~5 ms
if TYPE_CHECKING:
    from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "api": ("CNI",),
    "runtime": ("GCAttachment", "RuntimeConf", "validate_container_id", "validate_interface_name",
                "validate_network_name"),
    "cache": ("CACHE_KIND", "DEFAULT_CACHE_DIR", "CacheRecord", "NetworkAttachment", "ResultCache"),
    "conf": ("NetConf", "NetConfListFile", "NetworkConfigList", "PluginConfig", "SkippedFile", "conf_files",
             "conf_list_from_bytes", "conf_list_from_conf", "conf_list_from_file", "load_conf_list", "load_file",
             "plugin_conf_from_bytes", "plugin_conf_from_file"),
    "errors": ("CacheError", "CNIError", "ConfigError", "ErrorCode", "NetworkNotFoundError", "NoConfigsFoundError",
               "PluginError", "PluginNotFoundError", "PluginOutputTooLargeError", "PluginTimeoutError"),
    "invoke": ("Executor", "PluginArgs", "PluginInfo"),
    "result": ("Result", "Result020", "Result040", "Result100", "convert", "parse_result"),
    "version": ("SUPPORTED_VERSIONS", "Version"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
_WHERE["CURRENT_VERSION"] = "version"

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'cri_net.libcni' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), "CURRENT" if name == "CURRENT_VERSION" else name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    from .api import CNI
    from .runtime import GCAttachment, RuntimeConf, validate_container_id, validate_interface_name, validate_network_name
    from .cache import CACHE_KIND, DEFAULT_CACHE_DIR, CacheRecord, NetworkAttachment, ResultCache
    from .conf import (NetConf, NetConfListFile, NetworkConfigList, PluginConfig, SkippedFile, conf_files,
                       conf_list_from_bytes, conf_list_from_conf, conf_list_from_file, load_conf_list, load_file,
                       plugin_conf_from_bytes, plugin_conf_from_file)
    from .errors import (CacheError, CNIError, ConfigError, ErrorCode, NetworkNotFoundError, NoConfigsFoundError,
                         PluginError, PluginNotFoundError, PluginOutputTooLargeError, PluginTimeoutError)
    from .invoke import Executor, PluginArgs, PluginInfo
    from .result import Result, Result020, Result040, Result100, convert, parse_result
    from .version import CURRENT as CURRENT_VERSION, SUPPORTED_VERSIONS, Version
