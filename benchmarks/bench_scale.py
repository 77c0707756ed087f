#!/usr/bin/env python3
"""Scale benchmark: 1,024 network configs and 10,000 cached attachments, each against raw.

    .venv/bin/python benchmarks/bench_scale.py [--quick] [--json] [--profile]

Nothing here touches the host's network: every file lives in a fresh `/tmp/crinet-scale-*`
dir that is removed at the end, and the only plugin executed is Debian's `loopback`, whose DEL
returns at once when the attachment's netns path does not exist (none of them do). It measures:

1. Config load. 1,024 realistic conflists (bridge + host-local + portmap, distinct network
   names, bridges and subnets) in a conf dir, loaded through `cri_net.operator.loader.
   load_networks` and through `CNIOperator.update()` (which adds the reload bookkeeping).
   Median of N loads each, interleaved with the raw baseline: `os.listdir`, sort, `open().read()`
   and `json.loads` of the same files. Target: <= 150 ms.
2. Listing cached attachments. 10,000 cache files in Go libcni's cniCacheV1 format, written by
   `cri_net.libcni.ResultCache.write` (a bridge-like 1.0.0 result, K8S_POD_* args, a port
   mapping, the conflist in `config`), listed with `CNI.cached_attachments()`. Median of N,
   interleaved with the raw baseline: listdir + read + `json.loads` of every file.
   Target: <= 1 s.
3. GC. `CNI.gc_network_list()` of the network the attachments belong to, on a copy of that
   cache dir, with half of them passed as valid: the other half is DELeted (prevResult from
   the cache, the real loopback plugin executed) and the cache files removed. The raw baseline
   does the same on another copy: listdir, read + json.loads of each file, then for each stale
   one the plugin DEL (same stdin and CNI_* variables, spawned with subprocess like libcni)
   and an unlink. GC is destructive, so each run gets its own copy; the runs go raw, cri-net,
   cri-net, raw and the mean per side is reported. No target: the time is reported.

When a target is missed (or with --profile) the missed operation is run once more under
cProfile and the top functions are printed and put in the JSON (`profiles`).

`--json` prints one JSON line on stdout: `figures` in the same shape as bench_serve.py's
(key -> label, value, unit, target, pass, vs_raw, note). Exit 0 when the run completed (misses
are reported, not fatal), 2 on a miss with --fail-on-miss, 1 when the benchmark failed.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import platform
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cri_net import libcni  # noqa: E402
from cri_net.operator.loader import load_networks  # noqa: E402
from cri_net.operator.operator import CNIOperator  # noqa: E402

CNI_BIN_CANDIDATES = ("/opt/cni/bin", "/usr/lib/cni")
GC_NETWORK = "crinet-scale"
CONFIG_TARGET_MS = 150.0
LIST_TARGET_S = 1.0


class BenchError(RuntimeError):
    pass


def log(msg: str) -> None:
    # one write(2), not print: this runs in signal handlers too, where a print that lands inside
    # another print's buffered write raises "reentrant call"
    os.write(2, f"[bench_scale {time.strftime('%H:%M:%S')}] {msg}\n".encode(errors="replace"))


def now() -> float:
    return time.perf_counter()


def find_plugin(name: str) -> str:
    for d in CNI_BIN_CANDIDATES:
        if os.path.isfile(os.path.join(d, name)) and os.access(os.path.join(d, name), os.X_OK):
            return d
    raise BenchError(f"no CNI plugin {name!r} in {CNI_BIN_CANDIDATES}")


def p90(values: list[float]) -> float:
    s = sorted(values)
    return s[max(0, -(-len(s) * 9 // 10) - 1)]


# ---------------------------------------------------------------------------------------------
# report


@dataclass
class Figure:
    key: str
    label: str
    value: float
    unit: str
    target: str = ""
    ok: bool | None = None
    vs_raw: float | None = None
    note: str = ""


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, list[str]] = field(default_factory=dict)

    def add(self, *args: Any, **kw: Any) -> Figure:
        f = Figure(*args, **kw)
        self.figures.append(f)
        return f

    def table(self) -> str:
        rows = [("figure", "value", "target", "result", "vs raw")]
        for f in self.figures:
            val = f"{f.value:.1f} {f.unit}" if f.unit == "ms" else f"{f.value:.3f} {f.unit}"
            res = "" if f.ok is None else ("pass" if f.ok else "MISS")
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
                "profiles": self.profiles, **self.details}


def profile(fn: Callable[[], Any], top: int = 15) -> list[str]:
    """Run `fn` once under cProfile; the top functions by own time, then by cumulative time."""
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    lines: list[str] = []
    for order in ("tottime", "cumulative"):
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.strip_dirs().sort_stats(order).print_stats(top)
        text = buf.getvalue().splitlines()
        start = next((i for i, ln in enumerate(text) if ln.lstrip().startswith("ncalls")), 0)
        total = next((ln.strip() for ln in text if "function calls" in ln), "")
        lines.append(f"by {order} ({total})")
        lines += [ln.rstrip() for ln in text[start:] if ln.strip()]
    return lines


# ---------------------------------------------------------------------------------------------
# fixtures on disk


def conflist(i: int) -> dict[str, Any]:
    """A realistic node network: bridge + host-local + portmap, all names distinct."""
    return {
        "cniVersion": "1.0.0",
        "name": f"net-{i:04d}",
        "plugins": [
            {"type": "bridge", "bridge": f"crsc{i:04d}", "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": f"10.{100 + i // 256}.{i % 256}.0/24",
                                                         "gateway": f"10.{100 + i // 256}.{i % 256}.1"}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/var/lib/cni/networks"}},
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }


def write_conf_dir(path: str, count: int) -> None:
    os.makedirs(path)
    for i in range(count):
        with open(os.path.join(path, f"{10 + i % 90:02d}-net-{i:04d}.conflist"), "w", encoding="utf-8") as fh:
            json.dump(conflist(i), fh, indent=2)


def gc_conflist() -> bytes:
    return json.dumps({"cniVersion": "1.0.0", "name": GC_NETWORK,
                       "plugins": [{"type": "loopback"}]}, indent=2).encode()


def container_id(i: int) -> str:
    return hashlib.sha256(f"crinet-scale-{i}".encode()).hexdigest()


def cache_record(i: int, config: bytes) -> libcni.CacheRecord:
    """What a bridge + portmap ADD leaves in the cache for pod `i` (1.0.0 result)."""
    cid = container_id(i)
    ip = f"10.{200 + i // 65536}.{(i // 256) % 256}.{i % 256}"
    mac = "0a:58:" + ":".join(f"{b:02x}" for b in i.to_bytes(4, "big"))
    result = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "crinetsc0", "mac": "0a:58:0a:c8:00:01"},
                       {"name": f"veth{cid[:8]}", "mac": "ee:ee:ee:ee:ee:ee"},
                       {"name": "eth0", "mac": mac, "sandbox": f"/var/run/netns/cni-{cid[:8]}-{cid[8:12]}"}],
        "ips": [{"interface": 2, "address": f"{ip}/16", "gateway": "10.200.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {},
    }
    return libcni.CacheRecord(
        container_id=cid, config=config, ifname="eth0", network_name=GC_NETWORK,
        netns=f"/var/run/netns/cni-{cid[:8]}-{cid[8:12]}-does-not-exist",
        cni_args=[("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", "default"), ("K8S_POD_NAME", f"pod-{i}"),
                  ("K8S_POD_INFRA_CONTAINER_ID", cid), ("K8S_POD_UID", f"uid-{i:08d}")],
        capability_args={"portMappings": [{"hostPort": 30000 + i % 20000, "containerPort": 80, "protocol": "tcp"}]},
        result=result,
    )


def write_cache(cache_dir: str, count: int) -> None:
    cache = libcni.ResultCache(cache_dir)
    config = gc_conflist()
    for i in range(count):
        cache.write(cache_record(i, config))


# ---------------------------------------------------------------------------------------------
# raw baselines


def raw_load_configs(conf_dir: str) -> list[Any]:
    out = []
    for name in sorted(os.listdir(conf_dir)):
        with open(os.path.join(conf_dir, name), encoding="utf-8") as fh:
            out.append(json.loads(fh.read()))
    return out


def raw_list_cache(cache_dir: str) -> list[Any]:
    results = os.path.join(cache_dir, "results")
    out = []
    for name in sorted(os.listdir(results)):
        with open(os.path.join(results, name), "rb") as fh:
            out.append(json.loads(fh.read()))
    return out


def raw_gc(cache_dir: str, bin_dir: str, keep: set[tuple[str, str]]) -> int:
    """What GC does, done plainly: DEL (loopback, prevResult from the cache) + unlink per stale file."""
    results = os.path.join(cache_dir, "results")
    plugin = os.path.join(bin_dir, "loopback")
    base_env = dict(os.environ)
    deleted = 0
    for name in sorted(os.listdir(results)):
        path = os.path.join(results, name)
        with open(path, "rb") as fh:
            rec = json.loads(fh.read())
        if rec.get("networkName") != GC_NETWORK or (rec["containerId"], rec["ifName"]) in keep:
            continue
        stdin = json.dumps({"cniVersion": "1.0.0", "name": GC_NETWORK, "type": "loopback",
                            "prevResult": rec["result"]}).encode()
        env = dict(base_env, CNI_COMMAND="DEL", CNI_CONTAINERID=rec["containerId"], CNI_NETNS=rec["netns"],
                   CNI_ARGS=";".join(f"{k}={v}" for k, v in rec.get("cniArgs") or ()), CNI_IFNAME=rec["ifName"],
                   CNI_PATH=bin_dir)
        proc = subprocess.run([plugin], input=stdin, env=env, capture_output=True, process_group=0)
        if proc.returncode:
            raise BenchError(f"raw DEL of {name}: exit {proc.returncode}: {proc.stdout[:200]!r} {proc.stderr[:200]!r}")
        os.unlink(path)
        deleted += 1
    return deleted


# ---------------------------------------------------------------------------------------------
# the benchmark


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Times of each fn, run round-robin (order rotating every round) after `warmup` rounds."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            t0 = now()
            fns[n]()
            times[n].append(now() - t0)
    return times


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.report = Report()
        self.tmp = tempfile.mkdtemp(prefix="crinet-scale-")
        self.bin_dir = find_plugin("loopback")

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def configs(self) -> None:
        a, rep = self.args, self.report
        conf_dir = os.path.join(self.tmp, "net.d")
        write_conf_dir(conf_dir, a.configs)
        log(f"wrote {a.configs} conflists in {conf_dir}; {a.loads} loads per side")
        nets = load_networks(conf_dir)
        if len(nets.networks) != min(a.configs, 1024) or (a.configs <= 1024 and nets.skipped):
            raise BenchError(f"loader took {len(nets.networks)} networks, skipped {nets.skipped[:3]}")
        op = CNIOperator(conf_dir, [self.bin_dir], cache_dir=os.path.join(self.tmp, "op-cache"))
        try:
            times = interleaved({"raw": lambda: raw_load_configs(conf_dir),
                                 "loader": lambda: load_networks(conf_dir),
                                 "operator": op.update}, a.loads)
        finally:
            op.close()
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        rep.details["configs"] = {"files": a.configs, "loads": a.loads,
                                  **{f"{k}_median_ms": round(v, 3) for k, v in med.items()},
                                  **{f"{k}_p90_ms": round(p90(times[k]) * 1000, 3) for k in times}}
        target = f"<= {CONFIG_TARGET_MS:g} ms"
        rep.add("config_load_loader_ms", f"load {a.configs} conflists: load_networks (median)", med["loader"], "ms",
                target, med["loader"] <= CONFIG_TARGET_MS, med["loader"] / med["raw"])
        rep.add("config_load_operator_ms", f"load {a.configs} conflists: CNIOperator.update (median)",
                med["operator"], "ms", target, med["operator"] <= CONFIG_TARGET_MS, med["operator"] / med["raw"])
        rep.add("config_load_raw_ms", f"load {a.configs} conflists: raw listdir+read+json.loads (median)",
                med["raw"], "ms")
        if a.profile or med["operator"] > CONFIG_TARGET_MS or med["loader"] > CONFIG_TARGET_MS:
            op2 = CNIOperator(conf_dir, [self.bin_dir], cache_dir=os.path.join(self.tmp, "op-cache"))
            self.report.profiles["config_load_operator"] = profile(op2.update)
            op2.close()

    def attachments(self) -> None:
        a, rep = self.args, self.report
        cache_dir = os.path.join(self.tmp, "cache")
        t0 = now()
        write_cache(cache_dir, a.attachments)
        log(f"wrote {a.attachments} cache files with ResultCache.write in {now() - t0:.1f} s; "
            f"{a.list_runs} listings per side")
        cni = libcni.CNI([self.bin_dir], cache_dir=cache_dir)
        got = cni.cached_attachments()
        if len(got) != a.attachments:
            raise BenchError(f"cached_attachments() listed {len(got)} of {a.attachments}")
        times = interleaved({"raw": lambda: raw_list_cache(cache_dir), "cri": cni.cached_attachments}, a.list_runs)
        med = {k: statistics.median(v) for k, v in times.items()}
        rep.details["list"] = {"attachments": a.attachments, "runs": a.list_runs,
                               **{f"{k}_median_s": round(v, 4) for k, v in med.items()}}
        rep.add("cache_list_s", f"list {a.attachments} cached attachments: CNI.cached_attachments (median)",
                med["cri"], "s", f"<= {LIST_TARGET_S:g} s", med["cri"] <= LIST_TARGET_S, med["cri"] / med["raw"],
                note="" if a.attachments >= 10000 else "target is for 10000 attachments")
        rep.add("cache_list_raw_s", f"list {a.attachments} cached attachments: raw listdir+read+json.loads (median)",
                med["raw"], "s")
        if a.profile or med["cri"] > LIST_TARGET_S:
            self.report.profiles["cache_list"] = profile(cni.cached_attachments)

        # GC: half valid. Every run works on a fresh copy of the same dir (same layout); the
        # runs go raw, cri-net, cri-net, raw so that a drift in machine load hits both sides.
        valid = [libcni.GCAttachment(container_id(i), "eth0") for i in range(0, a.attachments, 2)]
        keep = {(v.container_id, v.ifname) for v in valid}
        stale = a.attachments - len(valid)
        net = libcni.conf_list_from_bytes(gc_conflist(), source="<bench>")
        order = ("raw", "cri", "cri", "raw")[:a.gc_runs * 2] if a.gc_runs <= 2 else ("raw", "cri") * a.gc_runs
        log(f"GC: {stale} stale of {a.attachments}; runs {', '.join(order)}")
        gc_times: dict[str, list[float]] = {"raw": [], "cri": []}
        for n, side in enumerate(order):
            run_dir = os.path.join(self.tmp, f"cache-gc-{n}")
            shutil.copytree(cache_dir, run_dir)
            if side == "raw":
                t0 = now()
                deleted = raw_gc(run_dir, self.bin_dir, keep)
                gc_times["raw"].append(now() - t0)
                if deleted != stale:
                    raise BenchError(f"raw GC deleted {deleted}, expected {stale}")
            else:
                cni_gc = libcni.CNI([self.bin_dir], cache_dir=run_dir)
                t0 = now()
                cni_gc.gc_network_list(net, valid)
                gc_times["cri"].append(now() - t0)
                left = {(x.container_id, x.ifname) for x in cni_gc.cached_attachments()}
                if left != keep:
                    raise BenchError(f"after GC {len(left)} attachments remain, expected exactly the "
                                     f"{len(keep)} valid ones")
            log(f"GC run {n + 1}/{len(order)} ({side}): {gc_times[side][-1]:.1f} s")
            shutil.rmtree(run_dir)
        shutil.rmtree(cache_dir)
        gc_s, raw_s = statistics.mean(gc_times["cri"]), statistics.mean(gc_times["raw"])
        rep.details["gc"] = {"attachments": a.attachments, "stale": stale, "plugin": "loopback",
                             "order": list(order), "cri_s": [round(x, 3) for x in gc_times["cri"]],
                             "raw_s": [round(x, 3) for x in gc_times["raw"]],
                             "cri_per_stale_ms": round(gc_s / stale * 1000, 3),
                             "raw_per_stale_ms": round(raw_s / stale * 1000, 3)}
        runs = f"mean of {len(gc_times['cri'])} runs; " if len(gc_times["cri"]) > 1 else ""
        rep.add("gc_s", f"GC {a.attachments} cached attachments, {stale} stale: CNI.gc_network_list",
                gc_s, "s", vs_raw=gc_s / raw_s, note=f"{runs}{gc_s / stale * 1000:.2f} ms per stale attachment")
        rep.add("gc_raw_s", f"GC raw: read+json.loads all, DEL ({stale}x loopback) + unlink stale", raw_s, "s",
                note=f"{runs}{raw_s / stale * 1000:.2f} ms per stale attachment")
        if a.profile:
            # a second, smaller GC just to see where the non-exec time goes
            prof_dir = os.path.join(self.tmp, "cache-prof")
            n_prof = min(a.attachments, 1000)
            write_cache(prof_dir, n_prof)
            cni_p = libcni.CNI([self.bin_dir], cache_dir=prof_dir)
            valid_p = [libcni.GCAttachment(container_id(i), "eth0") for i in range(0, n_prof, 2)]
            self.report.profiles[f"gc ({n_prof} attachments)"] = profile(lambda: cni_p.gc_network_list(net, valid_p))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats and 2,000 attachments (smoke)")
    p.add_argument("--json", action="store_true", help="also print one JSON line with every figure on stdout")
    p.add_argument("--profile", action="store_true", help="cProfile every part, not only missed targets")
    p.add_argument("--fail-on-miss", action="store_true", help="exit 2 when a target is missed")
    p.add_argument("--configs", type=int, default=1024, help="config files (default 1024)")
    p.add_argument("--loads", type=int, help="timed loads per side (default 21; quick 5)")
    p.add_argument("--attachments", type=int, help="cached attachments (default 10000; quick 2000)")
    p.add_argument("--list-runs", type=int, help="timed listings per side (default 7; quick 3)")
    p.add_argument("--gc-runs", type=int, default=2, help="GC runs per side, raw/cri-net/cri-net/raw (default 2)")
    a = p.parse_args(argv)
    a.loads = a.loads or (5 if a.quick else 21)
    a.attachments = a.attachments or (2000 if a.quick else 10000)
    a.list_runs = a.list_runs or (3 if a.quick else 7)
    if a.attachments < 2 or a.gc_runs < 1:
        p.error("--attachments must be >= 2 and --gc-runs >= 1")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = now()
    load_start = os.getloadavg()
    bench = Bench(args)

    def on_term(signum: int, _frame: Any) -> None:
        # Not an exception: one raised while a finalizer runs is printed and ignored, and the
        # run would go on. Nothing here is shared with anyone, so remove the temp dir and go.
        log(f"{signal.Signals(signum).name}: removing {bench.tmp} and exiting")
        bench.cleanup()
        os._exit(130)

    signal.signal(signal.SIGTERM, on_term)
    failure = ""
    try:
        bench.configs()
        bench.attachments()
    except KeyboardInterrupt:
        failure = "interrupted"
    except (BenchError, libcni.CNIError, OSError) as exc:
        failure = f"{type(exc).__name__}: {exc}"
        log(f"failed: {failure}")
    finally:
        bench.cleanup()
    elapsed = now() - t_start
    load_end = os.getloadavg()
    rev = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip() or "unknown"
    rep = bench.report
    print(f"cri-net scale benchmark ({'quick' if args.quick else 'full'}; {os.cpu_count()} CPUs, kernel "
          f"{platform.release()}, {elapsed:.0f} s, load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end, "
          f"cri-net {rev}; plugin {bench.bin_dir}/loopback)")
    if rep.figures:
        print(rep.table())
    for name, lines in rep.profiles.items():
        print(f"\ncProfile of {name}:")
        print("\n".join("  " + ln for ln in lines))
    if failure:
        print(f"FAILED: {failure}")
    missed = [f.key for f in rep.figures if f.ok is False]
    if args.json:
        doc = {"benchmark": "bench_scale", "mode": "quick" if args.quick else "full", "ok": not failure,
               "failure": failure or None, "missed": missed, "elapsed_s": round(elapsed, 1), "cpus": os.cpu_count(),
               "kernel": platform.release(), "loadavg_start": round(load_start[0], 2),
               "loadavg_end": round(load_end[0], 2), "revision": rev,
               "params": {k: getattr(args, k) for k in ("configs", "loads", "attachments", "list_runs", "gc_runs")},
               **rep.as_json()}
        print(json.dumps(doc, separators=(",", ":")))
    if failure:
        return 130 if failure == "interrupted" else 1
    if missed and args.fail_on_miss:
        return 2
    return 0


if __name__ == "__main__":
    from integration import hostlock  # held for the whole run, as an integration session holds it

    with hostlock.hold(lambda line: print(line, file=sys.stderr, flush=True)):
        sys.exit(main())
