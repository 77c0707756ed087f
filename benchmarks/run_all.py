#!/usr/bin/env python3
"""Run every benchmark and write docs/PERFORMANCE.md.

    sudo .venv/bin/python benchmarks/run_all.py [--quick] [--out docs/PERFORMANCE.md] [--only NAME ...]
                                                [--serve-pods 1000]

Each benchmark runs as a subprocess with `--json` (and its quick variant with `--quick`); its
last JSON line on stdout is collected. The report gives, per figure, the value, the target,
pass/MISS and the ratio to the raw baseline measured in the same run, with a header (date, git
revision, machine, load average before and after, the exact command). The whole run holds the
host lock `/run/lock/cri-net-host.lock` (the one integration sessions hold), so no integration
test session runs at the same time. A benchmark that fails (non-zero exit, no JSON, timeout)
gets the tail of its stderr in the report and makes the exit status 1; the others still run.
Missed targets are reported, not fatal (exit 2 with --fail-on-miss).

The report is rendered by `render_report()`, a pure function of the collected run (a dict), and
figures are taken from each benchmark's JSON by `extract_figures()`, which looks keys up by name
and shows "n/a" for anything missing, so a benchmark that adds or drops keys does not break it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from integration import hostlock  # noqa: E402  (the host lock integration sessions take)

HOST_LOCK = hostlock.HOST_LOCK
DEFAULT_OUT = "docs/PERFORMANCE.md"
STDERR_TAIL_LINES = 40
CONTAINERD_RATIO_TARGET = 1.10  # bench_containerd.py's TARGET, used when its JSON carries none


@dataclass(frozen=True)
class BenchSpec:
    """How to run one benchmark."""

    name: str
    script: str
    full_args: tuple[str, ...]
    quick_args: tuple[str, ...]
    title: str
    timeout_full_s: float
    timeout_quick_s: float
    cleanup_args: tuple[str, ...] = ()  # run after a timeout/kill, if the script has one


BENCHES: tuple[BenchSpec, ...] = (
    BenchSpec("bench_scale", "benchmarks/bench_scale.py", (), ("--quick",),
              "Scale: 1,024 configs, 10,000 cached attachments", 1800, 600),
    BenchSpec("bench_libcni", "benchmarks/bench_libcni.py", (), ("--cycles", "10", "--startup-runs", "5"),
              "libcni: one ADD+DEL of bridge+host-local+portmap vs raw plugins", 1800, 600, ("--cleanup-only",)),
    BenchSpec("bench_serve", "benchmarks/bench_serve.py", (), ("--quick",),
              "cri-net serve: pod cycle, status latency, concurrency, 1,000 and 10,000 pods", 7200, 900),
    BenchSpec("bench_containerd", "benchmarks/bench_containerd.py", (), ("--quick",),
              "containerd with cri-net-cni vs containerd calling the plugins", 2700, 900, ("--cleanup-only",)),
    BenchSpec("bench_planes", "benchmarks/bench_planes.py", (), ("--quick",),
              "A 3-plane pod: parallel and sequential planes vs a shell loop of the plugins", 1200, 600,
              ("--cleanup-only",)),
    BenchSpec("bench_containerd_planes", "benchmarks/bench_containerd_planes.py", (), ("--quick",),
              "A 3-network pod through containerd: containerd calling the networks vs cri-net-cni's planes",
              1200, 600, ("--cleanup-only",)),
)


# ---------------------------------------------------------------------------------------------
# figures: benchmark JSON -> rows (pure)


def _get(doc: Any, *path: str) -> Any:
    """doc[path[0]][path[1]]..., or None when any step is missing or not a dict."""
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def _num(value: Any) -> float | None:
    """A finite number, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _fig(key: str, label: str, value: Any, unit: str, target: str = "", ok: bool | None = None,
         vs_raw: Any = None, note: str = "") -> dict[str, Any]:
    return {"key": key, "label": label, "value": _num(value), "unit": unit, "target": target or "",
            "pass": ok, "vs_raw": _num(vs_raw), "note": note}


