"""End to end: a real containerd 1.6 (CRI plugin, crun) calls CNI (issue 5).

Each test starts its own containerd (:mod:`integration.containerd.harness`: own root, state,
socket, config and CNI dirs under ``tmp_path``; locally built pause image), drives it like
crictl with :class:`cri_net.cri.client.CRIClient`, and ends with a ``host_audit`` check
that removing the pods undid creating them.

* ``test_plain_bridge_pod``: containerd runs a plain bridge + host-local + portmap conflist
  (the harness itself, with nothing of cri-net in the CNI path).
* ``test_cri_net_pod`` / ``test_cri_net_bad_annotation``: containerd runs ``cri-net-cni``
  (the ``cri-net`` launcher that ``cri-net cni-plugin install`` writes into its CNI bin dir),
  which attaches cri-net's own networks: in-process (no server), or handed over to a running
  ``cri-net serve`` through its CNI socket.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_net.plugin.launcher import install as install_launcher
from cri_net.cri.client import CRIClient
from cri_net.cri.pb.runtime.v1 import api_pb2 as pb
from integration.containerd.harness import ContainerdEnv, HarnessError, containerd_env
from integration.hostaudit import Audit, UniqueNet, bridge_ports, free_port
from integration.serve_fixture import CRIServer, cri_server_factory  # noqa: F401

CNI_DIR = "/usr/lib/cni"
VENV_BIN = Path(sys.executable).parent
PORTMAP: dict[str, Any] = {"type": "portmap", "capabilities": {"portMappings": True}}
BANDWIDTH: dict[str, Any] = {"type": "bandwidth", "capabilities": {"bandwidth": True}}
HOST_CACHE = Path("/var/lib/cni")  # where containerd's own libcni caches results
CONTAINER_PORT = 8080

# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def containerd(tmp_path: Path, net_factory: Callable[[], UniqueNet]) -> Iterator[Callable[..., ContainerdEnv]]:
    """``containerd(cni_conf, cni_bin_dirs=["/usr/lib/cni"]) -> ContainerdEnv``, started.

    Depends on ``net_factory`` so it is torn down (pods removed, containerd stopped, its
    leftovers removed) before the test networks are purged.  A host that cannot run
    containerd fails the test (never skips); so does a teardown that could not clean up.
    """
    with contextlib.ExitStack() as stack:
        envs: list[ContainerdEnv] = []

        def make(cni_conf: dict[str, Any] | bytes, cni_bin_dirs: list[str] | None = None) -> ContainerdEnv:
            base = tmp_path / f"cd{len(envs)}" if envs else tmp_path
            try:
                env = stack.enter_context(containerd_env(base, cni_conf, cni_bin_dirs or [CNI_DIR]))
            except HarnessError as exc:
                pytest.fail(f"cannot run containerd on this host: {exc}", pytrace=False)
            envs.append(env)
            return env

        yield make
    failures = [f for env in envs for f in env.cleanup_failures]
    if failures:
        pytest.fail("containerd harness could not clean up:\n  " + "\n  ".join(failures), pytrace=False)


# ---------------------------------------------------------------------------- helpers


def pod_config(name: str, *, annotations: dict[str, str] | None = None,
               port_mappings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "default", "uid": secrets.token_hex(8), "attempt": 0},
        "labels": {"crinet-test": name},
        "annotations": annotations or {},
        "linux": {},
    }
    if port_mappings:
        cfg["port_mappings"] = port_mappings
    return cfg


def ipv4_of(netns: str, ifname: str) -> list[ipaddress.IPv4Interface]:
    proc = subprocess.run(["nsenter", f"--net={netns}", "ip", "-4", "-o", "addr", "show", "dev", ifname],
                          capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, f"no {ifname} in {netns}: {proc.stderr.strip()}"
    return [ipaddress.IPv4Interface(m) for m in re.findall(r"\binet (\S+)", proc.stdout)]



def lease_files(ipam_dir: Path) -> list[str]:
    return sorted(str(p) for p in ipam_dir.glob("*/*")
                  if p.is_file() and not p.name.startswith(("last_reserved_ip", "lock")))


_LISTENER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(1)
s.settimeout(20)
print("ready", flush=True)
c, peer = s.accept()
c.settimeout(10)
c.sendall(b"pong:" + c.recv(64))
c.close()
"""


