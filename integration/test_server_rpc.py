"""The CRI server in-process: a real `Server` on a unix socket in tmp_path, driven by CRIClient.

Plugins are the fake CNI plugin (tests/fakeplugin) run through the real exec path, so nothing
touches the host network; network namespaces are real (root pins them in tmp_path/netns) and
every mount under tmp_path is undone at teardown.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_net.config import Settings
from cri_net.cri.client import CRIClient
from cri_net.cri.pb.runtime.v1 import api_pb2 as pb
from adaptors.cri import OWNER_POD
from cri_net.libcni.cache import CacheRecord, ResultCache
from cri_net import netns
from cri_net.server.sandbox import sandbox_id
from cri_net.server.server import ServeError, Server, claim_socket, socket_path
from cri_net.server.service import SERVED, UNIMPLEMENTED_MSG
from cri_net.server.store import SandboxMetadata, SandboxRecord
from tests.polling import wait_for


HEX64 = re.compile(r"[0-9a-f]{64}")
DEADLINE = 10.0


# ---- harness ---------------------------------------------------------------------------------

def mounts_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith(prefix)]


class Env:
    """Dirs, fake plugins, conf files, servers and clients of one test."""

    def __init__(self, tmp_path: Path, fakecni) -> None:
        self.tmp = tmp_path
        self.fake = fakecni
        self.conf_dir = tmp_path / "conf"
        self.netns_dir = tmp_path / "netns"
        self.state_dir = tmp_path / "state"
        self.cache_dir = fakecni.cache_dir
        self.sock = tmp_path / "s.sock"
        self.conf_dir.mkdir()
        fakecni.install("loopback", "fake-a", "fake-b")
        self.servers: list[Server] = []
        self.clients: list[CRIClient] = []
        self.server: Server | None = None

    # configs
    def settings(self, **kw: Any) -> Settings:
        values: dict[str, Any] = dict(listen=f"unix://{self.sock}", conf_dir=str(self.conf_dir),
                                      bin_dirs=[str(self.fake.bin)], cache_dir=str(self.cache_dir),
                                      state_dir=str(self.state_dir), netns_dir=str(self.netns_dir),
                                      plugin_timeout=10, conf_poll_interval=0.05)
        values.update(kw)
        return Settings(**values)

    def write_conf(self, *plugins: str | dict, name: str = "net1", file: str | None = None, **top: Any) -> Path:
        path = self.conf_dir / (file or f"10-{name}.conflist")
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(self.fake.conflist_bytes(*(plugins or ("fake-a",)), name=name, **top))
        os.replace(tmp, path)
        return path

    # server / client
    def start(self, **kw: Any) -> Server:
        server = Server(self.settings(**kw))
        self.servers.append(server)
        server.start()
        self.server = server
        wait_for(lambda: server.gc_rounds >= 1, 60, "the start-up GC round")  # runs beside serving
        return server

    def stop(self) -> None:
        assert self.server is not None
        self.server.stop(grace=2)
        self.server = None

    def restart(self, **kw: Any) -> Server:
        self.stop()
        return self.start(**kw)

    def client(self, endpoint: str | None = None) -> CRIClient:
        c = CRIClient(endpoint or f"unix://{self.sock}", timeout=20)
        self.clients.append(c)
        return c

    # inspection
    def records(self) -> list[str]:
        d = self.state_dir / "sandboxes"
        return sorted(n for n in os.listdir(d) if n.endswith(".json")) if d.is_dir() else []

    def netns_files(self) -> list[str]:
        return sorted(os.listdir(self.netns_dir)) if self.netns_dir.is_dir() else []

    def cache_files(self, sid: str | None = None) -> list[str]:
        d = self.cache_dir / "results"
        names = sorted(os.listdir(d)) if d.is_dir() else []
        return [n for n in names if sid is None or f"-{sid}-" in n]

    def cleanup(self) -> None:
        for c in self.clients:
            c.close()
        for s in self.servers:
            try:
                s.stop(grace=1)
            except Exception:  # noqa: BLE001 - best effort teardown
                pass
            s.module.exit()
        for path in reversed(mounts_under(self.tmp)):
            netns.remove(path)


@pytest.fixture
def env(tmp_path, fakecni):
    e = Env(tmp_path, fakecni)
    yield e
    e.cleanup()
    assert mounts_under(tmp_path) == []


@pytest.fixture
def ready(env):
    """A started server with net1 = [fake-a] and a connected client."""
    env.write_conf("fake-a")
    env.start()
    return env, env.client()


def pod(name: str = "p1", namespace: str = "default", uid: str = "uid-1", attempt: int = 0,
        labels: dict | None = None, annotations: dict | None = None, port_mappings: list | None = None,
        host_network: bool = False) -> pb.PodSandboxConfig:
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=name, namespace=namespace, uid=uid,
                                                             attempt=attempt),
                              labels=labels or {}, annotations=annotations or {},
                              port_mappings=[pb.PortMapping(**pm) for pm in port_mappings or []])
    if host_network:
        cfg.linux.security_context.namespace_options.network = pb.NODE
    return cfg


def sid_of(name: str = "p1", namespace: str = "default", uid: str = "uid-1", attempt: int = 0) -> str:
    return sandbox_id(namespace, name, uid, attempt)


def rpc_error(fn, *args, **kw) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kw)
    return info.value


def cni_calls(fake, command: str | None = None, name: str | None = None, container: str | None = None):
    return [c for c in fake.calls(name=name, command=command)
            if container is None or c["env"].get("CNI_CONTAINERID") == container]


def result_100(*addresses: str, ifname: str = "eth0") -> dict:
    return {"cniVersion": "1.0.0", "interfaces": [{"name": ifname}],
            "ips": [{"interface": 0, "address": a} for a in addresses], "dns": {}}


# ---- Version / UNIMPLEMENTED ----------------------------------------------------------------------

def test_version_has_all_four_fields(ready):
    _, client = ready
    resp = client.version()
    assert resp.version and resp.runtime_name == "cri-net" and resp.runtime_version
    assert resp.runtime_api_version == "v1"


@pytest.mark.parametrize("service, rpc, request_type", [
    ("runtime", "CreateContainer", pb.CreateContainerRequest),
    ("runtime", "ExecSync", pb.ExecSyncRequest),
    ("runtime", "ListContainers", pb.ListContainersRequest),
    ("runtime", "StartContainer", pb.StartContainerRequest),
    ("images", "ListImages", pb.ListImagesRequest),
    ("images", "PullImage", pb.PullImageRequest),
    ("images", "ImageFsInfo", pb.ImageFsInfoRequest),
])
def test_unserved_rpcs_are_unimplemented(ready, service, rpc, request_type):
    _, client = ready
    err = rpc_error(getattr(getattr(client, service), rpc), request_type(), timeout=10)
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    assert err.details().startswith(f"{rpc}: ")
    assert UNIMPLEMENTED_MSG in err.details()
    for served in SERVED:
        assert served in err.details()


# ---- Status ------------------------------------------------------------------------------------

def conditions(client: CRIClient) -> dict[str, dict]:
    return {c["type"]: c for c in client.info()["status"]["conditions"]}


def test_status_not_ready_then_ready_when_a_conflist_appears(env):
    env.start()
    client = env.client()
    conds = conditions(client)
    assert conds["RuntimeReady"]["status"] is True
    net = conds["NetworkReady"]
    assert net["status"] is False
    assert net["reason"] == "NetworkPluginNotReady"
    assert "cni config uninitialized" in net["message"]
    # RunPodSandbox without a network: FAILED_PRECONDITION, nothing ran
    err = rpc_error(client.runp, pod())
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert env.fake.calls() == [] and env.records() == [] and env.netns_files() == []

    env.write_conf("fake-a")  # the watcher reloads
    wait_for(lambda: conditions(client)["NetworkReady"]["status"], what="NetworkReady")
    net = conditions(client)["NetworkReady"]
    assert net["reason"] == "" and net["message"] == ""
    assert HEX64.fullmatch(client.runp(pod()))


def test_status_verbose_lists_networks_and_skipped_files(env):
    env.write_conf("fake-a", "fake-b", name="net1", file="10-net1.conflist")
    env.write_conf("fake-b", name="net2", file="20-net2.conflist")
    (env.conf_dir / "05-broken.conflist").write_text("{not json")
    (env.conf_dir / "06-noplugins.conflist").write_text(json.dumps({"cniVersion": "1.0.0", "name": "x",
                                                                     "plugins": []}))
    env.start()
    info = env.client().info()
    cfg = info["config"]
    assert cfg["confDir"] == str(env.conf_dir)
    assert [(n["name"], n["plugins"], n["cniVersion"]) for n in cfg["networks"]] == [
        ("net1", ["fake-a", "fake-b"], "1.0.0"), ("net2", ["fake-b"], "1.0.0")]
    assert cfg["networks"][0]["file"].endswith("10-net1.conflist")
    skipped = {Path(s["file"]).name: s["reason"] for s in cfg["skipped"]}
    assert set(skipped) == {"05-broken.conflist", "06-noplugins.conflist"}
    assert all(reason for reason in skipped.values())
    assert cfg["lastReloadError"] == "" and cfg["podCIDR"] == ""
    # the first file (in name order) that loads is the default network
    assert conditions(env.client())["NetworkReady"]["status"] is True


def test_status_keeps_last_good_networks_when_the_dir_empties(env):
    path = env.write_conf("fake-a")
    env.start()
    client = env.client()
    path.unlink()
    wait_for(lambda: client.info()["config"]["lastReloadError"], what="the reload")
    info = client.info()
    network = conditions(client)["NetworkReady"]
    assert network["status"] is True  # still serving the last good networks, and saying why they are old
    assert network["reason"] == "ConfDirReloadFailed" and str(env.conf_dir) in network["message"], network
    assert [n["name"] for n in info["config"]["networks"]] == ["net1"]
    assert str(env.conf_dir) in info["config"]["lastReloadError"]
    assert HEX64.fullmatch(client.runp(pod()))
    env.write_conf("fake-a")  # repaired: the condition is plain again
    wait_for(lambda: not client.info()["config"]["lastReloadError"], what="the repair")
    assert conditions(client)["NetworkReady"]["reason"] == ""


# ---- RunPodSandbox validation ------------------------------------------------------------------

def assert_nothing_happened(env) -> None:
    assert env.fake.calls() == [], "a plugin ran"
    assert env.records() == [], "a record was written"
    assert env.netns_files() == [], "a netns was created"
    assert env.cache_files() == []


def test_run_requires_config_and_metadata(ready):
    env, client = ready
    for req in (pb.RunPodSandboxRequest(), pb.RunPodSandboxRequest(config=pb.PodSandboxConfig(hostname="h"))):
        err = rpc_error(client.runtime.RunPodSandbox, req, timeout=10)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "config.metadata" in err.details()
    assert_nothing_happened(env)


@pytest.mark.parametrize("field", ["name", "namespace", "uid"])
def test_run_requires_metadata_fields(ready, field):
    env, client = ready
    cfg = pod()
    setattr(cfg.metadata, field, "")
    err = rpc_error(client.runp, cfg)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"config.metadata.{field}" in err.details()
    assert_nothing_happened(env)


EXTRA = "network.alpha.kubernetes.io/network"


@pytest.mark.parametrize("annotations, key", [
    pytest.param({"kubernetes.io/ingress-bandwidth": "lots"}, "kubernetes.io/ingress-bandwidth", id="bandwidth"),
    pytest.param({"kubernetes.io/egress-bandwidth": "1"}, "kubernetes.io/egress-bandwidth", id="bandwidth-too-low"),
    pytest.param({"cri-net.io/port-mappings": "[{garbage"}, "cri-net.io/port-mappings", id="port-mappings-json"),
    pytest.param({"cri-net.io/port-mappings": '[{"hostPort": 8080, "containerPort": 0}]'},
                 "cri-net.io/port-mappings", id="port-mappings-port"),
    pytest.param({"cri-net.io/ip-ranges": json.dumps([[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.5"}]])},
                 "cri-net.io/ip-ranges", id="ip-range-outside-subnet"),
    pytest.param({EXTRA: json.dumps([{"name": "nosuchnet", "interface": "net1"}])}, EXTRA, id="extra-unknown"),
    pytest.param({EXTRA: json.dumps([{"name": "net1", "interface": "eth1"}])}, EXTRA, id="extra-is-default"),
    pytest.param({EXTRA: json.dumps([{"name": "net2", "interface": "eth1"}, {"name": "net2", "interface": "eth1"}])},
                 EXTRA, id="extra-interface-reused"),
    pytest.param({EXTRA: json.dumps([{"name": "net2", "interface": "eth0"}])}, EXTRA, id="extra-on-eth0"),
    pytest.param({"cri-net.io/ip-ranges": " " * (100 * 1024)}, "cri-net.io/ip-ranges", id="100KiB-value"),
    pytest.param({"extension.network.kubernetes.io/cniargs/x": "A=B;C"},
                 "extension.network.kubernetes.io/cniargs/x", id="cniargs-semicolon"),
])
def test_run_rejects_bad_annotations(env, annotations, key):
    env.write_conf("fake-a", name="net1")
    env.write_conf("fake-b", name="net2")
    env.start()
    err = rpc_error(env.client().runp, pod(annotations=annotations))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert key in err.details()
    assert len(err.details()) < 2000  # a 100 KiB value is not echoed back
    assert_nothing_happened(env)


@pytest.mark.parametrize("cfg, key", [
    pytest.param(pod(name="a;b"), "metadata.name", id="name-semicolon"),
    pytest.param(pod(uid="u=1"), "metadata.uid", id="uid-equals"),
    pytest.param(pb.PodSandboxConfig(metadata=pod().metadata, dns_config=pb.DNSConfig(servers=["not-an-ip"])),
                 "dns_config.servers[0]", id="dns-server"),
])
def test_run_rejects_bad_cri_fields(ready, cfg, key):
    env, client = ready
    err = rpc_error(client.runp, cfg)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert key in err.details()
    assert_nothing_happened(env)


@pytest.mark.parametrize("container_port", [0, 70000])
def test_run_rejects_bad_port_mapping(ready, container_port):
    env, client = ready
    err = rpc_error(client.runp, pod(port_mappings=[{"host_port": 8080, "container_port": 80},
                                                    {"host_port": 8081, "container_port": container_port}]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "port_mappings[1].container_port" in err.details()
    assert_nothing_happened(env)


def test_run_rejects_duplicate_host_port(ready):
    env, client = ready
    err = rpc_error(client.runp, pod(port_mappings=[{"host_port": 8080, "container_port": 80},
                                                    {"host_port": 8080, "container_port": 81}]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "port_mappings[1]" in err.details()
    assert_nothing_happened(env)


# ---- success path ------------------------------------------------------------------------------

def test_run_success_and_idempotent_retry(ready):
    env, client = ready
    sid = client.runp(pod(labels={"app": "web"}, annotations={"a": "b"},
                          port_mappings=[{"host_port": 8080, "container_port": 80, "protocol": pb.UDP}]))
    assert HEX64.fullmatch(sid) and sid == sid_of()
    assert env.fake.sequence() == [("loopback", "ADD"), ("fake-a", "ADD")]
    netns_path = str(env.netns_dir / sid)
    assert netns.is_mounted(netns_path)
    add = cni_calls(env.fake, "ADD", "fake-a")[0]
    assert add["env"]["CNI_NETNS"] == netns_path and add["env"]["CNI_IFNAME"] == "eth0"
    assert add["env"]["CNI_CONTAINERID"] == sid
    assert f"K8S_POD_INFRA_CONTAINER_ID={sid}" in add["env"]["CNI_ARGS"]
    assert env.records() == [f"{sid}.json"]
    assert json.loads((env.state_dir / "sandboxes" / f"{sid}.json").read_text())["state"] == "READY"

    n = len(env.fake.calls())
    assert client.runp(pod(labels={"app": "web"})) == sid  # same metadata: the same pod, no plugin
    assert len(env.fake.calls()) == n
    assert env.netns_files() == [sid]

    status = client.inspectp(sid).status
    assert status.state == pb.SANDBOX_READY
    assert (status.metadata.name, status.metadata.namespace, status.metadata.uid) == ("p1", "default", "uid-1")
    assert status.labels == {"app": "web"} and status.annotations == {"a": "b"}
    assert status.network.ip == "10.22.0.5"  # the fake plugin's derived result
    assert status.linux.namespaces.options.network == pb.POD
    assert status.created_at > 0

    client.stopp(sid)
    err = rpc_error(client.runp, pod())
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert sid in err.details()
    client.rmp(sid)
    assert env.records() == [] and env.netns_files() == [] and env.cache_files() == []
    assert client.runp(pod()) == sid  # after removal the same metadata makes it again


def test_attempt_changes_the_id(ready):
    _, client = ready
    a = client.runp(pod(attempt=0))
    b = client.runp(pod(attempt=1))
    assert a != b and {a, b} == {sid_of(attempt=0), sid_of(attempt=1)}


def test_host_network_pod_runs_no_plugin(ready):
    env, client = ready
    sid = client.runp(pod(host_network=True))
    assert env.fake.calls() == [] and env.netns_files() == []
    status = client.inspectp(sid).status
    assert status.state == pb.SANDBOX_READY
    assert status.linux.namespaces.options.network == pb.NODE
    assert status.network.ip == ""
    client.stopp(sid)
    client.rmp(sid)
    assert env.fake.calls() == [] and env.records() == []


def test_status_by_unique_prefix_and_errors(ready):
    env, client = ready
    sid = client.runp(pod())
    assert client.inspectp(sid[:8]).status.id == sid
    err = rpc_error(client.inspectp, "f" * 64 if not sid.startswith("f") else "0" * 64)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = rpc_error(client.inspectp, "")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "pod_sandbox_id" in err.details()


def write_record(state_dir: Path, sid: str, name: str, state: str = "READY", **kw: Any) -> None:
    rec = SandboxRecord(id=sid, metadata=SandboxMetadata(name=name, uid=name, namespace="ns"), state=state,
                        created_at=time.time_ns(), **kw)
    d = state_dir / "sandboxes"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    (d / f"{sid}.json").write_text(rec.model_dump_json())


def test_ambiguous_prefix_is_invalid_argument(env):
    env.write_conf("fake-a")
    a, b = "abc1" + "0" * 60, "abc2" + "0" * 60
    write_record(env.state_dir, a, "a", host_network=True)
    write_record(env.state_dir, b, "b", host_network=True)
    env.start()
    client = env.client()
    for call in (client.inspectp, client.stopp, client.rmp):
        err = rpc_error(call, "abc")
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "ambiguous" in err.details() and "pod_sandbox_id" in err.details()
    assert client.inspectp("abc1").status.id == a
    assert sorted(p.id for p in client.pods(id_prefix="abc")) == [a, b]
    assert env.records() == [f"{a}.json", f"{b}.json"]  # nothing was stopped or removed


@pytest.mark.parametrize("pref, order, ip, rest", [
    ("ipv4", ("fd00::5/64", "10.1.0.5/24"), "10.1.0.5", ["fd00::5"]),
    ("ipv6", ("10.1.0.5/24", "fd00::5/64"), "fd00::5", ["10.1.0.5"]),
    ("cni", ("fd00::5/64", "10.1.0.5/24"), "fd00::5", ["10.1.0.5"]),
    ("cni", ("10.1.0.5/24", "fd00::5/64"), "10.1.0.5", ["fd00::5"]),
])
def test_ip_preference(env, pref, order, ip, rest):
    env.write_conf("fake-a")
    env.fake.script("fake-a", "ADD", result=result_100(*order))
    env.start(ip_pref=pref)
    client = env.client()
    sid = client.runp(pod())
    net = client.inspectp(sid).status.network
    assert net.ip == ip
    assert [p.ip for p in net.additional_ips] == rest


def test_extra_network_ips_are_in_network_status_not_additional(env):
    """As containerd: additional_ips are the default interface's; an extra plane's addresses
    are reported in the Multus-shaped network-status."""
    env.write_conf("fake-a", name="net1")
    env.write_conf("fake-b", name="net2")
    env.fake.script("fake-a", "ADD", result=result_100("10.1.0.5/24"))
    env.fake.script("fake-b", "ADD", result=result_100("192.168.9.9/24", ifname="net2a"))
    env.start()
    client = env.client()
    sid = client.runp(pod(annotations={EXTRA: json.dumps([{"name": "net2", "interface": "net2a"}])}))
    seq = env.fake.sequence()  # loopback first, then the planes (concurrently: parallel_attach)
    assert seq[0] == ("loopback", "ADD") and sorted(seq[1:]) == [("fake-a", "ADD"), ("fake-b", "ADD")]
    assert cni_calls(env.fake, "ADD", "fake-b")[0]["env"]["CNI_IFNAME"] == "net2a"
    resp = client.inspectp(sid, verbose=True)
    net = resp.status.network
    assert net.ip == "10.1.0.5"
    assert [p.ip for p in net.additional_ips] == []
    status = json.loads(resp.info["k8s.v1.cni.cncf.io/network-status"])
    assert [(s["name"], s["interface"], s["ips"], s["default"]) for s in status] == [
        ("net1", "eth0", ["10.1.0.5"], True), ("default/net2", "net2a", ["192.168.9.9"], False)]
    client.rmp(sid)
    dels = [(c["name"], c["env"]["CNI_IFNAME"]) for c in cni_calls(env.fake, "DEL")]
    assert sorted(dels[:2]) == [("fake-a", "eth0"), ("fake-b", "net2a")] and dels[2] == ("loopback", "lo")
    assert env.cache_files() == []


def test_pod_sandbox_status_runs_no_plugin_and_verbose_is_json(ready):
    env, client = ready
    sid = client.runp(pod(annotations={"kubernetes.io/ingress-bandwidth": "10M"}))
    n = len(env.fake.calls())
    for _ in range(3):
        resp = client.inspectp(sid, verbose=True)
    assert len(env.fake.calls()) == n
    info = {k: json.loads(v) for k, v in resp.info.items()}
    assert set(info) == {"netns", "planes", "cniResults", "cniArgs", "capabilityArgs",
                         "k8s.v1.cni.cncf.io/network-status"}
    assert info["k8s.v1.cni.cncf.io/network-status"] == [
        {"name": "net1", "interface": "eth0", "ips": ["10.22.0.5"], "default": True, "dns": {}}]
    assert info["netns"] == str(env.netns_dir / sid)
    assert info["planes"][0]["name"] == "net1" and info["planes"][0]["interface"] == "eth0"
    assert info["planes"][0]["ips"] == ["10.22.0.5/16"]
    assert info["cniResults"]["net1/eth0"]["ips"][0]["address"] == "10.22.0.5/16"
    assert ["K8S_POD_INFRA_CONTAINER_ID", sid] in info["cniArgs"]["net1/eth0"]
    assert info["capabilityArgs"]["net1/eth0"]["bandwidth"]["ingressRate"] == 10_000_000
    assert resp.timestamp > 0
    assert client.inspectp(sid, verbose=False).info == {}


def test_list_pod_sandbox_filters(ready):
    env, client = ready
    a = client.runp(pod("a", uid="ua", labels={"app": "web", "tier": "fe"}))
    b = client.runp(pod("b", uid="ub", labels={"app": "web", "tier": "be"}))
    c = client.runp(pod("c", uid="uc", labels={"app": "db"}, host_network=True))
    client.stopp(b)
    assert [p.id for p in client.pods()] == [a, b, c]  # created_at order
    assert [p.id for p in client.pods(id_prefix=b[:10])] == [b]
    assert client.pods(id_prefix="x") == []
    assert [p.id for p in client.pods(state=pb.SANDBOX_READY)] == [a, c]
    assert [p.id for p in client.pods(state=pb.SANDBOX_NOTREADY)] == [b]
    assert [p.id for p in client.pods(labels={"app": "web"})] == [a, b]
    assert [p.id for p in client.pods(labels={"app": "web", "tier": "be"})] == [b]
    assert [p.id for p in client.pods(labels={"app": "web"}, state=pb.SANDBOX_READY)] == [a]
    assert client.pods(labels={"app": "nope"}) == []
    item = client.pods(id_prefix=a)[0]
    assert item.metadata.name == "a" and item.labels == {"app": "web", "tier": "fe"}
    assert item.state == pb.SANDBOX_READY


# ---- failure path -----------------------------------------------------------------------------

def test_plugin_failure_on_add_rolls_everything_back(env):
    env.write_conf("fake-a", "fake-b")
    env.fake.script("fake-b", "ADD", exit=1, stdout=json.dumps({"cniVersion": "1.0.0", "code": 11,
                                                                "msg": "no more addresses"}))
    env.start()
    client = env.client()
    err = rpc_error(client.runp, pod())
    assert err.code() not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OK)
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "net1" in err.details() and "fake-b" in err.details()
    assert "no more addresses" in err.details()
    sid = sid_of()
    dels = sorted(c["name"] for c in cni_calls(env.fake, "DEL", container=sid))
    assert dels == ["fake-a", "fake-b", "loopback"], "each plugin DEL'd once: the rollback was complete"
    assert env.records() == [] and env.netns_files() == [] and env.cache_files() == []
    assert client.pods() == []
    # the same pod can be retried once the plugin recovers
    env.fake.script("fake-b", "ADD")
    assert client.runp(pod()) == sid


def test_plugin_failure_on_loopback_rolls_back(env):
    env.write_conf("fake-a")
    env.fake.script("loopback", "ADD", exit=1, stdout=json.dumps({"code": 999, "msg": "lo broken"}))
    env.start()
    err = rpc_error(env.client().runp, pod())
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "loopback" in err.details()
    assert cni_calls(env.fake, "ADD", "fake-a") == []
    assert env.records() == [] and env.netns_files() == [] and env.cache_files() == []


# ---- stop / remove ----------------------------------------------------------------------------

def test_stop_uses_cached_config_after_edit_and_keeps_netns(env):
    env.write_conf({"type": "fake-a", "marker": "v1"})
    env.start()
    client = env.client()
    sid = client.runp(pod())
    env.write_conf({"type": "fake-b", "marker": "v2"})  # the file changes under the running pod
    wait_for(lambda: client.info()["config"]["networks"][0]["plugins"] == ["fake-b"], what="reload")
    client.stopp(sid)
    dels = cni_calls(env.fake, "DEL", container=sid)
    assert [c["name"] for c in dels] == ["fake-a", "loopback"]
    assert dels[0]["config"]["marker"] == "v1"
    assert dels[0]["env"]["CNI_NETNS"] == str(env.netns_dir / sid)
    assert dels[0]["config"]["prevResult"]["ips"][0]["address"] == "10.22.0.5/16"
    assert cni_calls(env.fake, name="fake-b") == []
    status = client.inspectp(sid).status
    assert status.state == pb.SANDBOX_NOTREADY
    assert status.network.ip == ""
    assert netns.is_mounted(str(env.netns_dir / sid))  # kept until remove
    assert env.cache_files(sid) == []

    client.stopp(sid)  # idempotent
    client.rmp(sid)
    assert env.netns_files() == [] and env.records() == []
    client.rmp(sid)  # idempotent


def test_stop_and_remove_unknown_id_are_ok(ready):
    env, client = ready
    client.stopp("0" * 64)
    client.rmp("0" * 64)
    client.stopp("0123")
    assert env.fake.calls() == []
    for call in (client.stopp, client.rmp):
        err = rpc_error(call, "")
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_remove_without_stop_detaches(ready):
    env, client = ready
    sid = client.runp(pod())
    client.rmp(sid)
    assert [c["name"] for c in cni_calls(env.fake, "DEL", container=sid)] == ["fake-a", "loopback"]
    assert env.records() == [] and env.netns_files() == [] and env.cache_files() == []


def test_del_failure_on_stop_is_an_error_and_is_retried(ready):
    env, client = ready
    sid = client.runp(pod())
    env.fake.script("fake-a", "DEL", exit=1, stdout=json.dumps({"code": 11, "msg": "del failed"}))
    err = rpc_error(client.stopp, sid)
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "net1" in err.details() and "del failed" in err.details()
    assert client.inspectp(sid).status.state == pb.SANDBOX_NOTREADY
    assert len(cni_calls(env.fake, "DEL", "fake-a")) == 1
    assert env.cache_files(sid), "a failed DEL must keep the cache entry for the retry"

    rpc_error(client.stopp, sid)  # a second stop retries the DEL
    assert len(cni_calls(env.fake, "DEL", "fake-a")) == 2

    env.fake.script("fake-a", "DEL")
    client.stopp(sid)
    assert len(cni_calls(env.fake, "DEL", "fake-a")) == 3
    assert env.cache_files(sid) == []
    client.stopp(sid)  # nothing cached any more: the request's plan is DELed again, which is fine
    client.rmp(sid)
    assert env.records() == [] and env.netns_files() == []


def test_remove_with_failing_del_succeeds_and_restart_gcs_the_attachment(ready):
    env, client = ready
    sid = client.runp(pod())
    env.fake.script("fake-a", "DEL", exit=1, stdout=json.dumps({"code": 11, "msg": "del failed"}))
    client.rmp(sid)  # remove is best effort: the pod goes, the cache entry stays for GC
    assert env.records() == [] and env.netns_files() == []
    assert env.cache_files(sid) == [f"net1-{sid}-eth0"]
    env.fake.script("fake-a", "DEL")
    env.fake.clear_log()
    env.restart()
    dels = cni_calls(env.fake, "DEL", "fake-a", container=sid)
    assert len(dels) == 1 and dels[0]["env"]["CNI_NETNS"] == ""
    assert env.cache_files(sid) == []


# ---- restart ----------------------------------------------------------------------------------

def test_restart_reconciles(env):
    env.write_conf("fake-a")
    env.start()
    client = env.client()
    keep = client.runp(pod("keep", uid="u-keep"))
    creating = client.runp(pod("creating", uid="u-creating"))
    vanished = client.runp(pod("vanished", uid="u-vanished"))
    stopped = client.runp(pod("stopped", uid="u-stopped"))
    client.stopp(stopped)
    env.stop()

    # a RunPodSandbox interrupted after the plugins ran, before READY was written
    path = env.state_dir / "sandboxes" / f"{creating}.json"
    doc = json.loads(path.read_text())
    doc["state"] = "CREATING"
    path.write_text(json.dumps(doc))
    # a netns that disappeared while the server was down (e.g. a reboot)
    netns.remove(str(env.netns_dir / vanished))
    # a cached attachment in our netns dir that no record owns, and one that belongs to someone else
    conf = env.fake.conflist_bytes("fake-a")
    cache = ResultCache(str(env.cache_dir))
    ours, theirs = "a0" * 32, "b0" * 32
    for cid, ns in ((ours, str(env.netns_dir / ours)), (theirs, "/var/run/netns/containerd-pod")):
        cache.write(CacheRecord(container_id=cid, config=conf, ifname="eth0", network_name="net1", netns=ns,
                                result=result_100("10.9.9.9/24"), owner=OWNER_POD if cid == ours else ""))
    # an orphan pinned netns and an orphan plain file
    netns.create(str(env.netns_dir / "orphan-ns"))
    (env.netns_dir / "orphan-file").write_text("")
    env.fake.clear_log()

    env.start()
    client = env.client()
    # the CREATING pod is rolled back
    assert [c["name"] for c in cni_calls(env.fake, "DEL", container=creating)] == ["fake-a", "loopback"]
    assert f"{creating}.json" not in env.records()
    assert creating not in env.netns_files() and env.cache_files(creating) == []
    assert rpc_error(client.inspectp, creating).code() == grpc.StatusCode.NOT_FOUND
    # READY pods are kept as they are, and no plugin ran for them
    assert client.inspectp(keep).status.state == pb.SANDBOX_READY
    assert client.inspectp(keep).status.network.ip == "10.22.0.5"
    assert cni_calls(env.fake, container=keep) == []
    assert client.inspectp(stopped).status.state == pb.SANDBOX_NOTREADY
    # READY whose netns vanished -> NOTREADY
    assert client.inspectp(vanished).status.state == pb.SANDBOX_NOTREADY
    # the stale attachment in our netns dir is DELed (netns gone: empty CNI_NETNS), the other is untouched
    del_ours = cni_calls(env.fake, "DEL", container=ours)
    assert [c["name"] for c in del_ours] == ["fake-a"]
    assert del_ours[0]["env"]["CNI_NETNS"] == ""
    assert env.cache_files(ours) == []
    assert cni_calls(env.fake, container=theirs) == []
    assert env.cache_files(theirs) == [f"net1-{theirs}-eth0"]
    # orphan netns entries are gone; the pods' netns are kept
    assert env.netns_files() == sorted([keep, stopped])
    assert not netns.is_mounted(str(env.netns_dir / "orphan-ns"))
    # the pods still work
    client.stopp(keep)
    client.rmp(keep)
    client.rmp(vanished)
    assert sorted(p.id for p in client.pods()) == [stopped]


def test_restart_with_corrupt_record_keeps_serving(env):
    env.write_conf("fake-a")
    env.start()
    client = env.client()
    sid = client.runp(pod())
    env.stop()
    (env.state_dir / "sandboxes" / ("e" * 64 + ".json")).write_text("{garbage")
    env.start()
    assert env.client().inspectp(sid).status.state == pb.SANDBOX_READY


# ---- concurrency ------------------------------------------------------------------------------

def max_overlap(fake, name: str, command: str) -> int:
    events = []
    starts = {r["pid"]: r["t"] for r in fake.records() if r["event"] == "start" and r["name"] == name
              and r["env"].get("CNI_COMMAND") == command}
    for r in fake.records():
        if r["event"] == "end" and r["pid"] in starts:
            events += [(starts[r["pid"]], 1), (r["t"], -1)]
    live = best = 0
    for _, delta in sorted(events):
        live += delta
        best = max(best, live)
    return best


def run_parallel(fn, args_list):
    results: list[Any] = [None] * len(args_list)
    barrier = threading.Barrier(len(args_list))

    def worker(i, args):
        barrier.wait()
        try:
            results[i] = fn(*args)
        except Exception as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_sixteen_pods_in_parallel(env):
    env.write_conf("fake-a")
    env.fake.script("fake-a", "ADD", sleep=0.2)
    env.start()
    client = env.client()
    ids = run_parallel(lambda i: client.runp(pod(f"p{i}", uid=f"u{i}")), [(i,) for i in range(16)])
    errors = [r for r in ids if not isinstance(r, str)]
    assert errors == []
    assert sorted(ids) == sorted(sid_of(f"p{i}", uid=f"u{i}") for i in range(16))
    assert len(cni_calls(env.fake, "ADD", "fake-a")) == 16
    # behaviour, not wall time: plugins of different pods were running at the same moment
    assert max_overlap(env.fake, "fake-a", "ADD") >= 2, "the pods' plugins did not run in parallel"
    assert len(client.pods(state=pb.SANDBOX_READY)) == 16
    assert len(env.netns_files()) == 16


def test_identical_requests_at_once_make_one_pod(env):
    env.write_conf("fake-a")
    env.fake.script("fake-a", "ADD", sleep=0.3)
    env.start()
    client = env.client()
    ids = run_parallel(lambda: client.runp(pod()), [()] * 4)
    assert ids == [sid_of()] * 4
    assert len(cni_calls(env.fake, "ADD", "fake-a")) == 1
    assert len(cni_calls(env.fake, "ADD", "loopback")) == 1
    assert env.netns_files() == [sid_of()]
    assert env.records() == [f"{sid_of()}.json"]


# ---- UpdateRuntimeConfig ----------------------------------------------------------------------

def update_cidr(client: CRIClient, cidr: str) -> None:
    client.runtime.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr=cidr))), timeout=10)


def ip_ranges_of_add(fake, container: str):
    add = cni_calls(fake, "ADD", "fake-a", container=container)[-1]
    return add["config"].get("runtimeConfig", {}).get("ipRanges")


def test_update_runtime_config_pod_cidr(env):
    env.write_conf({"type": "fake-a", "capabilities": {"ipRanges": True}})
    env.start()
    client = env.client()
    before = client.runp(pod("before", uid="u0"))
    assert ip_ranges_of_add(env.fake, before) is None

    update_cidr(client, "10.244.1.0/24")
    assert client.info()["config"]["podCIDR"] == "10.244.1.0/24"
    first = client.runp(pod("first", uid="u1"))
    assert ip_ranges_of_add(env.fake, first) == [[{"subnet": "10.244.1.0/24"}]]

    # an annotation overrides the pod CIDR, within it
    ann = {"cri-net.io/ip-ranges": json.dumps([[{"subnet": "10.244.1.128/25"}]])}
    third = client.runp(pod("ann", uid="u3", annotations=ann))
    # (a narrower subnet is that part of the pod CIDR: the host side keeps the pod CIDR's gateway)
    assert ip_ranges_of_add(env.fake, third) == [[{"subnet": "10.244.1.0/24", "rangeStart": "10.244.1.128",
                                                    "rangeEnd": "10.244.1.254"}]]
    # ... but never outside it
    outside = {"cri-net.io/ip-ranges": json.dumps([[{"subnet": "10.9.0.0/16"}]])}
    err = rpc_error(client.runp, pod("outside", uid="u4", annotations=outside))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cri-net.io/ip-ranges" in err.details() and "10.9.0.0/16" in err.details()

    # invalid CIDR: INVALID_ARGUMENT, the previous value stays
    for bad in ("10.244.1.0", "not-a-cidr", "10.0.0.0/33"):
        err = rpc_error(update_cidr, client, bad)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "pod_cidr" in err.details()
    assert client.info()["config"]["podCIDR"] == "10.244.1.0/24"

    # survives a restart
    env.restart()
    client = env.client()
    second = client.runp(pod("second", uid="u2"))
    assert ip_ranges_of_add(env.fake, second) == [[{"subnet": "10.244.1.0/24"}]]

    # dual stack, then cleared
    update_cidr(client, "10.244.1.0/24,fd00:10::/64")
    dual = client.runp(pod("dual", uid="u4"))
    assert ip_ranges_of_add(env.fake, dual) == [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10::/64"}]]
    update_cidr(client, "")
    cleared = client.runp(pod("cleared", uid="u5"))
    assert ip_ranges_of_add(env.fake, cleared) is None
    env.restart()
    assert env.client().info()["config"]["podCIDR"] == ""


# ---- the socket -------------------------------------------------------------------------------

def test_socket_mode_and_removal_on_stop(ready):
    env, client = ready
    assert stat.S_ISSOCK(env.sock.stat().st_mode)
    assert stat.S_IMODE(env.sock.stat().st_mode) == 0o660
    env.stop()
    assert not env.sock.exists()


def test_bare_path_and_unix_url(env):
    env.write_conf("fake-a")
    env.start(listen=str(env.sock))  # bare path
    assert env.client(str(env.sock)).version().runtime_name == "cri-net"
    assert env.client(f"unix://{env.sock}").version().runtime_name == "cri-net"
    assert socket_path(f"unix://{env.sock}") == socket_path(str(env.sock)) == str(env.sock)
    with pytest.raises(ServeError):
        socket_path("relative.sock")
    with pytest.raises(ServeError):
        socket_path("unix://relative.sock")


def test_stale_socket_is_replaced(env):
    env.write_conf("fake-a")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(env.sock))
    s.close()  # leaves the file with nobody listening: what a crash leaves behind
    assert env.sock.exists()
    env.start()
    assert env.client().version().runtime_name == "cri-net"
    assert stat.S_IMODE(env.sock.stat().st_mode) == 0o660


def test_cli_serve_sigterm_removes_socket(env):
    env.write_conf("fake-a")
    cfg = env.tmp / "config.toml"
    cfg.write_text("conf_poll_interval = 0.05\n")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("cri-net")), "serve", "--config", str(cfg), "--listen", str(env.sock),
         "--conf-dir", str(env.conf_dir), "--bin-dir", str(env.fake.bin), "--cache-dir", str(env.cache_dir),
         "--state-dir", str(env.state_dir), "--netns-dir", str(env.netns_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: env.sock.exists() or proc.poll() is not None, what="the socket")
        assert proc.poll() is None, proc.stderr.read()
        client = env.client()
        assert client.version().runtime_name == "cri-net"
        sid = client.runp(pod())
        assert client.inspectp(sid).status.state == pb.SANDBOX_READY
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not env.sock.exists()
    assert netns.is_mounted(str(env.netns_dir / sid))  # pods outlive the server


def test_claim_socket_creates_parent_dir(tmp_path):
    path = tmp_path / "a" / "b" / "s.sock"
    claim_socket(str(path))
    assert path.parent.is_dir()


def test_live_socket_is_refused(ready):
    env, client = ready
    with pytest.raises(ServeError, match="already listening"):
        claim_socket(str(env.sock))
    second = Server(env.settings())
    env.servers.append(second)
    with pytest.raises(ServeError, match="already listening"):
        second.start()
    second.module.exit()
    assert env.sock.exists()
    assert client.version().runtime_name == "cri-net"  # the first server is unharmed


def test_refused_second_server_does_not_touch_live_pods(env):
    """A second `cri-net serve` on the same socket and dirs must fail before it changes anything.

    Server.start() reconciles (rolls back CREATING records, GCs netns) before it claims the
    socket, so a refused second server still tears down the live server's in-flight pod."""
    env.write_conf("fake-a")
    env.fake.script("fake-a", "ADD", sleep=1.0)
    env.start()
    client = env.client()
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(client.runp(pod())))
    t.start()
    wait_for(lambda: cni_calls(env.fake, "ADD", "fake-a"), what="the ADD to start")
    second = Server(env.settings())
    env.servers.append(second)
    with pytest.raises(ServeError):
        second.start()
    second.module.exit()
    t.join(30)
    sid = sid_of()
    assert result == [sid]
    dels = [(c["name"], c["env"]["CNI_CONTAINERID"][:12]) for c in cni_calls(env.fake, "DEL")]
    assert dels == [], "the refused server DELed the live server's in-flight pod"
    assert netns.is_mounted(str(env.netns_dir / sid)), "the refused server removed the live pod's netns"
    assert env.records() == [f"{sid}.json"]


