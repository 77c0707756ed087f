"""The sockets of a real `cri-net serve` under abuse, bursts, hung plugins and SIGTERM (issue 11,
findings 1, 4, 5, 6, 9 and 12).

Each test runs its own `cri-net serve` (integration.serve_fixture) with its directories in
tmp_path; CNI calls come from the real launchers (`cri-net-cni`, or the `python -S` launcher
`cri-net cni-plugin install` writes) over the server's real cni.sock; the hung plugin is the
fixture's slow chained plugin. Nothing leaves loopback or the namespaces the test creates.
"""

from __future__ import annotations

import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_net.plugin import wire as cni_wire
from cri_net.plugin.launcher import install
from cri_net.server.sandbox import sandbox_id
from integration.hostaudit import CNI_PLUGIN_DIR
from integration.hostaudit import UniqueNet
from integration.serve_fixture import (  # noqa: F401 - fixtures
    CRI_NET,
    SLOW_PLUGIN,
    CRIServer,
    cri_server,
    cri_server_factory,
)
from tests.reliability import record

HOOK = CRI_NET.with_name("cri-net-cni")
SUITE = "fault"


def pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "h11", "uid": secrets.token_hex(8), "attempt": 0},
            "labels": {}, "annotations": {}, "linux": {}}


def pod_id(cfg: dict[str, Any]) -> str:
    md = cfg["metadata"]
    return sandbox_id(md["namespace"], md["name"], md["uid"], 0)


def plugin_conf(srv: CRIServer, cni_sock: str) -> dict[str, Any]:
    """The runtime's `cri-net` plugin config, pointing at the test server's directories."""
    return {"cniVersion": "1.0.0", "name": "cri-net", "type": "cri-net", "confDir": str(srv.conf_dir),
            "cacheDir": str(srv.cache_dir), "binDirs": [str(srv.bin_dir), str(CNI_PLUGIN_DIR)],
            "daemonSocket": cni_sock}


def launch(exe: Path, command: str, conf: dict[str, Any], container: str = "h11", netns: str = "",
           **popen: Any) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update(CNI_COMMAND=command, CNI_CONTAINERID=container, CNI_NETNS=netns, CNI_IFNAME="eth0",
               CNI_ARGS="K8S_POD_NAMESPACE=h11;K8S_POD_NAME=p;K8S_POD_UID=u", CNI_PATH=str(CNI_PLUGIN_DIR))
    proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, **popen)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(conf).encode())
    proc.stdin.close()
    proc.stdin = None  # sent: communicate() only collects the output
    return proc


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode() + err.decode()


