"""cri_net.netns.run_in: code that must act inside a pod's netns (the Multus default route)
runs on a thread moved there, never in a forked child of the multi-threaded server."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from cri_net import netns


def _links() -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())


def test_runs_inside_the_netns_and_leaves_the_caller_where_it_was(tmp_path: Path) -> None:
    path = netns.create(str(tmp_path / "ns"))
    try:
        before = os.readlink("/proc/thread-self/ns/net")
        threads = threading.active_count()
        assert netns.run_in(path, _links) == ["lo"]
        assert os.readlink("/proc/thread-self/ns/net") == before
        assert "lo" in _links() and len(_links()) >= 1
        assert threading.active_count() == threads  # the thread that moved is gone
    finally:
        netns.remove(path)


def test_errors_name_the_netns_and_exceptions_reach_the_caller(tmp_path: Path) -> None:
    missing = str(tmp_path / "gone")
    with pytest.raises(OSError, match=f"open netns {missing}"):
        netns.run_in(missing, _links)
    not_a_netns = tmp_path / "plain"
    not_a_netns.write_text("")
    with pytest.raises(OSError, match=f"setns.*{not_a_netns}"):
        netns.run_in(str(not_a_netns), _links)
    fifo = tmp_path / "fifo"  # a broken node: opening it for reading would wait for a writer
    os.mkfifo(fifo)
    with pytest.raises(OSError, match=f"setns.*{fifo}"):
        netns.run_in(str(fifo), _links)
    path = netns.create(str(tmp_path / "ns"))
    try:
        with pytest.raises(ZeroDivisionError):
            netns.run_in(path, lambda: 1 / 0)
    finally:
        netns.remove(path)


@pytest.mark.parametrize("kind", ["fifo", "symlink-loop", "file"])
def test_create_names_a_netns_dir_that_is_not_a_directory(tmp_path: Path, kind: str) -> None:
    directory = tmp_path / "netns"
    if kind == "fifo":
        os.mkfifo(directory)
    elif kind == "symlink-loop":
        directory.symlink_to(directory)
    else:
        directory.write_text("")
    with pytest.raises(OSError, match=f"netns dir {directory} is not a directory"):
        netns.create(str(directory / "pod"))
