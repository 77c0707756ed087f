"""Loading a conf dir into a `NetworkSet`, skipping (and reporting) what cannot be used.

Rules (iSulad's, minus its bugs): `.conf`/`.conflist`/`.json` in file-name order; files over
1 MiB, unparsable files, files without `type`, lists without plugins and bad names are
skipped with the reason; an empty name becomes the file's base name; the first file wins on a
duplicate name; past 1024 files the rest are reported, not fatal.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from ..libcni import ConfigError, NetworkConfigList, SkippedFile, conf_files, load_file
from ..libcni.conf import MAX_CONF_FILE_SIZE

MAX_CONF_FILES = 1024
RESERVED_NAME = "cni-loopback"
_VALID_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")

FileFilter = Callable[[str], bool]


@dataclass(frozen=True)
class NetworkSet:
    """An immutable snapshot of the usable networks of a conf dir, in file-name order."""

    conf_dir: str
    networks: tuple[NetworkConfigList, ...] = ()
    skipped: tuple[SkippedFile, ...] = ()
    loaded_at: float = field(default_factory=time.time)

    def get(self, name: str) -> NetworkConfigList | None:
        return self.by_name.get(name)

    @property
    def by_name(self) -> dict[str, NetworkConfigList]:
        return {n.name: n for n in self.networks}

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.networks]

    def default(self) -> NetworkConfigList | None:
        return self.networks[0] if self.networks else None


def load_networks(conf_dir: str, file_filter: FileFilter | None = None) -> NetworkSet:
    """Load every usable network of `conf_dir` whose file name passes `file_filter`."""
    def wanted(path: str) -> bool:
        return file_filter is None or file_filter(os.path.basename(path))

    unusable: list[SkippedFile] = []
    paths = [p for p in conf_files(conf_dir, unusable=unusable) if wanted(p)]
    skipped = [s for s in unusable if wanted(s.path)]  # FIFOs, devices, dirs, dangling links, loops
    skipped += [SkippedFile(p, f"more than {MAX_CONF_FILES} config files; only the first {MAX_CONF_FILES} are read")
                for p in paths[MAX_CONF_FILES:]]
    networks: list[NetworkConfigList] = []
    first_seen: dict[str, str] = {}
    for path in paths[:MAX_CONF_FILES]:
        try:
            net = load_file(path)  # bounded to MAX_CONF_FILE_SIZE, regular files only
        except (ConfigError, OSError) as exc:
            skipped.append(SkippedFile(path, str(exc)))
            continue
        if not net.name:
            net = net.replace(name=os.path.splitext(os.path.basename(path))[0])
        if net.name == RESERVED_NAME:
            skipped.append(SkippedFile(path, f"network name {net.name!r} is reserved for the built-in loopback"))
            continue
        if not _VALID_NAME.fullmatch(net.name):
            skipped.append(SkippedFile(path, f"invalid network name {net.name!r}"))
            continue
        if net.name in first_seen:
            skipped.append(SkippedFile(path, f"duplicate network name {net.name!r}, first defined in {first_seen[net.name]}"))
            continue
        first_seen[net.name] = path
        networks.append(net)
    return NetworkSet(conf_dir, tuple(networks), tuple(skipped))
