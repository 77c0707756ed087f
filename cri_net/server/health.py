"""`--metrics-listen`: an HTTP endpoint serving /metrics, /healthz and /readyz.

/healthz answers while the process serves HTTP at all. /readyz is what a load balancer or
kubelet-style probe should use: ready only when networks are loaded and the sockets are up,
and not ready from SIGTERM on (`cri-net serve` marks the server draining as soon as its main
thread sees the signal, before the drain starts). The CRI Status RPC reports NetworkReady
from the same `Readiness`, so they agree.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from ..log import kv

log = logging.getLogger("cri_net.server.health")

#: a client that sends nothing is dropped after this long (a probe must not hold a thread)
REQUEST_TIMEOUT = 5.0


class HealthError(ValueError):
    """A bad --metrics-listen value; names the value."""


class Readiness:
    """Ready = sockets up, networks loaded, not draining. Read from any thread."""

    def __init__(self, networks_ready: Callable[[], bool]) -> None:
        self._networks_ready = networks_ready
        self._sockets_up = threading.Event()
        self._draining = threading.Event()

    def sockets_up(self) -> None:
        self._sockets_up.set()

    def drain(self) -> None:
        """From now on not ready (SIGTERM): a probe sees it before in-flight calls finish."""
        self._draining.set()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def reason(self) -> str:
        """"" when ready, else why not (the /readyz body and the Status message)."""
        if self._draining.is_set():
            return "draining: shutting down"
        if not self._sockets_up.is_set():
            return "starting: sockets not up yet"
        if not self._networks_ready():
            return "no network loaded"
        return ""

    def ready(self) -> bool:
        return self.reason() == ""


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all addresses) or `[v6]:PORT`; port 0 picks a free one."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise HealthError(f"--metrics-listen {value!r}: expected HOST:PORT (e.g. 127.0.0.1:9153)")
    return host.strip("[]"), int(port)


class _Handler(BaseHTTPRequestHandler):
    server: "_HTTPServer"
    timeout = REQUEST_TIMEOUT

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, self.server.exposition(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/healthz":
            self._send(200, b"ok\n")
        elif path == "/readyz":
            why = self.server.readiness.reason()
            self._send(503 if why else 200, (f"not ready: {why}\n" if why else "ok\n").encode())
        else:
            self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

    def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - scrapes are not news
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], readiness: Readiness, exposition: Callable[[], bytes]) -> None:
        import socket

        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.readiness = readiness
        self.exposition = exposition
        super().__init__(addr, _Handler)


class HealthServer:
    """The HTTP endpoint on its own thread until `stop()`."""

    def __init__(self, listen: str, readiness: Readiness, exposition: Callable[[], bytes]) -> None:
        host, port = parse_listen(listen)
        try:
            self._httpd = _HTTPServer((host or "0.0.0.0", port), readiness, exposition)
        except OSError as exc:
            raise HealthError(f"--metrics-listen {listen!r}: cannot listen: {exc.strerror or exc}") from None
        self.address = f"{host or '0.0.0.0'}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="metrics-http", daemon=True)

    def start(self) -> "HealthServer":
        self._thread.start()
        kv(log, logging.INFO, "serving metrics and health", address=self.address)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
