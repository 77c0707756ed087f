#!/usr/bin/env python3
"""Benchmark: a containerd pod cycle with plain CNI plugins vs. with cri-net-cni in between.

Run as root from the repository:

    sudo .venv/bin/python benchmarks/bench_containerd.py [--cycles N] [--quick] [--json]

One run starts two isolated containerd 1.6 + crun instances (integration/containerd/harness.py:
own root, state, socket, CNI dirs; locally built pause image), both up at once:

* A: the runtime conflist is bridge (`crinetbc0`, 10.233.0.0/24, host-local leases in the
  temp dir) + portmap (capability portMappings). containerd runs the plugins itself.
* B: the runtime conflist is one `cri-net` plugin whose confDir holds the same list: bridge
  (`crinetbc1`, 10.233.1.0/24) + host-local + portmap. `--mode handoff` (the default, the
  recommended set-up): the plugin is the launcher that `cri-net cni-plugin install` writes
  (`--launcher native`: the compiled shim, the default; `--launcher python`: the `python -S`
  script), and a `cri-net serve` runs beside containerd, so each call is handed to it over
  its CNI socket. `--mode inprocess`: no server (`daemonSocket: ""`), a `#!/bin/sh exec
  .venv/bin/cri-net-cni` launcher; every call imports cri-net and works in the plugin.

containerd attaches loopback itself in both. A pod cycle is RunPodSandbox + StopPodSandbox +
RemovePodSandbox for a pod with one port mapping (A: host port 28180, B: 28181, container
port 80; rules only, no traffic is sent anywhere). The cycles run in interleaved batches (A B
B A ...), after warm-up cycles. The first warm-up of B records the exact stdin and CNI_*
variables containerd hands to the plugin; the direct measurements below replay them.

In handoff mode the run ends with the start-up figures below. In inprocess mode, with both
containerds stopped:

1. start-up: VERSION wall time (median of 30) of the launcher, of cri-net-cni itself, of a Go
   plugin (bridge), and bare interpreter starts; `python -X importtime -c "import
   cri_net.plugin.handler"` and the same for everything an ADD imports.
2. cri-net-cni ADD / DEL invoked directly (the replayed stdin, a real netns, the real inner
   bridge + host-local + portmap), and the same call in an instrumented child that splits the
   wall time into interpreter start, imports, cri-net's own Python work, and the inner
   plugins' own exec time (measured around each plugin run, in that same call).
3. a server-like warm process (imports done): handle() per call (adaptor built per call, as
   the plugin does) and with one adaptor reused (as a `cri-net serve` would).
4. cProfile of one cold ADD (imports included) and one warm ADD (imports done first).
5. the import cost of each fix candidate (wall time minus a bare start, median of N), and
   what pydantic model construction costs at import.

Everything created (containerds and their pods, shims, mounts, netns; bridges crinetbc0/1;
portmap's iptables rules; leases; containerd's libcni cache entries; the temp dir) is removed
in a finally/atexit, also on Ctrl-C or SIGTERM; leftovers are reported (exit 3). After a
SIGKILL, run with --cleanup-only.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import json
import math
import os
import pstats
import random
import re
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cri_net.cri.client import CRIClient  # noqa: E402
from cri_net.cri.pb.runtime.v1 import api_pb2 as pb  # noqa: E402
from integration.containerd.harness import NETNS_DIR, ContainerdEnv, HarnessError, containerd_env, mounts_under  # noqa: E402

CNI_DIR = "/usr/lib/cni"
VENV_BIN = REPO / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python")
CRI_NET_CNI = VENV_BIN / "cri-net-cni"
HOST_CACHE = Path("/var/lib/cni")  # containerd 1.6's libcni cache (not configurable)
PREFIX = "crinetbc"
TMP_GLOB = f"{PREFIX}-*"
NETNS_PREFIX = f"{PREFIX}-"  # direct-invocation netns: crinetbc-<pid>-<n>
TARGET = 1.10
HOSTPORT_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ")


class Side:
    def __init__(self, key: str, bridge: str, subnet: str, net_name: str, host_port: int) -> None:
        self.key, self.bridge, self.subnet, self.net_name, self.host_port = key, bridge, subnet, net_name, host_port


SIDE_A = Side("A", f"{PREFIX}0", "10.233.0.0/24", f"{PREFIX}-a", 28180)
SIDE_B = Side("B", f"{PREFIX}1", "10.233.1.0/24", f"{PREFIX}-b", 28181)
RUNTIME_NET_B = f"{PREFIX}-rt"  # the runtime-side conflist of B (one cri-net plugin)
ALL_NETS = (SIDE_A.net_name, SIDE_B.net_name, RUNTIME_NET_B)


class BenchError(RuntimeError):
    pass


class Interrupted(BaseException):
    pass


# ------------------------------------------------------------------------------ helpers


def now() -> float:
    return time.perf_counter()


def log(msg: str) -> None:
    # one write(2), not print: this runs in signal handlers too, where a print that lands inside
    # another print's buffered write raises "reentrant call"
    os.write(2, f"[bench_containerd {time.strftime('%H:%M:%S')}] {msg}\n".encode(errors="replace"))


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))]


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(x: float) -> str:
    return "n/a" if x != x else f"{x * 1000:.1f}"


def bootstrap_ratio(a: list[float], b: list[float], n: int = 2000, seed: int = 7) -> tuple[float, float]:
    """90% bootstrap interval of median(b)/median(a)."""
    rng = random.Random(seed)
    ratios = sorted(med(rng.choices(b, k=len(b))) / med(rng.choices(a, k=len(a))) for _ in range(n))
    return ratios[int(0.05 * n)], ratios[int(0.95 * n) - 1]


def sh(*cmd: str, check: bool = True, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def timed_run(argv: list[str], stdin: bytes = b"", env: dict[str, str] | None = None,
              check: bool = True) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    t0 = now()
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=120, cwd="/")
    dt = now() - t0
    if check and proc.returncode != 0:
        raise BenchError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stdout[-800:]!r} {proc.stderr[-800:]!r}")
    return dt, proc


def sandbox_like_id(tag: str) -> str:
    return hashlib.sha256(f"{PREFIX}/{os.getpid()}/{tag}".encode()).hexdigest()


def conflist(side: Side, ipam_dir: Path) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": side.net_name, "plugins": [
        {"type": "bridge", "bridge": side.bridge, "isGateway": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": side.subnet}]], "dataDir": str(ipam_dir)}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}


def pod_config(side: Side, name: str) -> pb.PodSandboxConfig:
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, namespace="default", uid=secrets.token_hex(8), attempt=0),
        labels={"crinet-bench": name}, linux=pb.LinuxPodSandboxConfig(),
        port_mappings=[pb.PortMapping(protocol=pb.TCP, container_port=80, host_port=side.host_port)])


def _listdir(path: Path | str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _nat_chains(binary: str) -> set[str]:
    proc = sh(f"{binary}-save", "-t", "nat", check=False)
    return {ln[1:].split()[0] for ln in proc.stdout.splitlines() if ln.startswith(":")}


def purge_portmap_rules(binary: str, networks: tuple[str, ...], own_chains: set[str]) -> list[str]:
    """Delete portmap's rules for `networks` (tagged `dnat name: "<net>"`) and the CNI-DN-*
    chains they jump to; then the shared CNI-HOSTPORT-* chains in `own_chains` (created by
    this run) if no rule of anyone else uses them any more."""
    proc = sh(f"{binary}-save", "-t", "nat", check=False)
    if proc.returncode:
        return []
    lines = proc.stdout.splitlines()
    tags = [f'dnat name: \\"{n}\\"' for n in networks]
    ours = [ln for ln in lines if ln.startswith("-A ") and any(t in ln for t in tags)]
    chains = {m.group(1) for ln in ours for m in [re.search(r"-j (CNI-DN-\S+)", ln)] if m}
    problems = []
    for ln in ours:
        if sh(binary, "-w", "-t", "nat", "-D", *shlex.split(ln)[1:], check=False).returncode:
            problems.append(f"{binary}: could not delete rule {ln}")
    for chain in chains:
        sh(binary, "-w", "-t", "nat", "-F", chain, check=False)
        if sh(binary, "-w", "-t", "nat", "-X", chain, check=False).returncode:
            problems.append(f"{binary}: could not delete chain {chain}")
    if own_chains:
        lines = sh(f"{binary}-save", "-t", "nat", check=False).stdout.splitlines()
        if not any(ln.startswith("-A CNI-HOSTPORT-DNAT ") for ln in lines):  # nobody else uses them
            for ln in lines:
                if ln.startswith("-A ") and ln.split()[1] not in own_chains and any(
                        f"-j {c}" in ln for c in own_chains):
                    sh(binary, "-w", "-t", "nat", "-D", *shlex.split(ln)[1:], check=False)
            for chain in own_chains:
                sh(binary, "-w", "-t", "nat", "-F", chain, check=False)
            for chain in own_chains:
                sh(binary, "-w", "-t", "nat", "-X", chain, check=False)
    return problems


# --------------------------------------------------------------------- child programs

#: The standard-library modules cri-net's ADD path imports (what a pydantic/tenacity-free
#: plugin path would still pay for).
STDLIB_SET = ("import argparse, base64, ctypes, dataclasses, decimal, enum, errno, fractions, functools, ipaddress, json, logging, "
              "importlib, os, re, select, signal, subprocess, tempfile, threading, time, tomllib, typing")

#: An instrumented cri-net-cni call: splits its wall time. argv: fd for the report.
CHILD_TIMED = r"""
import time
t_py, w_py = time.monotonic(), time.time()
import json, os, sys
import cri_net.plugin.handler as plugin
t_plugin = time.monotonic()
import adaptors.cri, cri_net.config, cri_net.network, cri_net.libcni, cri_net.operator  # what ADD/DEL import lazily
t_imports = time.monotonic()
from cri_net.libcni import invoke
_run = invoke.Executor.run
execs = []
def run(self, path, stdin, args):
    t = time.monotonic()
    try:
        return _run(self, path, stdin, args)
    finally:
        execs.append([os.path.basename(path), args.command, time.monotonic() - t])
