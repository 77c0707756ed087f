#!/usr/bin/env python3
"""Per-cycle cost of cri-net's CNI runtime against a bare shell runtime, in one run.

One cycle = ADD then DEL of the conflist bridge + portmap (host-local IPAM) on a fresh netns.
Three modes run the same conflist, in interleaved rounds (a raw batch, an in-process batch,
a CLI batch, repeat) so that drift on a small machine weighs on all of them alike:

  raw      benchmarks/raw_cycle.sh: bash execs the plugins itself (the floor)
  inproc   cri_net.libcni CNI.add_network_list + del_network_list in this process
  cli      `cri-net cni add` + `cri-net cni del` subprocesses

Also, between rounds, libcni alone: the same ADD+DEL with an executor whose plugins answer
at once with their recorded output (cache on the temp dir's disk, and on tmpfs).

Timed: the ADD+DEL only. Creating and deleting the netns (`ip netns add/del`) is done for
every cycle in every mode, outside the timed part. Also measured: the CLI's bare startup
(`cri-net --help` next to `python -c pass`) and `python -X importtime` of cri_net.cli.main.

Everything is local: bridge crinetbench0, 10.231.0.0/24, host port 28080 -> 80; no packet is
ever sent. Everything made is removed on exit, Ctrl-C and SIGTERM included (try/finally and
atexit): netns, veths, the bridge, portmap's iptables rules, leases, caches, temp files.
`--cleanup-only` removes what a SIGKILLed run left behind.

    sudo .venv/bin/python benchmarks/bench_libcni.py [--cycles 30] [--batch 5] [--json]
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from cri_net import libcni  # noqa: E402
from cri_net.cli.cni import container_id_for  # noqa: E402

NET_NAME = "crinetbench"
BRIDGE = "crinetbench0"
SUBNET = "10.231.0.0/24"
HOST_PORT, CONTAINER_PORT = 28080, 80
CNI_VERSION = "1.0.0"  # the newest the plugins (containernetworking-plugins 1.1.1) speak
NETNS_PREFIX = "crinetbench-"
PORT_MAPPINGS = [{"hostPort": HOST_PORT, "containerPort": CONTAINER_PORT, "protocol": "tcp"}]
WARMUP = 3
STUB_PER_ROUND = 20  # stubbed-plugin cycles per round (they take ~1 ms)
MODES = ("raw", "inproc", "cli")
PLUGIN_DIR = "/usr/lib/cni"


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def sh(*argv: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


# ---- the bench environment -------------------------------------------------------------------
class Bench:
    """Owns every host object the run creates, and removes them all in `cleanup()`."""

    def __init__(self, plugin_dir: str) -> None:
        self.plugin_dir = plugin_dir
        self.tmp = Path(tempfile.mkdtemp(prefix="crinetbench-"))  # same fs as /var/lib/cni here: fsyncs count
        self.conf_dir = self.tmp / "net.d"
        self.ipam_dir = self.tmp / "ipam"
        self.cache = {m: str(self.tmp / f"cache-{m}") for m in (*MODES, "stub")}
        # the same stubbed cycles with the cache on tmpfs: libcni's CPU cost without disk flushes
        self.shm = Path(tempfile.mkdtemp(prefix="crinetbench-", dir="/dev/shm")) if os.path.isdir("/dev/shm") else None
        if self.shm:
            self.cache["stub-tmpfs"] = str(self.shm / "cache")
        self.conf_dir.mkdir()
        self.bridge_conf = compact({
            "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}],
                     "dataDir": str(self.ipam_dir)},
        })
        self.portmap_conf = compact({"type": "portmap", "capabilities": {"portMappings": True}, "snat": True})
        # Plugin objects written compactly, without name/cniVersion: libcni appends those (and
        # prevResult, runtimeConfig) at the end, which is what raw_cycle.sh does by concatenation.
        conflist = (f'{{"cniVersion":"{CNI_VERSION}","name":"{NET_NAME}","plugins":'
                    f'[{self.bridge_conf},{self.portmap_conf}]}}')
        (self.conf_dir / f"{NET_NAME}.conflist").write_text(conflist)
        self.net = libcni.load_conf_list(str(self.conf_dir), NET_NAME)
        self.cap_args = {"portMappings": PORT_MAPPINGS}
        self.cni = libcni.CNI([plugin_dir], cache_dir=self.cache["inproc"])
        self.netns: dict[str, tuple[str, str]] = {}  # live netns name -> (container id, cache dir)
        self.seq = 0
        self.ip_forward_before = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        self.hostport_chains_before = set(_nat_chains("iptables")) & set(HOSTPORT_CHAINS)
        self.cleaned = False
        self.cli_env: dict[str, str] | os._Environ[str] = os.environ

    def cache_bytecode(self) -> None:
        """Run the CLI as an installed package would: with compiled bytecode (kept in the temp dir,
        not the work tree) even if this shell sets PYTHONDONTWRITEBYTECODE."""
        env = dict(os.environ, PYTHONPYCACHEPREFIX=str(self.tmp / "pycache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.cli_env = env

    # -- netns: created and deleted outside the timed part, identically for every mode
    def new_netns(self, count: int) -> list[str]:
        names = []
        for _ in range(count):
            name = f"{NETNS_PREFIX}{os.getpid()}-{self.seq}"
            self.seq += 1
            self.netns[name] = ("", "")
            sh("ip", "netns", "add", name)
            names.append(name)
        return names

    def drop_netns(self, names: list[str]) -> None:
        for name in names:
            sh("ip", "netns", "del", name, check=False)
            self.netns.pop(name, None)

    def cleanup(self) -> list[str]:
        """Remove everything; returns what could not be removed. Idempotent."""
        if self.cleaned:
            return []
        self.cleaned = True
        problems: list[str] = []
        # 0. A plugin still running for one of our netns (its runner was killed under it) must finish
        #    before we DEL, or it would recreate what the DEL removes.
        problems += wait_for_plugins(f"CNI_NETNS=/run/netns/{NETNS_PREFIX}{os.getpid()}-")
        # 1. Attachments a failure or Ctrl-C left: DEL them (frees IPs, portmap chains, veths).
        for name, (cid, cache_dir) in list(self.netns.items()):
            if cid:
                rt = libcni.RuntimeConf(cid, f"/run/netns/{name}", "eth0", capability_args=self.cap_args)
                try:
                    libcni.CNI([self.plugin_dir], cache_dir=cache_dir, timeout=30).del_network_list(self.net, rt)
                except Exception as exc:  # noqa: BLE001 - best effort, the steps below catch the rest
                    problems.append(f"DEL {name}: {exc}")
            if sh("ip", "netns", "del", name, check=False).returncode and os.path.exists(f"/run/netns/{name}"):
                problems.append(f"netns {name} not deleted")
            self.netns.pop(name, None)
        # 2. The bridge (its veths went with their netns / the DELs).
        if Path(f"/sys/class/net/{BRIDGE}").exists():
            if sh("ip", "link", "del", BRIDGE, check=False).returncode:
                problems.append(f"bridge {BRIDGE} not deleted")
        # 3. portmap's iptables state for this network; shared CNI-HOSTPORT-* chains only if we made them.
        for binary in ("iptables", "ip6tables"):
            problems += purge_portmap_rules(binary, NET_NAME, set(HOSTPORT_CHAINS) - self.hostport_chains_before
                                            if binary == "iptables" else set())
        # 4. ip_forward: bridge's isGateway turns it on; put back only if we did.
        if self.ip_forward_before == "0":
            Path("/proc/sys/net/ipv4/ip_forward").write_text("0\n")
        # 5. Leases, caches, conflist, recorder.
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.shm:
            shutil.rmtree(self.shm, ignore_errors=True)
        if self.tmp.exists():
            problems.append(f"{self.tmp} not removed")
        return problems


def wait_for_plugins(env_marker: str, patience: float = 15.0) -> list[str]:
    """Wait for processes whose environment holds `env_marker` (plugins, and the iptables they
    run, which inherit it) to exit; SIGKILL those still there after `patience` seconds."""
    marker = env_marker.encode()

    def ours() -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    with open(f"/proc/{entry}/environ", "rb") as fh:
                        if any(v.startswith(marker) for v in fh.read().split(b"\0")):
                            pids.append(int(entry))
                except OSError:
                    pass
        return pids

    deadline = time.monotonic() + patience
    while (pids := ours()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return [f"killed stuck plugin process {pid}" for pid in pids]


HOSTPORT_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ")


def _nat_chains(binary: str) -> list[str]:
    proc = sh(f"{binary}-save", "-t", "nat", check=False)
    return [line[1:].split()[0] for line in proc.stdout.splitlines() if line.startswith(":")]


def purge_portmap_rules(binary: str, network: str, own_chains: set[str]) -> list[str]:
    """Delete portmap's rules for `network` (the jumps tagged `dnat name: "<network>"` and the
    CNI-DN-* chains they lead to), then the shared chains in `own_chains` if now unused."""
    proc = sh(f"{binary}-save", "-t", "nat", check=False)
    if proc.returncode:
        return []
    lines = proc.stdout.splitlines()
    tag = f'dnat name: \\"{network}\\"'
    ours = [ln for ln in lines if ln.startswith("-A ") and tag in ln]
    chains = {m.group(1) for ln in ours for m in [re.search(r"-j (CNI-DN-\S+)", ln)] if m}
    problems = []
    for ln in ours:  # the jumps in CNI-HOSTPORT-DNAT (and any other rule carrying our tag)
        if sh("sh", "-c", f"{binary} -w -t nat -D {ln[3:]}", check=False).returncode:
            problems.append(f"{binary}: could not delete rule {ln}")
    for chain in chains:
        sh(binary, "-w", "-t", "nat", "-F", chain, check=False)
        if sh(binary, "-w", "-t", "nat", "-X", chain, check=False).returncode:
            problems.append(f"{binary}: could not delete chain {chain}")
    if own_chains:
        lines = sh(f"{binary}-save", "-t", "nat", check=False).stdout.splitlines()
        if not any(ln.startswith("-A CNI-HOSTPORT-DNAT ") for ln in lines):  # nobody else uses them
            for ln in lines:
                if ln.startswith("-A ") and any(f"-j {c}" in ln for c in own_chains) \
                        and ln.split()[1] not in own_chains:
                    sh("sh", "-c", f"{binary} -w -t nat -D {ln[3:]}", check=False)
            for chain in own_chains:
                sh(binary, "-w", "-t", "nat", "-F", chain, check=False)
            for chain in own_chains:
                sh(binary, "-w", "-t", "nat", "-X", chain, check=False)
    return problems


def cleanup_leftovers() -> int:
    """For --cleanup-only: what a killed run may have left (our netns, bridge, rules)."""
    netns = [n for n in os.listdir("/run/netns") if n.startswith(NETNS_PREFIX)] if os.path.isdir("/run/netns") else []
    for name in netns:
        sh("ip", "netns", "del", name, check=False)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        sh("ip", "link", "del", BRIDGE, check=False)
    problems = purge_portmap_rules("iptables", NET_NAME, set()) + purge_portmap_rules("ip6tables", NET_NAME, set())
    for d in Path(tempfile.gettempdir()).glob("crinetbench-*"):
        shutil.rmtree(d, ignore_errors=True)
    print(f"removed {len(netns)} netns; bridge {BRIDGE} gone; portmap rules for {NET_NAME} purged", file=sys.stderr)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


# ---- the three modes ------------------------------------------------------------------------
def run_raw(b: Bench, names: list[str], tag: str, plugin_dir: str) -> list[float]:
    prefix = f"raw-{tag}"
    for i, n in enumerate(names):
        b.netns[n] = (f"{prefix}-{i}", b.cache["raw"])
    env = dict(os.environ, CNI_PATH=plugin_dir if plugin_dir == b.plugin_dir else f"{plugin_dir}:{b.plugin_dir}",
               BENCH_NAME=NET_NAME, BENCH_CNI_VERSION=CNI_VERSION, BENCH_BRIDGE_CONF=b.bridge_conf,
               BENCH_PORTMAP_CONF=b.portmap_conf, BENCH_PORTMAPPINGS=compact(PORT_MAPPINGS), BENCH_ID_PREFIX=prefix)
    proc = subprocess.run(["bash", str(HERE / "raw_cycle.sh"), *(f"/run/netns/{n}" for n in names)],
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"raw_cycle.sh failed: {proc.stderr.strip()}")
    return [int(x) / 1000 for x in proc.stdout.split()]


def run_inproc(b: Bench, names: list[str], tag: str, cni: libcni.CNI) -> list[float]:
    out = []
    for i, n in enumerate(names):
        rt = libcni.RuntimeConf(f"inproc-{tag}-{i}", f"/run/netns/{n}", "eth0", capability_args=b.cap_args)
        b.netns[n] = (rt.container_id, cni.cache_dir)
        t0 = time.perf_counter_ns()
        cni.add_network_list(b.net, rt)
        cni.del_network_list(b.net, rt)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


class RecordingExecutor(libcni.Executor):
    """The real executor, keeping each plugin's last stdout per command (for StubExecutor)."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: dict[tuple[str, str], bytes] = {}

    def run(self, plugin_path: str, stdin: bytes, args: libcni.PluginArgs) -> bytes:
        out = super().run(plugin_path, stdin, args)
        self.outputs[(os.path.basename(plugin_path), args.command)] = out
        return out