def test_stop_of_a_refused_server_keeps_the_live_socket(ready):
    env, client = ready
    second = Server(env.settings())
    env.servers.append(second)
    with pytest.raises(ServeError):
        second.start()
    second.stop(grace=1)
    assert env.sock.exists(), "stop() of a server that never started removed the live server's socket"
    assert client.version().runtime_name == "cri-net"


def test_restart_sends_plugin_gc_with_every_remaining_attachment(env):
    """Spec 1.1.0 networks get GC on start-up, listing the attachments that are still valid:
    our live pod and another runtime's entry in the shared cache dir, but not the stale one."""
    env.write_conf("fake-a", cniVersion="1.1.0")
    env.start()
    live = env.client().runp(pod("live", uid="u-live"))
    env.stop()
    conf = env.fake.conflist_bytes("fake-a", version="1.1.0")
    cache = ResultCache(str(env.cache_dir))
    stale, theirs = "c0" * 32, "d0" * 32
    for cid, ns in ((stale, str(env.netns_dir / stale)), (theirs, "/var/run/netns/containerd-pod")):
        cache.write(CacheRecord(container_id=cid, config=conf, ifname="eth0", network_name="net1", netns=ns,
                                result=result_100("10.9.9.9/24"), owner=OWNER_POD if cid == stale else ""))
    env.fake.clear_log()
    env.start()
    gcs = [r for r in env.fake.records() if r["event"] == "start" and r["env"].get("CNI_COMMAND") == "GC"]
    assert len(gcs) == 1
    valid = json.loads(gcs[0]["stdin"])["cni.dev/valid-attachments"]
    assert sorted(a["containerID"] for a in valid) == sorted([live, theirs])
    assert [r["env"]["CNI_CONTAINERID"] for r in cni_calls(env.fake, "DEL")] == [stale]


