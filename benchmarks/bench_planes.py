"""A pod with a default network and two extra planes (bridge + host-local each, each on its
own bridge and subnet): attached through cri-net with parallel planes and with the
sequential path, against the same plugins run one after another by a shell loop
(planes_cycle.sh), all in one run, in interleaved batches. The same shell loop with the
planes run concurrently ("raw-parallel") shows the floor this machine sets for concurrent
planes (2 cores; the kernel's RTNL lock serializes the link changes of every plane).

    sudo .venv/bin/python benchmarks/bench_planes.py [--cycles 20] [--quick] [--json] [--cleanup-only]

cri-net runs in-process through the CRI adaptor (`adaptors.cri.CRIAdaptor`: what `cri-net
serve` and the CNI hook run for a pod's networks), so the ratio is the planes' own cost;
the RPC around it is measured by bench_serve.py. The netns is created and deleted outside
the timing in every mode. Timed: the attach (loopback + 3 planes) and the detach.
Target: the parallel attach within 0.6x of the shell loop's sequential time.

containerd calling the three networks itself (go-cni, max_conf_num = 3) against containerd
with cri-net-cni attaching them is bench_containerd_planes.py (containerd's pod cycle).

Everything lives in a fresh /tmp/crinet-planes-* dir (conf, cache, leases); the bridges are
crinetbp0..2 on 10.234.{0,1,2}.0/24 (no ipMasq: no iptables rules). Cleanup runs in finally,
atexit and on SIGTERM/Ctrl-C; `--cleanup-only` removes what a SIGKILLed run left.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adaptors.cri import CRIAdaptor  # noqa: E402
from cri_net import config  # noqa: E402
from cri_net.network import NetworkApiConf  # noqa: E402
from adaptors.cri import annotations as ann  # noqa: E402

PLUGIN_DIR = "/usr/lib/cni"
CNI_VERSION = "1.0.0"
BRIDGES = ("crinetbp0", "crinetbp1", "crinetbp2")
NETS = ("crinet-bp-default", "crinet-bp-a", "crinet-bp-b")
NETNS_PREFIX = "crinetbp-"
TARGET = 0.6
CYCLE_SH = ROOT / "benchmarks" / "planes_cycle.sh"


def plugin_conf(i: int, lease_dir: Path) -> dict[str, Any]:
    return {"type": "bridge", "bridge": BRIDGES[i], "isGateway": True, "ipMasq": False,
            "ipam": {"type": "host-local", "dataDir": str(lease_dir),
                     "ranges": [[{"subnet": f"10.234.{i}.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}}


class Bench:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="crinet-planes-"))
        self.conf_dir = self.tmp / "net.d"
        self.leases = self.tmp / "leases"
        self.conf_dir.mkdir()
        self.planes = []  # (name, ifname, compact conf) in request order: extras, then the default
        for i, ifname in ((1, "net1"), (2, "net2"), (0, "eth0")):
            conf = plugin_conf(i, self.leases)
            # file names must not start with "crinet-": the CRI adaptor leaves those to the native one
            (self.conf_dir / f"{10 + i}-bp{i}.conflist").write_text(json.dumps(
                {"cniVersion": CNI_VERSION, "name": NETS[i], "plugins": [conf]}))
            self.planes.append((NETS[i], ifname, json.dumps(conf, separators=(",", ":"))))
        self.adaptors = {p: CRIAdaptor(config.build(None, {
            "conf_dir": str(self.conf_dir), "bin_dirs": [PLUGIN_DIR], "cache_dir": str(self.tmp / f"cache-{p}"),
            "default_network": NETS[0], "parallel_attach": p == "parallel", "plugin_timeout": 60}))
            for p in ("parallel", "sequential")}
        self.live: dict[str, tuple[str, NetworkApiConf | None]] = {}  # netns name -> (mode, conf)
        self.seq = 0

    def conf(self, name: str) -> NetworkApiConf:
        extras = [{"name": NETS[1], "interface": "net1"}, {"name": NETS[2], "interface": "net2"}]
        return NetworkApiConf(name=name, namespace="bench", pod_id=name, pod_uid=name,
                              netns_path=f"/run/netns/{name}",
                              annotations={ann.EXTRA_NETWORKS_ANNOTATION: json.dumps(extras)})

    def netns(self) -> str:
        self.seq += 1
        name = f"{NETNS_PREFIX}{os.getpid()}-{self.seq}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        return name

    def drop_netns(self, name: str) -> None:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        self.live.pop(name, None)

    def cycle(self, mode: str) -> tuple[float, float]:
        """One pod: (attach ms, detach ms)."""
        name = self.netns()
        try:
            if mode in ("raw", "raw-parallel"):
                self.live[name] = (mode, None)
                env = dict(os.environ, BENCH_NETNS=f"/run/netns/{name}", BENCH_ID=name, CNI_PATH=PLUGIN_DIR,
                           BENCH_CNI_VERSION=CNI_VERSION, BENCH_PLANES="\n".join("|".join(p) for p in self.planes),
                           BENCH_PARALLEL="1" if mode == "raw-parallel" else "0")
                proc = subprocess.run(["bash", str(CYCLE_SH)], env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise RuntimeError(f"planes_cycle.sh failed: {proc.stderr.strip()}")
                add_us, del_us = (int(x) for x in proc.stdout.split())
                return add_us / 1000, del_us / 1000
            a = self.adaptors[mode]
            conf = self.conf(name)
            self.live[name] = (mode, conf)
            t0 = time.perf_counter()
            a.attach(conf)
            t1 = time.perf_counter()
            a.detach(conf)
            t2 = time.perf_counter()
            return (t1 - t0) * 1000, (t2 - t1) * 1000
        finally:
            self.drop_netns(name)

    def cleanup(self) -> list[str]:
        left = []
        for name, (mode, conf) in list(self.live.items()):
            if conf is not None:
                try:
                    self.adaptors[mode].detach(conf)
                except Exception as exc:  # noqa: BLE001 - report, go on
                    left.append(f"detach {name}: {exc}")
            self.drop_netns(name)
        for a in self.adaptors.values():
            a.close()
        left += cleanup_host()
        leases = [p for p in self.leases.rglob("*") if p.is_file() and not p.name.startswith(("last_reserved", "lock"))] \
            if self.leases.exists() else []
        left += [f"lease {p}" for p in leases]
        shutil.rmtree(self.tmp, ignore_errors=True)
        return left


def cleanup_host() -> list[str]:
    """Bridges and netns of this benchmark (also those of a SIGKILLed run)."""
    left = []
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(NETNS_PREFIX):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    for br in BRIDGES:
        if subprocess.run(["ip", "link", "show", br], capture_output=True).returncode == 0:
            subprocess.run(["ip", "link", "del", br], capture_output=True)
            if subprocess.run(["ip", "link", "show", br], capture_output=True).returncode == 0:
                left.append(f"bridge {br}")
    return left


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def p90(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * 0.9))] if xs else float("nan")


def revision() -> str:
    proc = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or "unknown"


def run(bench: Bench, cycles: int, batch: int, warmup: int) -> dict[str, Any]:
    modes = ["raw", "raw-parallel", "parallel", "sequential"]
    for mode in modes:
        for _ in range(warmup):
            bench.cycle(mode)
    times: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    rnd = 0
    while min(len(v) for v in times.values()) < cycles:
        order = modes[rnd % len(modes):] + modes[:rnd % len(modes)]  # rotate: load drift hits every mode alike
        for mode in order:
            for _ in range(min(batch, cycles - len(times[mode]))):
                times[mode].append(bench.cycle(mode))
        rnd += 1
    out: dict[str, Any] = {}
    for mode, ts in times.items():
        add, dele = [t[0] for t in ts], [t[1] for t in ts]
        out[mode] = {"attach_median_ms": round(median(add), 2), "attach_p90_ms": round(p90(add), 2),
                     "detach_median_ms": round(median(dele), 2), "detach_p90_ms": round(p90(dele), 2),
                     "cycle_median_ms": round(median([a + d for a, d in ts]), 2), "n": len(ts)}
    return out


def figures(res: dict[str, Any]) -> dict[str, Any]:
    raw = res["raw"]
    figs: dict[str, Any] = {}

    def ratio(mode: str, key: str) -> float:
        return round(res[mode][key] / raw[key], 3) if raw[key] else float("nan")

    figs["raw_attach_ms"] = {"label": "3-plane attach, plugins run one after another by a shell loop (median)",
                             "value": raw["attach_median_ms"], "unit": "ms"}
    par = ratio("parallel", "attach_median_ms")
    figs["parallel_attach_ms"] = {"label": "3-plane attach through cri-net, parallel planes (median)",
                                  "value": res["parallel"]["attach_median_ms"], "unit": "ms",
                                  "target": f"<= {TARGET}x raw", "pass": par <= TARGET, "vs_raw": par}
    figs["raw_parallel_attach_ms"] = {"label": "3-plane attach, the shell loop with the planes run concurrently (median)",
                                      "value": res["raw-parallel"]["attach_median_ms"], "unit": "ms",
                                      "vs_raw": ratio("raw-parallel", "attach_median_ms"),
                                      "note": "this machine's floor for concurrent planes (cores, RTNL)"}
    figs["parallel_vs_raw_parallel"] = {"label": "3-plane attach through cri-net, parallel, vs the concurrent shell loop",
                                        "value": round(res["parallel"]["attach_median_ms"]
                                                       / res["raw-parallel"]["attach_median_ms"], 3), "unit": "x"}
    figs["sequential_attach_ms"] = {"label": "3-plane attach through cri-net, parallel_attach=false (median)",
                                    "value": res["sequential"]["attach_median_ms"], "unit": "ms",
                                    "vs_raw": ratio("sequential", "attach_median_ms")}
    figs["raw_detach_ms"] = {"label": "3-plane detach, shell loop (median)", "value": raw["detach_median_ms"],
                             "unit": "ms"}
    for mode in ("parallel", "sequential"):
        figs[f"{mode}_detach_ms"] = {"label": f"3-plane detach through cri-net, {mode} (median)",
                                     "value": res[mode]["detach_median_ms"], "unit": "ms",
                                     "vs_raw": ratio(mode, "detach_median_ms")}
        figs[f"{mode}_cycle_ms"] = {"label": f"3-plane attach+detach through cri-net, {mode} (median)",
                                    "value": res[mode]["cycle_median_ms"], "unit": "ms",
                                    "vs_raw": ratio(mode, "cycle_median_ms")}
    return figs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=20, help="timed cycles per mode (default 20; quick 6)")
    p.add_argument("--batch", type=int, default=5)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", action="store_true", help="print one JSON line with every figure at the end")
    p.add_argument("--cleanup-only", action="store_true")
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_planes: needs root (netns, bridges)", file=sys.stderr)
        return 1
    if a.cleanup_only:
        left = cleanup_host()
        print("left: " + ", ".join(left) if left else "clean")
        return 3 if left else 0
    cycles = 6 if a.quick else a.cycles
    cleanup_host()
    bench = Bench()
    done = False

    def finish() -> list[str]:
        nonlocal done
        if done:
            return []
        done = True
        return bench.cleanup()

    atexit.register(finish)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    load_start = os.getloadavg()
    t0 = time.monotonic()
    try:
        res = run(bench, cycles, a.batch, warmup=1 if a.quick else 2)
    except KeyboardInterrupt:
        finish()
        return 130
    finally:
        left = finish()
    load_end = os.getloadavg()
    figs = figures(res)
    print(f"3-plane pod (default + 2 extras, bridge + host-local each), {cycles} cycles per mode in rotated "
          f"batches of {a.batch}, {time.monotonic() - t0:.0f}s; load average {load_start[0]:.2f} -> {load_end[0]:.2f}; "
          f"revision {revision()}")
    print(f"{'mode':<12}{'attach ms':>11}{'p90':>9}{'detach ms':>11}{'p90':>9}{'cycle ms':>10}")
    for mode, r in res.items():
        print(f"{mode:<12}{r['attach_median_ms']:>11.1f}{r['attach_p90_ms']:>9.1f}{r['detach_median_ms']:>11.1f}"
              f"{r['detach_p90_ms']:>9.1f}{r['cycle_median_ms']:>10.1f}")
    for key, f in figs.items():
        if f.get("unit") == "x":
            print(f"  {f['label']}: {f['value']:.2f}x")
        if f.get("vs_raw") is not None:
            verdict = "" if "pass" not in f else (" pass" if f["pass"] else " MISS")
            print(f"  {f['label']}: {f['vs_raw']:.2f}x raw{(' (target ' + f['target'] + ')') if 'target' in f else ''}"
                  f"{verdict}")
    print("cleanup: " + ("clean" if not left else "LEFT " + ", ".join(left)))
    if a.json:
        print(json.dumps({"bench": "bench_planes", "figures": figs, "modes": res, "cycles": cycles,
                          "loadavg_start": round(load_start[0], 2), "loadavg_end": round(load_end[0], 2),
                          "revision": revision()}))
    return 3 if left else 0


if __name__ == "__main__":
    from integration import hostlock  # held for the whole run, as an integration session holds it

    with hostlock.hold(lambda line: print(line, file=sys.stderr, flush=True)):
        sys.exit(main())
