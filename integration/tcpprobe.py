"""TCP reachability between network namespaces, for the integration tests: a one-shot echo
listener inside one netns and a client in another (or on the host), entered with nsenter so
any pinned netns path works (/run/netns/X, cri-net's netns dir, containerd's)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

_LISTENER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(20)
print("ready", flush=True)
c, peer = s.accept()
c.settimeout(10)
c.sendall(b"pong:" + c.recv(64))
c.close()
print(peer[0], flush=True)
"""

_CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
c.sendall(b"ping")
print(c.recv(64).decode(), flush=True)
"""


def _in_netns(netns: str | os.PathLike[str]) -> list[str]:
    return ["nsenter", f"--net={os.fspath(netns)}", sys.executable, "-c"]


@contextlib.contextmanager
def tcp_listener(netns: str | os.PathLike[str], ip: str, port: int) -> Iterator[Callable[[], str]]:
    """One-shot TCP echo server in `netns` on ip:port; `peer()` waits for the served
    connection and returns the client's address as the server saw it."""
    proc = subprocess.Popen([*_in_netns(netns), _LISTENER, ip, str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            proc.kill()
            raise AssertionError(f"listener in {netns} did not start: {line!r} {proc.communicate()[1]}")

        def peer() -> str:
            out, err = proc.communicate(timeout=20)
            assert proc.returncode == 0, f"listener failed: {err}"
            return out.strip()

        yield peer
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def tcp_ping_from(netns: str | os.PathLike[str], ip: str, port: int) -> str:
    """Connect from `netns` to ip:port, send "ping", return the reply ("pong:ping")."""
    proc = subprocess.run([*_in_netns(netns), _CLIENT, ip, str(port)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"connect from {netns} to {ip}:{port} failed: {proc.stderr}"
    return proc.stdout.strip()
