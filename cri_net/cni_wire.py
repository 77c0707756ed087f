"""The handoff protocol between `cri-net-cni` and a running `cri-net serve` (stdlib only).

A plugin process pays interpreter start-up on every call; importing cri-net's network stack
would add ~0.3 s more. When `cri-net serve` runs, the plugin instead forwards its call (the
CNI_* environment and stdin) over a unix socket and prints what the server answers, so a
pod start costs one small Python start plus the real plugins.

One call per connection. Request: a JSON line `{"v": 1, "env": {CNI_*}}`, then the stdin
bytes, then EOF (shutdown of the write side). Reply: one JSON object `{"rc": <exit status>,
"stdout": "<what the plugin prints>"}`, then the server closes.
"""

from __future__ import annotations

import json
import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_SOCKET = "/run/cri-net/cni.sock"
PROTOCOL_VERSION = 1
MAX_MESSAGE = 16 * 1024 * 1024
CONNECT_TIMEOUT = 2.0


class DaemonUnavailable(Exception):
    """Nothing listens on the socket: the call was not delivered, so in-process work is safe."""


class DaemonBroken(Exception):
    """The call may have been delivered but no answer came back: retrying could double it."""


def cni_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of the environment a CNI call is defined by."""
    return {k: v for k, v in environ.items() if k.startswith("CNI_")}


def encode_request(environ: Mapping[str, str], stdin: bytes) -> bytes:
    header = json.dumps({"v": PROTOCOL_VERSION, "env": cni_environment(environ)}).encode()
    return header + b"\n" + stdin


def decode_request(data: bytes) -> tuple[dict[str, str], bytes]:
    """Split a request; ValueError says what is wrong with it."""
    header, sep, stdin = data.partition(b"\n")
    if not sep:
        raise ValueError("request has no header line")
    doc = json.loads(header)
    if not isinstance(doc, dict) or doc.get("v") != PROTOCOL_VERSION:
        raise ValueError(f"unsupported handoff request (want protocol version {PROTOCOL_VERSION})")
    env = doc.get("env")
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ValueError("request env must map strings to strings")
    return cni_environment(env), stdin


def read_all(sock: socket.socket, limit: int = MAX_MESSAGE) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise ValueError(f"message larger than {limit} bytes")
        chunks.append(chunk)


def call(path: str, environ: Mapping[str, str], stdin: bytes, timeout: float) -> tuple[int, str]:
    """Forward one CNI call to the server at `path`; (exit status, stdout text)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(path)
        except OSError as exc:
            raise DaemonUnavailable(f"{path}: {exc.strerror or exc}") from None
        try:
            sock.settimeout(timeout)
            sock.sendall(encode_request(environ, stdin))
            sock.shutdown(socket.SHUT_WR)
            reply = json.loads(read_all(sock))
        except (OSError, ValueError) as exc:
            raise DaemonBroken(f"{path}: no answer from cri-net serve: {exc}") from None
    finally:
        sock.close()
    if not (isinstance(reply, dict) and isinstance(reply.get("rc"), int) and isinstance(reply.get("stdout"), str)):
        raise DaemonBroken(f"{path}: malformed answer from cri-net serve")
    return reply["rc"], reply["stdout"]