def handed_calls(srv: CRIServer, command: str) -> int:
    """CNI calls the server ran for the launchers (its log), as opposed to in-process work."""
    return len(re.findall(rf"CNI call\b.*\bcommand={command}\b", srv.log))


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A 0755 directory outside pytest's 0700 tmp, so an unprivileged peer can reach a socket."""
    path = Path(tempfile.mkdtemp(prefix="crinet-t-h11-", dir="/run"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---- finding 9: only a socket is ever replaced ---------------------------------------------


@pytest.mark.parametrize("flag", ["--listen", "--cni-listen"])
@pytest.mark.parametrize("kind", ["file", "directory", "symlink"])
def test_a_non_socket_at_a_listen_path_is_an_error_and_left_alone(
        cri_server_factory: Callable[..., CRIServer], tmp_path: Path, flag: str, kind: str) -> None:
    target = tmp_path / f"{kind}-{flag.strip('-')}.sock"
    if kind == "file":
        target.write_text("precious\n")
    elif kind == "directory":
        target.mkdir()
    else:
        (tmp_path / "real").write_text("precious\n")
        target.symlink_to(tmp_path / "real")
    before = os.lstat(target)
    if flag == "--listen":
        srv = cri_server_factory(f"s-{kind}", start=False, socket=target)
    else:
        srv = cri_server_factory(f"s-{kind}", start=False, extra_args=["--cni-listen", str(target)])
    rc, out = srv.run_to_exit()
    assert rc != 0, out
    assert f"{target} exists and is not a socket" in out, out
    after = os.lstat(target)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode), f"{target} was replaced"
    if kind != "directory":
        assert target.read_text() == "precious\n"
    assert not srv.socket.exists() or flag == "--listen", "the CRI socket was made although start-up failed"
    record("serve: non-socket at a listen path", audited="refused naming the path; the file untouched", suite=SUITE)


# ---- finding 4: idle, partial and unprivileged connections ---------------------------------


def _unprivileged_call(path: str) -> bytes:
    """A full, valid STATUS request from uid 65534; what the server answered."""
    request = cni_wire.encode_request({"CNI_COMMAND": "STATUS"}, b'{"cniVersion": "1.1.0"}')
    code = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.settimeout(20)\n"
            f"s.connect({path!r})\ns.sendall({request!r})\ns.shutdown(socket.SHUT_WR)\n"
            "data = b''\ntry:\n    while True:\n        chunk = s.recv(65536)\n        if not chunk: break\n"
            "        data += chunk\nexcept ConnectionResetError:\n    pass\n"
            "sys.stdout.write(data.hex())\n")
    proc = subprocess.run(["/usr/bin/python3", "-S", "-c", code], user=65534, group=65534, capture_output=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    return bytes.fromhex(proc.stdout.decode())


def test_cni_socket_abuse_never_starves_the_server(cri_server_factory: Callable[..., CRIServer],
                                                   public_dir: Path, tmp_path: Path) -> None:
    """With a 256-fd limit, 400 idle and half-sent connections to cni.sock and unprivileged
    callers: the CRI socket still answers, conf reloads still work, a real CNI call is still
    handed to the server, and unprivileged callers get nothing."""
    cni_sock = str(public_dir / "cni.sock")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # inherited by the server only
    try:
        srv = cri_server_factory(extra_args=["--cni-listen", cni_sock])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    os.chmod(cni_sock, 0o666)  # let uid 65534 reach the server's own peer check
    abusers: list[socket.socket] = []
    try:
        for n in range(400):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(cni_sock)
            except BlockingIOError:
                pass
            if n % 2:
                try:
                    s.send(cni_wire.MAGIC + b"CNI_COMMAND=ADD\0")
                except BlockingIOError:
                    pass
            abusers.append(s)
        assert _unprivileged_call(cni_sock) == b"", "an unprivileged peer got an answer"
        with srv.client(timeout=5) as c:
            start = time.monotonic()
            c.version()
            assert time.monotonic() - start < 2
            # a conf reload must still be able to open files
            extra = {"cniVersion": "1.0.0", "name": "h11-extra", "plugins": [{"type": "loopback"}]}
            (srv.conf_dir / "20-extra.conflist").write_text(json.dumps(extra))
            deadline = time.monotonic() + 15
            while "h11-extra" not in json.dumps(c.info()):
                assert time.monotonic() < deadline, f"conf reload failed under abuse:\n{srv.log_tail()}"
                time.sleep(0.2)
        status = finish(launch(HOOK, "STATUS", plugin_conf(srv, cni_sock)), timeout=60)
        assert status[0] == 0, status
        assert handed_calls(srv, "STATUS") == 1, "the STATUS call did not reach the server"
        assert "refused CNI handoff from unprivileged peer" in srv.log
    finally:
        for s in abusers:
            s.close()
    record("serve: cni.sock abuse (400 idle/partial, unprivileged peer) at a 256-fd limit",
           audited="CRI answers, reload works, real call served, unprivileged refused", suite=SUITE)


# ---- finding 6: bursts over the backlog ------------------------------------------------------


def test_a_burst_of_launcher_calls_is_all_handed_to_the_server(cri_server: CRIServer, tmp_path: Path) -> None:
    """64 simultaneous launcher calls: every one is served by the server (with its
    per-container serialisation), none silently runs in-process."""
    exe = Path(install(str(tmp_path / "bin"), native=False))
    cni_sock = str(cri_server.socket.with_name("cni.sock"))
    conf = plugin_conf(cri_server, cni_sock)
    procs = [launch(exe, "STATUS", conf, container=f"b{n}") for n in range(64)]
    results = [finish(p) for p in procs]
    assert all(rc == 0 for rc, _ in results), [r for r in results if r[0]][:3]
    assert handed_calls(cri_server, "STATUS") == 64, "some calls ran in-process instead of in the server"
    record("serve: burst of 64 simultaneous launcher calls", audited="all served by the server", suite=SUITE)


# ---- finding 5: cheap RPCs while plugins hang ------------------------------------------------


def _slow_only(net: UniqueNet, srv_root: Path) -> dict[str, Any]:
    slow = srv_root / "slow"
    return {"cniVersion": "1.0.0", "name": net.name,
            "plugins": [{"type": SLOW_PLUGIN, "markerDir": str(slow / "markers"), "delayFile": str(slow / "delay")}]}


def test_cheap_rpcs_never_wait_behind_hung_plugins(cri_server_factory: Callable[..., CRIServer],
                                                   unique_net: UniqueNet, tmp_path: Path) -> None:
    """40 RunPodSandbox hang in a plugin: Version, Status, List, PodSandboxStatus and a Stop
    stay fast (p99 < 0.5 s); starts beyond the admission bound fail fast."""
    srv = cri_server_factory(slow_plugin=True, conflist=_slow_only(unique_net, tmp_path / "srv"))
    srv.set_slow_delay(120)
    results: dict[str, Any] = {}

    def start(cfg: dict[str, Any]) -> None:
        t0 = time.monotonic()
        try:
            with CRIClient_(srv) as c:
                results[pod_id(cfg)] = c.runp(cfg)
        except grpc.RpcError as exc:
            results[pod_id(cfg)] = (exc.code(), time.monotonic() - t0)

    configs = [pod(f"hang-{n}") for n in range(40)]
    srv.known_ids |= {pod_id(cfg) for cfg in configs}
    threads = [threading.Thread(target=start, args=(cfg,)) for cfg in configs]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(list((srv.slow_dir / "markers").iterdir())) < 16:
            assert time.monotonic() < deadline, f"the plugin never hung 16 starts:\n{srv.log_tail()}"
            time.sleep(0.05)
        time.sleep(0.5)  # the other 24 are queued now
        timings: list[float] = []
        with srv.client(timeout=10) as c:
            for _ in range(20):
                for call in (c.version, c.info, c.pods,
                             lambda: _expect_not_found(c.inspectp, "0" * 64),
                             lambda: c.stopp("f" * 64)):  # unknown: a no-op, as CRI wants
                    t0 = time.monotonic()
                    call()
                    timings.append(time.monotonic() - t0)
        timings.sort()
        p99 = timings[int(len(timings) * 0.99) - 1]
        assert p99 < 0.5, f"cheap RPCs waited behind hung plugins: p99 {p99:.2f}s, max {timings[-1]:.2f}s"
        # beyond 16 running + 32 waiting, starts are refused at once
        extra = [pod(f"over-{n}") for n in range(12)]
        srv.known_ids |= {pod_id(cfg) for cfg in extra}
        over = [threading.Thread(target=start, args=(cfg,)) for cfg in extra]
        for t in over:
            t.start()
        for t in over:
            t.join(20)
        refused = [r for i, r in results.items() if isinstance(r, tuple) and r[0] == grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert len(refused) >= 4 and all(took < 2 for _, took in refused), results
    finally:
        srv.set_slow_delay(None)
        for t in threads:
            t.join(90)
    first = [results.get(pod_id(cfg)) for cfg in configs]
    refused_first = [r for r in first if isinstance(r, tuple) and r[0] in (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                                                           grpc.StatusCode.UNAVAILABLE)]
    assert not refused_first, f"starts within the admission bound were refused: {refused_first}"
    record("serve: cheap RPCs timed while 40 pod starts hang in a plugin", audited="p99 < 0.5 s; overflow "
           "refused fast", suite=SUITE)


def CRIClient_(srv: CRIServer) -> Any:  # noqa: N802 - a client per thread
    from cri_net.cri.client import CRIClient

    return CRIClient(str(srv.socket), timeout=120)


def _expect_not_found(call: Callable[[str], Any], sid: str) -> None:
    try:
        call(sid)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
        return
    raise AssertionError("expected NOT_FOUND")


# ---- finding 12: SIGTERM drains both sockets ---------------------------------------------------


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"crinet-t-h11-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield f"/run/netns/{name}"
    subprocess.run(["ip", "netns", "delete", name], check=False)


def test_sigterm_lets_calls_in_flight_on_both_sockets_finish(cri_server_factory: Callable[..., CRIServer],
                                                             netns: str) -> None:
    """A CNI ADD (cni.sock) and a RunPodSandbox (gRPC) both in a plugin when SIGTERM comes:
    both get their answers, the ADD leaves its cache entry, the server exits 0."""
    srv = cri_server_factory(slow_plugin=True)
    cni_sock = str(srv.socket.with_name("cni.sock"))
    container = "h11-" + secrets.token_hex(6)
    srv.known_ids.add(container)
    cfg = pod("drain")
    srv.known_ids.add(pod_id(cfg))
    srv.set_slow_delay(30)
    got: dict[str, Any] = {}

    def runp() -> None:
        try:
            with CRIClient_(srv) as c:
                got["runp"] = c.runp(cfg)
        except grpc.RpcError as exc:
            got["runp"] = exc

    add = launch(HOOK, "ADD", plugin_conf(srv, cni_sock), container=container, netns=netns)
    rpc = threading.Thread(target=runp)
    rpc.start()
    deadline = time.monotonic() + 30
    while not (srv.slow_marker(container).exists() and srv.slow_marker(pod_id(cfg)).exists()):
        assert time.monotonic() < deadline, f"calls never reached the plugin:\n{srv.log_tail()}"
        time.sleep(0.05)
    srv.send(signal.SIGTERM)
    time.sleep(1.0)
    assert srv.alive(), "the server exited with calls in flight"
    srv.set_slow_delay(None)
    rc, out = finish(add)
    rpc.join(60)
    srv.assert_stopped_cleanly()
    try:
        assert rc == 0, f"the ADD in flight got no answer: {out}\n{srv.log_tail()}"
        assert json.loads(out.splitlines()[0])["ips"], out
        assert any(container in name for name in srv.cache_files()), srv.cache_files()
        assert got.get("runp") == pod_id(cfg), got
    finally:  # the server is gone: undo the ADD in-process
        conf = plugin_conf(srv, "")
        rc, out = finish(launch(HOOK, "DEL", conf, container=container, netns=netns))
        assert rc == 0, out
    assert not any(container in name for name in srv.cache_files())
    assert container not in srv.leases().values()
    record("serve: SIGTERM with a CNI ADD and a RunPodSandbox in flight", audited="both answered; cache entry "
           "kept; exit 0", suite=SUITE)
