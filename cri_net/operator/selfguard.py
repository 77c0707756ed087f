"""Refusing networks whose plugins would run cri-net's own hook.

The CNI hook (`cri-net-cni`, installed as `cri-net` in a runtime's bin dir) runs cri-net's
networks. A network of cri-net's whose plugin chain names the hook again would make cri-net
call itself: handed to `cri-net serve`, such a call waits for the very per-container lock its
caller holds, and the runtime's DEL hangs until its deadline. So such a network is refused
when the conf dir is loaded, whatever the launcher is called: by the hook's type as the
runtime named it, and by what the plugin file is (a launcher carries a mark).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from ..libcni import NetworkConfigList
from ..libcni.errors import CNIError
from ..libcni.fileread import FileReadError, check_regular, read_regular
from ..libcni.invoke import find_in_path

#: Every launcher carries one of these: the Python ones import the module, the native one
#: embeds its name (the first is what launchers installed before the plugin package carry).
LAUNCHER_MARKS = (b"cri_net.cni_launcher", b"cri_net.plugin.launcher")
#: Launchers are small; a plugin file larger than this is not one (and is not read).
MAX_LAUNCHER_SIZE = 1 << 20

_seen: dict[tuple[int, int, int, int], bool] = {}
_seen_lock = threading.Lock()


def is_launcher(path: str) -> bool:
    """Whether `path` (a plugin found in a bin dir) is a cri-net launcher. Read at most once per
    file version; anything that is not a small regular file is not one."""
    try:
        st = check_regular(path)
    except FileReadError:
        return False
    if st.st_size > MAX_LAUNCHER_SIZE:
        return False  # Go plugins are megabytes; launchers are a few KiB
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _seen_lock:
        if key in _seen:
            return _seen[key]
    try:
        data = read_regular(path, MAX_LAUNCHER_SIZE)
        found = any(mark in data for mark in LAUNCHER_MARKS)
    except FileReadError:
        return False
    with _seen_lock:
        if len(_seen) > 4096:
            _seen.clear()
        _seen[key] = found
    return found


def self_reference(net: NetworkConfigList, bin_dirs: Sequence[str], hook_types: Iterable[str] = (),
                   hook_network: str = "") -> str | None:
    """Why `net` would make cri-net run itself (None when it would not)."""
    if hook_network and net.name == hook_network:
        return (f"network name {net.name!r} is the runtime's name for the cri-net hook itself "
                "(their cached results would collide)")
    banned = set(hook_types)
    for plugin_type in dict.fromkeys(net.plugin_types):
        if plugin_type in banned:
            return f"plugin type {plugin_type!r} is the cri-net hook itself"
        try:
            path = find_in_path(plugin_type, bin_dirs)
        except CNIError:
            continue  # not found: it fails when run, and never reaches the hook
        if is_launcher(path):
            return f"plugin {plugin_type!r} ({path}) is a cri-net launcher: cri-net would call itself"
    return None
