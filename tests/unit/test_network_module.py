"""NetworkModule: adaptor lookup by type, delegation to the adaptors, readiness, and the seed's
`insert_portmapping/insert_bandwidth/insert_iprange` (validated, merged, caller's conf untouched).

Spec: /work/shared/reference/isulad-network.md and the issue's NetworkModule rules.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from adaptors.cri import CRIAdaptor
from adaptors.native import NativeAdaptor, bridge
from cri_net import config
from cri_net.network import (AdaptorNotFoundError, InvalidRequestError, NetworkApiConf, NetworkApiError,
                             NetworkCreateRequest, NetworkModule, NetworkNotReadyError)
from cri_net.libcni import parse_result
from cri_net.network import NetworkApiResult
from adaptors.cri.annotations import BANDWIDTH_BURST
from adaptors.shared import plane_result
from cri_net.network.results import split_ips


def conflist(name: str, *plugins: str | dict[str, Any]) -> str:
    return json.dumps({"cniVersion": "1.0.0", "name": name,
                       "plugins": [{"type": p} if isinstance(p, str) else p for p in plugins]})


@pytest.fixture
def dirs(tmp_path: Path, fakecni, monkeypatch):
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    netns = tmp_path / "ns"
    netns.symlink_to("/proc/self/ns/net")  # a live netns (nsfs) without root
    fakecni.install("loopback", "main", "pm", "bw", "bridge", "portmap", "firewall")
    monkeypatch.setattr(bridge, "host_networks", lambda: [])
    monkeypatch.setattr(bridge, "host_link_names", lambda: set())
    settings = config.build(None, {"conf_dir": str(conf_dir), "bin_dirs": [str(fakecni.bin)],
                                   "cache_dir": str(tmp_path / "cache"), "plugin_timeout": 20,
                                   "conf_poll_interval": 0.1})
    return {"conf_dir": conf_dir, "netns": netns, "settings": settings, "fake": fakecni}


@pytest.fixture
def module(dirs):
    m = NetworkModule.init(dirs["settings"])
    yield m
    m.exit()


def base_conf(**kw: Any) -> NetworkApiConf:
    values: dict[str, Any] = {"name": "web", "namespace": "ns", "pod_id": "pod1", "netns_path": "/nonexistent"}
    values.update(kw)
    return NetworkApiConf(**values)


# ==== adaptors ================================================================================


@pytest.mark.parametrize("kind", ["", "CRI", "docker", "cri ", "native2"])
def test_unknown_adaptor_type(module, kind):
    with pytest.raises(AdaptorNotFoundError) as exc:
        module.adaptor(kind)
    assert exc.value.kind == kind
    assert "cri" in str(exc.value) and "native" in str(exc.value)
    assert isinstance(exc.value, NetworkApiError)
    for call in (lambda: module.ready(kind), lambda: module.attach(base_conf(), kind),
                 lambda: module.detach(base_conf(), kind), lambda: module.conf_list(kind),
                 lambda: module.exist(kind, "x"), lambda: module.update(kind)):
        with pytest.raises(AdaptorNotFoundError):
            call()


def test_adaptors_are_created_once_by_type(dirs):
    m = NetworkModule.init(dirs["settings"], kinds=("cri", "native"))
    try:
        cri, native = m.adaptor("cri"), m.adaptor("native")
        assert isinstance(cri, CRIAdaptor) and isinstance(native, NativeAdaptor)
        assert m.adaptor("cri") is cri and m.adaptor("native") is native
    finally:
        m.exit()
    with pytest.raises(AdaptorNotFoundError):
        NetworkModule.init(dirs["settings"], kinds=("bogus",))


def test_ready(module, dirs):
    assert module.ready("cri") is False  # no config for cri
    assert module.ready("native") is True
    (dirs["conf_dir"] / "crinet-x.conflist").write_text(conflist("x", "bridge"))
    module.update("cri")
    assert module.ready("cri") is False  # a native file does not make the pod network ready
    (dirs["conf_dir"] / "10-net.conflist").write_text(conflist("net", "main"))
    assert module.ready("cri") is False  # not until a reload
    module.update("cri")
    assert module.ready("cri") is True


def test_attach_refused_while_not_ready(module, dirs):
    with pytest.raises(NetworkNotReadyError):
        module.attach(base_conf(netns_path=str(dirs["netns"])), "cri")
    assert dirs["fake"].calls() == []


def test_cri_attach_check_detach_through_the_module(module, dirs):
    (dirs["conf_dir"] / "10-net.conflist").write_text(conflist("net", "main"))
    module.update("cri")
    conf = base_conf(netns_path=str(dirs["netns"]))
    results = module.attach(conf, "cri")
    assert [(r.name, r.interface) for r in results] == [("net", "eth0")]
    assert module.check(conf, "cri") == results
    module.detach(conf, "cri")
    seq = dirs["fake"].sequence()
    assert seq == [("loopback", "ADD"), ("main", "ADD"), ("main", "CHECK"), ("main", "DEL"), ("loopback", "DEL")]


def test_config_calls_are_delegated(module, dirs):
    (dirs["conf_dir"] / "10-net.conflist").write_text(conflist("net", "main"))
    module.update("cri")
    assert [r.name for r in module.conf_list("cri")] == ["net"]
    assert module.exist("cri", "net") and not module.exist("native", "net")
    assert json.loads(module.conf_inspect("cri", "net"))["name"] == "net"
    with pytest.raises(NetworkApiError):
        module.conf_create("cri", NetworkCreateRequest(name="x"))
    info = module.conf_create("native", NetworkCreateRequest(name="nat"))
    assert info.name == "nat" and module.exist("native", "nat")
    assert [r.name for r in module.conf_list("native", {"name": ["nat"]})] == ["nat"]
    assert module.conf_rm("native", "nat") == "nat"
    assert not module.exist("native", "nat")


def test_watching_module_picks_up_new_configs_and_exit_stops_it(dirs):
    m = NetworkModule.init(dirs["settings"], kinds=("cri",), watch=True)
    try:
        assert m.ready("cri") is False
        (dirs["conf_dir"] / "10-net.conflist").write_text(conflist("net", "main"))
        deadline = time.monotonic() + 5
        while not m.ready("cri") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert m.ready("cri") is True
        watcher = m.adaptor("cri").operator._watcher
        assert watcher is not None
    finally:
        m.exit()
    assert not watcher._thread.is_alive()
    assert m._adaptors == {}


# ==== insert_* ================================================================================


def test_insert_portmapping_validates_and_merges():
    conf = base_conf()
    one = NetworkModule.insert_portmapping('[{"hostPort": 8080, "containerPort": 80}]', conf)
    assert conf.capabilities == {}  # the caller's conf is not changed
    assert one.capabilities == {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    two = NetworkModule.insert_portmapping(
        '[{"hostPort": 8443, "containerPort": 443, "protocol": "UDP", "hostIP": "10.0.0.1"}]', one)
    assert two.capabilities["portMappings"] == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 8443, "containerPort": 443, "protocol": "udp", "hostIP": "10.0.0.1"}]
    assert one.capabilities["portMappings"] == [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    assert two.pod_id == conf.pod_id and two.name == conf.name


@pytest.mark.parametrize("value", [
    "not json", "{}", '[{"hostPort": 0, "containerPort": 80}]', '[{"hostPort": 80}]',
    '[{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]',
    '[{"hostPort": 80, "containerPort": 80, "hostIP": "nope"}]',
    '[{"hostPort": 8080, "containerPort": 1}]',  # duplicates the existing mapping
])
def test_insert_portmapping_refuses_bad_values(value):
    conf = NetworkModule.insert_portmapping('[{"hostPort": 8080, "containerPort": 80}]', base_conf())
    with pytest.raises(InvalidRequestError) as exc:
        NetworkModule.insert_portmapping(value, conf)
    assert exc.value.key == "cri-net.io/port-mappings"
    assert len(conf.capabilities["portMappings"]) == 1


def test_insert_bandwidth_sets_one_direction_and_keeps_the_other():
    conf = NetworkModule.insert_bandwidth("10M", base_conf())
    assert conf.capabilities["bandwidth"] == {"ingressRate": 10_000_000, "ingressBurst": BANDWIDTH_BURST}
    conf = NetworkModule.insert_bandwidth("1Mi", conf, "egress")
    assert conf.capabilities["bandwidth"] == {"ingressRate": 10_000_000, "ingressBurst": BANDWIDTH_BURST,
                                              "egressRate": 1 << 20, "egressBurst": BANDWIDTH_BURST}
    conf = NetworkModule.insert_bandwidth("20M", conf)
    assert conf.capabilities["bandwidth"]["ingressRate"] == 20_000_000
    assert conf.capabilities["bandwidth"]["egressRate"] == 1 << 20


@pytest.mark.parametrize("value, direction, key", [
    ("fast", "ingress", "kubernetes.io/ingress-bandwidth"),
    ("-1M", "egress", "kubernetes.io/egress-bandwidth"),
    ("1", "ingress", "kubernetes.io/ingress-bandwidth"),  # below the 1k minimum
    ("2P", "ingress", "kubernetes.io/ingress-bandwidth"),  # above the 1P maximum
    ("10M", "sideways", "direction"),
])
def test_insert_bandwidth_refuses_bad_values(value, direction, key):
    with pytest.raises(InvalidRequestError) as exc:
        NetworkModule.insert_bandwidth(value, base_conf(), direction)
    assert exc.value.key == key


def test_insert_iprange_validates_and_appends():
    conf = NetworkModule.insert_iprange('[[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10"}]]', base_conf())
    conf = NetworkModule.insert_iprange('[[{"subnet": "fd00::/64"}]]', conf)
    assert conf.capabilities["ipRanges"] == [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10"}],
                                             [{"subnet": "fd00::/64"}]]


@pytest.mark.parametrize("value", [
    "[]", "[[]]", "nope", '[[{"subnet": "10.1.0.5/24"}]]', '[[{"subnet": "10.1.0.0/24", "gateway": "10.2.0.1"}]]',
    '[[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.9", "rangeEnd": "10.1.0.3"}]]',
    '[[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]', '[[{"rangeStart": "10.1.0.1"}]]',
])
def test_insert_iprange_refuses_bad_values(value):
    with pytest.raises(InvalidRequestError) as exc:
        NetworkModule.insert_iprange(value, base_conf())
    assert exc.value.key == "cri-net.io/ip-ranges"


def test_inserted_capabilities_reach_the_default_networks_plugins(module, dirs):
    (dirs["conf_dir"] / "10-net.conflist").write_text(conflist(
        "net", {"type": "main", "capabilities": {"ipRanges": True}},
        {"type": "pm", "capabilities": {"portMappings": True}},
        {"type": "bw", "capabilities": {"bandwidth": True}}))
    module.update("cri")
    conf = base_conf(netns_path=str(dirs["netns"]), port_mappings=[{"host_port": 81, "container_port": 80}],
                     annotations={"kubernetes.io/egress-bandwidth": "2M"})
    conf = NetworkModule.insert_portmapping('[{"hostPort": 9090, "containerPort": 90}]', conf)
    conf = NetworkModule.insert_bandwidth("10M", conf)
    conf = NetworkModule.insert_iprange('[[{"subnet": "10.5.0.0/16"}]]', conf)
    module.attach(conf, "cri")
    rc = {c["name"]: c["config"].get("runtimeConfig") for c in dirs["fake"].calls(command="ADD")}
    assert rc["main"] == {"ipRanges": [[{"subnet": "10.5.0.0/16"}]]}
    assert sorted(m["hostPort"] for m in rc["pm"]["portMappings"]) == [81, 9090]
    assert rc["bw"]["bandwidth"]["ingressRate"] == 10_000_000
    assert rc["loopback"] is None


def test_inserted_bandwidth_merges_with_the_other_direction_from_annotations(module, dirs):
    """insert_bandwidth sets one direction and keeps the other; the attach-time merge with the
    pod's bandwidth annotations must do the same (egress from the annotation is not dropped)."""
    (dirs["conf_dir"] / "10-net.conflist").write_text(conflist("net", {"type": "bw", "capabilities": {"bandwidth": True}}))
    module.update("cri")
    conf = base_conf(netns_path=str(dirs["netns"]), annotations={"kubernetes.io/egress-bandwidth": "2M"})
    conf = NetworkModule.insert_bandwidth("10M", conf)
    module.attach(conf, "cri")
    (bw,) = dirs["fake"].calls(name="bw", command="ADD")
    assert bw["config"]["runtimeConfig"]["bandwidth"] == {
        "ingressRate": 10_000_000, "ingressBurst": BANDWIDTH_BURST,
        "egressRate": 2_000_000, "egressBurst": BANDWIDTH_BURST}


