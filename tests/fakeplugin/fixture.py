"""The `fakecni` fixture, as a pytest plugin (pyproject's addopts loads it), so unit and
integration tests share one fake plugin harness without importing each other's conftest."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parents[1])
if _TESTS_DIR not in sys.path:  # the tests import the harness as `fakeplugin.harness`
    sys.path.insert(0, _TESTS_DIR)

from fakeplugin.harness import FakeCNI  # noqa: E402


@pytest.fixture
def fakecni(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCNI:
    """A fake plugin harness; FAKECNI_DIR is set in os.environ, which the Executor passes on."""
    harness = FakeCNI(tmp_path / "fakecni")
    monkeypatch.setenv("FAKECNI_DIR", str(harness.state))
    return harness
