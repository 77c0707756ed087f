"""`make install` / `make uninstall` run for real into temporary dirs (BINDIR, UNITDIR, CONFDIR
overrides), and `make test ARGS=...` forwarding pytest arguments."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = Path(sysconfig.get_path("scripts"))


def make(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", "-C", str(REPO), *argv], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    return {"BINDIR": tmp_path / "bin", "UNITDIR": tmp_path / "systemd", "CONFDIR": tmp_path / "etc"}


def overrides(dirs: dict[str, Path]) -> list[str]:
    return [f"{k}={v}" for k, v in dirs.items()]


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_install_is_idempotent_and_uninstall_removes_exactly_it(dirs):
    dirs["BINDIR"].mkdir()
    (dirs["BINDIR"] / "other-tool").write_text("#!/bin/sh\n")  # not ours: must survive both
    for _ in range(2):
        proc = make("install", *overrides(dirs))
        assert proc.returncode == 0, proc.stderr
    for tool in ("cri-net", "cri-net-cni"):
        link = dirs["BINDIR"] / tool
        assert link.is_symlink() and link.resolve() == (SCRIPTS / tool).resolve()
        assert os.access(link, os.X_OK)
    version = subprocess.run([str(dirs["BINDIR"] / "cri-net"), "--version"], capture_output=True, text=True,
                             timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("cri-net ")
    service = dirs["UNITDIR"] / "cri-net.service"
    u = unit(service)
    assert u["Service"]["Restart"] == "always"
    exec_start = u["Service"]["ExecStart"].split()
    assert exec_start[:2] == [str(dirs["BINDIR"] / "cri-net"), "serve"]
    assert exec_start[exec_start.index("--config") + 1] == str(dirs["CONFDIR"] / "config.toml")
    assert u["Install"]["WantedBy"] == "multi-user.target"
    config = dirs["CONFDIR"] / "config.toml"
    shown = subprocess.run([str(dirs["BINDIR"] / "cri-net"), "config", "show", "--config", str(config)],
                           capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr  # the installed config is valid and all defaults

    proc = make("uninstall", *overrides(dirs))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in dirs["BINDIR"].iterdir()) == ["other-tool"]
    assert not service.exists() and not config.exists()
    assert make("uninstall", *overrides(dirs)).returncode == 0  # idempotent too


def test_unit_passes_systemd_analyze_verify(dirs):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing (Debian package systemd)"
    assert make("install", *overrides(dirs)).returncode == 0
    try:
        proc = subprocess.run([analyze, "verify", str(dirs["UNITDIR"] / "cri-net.service")], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    finally:
        assert make("uninstall", *overrides(dirs)).returncode == 0


def test_install_never_replaces_a_real_file_and_uninstall_keeps_an_edited_config(dirs):
    dirs["BINDIR"].mkdir()
    foreign = dirs["BINDIR"] / "cri-net"
    foreign.write_text("#!/bin/sh\necho someone else's\n")
    proc = make("install", *overrides(dirs))
    assert proc.returncode != 0 and str(foreign) in proc.stderr
    assert foreign.read_text() == "#!/bin/sh\necho someone else's\n"
    foreign.unlink()
    assert make("install", *overrides(dirs)).returncode == 0
    config = dirs["CONFDIR"] / "config.toml"
    config.write_text('log_level = "debug"\n')  # the operator's edit
    assert make("uninstall", *overrides(dirs)).returncode == 0
    assert config.read_text() == 'log_level = "debug"\n'
    assert not (dirs["BINDIR"] / "cri-net").exists()


def test_make_test_forwards_args():
    proc = make("test", "ARGS=tests/unit/test_config.py -k test_defaults -q -p no:cacheprovider")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout and "deselected" in proc.stdout