def test_inserted_port_mapping_that_duplicates_a_cri_one_is_refused_before_attach(module, dirs):
    """parse_port_mappings refuses two mappings of one (hostPort, protocol, hostIP); a mapping
    added with insert_portmapping that repeats a CRI port mapping must be refused the same way,
    before any plugin runs, instead of both reaching portmap."""
    (dirs["conf_dir"] / "10-net.conflist").write_text(conflist(
        "net", {"type": "pm", "capabilities": {"portMappings": True}}))
    module.update("cri")
    conf = base_conf(netns_path=str(dirs["netns"]), port_mappings=[{"host_port": 8080, "container_port": 80}])
    conf = NetworkModule.insert_portmapping('[{"hostPort": 8080, "containerPort": 90}]', conf)
    with pytest.raises(InvalidRequestError):
        module.attach(conf, "cri")
    assert dirs["fake"].calls() == []


# ==== results.py ==============================================================================


def test_plane_result_without_a_result_is_just_the_plane():
    assert plane_result("net", "eth0", None).model_dump() == {"name": "net", "interface": "eth0", "ips": [],
                                                              "gateways": [], "mac": ""}


def test_plane_result_picks_the_sandbox_interface_of_that_name():
    res = parse_result({"cniVersion": "1.0.0", "interfaces": [
        {"name": "eth0", "mac": "aa:aa:aa:aa:aa:aa"},  # a host-side interface with the same name
        {"name": "veth1", "mac": "bb:bb:bb:bb:bb:bb"},
        {"name": "eth0", "mac": "cc:cc:cc:cc:cc:cc", "sandbox": "/run/netns/x"}],
        "ips": [{"interface": 2, "address": "10.0.0.5/24", "gateway": "10.0.0.1"},
                {"interface": 0, "address": "192.168.9.1/24"},
                {"address": "fd00::5/64"}]})
    r = plane_result("net", "eth0", res)
    assert (r.mac, r.ips, r.gateways) == ("cc:cc:cc:cc:cc:cc", ["10.0.0.5/24", "fd00::5/64"], ["10.0.0.1"])


