"""The network a fresh machine gets, so `cri-net serve` works at once on an empty conf dir."""

from __future__ import annotations

import json
import os

from cri_net.fsutil import atomic_write
from cri_net.libcni import SkippedFile, conf_files

NAME = "cri-net-default"
FILE = "10-cri-net-default.conflist"
SUBNET = "10.88.0.0/16"
BRIDGE = "crinet0"


def conflist() -> bytes:
    doc = {
        "cniVersion": "1.0.0",
        "name": NAME,
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "bandwidth", "capabilities": {"bandwidth": True}},
        ],
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def install_if_empty(conf_dir: str) -> str | None:
    """Write the default network when `conf_dir` holds no config at all; returns its path.

    A config-named entry that cannot be read (a dangling symlink, say, whose target is not
    mounted yet) counts as a config: the operator meant something there, and the loader
    reports it."""
    unusable: list[SkippedFile] = []
    if conf_files(conf_dir, unusable=unusable) or unusable:
        return None
    path = os.path.join(conf_dir, FILE)
    atomic_write(path, conflist(), mode=0o644, dir_mode=0o755)
    return path
