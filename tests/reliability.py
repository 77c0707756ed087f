"""Pytest plugin behind docs/RELIABILITY.md: fault and bad-input suites record what they ran.

A scenario test calls :func:`record` with how many runs (lifecycles, generated cases, kills)
it made and what it audited afterwards. At the end of the session, when
``CRI_NET_RELIABILITY_JSON`` names a file, every scenario is written there with its runs, its
tests and their outcomes; ``scripts/reliability_report.py`` turns that into the document.

Suites size themselves with :func:`scale`: CI runs the short version (``CRI_NET_FAULT_SCALE``
unset or ``ci``), the report runs the full one (``full``). Both are seeded, so a failure
reproduces with the same command.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

REPORT_ENV = "CRI_NET_RELIABILITY_JSON"
SCALE_ENV = "CRI_NET_FAULT_SCALE"


@dataclass
class Scenario:
    name: str
    suite: str = ""
    audited: str = ""
    runs: int = 0
    tests: dict[str, str] = field(default_factory=dict)  # nodeid -> outcome
    details: list[str] = field(default_factory=list)


_scenarios: dict[str, Scenario] = {}
_lock = threading.Lock()


def full_scale() -> bool:
    return os.environ.get(SCALE_ENV, "ci") == "full"


def scale(ci: int, full: int) -> int:
    """`ci` in CI's short run, `full` when the report is generated."""
    return full if full_scale() else ci


def record(scenario: str, *, runs: int = 1, audited: str = "", suite: str = "", detail: str = "") -> None:
    """Count `runs` more runs of `scenario`, made by the test that is running now."""
    nodeid = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    with _lock:
        entry = _scenarios.setdefault(scenario, Scenario(scenario))
        entry.runs += runs
        entry.audited = audited or entry.audited
        entry.suite = suite or entry.suite
        if detail and detail not in entry.details:
            entry.details.append(detail)
        if nodeid:
            entry.tests.setdefault(nodeid, "running")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """A test's outcome is its worst phase: a failing teardown (a leak found) fails it."""
    with _lock:
        for entry in _scenarios.values():
            if report.nodeid not in entry.tests:
                continue
            if report.failed:
                entry.tests[report.nodeid] = "failed"
            elif report.when == "call" and entry.tests[report.nodeid] == "running":
                entry.tests[report.nodeid] = "passed"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    doc: dict[str, Any] = {"scale": "full" if full_scale() else "ci", "exitstatus": int(exitstatus),
                           "scenarios": [vars(s) for s in sorted(_scenarios.values(), key=lambda s: (s.suite, s.name))]}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