def test_plane_result_of_older_result_versions():
    r040 = parse_result({"cniVersion": "0.4.0", "interfaces": [{"name": "eth1", "sandbox": "/x", "mac": "0a:00:00:00:00:01"}],
                         "ips": [{"version": "4", "interface": 0, "address": "10.1.0.2/16", "gateway": "10.1.0.1"}]})
    assert plane_result("n", "eth1", r040).model_dump() == {
        "name": "n", "interface": "eth1", "ips": ["10.1.0.2/16"], "gateways": ["10.1.0.1"], "mac": "0a:00:00:00:00:01"}
    r020 = parse_result({"cniVersion": "0.2.0", "ip4": {"ip": "10.2.0.2/16", "gateway": "10.2.0.1"},
                         "ip6": {"ip": "fd00::2/64"}})
    r = plane_result("n", "eth0", r020)
    assert (r.ips, r.gateways, r.mac) == (["10.2.0.2/16", "fd00::2/64"], ["10.2.0.1"], "")


def _res(interface: str, *ips: str) -> NetworkApiResult:
    return NetworkApiResult(name="n", interface=interface, ips=list(ips))


@pytest.mark.parametrize("pref, primary, rest", [
    ("ipv4", "10.0.0.5", ["fd00::5"]),
    ("ipv6", "fd00::5", ["10.0.0.5"]),
    ("cni", "fd00::5", ["10.0.0.5"]),
])
def test_split_ips_primary_and_additional_from_the_default_interface_only(pref, primary, rest):
    """containerd: additional_ips are the default interface's other addresses (dual-stack),
    never an extra plane's."""
    results = [_res("eth0", "fd00::5/64", "10.0.0.5/24"), _res("net1", "10.9.0.5/24")]
    assert split_ips(results, "eth0", pref) == (primary, rest)


def test_split_ips_edge_cases():
    assert split_ips([], "eth0") == ("", [])
    assert split_ips([_res("net1", "10.9.0.5/24")], "eth0") == ("", [])
    assert split_ips([_res("eth0", "fd00::5/64")], "eth0", "ipv4") == ("fd00::5", [])  # no IPv4: first address
    assert split_ips([_res("eth0", "10.0.0.5/24")], "eth0", "ipv6") == ("10.0.0.5", [])
