#!/usr/bin/env python3
"""A pod with three networks through containerd: containerd calling the three networks
itself against containerd calling cri-net-cni, which attaches them, in one run.

    sudo .venv/bin/python benchmarks/bench_containerd_planes.py [--cycles 20] [--quick] [--json]

Two isolated containerd 1.6 + crun instances (integration/containerd/harness.py), both up
at once, each pod getting three bridge + host-local networks (no ipMasq, no portmap: no
iptables rules):

* A: three conflists in containerd's conf dir and `max_conf_num = 3`: go-cni attaches them
  itself, concurrently, as eth0, eth1, eth2 (bridges crinetbq0..2, 10.235.{0,1,2}.0/24), and
  rolls nothing back when one fails.
* B: containerd's conf dir holds one `cri-net` plugin (the native launcher that `cri-net
  cni-plugin install` writes, handing each call to a `cri-net serve` beside it, the README's
  set-up); cri-net's own conf dir holds the three networks (crinetbq3..5,
  10.235.{3,4,5}.0/24), the pod names the two extra ones in `network.alpha.kubernetes.io/network`
  (eth1, eth2), and cri-net attaches them with parallel planes and full rollback.

containerd attaches loopback itself in both. A cycle is RunPodSandbox + StopPodSandbox +
RemovePodSandbox, in interleaved batches (A B B A ...) after warm-up cycles. Reported: each
side's cycle and RunPodSandbox medians, B/A ratios with a 90% bootstrap interval.

Everything made (containerds, pods, netns, the six bridges, leases, containerd's libcni
cache entries, the temp dir) is removed in finally/atexit, also on Ctrl-C or SIGTERM;
leftovers are reported (exit 3). After a SIGKILL, run `--cleanup-only`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.bench_containerd import (  # noqa: E402
    BenchError, Interrupted, bootstrap_ratio, interleaved_cycles, pod_cycle, side_stats, start_serve,
    stop_between_cycles, stop_containerds)
from cri_net.cri.client import CRIClient  # noqa: E402
from cri_net.cri.pb.runtime.v1 import api_pb2 as pb  # noqa: E402
from integration.containerd.harness import NETNS_DIR, ContainerdEnv, HarnessError, containerd_env, mounts_under  # noqa: E402

CNI_DIR = "/usr/lib/cni"
VENV_BIN = REPO / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python")
HOST_CACHE = Path("/var/lib/cni")  # containerd 1.6's libcni cache (not configurable)
PREFIX = "crinetbq"
BRIDGES = tuple(f"{PREFIX}{i}" for i in range(6))  # A: 0..2, B: 3..5
SUBNET_RE = re.compile(r"inet 10\.235\.[0-5]\.")
NETS_A = tuple(f"{PREFIX}-a{i}" for i in range(3))
NETS_B = tuple(f"{PREFIX}-b{i}" for i in range(3))
RUNTIME_NET_B = f"{PREFIX}-rt"
ALL_NETS = (*NETS_A, *NETS_B, RUNTIME_NET_B)
EXTRA_ANNOTATION = "network.alpha.kubernetes.io/network"


def log(msg: str) -> None:
    # one write(2), not print: this runs in signal handlers too, where a print that lands inside
    # another print's buffered write raises "reentrant call"
    os.write(2, f"[bench_containerd_planes {time.strftime('%H:%M:%S')}] {msg}\n".encode(errors="replace"))


def _listdir(path: Path | str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def network(name: str, index: int, ipam_dir: Path) -> dict[str, Any]:
    """bridge + host-local on bridge crinetbq<index>, 10.235.<index>.0/24; no iptables rules."""
    return {"cniVersion": "1.0.0", "name": name, "plugins": [
        {"type": "bridge", "bridge": BRIDGES[index], "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": f"10.235.{index}.0/24"}]],
                  "dataDir": str(ipam_dir)}}]}


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
        os.chmod(self.tmp, 0o755)
        self.stack = contextlib.ExitStack()
        self.envs: dict[str, ContainerdEnv] = {}
        self.clients: dict[str, CRIClient] = {}
        self.bridges_before = {b for b in BRIDGES if Path(f"/sys/class/net/{b}").exists()}
        self.netns_before = set(_listdir(NETNS_DIR))
        self.sandbox_ids: set[str] = set()
        self.results: dict[str, Any] = {}
        self.leftovers: list[str] = []
        self.cleaned = self.stopped = self.in_cycle = False
        self.pending_signal: str | None = None
        # no bytecode writes into the repository; every Python process gets a cache in the temp dir
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(self.tmp / "pycache")
        self.ipam = self.tmp / "ipam"
        self.conf_dir = self.tmp / "crinet-net.d"
        self.launcher_dir = self.tmp / "launcher"
        self.serve_dir = self.tmp / "serve"
        for d in (self.ipam, self.conf_dir, self.launcher_dir, self.serve_dir):
            d.mkdir(parents=True)
        for i, name in enumerate(NETS_B):
            (self.conf_dir / f"{10 + 10 * i}-{name}.conflist").write_text(json.dumps(network(name, 3 + i, self.ipam)))
        self.runtime_conf_b = {"cniVersion": "1.0.0", "name": RUNTIME_NET_B, "plugins": [
            {"type": "cri-net", "confDir": str(self.conf_dir), "cacheDir": str(self.tmp / "crinet-cache"),
             "binDirs": [CNI_DIR], "defaultNetwork": NETS_B[0], "daemonSocket": str(self.serve_dir / "cni.sock"),
             "capabilities": {"io.kubernetes.cri.pod-annotations": True}}]}
        from cri_net.plugin.launcher import install

        install(str(self.launcher_dir), "cri-net", python=PYTHON, native=True)
        self.serve: subprocess.Popen[bytes] | None = None

    # ---- set-up -----------------------------------------------------------------------
    def start(self) -> None:
        self.serve = start_serve(self.serve_dir)
        log(f"temp dir {self.tmp}; starting containerd A (3 networks, max_conf_num 3) and B (cri-net-cni)")
        a_nets = [network(name, i, self.ipam) for i, name in enumerate(NETS_A)]
        for key, conf, extra, bins in (("A", a_nets[0], a_nets[1:], [CNI_DIR]),
                                       ("B", self.runtime_conf_b, [], [str(self.launcher_dir), CNI_DIR])):
            try:
                env = self.stack.enter_context(containerd_env(self.tmp / key.lower(), conf, bins, extra_cni_confs=extra))
            except HarnessError as exc:
                raise BenchError(f"cannot run containerd {key} on this host: {exc}") from None
            self.envs[key] = env
            self.clients[key] = env.client(timeout=120)

    # ---- the pod cycle ----------------------------------------------------------------
    def pod_config(self, key: str, name: str) -> pb.PodSandboxConfig:
        annotations = {} if key == "A" else {EXTRA_ANNOTATION: json.dumps(
            [{"name": NETS_B[1], "interface": "eth1"}, {"name": NETS_B[2], "interface": "eth2"}])}
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, namespace="default", uid=secrets.token_hex(8), attempt=0),
            labels={"crinet-bench": name}, annotations=annotations, linux=pb.LinuxPodSandboxConfig())

    def cycle(self, key: str, name: str, check: bool = False) -> tuple[float, float, float]:
        return pod_cycle(self, self.clients[key], self.pod_config(key, name),
                         (lambda sid: self.check_interfaces(key, sid)) if check else None)

    def check_interfaces(self, key: str, sid: str) -> None:
        """The first pod of each side really has eth0, eth1 and eth2 on its three subnets."""
        resp = self.clients[key].runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True),
                                                          timeout=30)
        info = json.loads(resp.info.get("info") or "{}")
        path = next((ns.get("path") for ns in (info.get("runtimeSpec") or {}).get("linux", {}).get("namespaces", [])
                     if ns.get("type") == "network"), None)
        if not path:
            raise BenchError(f"containerd {key}: no netns path in the pod's status")
        out = subprocess.run(["nsenter", f"--net={path}", "ip", "-4", "-o", "addr"], capture_output=True, text=True,
                             timeout=30).stdout
        base = 0 if key == "A" else 3
        for i, ifname in enumerate(("eth0", "eth1", "eth2")):
            if not re.search(rf"\d+: {ifname}\s+inet 10\.235\.{base + i}\.", out):
                raise BenchError(f"containerd {key}: {ifname} has no address in 10.235.{base + i}.0/24:\n{out}")

    def run_cycles(self) -> None:
        n, warm, batch = self.args.cycles, self.args.warmup, self.args.batch
        log(f"warm-up: {warm} cycle(s) per side; the first checks eth0..eth2 of each side's pod")
        for i in range(warm):
            for key in ("A", "B"):
                self.cycle(key, f"bq-{key.lower()}-w{i}", check=i == 0)
        times = interleaved_cycles(lambda key, i: self.cycle(key, f"bq-{key.lower()}-{i}"), n, batch)
        out: dict[str, Any] = {key: side_stats(times[key]) for key in ("A", "B")}
        ca, cb = [sum(t) for t in times["A"]], [sum(t) for t in times["B"]]
        ra, rb = [t[0] for t in times["A"]], [t[0] for t in times["B"]]
        out["ratio"] = out["B"]["median"] / out["A"]["median"]
        out["ratio_ci90"] = bootstrap_ratio(ca, cb)
        out["run_ratio"] = out["B"]["run_median"] / out["A"]["run_median"]
        out["run_ratio_ci90"] = bootstrap_ratio(ra, rb)
        self.results["cycle"] = out

    # ---- teardown -----------------------------------------------------------------------
    def our_netns(self) -> list[str]:
        """containerd's pod netns made during the run that hold an address of ours."""
        out = []
        for name in sorted(set(_listdir(NETNS_DIR)) - self.netns_before):
            addrs = subprocess.run(["ip", "netns", "exec", name, "ip", "-4", "-o", "addr"], capture_output=True,
                                   text=True, timeout=30).stdout
            if SUBNET_RE.search(addrs):
                out.append(name)
        return out

    def cleanup(self) -> None:
        if self.cleaned:
            return
        self.cleaned = True
        try:
            stop_containerds(self)
        except Exception as exc:  # noqa: BLE001 - cleanup carries on
            self.leftovers.append(f"teardown failed: {exc}")
        for name in self.our_netns():
            log(f"removing netns {name} (an address of ours; left by containerd)")
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        for b in BRIDGES:
            if b not in self.bridges_before and Path(f"/sys/class/net/{b}").exists():
                subprocess.run(["ip", "link", "del", b], capture_output=True, timeout=30)
        for f in _listdir(HOST_CACHE / "results"):
            if any(f.startswith(f"{n}-") for n in ALL_NETS) or any(s in f for s in self.sandbox_ids):
                (HOST_CACHE / "results" / f).unlink(missing_ok=True)
        self.leftovers += self.check_leftovers()
        if not [x for x in self.leftovers if x.startswith("mount")]:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def check_leftovers(self) -> list[str]:
        out = [f"netns {NETNS_DIR / n}" for n in self.our_netns()]
        out += [f"bridge {b}" for b in BRIDGES if b not in self.bridges_before and Path(f"/sys/class/net/{b}").exists()]
        out += [f"mount {m}" for m in mounts_under([self.tmp])]
        for f in _listdir(HOST_CACHE / "results"):
            if any(f.startswith(f"{n}-") for n in ALL_NETS) or any(s in f for s in self.sandbox_ids):
                out.append(f"cache {HOST_CACHE / 'results' / f}")
        out += [f"lease {p}" for p in self.ipam.glob("*/*") if re.fullmatch(r"[0-9.]+", p.name)]
        return out


