"""The network module (CRI and native adaptors) against the real Debian plugins (issue 3).

Each test gets its own conf dir, cache dir, state dir and host-local ``dataDir`` in
``tmp_path``, its own bridge(s) and /24(s) from ``unique_net`` / ``net_factory``, and ends
with a ``host_audit`` check that detaching undid attaching.  Namespaces are made before the
audit starts (they belong to the test, not to cri-net).  Traffic only flows between the
test's namespaces and the test's bridge on the host.

Config file names for the CRI adaptor must not start with ``crinet-`` (that prefix is the
native adaptor's, and the CRI adaptor skips those files), while the harness' network names
do start with ``crinet-t-``: names and files are independent, so files here are ``NN-*.conflist``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cri_net import config
from cri_net.network import AttachError, NetworkApiConf, NetworkApiResult, NetworkModule
from adaptors.cri import annotations as ann
from integration import hostaudit
from integration.hostaudit import CNI_PLUGIN_DIR
from integration.hostaudit import Audit, UniqueNet, bridge_ports, free_port
from integration.tcpprobe import tcp_listener, tcp_ping_from

CRI_NET = Path(sys.executable).with_name("cri-net")
PORTMAP = {"type": "portmap", "capabilities": {"portMappings": True}}
BANDWIDTH = {"type": "bandwidth", "capabilities": {"bandwidth": True}}
MISSING_PLUGIN = "crinet-no-such-plugin"
LEASE_BOOKKEEPING = re.compile(r"^(last_reserved_ip\..*|lock)$")


# ------------------------------------------------------------------------- helpers


class Env:
    """One test's directories and the NetworkModule built on them."""

    def __init__(self, tmp_path: Path) -> None:
        self.conf = tmp_path / "net.d"
        self.cache = tmp_path / "cache"
        self.state = tmp_path / "state"
        self.ipam = tmp_path / "ipam"
        self.conf.mkdir()
        self.settings = config.build(None, {
            "conf_dir": str(self.conf), "bin_dirs": [str(CNI_PLUGIN_DIR)], "cache_dir": str(self.cache),
            "state_dir": str(self.state), "plugin_timeout": 30,
        })
        self._modules: list[NetworkModule] = []

    def module(self) -> NetworkModule:
        """A fresh NetworkModule (as after a restart of cri-net) reading the conf dir now."""
        m = NetworkModule.init(self.settings)
        self._modules.append(m)
        return m

    def close(self) -> None:
        for m in self._modules:
            m.exit()

    def register(self, *nets: UniqueNet) -> None:
        """Tell the harness' purge where this test's leases and results live."""
        for net in nets:
            net.ipam_dirs.add(self.ipam)
            net.cache_dirs.add(self.cache)

    def write(self, filename: str, doc: dict[str, Any]) -> Path:
        path = self.conf / filename
        path.write_text(json.dumps(doc, indent=2))
        return path

    def audit(self, host_audit: Callable[..., Audit]) -> Audit:
        return host_audit(cache_dir=self.cache, ipam_dir=self.ipam, state_dir=self.state)

    def leases(self, net: UniqueNet, ipam: Path | None = None) -> list[str]:
        d = (ipam or self.ipam) / net.name
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if not LEASE_BOOKKEEPING.match(p.name))

    def cache_files(self) -> list[str]:
        d = self.cache / "results"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


@pytest.fixture
def env(tmp_path: Path, unique_net: UniqueNet) -> Iterator[Env]:
    e = Env(tmp_path)
    e.register(unique_net)
    yield e
    e.close()


def pod_conf(netns: str, **kw: Any) -> NetworkApiConf:
    return NetworkApiConf(name="web", namespace="default", pod_id=f"pod-{secrets.token_hex(6)}",
                          pod_uid=secrets.token_hex(8), netns_path=netns, **kw)


def ns_name(path: str) -> str:
    return os.path.basename(path)


