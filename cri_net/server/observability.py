"""Readiness, metrics and the health endpoint of one `cri-net serve`, wired in one place so
the server only calls start/stop around its own life."""

from __future__ import annotations

from typing import Any

from .. import metrics
from ..config import Settings
from .health import HealthServer, Readiness


class Observability:
    """Always a `Readiness` (the Status RPC reads it); metrics and HTTP only with metrics_listen."""

    def __init__(self, settings: Settings, manager: Any) -> None:
        self.readiness = Readiness(manager.adaptor.ready)
        self.http: HealthServer | None = None
        self._sink: Any = None
        if settings.metrics_listen:
            from .prom import PromSink, StateCollector

            self._sink = PromSink()
            self._sink.add_collector(StateCollector(lambda: [r.state for r in manager.store.all()],
                                                    manager.adaptor, self.readiness.ready))
            self.http = HealthServer(settings.metrics_listen, self.readiness, self._sink.exposition)

    def start(self) -> None:
        if self._sink is not None:
            metrics.install(self._sink)
        if self.http is not None:
            self.http.start()

    def stop(self) -> None:
        if self.http is not None:
            self.http.stop()
        if self._sink is not None:
            metrics.install(None)