def test_remove_after_a_successful_stop_runs_no_plugin(ready):
    """Stop detached every plane; Remove only drops the netns and the record (no second DEL)."""
    env, client = ready
    sid = client.runp(pod())
    client.stopp(sid)
    env.fake.clear_log()
    client.stopp(sid)
    client.rmp(sid)
    assert cni_calls(env.fake) == []
    assert env.records() == [] and env.netns_files() == []


def test_del_failing_at_remove_is_retried_by_the_periodic_gc(env):
    """The pod is removed even though its DEL failed; the attachment stays cached and the
    server's periodic GC DELs it once the plugin works again, with no restart."""
    env.write_conf("fake-a")
    env.start(gc_interval=0.2)
    client = env.client()
    sid = client.runp(pod())
    env.fake.script("fake-a", "DEL", exit=1, stdout=json.dumps({"code": 11, "msg": "del failed"}))
    client.rmp(sid)
    assert sid not in {p.id for p in client.pods()}
    assert env.records() == [] and env.netns_files() == []
    wait_for(lambda: len(cni_calls(env.fake, "DEL", "fake-a", container=sid)) >= 3, what="GC retries the DEL")
    assert env.cache_files(sid), "a failing DEL must keep the attachment for the next GC"
    env.fake.script("fake-a", "DEL")
    wait_for(lambda: env.cache_files(sid) == [], what="GC removes the attachment")
    # a live pod's attachments are never touched by GC
    live = client.runp(pod("p2", uid="uid-2"))
    time.sleep(0.6)
    assert env.cache_files(live) and cni_calls(env.fake, "DEL", "fake-a", container=live) == []


def test_a_failed_rollback_is_reported_and_the_teardown_dels_again(env):
    """When the failing plane's own rollback DEL fails too, the error says so and the
    sandbox teardown runs the DELs a second time instead of trusting the rollback."""
    env.write_conf("fake-a", "fake-b")
    env.fake.script("fake-b", "ADD", exit=1, stdout=json.dumps({"code": 11, "msg": "no more addresses"}))
    env.fake.script("fake-a", "DEL", exit=1, stdout=json.dumps({"code": 11, "msg": "del broke"}))
    env.start()
    err = rpc_error(env.client().runp, pod())
    assert "rollback also failed" in err.details() and "del broke" in err.details()
    names = [c["name"] for c in cni_calls(env.fake, "DEL", container=sid_of())]
    assert names.count("fake-a") == 2, names
    assert env.records() == [] and env.netns_files() == [] and env.cache_files() == []
