#!/usr/bin/env python3
"""Benchmark of `cri-net serve` against the same work done raw.

Run as root from the repository:

    sudo .venv/bin/python benchmarks/bench_serve.py [--quick] [--json]

It starts a real `.venv/bin/cri-net serve` subprocess with its own temporary conf, cache,
state, netns and socket paths, and a network `crinet-bench`: bridge `crinetbs0` + host-local
(10.232.0.0/16, leases in the temporary dir) + portmap (capability portMappings). cri-net adds
loopback by itself. It measures:

1. a full pod cycle (RunPodSandbox, PodSandboxStatus, StopPodSandbox, RemovePodSandbox) over
   the gRPC socket, against the same work done raw in this process, interleaved in batches:
   `ip netns add`, loopback ADD, bridge ADD, portmap ADD (prevResult chained), then portmap
   DEL, bridge DEL (prevResult = the final result), loopback DEL, `ip netns del`. The plugins
   are executed directly with the CNI environment. Target: median ratio <= 1.05 (issue 13).
2. PodSandboxStatus latency (non-verbose, one channel, one READY pod). Target p50 <= 1 ms,
   p99 <= 5 ms. The Version RPC on the same channel is shown as the gRPC floor.
3. pods per second, full cycles at concurrency 1, 4 and 16 (one CRIClient per thread), and the
   raw cycle at the same concurrency.
4. 1,000 pods (real bridge pods by default): server RSS (target <= 100 MB), then SIGTERM and
   restart, timed until Version answers (target <= 2 s); the server's own `startup_ms=`
   (reconcile of the 1,000 records + listen) is reported too. Then every pod is removed.

Everything it creates (pods, netns, the bridge, portmap iptables rules, leases, the temp dir)
is removed at the end, also on Ctrl-C or SIGTERM, and checked: a leftover is reported and makes
the exit status 3. Exit status 1 means the benchmark itself failed; with --fail-on-miss a
missed target gives 2. `--quick` shrinks every part (CI smoke, well under a minute).
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import hashlib
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import grpc  # noqa: E402

from cri_net.libcni.spawn import Child  # noqa: E402

from cri_net.cri.client import CRIClient  # noqa: E402
from cri_net.cri.pb.runtime.v1 import api_pb2 as pb  # noqa: E402

NETWORK = "crinet-bench"
BRIDGE = "crinetbs0"
SUBNET = "10.232.0.0/16"
RAW_NS_PREFIX = "crinetbs-"  # raw baseline netns in /run/netns: crinetbs-<pid>-<n>
LOOPBACK_CONF = {"cniVersion": "0.3.1", "name": "cni-loopback", "type": "loopback"}  # what cri-net runs
CNI_BIN_CANDIDATES = ("/opt/cni/bin", "/usr/lib/cni")
SERVE_CMD = Path(sys.executable).parent / "cri-net"  # the venv running this benchmark

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
MNT_DETACH = 2


class BenchError(RuntimeError):
    pass


class Interrupted(BaseException):
    pass


# ---------------------------------------------------------------------------------------------
# small helpers


def now() -> float:
    return time.perf_counter()


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def run(*cmd: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def log(msg: str) -> None:
    # one write(2), not print: this runs in signal handlers too, where a print that lands inside
    # another print's buffered write raises "reentrant call"
    os.write(2, f"[bench_serve {time.strftime('%H:%M:%S')}] {msg}\n".encode(errors="replace"))


def sandbox_id(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()


def find_bin_dir() -> str:
    for d in CNI_BIN_CANDIDATES:
        if all(os.path.isfile(os.path.join(d, p)) for p in ("bridge", "host-local", "portmap", "loopback")):
            return d
    raise BenchError(f"no CNI plugin dir with bridge, host-local, portmap and loopback in {CNI_BIN_CANDIDATES}")


def conflist(ipam_dir: str, kind: str = "bridge") -> dict[str, Any]:
    ipam = {"type": "host-local", "ranges": [[{"subnet": SUBNET}]], "dataDir": ipam_dir}
    if kind == "bridge":
        main = {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipam": ipam}
    elif kind == "ptp":
        main = {"type": "ptp", "ipam": ipam}
    else:
        raise ValueError(kind)
    return {"cniVersion": "1.0.0", "name": NETWORK,
            "plugins": [main, {"type": "portmap", "capabilities": {"portMappings": True}}]}


def cpu_ms(server_pid: int) -> dict[str, float]:
    """CPU used so far, in ms: this process (`self`: the gRPC clients, or the raw driver), the
    children it reaped (`children`: the raw side's plugins and `ip` runs), the server
    (`server`) and the children the server reaped (`server_children`: cri-net's plugins)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(f"/proc/{server_pid}/stat", encoding="ascii") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    tick = 1000 / os.sysconf("SC_CLK_TCK")
    return {"self": (me.ru_utime + me.ru_stime) * 1000, "children": (kids.ru_utime + kids.ru_stime) * 1000,
            "server": (int(f[11]) + int(f[12])) * tick, "server_children": (int(f[13]) + int(f[14])) * tick}


def vm_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of `pid` in KiB."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


# ---------------------------------------------------------------------------------------------
# the raw baseline: what cri-net does for a pod, with nothing around it


#: idle time before each probe of `idle_rpc_latency`: about what a pod cycle's plugins take
#: between two of its RPCs
IDLE_GAP_MS = 15


class RawCNI:
    """`ip netns add`, loopback + the conflist's plugins ADD and DEL executed directly, `ip netns del`."""

    def __init__(self, bin_dir: str, net: dict[str, Any]) -> None:
        self.bin_dir = bin_dir
        self.net = net
        self.base_env = dict(os.environ)
        self._n = 0
        self._lock = threading.Lock()
        self.live: set[str] = set()  # netns names currently existing

    def _exec(self, plugin: str, command: str, cid: str, netns: str, ifname: str, conf: dict[str, Any],
              cni_args: str) -> bytes:
        env = dict(self.base_env, CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_NETNS=netns, CNI_IFNAME=ifname,
                   CNI_ARGS=cni_args, CNI_PATH=self.bin_dir)
        child = Child(os.path.join(self.bin_dir, plugin), env)  # cri-net's own spawner: the ratio is the rest
        out, err = child.communicate(json.dumps(conf).encode(), None, 1 << 24, 1 << 16)
        if child.returncode != 0:
            raise BenchError(f"raw {plugin} {command} failed: {out.decode()[:300]} {err.decode()[:300]}")
        return out

    def _stdin(self, plugin: dict[str, Any], prev: dict[str, Any] | None, caps: dict[str, Any]) -> dict[str, Any]:
        conf = dict(plugin, cniVersion=self.net["cniVersion"], name=self.net["name"])
        if prev is not None:
            conf["prevResult"] = prev
        rc = {c: caps[c] for c, on in plugin.get("capabilities", {}).items() if on and c in caps}
        if rc:
            conf["runtimeConfig"] = rc
        return conf

    def cycle(self, tag: str, port_mappings: list[dict[str, Any]]) -> dict[str, float]:
        """One pod's worth of work; returns step durations in seconds (and 'total')."""
        with self._lock:
            self._n += 1
            name = f"{RAW_NS_PREFIX}{os.getpid()}-{self._n}"
        cid = sandbox_id("raw" + tag)
        netns = f"/run/netns/{name}"
        cni_args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={tag};K8S_POD_INFRA_CONTAINER_ID={cid};" \
                   f"K8S_POD_UID=uid-{tag}"
        caps = {"portMappings": port_mappings} if port_mappings else {}
        steps: dict[str, float] = {}
        t0 = now()
        run("ip", "netns", "add", name)
        self.live.add(name)
        t1 = now()
        added = False
        try:
            self._exec("loopback", "ADD", cid, netns, "lo", LOOPBACK_CONF, cni_args)
            prev: dict[str, Any] | None = None
            for plugin in self.net["plugins"]:
                prev = json.loads(self._exec(plugin["type"], "ADD", cid, netns, "eth0",
                                             self._stdin(plugin, prev, caps), cni_args))
            added = True
            t2 = now()
            for plugin in reversed(self.net["plugins"]):
                self._exec(plugin["type"], "DEL", cid, netns, "eth0", self._stdin(plugin, prev, caps), cni_args)
            self._exec("loopback", "DEL", cid, netns, "lo", LOOPBACK_CONF, cni_args)
            t3 = now()
        except BaseException:
            if not added:  # release what ADD may have taken (the netns goes below)
                for plugin in reversed(self.net["plugins"]):
                    try:
                        self._exec(plugin["type"], "DEL", cid, netns, "eth0", self._stdin(plugin, None, caps), cni_args)
                    except BenchError:
                        pass
            raise
        finally:
            run("ip", "netns", "del", name, check=False)
            self.live.discard(name)
        t4 = now()
        steps.update(netns_add=t1 - t0, add=t2 - t1, delete=t3 - t2, netns_del=t4 - t3, total=t4 - t0)
        return steps


# ---------------------------------------------------------------------------------------------
# the server under test


class ServeProcess:
    def __init__(self, root: str, bin_dir: str) -> None:
        self.root = root
        self.bin_dir = bin_dir
        self.sock = os.path.join(root, "cri-net.sock")
        self.dirs = {k: os.path.join(root, k) for k in ("conf", "cache", "state", "netns", "ipam")}
        for d in self.dirs.values():
            os.makedirs(d, mode=0o700, exist_ok=True)
        self.config_file = os.path.join(root, "config.toml")
        with open(self.config_file, "w", encoding="utf-8") as fh:  # keeps /etc/cri-net/config.toml out of it
            fh.write(f'default_network = "{NETWORK}"\nlog_level = "info"\n')
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = ""

    def write_conflist(self, doc: dict[str, Any]) -> None:
        with open(os.path.join(self.dirs["conf"], "10-bench.conflist"), "w", encoding="utf-8") as fh:
            json.dump(doc, fh)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> float:
        """Start the server; returns seconds until Version answered on a fresh connection."""
        self.starts += 1
        self.log_path = os.path.join(self.root, f"serve-{self.starts}.log")
        cmd = [str(SERVE_CMD), "serve", "--config", self.config_file, "--listen", f"unix://{self.sock}",
               "--conf-dir", self.dirs["conf"], "--cache-dir", self.dirs["cache"], "--state-dir", self.dirs["state"],
               "--netns-dir", self.dirs["netns"], "--bin-dir", self.bin_dir]
        logf = open(self.log_path, "wb")
        t0 = now()
        # own session: a Ctrl-C in the terminal reaches the benchmark, which then removes the pods
        # through the still-running server before stopping it
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        logf.close()
        deadline = t0 + timeout
        while True:
            if not self.alive():
                raise BenchError(f"cri-net serve exited with {self.proc.returncode}:\n{self.tail()}")
            if now() > deadline:
                raise BenchError(f"cri-net serve did not answer Version within {timeout}s:\n{self.tail()}")
            if self._connectable():
                try:
                    client = CRIClient(self.sock, timeout=5.0)  # fresh channel: no reconnect backoff
                except grpc.RpcError:
                    time.sleep(0.002)
                    continue
                elapsed = now() - t0
                client.close()
                return elapsed
            time.sleep(0.002)

    def _connectable(self) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.sock)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def stop(self, timeout: float = 40.0) -> float:
        """SIGTERM, wait; SIGKILL after `timeout`. Returns seconds until exit."""
        if not self.alive():
            return 0.0
        assert self.proc is not None
        t0 = now()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return now() - t0

    def tail(self, n: int = 20) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return "".join(fh.readlines()[-n:])
        except OSError:
            return ""

    def startup_ms(self) -> int | None:
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                m = re.search(r"\bstartup_ms=(\d+)", line)
                if m:
                    return int(m.group(1))
        return None


def pod_config(tag: str, host_port: int = 0) -> pb.PodSandboxConfig:
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=tag, namespace="bench", uid=f"uid-{tag}"),
                              hostname=tag[:63], labels={"app": "bench"})
    if host_port:
        cfg.port_mappings.append(pb.PortMapping(protocol=pb.TCP, container_port=80, host_port=host_port))
    return cfg