def _figures_dict(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """bench_serve / bench_scale style: key -> {label, value, unit, target, pass, vs_raw, note}."""
    out = []
    for key, f in figures.items():
        if not isinstance(f, dict):
            continue
        out.append(_fig(key, str(f.get("label") or key), f.get("value"), str(f.get("unit") or ""),
                        str(f.get("target") or ""), f.get("pass") if isinstance(f.get("pass"), bool) else None,
                        f.get("vs_raw"), str(f.get("note") or "")))
    return out


def _libcni_figures(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    labels = {"raw": "ADD+DEL, plugins run by raw_cycle.sh (median)",
              "inproc": "ADD+DEL through cri_net.libcni in-process (median)",
              "cli": "ADD+DEL through `cri-net cni add/del` (median)",
              "stub": "libcni's own cost per ADD+DEL, plugins stubbed (median)",
              "stub-tmpfs": "libcni's own cost per ADD+DEL, stubbed, cache on tmpfs (median)"}
    modes = _get(doc, "modes") or {}
    for mode, label in labels.items():
        if mode in ("stub", "stub-tmpfs") and mode not in modes:
            continue
        m = modes.get(mode) if isinstance(modes, dict) else None
        ov = _num(_get(m, "overhead_ms"))
        out.append(_fig(f"{mode}_median_ms", label, _get(m, "median_ms"), "ms",
                        vs_raw=_get(m, "ratio_to_raw") if mode in ("inproc", "cli") else None,
                        note="" if ov is None or mode == "raw" else f"overhead {ov:+.2f} ms per cycle"))
    cli_ov = _num(_get(modes, "cli", "overhead_ms")) if isinstance(modes, dict) else None
    if cli_ov is not None:  # issue 13: a cnitool drop-in within 40 ms per call of the plugins
        per_call = cli_ov / 2  # one `cri-net cni add` and one `cri-net cni del` per cycle
        out.append(_fig("cli_overhead_per_call_ms", "`cri-net cni` overhead per call over the plugins (median)",
                        per_call, "ms", "<= 40 ms", per_call <= 40))
    out.append(_fig("cli_help_median_ms", "`cri-net --help` start-up (median)", doc.get("cli_help_median_ms"), "ms",
                    vs_raw=(_num(doc.get("cli_help_median_ms")) or 0) / b
                    if (b := _num(doc.get("python_bare_median_ms"))) else None,
                    note="vs raw = vs bare `python -c pass`"))
    out.append(_fig("python_bare_median_ms", "bare `python -c pass` (median)", doc.get("python_bare_median_ms"), "ms"))
    return out


def _containerd_figures(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The B/A cycle ratio and, generically, every other top-level section with a `ratio`
    (e.g. a mode where cri-net-cni hands the calls to a running `cri-net serve`)."""
    out: list[dict[str, Any]] = []
    sections = ["cycle"] + sorted(k for k, v in doc.items() if k != "cycle" and isinstance(v, dict) and "ratio" in v)
    for sec in sections:
        cyc = doc.get(sec)
        prefix = "" if sec == "cycle" else f"[{sec}] "
        target_v = _num(_get(cyc, "target")) or (CONTAINERD_RATIO_TARGET if sec == "cycle" else None)
        sides = sorted(k for k, v in cyc.items() if isinstance(v, dict) and "median" in v) \
            if isinstance(cyc, dict) else []
        base = _num(_get(cyc, "A", "median"))
        for side in sides or ["A", "B"]:
            med = _num(_get(cyc, side, "median"))
            mode = f", mode {doc['mode']}" if isinstance(doc.get("mode"), str) else ""
            label = {"A": "pod cycle, containerd -> bridge+host-local+portmap (median)",
                     "B": f"pod cycle, containerd -> cri-net-cni{mode} (median)"}.get(
                side, f"pod cycle, side {side} (median)")
            out.append(_fig(f"{sec}.{side}.median_ms", prefix + label, None if med is None else med * 1000, "ms",
                            vs_raw=None if side == "A" or med is None or not base else med / base))
        ratio = _num(_get(cyc, "ratio"))
        ci = _get(cyc, "ratio_ci90")
        note = f"90% bootstrap {ci[0]:.3f}..{ci[1]:.3f}" \
            if isinstance(ci, list) and len(ci) == 2 and all(_num(x) is not None for x in ci) else ""
        out.append(_fig(f"{sec}.ratio", prefix + ("pod cycle ratio B/A (median)" if sec == "cycle" else "ratio"),
                        ratio, "x",
                        f"<= {target_v:.2f}" if target_v else "",
                        None if ratio is None or not target_v else ratio <= target_v, note=note))
        for k in sorted(cyc) if isinstance(cyc, dict) else []:
            if k.startswith("ratio") and k not in ("ratio", "ratio_ci90") and _num(cyc[k]) is not None:
                out.append(_fig(f"{sec}.{k}", f"{prefix}{k}", cyc[k], "x"))
    st = doc.get("startup")
    go = _num(_get(st, "version_go_bridge", "median"))
    for key, label in (("version_launcher", "VERSION call of the native `cri-net` launcher a runtime execs (median)"),
                       ("version_cri_net_cni", "VERSION call of the Python cri-net-cni entry point (median)"),
                       ("version_go_bridge", "VERSION call of a Go plugin (bridge) (median)")):
        v = _num(_get(st, key, "median"))
        ms = None if v is None else v * 1000
        target = "<= 2 ms" if key == "version_launcher" else ""  # issue 13
        out.append(_fig(f"startup.{key}_ms", label, ms, "ms", target,
                        None if not target or ms is None else ms <= 2.0,
                        vs_raw=v / go if key != "version_go_bridge" and v is not None and go else None,
                        note="vs raw = vs the Go plugin" if key != "version_go_bridge" else ""))
    return out


def extract_figures(name: str, doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Rows for one benchmark's JSON: its `figures` dict when it has one (whatever the benchmark),
    else the keys bench_libcni / bench_containerd are known to write."""
    if not isinstance(doc, dict):
        return []
    if isinstance(doc.get("figures"), dict):
        return _figures_dict(doc["figures"])
    if name == "bench_libcni":
        return _libcni_figures(doc)
    if name == "bench_containerd":
        return _containerd_figures(doc)
    return []


# ---------------------------------------------------------------------------------------------
# markdown (pure)


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "x":
        return f"{value:.3f}"
    if unit == "ms":
        return f"{value:.2f} ms" if abs(value) < 10 else f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.3f} s" if abs(value) < 10 else f"{value:.1f} s"
    if unit in ("MB", "pods/s"):
        return f"{value:.1f} {unit}"
    return f"{value:g} {unit}".strip()


def fmt_result(fig: dict[str, Any]) -> str:
    if fig.get("pass") is True:
        return "pass"
    if fig.get("pass") is False:
        return "**MISS**"
    return "n/a" if fig.get("target") else ""


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def fmt_elapsed(value: Any) -> str:
    v = _num(value)
    return "n/a" if v is None else f"{v:.0f} s" if v >= 100 else f"{v:.1f} s"


def _one_min(value: Any) -> str:
    """A 1-minute load average given as a number or as a (1, 5, 15) list."""
    v = _num(value[0] if isinstance(value, (list, tuple)) and value else value)
    return "n/a" if v is None else f"{v:.2f}"


def _bench_load(doc: dict[str, Any] | None) -> tuple[str, str]:
    """The load average a benchmark saw at its start and end, wherever its JSON keeps it."""
    if not doc:
        return "n/a", "n/a"
    start = doc.get("loadavg_start")
    end = next((v for v in (doc.get("loadavg_end"), _get(doc, "host", "loadavg_end"), doc.get("loadavg_1m"))
                if v is not None), None)  # bench_libcni's loadavg_1m is taken at its end
    return _one_min(start), _one_min(end)


def _load(v: Any) -> str:
    return " / ".join(f"{x:.2f}" for x in v) if isinstance(v, (list, tuple)) and v else "n/a"


def render_report(run: dict[str, Any]) -> str:
    """docs/PERFORMANCE.md from a collected run (see `collect` for its shape)."""
    m = run.get("machine") or {}
    lines = [
        "# Performance",
        "",
        "Generated by `benchmarks/run_all.py`; do not edit by hand, run it again. What each benchmark does, "
        "and how, is in [benchmarks/README.md](../benchmarks/README.md).",
        "",
        f"- Date: {run.get('date', 'n/a')}",
        f"- Command: `{run.get('command', 'n/a')}`",
        f"- Mode: {run.get('mode', 'n/a')}",
        f"- Revision: {run.get('revision', 'n/a')}",
        f"- Machine: {m.get('cpus', 'n/a')} cores ({m.get('cpu_model', 'n/a')}), {m.get('mem', 'n/a')} RAM, "
        f"kernel {m.get('kernel', 'n/a')}, Python {m.get('python', 'n/a')}",
        f"- Load average (1/5/15 min): {_load(run.get('load_before'))} before, {_load(run.get('load_after'))} after",
        f"- Total time: {fmt_elapsed(run.get('elapsed_s'))}",
    ]
    if run.get("mode") == "quick":
        lines += ["", "> Quick mode: small samples (a smoke run). Targets that apply to the full sizes show n/a "
                      "or a note; regenerate without `--quick` on a quiet machine for the real figures."]
    benches = run.get("benchmarks") or []
    lines += ["", "## Summary", "", "| benchmark | status | time | figures | missed targets |",
              "|---|---|---:|---:|---|"]
    for b in benches:
        figs = extract_figures(b.get("name", ""), b.get("doc"))
        missed = [f["label"] for f in figs if f.get("pass") is False]
        status = "ok" if not b.get("failure") else f"**FAILED**: {_cell(b['failure'])}"
        lines.append(f"| {b.get('name')} | {status} | {fmt_elapsed(b.get('elapsed_s'))} | {len(figs)} | "
                     f"{_cell(', '.join(missed)) or 'none'} |")
    for b in benches:
        name = b.get("name", "?")
        doc = b.get("doc") if isinstance(b.get("doc"), dict) else None
        lines += ["", f"## {name}: {b.get('title', '')}".rstrip(": "), ""]
        start, end = _bench_load(doc)
        lines.append(f"`{b.get('command', '')}`: exit {b.get('exit', 'n/a')}, {fmt_elapsed(b.get('elapsed_s'))}"
                     + (f"; its load average (1 min): {start} at start, {end} at end" if doc else "")
                     + (f"; mode {_cell(doc['mode'])}" if doc and isinstance(doc.get("mode"), str) else ""))
        figs = extract_figures(name, doc)
        if figs:
            lines += ["", "| figure | value | target | result | vs raw | note |", "|---|---:|---|---|---:|---|"]
            for f in figs:
                vs = "" if f.get("vs_raw") is None else f"x{f['vs_raw']:.2f}"
                lines.append(f"| {_cell(f['label'])} | {fmt_value(f['value'], f['unit'])} | {_cell(f['target'])} | "
                             f"{fmt_result(f)} | {vs} | {_cell(f.get('note', ''))} |")
        elif not b.get("failure"):
            lines += ["", "No figures found in its JSON."]
        if doc and doc.get("leftovers"):
            lines += ["", "Left behind after cleanup: " + _cell(", ".join(map(str, doc["leftovers"])))]
        profiles = doc.get("profiles") if doc else None
        if isinstance(profiles, dict) and profiles:
            for pname, plines in profiles.items():
                lines += ["", f"<details><summary>cProfile: {_cell(pname)}</summary>", "", "```"]
                lines += [str(x) for x in plines] if isinstance(plines, list) else [str(plines)]
                lines += ["```", "", "</details>"]
        if b.get("failure"):
            lines += ["", f"**FAILED**: {b['failure']}", "", "stderr (last lines):", "", "```"]
            lines += (b.get("stderr_tail") or "(empty)").rstrip("\n").splitlines()
            lines += ["```"]
        if b.get("stdout"):
            lines += ["", "<details><summary>benchmark output</summary>", "", "```"]
            lines += b["stdout"].rstrip("\n").splitlines()
            lines += ["```", "", "</details>"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# running


def log(msg: str) -> None:
    # one write(2), not print: this runs in signal handlers too, where a print that lands inside
    # another print's buffered write raises "reentrant call"
    os.write(2, f"[run_all {time.strftime('%H:%M:%S')}] {msg}\n".encode(errors="replace"))


def host_lock() -> contextlib.AbstractContextManager[None]:
    """Hold the host-wide lock that integration sessions take, for run_all and the benchmarks
    it starts (they would otherwise wait for it themselves), waiting for it if needed."""
    return hostlock.hold(lambda line: log(line.removeprefix("cri-net: ")), HOST_LOCK, for_children=True)


def machine() -> dict[str, Any]:
    model = "n/a"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "n/a"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kib / 1048576:.1f} GiB"
    return {"cpus": os.cpu_count(), "cpu_model": model, "mem": mem, "kernel": platform.release(),
            "python": platform.python_version()}


def revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "HEAD") or "unknown"
    subject = git("log", "-1", "--format=%s")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"`{head[:12]}`" + (" (uncommitted changes)" if dirty else "") + (f" {subject}" if subject else "")


def _is_json_object(line: str) -> bool:
    line = line.strip()
    if not line.startswith("{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def last_json(stdout: str) -> dict[str, Any] | None:
    """The last line of `stdout` that is a JSON object (the `--json` line)."""
    for line in reversed(stdout.splitlines()):
        if _is_json_object(line):
            return json.loads(line)  # type: ignore[no-any-return]
    return None


class Runner:
    """Runs one benchmark at a time; SIGINT/SIGTERM are passed on to it and stop the run."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.interrupted = False
        self.running = False

    def on_signal(self, signum: int, _frame: Any) -> None:
        self.interrupted = True
        if not self.running:
            raise KeyboardInterrupt(signal.Signals(signum).name)  # e.g. while waiting for the lock
        if self.proc is not None and self.proc.poll() is None:
            log(f"{signal.Signals(signum).name}: stopping {self.proc.args[1] if isinstance(self.proc.args, list) else ''}"
                " (it cleans up first)")
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)

    def run(self, spec: BenchSpec, quick: bool) -> dict[str, Any]:
        argv = [sys.executable, spec.script, "--json", *(spec.quick_args if quick else spec.full_args)]
        timeout = spec.timeout_quick_s if quick else spec.timeout_full_s
        out: dict[str, Any] = {"name": spec.name, "title": spec.title, "command": shlex.join([".venv/bin/python", *argv[1:]])}
        log(f"{spec.name}: {out['command']}")
        tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        t0 = time.monotonic()
        self.proc = proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True, start_new_session=True)

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                tail.append(line)
                sys.stderr.write(f"  {spec.name}| {line}")
                sys.stderr.flush()

        chunks: list[str] = []

        def read_out() -> None:
            assert proc.stdout is not None
            chunks.append(proc.stdout.read())

        threads = [threading.Thread(target=pump, daemon=True), threading.Thread(target=read_out, daemon=True)]
        for t in threads:
            t.start()
        failure = ""
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            failure = f"timed out after {timeout:.0f} s"
            log(f"{spec.name}: {failure}; SIGTERM (it cleans up), SIGKILL after 180 s")
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                if spec.cleanup_args:
                    subprocess.run([sys.executable, spec.script, *spec.cleanup_args], cwd=REPO, timeout=600)
        for t in threads:
            t.join(timeout=10)
        self.proc = None
        stdout = "".join(chunks)
        doc = last_json(stdout)
        out.update(exit=proc.returncode, elapsed_s=round(time.monotonic() - t0, 1),
                   stdout="\n".join(ln for ln in stdout.splitlines() if not _is_json_object(ln)),
                   doc=doc, stderr_tail="".join(tail))
        if not failure and proc.returncode != 0:
            failure = f"exit status {proc.returncode}"
        if not failure and doc is None:
            failure = "no JSON line on stdout"
        if not failure and doc is not None and doc.get("ok") is False:
            failure = f"benchmark reported failure: {doc.get('failure')}"
        out["failure"] = failure or None
        log(f"{spec.name}: {'FAILED (' + failure + ')' if failure else 'done'} in {out['elapsed_s']:.0f} s")
        return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="every benchmark's quick variant (a few minutes)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"the report (default {DEFAULT_OUT}, relative to the repo)")
    p.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], help="run only these benchmarks")
    p.add_argument("--fail-on-miss", action="store_true", help="exit 2 when a target is missed")
    p.add_argument("--serve-pods", metavar="LIST",
                   help="bench_serve's scale points (its --pods; default 1000,10000: the 10,000 point alone "
                        "takes 20-40 minutes on 2 vCPUs)")
    p.add_argument("--save-run", metavar="FILE", help="also write the collected run (every JSON) to FILE")
    p.add_argument("--from-run", metavar="FILE", help="render the report from a --save-run FILE; run nothing")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out) if os.path.isabs(args.out) else REPO / args.out
    if args.from_run:
        run = json.loads(Path(args.from_run).read_text(encoding="utf-8"))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_report(run), encoding="utf-8")
        log(f"wrote {out} from {args.from_run}")
        return 0
    if os.geteuid() != 0:
        sys.exit("run_all: needs root (netns, bridges, iptables, containerd): sudo .venv/bin/python benchmarks/run_all.py")
    command = shlex.join([".venv/bin/python", "benchmarks/run_all.py", *(sys.argv[1:] if argv is None else argv)])
    runner = Runner()
    signal.signal(signal.SIGINT, runner.on_signal)
    signal.signal(signal.SIGTERM, runner.on_signal)
    specs = [b for b in BENCHES if not args.only or b.name in args.only]
    if args.serve_pods:
        specs = [dataclasses.replace(b, full_args=(*b.full_args, "--pods", args.serve_pods))
                 if b.name == "bench_serve" else b for b in specs]
    try:
        with host_lock():
            run, results = run_benchmarks(runner, specs, args, command)
    except KeyboardInterrupt:
        log("interrupted before the benchmarks ran; no report written")
        return 130
    if args.save_run:
        Path(args.save_run).write_text(json.dumps(run, indent=1), encoding="utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(run), encoding="utf-8")
    failed = [r["name"] for r in results if r.get("failure")]
    missed = [f"{r['name']}:{f['key']}" for r in results for f in extract_figures(r["name"], r.get("doc"))
              if f.get("pass") is False]
    log(f"wrote {out} ({run['elapsed_s']:.0f} s); failed: {', '.join(failed) or 'none'}; "
        f"missed: {', '.join(missed) or 'none'}")
    if runner.interrupted:
        return 130
    if failed:
        return 1
    return 2 if missed and args.fail_on_miss else 0


def run_benchmarks(runner: Runner, specs: list[BenchSpec], args: argparse.Namespace,
                   command: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run `specs` in order (the caller holds the host lock); the run dict for the report."""
    results: list[dict[str, Any]] = []
    runner.running = True  # from here a signal stops the current benchmark, then the report is written
    run: dict[str, Any] = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                           "command": command, "mode": "quick" if args.quick else "full",
                           "revision": revision(), "machine": machine(),
                           "load_before": [round(x, 2) for x in os.getloadavg()]}
    t0 = time.monotonic()
    for spec in specs:
        if runner.interrupted:
            results.append({"name": spec.name, "title": spec.title, "failure": "not run (interrupted)"})
            continue
        results.append(runner.run(spec, args.quick))
    run.update(load_after=[round(x, 2) for x in os.getloadavg()], elapsed_s=round(time.monotonic() - t0, 1),
               benchmarks=results)
    return run, results


if __name__ == "__main__":
    sys.exit(main())
