"""The list operations through the real exec path: ADD, DEL, CHECK, STATUS, GC, VERSION/validate.

Spec: /work/shared/reference/libcni-behaviour.md sections 2 (prevResult, runtimeConfig,
validation) and 4 (operations on a list).
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from cri_net.libcni import (
    CNIError, ErrorCode, GCAttachment, NetworkConfigList, PluginError, conf_list_from_bytes, plugin_conf_from_bytes,
)
from cri_net.libcni.invoke import PluginInfo

RESULT_100 = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/ns1"}],
              "ips": [{"interface": 0, "address": "10.1.2.3/24", "gateway": "10.1.2.1"}],
              "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.2.1"}], "dns": {"nameservers": ["10.0.0.10"]}}


def stdin_of(call: dict) -> dict:
    return call["config"]


# ---- ADD ---------------------------------------------------------------------------------

def test_add_chains_prev_result_and_caches_the_last(fakecni):
    fakecni.install("fake-a", "fake-b", "fake-c")
    fakecni.script("fake-a", "ADD", result=RESULT_100)
    cni = fakecni.cni()
    result = cni.add_network_list(fakecni.conflist("fake-a", "fake-b", "fake-c"), fakecni.rt())
    a, b, c = fakecni.calls(command="ADD")
    assert [a["name"], b["name"], c["name"]] == ["fake-a", "fake-b", "fake-c"]
    assert "prevResult" not in stdin_of(a)
    assert stdin_of(b)["prevResult"] == RESULT_100
    expected_b = {**RESULT_100, "interfaces": RESULT_100["interfaces"] + [{"name": "fake-b"}]}
    assert stdin_of(c)["prevResult"] == expected_b
    final = {**RESULT_100, "interfaces": expected_b["interfaces"] + [{"name": "fake-c"}]}
    assert result.to_dict() == final
    cached = json.loads(fakecni.cache_file().read_bytes())["result"]
    assert cached == final
    assert cni.cached_result(fakecni.conflist("fake-a", "fake-b", "fake-c"), fakecni.rt()).to_dict() == final


@pytest.mark.parametrize("capabilities, capability_args, expected", [
    pytest.param({"portMappings": True}, {"portMappings": [{"hostPort": 8080, "containerPort": 80}]},
                 {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}, id="one-match"),
    pytest.param({"portMappings": True, "bandwidth": False, "dns": True, "ipRanges": True},
                 {"portMappings": [], "bandwidth": {"ingressRate": 1}, "ipRanges": [[{"subnet": "10.0.0.0/8"}]],
                  "aliases": ["x"]},
                 {"portMappings": [], "ipRanges": [[{"subnet": "10.0.0.0/8"}]]}, id="only-true-and-present"),
    pytest.param({"bandwidth": False}, {"bandwidth": {"ingressRate": 1}}, None, id="capability-false"),
    pytest.param({"dns": True}, {"portMappings": [1]}, None, id="no-arg-for-capability"),
    pytest.param({}, {"portMappings": [1]}, None, id="no-capabilities"),
    pytest.param({"portMappings": True}, {}, None, id="no-args"),
])
def test_runtime_config_only_for_enabled_capabilities_with_args(fakecni, capabilities, capability_args, expected):
    fakecni.install("fake-a")
    net = fakecni.conflist({"type": "fake-a", "capabilities": capabilities})
    cni = fakecni.cni()
    rt = fakecni.rt(capability_args=capability_args)
    cni.add_network_list(net, rt)
    cni.check_network_list(net, rt)
    cni.del_network_list(net, rt)
    for call in fakecni.calls():  # ADD, CHECK and DEL all get the same runtimeConfig
        conf = stdin_of(call)
        if expected is None:
            assert "runtimeConfig" not in conf
        else:
            assert conf["runtimeConfig"] == expected
    assert len(fakecni.calls()) == 3


def test_runtime_config_is_per_plugin(fakecni):
    fakecni.install("fake-a", "fake-b")
    net = fakecni.conflist({"type": "fake-a", "capabilities": {"portMappings": True}},
                           {"type": "fake-b", "capabilities": {"bandwidth": True}, "runtimeConfig": {"keep": 1}})
    rt = fakecni.rt(capability_args={"portMappings": [{"hostPort": 1}], "dns": {"x": 1}})
    fakecni.cni().add_network_list(net, rt)
    a, b = fakecni.calls()
    assert stdin_of(a)["runtimeConfig"] == {"portMappings": [{"hostPort": 1}]}
    assert stdin_of(b)["runtimeConfig"] == {"keep": 1}  # nothing injected: the plugin's own is left alone


VALIDATION = [
    pytest.param("", "net1", "eth0", 3, "missing containerID", id="no-container-id"),
    pytest.param("-ctr", "net1", "eth0", 4, "invalid characters in containerID", id="id-leading-dash"),
    pytest.param("ctr 1", "net1", "eth0", 4, "invalid characters in containerID", id="id-space"),
    pytest.param("ctr/1", "net1", "eth0", 4, "invalid characters in containerID", id="id-slash"),
    pytest.param("..", "net1", "eth0", 4, "invalid characters in containerID", id="id-dotdot"),
    pytest.param("ctr1\n", "net1", "eth0", 4, "invalid characters in containerID", id="id-trailing-newline"),
    pytest.param("ctr1", "", "eth0", 7, "missing network name", id="no-network-name"),
    pytest.param("ctr1", "net/1", "eth0", 7, "invalid characters found in network name", id="net-slash"),
    pytest.param("ctr1", "_net", "eth0", 7, "invalid characters found in network name", id="net-leading-underscore"),
    pytest.param("ctr1", "..", "eth0", 7, "invalid characters found in network name", id="net-dotdot"),
    pytest.param("ctr1", "net1", "", 4, "interface name is empty", id="if-empty"),
    pytest.param("ctr1", "net1", "a" * 16, 4, "interface name is too long", id="if-16-bytes"),
    pytest.param("ctr1", "net1", "\u00e9" * 8, 4, "interface name is too long", id="if-16-utf8-bytes"),
    pytest.param("ctr1", "net1", ".", 4, "interface name is . or ..", id="if-dot"),
    pytest.param("ctr1", "net1", "..", 4, "interface name is . or ..", id="if-dotdot"),
    pytest.param("ctr1", "net1", "eth/0", 4, "contains / or : or whitespace", id="if-slash"),
    pytest.param("ctr1", "net1", "eth:0", 4, "contains / or : or whitespace", id="if-colon"),
    pytest.param("ctr1", "net1", "eth 0", 4, "contains / or : or whitespace", id="if-space"),
    pytest.param("ctr1", "net1", "eth\t0", 4, "contains / or : or whitespace", id="if-tab"),
]


@pytest.mark.parametrize("container_id, network, ifname, code, message", VALIDATION)
def test_add_validation_rejects_before_any_plugin_runs(fakecni, container_id, network, ifname, code, message):
    fakecni.install("fake-a")
    net = fakecni.conflist("fake-a", name=network)
    with pytest.raises(CNIError) as info:
        fakecni.cni().add_network_list(net, fakecni.rt(container_id, ifname=ifname))
    assert info.value.code == code
    assert message in str(info.value)
    assert fakecni.calls() == []
    assert not (fakecni.cache_dir / "results").exists()


@pytest.mark.parametrize("container_id, network, ifname", [
    ("a", "n", "e"),
    ("0abc_def.ghi-jkl", "Net.1_x-y", "a" * 15),
    ("ctr1", "net1", "\u00e9" * 7 + "a"),  # 15 bytes
])
def test_add_validation_accepts_edge_values(fakecni, container_id, network, ifname):
    fakecni.install("fake-a")
    fakecni.cni().add_network_list(fakecni.conflist("fake-a", name=network), fakecni.rt(container_id, ifname=ifname))
    assert fakecni.cache_file(network, container_id, ifname).exists()


@pytest.mark.parametrize("stdout, message", [
    ("this is not json", "failed to unmarshal raw result"),
    ('{"cniVersion":"1.0.0","ips":[{"address":"not-an-ip"}]}', "failed to decode 1.0.0 result"),
    ('["a", "list"]', "not a JSON object"),
    ('{"cniVersion":"9.9.9"}', 'unsupported CNI result version "9.9.9"'),
])
def test_add_success_with_unusable_output_is_an_error_and_nothing_cached(fakecni, stdout, message):
    fakecni.install("fake-a", "fake-b")
    fakecni.script("fake-a", "ADD", stdout=stdout)
    with pytest.raises(PluginError) as info:
        fakecni.cni().add_network_list(fakecni.conflist("fake-a", "fake-b"), fakecni.rt())
    assert info.value.plugin == "fake-a" and info.value.command == "ADD"
    assert message in str(info.value)
    assert fakecni.sequence() == [("fake-a", "ADD")]
    assert not fakecni.cache_file().exists()


def test_add_failure_in_second_plugin_caches_nothing_and_names_it(fakecni):
    fakecni.install("fake-a", "fake-b", "fake-c")
    fakecni.script("fake-b", "ADD", stdout='{"code":11,"msg":"no addresses left"}', exit=1)
    with pytest.raises(PluginError) as info:
        fakecni.cni().add_network_list(fakecni.conflist("fake-a", "fake-b", "fake-c"), fakecni.rt())
    exc = info.value
    assert exc.plugin == "fake-b" and exc.code == 11
    assert 'type="fake-b"' in str(exc) and "no addresses left" in str(exc)
    assert fakecni.sequence() == [("fake-a", "ADD"), ("fake-b", "ADD")]
    assert not fakecni.cache_file().exists()
    assert fakecni.cni().cached_attachments() == []


@pytest.mark.parametrize("version, result", [
    ("1.1.0", {"ips": [{"address": "10.0.0.2/24"}]}),
    ("1.0.0", {"ips": [{"address": "10.0.0.2/24"}]}),
    ("0.4.0", {"ips": [{"version": "4", "address": "10.0.0.2/24"}]}),
    ("0.3.1", {"ips": [{"version": "4", "address": "10.0.0.2/24"}]}),
    ("0.2.0", {"ip4": {"ip": "10.0.0.2/24"}}),
])
def test_result_without_cni_version_takes_the_configs(fakecni, version, result):
    fakecni.install("fake-a", "fake-b")
    fakecni.script("fake-a", "ADD", result=result)
    fakecni.script("fake-b", "ADD", omit_version=True)  # echoes prevResult as is
    out = fakecni.cni().add_network_list(fakecni.conflist("fake-a", "fake-b", version=version), fakecni.rt())
    assert out.cniVersion == version
    assert stdin_of(fakecni.calls("fake-b")[0])["prevResult"]["cniVersion"] == version
    assert json.loads(fakecni.cache_file().read_bytes())["result"]["cniVersion"] == version


# ---- DEL ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version, gets_prev", [("1.1.0", True), ("1.0.0", True), ("0.4.0", True),
                                                ("0.3.1", False), ("0.3.0", False)])
def test_del_reverse_order_with_cached_prev_result(fakecni, version, gets_prev):
    fakecni.install("fake-a", "fake-b", "fake-c")
    net = fakecni.conflist("fake-a", "fake-b", "fake-c", version=version)
    cni = fakecni.cni()
    rt = fakecni.rt(args=[("K", "V")])
    added = cni.add_network_list(net, rt)
    fakecni.clear_log()
    cni.del_network_list(net, rt)
    assert fakecni.sequence() == [("fake-c", "DEL"), ("fake-b", "DEL"), ("fake-a", "DEL")]
    for call in fakecni.calls():
        conf = stdin_of(call)
        assert call["env"]["CNI_CONTAINERID"] == "ctr1" and call["env"]["CNI_ARGS"] == "K=V"
        if gets_prev:
            assert conf["prevResult"] == added.to_dict()
        else:
            assert "prevResult" not in conf
    assert not fakecni.cache_file().exists()


def test_second_del_and_del_without_cache_succeed(fakecni):
    fakecni.install("fake-a", "fake-b")
    net = fakecni.conflist("fake-a", "fake-b")
    cni = fakecni.cni()
    cni.add_network_list(net, fakecni.rt())
    cni.del_network_list(net, fakecni.rt())
    fakecni.clear_log()
    cni.del_network_list(net, fakecni.rt())  # second DEL
    cni.del_network_list(net, fakecni.rt("never-added", netns=""))  # never cached, netns gone
    assert fakecni.sequence() == [("fake-b", "DEL"), ("fake-a", "DEL")] * 2
    assert all("prevResult" not in stdin_of(c) for c in fakecni.calls())


@pytest.mark.parametrize("content, prev", [
    (b"garbage, not json", None),
    (b"", None),
    (b'{"kind":"cniCacheV1","containerId":"ctr1","ifName":"eth0","networkName":"net1",'
     b'"result":{"cniVersion":"1.0.0","ips":[{"address":"bogus"}]}}', None),
    (b'{"cniVersion":"1.0.0","ips":[{"address":"bogus"}]}', None),
    # an undecodable cniCacheV1 record falls back to the legacy reading, as in Go
    # (getCachedResult -> getLegacyCachedResult): an empty result, harmless
    (b'{"kind":"cniCacheV1","containerId":"ctr1","config":"!!notbase64","ifName":"eth0","networkName":"net1"}',
     {"cniVersion": "1.0.0"}),
])
def test_del_tolerates_an_unusable_cache_and_removes_it(fakecni, content, prev):
    fakecni.install("fake-a")
    path = fakecni.cache_file()
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    fakecni.cni().del_network_list(fakecni.conflist("fake-a"), fakecni.rt())
    (call,) = fakecni.calls()
    assert stdin_of(call).get("prevResult") == prev
    assert not path.exists()


def test_del_uses_a_legacy_raw_result_cache_as_prev_result(fakecni):
    fakecni.install("fake-a")
    path = fakecni.cache_file()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(RESULT_100))
    fakecni.cni().del_network_list(fakecni.conflist("fake-a"), fakecni.rt())
    assert stdin_of(fakecni.calls()[0])["prevResult"] == RESULT_100


def test_del_converts_the_cached_result_to_the_lists_version(fakecni):
    fakecni.install("fake-a")
    cni = fakecni.cni()
    fakecni.script("fake-a", "ADD", result=RESULT_100)
    cni.add_network_list(fakecni.conflist("fake-a", version="1.0.0"), fakecni.rt())
    cni.del_network_list(fakecni.conflist("fake-a", version="0.4.0"), fakecni.rt())
    prev = stdin_of(fakecni.calls(command="DEL")[0])["prevResult"]
    assert prev["cniVersion"] == "0.4.0" and prev["ips"][0]["version"] == "4"


def test_failed_del_keeps_the_cache(fakecni):
    fakecni.install("fake-a", "fake-b")
    net = fakecni.conflist("fake-a", "fake-b")
    cni = fakecni.cni()
    cni.add_network_list(net, fakecni.rt())
    fakecni.script("fake-a", "DEL", stderr="busy", exit=1)
    with pytest.raises(PluginError) as info:
        cni.del_network_list(net, fakecni.rt())
    assert info.value.plugin == "fake-a" and info.value.command == "DEL"
    assert fakecni.cache_file().exists()  # the next DEL still has the result to release


def test_del_with_a_cache_entry_that_cannot_be_removed_does_not_leak_oserror(fakecni):
    """BUG: ResultCache.delete only ignores FileNotFoundError, so any other OSError (here the
    cache path is a directory: EISDIR) escapes del_network_list as a raw OSError after every
    plugin already ran DEL. Go libcni ignores cacheDel errors (`_ = c.cacheDel(...)`) and
    section 4 says an unreadable cache is tolerated; at the very least it must be a CNIError."""
    fakecni.install("fake-a")
    path = fakecni.cache_file()
    path.mkdir(parents=True)
    (path / "blocker").write_text("x")
    try:
        fakecni.cni().del_network_list(fakecni.conflist("fake-a"), fakecni.rt())
    except CNIError:
        pass  # acceptable (a CacheError); Go returns success here
    assert fakecni.sequence() == [("fake-a", "DEL")]


# ---- CHECK -------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1"])
@pytest.mark.parametrize("disable_check", [False, True])
def test_check_needs_version_0_4_0(fakecni, version, disable_check):
    fakecni.install("fake-a")
    net = fakecni.conflist("fake-a", version=version, disableCheck=disable_check)
    with pytest.raises(CNIError) as info:
        fakecni.cni().check_network_list(net, fakecni.rt())
    assert f'configuration version "{version}" does not support the CHECK command' in str(info.value)
    assert info.value.code == ErrorCode.INCOMPATIBLE_CNI_VERSION
    assert fakecni.calls() == []


@pytest.mark.parametrize("flag", [True, "true", "TRUE", "True"])
def test_disable_check_runs_no_plugin(fakecni, flag):
    fakecni.install("fake-a")
    fakecni.script("fake-a", "CHECK", exit=1, stderr="must not run")
    net = fakecni.conflist("fake-a", disableCheck=flag)
    cni = fakecni.cni()
    cni.add_network_list(net, fakecni.rt())
    cni.check_network_list(net, fakecni.rt())
    assert fakecni.sequence() == [("fake-a", "ADD")]


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_check_runs_plugins_in_order_with_the_cached_result(fakecni, version):
    fakecni.install("fake-a", "fake-b", "fake-c")
    net = fakecni.conflist("fake-a", "fake-b", "fake-c", version=version, disableCheck=False)
    cni = fakecni.cni()
    rt = fakecni.rt(args=[("K", "V")])
    added = cni.add_network_list(net, rt)
    fakecni.clear_log()
    cni.check_network_list(net, rt)
    assert fakecni.sequence() == [("fake-a", "CHECK"), ("fake-b", "CHECK"), ("fake-c", "CHECK")]
    for call in fakecni.calls():
        assert stdin_of(call)["prevResult"] == added.to_dict()
        assert call["env"]["CNI_NETNS"] == "/var/run/netns/ns1" and call["env"]["CNI_ARGS"] == "K=V"
    assert fakecni.cache_file().exists()


def test_check_failure_stops_and_names_the_plugin(fakecni):
    fakecni.install("fake-a", "fake-b", "fake-c")
    net = fakecni.conflist("fake-a", "fake-b", "fake-c")
    cni = fakecni.cni()
    cni.add_network_list(net, fakecni.rt())
    fakecni.script("fake-b", "CHECK", stdout='{"code":999,"msg":"veth is gone"}', exit=1)
    with pytest.raises(PluginError) as info:
        cni.check_network_list(net, fakecni.rt())
    assert info.value.plugin == "fake-b" and "(check)" in str(info.value) and "veth is gone" in str(info.value)
    assert [c for c in fakecni.sequence() if c[1] == "CHECK"] == [("fake-a", "CHECK"), ("fake-b", "CHECK")]


def test_check_without_cache_runs_without_prev_result(fakecni):
    fakecni.install("fake-a")
    fakecni.cni().check_network_list(fakecni.conflist("fake-a"), fakecni.rt())
    assert "prevResult" not in stdin_of(fakecni.calls()[0])


# ---- STATUS ------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_status_before_1_1_0_is_a_no_op(fakecni, version):
    fakecni.install("fake-a")
    fakecni.script("fake-a", "STATUS", stdout='{"code":50,"msg":"down"}', exit=1)
    fakecni.cni().status_network_list(fakecni.conflist("fake-a", version=version))
    assert fakecni.calls() == []


def test_status_runs_every_plugin_in_order(fakecni):
    fakecni.install("fake-a", "fake-b")
    fakecni.cni().status_network_list(fakecni.conflist({"type": "fake-a", "x": 1}, "fake-b", version="1.1.0"))
    assert fakecni.sequence() == [("fake-a", "STATUS"), ("fake-b", "STATUS")]
    assert stdin_of(fakecni.calls()[0]) == {"type": "fake-a", "x": 1, "cniVersion": "1.1.0", "name": "net1"}


@pytest.mark.parametrize("code", [50, 51])
def test_status_error_code_is_preserved_and_stops_the_chain(fakecni, code):
    fakecni.install("fake-a", "fake-b", "fake-c")
    fakecni.script("fake-b", "STATUS", stdout=json.dumps({"code": code, "msg": "not ready", "details": "no IPs"}),
                   exit=1)
    with pytest.raises(PluginError) as info:
        fakecni.cni().status_network_list(fakecni.conflist("fake-a", "fake-b", "fake-c", version="1.1.0"))
    assert info.value.code == code
    assert info.value.plugin == "fake-b" and info.value.command == "STATUS"
    assert str(info.value).endswith("not ready; no IPs")
    assert fakecni.sequence() == [("fake-a", "STATUS"), ("fake-b", "STATUS")]


# ---- GC ----------------------------------------------------------------------------------

CAPS = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}


def _populate(fakecni, cni, net1: NetworkConfigList, net2: NetworkConfigList) -> None:
    for i in (1, 2, 3):
        cni.add_network_list(net1, fakecni.rt(f"ctr{i}", f"/var/run/netns/ns{i}", args=[("POD", f"p{i}")],
                                               capability_args=CAPS))
    cni.add_network_list(net1, fakecni.rt("ctr1", "/var/run/netns/ns1", "net1b"))
    cni.add_network_list(net2, fakecni.rt("ctr2", "/var/run/netns/ns2"))
    fakecni.clear_log()


def _gc_nets(fakecni, version: str = "1.1.0", **top) -> tuple[NetworkConfigList, NetworkConfigList]:
    fakecni.install("fake-a", "fake-b")
    plugin_a = {"type": "fake-a", "capabilities": {"portMappings": True}}
    return (fakecni.conflist(plugin_a, "fake-b", name="net1", version=version, **top),
            fakecni.conflist("fake-a", name="net2", version="1.1.0"))


def test_gc_dels_only_stale_attachments_then_gcs_every_plugin(fakecni):
    net1, net2 = _gc_nets(fakecni)
    cni = fakecni.cni()
    _populate(fakecni, cni, net1, net2)
    cached = {c: json.loads(fakecni.cache_file("net1", c).read_bytes())["result"] for c in ("ctr2", "ctr3")}
    valid = [GCAttachment("ctr1", "eth0"), GCAttachment("ctr1", "net1b"), GCAttachment("ctr9", "eth0")]
    cni.gc_network_list(net1, valid)

    assert fakecni.sequence() == [("fake-b", "DEL"), ("fake-a", "DEL"), ("fake-b", "DEL"), ("fake-a", "DEL"),
                                  ("fake-a", "GC"), ("fake-b", "GC")]
    dels = fakecni.calls(command="DEL")
    for call, ctr, ns in zip(dels, ("ctr2", "ctr2", "ctr3", "ctr3"), ("ns2", "ns2", "ns3", "ns3")):
        env = call["env"]
        assert (env["CNI_CONTAINERID"], env["CNI_IFNAME"], env["CNI_NETNS"], env["CNI_ARGS"]) == \
            (ctr, "eth0", f"/var/run/netns/{ns}", f"POD=p{ctr[-1]}")
        assert stdin_of(call)["prevResult"] == cached[ctr]
    assert stdin_of(dels[1])["runtimeConfig"] == CAPS  # fake-a has the capability
    assert "runtimeConfig" not in stdin_of(dels[0])

    listed = [{"containerID": "ctr1", "ifname": "eth0"}, {"containerID": "ctr1", "ifname": "net1b"},
              {"containerID": "ctr9", "ifname": "eth0"}]
    for call in fakecni.calls(command="GC"):
        conf = stdin_of(call)
        assert conf["cni.dev/valid-attachments"] == listed
        assert conf["cni.dev/attachments"] == listed
        assert conf["name"] == "net1" and conf["cniVersion"] == "1.1.0"
        assert "prevResult" not in conf
        env = call["env"]
        assert (env["CNI_CONTAINERID"], env["CNI_NETNS"], env["CNI_IFNAME"], env["CNI_ARGS"]) == ("", "", "", "")
        assert env["CNI_PATH"] == str(fakecni.bin)

    assert fakecni.cache_file("net1", "ctr1").exists() and fakecni.cache_file("net1", "ctr1", "net1b").exists()
    assert not fakecni.cache_file("net1", "ctr2").exists() and not fakecni.cache_file("net1", "ctr3").exists()
    assert fakecni.cache_file("net2", "ctr2").exists()  # other networks untouched


def test_gc_with_no_valid_set_dels_every_attachment_of_the_network(fakecni):
    net1, net2 = _gc_nets(fakecni)
    cni = fakecni.cni()
    _populate(fakecni, cni, net1, net2)
    cni.gc_network_list(net1, None)
    dels = [(c["env"]["CNI_CONTAINERID"], c["env"]["CNI_IFNAME"]) for c in fakecni.calls(command="DEL")]
    assert sorted(set(dels)) == [("ctr1", "eth0"), ("ctr1", "net1b"), ("ctr2", "eth0"), ("ctr3", "eth0")]
    assert len(dels) == 8
    for call in fakecni.calls(command="GC"):
        assert "cni.dev/valid-attachments" not in stdin_of(call)
        assert "cni.dev/attachments" not in stdin_of(call)
    assert [a.network for a in cni.cached_attachments()] == ["net2"]


def test_gc_with_an_empty_valid_set_sends_an_empty_list(fakecni):
    net1, net2 = _gc_nets(fakecni)
    cni = fakecni.cni()
    _populate(fakecni, cni, net1, net2)
    cni.gc_network_list(net1, [])
    assert len(fakecni.calls(command="DEL")) == 8
    for call in fakecni.calls(command="GC"):
        assert stdin_of(call)["cni.dev/valid-attachments"] == []
        assert stdin_of(call)["cni.dev/attachments"] == []


@pytest.mark.parametrize("flag", [True, "true", "True"])
def test_disable_gc_does_nothing(fakecni, flag):
    net1, net2 = _gc_nets(fakecni, disableGC=flag)
    cni = fakecni.cni()
    _populate(fakecni, cni, net1, net2)
    cni.gc_network_list(net1, None)
    assert fakecni.calls() == []
    assert len(cni.cached_attachments()) == 5


@pytest.mark.parametrize("version", ["1.0.0", "0.4.0"])
def test_gc_before_1_1_0_dels_stale_attachments_but_sends_no_gc(fakecni, version):
    net1, net2 = _gc_nets(fakecni, version=version)
    cni = fakecni.cni()
    _populate(fakecni, cni, net1, net2)
    cni.gc_network_list(net1, [GCAttachment("ctr1", "eth0")])
    assert fakecni.calls(command="GC") == []
    assert sorted({c["env"]["CNI_CONTAINERID"] + "/" + c["env"]["CNI_IFNAME"] for c in fakecni.calls(command="DEL")}) \
        == ["ctr1/net1b", "ctr2/eth0", "ctr3/eth0"]


def test_gc_collects_failures_and_carries_on(fakecni):
    net1, net2 = _gc_nets(fakecni)
    cni = fakecni.cni()
    _populate(fakecni, cni, net1, net2)
    fakecni.script("fake-a", "DEL", rules=[{"match": {"CNI_CONTAINERID": "ctr2"}, "stderr": "stuck", "exit": 1}])
    fakecni.script("fake-b", "GC", stdout='{"code":999,"msg":"gc exploded"}', exit=1)
    with pytest.raises(CNIError) as info:
        cni.gc_network_list(net1, [GCAttachment("ctr1", "eth0"), GCAttachment("ctr1", "net1b")])
    text = str(info.value)
    assert "failed to delete stale attachment ctr2 eth0" in text and "stuck" in text
    assert "failed to GC plugin fake-b" in text and "gc exploded" in text
    assert fakecni.cache_file("net1", "ctr2").exists()  # its DEL failed: kept for the next GC
    assert not fakecni.cache_file("net1", "ctr3").exists()
    assert [c[0] for c in fakecni.sequence() if c[1] == "GC"] == ["fake-a", "fake-b"]


def test_gc_excludes_add_on_the_same_network_only(fakecni):
    net1, net2 = _gc_nets(fakecni)
    fakecni.script("fake-a", "GC", sleep=0.8)
    cni = fakecni.cni()
    gc = threading.Thread(target=cni.gc_network_list, args=(net1, []))
    gc.start()
    try:
        deadline = time.monotonic() + 5
        while not fakecni.calls("fake-a", "GC"):
            assert time.monotonic() < deadline, "GC never started"
            time.sleep(0.01)
        cni.add_network_list(net2, fakecni.rt("ctr-other"))  # another network: not blocked
        cni.add_network_list(net1, fakecni.rt("ctr-same"))  # same network: waits for GC
    finally:
        gc.join()
    records = fakecni.records()
    gc_ends = [r["t"] for r in records if r["event"] == "end" and r["name"] == "fake-b"
               and any(s["pid"] == r["pid"] and s["env"]["CNI_COMMAND"] == "GC" for s in fakecni.calls())]
    gc_a_start = fakecni.calls("fake-a", "GC")[0]["t"]
    gc_a_end = next(r["t"] for r in records if r["event"] == "end" and r["pid"] == fakecni.calls("fake-a", "GC")[0]["pid"])
    other = next(c for c in fakecni.calls(command="ADD") if c["env"]["CNI_CONTAINERID"] == "ctr-other")
    same = [c for c in fakecni.calls(command="ADD") if c["env"]["CNI_CONTAINERID"] == "ctr-same"]
    assert gc_a_start <= other["t"] < gc_a_end
    assert same and all(c["t"] >= max(gc_ends) for c in same)


# ---- VERSION / validate ------------------------------------------------------------------

def test_validate_returns_the_enabled_capabilities(fakecni):
    fakecni.install("fake-a", "fake-b")
    net = fakecni.conflist({"type": "fake-a", "capabilities": {"portMappings": True, "bandwidth": False}},
                           {"type": "fake-b", "capabilities": {"dns": True, "portMappings": True}})
    assert fakecni.cni().validate_network_list(net) == ["dns", "portMappings"]
    assert fakecni.sequence() == [("fake-a", "VERSION"), ("fake-b", "VERSION")]


def test_validate_unsupported_version_is_an_error(fakecni):
    fakecni.install("fake-a", "fake-b")
    fakecni.script("fake-b", "VERSION", versions=["0.3.0", "0.3.1"])
    with pytest.raises(CNIError) as info:
        fakecni.cni().validate_network_list(fakecni.conflist("fake-a", "fake-b", version="1.0.0"))
    assert info.value.code == ErrorCode.INCOMPATIBLE_CNI_VERSION
    assert 'plugin fake-b does not support config version "1.0.0"' in str(info.value)
    assert "plugin fake-a" not in str(info.value)


def test_validate_reports_every_bad_plugin(fakecni):
    fakecni.install("fake-a")
    fakecni.script("fake-a", "VERSION", versions=["0.4.0"])
    with pytest.raises(CNIError) as info:
        fakecni.cni().validate_network_list(fakecni.conflist("fake-a", "fake-missing", version="1.1.0"))
    text = str(info.value)
    assert 'plugin fake-a does not support config version "1.1.0"' in text
    assert 'failed to find plugin "fake-missing"' in text


def test_legacy_0_1_0_plugin_supports_only_0_1_0(fakecni):
    fakecni.install("fake-old", legacy=True)
    cni = fakecni.cni()
    assert cni.version_info("fake-old") == PluginInfo("0.1.0", ("0.1.0",))
    assert cni.validate_network_list(fakecni.conflist("fake-old", version="0.1.0")) == []
    assert cni.validate_network_list(fakecni.conflist("fake-old", version=None)) == []  # "" means 0.1.0
    with pytest.raises(CNIError, match='plugin fake-old does not support config version "0.3.1"'):
        cni.validate_network_list(fakecni.conflist("fake-old", version="0.3.1"))


@pytest.mark.parametrize("behaviour, message", [
    ({"stdout": "garbage"}, "decoding version info"),
    ({"stdout": '{"supportedVersions":["1.0.0"]}'}, "missing field cniVersion"),
    ({"stdout": '{"code":7,"msg":"other failure"}', "exit": 1}, "other failure"),
    ({"stdout": '{"code":4,"msg":"unknown CNI_COMMAND: VERSION","details":"x"}', "exit": 1}, "unknown CNI_COMMAND"),
])
def test_version_info_failures(fakecni, behaviour, message):
    fakecni.install("fake-a")
    fakecni.script("fake-a", "VERSION", **behaviour)
    with pytest.raises(CNIError, match=message):
        fakecni.cni().version_info("fake-a")


def test_version_info_of_a_0_2_0_plugin_without_supported_versions(fakecni):
    fakecni.install("fake-a")
    fakecni.script("fake-a", "VERSION", stdout='{"cniVersion":"0.2.0"}')
    assert fakecni.cni().version_info("fake-a").supported_versions == ("0.1.0", "0.2.0")


# ---- single plugin confs -----------------------------------------------------------------

def test_single_conf_add_check_del(fakecni):
    fakecni.install("fake-a")
    raw = b'{"cniVersion":"1.0.0","name":"solo","type":"fake-a","capabilities":{"dns":true},"k":[1]}'
    plugin = plugin_conf_from_bytes(raw)
    cni = fakecni.cni()
    rt = fakecni.rt(capability_args={"dns": {"nameservers": ["1.1.1.1"]}})
    result = cni.add_network(plugin, rt)
    cni.check_network(plugin, rt)
    cni.del_network(plugin, rt)
    assert fakecni.sequence() == [("fake-a", "ADD"), ("fake-a", "CHECK"), ("fake-a", "DEL")]
    add, check, delete = fakecni.calls()
    assert stdin_of(add)["runtimeConfig"] == {"dns": {"nameservers": ["1.1.1.1"]}}
    assert stdin_of(check)["prevResult"] == stdin_of(delete)["prevResult"] == result.to_dict()
    assert cni.validate_network(plugin) == ["dns"]
    assert not fakecni.cache_file("solo").exists()


def test_conf_list_from_bytes_used_by_tests_is_the_parser():
    # guard: the harness builds lists with the library's own parser
    net = conf_list_from_bytes(b'{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"x"}]}')
    assert net.plugin_types == ["x"]
