"""A real ``cri-net serve`` driven like crictl, against the real Debian plugins (issue 4).

Each test runs its own ``cri-net serve`` subprocess (:mod:`integration.serve_fixture`) with
every directory in ``tmp_path`` and one network from ``unique_net`` (bridge with ipMasq +
host-local + portmap + bandwidth), talks to it over its unix socket with
:class:`cri_net.cri.client.CRIClient`, and ends with a ``host_audit`` check that removing
the pods undid creating them.  Traffic only flows between the test's bridge on the host
and the namespaces the test's server made.
"""

from __future__ import annotations

import ipaddress
import os
import json
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_net.cri.client import CRIClient
from cri_net.cri.pb.runtime.v1 import api_pb2 as pb
from adaptors.cri import annotations as ann
from cri_net.server.sandbox import sandbox_id
from integration.hostaudit import Audit, UniqueNet, bridge_ports, free_port
from integration.serve_fixture import (  # noqa: F401 - fixtures
    CRIServer,
    cri_server,
    cri_server_factory,
    nsfs_mounts_under,
)
from integration.tcpprobe import tcp_listener, tcp_ping_from
from tests.polling import wait_for_path as wait_for

# ------------------------------------------------------------------------- helpers


def pod_config(name: str, *, uid: str | None = None, namespace: str = "default", attempt: int = 0,
               labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
               port_mappings: list[dict[str, Any]] | None = None, host_network: bool = False) -> dict[str, Any]:
    """A pod config as crictl's ``runp pod.json`` takes it."""
    cfg: dict[str, Any] = {
        "metadata": {"name": name, "namespace": namespace, "uid": uid or secrets.token_hex(8), "attempt": attempt},
        "labels": labels or {},
        "annotations": annotations or {},
        "linux": {},
    }
    if port_mappings:
        cfg["port_mappings"] = port_mappings
    if host_network:
        cfg["linux"] = {"security_context": {"namespace_options": {"network": "NODE"}}}
    return cfg


def config_id(cfg: dict[str, Any]) -> str:
    md = cfg["metadata"]
    return sandbox_id(md["namespace"], md["name"], md["uid"], md.get("attempt", 0))


def audit_of(host_audit: Callable[..., Audit], srv: CRIServer) -> Audit:
    """Audit of the server's directories and the host; state provably someone else's (the
    host is shared with concurrent runs) is ignored, see :meth:`CRIServer.foreign_state`."""
    return host_audit(cache_dir=srv.cache_dir, ipam_dir=srv.ipam_dir, state_dir=srv.state_dir,
                      netns_dirs=[srv.netns_dir], ignore=[srv.foreign_state])


