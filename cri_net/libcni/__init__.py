"""A CNI runtime library (spec 0.1.0 to 1.1.0), file-compatible with Go libcni.

    from cri_net import libcni
    net = libcni.load_conf_list("/etc/cni/net.d", "mynet")
    cni = libcni.CNI(["/usr/lib/cni"], cache_dir="/var/lib/cni", timeout=30)
    result = cni.add_network_list(net, libcni.RuntimeConf("ctr1", "/run/netns/x", "eth0"))
"""

from .api import CNI, GCAttachment, RuntimeConf, validate_container_id, validate_interface_name, validate_network_name
from .cache import CACHE_KIND, DEFAULT_CACHE_DIR, CacheRecord, NetworkAttachment, ResultCache
from .conf import (
    NetConf, NetConfListFile, NetworkConfigList, PluginConfig, SkippedFile, conf_files, conf_list_from_bytes,
    conf_list_from_conf, conf_list_from_file, load_conf_list, load_file, plugin_conf_from_bytes,
    plugin_conf_from_file,
)
from .errors import (
    CacheError, CNIError, ConfigError, ErrorCode, NetworkNotFoundError, NoConfigsFoundError, PluginError,
    PluginNotFoundError, PluginOutputTooLargeError, PluginTimeoutError,
)
from .invoke import Executor, PluginArgs, PluginInfo
from .result import Result, Result020, Result040, Result100, convert, parse_result
from .version import CURRENT as CURRENT_VERSION, SUPPORTED_VERSIONS, Version

__all__ = [name for name in dir() if not name.startswith("_")]