class _DoneChild:
    """What Executor.run needs of a spawned plugin that answered at once (spawn.Child's face)."""

    pid = -1
    returncode = 0

    def __init__(self, stdout: bytes) -> None:
        self.stdout = stdout

    def communicate(self, stdin: bytes, deadline: float | None, max_stdout: int, max_stderr: int) -> tuple[bytes, bytes]:
        return self.stdout, b""

    def kill(self) -> None:
        pass


class StubExecutor(libcni.Executor):
    """Executor.run as is (env, retry wrapper, stdin, error decoding) but no spawn: the
    plugin 'answers' instantly with what the real one printed. Measures libcni's own cost."""

    def __init__(self, outputs: dict[tuple[str, str], bytes]) -> None:
        super().__init__()
        self.outputs = outputs

    def _spawn_retrying(self, plugin_path: str, env: dict[str, str]) -> Any:  # type: ignore[override]
        return _DoneChild(self.outputs[(os.path.basename(plugin_path), env["CNI_COMMAND"])])


def run_stub(b: Bench, count: int, tag: str, cni: libcni.CNI) -> list[float]:
    out = []
    for i in range(count):
        rt = libcni.RuntimeConf(f"stub-{tag}-{i}", f"/run/netns/{NETNS_PREFIX}stub", "eth0", capability_args=b.cap_args)
        t0 = time.perf_counter_ns()
        cni.add_network_list(b.net, rt)
        cni.del_network_list(b.net, rt)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def run_cli(b: Bench, names: list[str], tag: str, plugin_dir: str) -> list[float]:
    exe = cri_net_exe()
    path = plugin_dir if plugin_dir == b.plugin_dir else f"{plugin_dir}:{b.plugin_dir}"
    env = dict(b.cli_env, NETCONFPATH=str(b.conf_dir), CNI_PATH=path, CAP_ARGS=compact(b.cap_args))
    out = []
    for n in names:
        netns = f"/run/netns/{n}"
        b.netns[n] = (container_id_for(netns), b.cache["cli"])
        t0 = time.perf_counter_ns()
        for cmd in ("add", "del"):
            proc = subprocess.run([exe, "cni", cmd, NET_NAME, netns, "--cache-dir", b.cache["cli"]],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if proc.returncode:
                raise RuntimeError(f"cri-net cni {cmd} failed: {proc.stderr.decode().strip()}")
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def cri_net_exe() -> str:
    exe = Path(sys.prefix) / "bin" / "cri-net"
    if not exe.exists():
        exe = REPO / ".venv" / "bin" / "cri-net"
    return str(exe)


# ---- stdin equivalence check (first warm-up cycle of each mode) ----------------------------
def make_recorder(b: Bench) -> tuple[str, Path]:
    """A plugin dir whose bridge/portmap save their stdin, then exec the real plugin
    (host-local is found further down CNI_PATH)."""
    rec, dump = b.tmp / "recorder", b.tmp / "stdin"
    rec.mkdir()
    dump.mkdir()
    for plugin in ("bridge", "portmap"):
        f = rec / plugin
        f.write_text(f'#!/bin/sh\nf="{dump}/$CNI_CONTAINERID.$CNI_COMMAND.{plugin}"\n'
                     f'cat > "$f"\nexec {b.plugin_dir}/{plugin} < "$f"\n')
        f.chmod(0o755)
    return str(rec), dump


def _skeleton(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _skeleton(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_skeleton(x) for x in v]
    return type(v).__name__


def check_stdin(dump: Path) -> str:
    """Each plugin's stdin in raw == in-process == CLI: same keys in the same order, same values,
    prevResult the same shape once parsed as libcni parses it (IPs/MACs differ per netns)."""
    seen: dict[str, dict[str, Any]] = {}
    for f in sorted(dump.iterdir()):
        cid, cmd, plugin = f.name.rsplit(".", 2)
        mode = "raw" if cid.startswith("raw-") else "inproc" if cid.startswith("inproc-") else "cli"
        doc = json.loads(f.read_text())
        if "prevResult" in doc:
            doc["prevResult"] = _skeleton(libcni.parse_result(doc["prevResult"], CNI_VERSION).to_dict())
        seen.setdefault(f"{cmd} {plugin}", {})[mode] = doc
    calls = ("ADD bridge", "ADD portmap", "DEL portmap", "DEL bridge")
    for call in calls:
        docs = seen.get(call, {})
        if set(docs) != set(MODES):
            raise RuntimeError(f"stdin check: {call} not recorded for {sorted(set(MODES) - set(docs))}")
        ref = docs["raw"]
        for mode in ("inproc", "cli"):
            if list(docs[mode].items()) != list(ref.items()):
                raise RuntimeError(f"stdin check: {call} differs, raw {compact(ref)} vs {mode} {compact(docs[mode])}")
    return f"stdin check: {len(calls)} plugin calls x 3 modes identical (keys, order, values; prevResult shape)"


# ---- CLI startup -----------------------------------------------------------------------------
def _time_run(argv: list[str], env: dict[str, str] | os._Environ[str]) -> float:
    t0 = time.perf_counter_ns()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return (time.perf_counter_ns() - t0) / 1e6


def startup_costs(b: Bench, runs: int) -> dict[str, Any]:
    exe, py = cri_net_exe(), sys.executable
    help_argv, bare_argv = [exe, "--help"], [py, "-c", "pass"]
    for _ in range(2):  # warm-up (and filling the bytecode cache)
        _time_run(help_argv, b.cli_env), _time_run(bare_argv, b.cli_env)
    help_ms, bare_ms = [], []
    for _ in range(runs):  # interleaved
        help_ms.append(_time_run(help_argv, b.cli_env))
        bare_ms.append(_time_run(bare_argv, b.cli_env))
    per_module: dict[str, list[tuple[int, int]]] = {}
    for _ in range(5):
        err = subprocess.run([py, "-X", "importtime", "-c", "import cri_net.cli.main"], env=b.cli_env,
                             capture_output=True, text=True, check=True).stderr
        for line in err.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
            if m:
                per_module.setdefault(m.group(4), []).append((int(m.group(1)), int(m.group(2))))
    med = {name: (statistics.median(s for s, _ in v), statistics.median(c for _, c in v))
           for name, v in per_module.items()}
    top = sorted(med.items(), key=lambda kv: -kv[1][1])[:15]
    out = {
        "cli_help_median_ms": statistics.median(help_ms), "cli_help_p90_ms": p90(help_ms),
        "python_bare_median_ms": statistics.median(bare_ms),
        "import_cri_net_cli_main_ms": med.get("cri_net.cli.main", (0, 0))[1] / 1000,
        "importtime_top": [{"module": n, "self_ms": s / 1000, "cumulative_ms": c / 1000} for n, (s, c) in top],
    }
    if b.cli_env is not os.environ and os.environ.get("PYTHONDONTWRITEBYTECODE"):
        nobc = [_time_run(help_argv, os.environ) for _ in range(max(5, runs // 2))]
        out["cli_help_no_bytecode_median_ms"] = statistics.median(nobc)
    return out


def bootstrap_ci(a: list[float], b: list[float], iters: int = 2000) -> tuple[float, float]:
    """90% bootstrap interval of median(a) - median(b)."""
    rnd = random.Random(0)
    diffs = sorted(statistics.median(rnd.choices(a, k=len(a))) - statistics.median(rnd.choices(b, k=len(b)))
                   for _ in range(iters))
    return diffs[int(0.05 * iters)], diffs[int(0.95 * iters) - 1]


# ---- main -------------------------------------------------------------------------------------
def _fstype(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    out = (sh("findmnt", "-n", "-o", "FSTYPE", "-T", path, check=False).stdout.split() or ["?"])[0]
    return out or "?"


def p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10, method="inclusive")[-1] if len(xs) > 1 else xs[0]


def preflight() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_libcni: needs root (netns, bridge, iptables): sudo .venv/bin/python benchmarks/bench_libcni.py")
    for plugin in ("bridge", "host-local", "portmap"):
        if not os.access(f"{PLUGIN_DIR}/{plugin}", os.X_OK):
            sys.exit(f"bench_libcni: {PLUGIN_DIR}/{plugin} missing (containernetworking-plugins)")
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        sys.exit(f"bench_libcni: {BRIDGE} exists (a killed run?); run with --cleanup-only first")
    if sh("ip", "-4", "-o", "route", "show", "root", SUBNET).stdout.strip() or \
            sh("ip", "-4", "-o", "addr", "show", "to", SUBNET).stdout.strip():
        sys.exit(f"bench_libcni: {SUBNET} is in use on this host")


def _sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=30, help="timed ADD+DEL cycles per mode (default 30)")
    ap.add_argument("--batch", type=int, default=5, help="cycles per mode per interleaved round (default 5)")
    ap.add_argument("--startup-runs", type=int, default=20, help="runs of `cri-net --help` (default 20)")
    ap.add_argument("--json", action="store_true", help="also print one machine-readable JSON line")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="run the CLI with the inherited environment (PYTHONDONTWRITEBYTECODE kept)")
    ap.add_argument("--cleanup-only", action="store_true", help="remove what a killed run left, then exit")
    opts = ap.parse_args()
    if opts.cleanup_only:
        return cleanup_leftovers()
    if opts.cycles < 1 or opts.batch < 1:
        ap.error("--cycles and --batch must be >= 1")
    preflight()

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _sigterm)
    bench = Bench(PLUGIN_DIR)
    if not opts.no_bytecode_cache:
        bench.cache_bytecode()

    def final_cleanup() -> None:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup short
        try:
            for problem in bench.cleanup():
                print(f"cleanup: {problem}", file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, old)

    atexit.register(final_cleanup)
    try:
        return _run(bench, opts)
    finally:
        final_cleanup()


def _run(bench: Bench, opts: argparse.Namespace) -> int:
    recorder, dump = make_recorder(bench)
    rec_exec = RecordingExecutor()
    warm_cni = libcni.CNI([PLUGIN_DIR], cache_dir=bench.cache["inproc"], executor=rec_exec)
    runners: dict[str, Callable[[list[str], str, str, libcni.CNI], list[float]]] = {
        "raw": lambda names, tag, pdir, _cni: run_raw(bench, names, tag, pdir),
        "inproc": lambda names, tag, _pdir, cni: run_inproc(bench, names, tag, cni),
        "cli": lambda names, tag, pdir, _cni: run_cli(bench, names, tag, pdir),
    }

    def batch(mode: str, count: int, tag: str, pdir: str = PLUGIN_DIR, cni: libcni.CNI | None = None) -> list[float]:
        names = bench.new_netns(count)
        out = runners[mode](names, tag, pdir, cni or bench.cni)
        bench.drop_netns(names)  # on failure they stay listed: cleanup() DELs what they hold first
        return out

    # Warm-up, untimed: 3 cycles per mode; the first goes through the stdin recorder.
    for mode in MODES:
        batch(mode, 1, "w0", recorder, libcni.CNI([recorder, PLUGIN_DIR], cache_dir=bench.cache["inproc"]))
        if WARMUP > 1:
            batch(mode, WARMUP - 1, "w", PLUGIN_DIR, warm_cni)
    check = check_stdin(dump)
    print(check, file=sys.stderr)
    stubs = {m: libcni.CNI([PLUGIN_DIR], cache_dir=bench.cache[m], executor=StubExecutor(rec_exec.outputs))
             for m in ("stub", "stub-tmpfs") if m in bench.cache}
    for cni in stubs.values():
        run_stub(bench, 10, "w", cni)

    samples: dict[str, list[float]] = {m: [] for m in (*MODES, *stubs)}
    rounds = math.ceil(opts.cycles / opts.batch)
    t_start = time.monotonic()
    for r in range(rounds):
        count = min(opts.batch, opts.cycles - r * opts.batch)
        for mode in MODES:
            samples[mode] += batch(mode, count, f"r{r}")
        for m, cni in stubs.items():
            samples[m] += run_stub(bench, STUB_PER_ROUND, f"r{r}", cni)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    elapsed = time.monotonic() - t_start

    startup = startup_costs(bench, opts.startup_runs)

    raw = samples["raw"]
    raw_med = statistics.median(raw)
    modes_out: dict[str, Any] = {}
    for mode in samples:
        xs = samples[mode]
        med = statistics.median(xs)
        modes_out[mode] = {"n": len(xs), "median_ms": med, "p90_ms": p90(xs), "min_ms": min(xs),
                           "samples_ms": [round(x, 3) for x in xs]}
        if mode in MODES:
            lo, hi = bootstrap_ci(xs, raw) if mode != "raw" else (0.0, 0.0)
            modes_out[mode].update(ratio_to_raw=med / raw_med, overhead_ms=med - raw_med, overhead_ci90_ms=[lo, hi])

    try:
        autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip()
    except OSError:
        autogroup = "n/a"
    bc = "bytecode cached (PYTHONPYCACHEPREFIX in the temp dir)" if bench.cli_env is not os.environ \
        else "environment as inherited"
    print()
    print(f"{opts.cycles} ADD+DEL cycles per mode (bridge+host-local+portmap, cniVersion {CNI_VERSION}), "
          f"{rounds} interleaved rounds of {opts.batch}, {WARMUP} warm-up cycles per mode, {elapsed:.0f}s; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print("timed: ADD+DEL only; netns add/del is done for every cycle of every mode, outside the timing")
    print(f"kernel.sched_autogroup_enabled={autogroup} (libcni starts each plugin in a new session)")
    print(check)
    print()
    print(f"{'mode':<8} {'median ms':>10} {'p90 ms':>9} {'min ms':>8} {'ratio':>7} {'overhead ms/cycle':>18}  "
          f"90% CI of overhead")
    for mode in MODES:
        m = modes_out[mode]
        ci = "" if mode == "raw" else f"[{m['overhead_ci90_ms'][0]:+.1f}, {m['overhead_ci90_ms'][1]:+.1f}]"
        print(f"{mode:<8} {m['median_ms']:>10.2f} {m['p90_ms']:>9.2f} {m['min_ms']:>8.2f} "
              f"{m['ratio_to_raw']:>7.3f} {m['overhead_ms']:>+18.2f}  {ci}")
    print()
    print("libcni's own cost per ADD+DEL cycle, plugins stubbed (no fork/exec; env, stdin, result parsing,")
    print("cache write (temp file, fsync, rename, dir fsync) and delete):")
    where = {"stub": f"cache on {_fstype(bench.cache['stub'])} (/var/lib: {_fstype('/var/lib')})",
             "stub-tmpfs": "cache on tmpfs (CPU only)"}
    for mode in stubs:
        st = modes_out[mode]
        print(f"  {where[mode]:<34} median {st['median_ms']:6.2f} ms  p90 {st['p90_ms']:6.2f} ms  (n={st['n']})")
    print()
    cli_extra = modes_out["cli"]["median_ms"] - modes_out["inproc"]["median_ms"]
    print(f"CLI startup ({bc}): `cri-net --help` median {startup['cli_help_median_ms']:.1f} ms "
          f"(p90 {startup['cli_help_p90_ms']:.1f}); bare `python -c pass` {startup['python_bare_median_ms']:.1f} ms; "
          f"`import cri_net.cli.main` {startup['import_cri_net_cli_main_ms']:.1f} ms")
    if "cli_help_no_bytecode_median_ms" in startup:
        print(f"  (with this shell's PYTHONDONTWRITEBYTECODE=1, every cri_net module compiled from source: "
              f"`cri-net --help` median {startup['cli_help_no_bytecode_median_ms']:.1f} ms)")
    print(f"CLI cycle - in-process cycle = {cli_extra:.1f} ms for 2 invocations (~{cli_extra / 2:.1f} ms each)")
    print("python -X importtime -c 'import cri_net.cli.main' (median of 5 runs), top 15 by cumulative:")
    print(f"  {'cumulative ms':>13} {'self ms':>8}  module")
    for e in startup["importtime_top"]:
        print(f"  {e['cumulative_ms']:>13.1f} {e['self_ms']:>8.1f}  {e['module']}")
    if opts.json:
        print(json.dumps({
            "cycles": opts.cycles, "batch": opts.batch, "warmup": WARMUP, "cni_version": CNI_VERSION,
            "cpus": os.cpu_count(), "loadavg_1m": os.getloadavg()[0], "sched_autogroup_enabled": autogroup,
            "timed": "ADD+DEL only; netns creation/deletion excluded in every mode",
            "cli_env": bc, "stdin_check": check, "modes": modes_out, "cli_minus_inproc_ms": cli_extra, **startup,
        }))
    return 0


if __name__ == "__main__":
    from integration import hostlock  # held for the whole run, as an integration session holds it

    with hostlock.hold(lambda line: print(line, file=sys.stderr, flush=True)):
        sys.exit(main())