@contextlib.contextmanager
def listener_in(netns: str, port: int) -> Iterator[subprocess.Popen[str]]:
    """A one-shot TCP echo server on 0.0.0.0:``port`` inside ``netns``."""
    proc = subprocess.Popen(["nsenter", f"--net={netns}", sys.executable, "-c", _LISTENER, str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == "ready", f"listener in {netns} did not start: {line!r} {proc.communicate()[1]}"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def tcp_ping(ip: str, port: int) -> str:
    with socket.create_connection((ip, port), timeout=10) as c:
        c.sendall(b"ping")
        c.settimeout(10)
        return c.recv(64).decode()


def remove_pod(c: CRIClient, sid: str) -> None:
    c.stopp(sid)
    c.rmp(sid)
    assert sid not in {p.id for p in c.pods()}


# ------------------------------------------------------------- milestone 1: plain CNI


def test_plain_bridge_pod(containerd: Callable[..., ContainerdEnv], unique_net: UniqueNet,
                          host_audit: Callable[..., Audit], tmp_path: Path) -> None:
    ipam = tmp_path / "ipam"
    env = containerd(unique_net.conflist(ipam_dir=ipam, extra_plugins=[PORTMAP]))
    audit = host_audit(cache_dir=HOST_CACHE, ipam_dir=ipam, ignore=[env.foreign_state([unique_net])])
    c = env.client()
    assert c.version().runtime_name == "containerd"

    host_port = free_port()
    sid = c.runp(pod_config("plain", port_mappings=[
        {"protocol": pb.TCP, "container_port": CONTAINER_PORT, "host_port": host_port}]))
    status = c.inspectp(sid, verbose=False).status
    assert status.state == pb.SANDBOX_READY
    ip = ipaddress.IPv4Address(status.network.ip)
    assert ip in unique_net.subnet and ip != unique_net.gateway
    netns = env.netns_of(sid, c)
    assert Path(netns).name.startswith("cni-")
    assert [a.ip for a in ipv4_of(netns, "eth0")] == [ip]
    assert len(lease_files(ipam)) == 1
    assert len(bridge_ports(unique_net.bridge)) == 1
    with listener_in(netns, CONTAINER_PORT):
        assert tcp_ping(str(unique_net.gateway), host_port) == "pong:ping"

    remove_pod(c, sid)
    assert not Path(netns).exists(), f"containerd left {netns}"
    assert lease_files(ipam) == []
    audit.assert_clean(ignore=[unique_net.per_network_state])


# ------------------------------------------------------ milestone 2: cri-net-cni behind containerd


class CriNetSetup:
    """cri-net's own networks (default + one extra plane) and the runtime-side conflist."""

    def __init__(self, tmp_path: Path, default: UniqueNet, extra: UniqueNet, daemon_socket: str = "") -> None:
        self.default, self.extra = default, extra
        self.conf_dir = tmp_path / "crinet-net.d"
        self.cache_dir = tmp_path / "crinet-cache"
        self.ipam_dir = tmp_path / "ipam"
        self.launcher_dir = tmp_path / "launcher"
        for d in (self.conf_dir, self.cache_dir, self.launcher_dir):
            d.mkdir(parents=True)
        default.cache_dirs.add(self.cache_dir)
        extra.cache_dirs.add(self.cache_dir)
        # File names decide the default network (the first valid one); no "crinet-" prefix,
        # which the CRI adaptor leaves to the native one.
        (self.conf_dir / "10-default.conflist").write_text(
            json.dumps(default.conflist(ipam_dir=self.ipam_dir, extra_plugins=[PORTMAP, BANDWIDTH])))
        (self.conf_dir / "20-extra.conflist").write_text(json.dumps(extra.conflist(ipam_dir=self.ipam_dir)))
        install_launcher(str(self.launcher_dir))
        self.runtime_conf = {
            "cniVersion": "1.0.0", "name": "cri-net",
            "plugins": [{"type": "cri-net", "confDir": str(self.conf_dir), "cacheDir": str(self.cache_dir),
                         "binDirs": [CNI_DIR], "daemonSocket": daemon_socket,
                         "capabilities": {"io.kubernetes.cri.pod-annotations": True, "portMappings": True,
                                          "bandwidth": True, "ipRanges": True, "dns": True}}]}

    def start(self, containerd: Callable[..., ContainerdEnv]) -> ContainerdEnv:
        return containerd(self.runtime_conf, [str(self.launcher_dir), CNI_DIR])

    def audit(self, host_audit: Callable[..., Audit], env: ContainerdEnv) -> Audit:
        return host_audit(cache_dir=HOST_CACHE, ipam_dir=self.ipam_dir, state_dir=self.cache_dir,
                          ignore=[env.foreign_state([self.default, self.extra])])

    def cached_files(self) -> list[str]:
        return sorted(p.name for p in (self.cache_dir / "results").glob("*")) if (
            self.cache_dir / "results").is_dir() else []

    def cached_ips(self, sid: str, network: str, ifname: str) -> list[ipaddress.IPv4Interface]:
        path = self.cache_dir / "results" / f"{network}-{sid}-{ifname}"
        assert path.is_file(), f"cri-net cached no result for {network}/{ifname}: {self.cached_files()}"
        result = json.loads(path.read_text())["result"]
        return [ipaddress.IPv4Interface(i["address"]) for i in result.get("ips", []) if ":" not in i["address"]]

    def assert_clean(self, sid: str, netns: str | None) -> None:
        assert [f for f in self.cached_files() if sid in f] == [], "cri-net cache files left"
        assert lease_files(self.ipam_dir) == [], "host-local leases left"
        assert bridge_ports(self.default.bridge) == [] and bridge_ports(self.extra.bridge) == [], "veths left"
        if netns:
            assert not Path(netns).exists(), f"containerd left {netns}"
        nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
        assert sid not in nat, f"iptables rules naming {sid[:13]} left"


@pytest.fixture
def crinet(tmp_path: Path, net_factory: Callable[[], UniqueNet]) -> CriNetSetup:
    return CriNetSetup(tmp_path, net_factory(), net_factory())


@pytest.fixture(params=["inprocess", "handoff"])
def crinet_mode(request: pytest.FixtureRequest, tmp_path: Path, net_factory: Callable[[], UniqueNet],
                cri_server_factory: Callable[..., CRIServer]) -> tuple[CriNetSetup, CRIServer | None]:
    """cri-net-cni working in the plugin process, or handing its calls to a `cri-net serve`."""
    server = cri_server_factory("serve", net=None) if request.param == "handoff" else None
    sock = str(server.root / "cni.sock") if server else ""
    return CriNetSetup(tmp_path, net_factory(), net_factory(), daemon_socket=sock), server


def test_cri_net_pod(containerd: Callable[..., ContainerdEnv], crinet_mode: tuple[CriNetSetup, CRIServer | None],
                     host_audit: Callable[..., Audit]) -> None:
    crinet, server = crinet_mode
    env = crinet.start(containerd)
    audit = crinet.audit(host_audit, env)
    c = env.client()

    host_port = free_port()
    annotations = {
        "network.alpha.kubernetes.io/network": json.dumps([{"name": crinet.extra.name, "interface": "net1"}]),
        "kubernetes.io/ingress-bandwidth": "10M",
    }
    t0 = time.monotonic()
    try:
        sid = c.runp(pod_config("crinet", annotations=annotations, port_mappings=[
            {"protocol": pb.TCP, "container_port": CONTAINER_PORT, "host_port": host_port}]))
    except grpc.RpcError as exc:
        raise AssertionError(f"RunPodSandbox failed: {exc.code()} {exc.details()}\n{env.log_tail()}") from None
    run_time = time.monotonic() - t0

    # The IP containerd reports is the one cri-net attached and cached for the default network.
    status = c.inspectp(sid, verbose=False).status
    assert status.state == pb.SANDBOX_READY
    ip = ipaddress.IPv4Address(status.network.ip)
    [cached] = crinet.cached_ips(sid, crinet.default.name, "eth0")
    assert ip == cached.ip and ip in crinet.default.subnet
    assert list(status.network.additional_ips) == []
    netns = env.netns_of(sid, c)
    assert [a.ip for a in ipv4_of(netns, "eth0")] == [ip]

    # The extra plane is in the pod on net1, with the address cri-net cached for it.
    [extra_ip] = ipv4_of(netns, "net1")
    assert extra_ip.ip in crinet.extra.subnet
    assert crinet.cached_ips(sid, crinet.extra.name, "net1") == [extra_ip]
    # ... and containerd got both planes in cri-net's one CNI result.
    cni_result = json.loads(c.inspectp(sid, verbose=True).info["info"])["cniResult"]["Interfaces"]
    assert [i["IP"] for i in cni_result["eth0"]["IPConfigs"]] == [str(ip)]
    assert [i["IP"] for i in cni_result["net1"]["IPConfigs"]] == [str(extra_ip.ip)]
    assert len(bridge_ports(crinet.default.bridge)) == 1 and len(bridge_ports(crinet.extra.bridge)) == 1

    # Ingress bandwidth: the bandwidth plugin shapes the host side of the default veth.
    [host_veth] = bridge_ports(crinet.default.bridge)
    tc = subprocess.run(["tc", "qdisc", "show", "dev", host_veth], capture_output=True, text=True).stdout
    assert "tbf" in tc and "10Mbit" in tc, f"no 10Mbit tbf on {host_veth}: {tc}"

    # The CRI port mapping reaches a listener in the pod from the host.
    with listener_in(netns, CONTAINER_PORT):
        assert tcp_ping(str(crinet.default.gateway), host_port) == "pong:ping"

    # handed over, the work ran in the server: its log names the pod for ADD and both DELs
    handed = re.findall(r'"CNI call" command=(\w+) pod=default/crinet ', server.log) if server else []

    remove_pod(c, sid)
    crinet.assert_clean(sid, netns)
    audit.assert_clean(ignore=[crinet.default.per_network_state, crinet.extra.per_network_state])
    assert run_time < 30, f"RunPodSandbox took {run_time:.1f}s"
    if server is not None:
        assert handed == ["ADD"], server.log_tail()
        assert re.findall(r'"CNI call" command=(\w+) pod=default/crinet ', server.log) == ["ADD", "DEL", "DEL"]


def test_cri_net_bad_annotation(containerd: Callable[..., ContainerdEnv], crinet: CriNetSetup,
                                host_audit: Callable[..., Audit]) -> None:
    env = crinet.start(containerd)
    audit = crinet.audit(host_audit, env)
    c = env.client()
    # Not kubernetes.io/ingress-bandwidth: containerd 1.6 parses that one itself and rejects
    # a bad value before any CNI call, leaving a sandbox it can neither stop nor remove.  The
    # port-mappings annotation is read by cri-net alone.
    with pytest.raises(grpc.RpcError) as info:
        c.runp(pod_config("bad", annotations={"cri-net.io/port-mappings": "lots"}))
    details = info.value.details() or ""
    assert 'plugin type="cri-net" failed (add)' in details, details
    assert "cri-net.io/port-mappings: invalid JSON" in details, details

    assert c.pods() == []
    assert crinet.cached_files() == [] and lease_files(crinet.ipam_dir) == []
    assert bridge_ports(crinet.default.bridge) == [] and bridge_ports(crinet.extra.bridge) == []
    audit.assert_clean(ignore=[crinet.default.per_network_state, crinet.extra.per_network_state])
