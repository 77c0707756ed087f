"""Multus's `k8s.v1.cni.cncf.io/networks`: the parser (table-driven and property-based),
resolution against the conf dir, and how each per-attachment field reaches the plugins
(through the real exec path, fake plugins). The netns and routes are exercised with real
plugins in integration/test_multus_real.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adaptors.cri import annotations as ann
from adaptors.cri import default_route
from adaptors.cri.multus import KEY, parse_multus_networks
from badinput_strategies import props
from cri_net.network import InvalidRequestError, NetworkApiError
from cri_net.network.models import NetworkApiResult
from cri_net.network.results import network_status
from test_cri_adaptor import conflist, env  # noqa: F401 - the fixture

ISULAD = "network.alpha.kubernetes.io/network"


def parse(value: str, **kw: Any) -> list[tuple[str, str, str]]:
    return [(s.namespace, s.name, s.interface) for s in parse_multus_networks({KEY: value}, **kw)]


def js(*entries: dict[str, Any]) -> str:
    return json.dumps(list(entries))


# ==== parser: accepted ========================================================================


@pytest.mark.parametrize("value, expected", [
    ("net-a", [("", "net-a", "net1")]),
    ("net-a@eth5", [("", "net-a", "eth5")]),
    ("team/net-b", [("team", "net-b", "net1")]),
    (" a , team/b@x1 ,c ", [("", "a", "net1"), ("team", "b", "x1"), ("", "c", "net3")]),
    ("a @ x1", [("", "a", "x1")]),  # whitespace around each part, as Multus trims it
    ("a,b@net1", None),  # b takes net1 explicitly, so a's default net1 clashes: refused below
    ("", []),
    ("   ", []),
    (js({"name": "a"}, {"name": "b", "interface": "eth9"}, {"name": "c", "namespace": "ns1"}),
     [("", "a", "net1"), ("", "b", "eth9"), ("ns1", "c", "net3")]),
    (js({"name": "a", "interfaceRequest": "old1"}), [("", "a", "old1")]),  # Multus's pre-3.2 spelling
    (js({"name": "a", "interface": "x", "interfaceRequest": "x"}), [("", "a", "x")]),
    (js({"name": "a", "namespace": ""}), [("", "a", "net1")]),
    ("[]", []),
])
def test_parse_forms(value, expected):
    if expected is None:
        with pytest.raises(ann.AnnotationError) as exc:
            parse(value)
        assert exc.value.key == f"{KEY}[0].interface"
        return
    assert parse(value) == expected


def test_parse_json_fields_are_normalised():
    (sel,) = parse_multus_networks({KEY: js({
        "name": "extra", "interface": "net1", "ips": ["10.9.8.7/24", "fd00:9::7/64", "10.9.9.9"],
        "mac": "02-AA-bb-CC-dd-EE", "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "UDP"}],
        "bandwidth": {"ingressRate": 1000000, "egressRate": 2000000, "egressBurst": 4000},
        "cni-args": {"foo": "bar", "n": 3, "flag": True}, "default-route": ["10.9.8.1", "fd00:9::1"]})})
    assert sel.ips == ("10.9.8.7/24", "fd00:9::7/64", "10.9.9.9")
    assert sel.mac == "02:aa:bb:cc:dd:ee"
    assert [pm.model_dump() for pm in sel.port_mappings] == [{"hostPort": 8080, "containerPort": 80,
                                                             "protocol": "udp"}]
    assert sel.bandwidth is not None and sel.bandwidth.model_dump() == {
        "ingressRate": 1000000, "ingressBurst": 2**32 - 1, "egressRate": 2000000, "egressBurst": 4000}
    assert sel.cni_args == (("foo", "bar"), ("n", "3"), ("flag", "true"))
    assert sel.default_route == ("10.9.8.1", "fd00:9::1")


# ==== parser: refused, naming annotation, entry and field =====================================


@pytest.mark.parametrize("value, key, words", [
    ("a,,b", f"{KEY}[1]", "empty entry"),
    ("a,", f"{KEY}[1]", "empty entry"),
    ("x/y/z", f"{KEY}[0]", "more than one '/'"),
    ("a@b@c", f"{KEY}[0]", "more than one '@'"),
    ("Bad Name", f"{KEY}[0].name", "not a network name"),
    ("NS/a", f"{KEY}[0].namespace", "namespace name"),
    ("a@eth0", f"{KEY}[0].interface", "reserved"),
    ("a@lo", f"{KEY}[0].interface", "reserved"),
    ("a@x1,b@x1", f"{KEY}[1].interface", "already used by entry 0"),
    ("a@" + "x" * 16, f"{KEY}[0].interface", "longer than 15"),
    ("a@..", f"{KEY}[0].interface", "not a valid interface name"),
    ("@x", f"{KEY}[0].name", "empty"),
    ('{"name": "a"}', KEY, "JSON array"),
    ("[1]", f"{KEY}[0]", "must be an object"),
    ("[{}]", f"{KEY}[0].name", "missing"),
    (js({"name": 5}), f"{KEY}[0].name", "must be a string"),
    (js({"name": "a", "nmae": "b"}), f"{KEY}[0].nmae", "unknown field"),
    (js({"name": "a", "deviceID": "0000:00:01.0"}), f"{KEY}[0].deviceID", "not supported"),
    (js({"name": "a", "infiniband-guid": "c2:11:22:33:44:55:66:77"}), f"{KEY}[0].infiniband-guid", "not supported"),
    (js({"name": "a", "ipam-claim-reference": "c"}), f"{KEY}[0].ipam-claim-reference", "not supported"),
    (js({"name": "a", "interface": "x", "interfaceRequest": "y"}), f"{KEY}[0].interfaceRequest", "differs"),
    (js({"name": "a", "ips": "10.0.0.1/24"}), f"{KEY}[0].ips", "array"),
    (js({"name": "a", "ips": ["10.0.0.300/24"]}), f"{KEY}[0].ips[0]", "not an IP address"),
    (js({"name": "a", "ips": ["10.0.0.1/24", "10.0.0.1/16"]}), f"{KEY}[0].ips[1]", "repeats"),
    (js({"name": "a", "ips": ["127.0.0.5/8"]}), f"{KEY}[0].ips[0]", "loopback"),
    (js({"name": "a", "ips": ["10.1.2.255/24"]}), f"{KEY}[0].ips[0]", "broadcast"),
    (js({"name": "a", "ips": ["fe80::1%eth0/64"]}), f"{KEY}[0].ips[0]", "not an IP address"),
    (js({"name": "a", "mac": "02:aa:bb:cc:dd"}), f"{KEY}[0].mac", "not an Ethernet MAC"),
    (js({"name": "a", "mac": "01:00:5e:00:00:01"}), f"{KEY}[0].mac", "multicast"),
    (js({"name": "a", "mac": "00:00:00:00:00:00"}), f"{KEY}[0].mac", "all zeros"),
    (js({"name": "a", "mac": "02:aa:bb-cc:dd:ee"}), f"{KEY}[0].mac", "not an Ethernet MAC"),
    (js({"name": "a", "portMappings": {}}), f"{KEY}[0]", "portMappings must be an array"),
    (js({"name": "a", "portMappings": [{"hostPort": 0, "containerPort": 80}]}), f"{KEY}[0]", "out of range"),
    (js({"name": "a", "portMappings": [{"hostPort": 80, "containerPort": 80}, {"hostPort": 80, "containerPort": 81}]}),
     f"{KEY}[0]", "duplicates"),
    (js({"name": "a", "bandwidth": {"ingressRate": 10}}), f"{KEY}[0].bandwidth.ingressRate", "out of range"),
    (js({"name": "a", "bandwidth": {"ingressBurst": 10}}), f"{KEY}[0].bandwidth.ingressRate", "out of range"),
    (js({"name": "a", "bandwidth": {}}), f"{KEY}[0].bandwidth", "sets no rate"),
    (js({"name": "a", "bandwidth": {"ingressRate": 1.5e6}}), f"{KEY}[0].bandwidth.ingressRate", "integer"),
    (js({"name": "a", "bandwidth": {"rate": 1}}), f"{KEY}[0].bandwidth.rate", "unknown field"),
    (js({"name": "a", "cni-args": []}), f"{KEY}[0].cni-args", "object"),
    (js({"name": "a", "cni-args": {"K8S_POD_NAME": "x"}}), f"{KEY}[0].cni-args.K8S_POD_NAME", "cannot be overridden"),
    (js({"name": "a", "cni-args": {"IP": "10.0.0.1/24"}}), f"{KEY}[0].cni-args.IP", "cannot be overridden"),
    (js({"name": "a", "cni-args": {"a": "x;y"}}), f"{KEY}[0].cni-args.a", "CNI_ARGS cannot carry"),
    (js({"name": "a", "cni-args": {"a=b": "x"}}), f"{KEY}[0].cni-args.a=b", "CNI_ARGS cannot carry"),
    (js({"name": "a", "cni-args": {"a": None}}), f"{KEY}[0].cni-args.a", "string, integer or boolean"),
    (js({"name": "a", "cni-args": {"": "x"}}), f"{KEY}[0].cni-args", "empty key"),
    (js({"name": "a", "default-route": "10.0.0.1"}), f"{KEY}[0].default-route", "array"),
    (js({"name": "a", "default-route": []}), f"{KEY}[0].default-route", "empty"),
    (js({"name": "a", "default-route": ["10.0.0.0/24"]}), f"{KEY}[0].default-route[0]", "not an IP address"),
    (js({"name": "a", "default-route": ["10.0.0.1", "10.0.0.2"]}), f"{KEY}[0].default-route[1]", "ECMP"),
    (js({"name": "a", "default-route": ["10.0.0.1"]}, {"name": "b", "default-route": ["10.1.0.1"]}),
     f"{KEY}[1].default-route", "entry 0 sets the IPv4 default route"),
    ('[{"name": "a", "name": "b"}]', KEY, "duplicate object key"),
    ('[{"name": "a", "ips": [NaN]}]', KEY, "invalid JSON"),
])
def test_parse_refuses(value, key, words):
    with pytest.raises(ann.AnnotationError) as exc:
        parse_multus_networks({KEY: value})
    assert exc.value.key == key
    assert words in exc.value.reason


def test_both_annotations_refused_naming_both_keys():
    with pytest.raises(ann.AnnotationError) as exc:
        parse_multus_networks({KEY: "a", ISULAD: "[]"})
    assert KEY in str(exc.value) and ISULAD in str(exc.value)


def test_too_many_entries_and_oversized_value():
    with pytest.raises(ann.AnnotationError, match="at most 32"):
        parse(",".join(f"n{i}" for i in range(33)))
    with pytest.raises(ann.AnnotationError, match="limit"):
        parse("a" * (64 * 1024 + 1))


# ==== parser: properties =====================================================================

label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True)
netname = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,10}", fullmatch=True)
ifname = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True).filter(lambda s: s not in ("lo", "eth0")
                                                                    and not s.startswith("net"))
space = st.sampled_from(["", " ", "\t", "  "])


@st.composite
def text_items(draw: Any) -> tuple[str, tuple[str, str, str | None]]:
    ns = draw(st.none() | label)
    name = draw(netname)
    ifn = draw(st.none() | ifname)
    text = (f"{ns}/" if ns else "") + name + (f"@{draw(space)}{ifn}" if ifn else "")
    return draw(space) + text + draw(space), (ns or "", name, ifn)


@props(ci=100, full=1000)
@given(st.lists(text_items(), min_size=1, max_size=6))
def test_text_form_round_trips(items):
    ifnames = [i for _, (_, _, i) in items if i]
    value = ",".join(text for text, _ in items)
    if len(set(ifnames)) != len(ifnames):
        with pytest.raises(ann.AnnotationError) as exc:
            parse(value)
        assert exc.value.key.startswith(f"{KEY}[") and exc.value.key.endswith("].interface")
        return
    got = parse(value)
    assert got == [(ns, name, ifn or f"net{i + 1}") for i, (_, (ns, name, ifn)) in enumerate(items)]


@props(ci=100, full=1000)
@given(st.lists(st.fixed_dictionaries({"name": netname}, optional={"namespace": label, "interface": ifname}),
                max_size=6))
def test_json_and_text_forms_agree(entries):
    ifnames = [e["interface"] for e in entries if "interface" in e]
    if len(set(ifnames)) != len(ifnames):
        return
    text = ",".join((f"{e['namespace']}/" if "namespace" in e else "") + e["name"]
                    + (f"@{e['interface']}" if "interface" in e else "") for e in entries)
    assert parse(js(*entries)) == (parse(text) if entries else [])


# ==== resolution and capability routing (real exec path, fake plugins) =========================


def multus_env(env: Any) -> None:
    """default `net` (main + portmap); `ext-cap`: xs declares ips, xt mac, pm portMappings and
    bw bandwidth; `ext-args` declares nothing; `shared` lets team-a and team-b select it."""
    env.fake.install("xs", "xt", "pm", "bw")
    env.write("10-net.conflist", conflist("net", "main", {"type": "pm", "capabilities": {"portMappings": True}}))
    env.write("20-ext-cap.conflist", conflist(
        "ext-cap", {"type": "xs", "capabilities": {"ips": True}}, {"type": "xt", "capabilities": {"mac": True}},
        {"type": "pm", "capabilities": {"portMappings": True}}, {"type": "bw", "capabilities": {"bandwidth": True}}))
    env.write("30-ext-args.conflist", conflist("ext-args", "xa"))
    shared = json.loads(conflist("shared", "xb"))
    shared["criNet"] = {"namespaces": ["team-a", "team-b"]}
    env.write("40-shared.conflist", json.dumps(shared))
    anyns = json.loads(conflist("anyns", "xc"))
    anyns["criNet"] = {"namespaces": ["*"]}
    env.write("50-anyns.conflist", json.dumps(anyns))


def adds(env: Any) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["name"], c["env"]["CNI_IFNAME"]): c for c in env.fake.calls(command="ADD")}


def cni_args(call: dict[str, Any]) -> list[tuple[str, str]]:
    return [tuple(kv.split("=", 1)) for kv in call["env"]["CNI_ARGS"].split(";")]  # type: ignore[misc]


def test_ips_and_mac_go_as_capabilities_where_declared_else_as_cni_args(env):
    multus_env(env)
    a = env.adaptor()
    a.attach(env.conf(annotations={KEY: js(
        {"name": "ext-cap", "ips": ["10.9.8.7/24"], "mac": "02:aa:bb:cc:dd:ee", "cni-args": {"foo": "bar"}},
        {"name": "ext-args", "ips": ["10.7.0.5/24", "fd00:7::5/64"], "mac": "02:00:00:00:00:07"})}))
    by = adds(env)
    assert by[("xs", "net1")]["config"]["runtimeConfig"] == {"ips": ["10.9.8.7/24"]}
    assert by[("xt", "net1")]["config"]["runtimeConfig"] == {"mac": "02:aa:bb:cc:dd:ee"}
    assert "runtimeConfig" not in by[("pm", "net1")]["config"]  # nothing asked of it
    args1 = cni_args(by[("xs", "net1")])
    assert ("foo", "bar") in args1 and not any(k in ("IP", "MAC") for k, _ in args1)
    args2 = cni_args(by[("xa", "net2")])
    assert ("IP", "10.7.0.5/24,fd00:7::5/64") in args2 and ("MAC", "02:00:00:00:00:07") in args2
    assert ("foo", "bar") not in args2  # cni-args belong to their own attachment
    assert args2[:2] == [("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", "default")]
    assert not any(k in ("IP", "MAC", "foo") for k, _ in cni_args(by[("main", "eth0")]))


def test_port_mappings_and_bandwidth_per_attachment(env):
    multus_env(env)
    a = env.adaptor()
    a.attach(env.conf(port_mappings=[{"host_port": 8080, "container_port": 80}], annotations={KEY: js(
        {"name": "ext-cap", "portMappings": [{"hostPort": 9090, "containerPort": 90}],
         "bandwidth": {"egressRate": 5000000}})}))
    by = adds(env)
    assert by[("pm", "net1")]["config"]["runtimeConfig"] == {
        "portMappings": [{"hostPort": 9090, "containerPort": 90, "protocol": "tcp"}]}
    assert by[("bw", "net1")]["config"]["runtimeConfig"] == {"bandwidth": {"egressRate": 5000000,
                                                                           "egressBurst": 2**32 - 1}}
    assert by[("pm", "eth0")]["config"]["runtimeConfig"] == {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}


@pytest.mark.parametrize("entry, key, words", [
    ({"name": "ext-args", "portMappings": [{"hostPort": 9090, "containerPort": 90}]},
     f"{KEY}[0].portMappings", "no plugin declaring the 'portMappings' capability"),
    ({"name": "ext-args", "bandwidth": {"ingressRate": 100000}}, f"{KEY}[0].bandwidth", "'bandwidth' capability"),
    ({"name": "ext-cap", "portMappings": [{"hostPort": 8080, "containerPort": 90}]},
     f"{KEY}[0].portMappings[0]", "mapped by the default network"),
    ({"name": "nope"}, f"{KEY}[0].name", "unknown network 'nope'"),
    ({"name": "net"}, f"{KEY}[0].name", "is the default network"),
    ({"name": "ext-args", "namespace": "other"}, f"{KEY}[0].namespace", "may not be used from namespace 'other'"),
    ({"name": "shared", "namespace": "team-c"}, f"{KEY}[0].namespace", "team-a, team-b"),
])
def test_resolution_refusals_name_the_entry_and_run_nothing(env, entry, key, words):
    multus_env(env)
    a = env.adaptor()
    conf = env.conf(port_mappings=[{"host_port": 8080, "container_port": 80}], annotations={KEY: js(entry)})
    with pytest.raises(InvalidRequestError) as exc:
        a.attach(conf)
    assert exc.value.key == key and words in exc.value.reason
    assert env.fake.calls() == [] and env.cache_files() == []


def test_host_port_twice_across_attachments_refused(env):
    multus_env(env)
    env.write("60-ext-cap2.conflist", conflist("ext-cap2", {"type": "pm", "capabilities": {"portMappings": True}}))
    a = env.adaptor()
    pm = [{"hostPort": 7070, "containerPort": 70}]
    with pytest.raises(InvalidRequestError) as exc:
        a.attach(env.conf(annotations={KEY: js({"name": "ext-cap", "portMappings": pm},
                                               {"name": "ext-cap2", "portMappings": pm})}))
    assert exc.value.key == f"{KEY}[1].portMappings[0]" and f"{KEY}[0].portMappings" in exc.value.reason
    assert env.fake.calls() == []


def test_namespaces_allowed_by_the_network_config(env):
    multus_env(env)
    a = env.adaptor()
    results = a.attach(env.conf(namespace="team-a", annotations={
        KEY: "team-b/shared@s1, other/anyns, team-a/ext-args"}))
    assert {(r.interface, r.namespace, r.name) for r in results} == {
        ("eth0", "", "net"), ("s1", "team-b", "shared"), ("net2", "other", "anyns"), ("net3", "team-a", "ext-args")}
    status = network_status(results, "eth0")
    assert [s["name"] for s in status] == ["net", "team-b/shared", "other/anyns", "team-a/ext-args"]


def test_malformed_namespace_allow_list_is_the_operators_error(env):
    multus_env(env)
    bad = json.loads(conflist("badns", "xb"))
    bad["criNet"] = {"namespaces": "team-a"}
    env.write("70-badns.conflist", json.dumps(bad))
    a = env.adaptor()
    with pytest.raises(NetworkApiError, match=r"criNet.namespaces must be a list"):
        a.attach(env.conf(annotations={KEY: "x/badns"}))
    assert env.fake.calls() == []


def test_both_annotations_refused_before_any_plugin(env):
    multus_env(env)
    a = env.adaptor()
    with pytest.raises(InvalidRequestError) as exc:
        a.attach(env.conf(annotations={KEY: "ext-args", ISULAD: json.dumps([{"name": "ext-cap", "interface": "n1"}])}))
    assert KEY in str(exc.value) and ISULAD in str(exc.value)
    assert env.fake.calls() == []


def test_detach_after_attach_removes_every_plane(env):
    multus_env(env)
    a = env.adaptor()
    conf = env.conf(annotations={KEY: "ext-args, ext-cap@x9"})
    a.attach(conf)
    assert len(env.cache_files()) == 4  # lo, eth0, net1, x9
    a.detach(conf)
    assert env.cache_files() == []
    dels = {(c["name"], c["env"]["CNI_IFNAME"]) for c in env.fake.calls(command="DEL")}
    assert {("xa", "net1"), ("xs", "x9"), ("main", "eth0"), ("loopback", "lo")} <= dels


# ==== default-route: the plan, and the results it leaves ======================================


def test_default_route_is_planned_on_its_attachment(env):
    multus_env(env)
    a = env.adaptor()
    plan = a.full_plan(env.conf(annotations={KEY: js({"name": "ext-args"},
                                                     {"name": "ext-cap", "default-route": ["10.9.8.1", "fd00::1"]})}))
    assert plan.routes == [default_route.DefaultRoute("net2", "10.9.8.1"), default_route.DefaultRoute("net2", "fd00::1")]
    assert plan.namespaces == {"net1": "default", "net2": "default"}


def test_adjusted_results_keep_one_default_route_per_requested_family():
    eth0 = NetworkApiResult(name="net", interface="eth0", ips=["10.88.0.5/16"], routes=[
        {"dst": "0.0.0.0/0", "gw": "10.88.0.1"}, {"dst": "::/0", "gw": "fd88::1"}, {"dst": "10.0.0.0/8"}])
    net1 = NetworkApiResult(name="x", interface="net1", ips=["10.9.8.7/24"], routes=[{"dst": "0.0.0.0/0"}])
    out = default_route.adjust([eth0, net1], [default_route.DefaultRoute("net1", "10.9.8.1")])
    assert out[0].routes == [{"dst": "::/0", "gw": "fd88::1"}, {"dst": "10.0.0.0/8"}]  # IPv6 default kept
    assert out[1].routes == [{"dst": "0.0.0.0/0", "gw": "10.9.8.1"}]


def test_network_status_shape():
    results = [NetworkApiResult(name="x", interface="net1", ips=["10.9.8.7/24"], mac="02:aa:bb:cc:dd:ee",
                                namespace="team"),
               NetworkApiResult(name="net", interface="eth0", ips=["10.88.0.5/16", "fd88::5/64"],
                                mac="0a:58:0a:58:00:05", dns={"nameservers": ["10.96.0.10"]})]
    assert network_status(results, "eth0", pod_namespace="default") == [
        {"name": "net", "interface": "eth0", "ips": ["10.88.0.5", "fd88::5"], "mac": "0a:58:0a:58:00:05",
         "default": True, "dns": {"nameservers": ["10.96.0.10"]}},
        {"name": "team/x", "interface": "net1", "ips": ["10.9.8.7"], "mac": "02:aa:bb:cc:dd:ee", "default": False,
         "dns": {}}]
    # a record written before namespaces were kept: the pod's namespace
    old = NetworkApiResult(name="x", interface="net1", ips=[])
    assert network_status([old], "eth0", pod_namespace="default")[0]["name"] == "default/x"
    assert network_status([old], "eth0", {"net1": "t2"}, "default")[0]["name"] == "t2/x"



def test_combined_result_lists_every_interface_and_the_default_route_where_it_went():
    """What cri-net-cni answers a runtime: every interface and its addresses, default first;
    the default interface's routes plus the default route a `default-route` moved."""
    from types import SimpleNamespace

    from cri_net.plugin.handler import combined_result

    routes = [default_route.DefaultRoute("net1", "10.9.8.1")]
    eth0 = NetworkApiResult(name="net", interface="eth0", ips=["10.88.0.5/16"], gateways=["10.88.0.1"],
                            mac="0a:58:0a:58:00:05", routes=[{"dst": "0.0.0.0/0", "gw": "10.88.0.1"},
                                                             {"dst": "10.0.0.0/8", "gw": "10.88.0.1"}])
    net1 = NetworkApiResult(name="x", interface="net1", ips=["10.9.8.7/24"], mac="02:aa:bb:cc:dd:ee")
    inv = SimpleNamespace(netns="/run/netns/p", ifname="eth0", cni_version="1.0.0")
    out = combined_result(inv, default_route.adjust([eth0, net1], routes))  # type: ignore[arg-type]
    assert [i["name"] for i in out["interfaces"]] == ["eth0", "net1"]
    assert [(ip["interface"], ip["address"]) for ip in out["ips"]] == [(0, "10.88.0.5/16"), (1, "10.9.8.7/24")]
    assert out["routes"] == [{"dst": "10.0.0.0/8", "gw": "10.88.0.1"}, {"dst": "0.0.0.0/0", "gw": "10.9.8.1"}]


@pytest.mark.parametrize("annotations, key", [
    ({"extension.network.kubernetes.io/cniargs/x": "foo=1", KEY: js({"name": "ext-args", "cni-args": {"foo": "2"}})},
     f"{KEY}[0].cni-args.foo"),
    ({"extension.network.kubernetes.io/cniargs/x": "IP=10.0.0.9/24", KEY: js({"name": "ext-args",
                                                                             "ips": ["10.7.0.5/24"]})},
     f"{KEY}[0].ips"),
])
def test_cni_args_key_set_twice_refused(env, annotations, key):
    """A repeated CNI_ARGS key is read last-wins by Go plugins: refused instead."""
    multus_env(env)
    a = env.adaptor()
    with pytest.raises(InvalidRequestError) as exc:
        a.attach(env.conf(annotations=annotations))
    assert exc.value.key == key and "set for every plane already" in exc.value.reason
    assert env.fake.calls() == []
