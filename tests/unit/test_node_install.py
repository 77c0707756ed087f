"""The DaemonSet's init step (`python -m cri_net.node_install`) on a node as it may be: a
second run changes nothing, and odd files where it writes or reads never hang it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cri_net.node_install import install

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def node(tmp_path: Path) -> dict[str, str]:
    shim = tmp_path / "image" / "cri-net"
    shim.parent.mkdir()
    shutil.copy("/bin/true", shim)  # any ELF executable stands for the static launcher
    return {"shim": str(shim), "bin_dir": str(tmp_path / "opt-cni-bin"), "conf_dir": str(tmp_path / "cni-net.d"),
            "crinet_conf_dir": str(tmp_path / "crinet-net.d")}


def run(node: dict[str, str]) -> list[str]:
    return install(node["shim"], node["bin_dir"], node["conf_dir"], node["crinet_conf_dir"], ["/usr/lib/cni"], None)


def test_installs_once_then_changes_nothing(node: dict[str, str]) -> None:
    launcher = os.path.join(node["bin_dir"], "cri-net")
    conflist = os.path.join(node["conf_dir"], "00-cri-net.conflist")
    assert run(node) == [launcher, conflist]
    assert Path(launcher).read_bytes() == Path(node["shim"]).read_bytes()
    assert os.stat(launcher).st_mode & 0o777 == 0o755
    assert os.path.isdir(node["crinet_conf_dir"])
    assert run(node) == []


def test_a_fifo_where_it_writes_is_replaced_without_blocking(node: dict[str, str]) -> None:
    """A FIFO opened for reading waits for a writer: comparing the old file must not open one."""
    os.makedirs(node["bin_dir"])
    os.makedirs(node["conf_dir"])
    launcher = os.path.join(node["bin_dir"], "cri-net")
    conflist = os.path.join(node["conf_dir"], "00-cri-net.conflist")
    os.mkfifo(launcher)
    os.mkfifo(conflist)
    code = ("import sys; from cri_net.node_install import install; "
            "print(install(*sys.argv[1:5], ['/usr/lib/cni'], None))")
    done = subprocess.run([sys.executable, "-c", code, node["shim"], node["bin_dir"], node["conf_dir"],
                           node["crinet_conf_dir"]], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), check=False)
    assert done.returncode == 0, done.stderr
    assert Path(launcher).is_file() and Path(conflist).is_file()
    assert Path(launcher).read_bytes() == Path(node["shim"]).read_bytes()


@pytest.mark.parametrize("kind", ["missing", "fifo", "directory", "not-elf"])
def test_a_bad_launcher_in_the_image_is_named_and_nothing_is_written(node: dict[str, str], kind: str) -> None:
    """Run as the init container runs it (a child, so a FIFO that blocked would fail on time)."""
    shim = node["shim"]
    os.unlink(shim)
    if kind == "fifo":
        os.mkfifo(shim)
    elif kind == "directory":
        os.mkdir(shim)
    elif kind == "not-elf":
        Path(shim).write_text("#!/bin/sh\n")
    done = subprocess.run([sys.executable, "-m", "cri_net.node_install", "--shim", shim, "--bin-dir", node["bin_dir"],
                           "--conf-dir", node["conf_dir"], "--crinet-conf-dir", node["crinet_conf_dir"]],
                          capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("cri-net node install: ") and shim in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not os.path.exists(node["bin_dir"]) and not os.path.exists(node["conf_dir"])