def ns_links(netns: str) -> dict[str, dict[str, Any]]:
    """Interfaces inside ``netns``: name -> {"up": bool, "ipv4": [IPv4Interface]}."""
    from pyroute2 import NetNS

    with NetNS(ns_name(netns)) as ns:
        links = {m["index"]: m for m in ns.get_links()}
        out: dict[str, dict[str, Any]] = {
            m.get("ifname"): {"up": bool(m["flags"] & 1), "ipv4": []} for m in links.values()
        }
        for a in ns.get_addr(family=socket.AF_INET):
            name = links[a["index"]].get("ifname")
            out[name]["ipv4"].append(ipaddress.IPv4Interface(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"))
        return out



def host_link_exists(name: str) -> bool:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def qdiscs(dev: str) -> str:
    return subprocess.run(["tc", "qdisc", "show", "dev", dev], capture_output=True, text=True, check=True).stdout


def nat_table() -> str:
    return subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout


def only_ip(result: NetworkApiResult) -> ipaddress.IPv4Interface:
    assert len(result.ips) == 1, result
    return ipaddress.IPv4Interface(result.ips[0])




def tcp_ping_from_host(ip: str, port: int) -> str:
    with socket.create_connection((ip, port), timeout=10) as c:
        c.sendall(b"ping")
        return c.recv(64).decode()


# ---------------------------------------------------------------------- CRI adaptor


def test_pod_with_extra_plane_gets_both_interfaces(
    env: Env, unique_net: UniqueNet, net_factory: Callable[[], UniqueNet], netns: Callable[[], str],
    host_audit: Callable[..., Audit],
) -> None:
    extra = net_factory()
    env.register(extra)
    env.write("10-default.conflist", unique_net.conflist(ipam_dir=env.ipam))
    env.write("20-extra.conflist", extra.conflist(ipam_dir=env.ipam))
    ns = netns()
    audit = env.audit(host_audit)
    module = env.module()
    conf = pod_conf(ns, annotations={
        ann.EXTRA_NETWORKS_ANNOTATION: json.dumps([{"name": extra.name, "interface": "net1"}]),
    })

    results = module.attach(conf, "cri")

    assert [(r.name, r.interface) for r in results] == [(unique_net.name, "eth0"), (extra.name, "net1")]
    eth0, net1 = only_ip(results[0]), only_ip(results[1])
    assert eth0.ip in unique_net.subnet and net1.ip in extra.subnet
    assert results[0].gateways == [str(unique_net.gateway)]
    assert results[1].gateways == [str(extra.gateway)]
    links = ns_links(ns)
    assert links["eth0"]["ipv4"] == [eth0]
    assert links["net1"]["ipv4"] == [net1]
    assert links["lo"]["up"], "loopback plugin did not bring lo up"
    assert links["eth0"]["up"] and links["net1"]["up"]
    assert env.leases(unique_net) == [str(eth0.ip)]
    assert env.leases(extra) == [str(net1.ip)]
    assert env.cache_files() == sorted([
        f"cni-loopback-{conf.pod_id}-lo", f"{unique_net.name}-{conf.pod_id}-eth0", f"{extra.name}-{conf.pod_id}-net1",
    ])
    assert len(bridge_ports(unique_net.bridge)) == 1 and len(bridge_ports(extra.bridge)) == 1
    # CHECK runs the plugins against the live netns and reports the same planes.
    assert module.check(conf, "cri") == results

    module.detach(conf, "cri")

    assert env.leases(unique_net) == [] and env.leases(extra) == []
    assert env.cache_files() == []
    assert set(ns_links(ns)) == {"lo"}
    assert bridge_ports(unique_net.bridge) == [] and bridge_ports(extra.bridge) == []
    audit.assert_clean(ignore=[unique_net.per_network_state, extra.per_network_state])


@pytest.mark.parametrize("where", ["only-plugin", "after-bridge"])
def test_failing_plane_rolls_back_everything(
    where: str, env: Env, unique_net: UniqueNet, net_factory: Callable[[], UniqueNet], netns: Callable[[], str],
    host_audit: Callable[..., Audit],
) -> None:
    """Attach order is lo, extra planes, default network; the default network fails here,
    after lo and the extra plane were attached.  ``only-plugin``: its list is just the
    missing plugin (nothing of the plane itself ran); ``after-bridge``: bridge + host-local
    ran first and must be undone too."""
    extra = net_factory()
    env.register(extra)
    default = unique_net.conflist(ipam_dir=env.ipam, extra_plugins=[{"type": MISSING_PLUGIN}])
    if where == "only-plugin":
        default["plugins"] = [{"type": MISSING_PLUGIN}]
    env.write("10-default.conflist", default)
    env.write("20-extra.conflist", extra.conflist(ipam_dir=env.ipam))
    ns = netns()
    audit = env.audit(host_audit)
    module = env.module()
    conf = pod_conf(ns, annotations={
        ann.EXTRA_NETWORKS_ANNOTATION: json.dumps([{"name": extra.name, "interface": "net1"}]),
    })

    with pytest.raises(AttachError) as err:
        module.attach(conf, "cri")

    exc = err.value
    assert exc.network == unique_net.name and exc.ifname == "eth0" and exc.plugin == MISSING_PLUGIN
    assert unique_net.name in str(exc) and MISSING_PLUGIN in str(exc)
    assert exc.rollback_failures == []
    # Everything attached before the failure (lo, net1) and whatever the failing plane's
    # own earlier plugins did is gone.
    links = ns_links(ns)
    left = {
        "interfaces in the pod besides lo": sorted(set(links) - {"lo"}),
        "lo still up (loopback not rolled back)": links["lo"]["up"],
        "extra plane's lease": env.leases(extra),
        "failing plane's lease (bridge/host-local ran before the missing plugin)": env.leases(unique_net),
        "cached results": env.cache_files(),
        "host veths on the extra bridge": bridge_ports(extra.bridge),
        "host veths on the default bridge": bridge_ports(unique_net.bridge),
    }
    assert not any(left.values()), "attach failure was not fully rolled back:\n" + "\n".join(
        f"  {k}: {v}" for k, v in left.items() if v)
    audit.assert_clean(ignore=[unique_net.per_network_state, extra.per_network_state])


def test_detach_after_netns_is_gone(
    env: Env, unique_net: UniqueNet, netns: Callable[[], str], host_audit: Callable[..., Audit]
) -> None:
    # ipMasq off: with the netns gone the bridge plugin cannot learn the pod's address from
    # the veth, so it could not find its masquerade chain (a known upstream limitation).
    env.write("10-default.conflist", unique_net.conflist(ipam_dir=env.ipam, ip_masq=False))
    ns = netns()
    audit = env.audit(host_audit)
    module = env.module()
    conf = pod_conf(ns)
    results = module.attach(conf, "cri")
    addr = only_ip(results[0])
    assert env.leases(unique_net) == [str(addr.ip)]
    ports = bridge_ports(unique_net.bridge)
    assert len(ports) == 1

    subprocess.run(["ip", "netns", "delete", ns_name(ns)], check=True)
    assert not os.path.exists(ns)
    module.detach(conf, "cri")

    assert env.leases(unique_net) == []
    assert env.cache_files() == []
    audit.assert_clean(ignore=[unique_net.per_network_state])  # waits for the kernel to drop the veth
    assert not host_link_exists(ports[0])


@pytest.mark.parametrize("change", ["rewrite", "delete"])
def test_detach_uses_the_cached_config(
    change: str, env: Env, unique_net: UniqueNet, net_factory: Callable[[], UniqueNet], netns: Callable[[], str],
    tmp_path: Path, host_audit: Callable[..., Audit],
) -> None:
    conf_file = env.write("10-default.conflist", unique_net.conflist(ipam_dir=env.ipam))
    ns = netns()
    audit = env.audit(host_audit)
    conf = pod_conf(ns)
    addr = only_ip(env.module().attach(conf, "cri")[0])
    assert env.leases(unique_net) == [str(addr.ip)]

    other_ipam = tmp_path / "ipam-after-edit"
    if change == "rewrite":
        # Same network name, another subnet and another dataDir: a DEL built from today's
        # file would ask host-local to release from the wrong place.
        other = net_factory()
        unique_net.ipam_dirs.add(other_ipam)
        edited = unique_net.conflist(ipam_dir=other_ipam)
        edited["plugins"][0]["ipam"]["ranges"] = [[{"subnet": str(other.subnet), "gateway": str(other.gateway)}]]
        conf_file.write_text(json.dumps(edited))
    else:
        conf_file.unlink()

    env.module().detach(conf, "cri")  # a new module: nothing but the cache remembers the old config

    assert env.leases(unique_net) == [], "the original lease was not released"
    assert env.leases(unique_net, other_ipam) == []
    assert env.cache_files() == []
    assert bridge_ports(unique_net.bridge) == []
    audit.assert_clean(ignore=[unique_net.per_network_state])


def test_port_mapping_reaches_pod_from_host(
    env: Env, unique_net: UniqueNet, netns: Callable[[], str], host_audit: Callable[..., Audit]
) -> None:
    env.write("10-default.conflist", unique_net.conflist(ipam_dir=env.ipam, extra_plugins=[PORTMAP]))
    ns = netns()
    audit = env.audit(host_audit)
    module = env.module()
    host_port, container_port = free_port(), 8080
    conf = pod_conf(ns, port_mappings=[{"host_port": host_port, "container_port": container_port, "protocol": "TCP"}])
    pod_ip = str(only_ip(module.attach(conf, "cri")[0]).ip)
    assert f"--to-destination {pod_ip}:{container_port}" in nat_table()

    # The gateway address lives on the host bridge, so it is a local address and portmap's
    # OUTPUT DNAT applies (127.0.0.1 would also need route_localnet, so it is avoided).
    with tcp_listener(ns, pod_ip, container_port) as peer:
        assert tcp_ping_from_host(str(unique_net.gateway), host_port) == "pong:ping"
        assert ipaddress.IPv4Address(peer()) in unique_net.subnet

    module.detach(conf, "cri")

    assert pod_ip not in nat_table()
    assert env.leases(unique_net) == [] and env.cache_files() == []
    audit.assert_clean(ignore=[unique_net.per_network_state])


def test_bandwidth_annotations_shape_the_pod(
    env: Env, unique_net: UniqueNet, netns: Callable[[], str], host_audit: Callable[..., Audit]
) -> None:
    env.write("10-default.conflist", unique_net.conflist(ipam_dir=env.ipam, extra_plugins=[BANDWIDTH]))
    ns = netns()
    audit = env.audit(host_audit)
    module = env.module()
    conf = pod_conf(ns, annotations={ann.INGRESS_BANDWIDTH_ANNOTATION: "10M", ann.EGRESS_BANDWIDTH_ANNOTATION: "5M"})
    module.attach(conf, "cri")

    [veth] = bridge_ports(unique_net.bridge)
    ifb = hostaudit.ifb_name(unique_net.name, conf.pod_id)
    # Ingress (towards the pod) is a tbf on the host veth; egress is redirected to an ifb
    # device carrying its own tbf.
    on_veth, on_ifb = qdiscs(veth), qdiscs(ifb)
    assert re.search(r"qdisc tbf .* rate 10Mbit", on_veth), on_veth
    assert "qdisc ingress" in on_veth, on_veth
    assert re.search(r"qdisc tbf .* rate 5Mbit", on_ifb), on_ifb

    module.detach(conf, "cri")

    assert not host_link_exists(ifb)
    assert not host_link_exists(veth)
    assert env.leases(unique_net) == [] and env.cache_files() == []
    audit.assert_clean(ignore=[unique_net.per_network_state])  # covers qdiscs too


def test_ip_ranges_annotation_picks_the_address(
    env: Env, unique_net: UniqueNet, netns: Callable[[], str], host_audit: Callable[..., Audit]
) -> None:
    doc = unique_net.conflist(ipam_dir=env.ipam)
    # IPAM sees the runtimeConfig of the plugin that delegates to it, so the capability is
    # declared on the bridge entry.
    doc["plugins"][0]["capabilities"] = {"ipRanges": True}
    # host-local 1.1.1 *prepends* runtime ranges to the configured ones and refuses
    # overlapping range sets, so a network meant for ipRanges configures none itself.
    del doc["plugins"][0]["ipam"]["ranges"]
    # a pod may only choose ranges the operator allows (issue 11): here the network's subnet
    doc["criNet"] = {"allowedIPRanges": [str(unique_net.subnet)]}
    env.write("10-default.conflist", doc)
    ns = netns()
    audit = env.audit(host_audit)
    module = env.module()
    start, end = unique_net.host(200), unique_net.host(203)
    conf = pod_conf(ns, annotations={ann.IP_RANGES_ANNOTATION: json.dumps(
        [[{"subnet": str(unique_net.subnet), "rangeStart": str(start), "rangeEnd": str(end)}]])})

    addr = only_ip(module.attach(conf, "cri")[0])

    assert start <= addr.ip <= end, f"{addr} outside {start}-{end}"
    assert ns_links(ns)["eth0"]["ipv4"] == [addr]
    assert env.leases(unique_net) == [str(addr.ip)]
    module.detach(conf, "cri")
    assert env.leases(unique_net) == [] and env.cache_files() == []
    audit.assert_clean(ignore=[unique_net.per_network_state])


# ------------------------------------------------------------------- native adaptor


def test_native_network_two_containers_talk_tcp(
    tmp_path: Path, unique_net: UniqueNet, netns: Callable[[], str], host_audit: Callable[..., Audit]
) -> None:
    conf_dir, cache_dir, state_dir = tmp_path / "net.d", tmp_path / "cache", tmp_path / "state"
    unique_net.cache_dirs.add(cache_dir)  # leases go to host-local's default dir, already registered
    flags = ["--conf-dir", str(conf_dir), "--bin-dir", str(CNI_PLUGIN_DIR), "--cache-dir", str(cache_dir),
             "--state-dir", str(state_dir)]

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CRI_NET), "network", argv[0], *flags, *argv[1:]], capture_output=True, text=True,
                              timeout=60)

    ns1, ns2 = netns(), netns()
    audit = host_audit(cache_dir=cache_dir, ipam_dir=hostaudit.DEFAULT_IPAM_DIR, state_dir=state_dir)
    name = unique_net.name
    created = cli("create", "--subnet", str(unique_net.subnet), name)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == name
    [doc] = [d["config"] for d in json.loads(cli("inspect", name).stdout)]
    bridge = doc["plugins"][0]["bridge"]
    unique_net.bridge = bridge  # so the harness purges the native driver's bridge if we fail
    assert doc["plugins"][0]["ipam"]["ranges"] == [[{"subnet": str(unique_net.subnet),
                                                     "gateway": str(unique_net.gateway)}]]

    ips = []
    for ns in (ns1, ns2):
        connected = cli("connect", name, ns)
        assert connected.returncode == 0, connected.stderr
        [res] = json.loads(connected.stdout)
        assert res["name"] == name and res["interface"] == "eth0"
        ip = ipaddress.IPv4Interface(res["ips"][0])
        assert ip.ip in unique_net.subnet
        assert ns_links(ns)["eth0"]["ipv4"] == [ip]
        ips.append(str(ip.ip))
    assert len(bridge_ports(bridge)) == 2

    with tcp_listener(ns1, ips[0], 7777) as peer:
        assert tcp_ping_from(ns2, ips[0], 7777) == "pong:ping"
        assert peer() == ips[1]  # same bridge, no NAT in between

    refused = cli("rm", name)
    assert refused.returncode != 0
    assert "attached" in refused.stderr, refused.stderr
    assert host_link_exists(bridge)

    for ns in (ns1, ns2):
        disconnected = cli("disconnect", ns)
        assert disconnected.returncode == 0, disconnected.stderr
    assert bridge_ports(bridge) == []

    removed = cli("rm", name)
    assert removed.returncode == 0, removed.stderr
    assert not host_link_exists(bridge)
    assert not (conf_dir / f"crinet-{name}.conflist").exists()
    assert not (Path(hostaudit.DEFAULT_IPAM_DIR) / name).exists()  # host-local's lock and last_reserved_ip too
    assert cli("ls", "-q").stdout.strip() == ""
    audit.assert_clean()  # bridge included: rm removed it
