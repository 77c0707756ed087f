"""The `cri-net` executable a runtime finds in its CNI bin dir.

A runtime execs its plugin for every pod start and stop, so the launcher starts Python
without `site` (no site-packages scan, no .pth hooks): with `cri-net serve` running, a call
is forwarded over a socket and only the standard library is ever loaded. When the plugin
must work in-process it loads `site` itself (see `cni_plugin._in_process`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

LAUNCHER_NAME = "cri-net"


def launcher_text(python: str | None = None) -> str:
    """A script that imports cri-net from where it is installed now."""
    package_root = Path(__file__).resolve().parent.parent
    return (f"#!{python or sys.executable} -S\n"
            "# cri-net-cni launcher, written by `cri-net cni-plugin install`\n"
            "import sys\n"
            f"sys.path.insert(0, {str(package_root)!r})\n"
            "from cri_net.cni_plugin import entry\n"
            "entry()\n")


def install(bin_dir: str, name: str = LAUNCHER_NAME, python: str | None = None) -> str:
    """Write the launcher atomically (a runtime may be executing the old one); returns its path."""
    os.makedirs(bin_dir, mode=0o755, exist_ok=True)
    path = os.path.join(bin_dir, name)
    tmp = os.path.join(bin_dir, f".{name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(launcher_text(python))
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path
