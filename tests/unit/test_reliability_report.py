"""docs/RELIABILITY.md is rendered from what the suites recorded, and the recorder counts right."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reliability_report.py"
spec = importlib.util.spec_from_file_location("reliability_report", SCRIPT)
assert spec and spec.loader
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)

META = {"command": "cmd", "date": "2026-01-01 00:00 UTC", "revision": "abc1234", "cpus": 2, "load_start": "0.10",
        "load_end": "0.20", "duration_s": 12.0}


def scenario(name: str, suite: str, runs: int, **tests: str) -> dict:
    return {"name": name, "suite": suite, "audited": "leases, veths", "runs": runs, "tests": tests, "details": []}


def test_every_scenario_is_a_row_with_its_runs_and_result() -> None:
    doc = {"scale": "full", "exitstatus": 1, "scenarios": [
        scenario("SIGKILL during lifecycles", "fault", 100, **{"integration/t.py::test_kill": "passed"}),
        scenario("annotations", "bad-input", 2000, **{"tests/unit/a.py::test_a": "passed",
                                                       "tests/unit/a.py::test_b": "failed"})]}
    text = report.render(doc, META)
    assert "**2 scenarios, 2100 runs in total; 1 FAILED.**" in text
    assert "| SIGKILL during lifecycles | 100 | `test_kill` | leases, veths | passed |" in text
    assert "| annotations | 2000 | `test_a`, `test_b` | leases, veths | **FAILED** |" in text
    assert text.index("## Fault injection") < text.index("## Bad input")
    assert "git revision `abc1234`" in text and "Scale: **full**" in text


def test_a_scenario_whose_test_never_finished_is_not_passed() -> None:
    doc = {"scale": "ci", "exitstatus": 2, "scenarios": [scenario("x", "fault", 3, **{"t.py::t": "running"})]}
    assert "| **FAILED** |" in report.render(doc, META)


def test_suites_are_found() -> None:
    files = report.suite_files()
    assert any(f.endswith("integration/test_masq_sweep_real.py") for f in files)