def cri_cycle(client: CRIClient, tag: str, host_port: int) -> dict[str, float]:
    cfg = pod_config(tag, host_port)
    t0 = now()
    sid = client.runp(cfg)
    t1 = now()
    resp = client.inspectp(sid, verbose=False)
    t2 = now()
    if resp.status.state != pb.SANDBOX_READY or not resp.status.network.ip:
        raise BenchError(f"pod {tag} not READY with an IP: {resp.status}")
    client.stopp(sid)
    t3 = now()
    client.rmp(sid)
    t4 = now()
    return dict(run=t1 - t0, status=t2 - t1, stop=t3 - t2, remove=t4 - t3, total=t4 - t0)


# ---------------------------------------------------------------------------------------------
# results


@dataclass
class Figure:
    key: str
    label: str
    value: float
    unit: str
    target: str = ""
    ok: bool | None = None  # None: no target, or not applicable in this mode
    vs_raw: float | None = None
    note: str = ""


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, *args: Any, **kw: Any) -> Figure:
        f = Figure(*args, **kw)
        self.figures.append(f)
        return f

    def table(self) -> str:
        rows = [("figure", "value", "target", "result", "vs raw")]
        for f in self.figures:
            if f.unit == "ms":
                val = f"{f.value:.2f} ms" if f.value < 10 else f"{f.value:.1f} ms"
            elif f.unit == "x":
                val = f"{f.value:.3f}"
            elif f.unit == "pods/s":
                val = f"{f.value:.1f} pods/s"
            elif f.unit == "MB":
                val = f"{f.value:.1f} MB"
            elif f.unit == "s":
                val = f"{f.value:.2f} s"
            else:
                val = f"{f.value:g} {f.unit}".strip()
            res = "" if f.ok is None else ("pass" if f.ok else "MISS")
            if f.ok is None and f.target:
                res = "n/a"
            rows.append((f.label, val, f.target, res, "" if f.vs_raw is None else f"x{f.vs_raw:.2f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        out = []
        for i, r in enumerate(rows):
            out.append("  ".join(c.ljust(widths[j]) if j in (0, 2, 3) else c.rjust(widths[j])
                                 for j, c in enumerate(r)).rstrip())
            if i == 0:
                out.append("  ".join("-" * w for w in widths))
        return "\n".join(out)

    def as_json(self) -> dict[str, Any]:
        return {"figures": {f.key: {"label": f.label, "value": round(f.value, 4), "unit": f.unit,
                                    "target": f.target or None, "pass": f.ok,
                                    "vs_raw": None if f.vs_raw is None else round(f.vs_raw, 4),
                                    **({"note": f.note} if f.note else {})} for f in self.figures},
                **self.details}


# ---------------------------------------------------------------------------------------------
# the benchmark


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.root = tempfile.mkdtemp(prefix="crinet-bench-")
        os.chmod(self.root, 0o700)
        with open(os.path.join(self.root, "bench.pid"), "w", encoding="ascii") as fh:  # marks the dir live
            fh.write(str(os.getpid()))
        self.bin_dir = find_bin_dir()
        self.server = ServeProcess(self.root, self.bin_dir)
        self.net = conflist(self.server.dirs["ipam"], "bridge")
        self.raw = RawCNI(self.bin_dir, self.net)
        self.report = Report()
        self.port = 0
        self._port_lock = threading.Lock()
        self.cleaned = False
        self.owns_host = False  # set once no other live run uses the bridge: then cleanup may touch it
        self.leftovers: list[str] = []

    # ---- helpers -----------------------------------------------------------------------
    def next_port(self) -> int:
        if not self.args.host_ports:
            return 0
        with self._port_lock:
            self.port += 1
            return 20000 + self.port % 20000

    def mappings(self, port: int) -> list[dict[str, Any]]:
        return [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}] if port else []

    def parallel(self, n_threads: int, fn: Callable[[int], None]) -> float:
        """Run fn(thread_index) on n_threads threads started together; returns wall seconds."""
        errors: list[BaseException] = []
        barrier = threading.Barrier(n_threads + 1)

        def body(i: int) -> None:
            try:
                barrier.wait()
                fn(i)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                self.stop_event.set()

        threads = [threading.Thread(target=body, args=(i,), daemon=True, name=f"bench-{i}") for i in range(n_threads)]
        self.threads = threads
        for t in threads:
            t.start()
        barrier.wait()
        t0 = now()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except BaseException:
            # interrupted: let every worker finish its in-flight RPC before the caller closes the
            # channels, or the server would finish creating pods nobody knows about
            self.stop_event.set()
            for t in threads:
                t.join(60)
            raise
        wall = now() - t0
        self.threads = []
        if errors:
            raise BenchError(f"{len(errors)} worker(s) failed; first: {errors[0]!r}")
        return wall

    # ---- parts -------------------------------------------------------------------------
    def part_cycle(self) -> None:
        a = self.args
        log(f"(1) pod cycle: {a.cycles} cri-net + {a.cycles} raw, interleaved in batches of {a.batch}"
            f" (+{a.warmup} warm-up each)")
        cri: list[dict[str, float]] = []
        raw: list[dict[str, float]] = []
        client = CRIClient(self.server.sock)
        try:
            for i in range(a.warmup):
                cri_cycle(client, f"warm-{i}", self.next_port())
                self.raw.cycle(f"warm-{i}", self.mappings(self.next_port()))
            n = 0
            b = 0
            while n < a.cycles:
                k = min(a.batch, a.cycles - n)
                order = ("raw", "cri") if b % 2 == 0 else ("cri", "raw")
                for side in order:
                    for j in range(k):
                        self._check_stop()
                        tag = f"cyc-{n + j}"
                        if side == "cri":
                            cri.append(cri_cycle(client, tag, self.next_port()))
                        else:
                            raw.append(self.raw.cycle(tag, self.mappings(self.next_port())))
                n += k
                b += 1
            cpu0 = cpu_ms(self.server.pid)
            idle_samples = max(40, a.cycles)
            idle_rpc = self.idle_rpc_latency(client, idle_samples)
            cpu1 = cpu_ms(self.server.pid)
        finally:
            client.close()
        ct = [c["total"] * 1000 for c in cri]
        rt = [r["total"] * 1000 for r in raw]
        cmed, rmed = statistics.median(ct), statistics.median(rt)
        cp90, rp90 = pct(ct, 90), pct(rt, 90)
        rep = self.report
        rep.add("cycle_cri_median_ms", "pod cycle, cri-net, median", cmed, "ms", vs_raw=cmed / rmed)
        rep.add("cycle_cri_p90_ms", "pod cycle, cri-net, p90", cp90, "ms", vs_raw=cp90 / rp90)
        rep.add("cycle_raw_median_ms", "pod cycle, raw, median", rmed, "ms")
        rep.add("cycle_raw_p90_ms", "pod cycle, raw, p90", rp90, "ms")
        ratio = cmed / rmed
        rep.add("cycle_ratio_median", "pod cycle ratio cri-net/raw (median)", ratio, "x", "<= 1.05", ratio <= 1.05)
        rep.details["cycle_steps_ms"] = {
            "cri": {k: round(statistics.median(c[k] for c in cri) * 1000, 2) for k in cri[0]},
            "raw": {k: round(statistics.median(r[k] for r in raw) * 1000, 2) for k in raw[0]},
        }
        rep.details["cycle_overhead_ms"] = round(cmed - rmed, 2)
        # the cycle's four RPCs each start after the server sat idle (plugins ran): what one
        # such round trip costs with no work in it, and the cycle without that transport
        rpcs = len(cri[0]) - 1  # run, status, stop, remove (the other key is the total)
        rep.add("cycle_idle_rpc_ms", f"Version RPC after {IDLE_GAP_MS} ms idle, median", idle_rpc, "ms",
                note="transport and thread wake-ups only: no work in the handler")
        rep.add("cycle_idle_rpc_cpu_ms", "CPU of one such Version RPC: server + gRPC client",
                (cpu1["server"] - cpu0["server"] + cpu1["self"] - cpu0["self"]) / idle_samples, "ms",
                note=f"server {(cpu1['server'] - cpu0['server']) / idle_samples:.2f} ms, "
                     f"client {(cpu1['self'] - cpu0['self']) / idle_samples:.2f} ms (mean)")
        net = cmed - rpcs * idle_rpc
        rep.add("cycle_cri_less_transport_ms", f"pod cycle, cri-net, less {rpcs} such round trips", net, "ms",
                vs_raw=net / rmed)

    def idle_rpc_latency(self, client: CRIClient, samples: int) -> float:
        """Median Version round trip after the channel and the server sat idle IDLE_GAP_MS, as
        every RPC of a pod cycle does (its plugins run in between)."""
        req = pb.VersionRequest(version="v1")
        lat: list[float] = []
        for _ in range(samples):
            self._check_stop()
            time.sleep(IDLE_GAP_MS / 1000)
            t0 = now()
            client.runtime.Version(req, timeout=10)
            lat.append((now() - t0) * 1000)
        return statistics.median(lat)

    def part_status(self) -> None:
        a = self.args
        log(f"(2) PodSandboxStatus latency: {a.status_calls} calls on one channel")
        client = CRIClient(self.server.sock)
        try:
            sid = client.runp(pod_config("status-pod", self.next_port()))
            req = pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=False)
            vreq = pb.VersionRequest(version="v1")
            stub = client.runtime
            for _ in range(min(100, a.status_calls)):
                stub.PodSandboxStatus(req, timeout=10)
                stub.Version(vreq, timeout=10)
            lat: list[float] = []
            for _ in range(a.status_calls):
                t0 = now()
                resp = stub.PodSandboxStatus(req, timeout=10)
                lat.append((now() - t0) * 1000)
                if resp.status.state != pb.SANDBOX_READY:
                    raise BenchError("status pod is not READY")
            vlat: list[float] = []
            for _ in range(max(100, a.status_calls // 4)):
                t0 = now()
                stub.Version(vreq, timeout=10)
                vlat.append((now() - t0) * 1000)
            client.stopp(sid)
            client.rmp(sid)
        finally:
            client.close()
        p50, p99 = pct(lat, 50), pct(lat, 99)
        rep = self.report
        rep.add("status_p50_ms", "PodSandboxStatus p50", p50, "ms", "<= 1 ms", p50 <= 1.0)
        rep.add("status_p99_ms", "PodSandboxStatus p99", p99, "ms", "<= 5 ms", p99 <= 5.0)
        rep.add("version_p50_ms", "Version p50 (gRPC floor)", pct(vlat, 50), "ms")
        rep.details["status_ms"] = {"p50": round(p50, 3), "p90": round(pct(lat, 90), 3), "p99": round(p99, 3),
                                    "max": round(max(lat), 3), "n": len(lat)}

    def part_throughput(self) -> None:
        a = self.args
        for conc in a.concurrency:
            total = max(a.throughput_cycles, conc * (1 if a.quick else 3))
            per = [total // conc + (1 if i < total % conc else 0) for i in range(conc)]
            log(f"(3) throughput at concurrency {conc}: {total} cri-net and {total} raw cycles, "
                f"in halves ordered cri-net, raw, raw, cri-net (so load drift hits both alike)")
            clients = [CRIClient(self.server.sock) for _ in range(conc)]
            lat: list[float] = []
            halves = [[n // 2 for n in per], [n - n // 2 for n in per]]

            def cri_worker(i: int, half: int) -> None:
                for j in range(halves[half][i]):
                    self._check_stop()
                    lat.append(cri_cycle(clients[i], f"tp{conc}-{half}-{i}-{j}", self.next_port())["total"])

            def raw_worker(i: int, half: int) -> None:
                for j in range(halves[half][i]):
                    self._check_stop()
                    self.raw.cycle(f"tp{conc}-{half}-{i}-{j}", self.mappings(self.next_port()))

            used = {"cri": dict.fromkeys(("self", "children", "server", "server_children"), 0.0),
                    "raw": dict.fromkeys(("self", "children", "server", "server_children"), 0.0)}

            def timed(side: str, worker: Callable[[int], None]) -> float:
                before = cpu_ms(self.server.pid)
                wall = self.parallel(conc, worker)
                after = cpu_ms(self.server.pid)
                for k in before:
                    used[side][k] += after[k] - before[k]
                return wall

            try:
                cwall = timed("cri", lambda i: cri_worker(i, 0))
                rwall = timed("raw", lambda i: raw_worker(i, 0))
                rwall += timed("raw", lambda i: raw_worker(i, 1))
                cwall += timed("cri", lambda i: cri_worker(i, 1))
            finally:
                for c in clients:
                    c.close()
            cri_rate, raw_rate = total / cwall, total / rwall
            self.report.add(f"pods_per_s_c{conc}", f"pods/s, full cycles, concurrency {conc}", cri_rate, "pods/s",
                            ">= 0.95x raw", cri_rate / raw_rate >= 0.95, vs_raw=cri_rate / raw_rate)
            # where the CPU of a pod goes (on 2 cores, past a few pods at once the rate is CPU-bound)
            c, r = ({k: v / total for k, v in used[side].items()} for side in ("cri", "raw"))
            cri_own, raw_own = c["self"] + c["server"], r["self"]
            cri_all, raw_all = cri_own + c["server_children"] + c["children"], raw_own + r["children"]
            self.report.add(f"cpu_per_pod_c{conc}", f"CPU per pod, concurrency {conc}: cri-net's gRPC clients + server",
                            cri_own, "ms", vs_raw=cri_own / raw_own if raw_own else None,
                            note=f"server {c['server']:.1f} ms + clients {c['self']:.1f} ms; raw driver {raw_own:.1f} ms "
                                 f"(vs raw); plugins {c['server_children']:.1f} ms via cri-net, {r['children']:.1f} ms "
                                 f"raw (with ip netns); all CPU raw/cri-net {raw_all / cri_all:.2f}")
            self.report.details.setdefault("throughput", {})[f"c{conc}"] = {
                "cycles": total, "cri_pods_per_s": round(cri_rate, 2), "raw_pods_per_s": round(raw_rate, 2),
                "cri_cycle_p50_ms": round(pct(lat, 50) * 1000, 1), "cri_cycle_p90_ms": round(pct(lat, 90) * 1000, 1)}

    #: scale points with a target: pods -> (RSS MB, restart s); issue 13 adds 10,000 pods
    SCALE_TARGETS = {1000: (100.0, 2.0), 10000: (150.0, 3.0)}
    #: a Linux bridge takes 1,024 ports: a larger point uses ptp pods
    BRIDGE_PORTS = 1024

    def part_scale(self) -> None:
        network = "bridge"
        for n in self.args.pods:
            wanted = self.args.scale_network if n < self.BRIDGE_PORTS else "ptp"
            if wanted != network:
                # a different conflist for this point, named the same (the default network must exist)
                self.server.stop()
                self.server.write_conflist(conflist(self.server.dirs["ipam"], wanted))
                self.server.start()
                network = wanted
            self.scale_point(n, network)

    def scale_point(self, n: int, network: str) -> None:
        """n pods: RSS, restart with n records, create and remove rates. The 1,000-pod point
        keeps its historical keys; any other gets `_<n>` appended."""
        conc = self.args.scale_concurrency
        rep = self.report
        suffix = "" if n == 1000 else f"_{n}"
        rss_target, restart_target = self.SCALE_TARGETS.get(n, (None, None))
        rss_before = vm_status(self.server.pid)["VmRSS"] / 1024
        log(f"(4) creating {n} {network} pods at concurrency {conc} (server RSS now {rss_before:.1f} MB)")
        ids: list[list[str]] = [[] for _ in range(conc)]
        clients = [CRIClient(self.server.sock) for _ in range(conc)]

        def create(i: int) -> None:
            for j in range(i, n, conc):
                self._check_stop()
                ids[i].append(clients[i].runp(pod_config(f"scale-{j}", self.next_port())))

        try:
            cwall = self.parallel(conc, create)
        finally:
            for c in clients:
                c.close()
        all_ids = [s for part in ids for s in part]
        time.sleep(0.5)  # let the server settle (gRPC buffers, freed requests) before reading RSS
        mem = vm_status(self.server.pid)
        rss = mem["VmRSS"] / 1024
        with CRIClient(self.server.sock) as c:
            listed = c.pods()
        if len(listed) != n:
            raise BenchError(f"ListPodSandbox shows {len(listed)} pods, expected {n}")
        log(f"    {n} pods in {cwall:.1f}s ({n / cwall:.1f} pods/s); RSS {rss:.1f} MB; restarting")
        down = self.server.stop()
        restart = self.server.start()
        startup_ms = self.server.startup_ms()
        rss_restarted = vm_status(self.server.pid)["VmRSS"] / 1024
        with CRIClient(self.server.sock) as c:
            after = c.pods()
            ready = sum(1 for p in after if p.state == pb.SANDBOX_READY)
            st = c.inspectp(all_ids[0], verbose=False)
        if len(after) != n or ready != n or not st.status.network.ip:
            raise BenchError(f"after restart: {len(after)} pods, {ready} READY (expected {n}), ip={st.status.network.ip!r}")
        label = f"{n} pods" + ("" if network == "bridge" else f" ({network})")
        note = "" if rss_target is not None else "no target at this size"
        rep.add(f"scale_rss_mb{suffix}", f"server RSS with {label}", rss, "MB",
                f"<= {rss_target:g} MB" if rss_target else "", (rss <= rss_target) if rss_target else None, note=note)
        rep.add(f"scale_restart_s{suffix}", f"restart until Version answers, {label}", restart, "s",
                f"<= {restart_target:g} s" if restart_target else "",
                (restart <= restart_target) if restart_target else None, note=note)
        rep.add(f"scale_startup_ms{suffix}", f"server startup_ms (reconcile+listen), {label}", float(startup_ms or -1), "ms")
        rep.add(f"scale_rss_restarted_mb{suffix}", f"server RSS after restart, {label}", rss_restarted, "MB")
        rep.add(f"scale_rss_before_mb{suffix}", "server RSS before the pods", rss_before, "MB")
        rep.add(f"scale_create_pods_per_s{suffix}", f"RunPodSandbox rate, {label} (concurrency {conc})", n / cwall,
                "pods/s")
        rep.add(f"scale_shutdown_s{suffix}", f"SIGTERM until exit, {label}", down, "s")
        rep.add(f"scale_stop_start_s{suffix}", f"SIGTERM + start until Version, {label}", down + restart, "s")
        log(f"    restart {restart:.2f}s (startup_ms={startup_ms}); removing {n} pods")
        clients = [CRIClient(self.server.sock) for _ in range(conc)]

        def remove(i: int) -> None:
            for sid in ids[i]:
                self._check_stop()
                clients[i].stopp(sid)
                clients[i].rmp(sid)

        try:
            rwall = self.parallel(conc, remove)
        finally:
            for c in clients:
                c.close()
        rep.add(f"scale_remove_pods_per_s{suffix}", f"Stop+Remove rate, {label} (concurrency {conc})", n / rwall,
                "pods/s")
        rep.details[f"scale{suffix}"] = {"pods": n, "network": network, "concurrency": conc,
                                "VmHWM_mb": round(mem["VmHWM"] / 1024, 1), "create_s": round(cwall, 2),
                                "remove_s": round(rwall, 2)}

    def _check_stop(self) -> None:
        if self.stop_event.is_set():
            raise Interrupted()

    # ---- driver ------------------------------------------------------------------------
    def prepare(self) -> None:
        if not os.path.exists(SERVE_CMD):
            raise BenchError(f"{SERVE_CMD} not found: run `make bootstrap` first")
        if os.geteuid() != 0:
            raise BenchError("needs root (network namespaces, bridge, iptables): run it with sudo")
        self.clean_stale()
        self.owns_host = True
        self.server.write_conflist(self.net)
        self.server.start()

    def run_all(self) -> None:
        self.prepare()
        spy = self.start_spy() if self.args.py_spy else None
        try:
            for part in self.args.parts:
                if part == "scale" and spy is not None:  # the scale part restarts the server
                    spy = self.stop_spy(spy)
                getattr(self, f"part_{part}")()
        finally:
            if spy is not None:
                self.stop_spy(spy)

    def start_spy(self) -> subprocess.Popen[bytes]:
        """py-spy on the server while the parts run: where cri-net's own time goes, from the
        samples rather than guesses (wall clock, so fsync and lock waits show too)."""
        exe = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
        if not os.path.exists(exe):
            raise BenchError("--py-spy needs py-spy (pip install py-spy into the venv)")
        return subprocess.Popen([exe, "record", "-p", str(self.server.pid), "-r", "200", "--format", "raw",
                                 "-o", self.args.py_spy, "--nonblocking", "--idle"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop_spy(self, spy: subprocess.Popen[bytes]) -> None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
        self.report.details["py_spy_top_self"] = spy_top(self.args.py_spy)
        return None

    def clean_stale(self) -> None:
        """What a killed earlier run left: its temp dir (mounted netns, server), raw netns, bridge."""
        tmp = os.path.dirname(self.root)
        for name in _listdir(tmp):
            old = os.path.join(tmp, name)
            if not name.startswith("crinet-bench-") or old == self.root:
                continue
            pid = _read_int(os.path.join(old, "bench.pid"))
            if pid is not None and _pid_alive(pid):
                raise BenchError(f"another bench_serve run (pid {pid}) is active: it uses {BRIDGE} too")
            if pid is None and time.time() - os.stat(old).st_mtime < 60:
                raise BenchError(f"{old} may belong to a bench_serve run that is starting: try again in a minute")
            log(f"removing leftovers of an earlier run in {old}")
            for srv in _listdir("/proc"):
                if srv.isdigit() and old in _cmdline(int(srv)):
                    try:
                        os.kill(int(srv), signal.SIGKILL)  # its own server, by pid
                    except ProcessLookupError:
                        pass
            for ns in _listdir(os.path.join(old, "netns")):
                _libc.umount2(os.path.join(old, "netns", ns).encode(), MNT_DETACH)
            shutil.rmtree(old, ignore_errors=True)
        for name in _listdir("/run/netns"):
            m = re.fullmatch(rf"{RAW_NS_PREFIX}(\d+)-\d+", name)
            if m and not _pid_alive(int(m.group(1))):
                run("ip", "netns", "del", name, check=False)
        if run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
            log(f"removing a leftover {BRIDGE} from an earlier run")
            run("ip", "link", "del", BRIDGE, check=False)
        self._clean_iptables()

    def cleanup(self) -> None:
        """Remove everything this run created; idempotent; records leftovers."""
        if self.cleaned:
            return
        self.cleaned = True
        self.stop_event.set()
        for t in list(self.threads):
            t.join(timeout=30)
        # 1. pods through cri-net (proper DEL: leases, portmap rules, veths)
        if self.server.alive():
            try:
                self._remove_all_pods()
            except (grpc.RpcError, OSError) as exc:
                log(f"cleanup: removing pods through cri-net failed ({exc}); falling back to raw cleanup")
        try:
            self.server.stop()
        except OSError:
            pass
        if not self.owns_host:  # refused to start next to another run: its bridge and rules are not ours
            shutil.rmtree(self.root, ignore_errors=True)
            return
        # 2. whatever is left, raw
        for name in list(self.raw.live) + [n for n in _listdir("/run/netns")
                                           if n.startswith(f"{RAW_NS_PREFIX}{os.getpid()}-")]:
            run("ip", "netns", "del", name, check=False)
        ns_dir = self.server.dirs["netns"]
        for name in _listdir(ns_dir):
            path = os.path.join(ns_dir, name)
            _libc.umount2(path.encode(), MNT_DETACH)
            try:
                os.unlink(path)
            except OSError:
                pass
        self._clean_iptables()
        if run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
            run("ip", "link", "del", BRIDGE, check=False)
        # 3. check
        self.leftovers = self._leftovers()
        if not self.leftovers:
            shutil.rmtree(self.root, ignore_errors=True)
        elif not self.args.keep_on_leftover:
            shutil.rmtree(self.root, ignore_errors=True)

    def _remove_all_pods(self) -> None:
        """Remove every pod through cri-net, until two listings a moment apart are empty (a pod
        whose RunPodSandbox was still running is listed only once it is READY)."""
        from concurrent.futures import ThreadPoolExecutor

        empty = 0
        with CRIClient(self.server.sock, timeout=60) as c, ThreadPoolExecutor(8) as pool:
            for _ in range(10):
                pods = c.pods()
                if not pods:
                    empty += 1
                    if empty == 2:
                        return
                    time.sleep(1.0)
                    continue
                empty = 0
                log(f"cleanup: removing {len(pods)} pod(s) through cri-net")
                list(pool.map(lambda p: c.rmp(p.id), pods))
        log("cleanup: pods kept appearing; the raw cleanup takes over")

    def _clean_iptables(self) -> None:
        """Drop portmap rules/chains of our network (by their comment), and top-level chains that
        portmap created during this run if nothing else uses them."""
        for table in ("nat", "filter"):
            dump = run("iptables-save", "-t", table, check=False).stdout
            ours = [line for line in dump.splitlines() if line.startswith("-A ") and f'"{NETWORK}"' in line]
            chains = set()
            for line in ours:
                parts = line.split()
                if "-j" in parts and parts[parts.index("-j") + 1].startswith("CNI-DN-"):
                    chains.add(parts[parts.index("-j") + 1])
                run("iptables", "-t", table, "-D", parts[1], *_rule_args(line), check=False)
            for chain in chains:
                run("iptables", "-t", table, "-F", chain, check=False)
                run("iptables", "-t", table, "-X", chain, check=False)

    def _leftovers(self) -> list[str]:
        out = []
        if run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
            out.append(f"bridge {BRIDGE}")
        out += [f"netns /run/netns/{n}" for n in _listdir("/run/netns") if n.startswith(f"{RAW_NS_PREFIX}{os.getpid()}-")]
        out += [f"netns {self.server.dirs['netns']}/{n}" for n in _listdir(self.server.dirs["netns"])]
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            out += [f"mount {line.split()[4]}" for line in fh if self.root in line.split()[4]]
        for table in ("nat", "filter"):
            dump = run("iptables-save", "-t", table, check=False).stdout
            out += [f"iptables -t {table} {line}" for line in dump.splitlines() if f'"{NETWORK}"' in line]
        leases = os.path.join(self.server.dirs["ipam"], NETWORK)
        out += [f"lease {leases}/{n}" for n in _listdir(leases) if re.fullmatch(r"[0-9.]+", n)]
        return out


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _rule_args(line: str) -> list[str]:
    """The match/target part of an iptables-save `-A CHAIN ...` line, shell-split."""
    import shlex

    return shlex.split(line)[2:]


# ---------------------------------------------------------------------------------------------


def spy_top(path: str, count: int = 15) -> list[dict[str, Any]]:
    """The frames most often on top of the server's stacks in a py-spy raw file."""
    own: dict[str, int] = {}
    total = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                stack, _, n = line.rstrip("\n").rpartition(" ")
                if not n.isdigit():
                    continue
                total += int(n)
                top = stack.rsplit(";", 1)[-1]
                own[top] = own.get(top, 0) + int(n)
    except OSError:
        return []
    return [{"frame": f, "share": round(n / total, 3)} for f, n in sorted(own.items(), key=lambda x: -x[1])[:count]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small numbers everywhere (CI smoke, < 60 s)")
    p.add_argument("--json", action="store_true", help="also print one machine-readable JSON line on stdout")
    p.add_argument("--cycles", type=int, help="pod cycles per side for (1) (default 60; quick 5)")
    p.add_argument("--batch", type=int, default=5, help="cycles per interleaved batch (default 5)")
    p.add_argument("--warmup", type=int, help="warm-up cycles per side (default 3; quick 1)")
    p.add_argument("--status-calls", type=int, help="PodSandboxStatus calls for (2) (default 2000; quick 200)")
    p.add_argument("--throughput-cycles", type=int,
                   help="cycles per concurrency level for (3) (default 40, at least 3x the concurrency; quick 4, at least 1x)")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16],
                   help="concurrency levels for (3), comma separated (default 1,4,16)")
    p.add_argument("--pods", type=lambda v: [int(x) for x in v.split(",") if x],
                   help="scale points for (4), comma separated (default 1000,10000; quick 50); a point "
                        "above 1,024 pods uses ptp pods (a bridge takes 1,024 ports)")
    p.add_argument("--scale-concurrency", type=int, default=8, help="threads creating/removing pods in (4) (default 8)")
    p.add_argument("--scale-network", choices=["bridge", "ptp"], default="bridge",
                   help="main plugin of the conflist for (4) (default bridge: real bridge pods)")
    p.add_argument("--host-ports", action="store_true",
                   help="give every pod one hostPort mapping (portmap then adds DNAT rules; default: none)")
    p.add_argument("--parts", default="cycle,status,throughput,scale",
                   help="which parts to run, comma separated (default cycle,status,throughput,scale)")
    p.add_argument("--fail-on-miss", action="store_true", help="exit 2 when a target is missed")
    p.add_argument("--py-spy", metavar="FILE",
                   help="sample the server with py-spy during the parts before (4) (raw format to FILE); "
                        "the top frames are printed and added to the JSON")
    p.add_argument("--keep-on-leftover", action="store_true", help="keep the temp dir when cleanup left something")
    a = p.parse_args(argv)
    q = a.quick
    a.cycles = a.cycles or (5 if q else 60)
    a.warmup = a.warmup if a.warmup is not None else (1 if q else 3)
    a.status_calls = a.status_calls or (200 if q else 2000)
    a.throughput_cycles = a.throughput_cycles or (4 if q else 40)
    a.pods = a.pods or ([50] if q else [1000, 10000])
    a.parts = [x for x in a.parts.split(",") if x]
    bad = set(a.parts) - {"cycle", "status", "throughput", "scale"}
    if bad:
        p.error(f"unknown part(s): {', '.join(sorted(bad))}")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = now()
    load_start = os.getloadavg()
    if load_start[0] > 0.5 * (os.cpu_count() or 1):
        log(f"warning: load average {load_start[0]:.2f} on {os.cpu_count()} CPUs: the figures will be noisy")
    bench = Bench(args)
    atexit.register(bench.cleanup)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    status = 0
    failure = ""
    try:
        bench.run_all()
    except KeyboardInterrupt:
        failure = "interrupted"
        status = 130
    except (BenchError, grpc.RpcError, Interrupted, OSError) as exc:
        failure = str(exc) if not isinstance(exc, grpc.RpcError) else f"RPC failed: {exc.code()} {exc.details()}"
        status = 1
        if bench.server.log_path:
            log(f"server log tail:\n{bench.server.tail()}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # cleanup must not be cut short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log("cleaning up")
        bench.cleanup()
    elapsed = now() - t_start
    rep = bench.report
    load_end = os.getloadavg()
    rev = run("git", "-C", str(REPO), "describe", "--always", "--dirty", check=False).stdout.strip() or "unknown"
    print(f"cri-net serve benchmark ({'quick' if args.quick else 'full'}; {os.cpu_count()} CPUs, "
          f"kernel {platform.release()}, plugins {bench.bin_dir}, {elapsed:.0f} s, "
          f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end, cri-net {rev})")
    print(f"network {NETWORK}: bridge {BRIDGE} + host-local {SUBNET} + portmap; loopback by cri-net"
          f"{'; one hostPort per pod' if args.host_ports else '; no hostPort mappings'}; "
          f"part (4) with {args.scale_network} pods (ptp above 1,024 pods)")
    if rep.figures:
        print(rep.table())
    if "cycle_steps_ms" in rep.details:
        s = rep.details["cycle_steps_ms"]
        print("median steps (ms): cri-net " + ", ".join(f"{k} {v}" for k, v in s["cri"].items())
              + " | raw " + ", ".join(f"{k} {v}" for k, v in s["raw"].items()))
    for entry in rep.details.get("py_spy_top_self", []):
        print(f"py-spy self {entry['share'] * 100:5.1f}%  {entry['frame']}")
    if failure:
        print(f"FAILED: {failure}")
    if bench.leftovers:
        print("LEFTOVERS after cleanup:\n  " + "\n  ".join(bench.leftovers))
    else:
        print("cleanup: nothing left behind (pods, netns, bridge, iptables rules, leases, temp dir)")
    missed = [f.key for f in rep.figures if f.ok is False]
    if args.json:
        doc = {"benchmark": "bench_serve", "mode": "quick" if args.quick else "full", "ok": not failure,
               "failure": failure or None, "missed": missed, "leftovers": bench.leftovers,
               "elapsed_s": round(elapsed, 1), "cpus": os.cpu_count(), "kernel": platform.release(),
               "loadavg_start": round(load_start[0], 2), "loadavg_end": round(load_end[0], 2), "revision": rev,
               "params": {k: getattr(args, k) for k in ("cycles", "batch", "warmup", "status_calls",
                                                        "throughput_cycles", "concurrency", "pods",
                                                        "scale_concurrency", "scale_network", "host_ports")},
               **rep.as_json()}
        print(json.dumps(doc, separators=(",", ":")))
    if status:
        return status
    if bench.leftovers:
        return 3
    if missed and args.fail_on_miss:
        return 2
    return 0


if __name__ == "__main__":
    from integration import hostlock  # held for the whole run, as an integration session holds it

    with hostlock.hold(lambda line: print(line, file=sys.stderr, flush=True)):
        sys.exit(main())
