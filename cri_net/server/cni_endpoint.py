"""The CNI handoff socket of `cri-net serve`: runs `cri-net-cni` calls in the server process.

The plugin forwards its environment and stdin (see `cri_net.plugin.wire`); the call runs through
the same code as in the plugin (`cni_plugin.run`), with two differences that make it cheap:
the network stack is already imported, and adaptors are kept per plugin config and reloaded
only when their conf dir changes. Calls for one container are serialised (a runtime may
send DEL while its ADD is still running); other containers run in parallel.

Only root (or the server's own user) may connect: the caller chooses the bin dirs, so the
socket is as powerful as running plugins by hand. It is created 0660.

Nothing a caller does can exhaust the server: at most `max_connections` are served at once;
when all are taken, the connection that has been sending its request the longest (more than
EVICT_AFTER seconds: a plugin sends it in one go) is closed to make room, and when every
connection is running a call, new callers wait in the kernel's backlog (which costs the
server no file descriptor). A request must arrive whole within `request_deadline` and
`cni_wire.MAX_MESSAGE` bytes, and only LARGE_AT_ONCE requests past LARGE_REQUEST bytes are
read and run at a time (memory); answers are written with a bound too. `stop()` stops accepting,
then lets calls in flight finish (an ADD must leave its cache entry and get its answer) up
to a grace period.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from typing import Any

from .. import metrics
from ..plugin import handler as cni_plugin, wire as cni_wire
from ..keyed_locks import KeyedLocks
from ..log import kv
from ..network import create_adaptor
from .cni_metrics import observe_cni_call

log = logging.getLogger("cri_net.server.cni")

MAX_ADAPTORS = 16
#: How long a call waits for an earlier call of the same container (the launcher waits 110 s).
LOCK_WAIT = 60.0
#: Calls served at once; a node's runtime starts far fewer pods at a time.
MAX_CONNECTIONS = 64
#: A whole request (the plugin sends it in one go right after connecting) must arrive in this.
REQUEST_DEADLINE = 10.0
#: The plugin waits for its answer; one that stopped reading is given up after this.
REPLY_TIMEOUT = 30.0
#: A connection still sending its request after this is closed when its slot is needed.
EVICT_AFTER = 1.0
#: Connections the kernel queues for us while all handlers are busy (capped by somaxconn).
BACKLOG = socket.SOMAXCONN
#: A request past this many bytes is large (a real one is a few KiB: a conflist plus the pod's
#: annotations, at most 256 KiB): only LARGE_AT_ONCE are read and run at a time, so 64 callers
#: sending 15 MiB each cannot take the server to gigabytes (they did: 2 GiB).
LARGE_REQUEST = 1 << 20
LARGE_AT_ONCE = 2


class AdaptorPool:
    """One CRI adaptor per distinct plugin config, refreshed when its conf dir changes."""

    def __init__(self, limit: int = MAX_ADAPTORS) -> None:
        self.limit = limit
        self._adaptors: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, inv: cni_plugin.Invocation) -> Any:
        settings = inv.settings()
        key = f"{inv.hook}{settings.model_dump_json()}"
        with self._lock:
            adaptor = self._adaptors.pop(key, None)
            if adaptor is None:
                if len(self._adaptors) >= self.limit:  # drop the least recently used
                    self._adaptors.pop(next(iter(self._adaptors))).close()
                adaptor = create_adaptor("cri", settings, watch=False, hook=inv.hook)
            else:
                adaptor.refresh()  # reloads only when the conf dir changed
            self._adaptors[key] = adaptor
            return adaptor


class CNIEndpoint:
    """Listens on `path` and runs forwarded plugin calls until `stop()`."""

    def __init__(self, path: str, *, max_connections: int = MAX_CONNECTIONS,
                 request_deadline: float = REQUEST_DEADLINE) -> None:
        self.path = path
        self.max_connections = max_connections
        self.request_deadline = request_deadline
        self.adaptors = AdaptorPool()
        self._containers = KeyedLocks()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._large = threading.BoundedSemaphore(LARGE_AT_ONCE)
        self._listener: socket.socket | None = None
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._handlers: set[threading.Thread] = set()
        self._handlers_lock = threading.Lock()
        self._readers: dict[socket.socket, float] = {}  # connections still sending: accept time

    def start(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o117)
        try:
            listener.bind(self.path)
        except OSError:
            listener.close()
            raise
        finally:
            os.umask(old_umask)
        listener.listen(BACKLOG)
        listener.settimeout(0.2)  # the accept loop notices stop() within this
        self._listener = listener
        self._closing.clear()
        self._thread = threading.Thread(target=self._accept_loop, name="cni-handoff", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while not self._closing.is_set():
            if not self._slots.acquire(blocking=False):
                self._evict_slow_reader()  # else every call is running: callers wait in the backlog
                if not self._slots.acquire(timeout=0.2):
                    continue
            try:
                conn = self._accept(listener)
            except BaseException:
                self._slots.release()
                raise
            if conn is None:
                self._slots.release()
                continue
            handler = threading.Thread(target=self._serve, args=(conn,), name="cni-call", daemon=True)
            with self._handlers_lock:
                self._handlers.add(handler)
            handler.start()

    def _accept(self, listener: socket.socket) -> socket.socket | None:
        while not self._closing.is_set():
            try:
                conn, _ = listener.accept()
                return conn
            except TimeoutError:
                continue
            except OSError as exc:
                if self._closing.is_set():
                    return None
                # EMFILE/ENFILE and the like: the connection stays queued; try again shortly
                kv(log, logging.WARNING, "CNI handoff accept failed", socket=self.path, error=str(exc))
                self._closing.wait(0.1)
        return None

    def _evict_slow_reader(self) -> None:
        """Close the connection that has been sending its request the longest, if longer than
        EVICT_AFTER: idle or trickling connections must not keep real calls out."""
        with self._handlers_lock:
            if not self._readers:
                return
            conn, since = min(self._readers.items(), key=lambda item: item[1])
            if time.monotonic() - since < EVICT_AFTER:
                return
            del self._readers[conn]
        kv(log, logging.WARNING, "closed a CNI handoff connection that sent no complete request to make room",
           socket=self.path, waited_s=round(time.monotonic() - since, 1), limit=self.max_connections)
        try:
            conn.shutdown(socket.SHUT_RDWR)  # its handler's read ends and frees the slot
        except OSError:
            pass

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                self._handle(conn)
        except Exception as exc:  # noqa: BLE001 - one bad call never ends the endpoint
            kv(log, logging.ERROR, "CNI handoff failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._slots.release()
            with self._handlers_lock:
                self._handlers.discard(threading.current_thread())

    def _handle(self, sock: socket.socket) -> None:
        if not self.peer_allowed(sock):
            kv(log, logging.WARNING, "refused CNI handoff from unprivileged peer", socket=self.path)
            metrics.observe_handoff("", "refused")
            return
        with self._handlers_lock:
            self._readers[sock] = time.monotonic()
        large: list[bool] = []  # whether this call holds a large-request slot

        def wait_large(left: float | None) -> None:
            if not self._large.acquire(timeout=max(0.0, left) if left is not None else -1):
                raise TimeoutError(f"no room for another request over {LARGE_REQUEST} bytes in time")
            large.append(True)

        try:
            try:
                environ, stdin = cni_wire.decode_request(cni_wire.read_all(
                    sock, timeout=self.request_deadline, gate=(LARGE_REQUEST, wait_large)))
            except (OSError, ValueError) as exc:  # TimeoutError is an OSError
                kv(log, logging.WARNING, "bad CNI handoff request", socket=self.path, error=str(exc))
                metrics.observe_handoff("", "bad_request")
                return
            finally:
                with self._handlers_lock:
                    self._readers.pop(sock, None)
            rc, out = self.run(environ, stdin)
        finally:
            if large:
                self._large.release()
        try:
            sock.settimeout(REPLY_TIMEOUT)
            sock.sendall(cni_wire.encode_reply(rc, out.encode()))
        except OSError as exc:  # the plugin gave up (runtime timeout); the work is done anyway
            kv(log, logging.WARNING, "CNI handoff caller went away", error=str(exc),
               container=environ.get("CNI_CONTAINERID", ""), command=environ.get("CNI_COMMAND", ""))

    def in_flight(self) -> int:
        """Calls being served now."""
        with self._handlers_lock:
            return len(self._handlers)

    def stop(self, grace: float = 30.0) -> None:
        """Stop accepting (the socket file goes at once), then wait up to `grace` seconds for
        the calls in flight to finish and answer. Idempotent."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self._closing.set()
        if self._thread is not None:
            self._thread.join()
        listener.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        deadline = time.monotonic() + grace
        with self._handlers_lock:
            handlers = list(self._handlers)
        for handler in handlers:
            handler.join(max(0.0, deadline - time.monotonic()))
        left = self.in_flight()
        if left:
            kv(log, logging.WARNING, "CNI handoff calls still running after the grace period", socket=self.path,
               calls=left, grace_s=grace)

    @staticmethod
    def peer_allowed(sock: socket.socket) -> bool:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return uid in (0, os.geteuid())

    def run(self, environ: dict[str, str], stdin: bytes) -> tuple[int, str]:
        container = environ.get("CNI_CONTAINERID", "")
        start = time.monotonic()
        busy = False
        try:
            with self._containers.hold(container, timeout=LOCK_WAIT):
                rc, out = cni_plugin.run(environ, stdin, self.adaptors.get)
        except TimeoutError:  # bounded: the runtime's own deadline must never be what ends a call
            busy = True
            rc, out = 1, cni_plugin.error_json(cni_plugin.PluginFailure(
                cni_plugin.TRY_AGAIN_LATER, f"another CNI call for container {container} is still running "
                                            f"after {LOCK_WAIT:.0f} s; try again later"))
        try:
            args = cni_plugin.parse_cni_args(environ.get("CNI_ARGS", ""))
        except cni_plugin.PluginFailure:
            args = {}
        pod = f"{args.get('K8S_POD_NAMESPACE', '')}/{args.get('K8S_POD_NAME', '')}"
        kv(log, logging.INFO if rc == 0 else logging.WARNING, "CNI call", command=environ.get("CNI_COMMAND", ""),
           pod=pod, container=container, netns=environ.get("CNI_NETNS", ""), ifname=environ.get("CNI_IFNAME", ""),
           rc=rc, ms=round((time.monotonic() - start) * 1000, 1), **({"error": out.strip()} if rc else {}))
        observe_cni_call(environ, stdin, rc, time.monotonic() - start, busy)
        return rc, out
