"""`cri-net serve`: the CRI gRPC endpoint on a unix socket.

The socket accepts `unix:///path` or a bare path, is created 0660, is never taken over from a
live server (a stale file is removed), and carries 16 MiB messages both ways as kubelet and
crictl do. SIGTERM/SIGINT/SIGHUP stop both sockets (CRI and cni.sock) accepting, let
in-flight calls on either finish within a grace period, then remove the sockets. Only a socket is ever replaced:
anything else at a listen path is an error naming it.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import threading
import time
from concurrent import futures

import grpc

from .. import metrics
from ..config import Settings
from ..log import kv
from ..network import NetworkModule
from ..cri.pb.runtime.v1 import api_pb2_grpc as pb_grpc
from .cni_endpoint import CNIEndpoint
from .observability import Observability
from .sandbox import SandboxManager
from .service import ImageService, RuntimeService, worker_count

log = logging.getLogger("cri_net.server")

MAX_MESSAGE = 16 * 1024 * 1024
GRACE_SECONDS = 30.0


class ServeError(RuntimeError):
    pass


def socket_path(listen: str) -> str:
    path = listen[len("unix://"):] if listen.startswith("unix://") else listen
    if not path.startswith("/"):
        raise ServeError(f"listen address {listen!r}: need an absolute unix socket path")
    return path


def cni_socket_path(settings: Settings) -> str | None:
    """The handoff socket for cri-net-cni: `cni.sock` beside the CRI socket unless set; "" is off."""
    if settings.cni_listen == "":
        return None
    if settings.cni_listen is None:
        return os.path.join(os.path.dirname(socket_path(settings.listen)), "cni.sock")
    return socket_path(settings.cni_listen)


def check_socket_path(path: str) -> bool:
    """True when a socket file is at `path`, False when nothing is; ServeError naming the path
    for anything else (a regular file, a directory, a symlink...): only a socket is ours to
    replace, and a refused connection to a non-socket says nothing about it being stale."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(mode):
        raise ServeError(f"{path} exists and is not a socket; refusing to replace it (remove it or pick another path)")
    return True


def claim_socket(path: str) -> None:
    """Refuse a live socket or anything that is not a socket; remove a stale socket."""
    if not check_socket_path(path):
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # nobody listens: a leftover from a crash
        return
    except OSError as exc:
        raise ServeError(f"{path} exists and is not a usable socket: {exc}") from None
    finally:
        probe.close()
    raise ServeError(f"another server is already listening on {path}")


class Server:
    """Owns the network module, the sandbox manager and the gRPC server."""

    def __init__(self, settings: Settings, workers: int | None = None) -> None:
        self.settings = settings
        self.path = socket_path(settings.listen)
        self.module = NetworkModule.init(settings, kinds=("cri",), watch=True)
        self.manager = SandboxManager(settings, self.module)
        self.observability = Observability(settings, self.manager)
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=workers or worker_count(),
                                                                  thread_name_prefix="rpc"),
                                options=[("grpc.max_send_message_length", MAX_MESSAGE),
                                         ("grpc.max_receive_message_length", MAX_MESSAGE)])
        pb_grpc.add_RuntimeServiceServicer_to_server(RuntimeService(self.manager, self.observability.readiness), self.grpc)
        pb_grpc.add_ImageServiceServicer_to_server(ImageService(), self.grpc)
        cni_path = cni_socket_path(settings)
        self.cni_endpoint = CNIEndpoint(cni_path) if cni_path else None
        self._stopped = threading.Event()
        self._bound = False
        self._gc_thread: threading.Thread | None = None
        self.gc_rounds = 0  # finished GC rounds (tests wait for the start-up one)

    def start(self) -> None:
        start = time.monotonic()
        paths = [self.path] + ([self.cni_endpoint.path] if self.cni_endpoint is not None else [])
        for path in paths:  # nothing is touched unless both paths are usable
            check_socket_path(path)
        for path in paths:  # first: a refused second server must not touch the live one's pods
            claim_socket(path)
        self.observability.start()
        counts = self.manager.reconcile()
        old_umask = os.umask(0o117)  # the socket is born 0660
        try:
            if self.grpc.add_insecure_port(f"unix://{self.path}") == 0:
                raise ServeError(f"cannot listen on {self.path}")
            self.grpc.start()
            self._bound = True
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o660)
        if self.cni_endpoint is not None:
            self.cni_endpoint.start()
        # the first GC round (DELs that failed before the restart) runs now, beside serving
        self._gc_thread = threading.Thread(target=self._gc_loop, name="gc", daemon=True)
        self._gc_thread.start()
        self.observability.readiness.sockets_up()
        kv(log, logging.INFO, "serving", socket=self.path,
           cni_socket=self.cni_endpoint.path if self.cni_endpoint else "off", conf_dir=self.settings.conf_dir,
           networks=",".join(self.manager.adaptor.state().names) or "none",
           pods=len(self.manager.store.all()), startup_ms=round((time.monotonic() - start) * 1000), **counts)

    def _gc_loop(self) -> None:
        """Retry failed DELs of removed pods: once at start-up, then every gc_interval seconds
        (0: start-up only) until stop()."""
        first = True
        while first or (self.settings.gc_interval > 0 and not self._stopped.wait(self.settings.gc_interval)):
            what = "start-up GC" if first else "periodic GC"
            start = time.monotonic()
            try:
                removed = self.manager.gc_stale_attachments()
            except Exception as exc:  # noqa: BLE001 - a GC round must never end the server
                kv(log, logging.ERROR, f"{what} failed", error=str(exc))
                metrics.observe_gc(0, ok=False)
            else:
                metrics.observe_gc(removed, ok=True)
                if removed or first:
                    kv(log, logging.INFO, f"{what} done", removed=removed,
                       ms=round((time.monotonic() - start) * 1000))
            finally:
                first = False
                self.gc_rounds += 1

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.observability.readiness.drain()
        kv(log, logging.INFO, "shutting down", socket=self.path, grace_s=grace)
        # both sockets stop accepting at once; calls in flight on either get `grace` to finish
        grpc_done = self.grpc.stop(grace)
        if self.cni_endpoint is not None:
            self.cni_endpoint.stop(grace)
        grpc_done.wait(grace + 1.0)
        if self._gc_thread is not None:  # a GC round mid-DEL gets the same grace; the next start retries
            self._gc_thread.join(grace)
        self.module.exit()
        self.observability.stop()
        if self._bound:  # never remove a socket that another server owns
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
