"""The handoff protocol between `cri-net-cni` and a running `cri-net serve`.

A plugin process pays interpreter start-up on every call; importing cri-net's network stack
would add ~0.3 s more, and even `json` + `socket` cost several ms on a small node. So the
plugin's side of this module imports nothing but the C socket module: it forwards the call
(the CNI_* environment and stdin) over a unix socket and prints what the server answers, and
a pod start costs one bare Python start plus the real plugins.

One call per connection, no JSON on the wire:
  request  `CRINET1\\n`, then `KEY=VALUE\\0` for each CNI_* variable, then `\\0`, then stdin
           bytes, then EOF (the client shuts its write side);
  reply    `<exit status>\\n`, then the bytes the plugin prints on stdout; the server closes.
"""

from __future__ import annotations

import _socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_SOCKET = "/run/cri-net/cni.sock"
MAGIC = b"CRINET1\n"
MAX_MESSAGE = 16 * 1024 * 1024
CONNECT_TIMEOUT = 2.0
CALL_TIMEOUT = 300.0
HANDOFF_COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC")
SOCKET_KEY = b'"daemonSocket"'
#: Set in the environment of every plugin cri-net runs: a launcher that finds it was reached
#: through one of cri-net's own networks and refuses, rather than call cri-net again.
CALLER_ENV = "CRI_NET_CALLER"


class DaemonUnavailable(Exception):
    """Nothing listens on the socket: the call was not delivered, so in-process work is safe."""


class DaemonBroken(Exception):
    """The call may have been delivered but no answer came back: retrying could double it."""


# ---- messages -------------------------------------------------------------------------------
def encode_request(environ: Mapping[str, str], stdin: bytes) -> bytes:
    pairs = b"".join(f"{k}={v}".encode("utf-8", "surrogateescape") + b"\0"
                     for k, v in environ.items() if k.startswith("CNI_"))
    return MAGIC + pairs + b"\0" + stdin


def decode_request(data: bytes) -> tuple[dict[str, str], bytes]:
    """Split a request into its CNI_* environment and stdin; ValueError says what is wrong."""
    if not data.startswith(MAGIC):
        raise ValueError("not a cri-net handoff request (protocol CRINET1)")
    env: dict[str, str] = {}
    pos = len(MAGIC)
    while True:
        end = data.find(b"\0", pos)
        if end < 0:
            raise ValueError("request environment is not terminated")
        if end == pos:
            return env, data[end + 1:]
        key, sep, value = data[pos:end].decode("utf-8", "surrogateescape").partition("=")
        if not sep or not key.startswith("CNI_"):
            raise ValueError(f"bad request environment entry {key[:40]!r}")
        env[key] = value
        pos = end + 1


def encode_reply(rc: int, stdout: bytes) -> bytes:
    return b"%d\n" % rc + stdout


def decode_reply(data: bytes) -> tuple[int, bytes]:
    status, sep, out = data.partition(b"\n")
    if not sep or not status.isdigit():
        raise ValueError("malformed answer from cri-net serve")
    return int(status), out


def read_all(sock: _socket.socket, limit: int = MAX_MESSAGE) -> bytes:
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


# ---- the plugin's side ----------------------------------------------------------------------
def socket_from_conf(stdin: bytes) -> str | None:
    """`daemonSocket` of the plugin config, read without a JSON parser: the default when the
    key is absent, None when it turns the handoff off or is not a plain string (the
    in-process path then reads the config properly and reports what is wrong)."""
    first = stdin.find(SOCKET_KEY)
    if first < 0:
        return DEFAULT_SOCKET
    if stdin.find(SOCKET_KEY, first + 1) >= 0:
        return None  # also nested somewhere: leave it to the real parser
    rest = stdin[first + len(SOCKET_KEY):].lstrip()
    if not rest.startswith(b":"):
        return None
    rest = rest[1:].lstrip()
    if not rest.startswith(b'"'):
        return None
    end = rest.find(b'"', 1)
    value = rest[1:end] if end > 0 else b""
    if not value or b"\\" in value:
        return None
    return value.decode("utf-8", "replace")


def call(path: str, environ: Mapping[str, str], stdin: bytes, timeout: float = CALL_TIMEOUT) -> tuple[int, bytes]:
    """Forward one CNI call to the server at `path`; (exit status, stdout bytes)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(path)
        except OSError as exc:
            raise DaemonUnavailable(f"{path}: {exc.strerror or exc}") from None
        try:
            sock.settimeout(timeout)
            sock.sendall(encode_request(environ, stdin))
            sock.shutdown(_socket.SHUT_WR)
            return decode_reply(read_all(sock))
        except (OSError, ValueError) as exc:
            raise DaemonBroken(f"{path}: no answer from cri-net serve: {exc}") from None
    finally:
        sock.close()


def try_handoff(environ: Mapping[str, str], stdin: bytes) -> tuple[int, bytes] | None:
    """Hand the call to `cri-net serve`; None when it must run in this process instead.

    Not delivered (no server, handoff off, a command that needs no network): run here.
    Delivered but unanswered: DEL/CHECK/STATUS/GC are safe to repeat here; an ADD is not (the
    server may have attached half the planes), so it fails with "try again later" (11) and
    the runtime's DEL cleans up from the cache."""
    command = environ.get("CNI_COMMAND", "")
    if command not in HANDOFF_COMMANDS:
        return None
    path = socket_from_conf(stdin)
    if path is None:
        return None
    try:
        return call(path, environ, stdin)
    except DaemonUnavailable:
        return None
    except DaemonBroken as exc:
        if command != "ADD":
            return None
        return 1, _try_again_later(str(exc), stdin)


def _try_again_later(msg: str, stdin: bytes) -> bytes:
    import json  # a rare path: the cost is fine here

    try:
        version = json.loads(stdin).get("cniVersion") or "1.0.0"
    except (ValueError, AttributeError):
        version = "1.0.0"
    return (json.dumps({"cniVersion": str(version), "code": 11, "msg": msg}) + "\n").encode()