def eth0_ipv4(netns: Path) -> list[ipaddress.IPv4Interface]:
    """IPv4 addresses on eth0 inside the pinned namespace ``netns`` (via nsenter)."""
    proc = subprocess.run(["nsenter", f"--net={netns}", "ip", "-4", "-o", "addr", "show", "eth0"],
                          capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, f"ip addr in {netns}: {proc.stderr}"
    return [ipaddress.IPv4Interface(m) for m in re.findall(r"\binet (\S+)", proc.stdout)]



def is_nsfs_mount(path: Path) -> bool:
    return str(path) in nsfs_mounts_under(path.parent)


def nat_table() -> str:
    return subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout


def pod_ip(c: CRIClient, sid: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(c.inspectp(sid, verbose=False).status.network.ip)


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value




def assert_pod_gone(srv: CRIServer, c: CRIClient, sid: str) -> None:
    """Nothing of pod ``sid`` is left: record, listing, netns, lease, cached result."""
    assert sid not in {p.id for p in c.pods()}
    assert sid not in srv.record_ids()
    assert not srv.netns_path(sid).exists(), f"netns of {sid[:13]} left behind"
    assert sid not in srv.leases().values(), f"lease of {sid[:13]} left behind: {srv.leases()}"
    assert not [f for f in srv.cache_files() if sid in f], f"cached result of {sid[:13]} left behind"


def assert_pod_complete(srv: CRIServer, c: CRIClient, sid: str, net: UniqueNet) -> ipaddress.IPv4Address:
    """Pod ``sid`` is listed READY and has its IP on eth0."""
    [item] = c.pods(id_prefix=sid)
    assert item.state == pb.SANDBOX_READY
    ip = pod_ip(c, sid)
    assert ip in net.subnet
    assert [a.ip for a in eth0_ipv4(srv.netns_path(sid))] == [ip]
    assert srv.leases().get(str(ip)) == sid
    return ip


# ------------------------------------------------------------------------- crictl flow


def test_crictl_flow(cri_server: CRIServer, unique_net: UniqueNet, host_audit: Callable[..., Audit]) -> None:
    srv = cri_server
    c = srv.client()

    v = c.version()
    assert (v.version, v.runtime_name, v.runtime_api_version) == ("0.1.0", "cri-net", "v1")
    assert v.runtime_version

    info = c.info()
    conditions = {x["type"]: x for x in info["status"]["conditions"]}
    assert conditions["RuntimeReady"]["status"] is True
    assert conditions["NetworkReady"]["status"] is True, conditions
    [net] = [n for n in info["config"]["networks"] if n["name"] == unique_net.name]
    assert net["plugins"][:3] == ["bridge", "portmap", "bandwidth"]

    audit = audit_of(host_audit, srv)
    host_port = free_port()
    labels = {"app": "web", "tier": "front"}
    annotations = {ann.INGRESS_BANDWIDTH_ANNOTATION: "10M", ann.EGRESS_BANDWIDTH_ANNOTATION: "5M",
                   "example.com/note": "hello"}
    cfg = pod_config("web", labels=labels, annotations=annotations,
                     port_mappings=[{"protocol": "TCP", "container_port": 8080, "host_port": host_port}])
    sid = c.runp(cfg)
    assert sid == config_id(cfg)

    resp = c.inspectp(sid[:13])  # crictl accepts any unique id prefix
    st = resp.status
    assert st.id == sid
    assert st.state == pb.SANDBOX_READY
    assert st.created_at > 0
    assert (st.metadata.name, st.metadata.namespace, st.metadata.uid) == ("web", "default", cfg["metadata"]["uid"])
    assert dict(st.labels) == labels
    assert dict(st.annotations) == annotations
    ip = ipaddress.IPv4Address(st.network.ip)
    assert ip in unique_net.subnet and ip != unique_net.gateway
    assert st.linux.namespaces.options.network == pb.POD
    assert resp.info, "verbose inspectp returned no info"
    verbose = {k: json.loads(v) for k, v in resp.info.items()}  # every verbose value is JSON
    assert verbose["netns"] == str(srv.netns_path(sid))

    # The address is really on eth0 in the pod's namespace, which lives in the server's netns dir.
    assert is_nsfs_mount(srv.netns_path(sid))
    assert [a.ip for a in eth0_ipv4(srv.netns_path(sid))] == [ip]
    # Bandwidth annotations shaped the host veth; the port mapping is a DNAT to the pod.
    [veth] = bridge_ports(unique_net.bridge)
    qdiscs = subprocess.run(["tc", "qdisc", "show", "dev", veth], capture_output=True, text=True).stdout
    assert re.search(r"qdisc tbf .* rate 10Mbit", qdiscs), qdiscs
    assert f"--to-destination {ip}:8080" in nat_table()

    # pods: filters by label and by state.
    assert [p.id for p in c.pods()] == [sid]
    assert [p.id for p in c.pods(labels={"app": "web"})] == [sid]
    assert [p.id for p in c.pods(labels={"app": "web", "tier": "front"})] == [sid]
    assert c.pods(labels={"app": "db"}) == []
    assert [p.id for p in c.pods(state=pb.SANDBOX_READY)] == [sid]
    assert c.pods(state=pb.SANDBOX_NOTREADY) == []
    assert [p.id for p in c.pods(id_prefix=sid[:13])] == [sid]

    # stopp: NOTREADY, the netns stays (containers may still be in it), the network is gone.
    c.stopp(sid[:13])
    st = c.inspectp(sid).status
    assert st.state == pb.SANDBOX_NOTREADY
    assert srv.netns_path(sid).exists() and is_nsfs_mount(srv.netns_path(sid))
    assert bridge_ports(unique_net.bridge) == [], "veth still on the bridge after stopp"
    assert srv.leases() == {} and srv.cache_files() == []
    assert str(ip) not in nat_table()
    assert [p.id for p in c.pods(state=pb.SANDBOX_NOTREADY)] == [sid]
    assert c.pods(state=pb.SANDBOX_READY) == []

    # rmp: gone everywhere.
    c.rmp(sid)
    assert c.pods() == []
    assert rpc_error(lambda: c.inspectp(sid)).code() == grpc.StatusCode.NOT_FOUND
    assert not srv.netns_path(sid).exists()
    # A second stopp / rmp (kubelet retries) succeeds.
    c.stopp(sid)
    c.rmp(sid)
    audit.assert_clean(ignore=[unique_net.per_network_state])


def test_two_pods_talk_tcp_and_port_mapping_reaches_pod_from_host(
    cri_server: CRIServer, unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    srv = cri_server
    c = srv.client()
    audit = audit_of(host_audit, srv)
    host_port, container_port = free_port(), 8080
    sid1 = c.runp(pod_config("server", port_mappings=[
        {"protocol": "TCP", "container_port": container_port, "host_port": host_port}]))
    sid2 = c.runp(pod_config("client"))
    ip1, ip2 = pod_ip(c, sid1), pod_ip(c, sid2)
    assert ip1 != ip2 and {ip1, ip2} <= set(unique_net.subnet.hosts())

    # pod2 -> pod1 over the bridge (no NAT between pods of one network).
    with tcp_listener(srv.netns_path(sid1), str(ip1), 7000) as peer:
        assert tcp_ping_from(srv.netns_path(sid2), str(ip1), 7000) == "pong:ping"
        assert peer() == str(ip2)

    # host -> gateway:hostPort -> DNAT -> pod1:containerPort.  The gateway address is on the
    # test's bridge, so it is local and portmap's OUTPUT DNAT applies (127.0.0.1 is avoided).
    with tcp_listener(srv.netns_path(sid1), str(ip1), container_port) as peer:
        with socket.create_connection((str(unique_net.gateway), host_port), timeout=10) as conn:
            conn.sendall(b"ping")
            assert conn.recv(64) == b"pong:ping"
        assert ipaddress.IPv4Address(peer()) in unique_net.subnet

    for sid in (sid1, sid2):
        c.stopp(sid)
        c.rmp(sid)
    assert c.pods() == []
    audit.assert_clean(ignore=[unique_net.per_network_state])


def test_host_network_pod_gets_no_netns_and_no_cni(
    cri_server: CRIServer, unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    srv = cri_server
    c = srv.client()
    audit = audit_of(host_audit, srv)
    cfg = pod_config("hostnet", labels={"net": "host"}, host_network=True)
    sid = c.runp(cfg)

    st = c.inspectp(sid).status
    assert st.state == pb.SANDBOX_READY
    assert st.linux.namespaces.options.network == pb.NODE
    assert not srv.netns_path(sid).exists()
    # Nothing but cri-net's own record changed: no netns, link, lease, rule or cached result.
    changed = audit.diff()
    assert set(changed.added) == {"state"}, str(changed)
    assert srv.leases() == {} and srv.cache_files() == []
    assert [p.id for p in c.pods(labels={"net": "host"})] == [sid]

    c.stopp(sid)
    assert c.inspectp(sid).status.state == pb.SANDBOX_NOTREADY
    c.rmp(sid)
    assert c.pods() == []
    audit.assert_clean()


def test_status_with_empty_conf_dir(
    cri_server_factory: Callable[..., CRIServer], host_audit: Callable[..., Audit]
) -> None:
    srv = cri_server_factory("empty", conflist=False)
    assert list(srv.conf_dir.iterdir()) == []
    c = srv.client()
    conditions = {x["type"]: x for x in c.info()["status"]["conditions"]}
    assert conditions["RuntimeReady"]["status"] is True
    network = conditions["NetworkReady"]
    assert network["status"] is False
    assert network["reason"] == "NetworkPluginNotReady"
    assert "cni config uninitialized" in network["message"]
    assert list(srv.conf_dir.iterdir()) == [], "a default network was installed without being asked for"

    # No network: RunPodSandbox is refused before anything is made.
    audit = audit_of(host_audit, srv)
    err = rpc_error(lambda: c.runp(pod_config("web")))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err
    assert c.pods() == [] and srv.record_ids() == []
    audit.assert_clean()


# ------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize("config, key", [
    pytest.param({"labels": {"app": "web"}}, "config.metadata", id="missing-metadata"),
    pytest.param({"metadata": {"name": "web", "namespace": "default"}}, "config.metadata.uid", id="missing-uid"),
    pytest.param(pod_config("web", annotations={ann.INGRESS_BANDWIDTH_ANNOTATION: "lots"}),
                 ann.INGRESS_BANDWIDTH_ANNOTATION, id="bad-bandwidth"),
    pytest.param(pod_config("web", annotations={ann.EXTRA_NETWORKS_ANNOTATION: json.dumps(
        [{"name": "crinet-t-nosuchnet", "interface": "net1"}])}), ann.EXTRA_NETWORKS_ANNOTATION,
        id="unknown-network"),
    pytest.param(pod_config("web", annotations={ann.PORT_MAPPINGS_ANNOTATION: "x" * (100 * 1024)}),
                 ann.PORT_MAPPINGS_ANNOTATION, id="100KiB-annotation"),
])
def test_bad_run_pod_sandbox_is_invalid_argument_and_changes_nothing(
    config: dict[str, Any], key: str, cri_server: CRIServer, host_audit: Callable[..., Audit]
) -> None:
    srv = cri_server
    c = srv.client()
    audit = audit_of(host_audit, srv)
    err = rpc_error(lambda: c.runp(config))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    assert key in err.details(), err.details()
    assert len(err.details()) < 2048, "the error echoes the whole value back"
    if key == ann.EXTRA_NETWORKS_ANNOTATION:
        assert "crinet-t-nosuchnet" in err.details()
    assert c.pods() == [] and srv.record_ids() == []
    audit.assert_clean()  # not even the bridge was made


# ------------------------------------------------------------------------- restart


class RunpInThread:
    """RunPodSandbox on its own thread; ``join()`` gives the id or the RpcError."""

    def __init__(self, srv: CRIServer, cfg: dict[str, Any]) -> None:
        self.client = srv.client(timeout=60)
        self.cfg = cfg
        self.outcome: list[Any] = []
        self.thread = threading.Thread(target=self._call)
        self.thread.start()

    def _call(self) -> None:
        try:
            self.outcome.append(self.client.runp(self.cfg))
        except grpc.RpcError as exc:
            self.outcome.append(exc)

    def join(self) -> Any:
        self.thread.join(30)
        assert not self.thread.is_alive(), "RunPodSandbox did not return"
        return self.outcome[0]


def _interrupted_runp(srv: CRIServer, cfg: dict[str, Any], delay: float, after: Path | None = None) -> None:
    """Start RunPodSandbox, kill -9 the server ``delay`` s later (counted from when ``after``
    appears, if given), and wait for the call to return either way."""
    call = RunpInThread(srv, cfg)
    if after is not None:
        wait_for(after)
    time.sleep(delay)
    srv.kill(signal.SIGKILL)
    call.join()


def test_restart_keeps_pods_and_finishes_or_rolls_back_interrupted_runp(
    cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    srv = cri_server_factory(slow_plugin=True)  # bridge, slow (no delay yet), portmap, bandwidth
    audit = audit_of(host_audit, srv)
    c = srv.client()
    sids, took = [], []
    for i in range(3):
        t0 = time.monotonic()
        sids.append(c.runp(pod_config(f"keep-{i}")))
        took.append(time.monotonic() - t0)
    ips = {sid: pod_ip(c, sid) for sid in sids}
    assert len(set(ips.values())) == 3

    srv.kill(signal.SIGKILL)
    assert srv.socket.exists()  # a crash leaves the socket file behind
    # What a kill during a record write (fsutil.atomic_write, between mkstemp and rename)
    # leaves; the kills below hit that window now and then, this makes it certain.
    (srv.state_dir / "sandboxes" / ".tmp-killedwrite").write_text('{"id": "half')
    srv.restart()
    c = srv.client()
    assert sorted(p.id for p in c.pods(state=pb.SANDBOX_READY)) == sorted(sids)
    for sid in sids:
        assert assert_pod_complete(srv, c, sid, unique_net) == ips[sid]

    # Killed while the slow plugin sleeps: bridge already made veth + lease, the record says
    # CREATING; the restarted server must roll the pod back completely.
    srv.set_slow_delay(30)
    cfg = pod_config("interrupted-slow")
    sid = config_id(cfg)
    marker = srv.slow_marker(sid)
    _interrupted_runp(srv, cfg, 0.1, after=marker)
    assert len(bridge_ports(unique_net.bridge)) == 4  # the interrupted pod's veth exists
    srv.set_slow_delay(None)  # lets the orphaned plugin finish (into a closed pipe)
    srv.restart()
    c = srv.client()
    assert_pod_gone(srv, c, sid)
    assert len(bridge_ports(unique_net.bridge)) == 3, "the rolled-back pod's veth is still on the bridge"
    assert "rolling back interrupted RunPodSandbox" in srv.log

    # Killed at moments spread over a real RunPodSandbox (its duration varies with the
    # host's load, so the delays are fractions of a measured one): whole or gone, never half.
    outcomes = []
    runp_time = sorted(took)[1]
    for i, fraction in enumerate((0.0, 0.2, 0.4, 0.6, 0.8, 1.0)):
        delay = fraction * runp_time
        cfg = pod_config(f"interrupted-{i}")
        sid = config_id(cfg)
        _interrupted_runp(srv, cfg, delay)
        srv.restart()
        c = srv.client()
        if sid in {p.id for p in c.pods()}:
            assert_pod_complete(srv, c, sid, unique_net)
            outcomes.append(f"{delay:.2f}s: complete")
        else:
            assert_pod_gone(srv, c, sid)
            outcomes.append(f"{delay:.2f}s: gone")
        ports = bridge_ports(unique_net.bridge)
        assert len(ports) == len(c.pods()), f"after kill at {delay}s: veths {ports} vs pods {len(c.pods())}"
    for sid in sids:
        assert assert_pod_complete(srv, c, sid, unique_net) == ips[sid]

    for p in c.pods():
        c.stopp(p.id)
        c.rmp(p.id)
    assert c.pods() == [] and srv.record_ids() == []
    print("interrupted RunPodSandbox outcomes:", outcomes)
    # Everything but atomic_write's temp files first, so those get their own message below.
    temp_file = re.compile(r"^state: .*/\.tmp-[^/]*$")
    audit.assert_clean(ignore=[unique_net.per_network_state, temp_file])
    leftovers = sorted(p.name for p in (srv.state_dir / "sandboxes").glob(".tmp-*"))
    assert not leftovers, (f"temp files of a record write interrupted by kill -9 are never cleaned up by the "
                           f"restarted server: {leftovers}")
    audit.assert_clean(ignore=[unique_net.per_network_state])


# ------------------------------------------------------------------------- concurrency


def test_sixteen_concurrent_run_pod_sandbox(
    cri_server: CRIServer, unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    srv = cri_server
    c = srv.client(timeout=120)
    audit = audit_of(host_audit, srv)
    configs = [pod_config(f"many-{i}", labels={"batch": "16"}) for i in range(16)]
    barrier = threading.Barrier(16)

    def run(cfg: dict[str, Any]) -> str:
        barrier.wait()
        return c.runp(cfg)

    with ThreadPoolExecutor(16) as pool:
        sids = list(pool.map(run, configs))
    assert sids == [config_id(cfg) for cfg in configs]
    ips = [pod_ip(c, sid) for sid in sids]
    assert len(set(ips)) == 16 and all(ip in unique_net.subnet for ip in ips)
    assert len(c.pods(labels={"batch": "16"}, state=pb.SANDBOX_READY)) == 16
    assert len(bridge_ports(unique_net.bridge)) == 16

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(c.rmp, sids))
    assert c.pods() == [] and srv.record_ids() == []
    audit.assert_clean(ignore=[unique_net.per_network_state])


# ------------------------------------------------------------------------- socket life cycle


def test_sigterm_live_socket_and_stale_socket(
    cri_server: CRIServer, cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet
) -> None:
    srv = cri_server
    c = srv.client()
    sid = c.runp(pod_config("survivor"))
    ip = pod_ip(c, sid)

    # A second server (own directories) on the live socket gives up with a clear message
    # and leaves the first one serving.
    second = cri_server_factory("second", start=False, socket=srv.socket)
    rc, out = second.run_to_exit()
    assert rc != 0
    assert f"another server is already listening on {srv.socket}" in out, out
    assert srv.alive() and srv.socket.exists()
    assert srv.client().version().runtime_name == "cri-net"

    # SIGTERM: exit 0, socket removed (CRIServer.stop asserts both); the pod survives it.
    srv.stop()
    srv.start()
    c = srv.client()
    assert assert_pod_complete(srv, c, sid, unique_net) == ip
    srv.stop()

    # A stale socket file (bound, nobody listening: what a crash leaves) is replaced.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(srv.socket))
    stale.close()
    assert srv.socket.exists()
    srv.start()
    assert srv.client().version().runtime_name == "cri-net"
    assert oct(srv.socket.stat().st_mode & 0o777) == oct(0o660)
    c = srv.client()
    c.rmp(sid)
    assert c.pods() == []


def test_second_server_on_live_socket_leaves_in_flight_pod_alone(
    cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet
) -> None:
    """A second ``cri-net serve`` started by mistake with the same directories (say, a unit
    started twice) must give up on the live socket without touching the first one's pods,
    including one whose RunPodSandbox is still in flight (record CREATING)."""
    srv = cri_server_factory(slow_plugin=True)
    srv.set_slow_delay(60)
    cfg = pod_config("in-flight")
    sid = config_id(cfg)
    call = RunpInThread(srv, cfg)
    wait_for(srv.slow_marker(sid))
    second = cri_server_factory("second", start=False, socket=srv.socket, share_dirs_with=srv)
    rc, out = second.run_to_exit()
    assert rc != 0 and f"another server is already listening on {srv.socket}" in out, out
    touched = [ln for ln in out.splitlines() if sid in ln]
    assert srv.netns_path(sid).exists() and not touched, (
        "the second server acted on the live server's in-flight pod before giving up on the socket:\n"
        + "\n".join(touched))
    srv.set_slow_delay(None)
    assert call.join() == sid
    c = srv.client()
    assert_pod_complete(srv, c, sid, unique_net)
    c.rmp(sid)


def test_sigterm_finishes_in_flight_run_pod_sandbox(
    cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    """SIGTERM while a RunPodSandbox is in its plugin chain: the call completes, then the
    server exits 0 and removes its socket; the restarted server has the pod READY."""
    srv = cri_server_factory(slow_plugin=True)
    audit = audit_of(host_audit, srv)
    srv.set_slow_delay(60)
    cfg = pod_config("finishing")
    sid = config_id(cfg)
    call = RunpInThread(srv, cfg)
    wait_for(srv.slow_marker(sid))
    srv.send(signal.SIGTERM)
    time.sleep(0.5)
    assert srv.alive(), "the server exited with a RunPodSandbox in flight"
    srv.set_slow_delay(None)  # the plugin chain goes on
    assert call.join() == sid
    srv.assert_stopped_cleanly()
    srv.start()
    c = srv.client()
    assert_pod_complete(srv, c, sid, unique_net)
    c.rmp(sid)
    assert c.pods() == []
    audit.assert_clean(ignore=[unique_net.per_network_state])


def test_sigterm_that_lands_on_another_thread_still_stops_the_server(cri_server: CRIServer) -> None:
    """The kernel may hand a process-directed SIGTERM to any thread (gRPC's, the GC's); Python
    runs the handler only in the main thread, so a main thread asleep on a lock without a
    timeout never saw it (`make run` once ignored SIGTERM for 30 s). Send it to a worker
    thread on purpose: the server must still shut down cleanly."""
    import ctypes

    srv = cri_server
    pid = srv.proc.pid  # type: ignore[union-attr]
    others = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    assert others, "the server runs no thread besides the main one"
    libc = ctypes.CDLL(None, use_errno=True)
    SYS_tgkill = 234  # x86_64
    assert libc.syscall(SYS_tgkill, pid, others[-1], signal.SIGTERM) == 0, os.strerror(ctypes.get_errno())
    srv.assert_stopped_cleanly(timeout=15)