def cleanup_only() -> int:
    """What a SIGKILLed run left: bridges crinetbq*, pod netns on 10.235.0-5, temp dirs."""
    gone = []
    for b in BRIDGES:
        if Path(f"/sys/class/net/{b}").exists():
            subprocess.run(["ip", "link", "del", b], capture_output=True, timeout=30)
            gone.append(f"bridge {b}")
    for name in _listdir(NETNS_DIR):
        addrs = subprocess.run(["ip", "netns", "exec", name, "ip", "-4", "-o", "addr"], capture_output=True,
                               text=True, timeout=30).stdout
        if SUBNET_RE.search(addrs):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
            gone.append(f"netns {name}")
    for f in _listdir(HOST_CACHE / "results"):
        if any(f.startswith(f"{n}-") for n in ALL_NETS):
            (HOST_CACHE / "results" / f).unlink(missing_ok=True)
            gone.append(f"cache {f}")
    for d in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*"):
        if not mounts_under([d]):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(f"dir {d}")
    print("removed: " + (", ".join(gone) or "nothing"))
    return 0


def report(res: dict[str, Any]) -> None:
    c = res.get("cycle")
    print(f"\nbench_containerd_planes: a pod with 3 networks (bridge + host-local each) through containerd 1.6; "
          f"{os.cpu_count()} CPUs, load average {res['loadavg_start'][0]:.2f} at start, {res['loadavg_end'][0]:.2f} at end")
    if not c:
        print("no cycles measured")
        return
    print("side                                        cycle median  p90       RunPodSandbox  Stop     Remove   n")
    for key, label in (("A", "A: containerd calls the 3 networks (go-cni)"), ("B", "B: containerd + cri-net-cni (3 planes)")):
        s = c[key]
        print(f"{label:<44}{s['median'] * 1e3:8.1f} ms  {s['p90'] * 1e3:7.1f} ms  {s['run_median'] * 1e3:8.1f} ms  "
              f"{s['stop_median'] * 1e3:6.1f}   {s['remove_median'] * 1e3:6.1f}   {s['n']}")
    lo, hi = c["ratio_ci90"]
    rlo, rhi = c["run_ratio_ci90"]
    print(f"B/A pod cycle (median): {c['ratio']:.3f} (90% bootstrap {lo:.3f}..{hi:.3f}); "
          f"RunPodSandbox: {c['run_ratio']:.3f} ({rlo:.3f}..{rhi:.3f})")


