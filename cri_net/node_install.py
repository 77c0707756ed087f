"""The DaemonSet's init container: put cri-net's hook on the node (deploy/cri-net.yaml).

    python -m cri_net.node_install --shim /opt/cri-net/shim/cri-net \\
        --bin-dir /opt/cni/bin --conf-dir /etc/cni/net.d [--delegate-conf-dir /etc/cni/net.d]

1. The static launcher goes into the runtime's CNI bin dir as `cri-net`: written to a temp
   file beside it, then renamed over the old one, so a runtime executing the old launcher
   never meets a half-written file or "text file busy".
2. The runtime-side conflist (`00-cri-net.conflist`, sorting first: containerd loads only the
   first file) is written the same way, after libcni has parsed it. With
   `--delegate-conf-dir`, cri-net's default network is the node's primary CNI found there.
3. cri-net's own conf dir is created, so `cri-net serve` finds it.

Files already holding the same bytes are left alone, so a restarted pod changes nothing. The
node needs nothing installed: no Python (the launcher is static), no apt, no internet.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .fsutil import FileReadError, atomic_write, read_regular
from .libcni import ConfigError, conf_list_from_bytes
from .log import kv

log = logging.getLogger("cri_net.node_install")

CONFLIST_FILE = "00-cri-net.conflist"
CAPABILITIES = {"io.kubernetes.cri.pod-annotations": True, "portMappings": True, "bandwidth": True,
                "ipRanges": True, "dns": True}


class InstallError(RuntimeError):
    """Something the init container cannot install; names the file."""


def runtime_conflist(conf_dir: str, bin_dirs: list[str], delegate_conf_dir: str | None) -> bytes:
    """The runtime-side conflist naming the hook (README: "How a runtime plugs it in")."""
    plugin: dict[str, object] = {"type": "cri-net", "confDir": conf_dir, "binDirs": bin_dirs}
    if delegate_conf_dir:
        plugin["delegateConfDir"] = delegate_conf_dir
    plugin["capabilities"] = CAPABILITIES
    doc = {"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0"], "name": "cri-net", "plugins": [plugin]}
    return (json.dumps(doc, indent=2) + "\n").encode()


def _same(path: str, data: bytes) -> bool:
    """Whether `path` is a regular file holding `data` (anything else there is replaced; a FIFO
    must not block the install)."""
    try:
        return read_regular(path, len(data)) == data
    except FileReadError:
        return False


def install_file(path: str, data: bytes, mode: int) -> bool:
    """Write `path` atomically (temp + rename) unless it holds `data`; whether it was written."""
    if _same(path, data) and (os.stat(path).st_mode & 0o777) == mode:
        return False
    try:
        atomic_write(path, data, mode=mode, dir_mode=0o755)
    except OSError as exc:
        raise InstallError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return True


def install(shim: str, bin_dir: str, conf_dir: str, crinet_conf_dir: str, bin_dirs: list[str],
            delegate_conf_dir: str | None) -> list[str]:
    """Install the launcher and the conflist; returns what was written."""
    try:
        launcher = read_regular(shim, 16 << 20)
    except FileReadError as exc:
        raise InstallError(f"cannot read the launcher: {exc}") from None
    if launcher[:4] != b"\x7fELF":
        raise InstallError(f"{shim}: not an executable (ELF) launcher")
    conflist = runtime_conflist(crinet_conf_dir, bin_dirs, delegate_conf_dir)
    target = os.path.join(conf_dir, CONFLIST_FILE)
    try:
        conf_list_from_bytes(conflist, source=target)
    except ConfigError as exc:
        raise InstallError(str(exc)) from None
    written = []
    if install_file(os.path.join(bin_dir, "cri-net"), launcher, 0o755):
        written.append(os.path.join(bin_dir, "cri-net"))
    if install_file(target, conflist, 0o644):
        written.append(target)
    os.makedirs(crinet_conf_dir, mode=0o755, exist_ok=True)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cri_net.node_install", description=__doc__.split("\n")[0])
    p.add_argument("--shim", default="/opt/cri-net/shim/cri-net", help="the static launcher in the image")
    p.add_argument("--bin-dir", default="/opt/cni/bin", help="the runtime's CNI bin dir (mounted from the node)")
    p.add_argument("--conf-dir", default="/etc/cni/net.d", help="the runtime's CNI conf dir (mounted from the node)")
    p.add_argument("--crinet-conf-dir", default="/etc/cri-net/net.d", help="cri-net's own networks")
    p.add_argument("--plugin-dir", action="append", dest="bin_dirs",
                   help="where cri-net serve finds plugins (repeatable; default /opt/cni/bin, /usr/lib/cni)")
    p.add_argument("--delegate-conf-dir", default=None,
                   help="delegate mode: the node's primary CNI config in this dir is the default network")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    try:
        written = install(args.shim, args.bin_dir, args.conf_dir, args.crinet_conf_dir,
                          args.bin_dirs or ["/opt/cni/bin", "/usr/lib/cni"], args.delegate_conf_dir)
    except InstallError as exc:
        print(f"cri-net node install: {exc}", file=sys.stderr)
        return 1
    kv(log, logging.INFO, "cri-net hook installed", written=",".join(written) or "nothing (unchanged)",
       delegate=args.delegate_conf_dir or "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
