"""docs/PERFORMANCE.md rendering (benchmarks/run_all.py): a pure function of the collected run.

The benchmarks' JSON changes as they evolve (bench_containerd.py is gaining a mode), so the
report must take figures by name, show "n/a" for what is missing and never crash on extra keys.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "run_all.py"


@pytest.fixture(scope="module")
def run_all() -> ModuleType:
    """benchmarks/ is not a package: load run_all.py from its path."""
    spec = importlib.util.spec_from_file_location("crinet_bench_run_all", _PATH)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _scale_doc() -> dict[str, Any]:
    return {"benchmark": "bench_scale", "ok": True, "loadavg_start": 0.3, "loadavg_end": 0.5, "figures": {
        "config_load_operator_ms": {"label": "load 1024 conflists: CNIOperator.update", "value": 180.25, "unit": "ms",
                                    "target": "<= 150 ms", "pass": False, "vs_raw": 3.5},
        "cache_list_s": {"label": "list 10000 cached attachments", "value": 0.61, "unit": "s",
                         "target": "<= 1 s", "pass": True, "vs_raw": 1.04, "note": "median of 7"},
        "cache_list_raw_s": {"label": "list raw", "value": 0.59, "unit": "s", "target": None, "pass": None,
                             "vs_raw": None},
        "quick_only": {"label": "restart at 1000 pods", "value": 0.4, "unit": "s", "target": "<= 2 s", "pass": None},
    }, "profiles": {"config_load_operator": ["by tottime", "1024 0.103 conf.py:177(conf_list_from_bytes)"]}}


def _run(benchmarks: list[dict[str, Any]], mode: str = "full") -> dict[str, Any]:
    return {"date": "2026-11-23 17:00 UTC", "command": ".venv/bin/python benchmarks/run_all.py --quick",
            "mode": mode, "revision": "`0123456789ab` (uncommitted changes) serve: x",
            "machine": {"cpus": 2, "cpu_model": "Test CPU", "mem": "24 GiB", "kernel": "6.1", "python": "3.11.2"},
            "load_before": [0.25, 0.5, 0.75], "load_after": [1.0, 0.9, 0.8], "elapsed_s": 612.0,
            "benchmarks": benchmarks}


def _row(report: str, label: str) -> list[str]:
    """The cells of the table row whose first cell is `label`."""
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in:\n{report}")


def test_header_and_figures(run_all: ModuleType) -> None:
    report = run_all.render_report(_run([{"name": "bench_scale", "title": "Scale", "command": "c", "exit": 0,
                                          "elapsed_s": 61.5, "doc": _scale_doc(), "stdout": "table\n"}]))
    for expected in ("2026-11-23 17:00 UTC", "`.venv/bin/python benchmarks/run_all.py --quick`",
                     "`0123456789ab` (uncommitted changes)", "2 cores (Test CPU)",
                     "0.25 / 0.50 / 0.75 before, 1.00 / 0.90 / 0.80 after", "Total time: 612 s"):
        assert expected in report
    assert _row(report, "load 1024 conflists: CNIOperator.update") == \
        ["load 1024 conflists: CNIOperator.update", "180.2 ms", "<= 150 ms", "**MISS**", "x3.50", ""]
    assert _row(report, "list 10000 cached attachments") == \
        ["list 10000 cached attachments", "0.610 s", "<= 1 s", "pass", "x1.04", "median of 7"]
    assert _row(report, "list raw")[1:5] == ["0.590 s", "", "", ""]
    assert _row(report, "restart at 1000 pods")[3] == "n/a"  # a target that does not apply in this mode
    assert _row(report, "bench_scale")[1:5] == ["ok", "61.5 s", "4", "load 1024 conflists: CNIOperator.update"]
    assert "conf_list_from_bytes" in report  # the profile of the miss is in the report
    assert "Quick mode" not in report


def test_failed_benchmark_gets_stderr_tail(run_all: ModuleType) -> None:
    failed = {"name": "bench_serve", "title": "serve", "command": "c", "exit": 1, "elapsed_s": 3.0, "doc": None,
              "stdout": "", "stderr_tail": "line 1\nTraceback: boom in sandbox.py\n", "failure": "exit status 1"}
    ok = {"name": "bench_scale", "title": "Scale", "command": "c", "exit": 0, "elapsed_s": 1.0, "doc": _scale_doc()}
    report = run_all.render_report(_run([failed, ok], mode="quick"))
    assert _row(report, "bench_serve")[1] == "**FAILED**: exit status 1"
    assert "Traceback: boom in sandbox.py" in report
    assert _row(report, "bench_scale")[1] == "ok"  # the others still report
    assert "Quick mode" in report


def test_containerd_json_is_read_by_name(run_all: ModuleType) -> None:
    """Known keys give figures, missing ones give n/a, an added section with a ratio shows up."""
    doc = {"cycle": {"A": {"median": 0.400, "p90": 0.5}, "B": {"median": 0.460}, "ratio": 1.15,
                     "ratio_ci90": [1.05, 1.25], "unrelated": {"x": 1}},
           "serve_cycle": {"A": {"median": 0.400}, "S": {"median": 0.420}, "ratio": 1.05, "target": 1.1},
           "startup": {"version_go_bridge": {"median": 0.004}, "version_launcher": {"median": 0.0025}},
           "something_new": [1, 2, 3]}
    figs = {f["key"]: f for f in run_all.extract_figures("bench_containerd", doc)}
    assert figs["cycle.ratio"]["value"] == 1.15 and figs["cycle.ratio"]["pass"] is False
    assert figs["cycle.ratio"]["target"] == "<= 1.10" and "1.050..1.250" in figs["cycle.ratio"]["note"]
    assert figs["cycle.B.median_ms"]["value"] == pytest.approx(460.0)
    assert figs["cycle.B.median_ms"]["vs_raw"] == pytest.approx(1.15)
    assert figs["serve_cycle.ratio"]["pass"] is True
    assert figs["serve_cycle.S.median_ms"]["vs_raw"] == pytest.approx(1.05)
    assert figs["startup.version_cri_net_cni_ms"]["value"] is None
    report = run_all.render_report(_run([{"name": "bench_containerd", "command": "c", "exit": 0, "doc": doc}]))
    assert _row(report, "VERSION call of the Python cri-net-cni entry point (median)")[1] == "n/a"
    # the native launcher (what a runtime execs) carries issue 13's 2 ms target
    assert figs["startup.version_launcher_ms"]["value"] == pytest.approx(2.5)
    assert figs["startup.version_launcher_ms"]["target"] == "<= 2 ms"
    assert figs["startup.version_launcher_ms"]["pass"] is False
    assert _row(report, "pod cycle ratio B/A (median)")[3] == "**MISS**"
    # nothing at all: every known figure is n/a, nothing crashes
    empty = run_all.extract_figures("bench_containerd", {})
    assert empty and all(f["value"] is None for f in empty)


def test_libcni_ratios(run_all: ModuleType) -> None:
    doc = {"modes": {"raw": {"median_ms": 40.0}, "inproc": {"median_ms": 44.0, "ratio_to_raw": 1.1,
                                                            "overhead_ms": 4.0},
                     "cli": {"median_ms": 300.0, "ratio_to_raw": 7.5, "overhead_ms": 260.0}},
           "cli_help_median_ms": 120.0, "python_bare_median_ms": 20.0}
    figs = {f["key"]: f for f in run_all.extract_figures("bench_libcni", doc)}
    assert figs["inproc_median_ms"]["vs_raw"] == 1.1 and figs["inproc_median_ms"]["note"] == "overhead +4.00 ms per cycle"
    assert figs["raw_median_ms"]["vs_raw"] is None
    assert figs["cli_help_median_ms"]["vs_raw"] == pytest.approx(6.0)
    assert "stub_median_ms" not in figs  # absent modes are left out, not shown as n/a
    # issue 13's target: one add and one del per cycle, each within 40 ms of the plugins
    assert figs["cli_overhead_per_call_ms"]["value"] == pytest.approx(130.0)
    assert figs["cli_overhead_per_call_ms"]["target"] == "<= 40 ms" and figs["cli_overhead_per_call_ms"]["pass"] is False


def test_last_json_and_formats(run_all: ModuleType) -> None:
    out = 'table\n{"not": "this"}\n{broken\n{"benchmark": "b", "ok": true}\ncleanup: ok\n'
    assert run_all.last_json(out) == {"benchmark": "b", "ok": True}
    assert run_all.last_json("no json here\n") is None
    assert run_all.fmt_value(None, "ms") == "n/a"
    assert run_all._num(float("nan")) is None and run_all._num(True) is None
    assert run_all.fmt_value(0.6912, "ms") == "0.69 ms" and run_all.fmt_value(1234.5, "ms") == "1234.5 ms"
    assert run_all.fmt_value(1.0834, "x") == "1.083"


def test_load_average_wherever_the_benchmark_keeps_it(run_all: ModuleType) -> None:
    assert run_all._bench_load({"loadavg_start": 0.5, "loadavg_end": 1.25}) == ("0.50", "1.25")
    assert run_all._bench_load({"loadavg_start": [2.87, 1.8, 0.9], "host": {"loadavg_end": [2.5, 1, 1]}}) == \
        ("2.87", "2.50")
    assert run_all._bench_load({"loadavg_1m": 1.99}) == ("n/a", "1.99")
    assert run_all._bench_load(None) == ("n/a", "n/a")
    assert run_all.fmt_elapsed(9.0) == "9.0 s" and run_all.fmt_elapsed(612.4) == "612 s"


def test_a_figures_dict_wins(run_all: ModuleType) -> None:
    """Once a benchmark writes its own `figures`, they are shown as they are, nothing guessed."""
    doc = {"figures": {"ratio": {"label": "handoff ratio", "value": 1.04, "unit": "x", "target": "<= 1.10",
                                 "pass": True}}, "cycle": {"A": {"median": 0.4}, "ratio": 1.5}}
    figs = run_all.extract_figures("bench_containerd", doc)
    assert [(f["label"], f["pass"]) for f in figs] == [("handoff ratio", True)]
    assert run_all.extract_figures("bench_unknown", {"x": 1}) == []
    assert run_all.extract_figures("bench_scale", None) == []
