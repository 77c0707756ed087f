"""Prometheus metrics of `cri-net serve` (installed as the `cri_net.metrics` sink).

Counters and histograms are fed by the hooks; pods by state, networks and IP leases are
read at scrape time (a gauge that is never stale, and no bookkeeping on the hot path).
Names follow Prometheus conventions: `cri_net_` prefix, units in the name, `_total` counters.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.process_collector import ProcessCollector

#: CNI plugins take milliseconds to seconds; a timeout is 60 s by default.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: host-local's default data dir (`ipam.dataDir` unset)
#: a lease dir holding more files than this is reported at this value (a scrape stays bounded)


class PromSink:
    """Every cri-net metric in one registry (so tests and embedders never collide with the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        self.ops = Counter("cri_net_operations_total", "CRI RPCs and CNI commands served, by operation and network",
                           ["operation", "network"], registry=r)
        self.op_errors = Counter("cri_net_operation_errors_total", "CRI RPCs and CNI commands that failed",
                                 ["operation", "network"], registry=r)
        self.op_duration = Histogram("cri_net_operation_duration_seconds", "time to serve a CRI RPC or CNI command",
                                     ["operation", "network"], buckets=DURATION_BUCKETS, registry=r)
        self.exec_duration = Histogram("cri_net_plugin_exec_duration_seconds", "time one CNI plugin binary ran",
                                       ["plugin", "command"], buckets=DURATION_BUCKETS, registry=r)
        self.exec_errors = Counter("cri_net_plugin_exec_errors_total", "CNI plugin runs that failed",
                                   ["plugin", "command"], registry=r)
        self.reloads = Counter("cri_net_conf_reloads_total", "conf dir reloads by result "
                               "(applied, kept_previous, failed)", ["conf_dir", "result"], registry=r)
        self.reload_errors = Counter("cri_net_conf_reload_errors_total", "conf dir reloads that did not apply",
                                     ["conf_dir"], registry=r)
        self.gc_runs = Counter("cri_net_gc_runs_total", "GC rounds of stale attachments by result (ok, error)",
                               ["result"], registry=r)
        self.gc_freed = Counter("cri_net_gc_freed_attachments_total", "stale attachments GC deleted", registry=r)
        self.handoffs = Counter("cri_net_cni_handoff_calls_total", "cri-net-cni calls handed to the server, by "
                                "command and outcome (ok, error, busy, refused, bad_request)",
                                ["command", "outcome"], registry=r)

    # ---- the cri_net.metrics.Sink protocol ------------------------------------------------
    def operation(self, operation: str, network: str, seconds: float, ok: bool) -> None:
        self.ops.labels(operation, network).inc()
        self.op_duration.labels(operation, network).observe(seconds)
        if not ok:
            self.op_errors.labels(operation, network).inc()

    def plugin_exec(self, plugin: str, command: str, seconds: float, ok: bool) -> None:
        self.exec_duration.labels(plugin, command).observe(seconds)
        if not ok:
            self.exec_errors.labels(plugin, command).inc()

    def conf_reload(self, conf_dir: str, result: str) -> None:
        self.reloads.labels(conf_dir, result).inc()
        if result != "applied":
            self.reload_errors.labels(conf_dir).inc()

    def gc_run(self, freed: int, ok: bool) -> None:
        self.gc_runs.labels("ok" if ok else "error").inc()
        if freed:
            self.gc_freed.inc(freed)

    def handoff(self, command: str, outcome: str) -> None:
        self.handoffs.labels(command, outcome).inc()

    # ---- scrape ---------------------------------------------------------------------------
    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class StateCollector(Collector):
    """Gauges read at scrape time from the server's own state."""

    def __init__(self, pod_states: Callable[[], Iterable[str]], adaptor: Any, ready: Callable[[], bool]) -> None:
        self.pod_states = pod_states
        self.adaptor = adaptor  # the network API's door: state() and ip_leases()
        self.ready = ready

    def collect(self) -> Iterator[Metric]:
        pods = GaugeMetricFamily("cri_net_pods", "pod sandboxes cri-net serve knows, by state", labels=["state"])
        counts = {"CREATING": 0, "READY": 0, "NOTREADY": 0}
        for state in self.pod_states():
            counts[state] = counts.get(state, 0) + 1
        for state, n in sorted(counts.items()):
            pods.add_metric([state], n)
        yield pods
        state = self.adaptor.state()
        loaded = GaugeMetricFamily("cri_net_networks", "network configs in the conf dir, by state (loaded, skipped)",
                                   labels=["state"])
        loaded.add_metric(["loaded"], len(state.networks))
        loaded.add_metric(["skipped"], len(state.skipped))
        yield loaded
        ready = GaugeMetricFamily("cri_net_ready", "1 when /readyz answers ready (networks loaded, sockets up, "
                                  "not draining)")
        ready.add_metric([], 1 if self.ready() else 0)
        yield ready
        leases = GaugeMetricFamily("cri_net_ip_leases", "host-local IP leases in use, per network whose data dir "
                                   "is known", labels=["network"])
        for network, count in self.adaptor.ip_leases():
            leases.add_metric([network], count)
        yield leases


