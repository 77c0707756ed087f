"""`make install` / `make uninstall` run for real into temporary dirs (BINDIR, UNITDIR, CONFDIR
overrides, or scripts/install.sh under a temporary DESTDIR holding an operator's own files),
and `make test ARGS=...` forwarding pytest arguments."""

from __future__ import annotations

import configparser
import hashlib
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


INSTALL_SH = REPO / "scripts" / "install.sh"
OURS = {"usr/local/bin/cri-net", "usr/local/bin/cri-net-cni", "etc/systemd/system/cri-net.service",
        "etc/cri-net/config.toml", "etc/cri-net/install-manifest"}


def install_sh(action: str, root: Path) -> subprocess.CompletedProcess[str]:
    """scripts/install.sh with DESTDIR=root and the default BINDIR, UNITDIR and CONFDIR under it."""
    assert str(root).startswith("/") and root != Path("/")  # never the real /usr/local, /etc
    env = {k: v for k, v in os.environ.items() if k not in ("BINDIR", "UNITDIR", "CONFDIR")}
    env["DESTDIR"] = str(root)
    return subprocess.run([str(INSTALL_SH), action], capture_output=True, text=True, timeout=60, env=env)


def tree(root: Path) -> dict[str, tuple]:
    """Every path under root: mode, and a symlink's target or a file's bytes."""
    out: dict[str, tuple] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        what = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "dir"
        out[str(p.relative_to(root))] = (oct(st.st_mode), what)
    return out


@pytest.mark.parametrize("mode", [0o700, 0o755])
def test_install_keeps_existing_dirs_mode_and_uninstall_keeps_them(tmp_path, mode):
    root = tmp_path / "root"
    for d in ("etc/cri-net", "usr/local/bin", "etc/systemd/system"):
        (root / d).mkdir(parents=True)
    (root / "etc/cri-net").chmod(mode)  # the operator's conf dir (0700: restrictive), empty
    before = tree(root)
    proc = install_sh("install", root)
    assert proc.returncode == 0, proc.stderr
    assert (root / "etc/cri-net").stat().st_mode & 0o7777 == mode
    assert set(tree(root)) - set(before) == OURS
    proc = install_sh("uninstall", root)
    assert proc.returncode == 0, proc.stderr
    assert tree(root) == before  # the dirs install found (now empty again) stay, with their modes


def test_uninstall_removes_the_dirs_install_made_only_if_empty(tmp_path):
    root = tmp_path / "root"  # nothing there yet: install makes every directory
    assert install_sh("install", root).returncode == 0
    for d in ("usr", "usr/local", "usr/local/bin", "etc", "etc/cri-net", "etc/systemd", "etc/systemd/system"):
        assert (root / d).stat().st_mode & 0o7777 == 0o755
    proc = install_sh("uninstall", root)
    assert proc.returncode == 0, proc.stderr
    assert not root.exists()  # everything install made, DESTDIR itself included
    assert install_sh("install", root).returncode == 0
    (root / "usr/local/bin/mytool").write_text("#!/bin/sh\n")  # the operator's file in a dir install made
    proc = install_sh("uninstall", root)
    assert proc.returncode == 0, proc.stderr
    assert tree(root) == {"usr": ("0o40755", "dir"), "usr/local": ("0o40755", "dir"),
                          "usr/local/bin": ("0o40755", "dir"),
                          "usr/local/bin/mytool": ("0o100644", b"#!/bin/sh\n")}


def test_install_refuses_an_operators_unit_and_uninstall_keeps_it(tmp_path):
    root = tmp_path / "root"
    unit = root / "etc/systemd/system/cri-net.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/my-own-cri-net\n")
    before = tree(root)
    proc = install_sh("install", root)
    assert proc.returncode == 1 and str(unit) in proc.stderr
    assert tree(root) == before  # refused before changing anything: no links, no config, no manifest
    assert install_sh("uninstall", root).returncode == 0
    assert tree(root) == before


def test_install_refuses_an_operators_symlink_and_uninstall_keeps_it(tmp_path):
    root = tmp_path / "root"
    link = root / "usr/local/bin/cri-net"
    link.parent.mkdir(parents=True)
    link.symlink_to("/opt/other/cri-net")
    before = tree(root)
    proc = install_sh("install", root)
    assert proc.returncode == 1 and str(link) in proc.stderr and "/opt/other/cri-net" in proc.stderr
    assert tree(root) == before
    assert install_sh("uninstall", root).returncode == 0
    assert tree(root) == before


def test_reinstall_is_idempotent_and_adopts_an_install_made_before_manifests(tmp_path):
    root = tmp_path / "root"
    (root / "opt").mkdir(parents=True)  # the operator's
    assert install_sh("install", root).returncode == 0
    manifest = root / "etc/cri-net/install-manifest"
    first, recorded = tree(root), manifest.read_text()
    proc = install_sh("install", root)
    assert proc.returncode == 0, proc.stderr
    assert tree(root) == first and manifest.read_text() == recorded
    # an install by the older install.sh left the same files but no manifest: still cri-net's
    manifest.unlink()
    proc = install_sh("install", root)
    assert proc.returncode == 0, proc.stderr
    assert {line.split("\t")[2] for line in manifest.read_text().splitlines() if not line.startswith("#")} == \
        {str(root / p) for p in OURS - {"etc/cri-net/install-manifest"}}
    assert install_sh("uninstall", root).returncode == 0
    assert {str(p.relative_to(root)) for p in root.rglob("*")} == {"opt", "etc", "etc/cri-net", "etc/systemd",
                                                                  "etc/systemd/system", "usr", "usr/local",
                                                                  "usr/local/bin"}


def test_an_edited_unit_is_neither_replaced_nor_removed(tmp_path):
    root = tmp_path / "root"
    assert install_sh("install", root).returncode == 0
    unit = root / "etc/systemd/system/cri-net.service"
    unit.write_text(unit.read_text() + "Environment=EDITED=1\n")
    edited = unit.read_text()
    proc = install_sh("install", root)
    assert proc.returncode == 1 and str(unit) in proc.stderr
    assert unit.read_text() == edited
    proc = install_sh("uninstall", root)
    assert proc.returncode == 0 and "kept " + str(unit) in proc.stdout
    assert unit.read_text() == edited
    assert not (root / "usr/local/bin/cri-net").exists() and not (root / "etc/cri-net").exists()


def test_reinstall_replaces_a_unit_unchanged_since_it_wrote_it(tmp_path):
    # an older cri-net wrote another unit text: the manifest's hash says it is still as written
    root = tmp_path / "root"
    assert install_sh("install", root).returncode == 0
    unit, manifest = root / "etc/systemd/system/cri-net.service", root / "etc/cri-net/install-manifest"
    new_text = unit.read_text()
    old_text = "[Service]\nExecStart=/old/cri-net serve\n"
    unit.write_text(old_text)
    manifest.write_text(manifest.read_text().replace(hashlib.sha256(new_text.encode()).hexdigest(),
                                                     hashlib.sha256(old_text.encode()).hexdigest()))
    proc = install_sh("install", root)
    assert proc.returncode == 0, proc.stderr
    assert unit.read_text() == new_text
    assert install_sh("uninstall", root).returncode == 0 and not unit.exists()


def test_make_test_forwards_args():
    proc = make("test", "ARGS=tests/unit/test_config.py -k test_defaults -q -p no:cacheprovider")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout and "deselected" in proc.stdout
