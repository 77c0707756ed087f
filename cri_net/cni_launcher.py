"""The `cri-net` executable a runtime finds in its CNI bin dir, and the plugin's entry point.

A runtime execs its plugin for every pod start and stop, so this path is kept bare: the
launcher starts Python without `site` (no site-packages scan, no .pth hooks), and
`run_plugin` imports only `cri_net.cni_wire` (which needs only the C socket module) before it
hands the call to `cri-net serve`. Only when no server takes the call does it load `site`
and the network stack (`cni_plugin`) and do the work itself.
"""

from __future__ import annotations

import os
import sys

from . import cni_wire

LAUNCHER_NAME = "cri-net"


def run_plugin() -> None:
    """`cri-net-cni` and the launcher: answer one CNI call, then exit without tearing down
    the interpreter (nothing to clean up; saves ~40 ms after the network stack was loaded)."""
    stdin = sys.stdin.buffer.read()
    handed = cni_wire.try_handoff(os.environ, stdin)
    if handed is not None:
        rc, out = handed
    else:
        if sys.flags.no_site and os.environ.get("CNI_COMMAND") in cni_wire.HANDOFF_COMMANDS:
            import site

            site.main()
        from .cni_plugin import run

        rc, text = run(dict(os.environ), stdin)
        out = text.encode()
    view = memoryview(out)
    while view:
        view = view[os.write(1, view):]
    os._exit(rc)


def launcher_text(python: str | None = None) -> str:
    """A script that imports cri-net from where it is installed now."""
    from pathlib import Path

    package_root = Path(__file__).resolve().parent.parent
    return (f"#!{python or sys.executable} -S\n"
            "# cri-net-cni launcher, written by `cri-net cni-plugin install`\n"
            "import sys\n"
            f"sys.path.insert(0, {str(package_root)!r})\n"
            "from cri_net.cni_launcher import run_plugin\n"
            "run_plugin()\n")


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
