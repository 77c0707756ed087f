"""The CNI handoff socket of `cri-net serve`: runs `cri-net-cni` calls in the server process.

The plugin forwards its environment and stdin (see `cri_net.cni_wire`); the call runs through
the same code as in the plugin (`cni_plugin.run`), with two differences that make it cheap:
the network stack is already imported, and adaptors are kept per plugin config and reloaded
only when their conf dir changes. Calls for one container are serialised (a runtime may
send DEL while its ADD is still running); other containers run in parallel.

Only root (or the server's own user) may connect: the caller chooses the bin dirs, so the
socket is as powerful as running plugins by hand. It is created 0660.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import struct
import threading
import time
from typing import Any

from .. import cni_plugin, cni_wire, metrics
from ..keyed_locks import KeyedLocks
from ..log import kv
from ..operator.watcher import dir_signature
from .cni_metrics import observe_cni_call

log = logging.getLogger("cri_net.server.cni")

MAX_ADAPTORS = 16
#: How long a call waits for an earlier call of the same container (kubelet's CRI deadline is 2 min).
LOCK_WAIT = 90.0


class AdaptorPool:
    """One CRI adaptor per distinct plugin config, refreshed when its conf dir changes."""

    def __init__(self, limit: int = MAX_ADAPTORS) -> None:
        self.limit = limit
        self._adaptors: dict[str, tuple[Any, tuple[Any, ...]]] = {}
        self._lock = threading.Lock()

    def get(self, inv: cni_plugin.Invocation) -> Any:
        from adaptors.cri import CRIAdaptor

        settings = inv.settings()
        key = f"{inv.hook}{settings.model_dump_json()}"
        signature = dir_signature(settings.conf_dir)
        with self._lock:
            entry = self._adaptors.pop(key, None)
            if entry is None:
                if len(self._adaptors) >= self.limit:  # drop the least recently used
                    self._adaptors.pop(next(iter(self._adaptors)))
                entry = (CRIAdaptor(settings, watch=False, hook=inv.hook), signature)
            elif entry[1] != signature:
                entry[0].update()
                entry = (entry[0], signature)
            self._adaptors[key] = entry
            return entry[0]


class _Handler(socketserver.BaseRequestHandler):
    server: "_UnixServer"

    def handle(self) -> None:
        endpoint = self.server.endpoint
        sock: socket.socket = self.request
        if not endpoint.peer_allowed(sock):
            kv(log, logging.WARNING, "refused CNI handoff from unprivileged peer")
            metrics.observe_handoff("", "refused")
            return
        try:
            environ, stdin = cni_wire.decode_request(cni_wire.read_all(sock))
        except (OSError, ValueError) as exc:
            kv(log, logging.WARNING, "bad CNI handoff request", error=str(exc))
            metrics.observe_handoff("", "bad_request")
            return
        rc, out = endpoint.run(environ, stdin)
        try:
            sock.sendall(cni_wire.encode_reply(rc, out.encode()))
        except OSError as exc:  # the plugin gave up (runtime timeout); the work is done anyway
            kv(log, logging.WARNING, "CNI handoff caller went away", error=str(exc),
               container=environ.get("CNI_CONTAINERID", ""), command=environ.get("CNI_COMMAND", ""))


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = True  # a graceful stop lets in-flight calls finish

    def __init__(self, path: str, endpoint: "CNIEndpoint") -> None:
        self.endpoint = endpoint
        super().__init__(path, _Handler)


class CNIEndpoint:
    """Listens on `path` and runs forwarded plugin calls until `stop()`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.adaptors = AdaptorPool()
        self._containers = KeyedLocks()
        self._server: _UnixServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
        old_umask = os.umask(0o117)
        try:
            self._server = _UnixServer(self.path, self)
        finally:
            os.umask(old_umask)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="cni-handoff", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

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
