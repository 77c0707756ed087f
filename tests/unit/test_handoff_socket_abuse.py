"""Socket abuse against the CNI handoff endpoint and a busy server seen by the client
(issue 11, findings 4 and 6).

The endpoint runs in this process on a tmp socket; callers are real sockets and the real
`cri-net-cni` executable. Generated abuse: mixes of idle connections, partial requests and
slow senders, more of them than the endpoint serves at once; a real call made after them
must still be answered by the endpoint, and the endpoint must hold a bounded number of fds.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from badinput_strategies import props
from cri_net.plugin import wire as cni_wire
from cri_net.server.cni_endpoint import CNIEndpoint
from test_cni_handoff import hook
from test_cni_handoff import node  # noqa: F401 - fixture
from test_cni_plugin import Node
from tests.reliability import record

SUITE = "bad input"
LIMIT = 6


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def small_endpoint(tmp_path: Path) -> Iterator[CNIEndpoint]:
    ep = CNIEndpoint(str(tmp_path / "run" / "cni.sock"), max_connections=LIMIT, request_deadline=3.0)
    ep.start()
    yield ep
    ep.stop(grace=5)


def _abuser(path: str, kind: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(path)
    except BlockingIOError:
        pass  # queued behind the backlog: abuse all the same
    if kind == "partial":
        s.send(cni_wire.MAGIC + b"CNI_COMMAND=ADD\0")
    elif kind == "oversized-header":
        s.send(b"CRINET1\n" + b"CNI_X=" + b"y" * 4000)
    return s


@props(ci=4, full=20)
@given(st.lists(st.sampled_from(["idle", "partial", "oversized-header"]), min_size=LIMIT + 1, max_size=4 * LIMIT))
def test_idle_and_partial_connections_never_keep_calls_out(node: Node, small_endpoint: CNIEndpoint,
                                                           kinds: list[str]) -> None:
    """More idle/half-sent connections than the endpoint serves: it holds at most its limit,
    and a real call made after them is answered by the endpoint, in seconds."""
    before = fd_count()
    abusers = [_abuser(small_endpoint.path, k) for k in kinds]
    try:
        time.sleep(0.3)
        held_by_endpoint = fd_count() - before - len(abusers)
        assert held_by_endpoint <= LIMIT + 1, f"endpoint holds {held_by_endpoint} fds for {len(abusers)} abusers"
        start = time.monotonic()
        add = hook(node, "ADD", node.conf(daemonSocket=small_endpoint.path), container="real")
        took = time.monotonic() - start
        assert add.code == 0 and add.json["ips"][0]["address"] == "10.0.0.5/24", add
        assert small_endpoint.adaptors._adaptors, "the call was not served by the endpoint"
        assert took < 8, f"a real call waited {took:.1f}s behind idle connections"
    finally:
        for s in abusers:
            s.close()
    assert hook(node, "DEL", node.conf(daemonSocket=small_endpoint.path), container="real").code == 0
    record("CNI socket: idle, partial and oversized connections beyond the limit", audited="fds bounded; "
           "real call answered by the server", suite=SUITE)


def test_slowloris_is_cut_off_at_the_request_deadline(small_endpoint: CNIEndpoint) -> None:
    """The deadline is for the whole request, not for each recv."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(small_endpoint.path)
        start = time.monotonic()
        request = cni_wire.MAGIC + b"CNI_COMMAND=ADD\0" * 100
        closed = False
        for byte in request:
            try:
                s.send(bytes([byte]))
            except OSError:
                closed = True
                break
            s.settimeout(0.25)
            try:
                if s.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
            if time.monotonic() - start > 8:
                break
        took = time.monotonic() - start
    assert closed, f"a connection sending a byte every 0.25 s was still open after {took:.1f}s"
    assert 2.5 < took < 5.0, took
    record("CNI socket: slowloris request", audited="closed at the whole-request deadline", suite=SUITE)


def test_oversized_request_is_cut_off(small_endpoint: CNIEndpoint) -> None:
    """A request over cni_wire.MAX_MESSAGE is not buffered to the end: the server hangs up."""
    cut_off = False
    sent = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(small_endpoint.path)
        s.settimeout(10)
        chunk = cni_wire.MAGIC + b"x" * 65536
        try:
            while sent < cni_wire.MAX_MESSAGE + 8 * 1024 * 1024:
                sent += s.send(chunk)
        except OSError:  # EPIPE / ECONNRESET: the server closed
            cut_off = True
    assert cut_off, f"the server took {sent} bytes of one request"
    assert sent >= cni_wire.MAX_MESSAGE - 65536


def test_client_waits_for_a_busy_server_instead_of_working_around_it(tmp_path: Path) -> None:
    """A full backlog is a busy server, not a missing one: the call waits and is delivered."""
    path = str(tmp_path / "busy.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(0)  # one pending connection fills it
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    filler.connect(path)
    got: dict[str, Any] = {}

    def client() -> None:
        start = time.monotonic()
        try:
            got["answer"] = cni_wire.call(path, {"CNI_COMMAND": "DEL"}, b"{}", timeout=20)
        except Exception as exc:  # noqa: BLE001 - reported below
            got["error"] = exc
        got["took"] = time.monotonic() - start

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(1.0)
    assert "error" not in got, f"a busy server was taken for no server: {got.get('error')!r}"
    first, _ = server.accept()  # the filler
    first.close()
    conn, _ = server.accept()
    conn.settimeout(10)
    env, stdin = cni_wire.decode_request(cni_wire.read_all(conn, timeout=10))
    conn.sendall(cni_wire.encode_reply(0, b""))
    conn.close()
    thread.join(20)
    server.close()
    filler.close()
    assert env["CNI_COMMAND"] == "DEL" and stdin == b"{}"
    assert got.get("answer") == (0, b""), got
    assert got["took"] >= 0.9


def test_client_gives_up_on_a_server_that_never_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiting for a busy server is bounded: DaemonBusy, never a hang or in-process work."""
    monkeypatch.setattr(cni_wire, "CONNECT_WAIT", 1)
    path = str(tmp_path / "stuck.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(0)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as filler:
            filler.connect(path)
            start = time.monotonic()
            with pytest.raises(cni_wire.DaemonBusy):
                cni_wire.call(path, {"CNI_COMMAND": "ADD"}, b"{}")
            assert time.monotonic() - start < 3
            rc, out = cni_wire.try_handoff({"CNI_COMMAND": "ADD"}, b'{"cniVersion": "0.4.0", "daemonSocket": "%s"}'
                                           % path.encode())  # type: ignore[misc]
            assert rc == 1 and b'"code": 11' in out and b"busy" in out, out
            assert cni_wire.try_handoff({"CNI_COMMAND": "DEL"}, b'{"daemonSocket": "%s"}' % path.encode()) is None


def test_no_socket_file_and_nobody_listening_mean_no_server(tmp_path: Path) -> None:
    with pytest.raises(cni_wire.DaemonUnavailable):
        cni_wire.call(str(tmp_path / "none.sock"), {"CNI_COMMAND": "ADD"}, b"{}")
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()  # the file stays, nobody listens: ECONNREFUSED
    with pytest.raises(cni_wire.DaemonUnavailable):
        cni_wire.call(str(stale), {"CNI_COMMAND": "ADD"}, b"{}")