invoke.Executor.run = run
rc = plugin.main()
sys.stdout.flush()
t_end, w_end = time.monotonic(), time.time()
os.write(int(sys.argv[1]), (json.dumps({"t_py": t_py, "t_plugin": t_plugin, "t_imports": t_imports, "t_end": t_end,
                                        "w_py": w_py, "w_end": w_end, "rc": rc, "execs": execs,
                                        "command": os.environ.get("CNI_COMMAND", ""),
                                        "netns": bool(os.environ.get("CNI_NETNS"))}) + "\n").encode())
"""

#: cProfile of one call. argv: stats path, "cold" (imports profiled) or "warm".
CHILD_PROFILE = r"""
import cProfile, io, sys
data = sys.stdin.buffer.read()
sys.stdin = io.TextIOWrapper(io.BytesIO(data))
if sys.argv[2] == "warm":
    import cri_net.plugin.handler, adaptors.cri, cri_net.config, cri_net.network, cri_net.libcni, cri_net.operator
prof = cProfile.Profile()
prof.enable()
import cri_net.plugin.handler as plugin
rc = plugin.main()
prof.disable()
prof.dump_stats(sys.argv[1])
sys.exit(rc)
"""

#: A server-like process: imports done once, then ADD/DEL pairs. argv: fd, job JSON path.
CHILD_WARM = r"""
import json, os, sys, time
import cri_net.plugin.handler as plugin
import adaptors.cri, cri_net.config, cri_net.network, cri_net.libcni, cri_net.operator
from cri_net.libcni import invoke
_run = invoke.Executor.run
execs = []
def run(self, path, stdin, args):
    t = time.perf_counter()
    try:
        return _run(self, path, stdin, args)
    finally:
        execs.append(time.perf_counter() - t)
invoke.Executor.run = run
job = json.load(open(sys.argv[2]))
out = {"handle": [], "reuse": [], "adaptor_init": []}
adaptor = None
for i, item in enumerate(job["items"]):
    mode = "handle" if i % 2 == 0 else "reuse"
    env = dict(item["env"])
    env["CNI_COMMAND"] = "ADD"
    inv = plugin.Invocation(env, item["stdin"].encode())
    if mode == "reuse" and adaptor is None:
        t = time.perf_counter(); adaptor = plugin._adaptor(inv); out["adaptor_init"].append(time.perf_counter() - t)
    del execs[:]
    t = time.perf_counter()
    if mode == "handle":
        result = plugin.handle(inv)
    else:
        result = plugin.combined_result(inv, adaptor.attach(inv.request()), adaptor)
    t_add, e_add = time.perf_counter() - t, sum(execs)
    conf = json.loads(item["stdin"])
    conf["prevResult"] = result
    env["CNI_COMMAND"] = "DEL"
    inv = plugin.Invocation(env, json.dumps(conf).encode())
    del execs[:]
    t = time.perf_counter()
    if mode == "handle":
        plugin.handle(inv)
    else:
        adaptor.detach(inv.request())
    t_del, e_del = time.perf_counter() - t, sum(execs)
    out[mode].append([t_add, e_add, t_del, e_del])
os.write(int(sys.argv[1]), json.dumps(out).encode())
"""

#: Everything ADD/DEL imports, in one process, piece by piece (so the pieces add up):
#: cri_net.plugin.handler, the stdlib the path needs, tenacity, pydantic, then cri-net's modules
#: (of which: time inside pydantic model class creation, entry-point scan included).
CHILD_IMPORT_SPLIT = r"""
import time
clock = time.perf_counter
marks = {}
t0 = clock(); import cri_net.plugin.handler; marks["cni_plugin"] = clock() - t0
t0 = clock(); @STDLIB@; marks["stdlib"] = clock() - t0
t0 = clock(); import tenacity; marks["tenacity"] = clock() - t0
t0 = clock(); from pydantic import BaseModel; from pydantic._internal import _model_construction as mc; marks["pydantic"] = clock() - t0
orig = mc.ModelMetaclass.__new__
spent, depth, count = [0.0], [0], [0]
def new(mcs, *a, **kw):
    depth[0] += 1
    t = clock()
    try:
        return orig(mcs, *a, **kw)
    finally:
        depth[0] -= 1
        if depth[0] == 0:
            spent[0] += clock() - t
            count[0] += 1
mc.ModelMetaclass.__new__ = new
t0 = clock(); import adaptors.cri, cri_net.config, cri_net.network, cri_net.libcni, cri_net.operator
marks["crinet_modules"] = clock() - t0
marks["model_build"] = spent[0]
marks["models"] = count[0]
import json
print(json.dumps(marks))
"""


# -------------------------------------------------------------------------- the bench


def start_serve(d: Path) -> subprocess.Popen[bytes]:
    """A `cri-net serve` in `d` (own conf, state, netns and cache dirs, empty conf dir, log in
    serve.log), once its CNI socket `d/cni.sock` exists: the server a cri-net plugin hands
    its calls to."""
    for sub in ("net.d", "state", "netns", "cache"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "none.json").write_text("{}")
    with open(d / "serve.log", "wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "cri-net"), "serve", "--config", str(d / "none.json"), "--listen", f"unix://{d}/cri.sock",
             "--conf-dir", str(d / "net.d"), "--state-dir", str(d / "state"), "--netns-dir", str(d / "netns"),
             "--cache-dir", str(d / "cache"), "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while not (d / "cni.sock").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise BenchError(f"cri-net serve did not start: {(d / 'serve.log').read_text()[-800:]}")
        time.sleep(0.05)
    return proc


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


Cycle = tuple[float, float, float]  # RunPodSandbox, StopPodSandbox, RemovePodSandbox seconds


def interleaved_cycles(cycle: Callable[[str, int], Cycle], n: int, batch: int) -> dict[str, list[Cycle]]:
    """`n` cycles of side A and of side B, `cycle(side, i)`, in batches of `batch` ordered
    A B B A A B ..., so drift on a small machine weighs on both sides alike."""
    times: dict[str, list[Cycle]] = {"A": [], "B": []}
    order: list[str] = []
    k = 0
    while len(order) < 2 * math.ceil(n / batch):
        order += [("A", "B"), ("B", "A")][k % 2]
        k += 1
    for key in order:
        for _ in range(min(batch, n - len(times[key]))):
            times[key].append(cycle(key, len(times[key])))
        log(f"cycles: A {len(times['A'])}/{n}, B {len(times['B'])}/{n}")
    return times


def side_stats(times: list[Cycle]) -> dict[str, Any]:
    """Median, p90, min and n of one side's whole cycles, each RPC's median, every cycle."""
    tot = [sum(t) for t in times]
    return {"median": med(tot), "p90": pct(tot, 90), "min": min(tot), "n": len(tot),
            "run_median": med([t[0] for t in times]), "stop_median": med([t[1] for t in times]),
            "remove_median": med([t[2] for t in times]), "all": tot}


def pod_cycle(bench: Any, client: CRIClient, cfg: pb.PodSandboxConfig,
              when_ready: Callable[[str], None] | None = None) -> Cycle:
    """RunPodSandbox, StopPodSandbox, RemovePodSandbox of one pod, each timed (`when_ready(id)`
    runs untimed in between). A signal meanwhile waits for the cycle's end (no half-made pod):
    then Interrupted. The pod's id goes to `bench.sandbox_ids` for the cleanup."""
    bench.in_cycle = True
    try:
        t0 = now()
        sid = client.runp(cfg)
        t1 = now()
        bench.sandbox_ids.add(sid)
        if when_ready is not None:
            when_ready(sid)
        t2 = now()
        client.stopp(sid)
        t3 = now()
        client.rmp(sid)
        t4 = now()
    finally:
        bench.in_cycle = False
    if bench.pending_signal:
        raise Interrupted(bench.pending_signal)
    return t1 - t0, t3 - t2, t4 - t3


def stop_containerds(bench: Any) -> None:
    """Once: close `bench.clients`, stop the containerds (`bench.stack`) and the `bench.serve`
    beside them; what a harness could not remove goes to `bench.leftovers`, the pods it knew
    to `bench.sandbox_ids`."""
    if bench.stopped:
        return
    bench.stopped = True
    for c in bench.clients.values():
        with contextlib.suppress(Exception):
            c.close()
    bench.clients.clear()
    bench.stack.close()
    stop_process(bench.serve)
    bench.serve = None
    for key, env in bench.envs.items():
        bench.leftovers += [f"containerd {key}: {f}" for f in env.cleanup_failures]
        for f in env.leftovers:
            log(f"containerd {key} teardown: {f}")
        bench.sandbox_ids |= env.sandbox_ids()