def figures(res: dict[str, Any]) -> dict[str, Any]:
    """run_all's rows: each side's medians, B against A (A is the baseline: "vs raw")."""
    c = res.get("cycle")
    if not c:
        return {}
    a, b = c["A"], c["B"]
    note = "vs raw = vs containerd calling the three networks itself"
    lo, hi = c["ratio_ci90"]
    rlo, rhi = c["run_ratio_ci90"]
    return {
        "containerd_cycle_ms": {"label": "3-network pod cycle, containerd calling the networks (go-cni, median)",
                                "value": round(a["median"] * 1e3, 2), "unit": "ms"},
        "crinet_cycle_ms": {"label": "3-network pod cycle, containerd + cri-net-cni, 3 planes (median)",
                            "value": round(b["median"] * 1e3, 2), "unit": "ms", "vs_raw": round(c["ratio"], 3),
                            "note": f"{note}; 90% bootstrap {lo:.3f}..{hi:.3f}"},
        "containerd_run_ms": {"label": "3-network RunPodSandbox, containerd calling the networks (median)",
                              "value": round(a["run_median"] * 1e3, 2), "unit": "ms"},
        "crinet_run_ms": {"label": "3-network RunPodSandbox, containerd + cri-net-cni (median)",
                          "value": round(b["run_median"] * 1e3, 2), "unit": "ms", "vs_raw": round(c["run_ratio"], 3),
                          "note": f"{note}; 90% bootstrap {rlo:.3f}..{rhi:.3f}"},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=20, help="measured cycles per side (default 20; quick 6)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up cycles per side (default 2)")
    p.add_argument("--batch", type=int, default=5, help="cycles per interleaved batch (default 5)")
    p.add_argument("--quick", action="store_true", help="6 cycles per side")
    p.add_argument("--json", action="store_true", help="also print one JSON line on stdout")
    p.add_argument("--cleanup-only", action="store_true", help="remove what a SIGKILLed run left, then exit")
    args = p.parse_args(argv)
    if args.quick:
        args.cycles = 6
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench_containerd_planes: needs root (containerd, netns, bridges)")
    if args.cleanup_only:
        return cleanup_only()
    bench = Bench(args)
    atexit.register(bench.cleanup)
    stop_between_cycles(bench)
    status = 0
    bench.results["loadavg_start"] = os.getloadavg()
    try:
        bench.start()
        bench.run_cycles()
    except Interrupted as exc:
        log(f"interrupted ({exc}); cleaning up")
        status = 130
    except (BenchError, HarnessError, subprocess.SubprocessError, OSError) as exc:
        log(f"failed: {exc}")
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # cleanup must not be cut short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.cleanup()
    bench.results["loadavg_end"] = os.getloadavg()
    report(bench.results)
    if bench.leftovers:
        print("\ncleanup: LEFT BEHIND:\n  " + "\n  ".join(bench.leftovers))
        status = status or 3
    else:
        print("\ncleanup: nothing left behind (containerds, pods, netns, bridges, leases, caches, temp dir)")
    if args.json:
        for side in ("A", "B"):
            bench.results.get("cycle", {}).get(side, {}).pop("all", None)
        print(json.dumps({"benchmark": "bench_containerd_planes", "ok": status == 0, "figures": figures(bench.results),
                          "leftovers": bench.leftovers, **bench.results}, default=str))
    return status


if __name__ == "__main__":
    from integration import hostlock  # held for the whole run, as an integration session holds it

    with hostlock.hold(lambda line: print(line, file=sys.stderr, flush=True)):
        sys.exit(main())
