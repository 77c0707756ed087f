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

import _json
import _socket
import _struct
import time

from ..defaults import CNI_SOCKET  # plain constants: costs nothing

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

DEFAULT_SOCKET = CNI_SOCKET
MAGIC = b"CRINET1\n"
MAX_MESSAGE = 16 * 1024 * 1024
#: A plugin's stdin (its network config) at most; the rest of a request is its CNI_ environment.
MAX_INPUT = MAX_MESSAGE - 1024 * 1024
#: How long a busy server (its backlog full) is waited for: well inside a runtime's deadline.
CONNECT_WAIT = 10
#: The whole call, request and answer: a plugin exec is bounded by the server's own timeout.
CALL_TIMEOUT = 110.0  # under kubelet's 2 min CRI deadline: the runtime never times out first
HANDOFF_COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC")
SOCKET_KEY = "daemonSocket"
#: Set in the environment of every plugin cri-net runs: a launcher that finds it was reached
#: through one of cri-net's own networks and refuses, rather than call cri-net again. Its
#: value names the process that ran the plugin (`cri_net.orphans.caller_tag`).
CALLER_ENV = "CRI_NET_CALLER"


class DaemonUnavailable(Exception):
    """Nothing listens on the socket: the call was not delivered, so in-process work is safe."""


class DaemonBroken(Exception):
    """The call may have been delivered but no answer came back: retrying could double it."""


class DaemonBusy(DaemonBroken):
    """A server listens but took no connection within CONNECT_WAIT: the call was not delivered,
    but working around a live server would lose its per-container serialisation."""


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


def read_all(sock: _socket.socket, limit: int = MAX_MESSAGE, timeout: float | None = None,
             gate: tuple[int, Callable[[float | None], None]] | None = None) -> bytes:
    """Everything up to EOF; `timeout` bounds the whole read, not each recv (a peer sending a
    byte at a time cannot hold it open), TimeoutError when it passes. `gate` (size, wait):
    once the message is past `size` bytes, `wait(seconds left)` is called once before reading
    on (the server lets only a few large requests in at a time)."""
    chunks: list[bytes] = []
    size = 0
    gated = gate is None
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"message not complete within {timeout:g} s")
            sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise ValueError(f"message larger than {limit} bytes")
        chunks.append(chunk)
        if not gated and size > gate[0]:  # type: ignore[index]
            gated = True
            gate[1](None if deadline is None else deadline - time.monotonic())  # type: ignore[index]


# ---- the plugin's side ----------------------------------------------------------------------
def socket_from_conf(stdin: bytes) -> str | None:
    """`daemonSocket` of the plugin config itself (the top level of stdin, never the pod's
    annotations nested in runtimeConfig): the default when absent, None when the handoff is
    off ("") or the config cannot be trusted (not JSON, the key twice, not a string); the
    in-process path then reads the config and reports what is wrong. The document is parsed
    by CPython's C JSON scanner (`_json`, ~0.3 ms to import; `json` costs ~8 ms), with the
    same rules as the plugin's own parser (no NaN/Infinity, finite numbers)."""
    try:
        pairs = top_level_pairs(stdin)
    except (ValueError, RecursionError):
        return None
    values = [v for k, v in pairs if k == SOCKET_KEY]
    if not values:
        return DEFAULT_SOCKET
    value = values[0]
    if len(values) > 1 or not isinstance(value, str) or not value or "\0" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate names no file
        return None
    return value


def reject_constant(name: str) -> object:
    """JSON rule of the plugin: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


def finite_float(text: str) -> float:
    """JSON rule of the plugin: a number must be finite."""
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text} is out of range")
    return value


class _Context:
    """What `_json.make_scanner` reads: json.JSONDecoder's settings, as cni_plugin uses them."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = staticmethod(finite_float)
    parse_int = int
    parse_constant = staticmethod(reject_constant)
    memo: dict[str, str] = {}


_scan_value = _json.make_scanner(_Context())
_WHITESPACE = " \t\n\r"


