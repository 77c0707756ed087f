"""The `cri-net` executable a runtime finds in its CNI bin dir, and the plugin's entry point.

A runtime execs its plugin for every pod start and stop, so this path is kept bare. Where a C
compiler exists, `install` compiles `shim.c`: a small native client that forwards the
call to `cri-net serve` without starting Python at all, and execs the Python launcher when
the call must run in-process. The Python launcher starts without `site` (no site-packages
scan, no .pth hooks), and `run_plugin` imports only `cri_net.plugin.wire` (which needs only the
C socket module) before it hands the call over; only when no server takes the call does it
load `site` and the network stack (`handler`) and do the work itself.
"""

from __future__ import annotations

import os
import sys

from . import wire

LAUNCHER_NAME = "cri-net"
#: The answer when cri-net itself ran the launcher as a plugin of one of its own networks:
#: handing the call back to cri-net would wait on the caller's own lock (a hung DEL).
NESTED_ERROR = (b'{"cniVersion":"1.0.0","code":7,"msg":"cri-net-cni was run as a plugin of a cri-net network: '
                b'a network in cri-net\'s conf dir names the cri-net hook; refusing to call cri-net again"}\n')


def answer(environ: dict[str, str], stdin: bytes) -> tuple[int, bytes]:
    """One CNI call: handed to `cri-net serve` when one takes it, else worked out here;
    (exit status, what to print)."""
    if len(stdin) > wire.MAX_INPUT:  # the server would refuse it unread: say why, not "try again later"
        return 1, wire.input_too_large(stdin)
    if environ.get(wire.CALLER_ENV) and environ.get("CNI_COMMAND") != "VERSION":
        return 1, NESTED_ERROR
    handed = wire.try_handoff(environ, stdin)
    if handed is not None:
        return handed
    if sys.flags.no_site and environ.get("CNI_COMMAND") in wire.HANDOFF_COMMANDS:
        import site  # started with -S (the launcher); the network stack needs site-packages

        site.main()
    from .handler import run

    rc, text = run(environ, stdin)
    return rc, text.encode()


def main() -> int:
    """The plugin as a function (tests call it in-process): reads stdin, prints the answer,
    returns the exit status. The executable is `run_plugin`."""
    rc, out = answer(dict(os.environ), sys.stdin.buffer.read(wire.MAX_INPUT + 1))
    sys.stdout.write(out.decode("utf-8", "replace"))
    return rc


def run_plugin() -> None:
    """`cri-net-cni` and the launcher: answer one CNI call, then exit without tearing down
    the interpreter (nothing to clean up; saves ~40 ms after the network stack was loaded)."""
    rc, out = answer(dict(os.environ), sys.stdin.buffer.read(wire.MAX_INPUT + 1))  # bounded: see answer()
    view = memoryview(out)
    while view:
        view = view[os.write(1, view):]
    os._exit(rc)


def launcher_text(python: str | None = None) -> str:
    """A script that imports cri-net from where it is installed now."""
    from pathlib import Path

    package_root = Path(__file__).resolve().parents[2]  # the dir holding cri_net/
    return (f"#!{python or sys.executable} -S\n"
            "# cri-net-cni launcher, written by `cri-net cni-plugin install`\n"
            "import sys\n"
            f"sys.path.insert(0, {str(package_root)!r})\n"
            "from cri_net.plugin.launcher import run_plugin\n"
            "run_plugin()\n")


class ShimBuildError(RuntimeError):
    """The native launcher could not be compiled (the compiler's message is included)."""


def install(bin_dir: str, name: str = LAUNCHER_NAME, python: str | None = None, native: bool = True) -> str:
    """Put the launcher `name` into `bin_dir`, atomically (a runtime may be executing the old
    one); returns its path. `native`: the compiled shim in front of the Python launcher
    (`.<name>-py`), when a C compiler is found; else the Python launcher itself."""
    import shutil
    import subprocess

    os.makedirs(bin_dir, mode=0o755, exist_ok=True)
    path = os.path.join(bin_dir, name)
    compiler = shutil.which("cc") or shutil.which("gcc") if native else None
    python_path = os.path.join(bin_dir, f".{name}-py") if compiler else path
    _replace(python_path, launcher_text(python).encode())
    if compiler:
        source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim.c")
        tmp = os.path.join(bin_dir, f".{name}.tmp-{os.getpid()}")
        from .handler import SUPPORTED_VERSIONS  # the shim answers VERSION with the same list

        versions = ", ".join(f'"{v}"' for v in SUPPORTED_VERSIONS)
        proc = subprocess.run([compiler, "-O2", "-Wall", "-o", tmp, source, f'-DFALLBACK="{python_path}"',
                               f"-DCNI_VERSIONS={versions}"], capture_output=True, text=True)
        if proc.returncode != 0:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise ShimBuildError(f"{compiler} {source}: {proc.stderr.strip()[-2000:]}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    return path


def _replace(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)

