"""Metric hooks: cheap calls the code paths make, recorded only once `cri-net serve` installs a sink.

The CNI plugin process imports the same operator and adaptors as the server, and must stay
fast (no prometheus_client import per call), so this module imports nothing heavy: every
`observe_*` is a no-op until `install()` is given a sink (`cri_net.server.prom.PromSink`).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator, Protocol


class Sink(Protocol):
    """What records the observations (Prometheus in the server)."""

    def operation(self, operation: str, network: str, seconds: float, ok: bool) -> None: ...
    def plugin_exec(self, plugin: str, command: str, seconds: float, ok: bool) -> None: ...
    def conf_reload(self, conf_dir: str, result: str) -> None: ...
    def gc_run(self, freed: int, ok: bool) -> None: ...
    def handoff(self, command: str, outcome: str) -> None: ...


_sink: Sink | None = None


def install(sink: Sink | None) -> None:
    """Route every observation to `sink` from now on (None: back to no-ops)."""
    global _sink
    _sink = sink


def observe_operation(operation: str, network: str, seconds: float, ok: bool) -> None:
    """One CRI RPC or CNI command, by operation name and network ("" when none applies)."""
    if _sink is not None:
        _sink.operation(operation, network, seconds, ok)


def observe_plugin_exec(plugin: str, command: str, seconds: float, ok: bool) -> None:
    """One plugin binary run, by plugin type (its file name) and CNI command."""
    if _sink is not None:
        _sink.plugin_exec(plugin, command, seconds, ok)


def observe_conf_reload(conf_dir: str, result: str) -> None:
    """A conf dir reload: result is `applied`, `kept_previous` or `failed`."""
    if _sink is not None:
        _sink.conf_reload(conf_dir, result)


def observe_gc(freed: int, ok: bool) -> None:
    """One GC round of stale attachments, and how many it freed."""
    if _sink is not None:
        _sink.gc_run(freed, ok)


def observe_handoff(command: str, outcome: str) -> None:
    """A cri-net-cni call handed to the server: outcome `ok`, `error`, `busy`, `refused`, `bad_request`."""
    if _sink is not None:
        _sink.handoff(command, outcome)


@contextmanager
def timed_operation(operation: str, network: str = "") -> Iterator[None]:
    """Observe the block as one operation; an exception counts as an error and propagates."""
    start = time.monotonic()
    ok = False
    try:
        yield
        ok = True
    finally:
        observe_operation(operation, network, time.monotonic() - start, ok)