def _encoding(data: bytes) -> str:
    """json.detect_encoding (json.loads accepts UTF-8 with or without BOM, UTF-16 and UTF-32)."""
    if data.startswith((b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")):
        return "utf-32"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if len(data) >= 4:
        if not data[0]:
            return "utf-16-be" if data[1] else "utf-32-be"
        if not data[1]:
            return "utf-16-le" if data[2] or data[3] else "utf-32-le"
    elif len(data) == 2:
        if not data[0]:
            return "utf-16-be"
        if not data[1]:
            return "utf-16-le"
    return "utf-8"


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WHITESPACE:
        i += 1
    return i


def top_level_pairs(stdin: bytes) -> list[tuple[str, object]]:
    """The (key, value) pairs of the top-level JSON object in `stdin`, in order and with
    duplicates kept, accepting exactly what `json.loads` accepts (empty stdin reads as {},
    as the plugin reads it); ValueError otherwise."""
    if not stdin:
        return []
    text = stdin.decode(_encoding(stdin), "surrogatepass")
    i = _skip(text, 0)
    if text[i:i + 1] != "{":
        raise ValueError("the plugin config is not a JSON object")
    i = _skip(text, i + 1)
    pairs: list[tuple[str, object]] = []
    if text[i:i + 1] == "}":
        i += 1
    else:
        while True:
            if text[i:i + 1] != '"':
                raise ValueError(f"expecting a key at {i}")
            key, i = _json.scanstring(text, i + 1, True)
            i = _skip(text, i)
            if text[i:i + 1] != ":":
                raise ValueError(f"expecting ':' at {i}")
            try:
                value, i = _scan_value(text, _skip(text, i + 1))
            except StopIteration as exc:
                raise ValueError(f"expecting a value at {exc.value}") from None
            pairs.append((key, value))
            i = _skip(text, i)
            sep = text[i:i + 1]
            i = _skip(text, i + 1)
            if sep == "}":
                break
            if sep != ",":
                raise ValueError(f"expecting ',' or '}}' at {i}")
    if _skip(text, i) != len(text):
        raise ValueError("extra data after the plugin config")
    return pairs


def connect(path: str) -> _socket.socket:
    """A connected socket to the server at `path`. A blocking connect bounded by SO_SNDTIMEO:
    while the server's backlog is full the kernel queues this caller (DaemonBusy after
    CONNECT_WAIT); no socket file, nobody listening or an unusable path: DaemonUnavailable."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, _struct.pack("ll", CONNECT_WAIT, 0))
        sock.connect(path)
    except BlockingIOError:
        sock.close()
        raise DaemonBusy(f"{path}: cri-net serve is busy (no connection within {CONNECT_WAIT} s)") from None
    except (OSError, ValueError) as exc:
        sock.close()
        raise DaemonUnavailable(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    return sock


def call(path: str, environ: Mapping[str, str], stdin: bytes, timeout: float = CALL_TIMEOUT) -> tuple[int, bytes]:
    """Forward one CNI call to the server at `path`; (exit status, stdout bytes). `timeout`
    bounds the whole exchange once connected."""
    sock = connect(path)
    try:
        deadline = time.monotonic() + timeout
        try:
            sock.settimeout(timeout)
            sock.sendall(encode_request(environ, stdin))
            sock.shutdown(_socket.SHUT_WR)
            return decode_reply(read_all(sock, timeout=max(0.001, deadline - time.monotonic())))
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


def input_too_large(stdin: bytes) -> bytes:
    """The answer to a call whose stdin is over MAX_INPUT, handed over or not (CNI code 7)."""
    return _error_reply(7, f"cri-net-cni: the network config on stdin is {len(stdin)} bytes or more; "
                           f"at most {MAX_INPUT}", stdin[:4096])


def _try_again_later(msg: str, stdin: bytes) -> bytes:
    return _error_reply(11, msg, stdin)


def _error_reply(code: int, msg: str, stdin: bytes) -> bytes:
    import json  # a rare path: the cost is fine here

    try:
        version = json.loads(stdin).get("cniVersion") or "1.0.0"
    except (ValueError, AttributeError):
        version = "1.0.0"
    return (json.dumps({"cniVersion": str(version), "code": code, "msg": msg}) + "\n").encode()
