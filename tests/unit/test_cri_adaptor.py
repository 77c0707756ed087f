"""The CRI adaptor: a pod's network planes through the real exec path (fake plugins).

Attach order (loopback, extra planes in request order, default network last; these ordering
tests run with parallel_attach=false, test_parallel_planes.py covers the default), validation before
any plugin runs, rollback of everything on failure, best-effort and idempotent detach with the
cached config, CHECK on every plane, results from the cache, capability args and CNI_ARGS.

Spec: /work/shared/reference/isulad-network.md ("CRI adaptor flow") and the issue's rules.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from adaptors.cri import CRIAdaptor
from cri_net import config
from cri_net.network import (AttachError, CheckError, DetachError, ExtraNet, InvalidRequestError, NetworkApiConf,
                             NetworkApiError, NetworkNotReadyError)

EXTRA = "network.alpha.kubernetes.io/network"


def conflist(name: str, *plugins: str | dict[str, Any], version: str = "1.0.0") -> str:
    return json.dumps({"cniVersion": version, "name": name,
                       "plugins": [{"type": p} if isinstance(p, str) else p for p in plugins]})


def plugin_error(msg: str, code: int = 11) -> str:
    return json.dumps({"cniVersion": "1.0.0", "code": code, "msg": msg})


class Env:
    """A conf dir, a cache dir, fake plugins and a live netns path for one test."""

    def __init__(self, tmp: Path, fakecni: Any) -> None:
        self.tmp, self.fake = tmp, fakecni
        self.conf_dir = tmp / "net.d"
        self.conf_dir.mkdir()
        self.cache_dir = tmp / "cache"
        self.netns = tmp / "netns" / "pod1"
        self.netns.parent.mkdir()
        self.netns.symlink_to("/proc/self/ns/net")  # a live netns (nsfs) without root
        self.adaptors: list[CRIAdaptor] = []
        fakecni.install("loopback", "main", "pm", "bw", "xa", "xb", "xc")

    def write(self, filename: str, text: str) -> Path:
        path = self.conf_dir / filename
        path.write_text(text, encoding="utf-8")
        return path

    def standard(self, rich: bool = False) -> None:
        """default `net`, extra planes `extra-a`, `extra-b`, `extra-c` (one plugin each).

        `rich`: `net` is main + portmap (portMappings) + bandwidth (bandwidth) and `extra-a` is
        xa + portmap (portMappings and pod annotations)."""
        if rich:
            self.write("10-net.conflist", conflist(
                "net", "main", {"type": "pm", "capabilities": {"portMappings": True}},
                {"type": "bw", "capabilities": {"bandwidth": True}}))
            self.write("20-extra-a.conflist", conflist(
                "extra-a", "xa", {"type": "pm", "capabilities": {"portMappings": True,
                                                                "io.kubernetes.cri.pod-annotations": True}}))
        else:
            self.write("10-net.conflist", conflist("net", "main"))
            self.write("20-extra-a.conflist", conflist("extra-a", "xa"))
        self.write("30-extra-b.conflist", conflist("extra-b", "xb"))
        self.write("40-extra-c.conflist", conflist("extra-c", "xc"))

    def settings(self, **over: Any) -> config.Settings:
        values = {"conf_dir": str(self.conf_dir), "bin_dirs": [str(self.fake.bin)], "cache_dir": str(self.cache_dir),
                  "plugin_timeout": 20}
        values.update(over)
        return config.build(None, values)

    def adaptor(self, loopback: bool = True, **over: Any) -> CRIAdaptor:
        a = CRIAdaptor(self.settings(**over), loopback=loopback)
        self.adaptors.append(a)
        return a

    def conf(self, **kw: Any) -> NetworkApiConf:
        values: dict[str, Any] = {"name": "web", "namespace": "default", "pod_id": "pod1", "pod_uid": "uid-1",
                                  "netns_path": str(self.netns)}
        values.update(kw)
        return NetworkApiConf(**values)

    def runs(self) -> list[tuple[str, str, str]]:
        """(plugin, command, ifname) of every plugin run, in order."""
        return [(c["name"], c["env"]["CNI_COMMAND"], c["env"]["CNI_IFNAME"]) for c in self.fake.calls()]

    def cache_files(self) -> list[str]:
        d = self.cache_dir / "results"
        return sorted(os.listdir(d)) if d.exists() else []


@pytest.fixture
def env(tmp_path, fakecni):
    e = Env(tmp_path, fakecni)
    yield e
    for a in e.adaptors:
        a.close()


def extras(*pairs: tuple[str, str]) -> dict[str, str]:
    return {EXTRA: json.dumps([{"name": n, "interface": i} for n, i in pairs])}


# ==== readiness and the default network =======================================================


def test_not_ready_without_config_and_attach_refused(env):
    a = env.adaptor()
    assert a.ready() is False
    with pytest.raises(NetworkNotReadyError) as exc:
        a.attach(env.conf())
    assert "cni config uninitialized" in str(exc.value)
    assert env.fake.calls() == []
    env.standard()
    a.update()
    assert a.ready() is True


def test_default_is_the_first_valid_list_by_file_name(env):
    env.write("05-broken.conflist", "{")
    env.write("20-b.conflist", conflist("bbb", "xb"))
    env.write("10-a.conflist", conflist("zzz", "main"))
    a = env.adaptor()
    assert a.default_network().name == "zzz"
    results = a.attach(env.conf())
    assert env.runs() == [("loopback", "ADD", "lo"), ("main", "ADD", "eth0")]
    assert [(r.name, r.interface) for r in results] == [("zzz", "eth0")]


def test_settings_default_network_wins_and_not_ready_when_it_is_missing(env):
    env.standard()
    a = env.adaptor(default_network="extra-b")
    assert a.default_network().name == "extra-b"
    a.attach(env.conf())
    assert env.runs() == [("loopback", "ADD", "lo"), ("xb", "ADD", "eth0")]
    b = env.adaptor(default_network="nope")
    assert b.ready() is False
    with pytest.raises(NetworkNotReadyError):
        b.default_network()


def test_cri_adaptor_ignores_native_files(env):
    env.write("00-crinet-x.conflist", conflist("not-native-prefix", "main"))
    env.write("crinet-aaa.conflist", conflist("aaa", "xa"))
    a = env.adaptor()
    assert a.operator.networks.names == ["not-native-prefix"]
    assert a.exist("aaa") is False
    (env.conf_dir / "00-crinet-x.conflist").unlink()
    a.update()
    assert a.ready() is True  # keeps the last good set: crinet-* files never count
    assert a.operator.networks.names == ["not-native-prefix"]


# ==== attach ==================================================================================


def test_attach_order_loopback_extras_in_request_order_then_default(env):
    env.standard()
    a = env.adaptor(parallel_attach=False)
    results = a.attach(env.conf(annotations=extras(("extra-c", "net1"), ("extra-a", "net2"))))
    assert env.runs() == [
        ("loopback", "ADD", "lo"),
        ("xc", "ADD", "net1"),
        ("xa", "ADD", "net2"),
        ("main", "ADD", "eth0"),
    ]
    lo = env.fake.calls()[0]
    assert lo["config"]["name"] == "cni-loopback" and lo["config"]["cniVersion"] == "0.3.1"
    assert lo["env"]["CNI_NETNS"] == str(env.netns) and lo["env"]["CNI_CONTAINERID"] == "pod1"
    assert all(c["env"]["CNI_CONTAINERID"] == "pod1" and c["env"]["CNI_NETNS"] == str(env.netns)
               for c in env.fake.calls())
    assert [(r.name, r.interface) for r in results] == [("net", "eth0"), ("extra-c", "net1"), ("extra-a", "net2")]
    assert env.cache_files() == ["cni-loopback-pod1-lo", "extra-a-pod1-net2", "extra-c-pod1-net1", "net-pod1-eth0"]


def test_without_loopback_the_runtime_owns_lo(env):
    env.standard()
    a = env.adaptor(loopback=False, parallel_attach=False)
    conf = env.conf(annotations=extras(("extra-b", "net1")))
    a.attach(conf)
    a.check(conf)
    a.detach(conf)
    assert env.runs() == [("xb", "ADD", "net1"), ("main", "ADD", "eth0"), ("main", "CHECK", "eth0"),
                          ("xb", "CHECK", "net1"), ("main", "DEL", "eth0"), ("xb", "DEL", "net1")]
    env.fake.clear_log()
    env.fake.script("main", "ADD", exit=1, stdout=plugin_error("nope"))
    with pytest.raises(AttachError) as exc:
        a.attach(conf)
    assert exc.value.network == "net"
    assert env.runs() == [("xb", "ADD", "net1"), ("main", "ADD", "eth0"), ("main", "DEL", "eth0"),
                          ("xb", "DEL", "net1")]


def test_extra_planes_from_the_request_field_and_the_annotation(env):
    env.standard()
    a = env.adaptor(parallel_attach=False)
    a.attach(env.conf(extra_nets=[ExtraNet(name="extra-b", interface="eth9")],
                      annotations=extras(("extra-c", "net1"))))
    assert [r for r in env.runs() if r[1] == "ADD"] == [
        ("loopback", "ADD", "lo"), ("xb", "ADD", "eth9"), ("xc", "ADD", "net1"), ("main", "ADD", "eth0")]


def test_custom_default_interface(env):
    env.standard()
    a = env.adaptor(parallel_attach=False)
    results = a.attach(env.conf(default_interface="net0", extra_nets=[ExtraNet(name="extra-b", interface="eth0")]))
    assert env.runs()[1:3] == [("xb", "ADD", "eth0"), ("main", "ADD", "net0")]
    assert [(r.name, r.interface) for r in results] == [("net", "net0"), ("extra-b", "eth0")]


def test_custom_default_interface_frees_eth0_for_an_annotated_extra_plane(env):
    """With the default network on net0, eth0 is an ordinary free name: the annotation may use it
    (and net0 is the one that is taken)."""
    env.standard()
    a = env.adaptor()
    with pytest.raises(InvalidRequestError):
        a.plan(env.conf(default_interface="net0", annotations=extras(("extra-b", "net0"))))
    planes = a.plan(env.conf(default_interface="net0", annotations=extras(("extra-b", "eth0"))))
    assert [(n.name, p.ifname) for n, p in planes] == [("extra-b", "eth0"), ("net", "net0")]


def test_results_carry_ips_gateways_and_mac_of_each_plane(env):
    env.standard()
    env.fake.script("main", "ADD", rules=[{"match": {"CNI_IFNAME": "eth0"}, "result": {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "cni0", "mac": "00:00:00:00:00:01"},
                       {"name": "eth0", "mac": "0a:58:0a:01:00:05", "sandbox": str(env.netns)}],
        "ips": [{"interface": 1, "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
                {"interface": 1, "address": "fd00::5/64", "gateway": "fd00::1"},
                {"interface": 0, "address": "10.1.0.1/24"}]}}])
    a = env.adaptor()
    results = a.attach(env.conf(annotations=extras(("extra-b", "net1"))))
    default, extra = results
    assert default.model_dump() == {"name": "net", "interface": "eth0", "ips": ["10.1.0.5/24", "fd00::5/64"],
                                    "gateways": ["10.1.0.1", "fd00::1"], "mac": "0a:58:0a:01:00:05"}
    assert (extra.name, extra.interface, extra.ips, extra.gateways) == ("extra-b", "net1", ["10.22.0.5/16"],
                                                                       ["10.22.0.1"])
    env.fake.clear_log()
    planes = [p for _, p in a.plan(env.conf(annotations=extras(("extra-b", "net1"))))]
    assert a.results(env.conf(), planes) == results  # straight from the cache
    assert env.fake.calls() == []


@pytest.mark.parametrize("kw, key", [
    pytest.param({"annotations": extras(("net", "net1"))}, EXTRA, id="names-the-default"),
    pytest.param({"annotations": extras(("nope", "net1"))}, EXTRA, id="unknown-network"),
    pytest.param({"annotations": extras(("extra-a", "net1"), ("extra-b", "net1"))}, EXTRA, id="same-interface"),
    pytest.param({"annotations": extras(("extra-a", "eth0"))}, EXTRA, id="default-interface"),
    pytest.param({"annotations": extras(("extra-a", "lo"))}, EXTRA, id="loopback-interface"),
    pytest.param({"extra_nets": [ExtraNet(name="extra-a", interface="net1")], "annotations": extras(("extra-b", "net1"))},
                 EXTRA, id="field-and-annotation-same-interface"),
    pytest.param({"extra_nets": [ExtraNet(name="extra-a", interface="eth0")]}, EXTRA, id="field-on-eth0"),
    pytest.param({"extra_nets": [ExtraNet(name="extra-a", interface="lo")]}, EXTRA, id="field-on-lo"),
    pytest.param({"extra_nets": [ExtraNet(name="extra-a", interface="a/b")]}, EXTRA, id="field-bad-ifname"),
    pytest.param({"extra_nets": [ExtraNet(name="extra-a", interface="x" * 16)]}, EXTRA, id="field-long-ifname"),
    pytest.param({"extra_nets": [ExtraNet(name="net", interface="net1")]}, EXTRA, id="field-names-default"),
    pytest.param({"annotations": extras(("extra-a", "net1"), ("nope", "net2"))}, EXTRA, id="second-unknown"),
    pytest.param({"annotations": {EXTRA: "[{"}}, EXTRA, id="extra-not-json"),
    pytest.param({"annotations": {"kubernetes.io/ingress-bandwidth": "lots"}}, "kubernetes.io/ingress-bandwidth",
                 id="bad-bandwidth"),
    pytest.param({"annotations": {"cri-net.io/port-mappings": "[{\"hostPort\": 0}]"}}, "cri-net.io/port-mappings",
                 id="bad-port-mapping-annotation"),
    pytest.param({"port_mappings": [{"host_port": 70000, "container_port": 80}]}, "port_mappings[0].host_port",
                 id="bad-cri-port"),
    pytest.param({"annotations": {"extension.network.kubernetes.io/cniargs/x": "novalue"}},
                 "extension.network.kubernetes.io/cniargs/x", id="bad-cniargs"),
    pytest.param({"annotations": {"cri-net.io/ip-ranges": "[]"}}, "cri-net.io/ip-ranges", id="bad-ip-ranges"),
    pytest.param({"pod_cidr": "10.0.0.0/33"}, "pod_cidr", id="bad-pod-cidr"),
    pytest.param({"dns": {"servers": ["not-an-ip"]}}, "dns_config.servers[0]", id="bad-dns"),
    pytest.param({"name": "a;b"}, "metadata.name", id="semicolon-in-pod-name"),
    pytest.param({"netns_path": ""}, "netns_path", id="no-netns"),
    pytest.param({"pod_id": ""}, "pod_id", id="no-pod-id"),
    pytest.param({"pod_id": "a/b"}, "pod_id", id="bad-pod-id"),
    pytest.param({"default_interface": "a b"}, "default_interface", id="bad-default-interface"),
])
def test_bad_requests_are_rejected_before_any_plugin_runs(env, kw, key):
    env.standard()
    a = env.adaptor()
    with pytest.raises(InvalidRequestError) as exc:
        a.attach(env.conf(**kw))
    assert exc.value.key == key or exc.value.key.startswith(key + "["), str(exc.value)
    assert key in str(exc.value)
    assert env.fake.calls() == []
    assert env.cache_files() == []


def test_rejection_messages_say_what_is_wrong(env):
    env.standard()
    a = env.adaptor()
    for kw, words in [({"extra_nets": [ExtraNet(name="net", interface="net1")]}, "default network"),
                      ({"extra_nets": [ExtraNet(name="nope", interface="net1")]}, "unknown network 'nope'"),
                      ({"extra_nets": [ExtraNet(name="extra-a", interface="n1"), ExtraNet(name="extra-b", interface="n1")]},
                       "already used")]:
        with pytest.raises(InvalidRequestError) as exc:
            a.plan(env.conf(**kw))
        assert words in exc.value.reason
    assert env.fake.calls() == []


# ==== rollback ================================================================================


def test_default_network_failure_rolls_back_everything(env):
    env.standard(rich=True)
    env.fake.script("bw", "ADD", exit=1, stdout=plugin_error("tc said no"))
    a = env.adaptor(parallel_attach=False)
    with pytest.raises(AttachError) as exc:
        a.attach(env.conf(annotations=extras(("extra-a", "net1"), ("extra-b", "net2"))))
    err = exc.value
    assert (err.network, err.plugin, err.ifname) == ("net", "bw", "eth0")
    assert "'net'" in str(err) and "bw" in str(err) and "tc said no" in str(err)
    assert err.rollback_failures == []
    adds = [r for r in env.runs() if r[1] == "ADD"]
    assert adds == [("loopback", "ADD", "lo"), ("xa", "ADD", "net1"), ("pm", "ADD", "net1"), ("xb", "ADD", "net2"),
                    ("main", "ADD", "eth0"), ("pm", "ADD", "eth0"), ("bw", "ADD", "eth0")]
    dels = [r for r in env.runs() if r[1] == "DEL"]
    assert dels == [("bw", "DEL", "eth0"), ("pm", "DEL", "eth0"), ("main", "DEL", "eth0"),
                    ("xb", "DEL", "net2"), ("pm", "DEL", "net1"), ("xa", "DEL", "net1"),
                    ("loopback", "DEL", "lo")]
    assert env.runs()[-len(dels):] == dels  # nothing ran after the rollback started
    assert env.cache_files() == []


def test_a_second_attach_of_a_live_plane_is_refused_and_touches_nothing(env):
    """The rollback of a failed ADD must only undo what that request did: attaching a plane
    that is attached already is refused before any plugin runs (issue 10)."""
    env.standard()
    a = env.adaptor()
    a.attach(env.conf(annotations=extras(("extra-a", "net1"))))
    cached = env.cache_files()
    env.fake.clear_log()
    for again in (env.conf(), env.conf(annotations=extras(("extra-b", "net1")))):
        with pytest.raises(InvalidRequestError) as exc:
            a.attach(again)
        assert "already attached to network" in str(exc.value)
        assert env.fake.calls() == []
    assert env.cache_files() == cached
    # a plane on a new interface is fine, and neither re-attaches nor rolls back loopback
    env.fake.script("xb", "ADD", exit=1, stdout=plugin_error("no"))
    with pytest.raises(AttachError):
        a.attach(env.conf(default_interface="eth9", annotations=extras(("extra-b", "net2"))))
    assert ("loopback", "DEL", "lo") not in env.runs() and ("loopback", "ADD", "lo") not in env.runs()
    assert env.cache_files() == cached


def test_extra_plane_failure_rolls_back_and_the_default_never_runs(env):
    env.standard()
    env.fake.script("xb", "ADD", exit=1, stdout=plugin_error("no vlan"))
    a = env.adaptor(parallel_attach=False)
    with pytest.raises(AttachError) as exc:
        a.attach(env.conf(annotations=extras(("extra-a", "net1"), ("extra-b", "net2"), ("extra-c", "net3"))))
    assert (exc.value.network, exc.value.plugin, exc.value.ifname) == ("extra-b", "xb", "net2")
    assert env.runs() == [("loopback", "ADD", "lo"), ("xa", "ADD", "net1"),
                          ("xb", "ADD", "net2"), ("xb", "DEL", "net2"),
                          ("xa", "DEL", "net1"), ("loopback", "DEL", "lo")]
    assert env.cache_files() == []


def test_loopback_failure_is_an_attach_error_naming_loopback(env):
    env.standard()
    env.fake.script("loopback", "ADD", exit=1, stdout=plugin_error("lo down"))
    a = env.adaptor()
    with pytest.raises(AttachError) as exc:
        a.attach(env.conf())
    assert (exc.value.network, exc.value.plugin, exc.value.ifname) == ("cni-loopback", "loopback", "lo")
    assert env.runs() == [("loopback", "ADD", "lo"), ("loopback", "DEL", "lo")]


def test_missing_plugin_binary_is_named_and_rolled_back(env):
    env.standard()
    env.write("30-extra-b.conflist", conflist("extra-b", "not-installed"))
    a = env.adaptor()
    with pytest.raises(AttachError) as exc:
        a.attach(env.conf(annotations=extras(("extra-a", "net1"), ("extra-b", "net2"))))
    assert (exc.value.network, exc.value.plugin) == ("extra-b", "not-installed")
    assert env.runs()[-2:] == [("xa", "DEL", "net1"), ("loopback", "DEL", "lo")]
    assert env.cache_files() == []


def test_rollback_failures_are_reported_and_do_not_stop_the_rollback(env):
    env.standard()
    env.fake.script("main", "ADD", exit=1, stdout=plugin_error("add failed"))
    env.fake.script("xa", "DEL", exit=1, stdout=plugin_error("xa del failed"))
    a = env.adaptor()
    with pytest.raises(AttachError) as exc:
        a.attach(env.conf(annotations=extras(("extra-a", "net1"))))
    assert exc.value.network == "net" and exc.value.plugin == "main"
    assert len(exc.value.rollback_failures) == 1 and "extra-a" in exc.value.rollback_failures[0]
    assert "rollback also failed" in str(exc.value)
    assert env.runs()[-1] == ("loopback", "DEL", "lo")  # loopback still released


# ==== capability args and CNI_ARGS ============================================================


def test_capability_args_go_only_to_the_default_networks_declaring_plugins(env):
    env.standard(rich=True)
    a = env.adaptor()
    conf = env.conf(
        annotations={**extras(("extra-a", "net1")), "kubernetes.io/ingress-bandwidth": "10M",
                     "kubernetes.io/egress-bandwidth": "1M"},
        port_mappings=[{"host_port": 8080, "container_port": 80, "protocol": 1, "host_ip": "127.0.0.1"},
                       {"host_port": 0, "container_port": 9090}],
        pod_cidr="10.88.0.0/16", dns={"servers": ["10.96.0.10"], "searches": ["svc.cluster.local"]})
    a.attach(conf)
    by = {(c["name"], c["env"]["CNI_IFNAME"]): c["config"] for c in env.fake.calls(command="ADD")}
    pm_eth0 = by[("pm", "eth0")]["runtimeConfig"]
    assert pm_eth0 == {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "udp",
                                         "hostIP": "127.0.0.1"}]}
    assert by[("bw", "eth0")]["runtimeConfig"] == {"bandwidth": {
        "ingressRate": 10_000_000, "ingressBurst": 2**32 - 1, "egressRate": 1_000_000, "egressBurst": 2**32 - 1}}
    assert "runtimeConfig" not in by[("main", "eth0")]
    assert "runtimeConfig" not in by[("xa", "net1")]
    # the extra plane's portmap declares portMappings too, but gets only the pod annotations
    assert by[("pm", "net1")]["runtimeConfig"] == {"io.kubernetes.cri.pod-annotations": conf.annotations}
    assert "runtimeConfig" not in by[("loopback", "lo")]


def test_ip_ranges_and_dns_reach_declaring_default_plugins(env):
    env.write("10-net.conflist", conflist("net", {"type": "main", "capabilities": {"ipRanges": True, "dns": True}}))
    a = env.adaptor()
    a.attach(env.conf(pod_cidr="10.88.0.0/16,fd00::/64", dns={"servers": ["10.96.0.10"], "options": ["ndots:5"]}))
    (main,) = env.fake.calls(name="main")
    assert main["config"]["runtimeConfig"] == {
        "ipRanges": [[{"subnet": "10.88.0.0/16"}], [{"subnet": "fd00::/64"}]],
        "dns": {"servers": ["10.96.0.10"], "options": ["ndots:5"]}}


def test_cni_args_order_and_extensions(env):
    env.standard()
    a = env.adaptor()
    a.attach(env.conf(annotations={
        **extras(("extra-b", "net1")),
        "extension.network.kubernetes.io/cniargs/zz": "Z=26",
        "extension.network.kubernetes.io/cniargs/aa": "A=1",
        "extension.network.kubernetes.io/cniargs/dup": "A=2",
        "extension.network.kubernetes.io/cniargs/spoof": "K8S_POD_NAME=evil",
        "extension.network.kubernetes.io/cni": "multi"},
        args={"IP": "10.1.0.9", "K8S_POD_NAMESPACE": "evil"}))
    expected = ("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=pod1;"
                "K8S_POD_UID=uid-1;CNI_MUTLINET_EXTENSION=multi;A=1;Z=26;IP=10.1.0.9")
    for call in env.fake.calls(command="ADD"):
        if call["name"] != "loopback":
            assert call["env"]["CNI_ARGS"] == expected, call["name"]


def test_direct_capabilities_are_merged_with_the_annotations(env):
    env.standard(rich=True)
    a = env.adaptor()
    conf = env.conf(port_mappings=[{"host_port": 8080, "container_port": 80}],
                    capabilities={"portMappings": [{"hostPort": 9000, "containerPort": 90, "protocol": "tcp"}],
                                  "bandwidth": {"ingressRate": 5000, "ingressBurst": 7}},
                    annotations={"kubernetes.io/ingress-bandwidth": "10M"})
    a.attach(conf)
    (pm,) = env.fake.calls(name="pm", command="ADD")
    ports = sorted(m["hostPort"] for m in pm["config"]["runtimeConfig"]["portMappings"])
    assert ports == [8080, 9000]
    (bw,) = env.fake.calls(name="bw", command="ADD")
    assert bw["config"]["runtimeConfig"]["bandwidth"] == {"ingressRate": 5000, "ingressBurst": 7}


# ==== detach ==================================================================================


def test_detach_reverse_order_default_first_loopback_last(env):
    env.standard()
    a = env.adaptor(parallel_attach=False)
    conf = env.conf(annotations=extras(("extra-a", "net1"), ("extra-b", "net2"), ("extra-c", "net3")))
    a.attach(conf)
    env.fake.clear_log()
    a.detach(conf)
    assert env.runs() == [("main", "DEL", "eth0"), ("xc", "DEL", "net3"), ("xb", "DEL", "net2"),
                          ("xa", "DEL", "net1"), ("loopback", "DEL", "lo")]
    assert env.cache_files() == []


def test_detach_order_is_the_reverse_of_the_request_order_not_of_interface_names(env):
    """Attach ran extra-b on `zz1` before extra-c on `aa1`; detach must undo aa1 first."""
    env.standard()
    a = env.adaptor(parallel_attach=False)
    conf = env.conf(annotations=extras(("extra-b", "zz1"), ("extra-c", "aa1")))
    a.attach(conf)
    assert [r[2] for r in env.runs()] == ["lo", "zz1", "aa1", "eth0"]
    env.fake.clear_log()
    a.detach(conf)
    assert [r[2] for r in env.runs()] == ["eth0", "aa1", "zz1", "lo"]


def test_detach_is_best_effort_and_reports_every_failure(env):
    env.standard()
    a = env.adaptor(parallel_attach=False)
    conf = env.conf(annotations=extras(("extra-a", "net1"), ("extra-b", "net2"), ("extra-c", "net3")))
    a.attach(conf)
    env.fake.clear_log()
    env.fake.script("xc", "DEL", exit=1, stdout=plugin_error("xc stuck"))
    env.fake.script("main", "DEL", exit=1, stdout=plugin_error("main stuck"))
    with pytest.raises(DetachError) as exc:
        a.detach(conf)
    failed = [(n, i) for n, i, _ in exc.value.failures]
    assert failed == [("net", "eth0"), ("extra-c", "net3")]
    assert "xc stuck" in str(exc.value) and "main stuck" in str(exc.value)
    # every other plane was still detached, loopback last
    assert env.runs() == [("main", "DEL", "eth0"), ("xc", "DEL", "net3"), ("xb", "DEL", "net2"),
                          ("xa", "DEL", "net1"), ("loopback", "DEL", "lo")]
    assert env.cache_files() == ["extra-c-pod1-net3", "net-pod1-eth0"]  # kept for a retry
    env.fake.script("xc", "DEL")
    env.fake.script("main", "DEL")
    a.detach(conf)
    assert env.cache_files() == []


def test_a_failing_loopback_does_not_block_the_other_planes(env):
    env.standard()
    a = env.adaptor()
    conf = env.conf(annotations=extras(("extra-b", "net1")))
    a.attach(conf)
    env.fake.clear_log()
    env.fake.script("loopback", "DEL", exit=1, stdout=plugin_error("lo"))
    with pytest.raises(DetachError) as exc:
        a.detach(conf)
    assert [(n, i) for n, i, _ in exc.value.failures] == [("cni-loopback", "lo")]
    assert ("xb", "DEL", "net1") in env.runs() and ("main", "DEL", "eth0") in env.runs()


def test_detach_twice_succeeds(env):
    env.standard()
    a = env.adaptor()
    conf = env.conf(annotations=extras(("extra-b", "net1")))
    a.attach(conf)
    a.detach(conf)
    a.detach(conf)
    assert env.cache_files() == []


def test_detach_of_a_pod_that_was_never_attached_succeeds(env):
    env.standard()
    a = env.adaptor()
    a.detach(env.conf(pod_id="never"))


def test_detach_with_a_vanished_netns_sends_empty_cni_netns(env):
    env.standard()
    a = env.adaptor(parallel_attach=False)
    conf = env.conf(annotations=extras(("extra-b", "net1")))
    a.attach(conf)
    env.fake.clear_log()
    env.netns.unlink()
    a.detach(conf)
    calls = env.fake.calls(command="DEL")
    assert [c["name"] for c in calls] == ["main", "xb", "loopback"]
    assert all(c["env"]["CNI_NETNS"] == "" for c in calls)
    assert env.cache_files() == []


def test_detach_uses_the_config_and_args_cached_at_attach(env):
    env.write("10-net.conflist", conflist("net", {"type": "main", "marker": "original"},
                                          {"type": "pm", "capabilities": {"portMappings": True}}))
    env.write("20-extra-b.conflist", conflist("extra-b", {"type": "xb", "marker": "original"}))
    a = env.adaptor(parallel_attach=False)
    conf = env.conf(annotations=extras(("extra-b", "net1")), port_mappings=[{"host_port": 81, "container_port": 80}])
    a.attach(conf)
    args_at_attach = env.fake.calls(name="main")[0]["env"]["CNI_ARGS"]
    added = {c["name"]: c["stdin"] for c in env.fake.calls(command="ADD")}
    env.write("10-net.conflist", conflist("net", {"type": "main", "marker": "edited"}, "xc"))
    env.write("20-extra-b.conflist", conflist("extra-b", {"type": "xb", "marker": "edited"}))
    a.update()
    env.fake.clear_log()
    a.detach(env.conf(name="renamed", annotations=extras(("extra-b", "net1"))))
    dels = env.fake.calls(command="DEL")
    assert [c["name"] for c in dels] == ["pm", "main", "xb", "loopback"]
    for c in dels:
        assert c["config"].get("marker", "original") == "original"
        if c["name"] != "loopback":
            assert c["env"]["CNI_ARGS"] == args_at_attach
    pm = dels[0]["config"]
    assert pm["runtimeConfig"] == {"portMappings": [{"hostPort": 81, "containerPort": 80, "protocol": "tcp"}]}
    main_del = json.loads(dels[1]["stdin"])
    main_add = json.loads(added["main"])
    main_del.pop("prevResult")
    assert main_del == main_add  # the original config, byte for byte in content


def test_detach_finds_cached_planes_the_request_no_longer_names(env):
    env.standard()
    a = env.adaptor()
    a.attach(env.conf(annotations=extras(("extra-a", "net1"), ("extra-b", "net2"))))
    (env.conf_dir / "30-extra-b.conflist").unlink()
    (env.conf_dir / "10-net.conflist").unlink()
    a.update()
    env.fake.clear_log()
    a.detach(env.conf())  # no annotation any more, default network file gone
    assert {(n, i) for n, _, i in env.runs()} >= {("main", "eth0"), ("xa", "net1"), ("xb", "net2"), ("loopback", "lo")}
    assert env.runs()[-1] == ("loopback", "DEL", "lo")
    assert env.cache_files() == []


# ==== check ===================================================================================


def test_check_runs_check_on_every_plane_but_loopback(env):
    env.standard()
    a = env.adaptor()
    conf = env.conf(annotations=extras(("extra-a", "net1"), ("extra-b", "net2")))
    attached = a.attach(conf)
    env.fake.clear_log()
    results = a.check(conf)
    checks = env.fake.calls(command="CHECK")
    assert {(c["name"], c["env"]["CNI_IFNAME"]) for c in checks} == {("main", "eth0"), ("xa", "net1"), ("xb", "net2")}
    assert all(c["name"] != "loopback" for c in env.fake.calls())
    assert all("prevResult" in c["config"] for c in checks)
    assert results[0].interface == "eth0"
    assert sorted(r.model_dump_json() for r in results) == sorted(r.model_dump_json() for r in attached)


def test_check_failure_names_network_and_plugin(env):
    env.standard()
    a = env.adaptor()
    conf = env.conf(annotations=extras(("extra-b", "net1")))
    a.attach(conf)
    env.fake.script("xb", "CHECK", exit=1, stdout=plugin_error("address gone"))
    with pytest.raises(CheckError) as exc:
        a.check(conf)
    assert (exc.value.network, exc.value.plugin, exc.value.ifname) == ("extra-b", "xb", "net1")
    assert "address gone" in str(exc.value)


def test_check_of_an_unattached_pod_fails(env):
    env.standard()
    a = env.adaptor()
    with pytest.raises(CheckError) as exc:
        a.check(env.conf(pod_id="ghost"))
    assert exc.value.network == "net"
    assert all(c["env"]["CNI_COMMAND"] != "CHECK" for c in env.fake.calls())


# ==== configs =================================================================================


def test_conf_list_inspect_exist_and_no_create_or_rm(env):
    env.standard(rich=True)
    a = env.adaptor()
    rows = a.conf_list()
    assert [(r.name, r.version, r.plugins) for r in rows] == [
        ("net", "1.0.0", ["main", "pm", "bw"]), ("extra-a", "1.0.0", ["xa", "pm"]),
        ("extra-b", "1.0.0", ["xb"]), ("extra-c", "1.0.0", ["xc"])]
    assert rows[0].file == str(env.conf_dir / "10-net.conflist")
    assert [r.name for r in a.conf_list({"name": ["extra-.*"]})] == ["extra-a", "extra-b", "extra-c"]
    assert [r.name for r in a.conf_list({"plugin": ["pm"]})] == ["net", "extra-a"]
    assert [r.name for r in a.conf_list({"name": ["net", "extra-b"], "plugin": ["xb"]})] == ["extra-b"]
    with pytest.raises(InvalidRequestError):
        a.conf_list({"driver": ["bridge"]})
    assert a.conf_inspect("extra-b") == (env.conf_dir / "30-extra-b.conflist").read_text()
    with pytest.raises(NetworkApiError):
        a.conf_inspect("nope")
    assert a.exist("net") and not a.exist("nope")
    from cri_net.network import NetworkCreateRequest
    with pytest.raises(NetworkApiError):
        a.conf_create(NetworkCreateRequest(name="x"))
    with pytest.raises(NetworkApiError):
        a.conf_rm("net")
    assert (env.conf_dir / "10-net.conflist").exists()
    assert env.fake.calls() == []


def test_detach_after_the_default_network_changed_dels_only_what_holds_the_interface(env: Env) -> None:
    """eth0 was attached on `net`; the conf dir now makes `extra-b` the default. Detach must DEL
    `net` on eth0 (cached) and must not DEL `extra-b` there: that DEL would delete eth0 before
    `net` could tear down its own host-side state."""
    env.standard()
    a = env.adaptor()
    a.attach(env.conf())
    env.fake.clear_log()
    (env.conf_dir / "10-net.conflist").unlink()
    env.write("05-new-default.conflist", conflist("new-default", "xb"))
    a.update()
    assert a.default_network().name == "new-default"
    a.detach(env.conf())
    assert env.runs() == [("main", "DEL", "eth0"), ("loopback", "DEL", "lo")]
    assert env.cache_files() == []


def test_a_leftover_file_where_the_netns_was_is_a_gone_netns(env: Env, tmp_path: Path) -> None:
    """An unmounted netns leaves an ordinary file behind; plugins fail on it ("unknown FS
    magic"), so DEL must get no netns at all, as when the file is gone."""
    env.standard()
    a = env.adaptor()
    a.attach(env.conf())
    env.fake.clear_log()
    env.netns.unlink()
    env.netns.touch()  # what `umount` leaves behind
    a.detach(env.conf())
    assert {c["env"]["CNI_NETNS"] for c in env.fake.calls()} == {""}
    assert env.cache_files() == []
