"""Issue 11, pod identity, resources and state, against a real ``cri-net serve`` and the real
Debian plugins (bridge, host-local, portmap): what one pod may claim, what a list must
survive, and what a restart must never tear down.

Every test runs its own server on its own ``unique_net`` (bridge, /24 of 10.213.0.0/16) and
ends with a host audit: removing the pods undid creating them.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cri_net.cri.pb.runtime.v1 import api_pb2 as pb
from cri_net.cri.pb.runtime.v1 import api_pb2_grpc as pb_grpc
from adaptors.cri import annotations as ann
from integration.hostaudit import Audit, UniqueNet, bridge_ports
from integration.serve_fixture import (  # noqa: F401 - fixtures
    CONF_FILE,
    CRIServer,
    cri_server,
    cri_server_factory,
    default_conflist,
)
from integration.test_serve_real import (assert_pod_complete, assert_pod_gone, audit_of, config_id, eth0_ipv4,
                                         free_port, is_nsfs_mount, pod_config, pod_ip, rpc_error)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
from badinput_strategies import identity_pairs, props  # noqa: E402
from tests.reliability import record  # noqa: E402

CRI_NET = Path(sys.executable).with_name("cri-net")
#: What ListPodSandbox sets on a pod whose metadata it left out (service.OMITTED_ANNOTATION).
OMITTED_ANNOTATION = "cri-net.io/list-omitted"


def legacy_sandbox_id(namespace: str, name: str, uid: str, attempt: int) -> str:
    """The id versions before issue 11 gave: SHA-256 of the NUL-joined identity."""
    return hashlib.sha256(f"{namespace}\0{name}\0{uid}\0{attempt}".encode()).hexdigest()


def bridge_addresses(bridge: str) -> list[str]:
    proc = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", bridge], capture_output=True, text=True, timeout=10)
    return sorted(re.findall(r"\binet (\S+)", proc.stdout)) if proc.returncode == 0 else []


# ------------------------------------------------------------------------- finding 2


def ip_ranges_conflist(net: UniqueNet, ipam_dir: Path, allowed: list[str] | None) -> dict[str, Any]:
    """The test network with its ranges left to ``ipRanges`` (host-local refuses a runtime
    range that overlaps a configured one), as an operator using pod CIDRs writes it."""
    doc = default_conflist(net, ipam_dir)
    doc["plugins"][0]["capabilities"] = {"ipRanges": True}
    del doc["plugins"][0]["ipam"]["ranges"]
    if allowed is not None:
        doc["criNet"] = {"allowedIPRanges": allowed}
    return doc


def set_pod_cidr(c: Any, cidr: str) -> None:
    c.runtime.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(runtime_config=pb.RuntimeConfig(
        network_config=pb.NetworkConfig(pod_cidr=cidr))), timeout=30)


def ranged_pod(name: str, subnet: str, **extra: str) -> dict[str, Any]:
    return pod_config(name, annotations={ann.IP_RANGES_ANNOTATION: json.dumps([[{"subnet": subnet, **extra}]])})


def assert_refused(c: Any, srv: CRIServer, cfg: dict[str, Any], subnet: str) -> None:
    err = rpc_error(lambda: c.runp(cfg))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (subnet, err.code(), err.details())
    assert ann.IP_RANGES_ANNOTATION in err.details() and subnet in err.details(), err.details()
    assert config_id(cfg) not in srv.record_ids(), "a refused pod left a record"


def test_ip_ranges_annotation_cannot_take_over_the_bridge(
    cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet, host_audit: Callable[..., Audit], tmp_path: Path
) -> None:
    net = unique_net
    inside = str(net.subnet)
    hosts = list(net.subnet.hosts())
    narrow = {"rangeStart": str(hosts[99]), "rangeEnd": str(hosts[109]), "gateway": str(net.gateway)}
    srv = cri_server_factory(conflist=ip_ranges_conflist(net, tmp_path / "srv" / "ipam", None))
    c = srv.client()
    audit = audit_of(host_audit, srv)
    # no pod CIDR, no allow-list: a pod may choose nothing (it used to give the bridge 127.0.0.1)
    for subnet in ("127.0.0.0/24", "0.0.0.0/0", "224.1.0.0/24", "169.254.7.0/24", inside):
        assert_refused(c, srv, ranged_pod("ranged", subnet), subnet)
    assert bridge_addresses(net.bridge) == []

    # the pod CIDR allows the network's subnet: a narrower range inside it works, the rest
    # stays refused, and the bridge keeps its one address
    set_pod_cidr(c, inside)
    first = c.runp(pod_config("plain"))
    bridge_before = bridge_addresses(net.bridge)
    assert bridge_before == [f"{net.gateway}/{net.subnet.prefixlen}"]
    sid = c.runp(ranged_pod("ranged", inside, **narrow))
    assert hosts[99] <= pod_ip(c, sid) <= hosts[109]
    # a narrower subnet is that part of the pod CIDR: the bridge keeps the pod CIDR's gateway
    half = ipaddress.ip_network(f"{net.subnet.network_address + net.subnet.num_addresses // 2}/"
                                f"{net.subnet.prefixlen + 1}")
    upper = c.runp(ranged_pod("upper", str(half)))
    assert pod_ip(c, upper) in half
    # and a gateway of its own choosing would readdress the bridge for every pod: refused
    assert_refused(c, srv, ranged_pod("gw200", inside, gateway=str(hosts[199])), inside)
    for subnet in ("127.0.0.0/24", "10.214.0.0/24", "0.0.0.0/0"):
        assert_refused(c, srv, ranged_pod("again", subnet), subnet)
    assert_refused(c, srv, ranged_pod("gw", inside, gateway=str(net.subnet.network_address)), inside)
    assert bridge_addresses(net.bridge) == bridge_before

    # without a pod CIDR, the network's criNet.allowedIPRanges allows it just the same
    (srv.conf_dir / CONF_FILE).write_text(json.dumps(ip_ranges_conflist(net, srv.ipam_dir, [inside])))
    srv.restart()
    c = srv.client()
    set_pod_cidr(c, "")
    allowed = c.runp(ranged_pod("allowed", inside, **narrow))
    assert hosts[99] <= pod_ip(c, allowed) <= hosts[109]
    assert_refused(c, srv, ranged_pod("special", "127.0.0.0/24"), "127.0.0.0/24")
    assert bridge_addresses(net.bridge) == bridge_before
    for pod in (first, sid, upper, allowed):
        c.rmp(pod)
    runtime_config = str(srv.state_dir / "runtime.json")  # the pod CIDR's record, kept by design
    audit.assert_clean(ignore=[net.per_network_state, lambda category, item: str(item) == runtime_config])


# ------------------------------------------------------------------------- finding 7


def test_list_pod_sandbox_answers_every_client_with_many_near_limit_pods(cri_server: CRIServer) -> None:
    """68 pods of 250 KB (within Kubernetes' 256 KiB) are 17 MB of metadata: more than any
    gRPC message limit. Every pod is still listed, to crictl-like and default clients."""
    srv = cri_server
    c = srv.client(timeout=60)
    big = "x" * (250 * 1000)
    ids = set()
    for i in range(68):
        ids.add(c.runp(pod_config(f"big{i}", labels={"app": "big"}, annotations={"note": big}, host_network=True)))
    listed = c.pods()
    assert {p.id for p in listed} == ids
    assert sum(p.annotations.get("note") == big for p in listed) < 68
    assert all(p.annotations.get("note") == big or OMITTED_ANNOTATION in p.annotations for p in listed)
    assert len(c.pods(labels={"app": "big"})) == 68  # filters run on the full records
    one = next(p for p in listed if OMITTED_ANNOTATION in p.annotations)
    assert c.inspectp(one.id, verbose=False).status.annotations["note"] == big  # status still has it all
    # a client with gRPC's default 4 MiB receive limit
    with grpc.insecure_channel(f"unix://{srv.socket}") as channel:
        items = pb_grpc.RuntimeServiceStub(channel).ListPodSandbox(pb.ListPodSandboxRequest(), timeout=60).items
    assert {p.id for p in items} == ids
    # a pod over the limit is refused, naming the field
    err = rpc_error(lambda: c.runp(pod_config("huge", annotations={"note": "x" * (257 * 1024)}, host_network=True)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "config.annotations" in err.details(), err.details()
    for sid in ids:
        c.rmp(sid)
    assert c.pods() == []


# ------------------------------------------------------------------------- finding 8


@pytest.mark.parametrize("damage", ["truncated", "newer-state"])
def test_unreadable_record_never_tears_down_a_running_pod(
    damage: str, cri_server: CRIServer, unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    srv = cri_server
    c = srv.client()
    audit = audit_of(host_audit, srv)
    cfg = pod_config("keep")
    sid = c.runp(cfg)
    ip = assert_pod_complete(srv, c, sid, unique_net)
    cache_before = srv.cache_files()
    record = srv.state_dir / "sandboxes" / f"{sid}.json"
    original = record.read_bytes()
    srv.stop()
    if damage == "truncated":
        record.write_bytes(original[: len(original) // 2])
    else:
        doc = json.loads(original)
        doc["state"] = "PAUSED"  # what a newer version might write
        record.write_text(json.dumps(doc))
    srv.start()
    c = srv.client()
    # the pod keeps its network: netns pinned, address, lease, veth, cached attachments
    assert is_nsfs_mount(srv.netns_path(sid)), "the unreadable pod's netns was unmounted"
    assert [a.ip for a in eth0_ipv4(srv.netns_path(sid))] == [ip]
    assert srv.leases().get(str(ip)) == sid
    assert len(bridge_ports(unique_net.bridge)) == 1
    assert srv.cache_files() == cache_before
    assert record.exists()
    # ... and is reported
    unreadable = c.info()["unreadableSandboxes"]
    assert [u["id"] for u in unreadable] == [sid] and str(record) in unreadable[0]["problem"]
    assert re.search(r"unreadable sandbox record.*" + re.escape(str(record)), srv.log)
    err = rpc_error(lambda: c.inspectp(sid))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and str(record) in err.details(), err.details()
    again = rpc_error(lambda: c.runp(cfg))  # never a second netns or record over the unreadable one
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS and str(record) in again.details(), again.details()
    # the operator repairs the file: the pod is whole again and is removed normally
    srv.stop()
    record.write_bytes(original)
    srv.start()
    c = srv.client()
    assert assert_pod_complete(srv, c, sid, unique_net) == ip
    c.rmp(sid)
    assert_pod_gone(srv, c, sid)
    audit.assert_clean(ignore=[unique_net.per_network_state])


# ------------------------------------------------------------------------- finding 13


def test_host_network_identities_are_validated_and_never_share_an_id(cri_server: CRIServer) -> None:
    srv = cri_server
    c = srv.client()
    # NUL-joined, these two were one id: the second request got the first pod back
    for name, uid in (("x\0y", "u"), ("x", "y\0u")):
        err = rpc_error(lambda: c.runp(pod_config(name, uid=uid, host_network=True)))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "config.metadata." in err.details(), err.details()
    # same rule as pods with a netns: ';' and '=' cannot go into CNI_ARGS either
    err = rpc_error(lambda: c.runp(pod_config("a;b", host_network=True)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "config.metadata.name" in err.details()
    # separators that are legal stay distinct
    ids = {c.runp(pod_config(n, uid=u, namespace=ns, host_network=True))
           for ns, n, u in (("a", "b.c", "d"), ("a.b", "c", "d"), ("a", "b", "c.d"), ("a", "b", "c-d"))}
    assert len(ids) == 4 and {p.id for p in c.pods()} == ids
    for sid in ids:
        c.rmp(sid)


@props(ci=20, full=300)
@given(pair=identity_pairs,
       modes=st.one_of(st.just((True, True)), st.tuples(st.booleans(), st.booleans())))  # host network: no netns checks before
def test_generated_identity_pairs_never_share_a_pod(cri_server: CRIServer, pair: Any, modes: tuple[bool, bool]) -> None:
    """Two distinct identities (NUL, JSON, separators, unicode; host network or not) are two
    pods or a clear INVALID_ARGUMENT, never one pod handed to both; the same identity again
    is the same pod."""
    record("identity: generated pairs of pod identities through RunPodSandbox", runs=1, suite="bad-input",
           audited="distinct ids, idempotent re-run, refusals name config.metadata.*")
    c = cri_server.client()
    got: list[str | None] = []
    for (ns, name, uid, attempt), host in zip(pair, modes):
        cfg = pod_config(name, namespace=ns, attempt=attempt, host_network=host)
        cfg["metadata"]["uid"] = uid  # exactly as generated, empty too
        try:
            sid = c.runp(cfg)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (exc.code(), exc.details())
            assert re.match(r"(config\.)?metadata\.", exc.details()), exc.details()
            got.append(None)
            continue
        assert c.runp(cfg) == sid  # a retry finds it
        [status] = [p for p in c.pods() if p.id == sid]
        assert (status.metadata.namespace, status.metadata.name, status.metadata.uid) == (ns, name, uid)
        got.append(sid)
    made = [sid for sid in got if sid is not None]
    try:
        assert len(set(made)) == len(made), f"two identities got one pod: {pair}"
    finally:
        for sid in set(made):
            c.rmp(sid)


def test_pod_made_by_an_older_version_keeps_its_id(cri_server: CRIServer) -> None:
    """Records store their id; a RunPodSandbox for a pod the NUL-joined version made finds it."""
    srv = cri_server
    c = srv.client()
    cfg = pod_config("old", uid="old-uid", host_network=True)
    sid = c.runp(cfg)
    assert sid == config_id(cfg)
    srv.stop()
    legacy = legacy_sandbox_id("default", "old", "old-uid", 0)
    records = srv.state_dir / "sandboxes"
    doc = json.loads((records / f"{sid}.json").read_text())
    doc["id"] = legacy
    (records / f"{legacy}.json").write_text(json.dumps(doc))
    (records / f"{sid}.json").unlink()
    srv.start()
    c = srv.client()
    assert c.runp(cfg) == legacy
    assert [p.id for p in c.pods()] == [legacy]
    c.rmp(legacy)
    assert c.pods() == [] and srv.record_ids() == []


# ------------------------------------------------------------------------- finding 14


def test_second_pod_cannot_take_a_mapped_host_port(
    cri_server: CRIServer, unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    srv = cri_server
    c = srv.client(timeout=60)
    audit = audit_of(host_audit, srv)
    port = free_port()
    holder = c.runp(pod_config("holder", port_mappings=[{"container_port": 80, "host_port": port}]))
    for mapping in ({"container_port": 81, "host_port": port},
                    {"container_port": 81, "host_port": port, "host_ip": "127.0.0.1"}):
        cfg = pod_config("thief", port_mappings=[mapping])
        err = rpc_error(lambda: c.runp(cfg))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
        assert f"{port}/tcp" in err.details() and "default/holder" in err.details(), err.details()
        assert_pod_gone(srv, c, config_id(cfg))
    via_annotation = pod_config("thief2", annotations={ann.PORT_MAPPINGS_ANNOTATION: json.dumps(
        [{"hostPort": port, "containerPort": 80}])})
    assert rpc_error(lambda: c.runp(via_annotation)).code() == grpc.StatusCode.INVALID_ARGUMENT
    udp = c.runp(pod_config("udp", port_mappings=[{"container_port": 80, "host_port": port, "protocol": "UDP"}]))
    # concurrent claims of one free port: exactly one wins
    other = free_port()
    cfgs = [pod_config(f"race{i}", port_mappings=[{"container_port": 80, "host_port": other}]) for i in range(4)]

    def attempt(cfg: dict[str, Any]) -> Any:
        try:
            return srv.client(timeout=60).runp(cfg)
        except grpc.RpcError as exc:
            return exc

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(attempt, cfgs))
    winners = [o for o in outcomes if isinstance(o, str)]
    assert len(winners) == 1, [o if isinstance(o, str) else o.details() for o in outcomes]
    assert all(o.code() == grpc.StatusCode.INVALID_ARGUMENT for o in outcomes if not isinstance(o, str))
    # once the holder is gone, the port is free again
    c.rmp(holder)
    taker = c.runp(pod_config("thief", port_mappings=[{"container_port": 81, "host_port": port}]))
    for sid in (taker, udp, *winners):
        c.rmp(sid)
    audit.assert_clean(ignore=[unique_net.per_network_state])


# ------------------------------------------------------------------------- finding 15


@pytest.mark.parametrize("subnet", ["127.0.0.0/24", "::/64", "224.0.0.0/24", "0.0.0.0/24", "255.255.255.0/24",
                                    "169.254.1.0/24", "fe80::/64"])
def test_network_create_refuses_unusable_subnets(subnet: str, tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    proc = subprocess.run([str(CRI_NET), "network", "create", "--conf-dir", str(conf_dir), "--cache-dir",
                           str(tmp_path / "cache"), "--subnet", subnet, "bad"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0, proc.stdout
    assert str(ipaddress.ip_network(subnet)) in proc.stderr and "subnet" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(conf_dir.iterdir()) == []


# ------------------------------------------------------------------------- orphaned plugins

# portmap behind a wait: it touches <markerDir>/<container id> with its pid, waits while
# <delayFile> exists (at most 60 s), then runs the real portmap with the same stdin. A server
# SIGKILLed while it waits leaves it running: without the start-up kill it would add its DNAT
# rules after the restarted server rolled the pod back.
_SLOW_PORTMAP_SRC = r'''
import json, os, subprocess, sys, time
data = sys.stdin.buffer.read()
conf = json.loads(data or b"{}")
if os.environ.get("CNI_COMMAND") == "ADD":
    with open(os.path.join(conf["markerDir"], os.environ["CNI_CONTAINERID"]), "w") as fh:
        fh.write(str(os.getpid()))
    deadline = time.monotonic() + 60
    while os.path.exists(conf["delayFile"]) and time.monotonic() < deadline:
        time.sleep(0.02)
done = subprocess.run([conf["portmapPath"]], input=data)
sys.exit(done.returncode)
'''


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def test_a_plugin_left_running_by_a_killed_server_is_stopped_before_the_rollback(
    cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    """SIGKILL of the server only (its plugins are in their own process groups), mid-ADD in
    portmap; the restart rolls the pod back. The plugin must be gone before that DEL, else its
    DNAT rules for the dead pod stay forever (nothing records them)."""
    srv = cri_server_factory(start=False, conflist=False)
    slow_dir = srv.root / "slow-portmap"
    (slow_dir / "markers").mkdir(parents=True)
    srv.bin_dir.mkdir(parents=True, exist_ok=True)
    plugin = srv.bin_dir / "crinet-t-slowportmap"
    plugin.write_text(f"#!{sys.executable}\n{_SLOW_PORTMAP_SRC}")
    plugin.chmod(0o755)
    doc = unique_net.conflist(ipam_dir=srv.ipam_dir, extra_plugins=[{
        "type": plugin.name, "capabilities": {"portMappings": True}, "markerDir": str(slow_dir / "markers"),
        "delayFile": str(slow_dir / "delay"), "portmapPath": "/usr/lib/cni/portmap"}])
    (srv.conf_dir / CONF_FILE).write_text(json.dumps(doc))
    (slow_dir / "delay").write_text("")
    srv.start()
    audit = audit_of(host_audit, srv)
    port = free_port()
    cfg = pod_config("orphan", port_mappings=[{"container_port": 80, "host_port": port}])
    sid = config_id(cfg)
    marker = slow_dir / "markers" / sid
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(lambda: srv.client().runp(cfg))
        deadline = time.monotonic() + 30
        while not marker.exists() or not marker.read_text():
            assert time.monotonic() < deadline and not pending.done(), "the slow portmap never started"
            time.sleep(0.02)
        orphan = int(marker.read_text())
        srv.kill(signal.SIGKILL)  # the server only: the plugin's group lives on
        with pytest.raises(grpc.RpcError):
            pending.result(timeout=30)
    try:
        assert _pid_alive(orphan)
        srv.start()  # reconcile: kill the orphan, then roll the pod back
        assert not _pid_alive(orphan), "the restarted server left the orphaned plugin running"
        assert "killed a plugin its caller left running" in srv.log
        (slow_dir / "delay").unlink()  # would release an orphan still waiting: its portmap ADD would run now
        time.sleep(1.5)
        nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
        assert f"--dport {port} " not in nat, f"DNAT for the rolled-back pod's host port {port} left behind"
    finally:  # a failed run must not leave the orphan to add its rules after the test
        with contextlib.suppress(OSError):
            os.killpg(orphan, signal.SIGKILL)
    assert [p.id for p in srv.client().pods()] == [] and srv.record_ids() == []
    audit.assert_clean(ignore=[unique_net.per_network_state])


def test_a_pod_whose_caller_gave_up_before_its_network_was_up_is_rolled_back(
    cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    """The caller's deadline passes while a plugin is slow: it was told the call failed, so
    the pod must not come up READY afterwards for nobody (kubelet would retry and leak it).
    The same holds for a SIGTERM whose grace ends first: grpc cancels the call the same way."""
    srv = cri_server_factory(slow_plugin=True)
    audit = audit_of(host_audit, srv)
    cfg = pod_config("late", port_mappings=[{"container_port": 80, "host_port": free_port()}])
    sid = config_id(cfg)
    srv.set_slow_delay(30)
    err = rpc_error(lambda: srv.client(timeout=2).runp(cfg))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, err
    assert srv.slow_marker(sid).exists()  # the chain was still running
    srv.set_slow_delay(None)  # release it: the attach finishes after the caller left
    deadline = time.monotonic() + 30
    while srv.record_ids():
        assert time.monotonic() < deadline, f"the abandoned pod was not rolled back:\n{srv.log_tail()}"
        time.sleep(0.1)
    assert [p.id for p in srv.client().pods()] == []
    assert "the caller gave up on RunPodSandbox" in srv.log
    sid2 = srv.client().runp(cfg)  # the retry a kubelet makes gets a whole new pod
    assert sid2 == sid and srv.client().inspectp(sid).status.state == 0  # SANDBOX_READY
    srv.client().stopp(sid)
    srv.client().rmp(sid)
    audit.assert_clean(ignore=[unique_net.per_network_state])
