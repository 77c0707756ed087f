"""Bad-input suite (issue 11, findings 10 and 11), root: a real `cri-net serve` among special files.

- Start-up with a FIFO, a symlink to /dev/zero, a symlink loop, a dangling symlink, a
  directory and a huge sparse file in the conf dir, the cache results dir and the state
  dir, and a FIFO as the pod CIDR file: the server serves within the start timeout (a FIFO
  used to hang it forever, a `.conflist` loop made it exit), Status verbose lists every
  special conf-dir entry as skipped naming it, the log names every other one, and a pod
  still runs on the valid network and is removed cleanly.
- A self-referencing `.conflist` appearing at run time is reported in Status, and a valid
  network added after it is still loaded (it used to block every later reload, silently).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from integration.faultkit_b import pod_config, wait_for
from integration.hostaudit import Audit, UniqueNet
from integration.serve_fixture import CRIServer, cri_server_factory, default_conflist  # noqa: F401
from tests.reliability import record

SUITE = "bad-input"
AUDITED = "serves within the start timeout; every special entry reported naming it; pods still work; host audit"
SPECIALS = ("fifo", "devzero", "loop", "dangling", "dir", "sparse")


def make_special(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "devzero":
        path.symlink_to("/dev/zero")
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "dangling":
        path.symlink_to(path.name + ".missing")
    elif kind == "dir":
        path.mkdir()
    elif kind == "sparse":
        with open(path, "wb") as fh:
            fh.truncate(64 << 30)  # 64 GiB, no block written
    else:
        raise AssertionError(kind)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    else:
        path.unlink(missing_ok=True)


def config_info(srv: CRIServer) -> dict[str, Any]:
    with srv.client() as c:
        return c.info()["config"]


def test_serve_starts_among_special_files_and_reports_them(cri_server_factory: Callable[..., CRIServer],
                                                           host_audit: Callable[..., Audit],
                                                           unique_net: UniqueNet) -> None:
    record("special files: real server start-up and run-time conf dir", runs=1, audited=AUDITED, suite=SUITE)
    srv = cri_server_factory(start=False)
    audit = host_audit(cache_dir=srv.cache_dir, ipam_dir=srv.ipam_dir, state_dir=srv.state_dir,
                       netns_dirs=[srv.netns_dir], ignore=[srv.foreign_state])
    results, sandboxes = srv.cache_dir / "results", srv.state_dir / "sandboxes"
    results.mkdir(parents=True)
    sandboxes.mkdir(parents=True)
    made: list[Path] = []
    conf_bad = []
    for i, kind in enumerate(SPECIALS):
        for path in (srv.conf_dir / f"0{i}-{kind}.conflist", results / f"{unique_net.name}-bad{i}-eth0",
                     sandboxes / f"bad{i}.json"):
            make_special(path, kind)
            made.append(path)
        conf_bad.append(str(srv.conf_dir / f"0{i}-{kind}.conflist"))
    runtime = srv.state_dir / "runtime.json"
    os.mkfifo(runtime)
    made.append(runtime)
    # a unix socket named like a config: open() would fail with ENXIO
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(srv.conf_dir / "09-sock.conf"))
    made.append(srv.conf_dir / "09-sock.conf")
    conf_bad.append(str(srv.conf_dir / "09-sock.conf"))
    try:
        start = time.monotonic()
        srv.start()
        assert time.monotonic() - start < 20
        info = config_info(srv)
        assert [n["name"] for n in info["networks"]] == [unique_net.name], info
        skipped = {s["file"]: s["reason"] for s in info["skipped"]}
        assert sorted(skipped) == sorted(conf_bad), skipped
        assert info["lastReloadError"] == "" and info["podCIDR"] == "", info
        log = srv.log
        for path in made:
            if path.parent != srv.conf_dir:
                assert str(path) in log, f"{path} not reported in the server log"
        with srv.client(timeout=60) as c:
            sid = c.runp(pod_config("among-specials"))
            assert c.inspectp(sid, verbose=False).status.network.ip
            c.rmp(sid)
        srv.stop()
    finally:
        sock.close()
        for path in made:
            remove(path)
    audit.assert_clean(ignore=[unique_net.per_network_state])


def test_conflist_loop_at_run_time_is_reported_and_later_reloads_apply(
        cri_server_factory: Callable[..., CRIServer], net_factory: Callable[[], UniqueNet],
        host_audit: Callable[..., Audit], unique_net: UniqueNet) -> None:
    record("special files: real server start-up and run-time conf dir", runs=1, audited=AUDITED, suite=SUITE)
    srv = cri_server_factory()
    audit = host_audit(cache_dir=srv.cache_dir, ipam_dir=srv.ipam_dir, state_dir=srv.state_dir,
                       netns_dirs=[srv.netns_dir], ignore=[srv.foreign_state])
    loop = srv.conf_dir / "05-loop.conflist"
    loop.symlink_to(loop.name)
    try:
        info = wait_for(lambda: (i := config_info(srv)) and any(s["file"] == str(loop) for s in i["skipped"]) and i,
                        timeout=15, what="the loop reported in Status")
        assert "loop" in next(s["reason"] for s in info["skipped"] if s["file"] == str(loop))
        assert info["lastReloadError"] == "", info
        second = net_factory()
        second.ipam_dirs.add(srv.ipam_dir)
        second.cache_dirs.add(srv.cache_dir)
        staged = srv.root / "staging.conflist"
        staged.write_text(json.dumps(default_conflist(second, srv.ipam_dir)))
        staged.replace(srv.conf_dir / "20-second.conflist")
        info = wait_for(lambda: (i := config_info(srv)) and len(i["networks"]) == 2 and i, timeout=15,
                        what="the network added after the loop loaded")
        assert [n["name"] for n in info["networks"]] == [unique_net.name, second.name]
        assert [s["file"] for s in info["skipped"]] == [str(loop)]
        with srv.client(timeout=60) as c:
            sid = c.runp(pod_config("after-loop"))
            c.rmp(sid)
        loop.unlink()
        wait_for(lambda: config_info(srv)["skipped"] == [], timeout=15, what="the loop's report gone")
        assert srv.alive()
    finally:
        loop.unlink(missing_ok=True)
    srv.stop()
    audit.assert_clean(ignore=[unique_net.per_network_state])