def stop_between_cycles(bench: Any) -> None:
    """SIGTERM and SIGINT end the run after the pod cycle in flight (`bench.in_cycle`), so
    no pod is left half-made; a second signal, or one outside a cycle, raises Interrupted."""

    def on_signal(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if bench.in_cycle and bench.pending_signal is None:
            bench.pending_signal = name
            log(f"{name}: stopping after the current pod cycle (send it again to stop at once)")
            return
        raise Interrupted(name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
        os.chmod(self.tmp, 0o755)
        self.stack = contextlib.ExitStack()
        self.envs: dict[str, ContainerdEnv] = {}
        self.clients: dict[str, CRIClient] = {}
        self.sandbox_ids: set[str] = set()
        self.netns: list[str] = []
        self.netns_seq = 0
        self.chains_before = {b: _nat_chains(b) & set(HOSTPORT_CHAINS) for b in ("iptables", "ip6tables")}
        self.bridges_before = {s.bridge for s in (SIDE_A, SIDE_B) if Path(f"/sys/class/net/{s.bridge}").exists()}
        self.results: dict[str, Any] = {}
        # The caller's environment (this project's shells export PYTHONDONTWRITEBYTECODE=1, and
        # the source tree then has no __pycache__: every cri-net-cni call compiles cri-net's
        # sources). A node's containerd (systemd) has no such variable and root writes the
        # bytecode cache on the first call, so by default every Python process here, containerd
        # and its plugins included, gets a bytecode cache in the temp dir (nothing is written
        # to the repository). --no-bytecode-cache keeps the caller's environment.
        self.caller_env = dict(os.environ)
        self.pycache = self.tmp / "pycache"
        if not args.no_bytecode_cache:
            os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
            os.environ["PYTHONPYCACHEPREFIX"] = str(self.pycache)
            sh(PYTHON, "-c", "import cri_net.plugin.handler, adaptors.cri, cri_net.config, cri_net.network", cwd="/")
        self.results["bytecode"] = {
            "cache": "none (caller's env)" if args.no_bytecode_cache else f"PYTHONPYCACHEPREFIX={self.pycache}",
            "caller_PYTHONDONTWRITEBYTECODE": self.caller_env.get("PYTHONDONTWRITEBYTECODE"),
            "repo_has_pycache": (REPO / "cri_net" / "libcni" / "__pycache__").is_dir()}
        self.cleaned = False
        self.stopped = False
        self.in_cycle = False
        self.pending_signal: str | None = None
        self.netns_before = set(_listdir(NETNS_DIR))
        self.leftovers: list[str] = []
        # B's files
        self.ipam = {"A": self.tmp / "ipam-a", "B": self.tmp / "ipam-b"}
        self.conf_dir = self.tmp / "crinet-net.d"
        self.cache_dir = self.tmp / "crinet-cache"
        self.launcher_dir = self.tmp / "launcher"
        self.capture_dir = self.tmp / "capture"
        for d in (*self.ipam.values(), self.conf_dir, self.cache_dir, self.launcher_dir, self.capture_dir):
            d.mkdir(parents=True)
        (self.conf_dir / "10-bench.conflist").write_text(json.dumps(conflist(SIDE_B, self.ipam["B"])))
        self.handoff = args.mode == "handoff"
        self.serve_dir = self.tmp / "serve"
        self.serve: subprocess.Popen[bytes] | None = None
        self.runtime_conf_b = {"cniVersion": "1.0.0", "name": RUNTIME_NET_B, "plugins": [
            {"type": "cri-net", "confDir": str(self.conf_dir), "cacheDir": str(self.cache_dir), "binDirs": [CNI_DIR],
             "daemonSocket": str(self.serve_dir / "cni.sock") if self.handoff else "",
             "capabilities": {"io.kubernetes.cri.pod-annotations": True, "portMappings": True}}]}
        self.results["mode"] = args.mode
        if self.handoff:
            from cri_net.plugin.launcher import install

            install(str(self.launcher_dir), ".cri-net-fast", python=PYTHON, native=args.launcher == "native")
            self.results["launcher"] = args.launcher
        self.set_launcher(capture=False)

    # ---- set-up -----------------------------------------------------------------------
    def set_launcher(self, capture: bool) -> None:
        """The `cri-net` launcher containerd B execs; `capture` also records stdin and CNI_*."""
        plugin = self.launcher_dir / ".cri-net-fast" if self.handoff else CRI_NET_CNI
        if capture:
            cap = shlex.quote(str(self.capture_dir))
            text = (f'#!/bin/sh\nf={cap}/$(date +%s%N).$CNI_COMMAND\nenv | grep "^CNI_" > "$f.env"\n'
                    f'cat > "$f.stdin"\nexec {plugin} "$@" < "$f.stdin"\n')
        elif self.handoff:
            shutil.copy(plugin, self.launcher_dir / ".cri-net.tmp")
            os.replace(self.launcher_dir / ".cri-net.tmp", self.launcher_dir / "cri-net")
            return
        else:
            text = f'#!/bin/sh\nexec {CRI_NET_CNI} "$@"\n'
        tmp = self.launcher_dir / ".cri-net.tmp"
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, self.launcher_dir / "cri-net")

    def start_serve(self) -> None:
        """The `cri-net serve` that B's plugin hands its calls to (own dirs, empty conf dir)."""
        self.serve = start_serve(self.serve_dir)

    def stop_serve(self) -> None:
        stop_process(self.serve)
        self.serve = None

    def start(self) -> None:
        if self.handoff:
            self.start_serve()
        log(f"temp dir {self.tmp}; starting containerd A (bridge+portmap) and B (cri-net-cni, {self.args.mode})")
        for side, conf, bins in (("A", conflist(SIDE_A, self.ipam["A"]), [CNI_DIR]),
                                 ("B", self.runtime_conf_b, [str(self.launcher_dir), CNI_DIR])):
            try:
                env = self.stack.enter_context(containerd_env(self.tmp / side.lower(), conf, bins))
            except HarnessError as exc:
                raise BenchError(f"cannot run containerd {side} on this host: {exc}") from None
            self.envs[side] = env
            self.clients[side] = env.client(timeout=120)

    # ---- the pod cycle ----------------------------------------------------------------
    def cycle(self, key: str, name: str) -> tuple[float, float, float]:
        return pod_cycle(self, self.clients[key], pod_config(SIDE_A if key == "A" else SIDE_B, name))

    def run_cycles(self) -> None:
        n, warm, batch = self.args.cycles, self.args.warmup, self.args.batch
        log(f"warm-up: {warm} cycle(s) per side (the first of B records containerd's plugin calls)")
        for i in range(warm):
            self.cycle("A", f"bc-a-w{i}")
            if i == 0:
                self.set_launcher(capture=True)
                try:
                    self.cycle("B", f"bc-b-w{i}")
                finally:
                    self.set_launcher(capture=False)
            else:
                self.cycle("B", f"bc-b-w{i}")
        times = interleaved_cycles(lambda key, i: self.cycle(key, f"bc-{key.lower()}-{i}"), n, batch)
        out: dict[str, Any] = {key: side_stats(times[key]) for key in ("A", "B")}
        ra = [sum(t) for t in times["A"]]
        rb = [sum(t) for t in times["B"]]
        out["ratio"] = out["B"]["median"] / out["A"]["median"]
        out["ratio_ci90"] = bootstrap_ratio(ra, rb)
        out["delta_median"] = out["B"]["median"] - out["A"]["median"]
        self.results["cycle"] = out
        self.results["captured"] = self.captured_calls()
        if self.args.probe:
            self.probe_cycles()

    # ---- probe cycles: what the plugins cost inside containerd's own cycle ---------------
    def probe_cycles(self) -> None:
        """A few more cycles per side, not part of the ratio, with timing wrappers: A's
        bridge and portmap behind `date; plugin; date` scripts, B's launcher running the
        instrumented cri-net-cni (split: start, imports, own work, inner plugins, exit)."""
        k = self.args.probe
        log(f"probe: {k} cycle(s) per side with timing wrappers")
        wall_a, wall_b, split_b = self.tmp / "probe-a.wall", self.tmp / "probe-b.wall", self.tmp / "probe-b.split"
        child = self.tmp / "probe_child.py"
        child.write_text(CHILD_TIMED)
        bin_a = self.envs["A"].cni_bin_dir
        originals = {}
        for name in ("bridge", "portmap"):
            link = bin_a / name
            originals[name] = os.readlink(link)
            tmp = bin_a / f".{name}.probe"
            tmp.write_text(f'#!/bin/sh\nt0=$(date +%s.%N)\n{originals[name]} "$@"\nrc=$?\nt1=$(date +%s.%N)\n'
                           f'echo "{name} $CNI_COMMAND $t0 $t1 $rc" >> {wall_a}\nexit $rc\n')
            tmp.chmod(0o755)
            os.replace(tmp, link)
        launcher = self.launcher_dir / "cri-net"
        tmp = self.launcher_dir / ".cri-net.probe"
        tmp.write_text(f'#!/bin/sh\nt0=$(date +%s.%N)\n{PYTHON} {child} 3 3>>{split_b}\nrc=$?\nt1=$(date +%s.%N)\n'
                       f'echo "cri-net $CNI_COMMAND $t0 $t1 $rc" >> {wall_b}\nexit $rc\n')
        tmp.chmod(0o755)
        cyc: dict[str, list[tuple[float, float, float]]] = {"A": [], "B": []}
        try:
            os.replace(tmp, launcher)
            for i in range(k + 1):  # the first of each is a warm-up
                for key in ("A", "B"):
                    t = self.cycle(key, f"bc-{key.lower()}-p{i}")
                    if i:
                        cyc[key].append(t)
                if i == 0:
                    for f in (wall_a, wall_b, split_b):
                        f.unlink(missing_ok=True)
        finally:
            for name, target in originals.items():
                tmp = bin_a / f".{name}.link"
                tmp.unlink(missing_ok=True)
                tmp.symlink_to(target)
                os.replace(tmp, bin_a / name)
            self.set_launcher(capture=False)

        def walls(path: Path) -> list[tuple[str, str, float]]:
            rows = [ln.split() for ln in path.read_text().splitlines()] if path.exists() else []
            return [(r[0], r[1], float(r[3]) - float(r[2])) for r in rows if len(r) == 5]

        out: dict[str, Any] = {"n": k}
        for key in ("A", "B"):
            out[key] = {"cycle": med([sum(t) for t in cyc[key]]), "run": med([t[0] for t in cyc[key]]),
                        "stop": med([t[1] for t in cyc[key]]), "remove": med([t[2] for t in cyc[key]])}
        wa = walls(wall_a)
        out["A"]["plugins_per_cycle"] = sum(w for *_, w in wa) / k
        out["A"]["calls_per_cycle"] = len(wa) / k
        by_call: dict[str, list[float]] = {}
        for name, cmd, w in wa:
            by_call.setdefault(f"{name} {cmd}", []).append(w)
        out["A"]["per_call"] = {c: med(v) for c, v in by_call.items()}
        wb = walls(wall_b)
        splits = [json.loads(ln) for ln in split_b.read_text().splitlines()] if split_b.exists() else []
        out["B"]["plugins_per_cycle"] = sum(w for *_, w in wb) / k
        out["B"]["calls_per_cycle"] = len(wb) / k
        rows: dict[str, list[dict[str, float]]] = {}
        if len(splits) == len(wb):
            t0s = [float(ln.split()[2]) for ln in wall_b.read_text().splitlines()]
            t1s = [float(ln.split()[3]) for ln in wall_b.read_text().splitlines()]
            for sp, (_, cmd, w), t0, t1 in zip(splits, wb, t0s, t1s):
                label = cmd if sp["netns"] else f"{cmd} (no netns)"
                ex = sum(e[2] for e in sp["execs"])
                rows.setdefault(label, []).append({
                    "wall": w, "start": sp["w_py"] - t0, "imports": sp["t_imports"] - sp["t_py"],
                    "crinet_python": sp["t_end"] - sp["t_imports"] - ex, "execs": ex, "exit": t1 - sp["w_end"]})
            out["B"]["inner_per_cycle"] = sum(r["execs"] for v in rows.values() for r in v) / k
        out["B"]["per_call"] = {label: {f: med([r[f] for r in v]) for f in v[0]} for label, v in rows.items()}
        self.results["probe"] = out

    def captured_calls(self) -> list[dict[str, Any]]:
        calls = []
        for f in sorted(self.capture_dir.glob("*.env")):
            stem = f.name[:-4]
            env = dict(line.split("=", 1) for line in f.read_text().splitlines() if "=" in line)
            stdin = (self.capture_dir / f"{stem}.stdin").read_bytes()
            calls.append({"command": env.get("CNI_COMMAND", ""), "env": env, "stdin": stdin.decode()})
        return calls

    # ---- direct invocations -----------------------------------------------------------
    def new_netns(self) -> str:
        self.netns_seq += 1
        name = f"{NETNS_PREFIX}{os.getpid()}-{self.netns_seq}"
        sh("ip", "netns", "add", name)
        path = str(NETNS_DIR / name)
        self.netns.append(path)
        return path

    def del_netns(self, path: str) -> None:
        sh("ip", "netns", "del", Path(path).name, check=False)
        if path in self.netns:
            self.netns.remove(path)

    def add_call(self) -> tuple[dict[str, str], bytes]:
        """The env (without CNI_COMMAND/NETNS/CONTAINERID) and stdin containerd sent B on ADD."""
        adds = [c for c in self.results.get("captured", []) if c["command"] == "ADD"]
        if adds:
            call = adds[0]
            sid = call["env"].get("CNI_CONTAINERID", "")
            env = {k: v for k, v in call["env"].items() if k not in ("CNI_COMMAND", "CNI_NETNS", "CNI_CONTAINERID")}
            env["CNI_PATH"] = CNI_DIR
            env["CNI_ARGS"] = env.get("CNI_ARGS", "").replace(sid, "@ID@")
            return env, call["stdin"].replace(sid, "@ID@").encode()
        log("no captured ADD from containerd; using a synthesized stdin")
        conf = dict(self.runtime_conf_b["plugins"][0])
        conf.update(cniVersion="1.0.0", name=RUNTIME_NET_B, runtimeConfig={
            "portMappings": [{"hostPort": SIDE_B.host_port, "containerPort": 80, "protocol": "tcp", "hostIP": ""}],
            "io.kubernetes.cri.pod-annotations": {}})
        return ({"CNI_IFNAME": "eth0", "CNI_PATH": CNI_DIR,
                 "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=bc-direct;"
                             "K8S_POD_INFRA_CONTAINER_ID=@ID@;K8S_POD_UID=0123"}, json.dumps(conf).encode())

    def call_env(self, base: dict[str, str], command: str, cid: str, netns: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({k: v.replace("@ID@", cid) for k, v in base.items()})
        env.update(CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_NETNS=netns)
        return env

    def direct(self) -> None:
        """cri-net-cni ADD/DEL run directly, plain and instrumented, interleaved."""
        base, stdin_t = self.add_call()
        n = self.args.direct
        plain: list[tuple[float, float]] = []
        split: list[dict[str, float]] = []
        for i in range(n + 1):  # the first of each kind is a warm-up
            for mode in ("plain", "timed"):
                cid = sandbox_like_id(f"direct-{mode}-{i}")
                netns = self.new_netns()
                stdin = stdin_t.replace(b"@ID@", cid.encode())
                try:
                    if mode == "plain":
                        t_add, proc = timed_run([str(CRI_NET_CNI)], stdin, self.call_env(base, "ADD", cid, netns))
                        del_stdin = self.del_stdin(stdin, proc.stdout)
                        t_del, _ = timed_run([str(CRI_NET_CNI)], del_stdin, self.call_env(base, "DEL", cid, netns))
                        if i:
                            plain.append((t_add, t_del))
                    else:
                        add = self.timed_child(stdin, self.call_env(base, "ADD", cid, netns))
                        dl = self.timed_child(self.del_stdin(stdin, add.pop("stdout")),
                                              self.call_env(base, "DEL", cid, netns))
                        dl.pop("stdout")
                        if i:
                            split.append({**{f"add_{k}": v for k, v in add.items()}, **{f"del_{k}": v for k, v in dl.items()}})
                finally:
                    self.del_netns(netns)
        out: dict[str, Any] = {"n": len(plain), "add_median": med([a for a, _ in plain]),
                               "del_median": med([d for _, d in plain]),
                               "cycle_median": med([a + d for a, d in plain])}
        for key in split[0] if split else []:
            if key.endswith("execs"):
                continue
            out[f"timed_{key}"] = med([s[key] for s in split])
        if split:
            out["exec_list_add"] = split[0]["add_execs"]
            out["exec_list_del"] = split[0]["del_execs"]
        self.results["direct"] = out

    def del_stdin(self, add_stdin: bytes, add_stdout: bytes) -> bytes:
        """What libcni sends on DEL: the ADD config with the cached result as prevResult."""
        conf = json.loads(add_stdin)
        conf["prevResult"] = json.loads(add_stdout)
        return json.dumps(conf).encode()

    def timed_child(self, stdin: bytes, env: dict[str, str]) -> dict[str, Any]:
        r, w = os.pipe()
        try:
            t0 = time.monotonic()
            proc = subprocess.run([PYTHON, "-c", CHILD_TIMED, str(w)], input=stdin, capture_output=True, env=env,
                                  pass_fds=(w,), timeout=120, cwd="/")
            t_exit = time.monotonic()
            os.close(w)
            w = -1
            with os.fdopen(r, "rb") as fh:
                r = -1
                rep = json.loads(fh.read() or b"{}")
        finally:
            for fd in (r, w):
                if fd >= 0:
                    os.close(fd)
        if proc.returncode != 0 or rep.get("rc") != 0:
            raise BenchError(f"instrumented cri-net-cni failed: {proc.stdout[-800:]!r} {proc.stderr[-800:]!r}")
        execs = rep["execs"]
        exec_t = sum(e[2] for e in execs)
        return {"wall": t_exit - t0, "start": rep["t_py"] - t0, "import_plugin": rep["t_plugin"] - rep["t_py"],
                "import_rest": rep["t_imports"] - rep["t_plugin"], "handle": rep["t_end"] - rep["t_imports"],
                "execs_total": exec_t, "crinet_python": rep["t_end"] - rep["t_imports"] - exec_t,
                "exit": t_exit - rep["t_end"], "execs": [[e[0], e[1], round(e[2] * 1000, 2)] for e in execs],
                "stdout": proc.stdout}

    def warm(self) -> None:
        """A server-like process: per-call handle() vs. one adaptor reused."""
        base, stdin_t = self.add_call()
        items, netns_list = [], []
        for i in range(2 * self.args.direct + 2):
            cid = sandbox_like_id(f"warm-{i}")
            netns = self.new_netns()
            netns_list.append(netns)
            env = {k: v for k, v in self.call_env(base, "ADD", cid, netns).items() if k.startswith("CNI_")}
            items.append({"env": env, "stdin": stdin_t.replace(b"@ID@", cid.encode()).decode()})
        job = self.tmp / "warm-job.json"
        job.write_text(json.dumps({"items": items}))
        r, w = os.pipe()
        try:
            proc = subprocess.run([PYTHON, "-c", CHILD_WARM, str(w), str(job)], capture_output=True,
                                  pass_fds=(w,), timeout=600, cwd="/")
            os.close(w)
            w = -1
            with os.fdopen(r, "rb") as fh:
                r = -1
                data = fh.read()
        finally:
            for fd in (r, w):
                if fd >= 0:
                    os.close(fd)
            for netns in netns_list:
                self.del_netns(netns)
        if proc.returncode != 0 or not data:
            raise BenchError(f"warm child failed: {proc.stderr[-1500:]!r}")
        rep = json.loads(data)
        out: dict[str, Any] = {"adaptor_init": rep["adaptor_init"][0] if rep["adaptor_init"] else float("nan")}
        for mode in ("handle", "reuse"):
            rows = rep[mode][1:]  # first of each is a warm-up
            out[mode] = {"add": med([r[0] for r in rows]), "add_exec": med([r[1] for r in rows]),
                         "del": med([r[2] for r in rows]), "del_exec": med([r[3] for r in rows]),
                         "overhead_cycle": med([r[0] - r[1] + r[2] - r[3] for r in rows]), "n": len(rows)}
        self.results["warm"] = out

    def profile(self) -> None:
        base, stdin_t = self.add_call()
        out = {}
        for mode in ("cold", "warm"):
            cid = sandbox_like_id(f"profile-{mode}")
            netns = self.new_netns()
            stdin = stdin_t.replace(b"@ID@", cid.encode())
            stats_path = self.tmp / f"profile-{mode}.pstats"
            try:
                _, proc = timed_run([PYTHON, "-c", CHILD_PROFILE, str(stats_path), mode], stdin,
                                    self.call_env(base, "ADD", cid, netns))
                timed_run([str(CRI_NET_CNI)], self.del_stdin(stdin, proc.stdout), self.call_env(base, "DEL", cid, netns))
            finally:
                self.del_netns(netns)
            out[mode] = summarize_profile(str(stats_path))
        self.results["profile"] = out

    # ---- start-up and imports ----------------------------------------------------------
    def startup(self) -> None:
        n = self.args.version_calls
        version_env = {**os.environ, "CNI_COMMAND": "VERSION", "CNI_PATH": CNI_DIR}
        vin = b'{"cniVersion":"1.0.0"}'
        launcher = self.launcher_dir / "cri-net"
        cases: dict[str, tuple[list[str], bytes, dict[str, str] | None]] = {
            "version_launcher": ([str(launcher)], vin, version_env),
            "version_cri_net_cni": ([str(CRI_NET_CNI)], vin, version_env),
            "version_cri_net_cni_caller_env": ([str(CRI_NET_CNI)], vin, {**self.caller_env, "CNI_COMMAND": "VERSION"}),
            "version_go_bridge": ([f"{CNI_DIR}/bridge"], vin, version_env),
            "python_pass": ([PYTHON, "-c", "pass"], b"", None),
            "python_S_pass": ([PYTHON, "-S", "-c", "pass"], b"", None),
            "python_IS_pass": ([PYTHON, "-I", "-S", "-c", "pass"], b"", None),
            "sh_true": (["/bin/sh", "-c", ":"], b"", None),
        }
        samples: dict[str, list[float]] = {k: [] for k in cases}
        for i in range(n + 1):
            for key, (argv, stdin, env) in cases.items():
                dt, proc = timed_run(argv, stdin, env)
                if key.startswith("version_") and i == 0 and b"supportedVersions" not in proc.stdout:
                    raise BenchError(f"{key}: unexpected VERSION answer {proc.stdout!r}")
                if i:
                    samples[key].append(dt)
        self.results["startup"] = {k: {"median": med(v), "p90": pct(v, 90)} for k, v in samples.items()}
        # interpreter tear-down: from the last statement to the parent seeing the exit
        exits = {"exit_bare": "import time; print(time.monotonic())",
                 "exit_loaded": "import cri_net.plugin.handler, adaptors.cri, time; print(time.monotonic())",
                 "exit_loaded_os_exit": "import cri_net.plugin.handler, adaptors.cri, time, os, sys; "
                                        "print(time.monotonic()); sys.stdout.flush(); os._exit(0)"}
        ex: dict[str, list[float]] = {k: [] for k in exits}
        for i in range(self.args.import_runs + 1):
            for key, code in exits.items():
                proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd="/", timeout=120)
                t = time.monotonic()
                if i:
                    ex[key].append(t - float(proc.stdout))
        self.results["exit"] = {k: med(v) for k, v in ex.items()}

    def imports(self) -> None:
        n = self.args.import_runs
        cands: dict[str, list[str] | tuple[list[str], dict[str, str]]] = {
            "baseline": [PYTHON, "-c", "pass"],
            "cri_net.plugin.handler": [PYTHON, "-c", "import cri_net.plugin.handler"],
            "pydantic (BaseModel)": [PYTHON, "-c", "from pydantic import BaseModel"],
            "pydantic_core": [PYTHON, "-c", "import pydantic_core"],
            "tenacity": [PYTHON, "-c", "import tenacity"],
            "cri_net.config": [PYTHON, "-c", "import cri_net.config"],
            "cri_net.libcni": [PYTHON, "-c", "import cri_net.libcni"],
            "cri_net.network": [PYTHON, "-c", "import cri_net.network"],
            "adaptors.cri (all of ADD)": [PYTHON, "-c", "import cri_net.plugin.handler, adaptors.cri"],
            "adaptors.cri, PYDANTIC_DISABLE_PLUGINS=__all__": (
                [PYTHON, "-c", "import cri_net.plugin.handler, adaptors.cri"],
                {**os.environ, "PYDANTIC_DISABLE_PLUGINS": "__all__"}),
            "adaptors.cri, caller's env (no bytecode cache)": (
                [PYTHON, "-c", "import cri_net.plugin.handler, adaptors.cri"], self.caller_env),
            "stdlib the ADD path needs": [PYTHON, "-c", STDLIB_SET],
            "grpc": [PYTHON, "-c", "import grpc"],
            "baseline -I -S": [PYTHON, "-I", "-S", "-c", "pass"],
            "thin client (-I -S socket,json)": [PYTHON, "-I", "-S", "-c", "import socket, json"],
        }
        samples: dict[str, list[float]] = {k: [] for k in cands}
        for i in range(n + 1):
            for key, cand in cands.items():
                argv, env = cand if isinstance(cand, tuple) else (cand, dict(os.environ))
                dt, _ = timed_run(argv, env=env)
                if i:
                    samples[key].append(dt)
        base = med(samples["baseline"])
        base_is = med(samples["baseline -I -S"])
        out = {}
        for key, v in samples.items():
            ref = base_is if "-I -S" in key and key != "baseline -I -S" else base
            out[key] = {"wall": med(v), "over_baseline": med(v) - ref if not key.startswith("baseline") else 0.0}
        self.results["imports"] = out
        # -X importtime
        it: dict[str, Any] = {}
        for key, stmt in (("bare", "pass"), ("cni_plugin", "import cri_net.plugin.handler"),
                          ("add_path", "import cri_net.plugin.handler, adaptors.cri")):
            proc = sh(PYTHON, "-X", "importtime", "-c", stmt, cwd="/")
            rows = parse_importtime(proc.stderr)
            it[key] = {"top_cumulative": top_imports(rows, "cum", 14), "top_self": top_imports(rows, "self", 12),
                       "total_us": sum(r[0] for r in rows)}
        self.results["importtime"] = it
        split: dict[str, list[dict[str, float]]] = {"default": [], "no_plugins": []}
        code = CHILD_IMPORT_SPLIT.replace("@STDLIB@", STDLIB_SET)
        for i in range(n + 1):
            for key, extra in (("default", {}), ("no_plugins", {"PYDANTIC_DISABLE_PLUGINS": "__all__"})):
                proc = sh(PYTHON, "-c", code, cwd="/", env={**os.environ, **extra})
                if i:
                    split[key].append(json.loads(proc.stdout))
        self.results["import_split"] = {
            key: {f: med([r[f] for r in rows]) for f in rows[0]} for key, rows in split.items()}

    # ---- cleanup ----------------------------------------------------------------------
    def stop_containerds(self) -> None:
        stop_containerds(self)

    def cleanup(self) -> None:
        if self.cleaned:
            return
        self.cleaned = True
        try:
            self.stop_containerds()
        except Exception as exc:  # noqa: BLE001 - cleanup carries on
            self.leftovers.append(f"containerd teardown failed: {exc}")
        for path in list(self.netns):
            self.del_netns(path)
        # containerd's own pod netns (cni-*) that appeared during the run and hold an address of
        # our subnets: left by a RunPodSandbox whose client went away; the harness may not know them
        for name in self.our_cni_netns():
            log(f"removing netns {name} (an address of ours; left by containerd)")
            sh("ip", "netns", "del", name, check=False)
        for binary in ("iptables", "ip6tables"):
            own = set(HOSTPORT_CHAINS) - self.chains_before[binary]
            self.leftovers += purge_portmap_rules(binary, ALL_NETS, own & _nat_chains(binary))
        for side in (SIDE_A, SIDE_B):
            if side.bridge not in self.bridges_before and Path(f"/sys/class/net/{side.bridge}").exists():
                sh("ip", "link", "del", side.bridge, check=False)
        for f in _listdir(HOST_CACHE / "results"):
            if any(f.startswith(f"{n}-") for n in ALL_NETS) or any(s in f for s in self.sandbox_ids):
                (HOST_CACHE / "results" / f).unlink(missing_ok=True)
        self.leftovers += self.check_leftovers()
        if not [x for x in self.leftovers if "mount" in x]:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def our_cni_netns(self) -> list[str]:
        out = []
        for name in sorted(set(_listdir(NETNS_DIR)) - self.netns_before):
            if name.startswith("cni-"):
                addrs = sh("ip", "netns", "exec", name, "ip", "-4", "-o", "addr", check=False).stdout
                if re.search(r"inet 10\.233\.[01]\.", addrs):
                    out.append(name)
        return out

    def check_leftovers(self) -> list[str]:
        out = [f"netns {NETNS_DIR / n}" for n in self.our_cni_netns()]
        out += [f"netns {n}" for n in _listdir(NETNS_DIR) if n.startswith(f"{NETNS_PREFIX}{os.getpid()}-")]
        out += [f"bridge {s.bridge}" for s in (SIDE_A, SIDE_B)
                if s.bridge not in self.bridges_before and Path(f"/sys/class/net/{s.bridge}").exists()]
        for binary in ("iptables", "ip6tables"):
            dump = sh(f"{binary}-save", "-t", "nat", check=False).stdout
            out += [f"{binary} {ln}" for ln in dump.splitlines()
                    if any(f'\\"{n}\\"' in ln for n in ALL_NETS) or "10.233.0." in ln or "10.233.1." in ln]
        out += [f"mount {m}" for m in mounts_under([self.tmp])]
        for f in _listdir(HOST_CACHE / "results"):
            if any(f.startswith(f"{n}-") for n in ALL_NETS) or any(s in f for s in self.sandbox_ids):
                out.append(f"cache {HOST_CACHE / 'results' / f}")
        for d in self.ipam.values():
            out += [f"lease {p}" for p in d.glob("*/*") if re.fullmatch(r"[0-9.]+", p.name)]
        return out


# ------------------------------------------------------------------ profile & importtime


def _short(path: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def summarize_profile(path: str) -> dict[str, Any]:
    st = pstats.Stats(path)
    raw = st.stats  # type: ignore[attr-defined]
    rows = [((f, ln, fn), cc, nc, tt, ct) for (f, ln, fn), (cc, nc, tt, ct, _) in raw.items()]
    total = max(ct for *_, ct in rows)

    def label(key: tuple[str, int, str]) -> str:
        f, ln, fn = key
        return fn if f == "~" else f"{_short(f)}:{ln}({fn})"

    def cum(match: Callable[[str, str], bool]) -> float:
        return max((ct for (f, _, fn), _, _, _, ct in rows if match(f, fn)), default=0.0)

    skip = ("cProfile", "<string>", "_bootstrap.py")  # wrappers (every import passes through them)
    by_cum = sorted((r for r in rows if not any(s in r[0][0] for s in skip) and r[0][2] not in (
        "<module>", "exec", "_call_with_frames_removed")), key=lambda r: -r[4])
    by_self = sorted(rows, key=lambda r: -r[3])
    pyd_self = sum(tt for (f, _, fn), _, _, tt, _ in rows if "pydantic" in f or "pydantic" in fn)
    return {
        "total": total,
        "imports": cum(lambda f, fn: fn == "_find_and_load"),
        "adaptor_init": cum(lambda f, fn: f.endswith("adaptors/cri.py") and fn == "__init__"),
        "load_networks": cum(lambda f, fn: f.endswith("operator/loader.py") and fn == "load_networks"),
        "settings": cum(lambda f, fn: f.endswith("cri_net/config.py") and fn == "build"),
        "attach": cum(lambda f, fn: f.endswith("adaptors/cri.py") and fn == "attach"),
        "plugin_execs": cum(lambda f, fn: f.endswith("libcni/invoke.py") and fn == "run"),
        "popen_spawn": cum(lambda f, fn: f.endswith("subprocess.py") and fn == "_execute_child"),
        "combined_result": cum(lambda f, fn: f.endswith("plugin/handler.py") and fn == "combined_result"),
        "pydantic_self": pyd_self,
        "top_cumulative": [[label(k), nc, round(tt * 1000, 2), round(ct * 1000, 2)] for k, _, nc, tt, ct in by_cum[:18]],
        "top_self": [[label(k), nc, round(tt * 1000, 2), round(ct * 1000, 2)] for k, _, nc, tt, ct in by_self[:15]],
    }


def parse_importtime(stderr: str) -> list[tuple[int, int, str]]:
    rows = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), (len(m.group(3)) - 1) // 2 * " " + m.group(4)))
    return rows


def top_imports(rows: list[tuple[int, int, str]], by: str, n: int) -> list[list[Any]]:
    key = (lambda r: -r[1]) if by == "cum" else (lambda r: -r[0])
    return [[r[2].strip(), r[0], r[1]] for r in sorted(rows, key=key)[:n]]


# ------------------------------------------------------------------------------ report


def report(res: dict[str, Any], args: argparse.Namespace) -> None:
    p = print
    cyc = res.get("cycle")
    if cyc:
        a = cyc["A"]
        lo, hi = cyc["ratio_ci90"]
        p(f"\n== containerd pod cycle (RunPodSandbox + StopPodSandbox + RemovePodSandbox), {a['n']} cycles per side, "
          f"{args.warmup} warm-up, batches of {args.batch}, interleaved")
        p(f"  {'':34} {'median':>8} {'p90':>8} {'min':>8} {'run':>8} {'stop':>8} {'remove':>8}  (ms)")
        for key, label in (("A", "A  bridge+host-local+portmap"), ("B", "B  cri-net-cni (same list inside)")):
            r = cyc[key]
            p(f"  {label:34} {ms(r['median']):>8} {ms(r['p90']):>8} {ms(r['min']):>8} {ms(r['run_median']):>8} "
              f"{ms(r['stop_median']):>8} {ms(r['remove_median']):>8}")
        verdict = "met" if cyc["ratio"] <= TARGET else "MISSED"
        p(f"  ratio B/A (median) {cyc['ratio']:.3f}  (90% bootstrap {lo:.3f}..{hi:.3f})  target <= {TARGET:.2f}: {verdict}")
        p(f"  B - A per cycle: {ms(cyc['delta_median'])} ms")
    cap = res.get("captured")
    if cap:
        p(f"  containerd called the cri-net plugin {len(cap)} time(s) in one cycle: "
          f"{', '.join(c['command'] + ('' if c['env'].get('CNI_NETNS') else ' (no netns)') for c in cap)}")
    pr = res.get("probe")
    if pr:
        a, b = pr["A"], pr["B"]
        p(f"\n== inside containerd's cycle (probe: {pr['n']} more cycles per side with timing wrappers; not in the ratio; "
          f"ms, median)")
        p(f"  A: cycle {ms(a['cycle'])}  run {ms(a['run'])}  stop {ms(a['stop'])}  remove {ms(a['remove'])};  "
          f"plugin execs {a['calls_per_cycle']:.0f}/cycle taking {ms(a['plugins_per_cycle'])} per cycle -> containerd's "
          f"own part {ms(a['cycle'] - a['plugins_per_cycle'])}")
        p("     " + ", ".join(f"{c} {ms(v)}" for c, v in a["per_call"].items()))
        p(f"  B: cycle {ms(b['cycle'])}  run {ms(b['run'])}  stop {ms(b['stop'])}  remove {ms(b['remove'])};  "
          f"cri-net-cni {b['calls_per_cycle']:.0f}/cycle taking {ms(b['plugins_per_cycle'])} per cycle "
          f"(its inner plugins {ms(b.get('inner_per_cycle', float('nan')))}) -> containerd's own part "
          f"{ms(b['cycle'] - b['plugins_per_cycle'])}")
        if b["per_call"]:
            p(f"     {'call':18} {'wall':>7} {'start':>7} {'imports':>8} {'own':>7} {'inner':>7} {'exit':>7}")
            for label, v in b["per_call"].items():
                p(f"     {label:18} {ms(v['wall']):>7} {ms(v['start']):>7} {ms(v['imports']):>8} "
                  f"{ms(v['crinet_python']):>7} {ms(v['execs']):>7} {ms(v['exit']):>7}")
    st = res.get("startup")
    if st:
        p(f"\n== plugin start-up (wall, median of {args.version_calls}, ms); bytecode cache: {res['bytecode']['cache']}")
        for key, label in (("version_launcher", "VERSION via the `cri-net` launcher"),
                           ("version_cri_net_cni", "VERSION cri-net-cni"),
                           ("version_cri_net_cni_caller_env", "VERSION cri-net-cni, caller's env (no .pyc)"),
                           ("version_go_bridge", "VERSION Go plugin (bridge)"),
                           ("python_pass", "python -c pass (venv, site)"),
                           ("python_S_pass", "python -S -c pass"),
                           ("python_IS_pass", "python -I -S -c pass"),
                           ("sh_true", "sh -c :")):
            p(f"  {label:44} {ms(st[key]['median']):>8}  p90 {ms(st[key]['p90'])}")
    ex = res.get("exit")
    if ex:
        p(f"  interpreter tear-down (last statement -> exit seen): bare {ms(ex['exit_bare'])}, after the ADD imports "
          f"{ms(ex['exit_loaded'])}, same with os._exit {ms(ex['exit_loaded_os_exit'])}")
    it = res.get("importtime")
    if it:
        c = it["cni_plugin"]
        first = next((r for r in c["top_cumulative"] if r[0] == "cri_net.plugin.handler"), None)
        p("\n== python -X importtime -c \"import cri_net.plugin.handler\"  (µs: self, cumulative)")
        p(f"  cri_net.plugin.handler cumulative: {first[2] if first else '?'} µs; everything imported "
          f"(incl. site): {c['total_us']} µs")
        for name, self_us, cum_us in c["top_cumulative"][:8]:
            p(f"    {name:44} {self_us:>8} {cum_us:>8}")
        c = it["bare"]
        p(f"  (a bare `python -c pass` imports {c['total_us']} µs; site's share: "
          + ", ".join(f"{n} {cu}" for n, _, cu in c["top_cumulative"][:3]) + ")")
        c = it["add_path"]
        p(f"  everything ADD/DEL imports (cri_net.plugin.handler + adaptors.cri): {c['total_us']} µs summed self time; top cumulative:")
        for name, self_us, cum_us in c["top_cumulative"]:
            p(f"    {name:44} {self_us:>8} {cum_us:>8}")
        p("  top self time:")
        for name, self_us, cum_us in c["top_self"]:
            p(f"    {name:44} {self_us:>8} {cum_us:>8}")
    imp = res.get("imports")
    if imp:
        p(f"\n== import cost of candidates (wall of `python -c \"import X\"` minus a bare start; median of "
          f"{args.import_runs}; ms)")
        for key, v in imp.items():
            p(f"  {key:40} wall {ms(v['wall']):>8}   cost {ms(v['over_baseline']):>8}")
    isp = res.get("import_split")
    if isp:
        dft, nop = isp["default"], isp["no_plugins"]
        total = sum(dft[k] for k in ("cni_plugin", "stdlib", "tenacity", "pydantic", "crinet_modules"))
        p(f"  in one process, piece by piece (median of {args.import_runs}; ms): cri_net.plugin.handler {ms(dft['cni_plugin'])}, "
          f"the stdlib the path needs {ms(dft['stdlib'])}, tenacity {ms(dft['tenacity'])}, pydantic {ms(dft['pydantic'])}, "
          f"cri-net's modules {ms(dft['crinet_modules'])} (of which {dft['models']:.0f} pydantic model classes "
          f"{ms(dft['model_build'])}; with PYDANTIC_DISABLE_PLUGINS=__all__ {ms(nop['model_build'])}); total {ms(total)}")
    d = res.get("direct")
    if d:
        p(f"\n== cri-net-cni invoked directly (containerd's recorded stdin, real netns, real bridge+host-local+portmap; "
          f"median of {d['n']}, ms)")
        p(f"  plain: ADD {ms(d['add_median'])}  DEL {ms(d['del_median'])}  ADD+DEL {ms(d['cycle_median'])}")
        if "timed_add_wall" in d:
            p(f"  instrumented split        {'ADD':>8} {'DEL':>8}")
            for key, label in (("wall", "wall"), ("start", "interpreter start (fork/exec+site)"),
                               ("import_plugin", "import cri_net.plugin.handler"),
                               ("import_rest", "imports pydantic/adaptors/libcni"),
                               ("crinet_python", "cri-net Python work"),
                               ("execs_total", "inner plugin execs"), ("exit", "exit")):
                p(f"  {label:38} {ms(d[f'timed_add_{key}']):>8} {ms(d[f'timed_del_{key}']):>8}")
            p(f"  inner plugin runs (one call, ms): ADD {d['exec_list_add']}  DEL {d['exec_list_del']}")
            over = (d["timed_add_wall"] - d["timed_add_execs_total"]) + (d["timed_del_wall"] - d["timed_del_execs_total"])
            p(f"  => cri-net-cni overhead per cycle (ADD+DEL wall minus inner plugins): {ms(over)} ms")
    w = res.get("warm")
    if w:
        p("\n== server-like warm process (imports done; ms, median)")
        for mode, label in (("handle", "handle() per call (adaptor built per call)"),
                            ("reuse", "one adaptor reused (what serve would do)")):
            r = w[mode]
            p(f"  {label:44} ADD {ms(r['add'])} (plugins {ms(r['add_exec'])})  DEL {ms(r['del'])} "
              f"(plugins {ms(r['del_exec'])})  cri-net overhead/cycle {ms(r['overhead_cycle'])}")
        p(f"  adaptor construction (conf dir load, settings): {ms(w['adaptor_init'])}")
    prof = res.get("profile")
    if prof:
        for mode in ("cold", "warm"):
            pr = prof[mode]
            p(f"\n== cProfile of one ADD, {mode} ({'imports profiled' if mode == 'cold' else 'imports done before'}); "
              f"total {ms(pr['total'])} ms")
            p(f"  imports {ms(pr['imports'])}  adaptor init {ms(pr['adaptor_init'])} (conf load {ms(pr['load_networks'])}, "
              f"settings {ms(pr['settings'])})  attach {ms(pr['attach'])} (plugin execs {ms(pr['plugin_execs'])}, "
              f"fork/exec {ms(pr['popen_spawn'])})  result {ms(pr['combined_result'])}  pydantic self {ms(pr['pydantic_self'])}")
            p("  top cumulative (ncalls, self ms, cum ms):")
            for name, nc, tt, ct in pr["top_cumulative"][:14]:
                p(f"    {name[:78]:78} {nc:>6} {tt:>8} {ct:>8}")
            p("  top self:")
            for name, nc, tt, ct in pr["top_self"][:10]:
                p(f"    {name[:78]:78} {nc:>6} {tt:>8} {ct:>8}")
    proj = res.get("projections")
    if proj:
        src = "the probe split inside containerd" if (res.get("probe") or {}).get("B", {}).get("per_call") else "the direct split"
        basis = (f"probe cycles: A {ms(res['probe']['A']['cycle'])}, B {ms(res['probe']['B']['cycle'])}"
                 if "probe" in src else "timed cycles")
        p(f"\n== what each fix would save, alone, applied to {src} (ms: per call (median), per cycle; "
          f"cri-net overhead left per cycle; projected B; ratio to A; basis: {basis})")
        for row in proj:
            p(f"  {row['fix'][:78]:78} {ms(row['save_call']):>7} {ms(row['save_cycle']):>8}  left {ms(row['overhead_left']):>7}"
              f"  -> B {ms(row['b']):>7}  ratio {row['ratio']:.3f}")


def projections(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Each candidate fix, alone: its saving on every plugin call of a cycle, applied to the
    split of those calls measured inside containerd's cycle (the probe; else the direct
    split), then subtracted from B's median cycle of the probe (else of the timed cycles),
    and the ratio taken to A's of the same cycles.

    A saving measured in isolation is applied as a share of the component it shrinks (e.g.
    pydantic's share of the whole ADD import time, both measured by the same method at the
    same time, times the import time inside the cycle), so fixes can't remove more than the
    component they touch, whatever the load was when each figure was taken."""
    cyc, imp, st, w, ex = (res.get(k) for k in ("cycle", "imports", "startup", "warm", "exit"))
    d, probe = res.get("direct") or {}, res.get("probe") or {}
    if not (cyc and imp and st and ex):
        return []
    calls: dict[str, dict[str, float]] = dict((probe.get("B") or {}).get("per_call") or {})
    if not calls and "timed_add_wall" in d:
        for cmd in ("add", "del"):
            calls[cmd.upper()] = {"wall": d[f"timed_{cmd}_wall"], "start": d[f"timed_{cmd}_start"],
                                  "imports": d[f"timed_{cmd}_import_plugin"] + d[f"timed_{cmd}_import_rest"],
                                  "crinet_python": d[f"timed_{cmd}_crinet_python"],
                                  "execs": d[f"timed_{cmd}_execs_total"], "exit": d[f"timed_{cmd}_exit"]}
    if not calls:
        return []
    # the probe's cycles (A and B alternating, same conditions) when there are any
    if (probe.get("B") or {}).get("per_call"):
        a, b = probe["A"]["cycle"], probe["B"]["cycle"]
    else:
        a, b = cyc["A"]["median"], cyc["B"]["median"]
    cost = {k: v["over_baseline"] for k, v in imp.items()}
    isp = res.get("import_split") or {}
    dft, nop = isp.get("default") or {}, isp.get("no_plugins") or {}
    all_imports = sum(dft.get(k, 0.0) for k in ("cni_plugin", "stdlib", "tenacity", "pydantic", "crinet_modules"))
    share = lambda x: min(1.0, max(0.0, x) / all_imports) if all_imports > 0 else 0.0  # noqa: E731
    exit_share = max(0.0, ex["exit_loaded"] - ex["exit_loaded_os_exit"]) / ex["exit_loaded"]
    site_share = max(0.0, st["python_pass"]["median"] - st["python_S_pass"]["median"]) / st["python_pass"]["median"]
    pyd_share = share(dft.get("pydantic", 0.0) + dft.get("model_build", 0.0))
    ten_share = share(dft.get("tenacity", 0.0))
    scan_share = share(dft.get("model_build", 0.0) - nop.get("model_build", 0.0))
    served = (w["reuse"]["overhead_cycle"] / 2) if w else 0.0  # per call, in a warm server
    py_client = st["python_IS_pass"]["median"] + cost["thin client (-I -S socket,json)"]
    go_client = st["version_go_bridge"]["median"]
    fixes: list[tuple[str, Callable[[dict[str, float]], float]]] = [
        ("launcher: exec python directly (no /bin/sh hop; `sh -c :`)", lambda c: st["sh_true"]["median"]),
        ("os._exit() after flushing stdout (skip interpreter tear-down)", lambda c: c["exit"] * exit_share),
        ("PYDANTIC_DISABLE_PLUGINS=__all__ (no entry-point scan)", lambda c: c["imports"] * scan_share),
        ("site: no editable-install finder / -S launcher (upper bound)", lambda c: c["start"] * site_share),
        ("tenacity -> a 6-line retry loop in libcni.invoke", lambda c: c["imports"] * ten_share),
        ("no pydantic on the plugin path (import + model class builds)", lambda c: c["imports"] * pyd_share),
        ("both: the ADD/DEL path on the standard library only", lambda c: c["imports"] * (pyd_share + ten_share)),
        ("combined: stdlib-only path + os._exit + no sh hop",
         lambda c: c["imports"] * (pyd_share + ten_share) + c["exit"] * exit_share + st["sh_true"]["median"]),
        ("hand off to a running `cri-net serve` (new socket API), Python -I -S thin client",
         lambda c: c["wall"] - c["execs"] - (py_client + served)),
        ("hand off to a running `cri-net serve` (new socket API), compiled (Go/C) shim",
         lambda c: c["wall"] - c["execs"] - (go_client + served)),
    ]
    rows = []
    overhead_now = sum(c["wall"] - c["execs"] for c in calls.values())
    for fix, saving in fixes:
        per_call = {label: saving(c) for label, c in calls.items()}
        save = sum(per_call.values())
        rows.append({"fix": fix, "save_call": med(list(per_call.values())), "save_cycle": save, "b": b - save,
                     "ratio": (b - save) / a, "overhead_left": overhead_now - save})
    return rows


# ------------------------------------------------------------------------------- main


def cleanup_only() -> int:
    """After a SIGKILL: containerds of earlier runs (found by their config path, stopped by
    pid), their mounts and netns are the harness's job normally; do the rest here."""
    problems: list[str] = []
    dirs = sorted(Path(tempfile.gettempdir()).glob(TMP_GLOB))
    for pid in [int(e) for e in _listdir("/proc") if e.isdigit()]:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a.startswith(str(d) + "/") for d in dirs for a in argv):
            log(f"stopping pid {pid}: {' '.join(argv)[:120]}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    for d in dirs:
        for mp in mounts_under([d]):
            if sh("umount", mp, check=False).returncode:
                sh("umount", "-l", mp, check=False)
    for n in _listdir(NETNS_DIR):
        if n.startswith(NETNS_PREFIX):
            sh("ip", "netns", "del", n, check=False)
    for binary in ("iptables", "ip6tables"):
        problems += purge_portmap_rules(binary, ALL_NETS, set())
    for side in (SIDE_A, SIDE_B):
        if Path(f"/sys/class/net/{side.bridge}").exists():
            sh("ip", "link", "del", side.bridge, check=False)
    for f in _listdir(HOST_CACHE / "results"):
        if any(f.startswith(f"{n}-") for n in ALL_NETS):
            (HOST_CACHE / "results" / f).unlink(missing_ok=True)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    log(f"cleanup-only: {len(dirs)} temp dir(s); containerd netns (cni-*) of killed runs are not touched")
    for x in problems:
        log(x)
    return 1 if problems else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, help="pod cycles per side (default 20; quick 4)")
    p.add_argument("--warmup", type=int, help="warm-up cycles per side (default 2; quick 1)")
    p.add_argument("--batch", type=int, default=5, help="cycles per interleaved batch (default 5)")
    p.add_argument("--quick", action="store_true", help="small numbers everywhere (smoke)")
    p.add_argument("--launcher", choices=["native", "python"], default="native",
                   help="handoff mode: the compiled launcher (default) or the python -S one")
    p.add_argument("--mode", choices=["handoff", "inprocess"], default="handoff",
                   help="B's plugin hands calls to a running cri-net serve (default), or works in-process")
    p.add_argument("--probe", type=int, help="extra cycles per side with timing wrappers, 0 = none (default 5; quick 2)")
    p.add_argument("--json", action="store_true", help="also print one JSON line with every figure on stdout")
    p.add_argument("--cleanup-only", action="store_true", help="remove what a killed run left, then exit")
    p.add_argument("--no-bytecode-cache", action="store_true",
                   help="keep the caller's environment (PYTHONDONTWRITEBYTECODE etc.) for containerd and the plugin")
    args = p.parse_args(argv)
    args.cycles = args.cycles or (4 if args.quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.warmup = max(1, args.warmup)  # the first warm-up of B records containerd's calls
    args.batch = max(1, min(args.batch, args.cycles))
    args.version_calls = 5 if args.quick else 30
    args.import_runs = 3 if args.quick else 15
    args.direct = 3 if args.quick else 15
    args.probe = args.probe if args.probe is not None else (2 if args.quick else 5)
    if args.mode == "handoff":
        args.probe = 0  # the probe splits an in-process call
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench_containerd: needs root (containerd, netns, bridges, iptables): "
                 "sudo .venv/bin/python benchmarks/bench_containerd.py")
    if args.cleanup_only:
        return cleanup_only()
    bench = Bench(args)
    atexit.register(bench.cleanup)
    stop_between_cycles(bench)
    status = 0
    try:
        t0 = time.monotonic()
        bench.results["loadavg_start"] = os.getloadavg()
        bench.start()
        bench.run_cycles()
        bench.stop_containerds()
        log("containerds stopped; direct measurements")
        bench.startup()
        if not bench.handoff:
            bench.direct()
            bench.warm()
            bench.profile()
            bench.imports()
            bench.results["projections"] = projections(bench.results)
        bench.results["elapsed_s"] = time.monotonic() - t0
    except Interrupted as exc:
        log(f"interrupted ({exc}); cleaning up")
        status = 130
    except (BenchError, HarnessError, subprocess.SubprocessError) as exc:
        log(f"failed: {exc}")
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # cleanup must not be cut short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.cleanup()
    res = bench.results
    res["host"] = {"cpus": os.cpu_count(), "loadavg_end": os.getloadavg(), "python": sys.version.split()[0],
                   "containerd": sh("containerd", "--version", check=False).stdout.strip()}
    report(res, args)
    if bench.leftovers:
        print("\ncleanup: LEFT BEHIND:\n  " + "\n  ".join(bench.leftovers))
        status = status or 3
    else:
        print("\ncleanup: nothing left behind (containerds, pods, netns, bridges, iptables rules, leases, caches, temp dir)")
    print(f"host: {res['host']}")
    if args.json:
        slim = json.loads(json.dumps(res, default=str))
        for key in ("A", "B"):
            if "cycle" in slim:
                slim["cycle"][key]["all"] = [round(x, 5) for x in slim["cycle"][key]["all"]]
        print(json.dumps(slim))
    return status


if __name__ == "__main__":
    from integration import hostlock  # held for the whole run, as an integration session holds it

    with hostlock.hold(lambda line: print(line, file=sys.stderr, flush=True)):
        sys.exit(main())
