"""Bad-input suite (issue 6): generated pod annotations and CRI fields against annotations.py.

The contract under test (adaptors/cri/annotations.py docstring): every input either gives a
well-formed capability / CNI_ARGS list, or raises `AnnotationError` whose `key` names the
offending annotation or CRI field path; never another exception type. Through the CRI
adaptor's `plan` (what RunPodSandbox and cri-net-cni call before attaching anything) the
same failures surface as `InvalidRequestError` naming the key.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adaptors.cri import CRIAdaptor
from badinput_strategies import host_ips, json_scalars, json_values, nasty_text, ports, props, protocols_json, raw_json_text
from cri_net.config import Settings
from adaptors.cri import annotations as ann
from cri_net.network.errors import InvalidRequestError, NetworkNotReadyError
from cri_net.network.models import NetworkApiConf
from tests.reliability import record

SUITE = "bad-input"
KEYS = [ann.PORT_MAPPINGS_ANNOTATION, ann.IP_RANGES_ANNOTATION, ann.INGRESS_BANDWIDTH_ANNOTATION,
        ann.EGRESS_BANDWIDTH_ANNOTATION, ann.EGRESS_BANDWIDTH_MISSPELT_ANNOTATION, ann.EXTRA_NETWORKS_ANNOTATION,
        ann.CNI_EXTENSION_ANNOTATION, ann.MULTUS_NETWORKS_ANNOTATION, ann.CNI_ARGS_ANNOTATION_PREFIX + "a", ann.CNI_ARGS_ANNOTATION_PREFIX + "b/c",
        "free.example.com/anything"]


def _rec(scenario: str) -> None:
    record(scenario, runs=1, audited="exception type and the key it names; accepted values re-validated",
           suite=SUITE)


# ---- generators for each annotation --------------------------------------------------------

mapping_entry = st.one_of(
    st.fixed_dictionaries({"hostPort": ports, "containerPort": ports},
                          optional={"protocol": protocols_json, "hostIP": host_ips, "extra": json_values}),
    json_values,
)
port_mappings_value = st.one_of(st.lists(mapping_entry, max_size=4).map(json.dumps), raw_json_text)

quantity = st.one_of(
    st.builds(lambda n, f, s: f"{n}{f}{s}", st.sampled_from(["", "+", "-"]) | st.just(""),
              st.sampled_from(["0", "1", "1.5", ".5", "999", "1" * 30, "10", "0.001", "5."]),
              st.sampled_from(["", "k", "M", "G", "T", "P", "E", "m", "Ki", "Mi", "Ei", "e3", "E-2", "e999999999",
                               "e-99999999", "KB", "mb", " ", "e", "e+"])),
    nasty_text,
)
cidrs = st.one_of(st.sampled_from(["10.213.0.0/24", "10.213.0.1/24", "fd00::/64", "10.0.0.0/33", "1.2.3.4",
                                   "::/0", "0.0.0.0/0", "fe80::%1/64", "10.0.0.0/8\n", "10.0.0.0 /8"]),
                  nasty_text)
range_entry = st.one_of(
    st.fixed_dictionaries({"subnet": cidrs}, optional={"rangeStart": host_ips | cidrs, "rangeEnd": host_ips,
                                                        "gateway": host_ips, "bogus": json_values}),
    json_values,
)
ip_ranges_value = st.one_of(st.lists(st.lists(range_entry, max_size=3) | json_values, max_size=3).map(json.dumps),
                            raw_json_text)
ifnames = st.one_of(st.sampled_from(["net1", "eth0", "lo", "", ".", "..", "a/b", "a:b", "a b", "a\0b",
                                     "x" * 15, "x" * 16, "é" * 8, "net1\n", "net%d", "all", "default"]), nasty_text)
net_names = st.one_of(st.sampled_from(["extra", "net", "../etc", "a/b", "-x", "x y", "", ".hidden", "ok.name_1"]),
                      nasty_text)
extra_entry = st.one_of(
    st.fixed_dictionaries({"name": net_names, "interface": ifnames}, optional={"other": json_values}),
    json_values,
)
extra_value = st.one_of(st.lists(extra_entry, max_size=4).map(json.dumps), raw_json_text)
# Multus: the text form's pieces and the JSON form's fields, each valid or not
multus_ns = st.one_of(st.sampled_from(["", "default", "team-a", "Team", "-x", "a" * 64, "a/b", " ns "]), nasty_text)
multus_text_item = st.builds(lambda ns, sep, name, at, ifn: f"{ns}{sep}{name}{at}{ifn}", multus_ns,
                             st.sampled_from(["/", "", "//"]), net_names, st.sampled_from(["@", "", "@@"]), ifnames)
multus_addr = st.one_of(st.sampled_from(["10.9.8.7/24", "10.9.8.7", "fd00::7/64", "10.9.8.0/24", "10.9.8.255/24",
                                         "127.0.0.1/8", "224.0.0.1", "::1", "fe80::1%eth0/64", "10.0.0.1/33",
                                         " 10.0.0.1", "10.0.0.1\n"]), host_ips)
multus_mac = st.one_of(st.sampled_from(["02:aa:bb:cc:dd:ee", "02-AA-BB-CC-DD-EE", "01:00:5e:00:00:01",
                                        "00:00:00:00:00:00", "02:aa:bb:cc:dd", "02:aa:bb:cc:dd:ee:ff:00",
                                        "0200.5e00.0001", "02:aa:bb-cc:dd:ee"]), nasty_text)
multus_bw_number = st.one_of(st.integers(-1, 2**40), st.sampled_from([0, 999, 1000, 10**15, 10**15 + 1, 2**32,
                                                                      2**32 - 1]), json_values)
multus_entry = st.one_of(
    st.fixed_dictionaries({"name": net_names}, optional={
        "namespace": multus_ns | json_values, "interface": ifnames | json_values,
        "interfaceRequest": ifnames, "ips": st.lists(multus_addr | json_values, max_size=3) | json_values,
        "mac": multus_mac | json_values,
        "portMappings": st.lists(mapping_entry, max_size=2) | json_values,
        "bandwidth": st.fixed_dictionaries({}, optional={f: multus_bw_number for f in (
            "ingressRate", "ingressBurst", "egressRate", "egressBurst", "rate")}) | json_values,
        "cni-args": st.dictionaries(nasty_text, json_scalars, max_size=3) | json_values,
        "default-route": st.lists(multus_addr, max_size=3) | json_values,
        "deviceID": nasty_text, "infiniband-guid": nasty_text, "bogus": json_values}),
    json_values,
)
multus_value = st.one_of(st.lists(multus_text_item, max_size=4).map(",".join),
                         st.lists(multus_entry, max_size=4).map(json.dumps), raw_json_text)
cni_arg_value = st.one_of(st.builds(lambda k, v: f"{k}={v}", nasty_text, nasty_text), nasty_text)

annotation_values = {
    ann.PORT_MAPPINGS_ANNOTATION: port_mappings_value,
    ann.IP_RANGES_ANNOTATION: ip_ranges_value,
    ann.INGRESS_BANDWIDTH_ANNOTATION: quantity,
    ann.EGRESS_BANDWIDTH_ANNOTATION: quantity,
    ann.EGRESS_BANDWIDTH_MISSPELT_ANNOTATION: quantity,
    ann.EXTRA_NETWORKS_ANNOTATION: extra_value,
    ann.MULTUS_NETWORKS_ANNOTATION: multus_value,
    ann.CNI_EXTENSION_ANNOTATION: nasty_text,
}


@st.composite
def annotation_maps(draw: st.DrawFn) -> dict[str, str]:
    keys = draw(st.lists(st.sampled_from(KEYS) | nasty_text, max_size=5, unique=True))
    out: dict[str, str] = {}
    for key in keys:
        if key in annotation_values:
            out[key] = draw(annotation_values[key])
        elif key.startswith(ann.CNI_ARGS_ANNOTATION_PREFIX):
            out[key] = draw(cni_arg_value)
        else:
            out[key] = draw(nasty_text)
    if draw(st.integers(0, 40)) == 0:  # now and then a value past the 64 KiB limit
        out[draw(st.sampled_from(KEYS))] = "[" + " " * ann.MAX_ANNOTATION_VALUE_BYTES + "]"
    return out


cri_mapping = st.one_of(
    st.fixed_dictionaries({"host_port": ports | json_values, "container_port": ports | json_values},
                          optional={"protocol": st.integers(-1, 5) | protocols_json, "host_ip": host_ips | json_values}),
    json_values,
)
#: IPv6 zones are where text hides in an "IP address": Python's ipaddress takes any zone.
zoned = st.builds(lambda z: f"fe80::1%{z}", st.sampled_from(["eth0", "a b", "x\nsearch evil.example", "\0", "\t"])
                  | nasty_text)
dns_servers = st.one_of(zoned, st.sampled_from(["10.0.0.53", "::1", "fe80::1%eth0"]), host_ips)
dns_words = st.one_of(st.sampled_from(["svc.cluster.local", "ndots:5", "edns0"]), nasty_text)
dns_configs = st.one_of(
    st.none(),
    st.fixed_dictionaries({"servers": st.lists(dns_servers, min_size=1, max_size=3)},
                          optional={"searches": st.lists(dns_words, max_size=2), "options": st.lists(dns_words, max_size=2)}),
    st.fixed_dictionaries({}, optional={"servers": st.lists(dns_servers, max_size=3) | json_values,
                                        "searches": st.lists(dns_words, max_size=3) | json_values,
                                        "options": st.lists(dns_words, max_size=3) | json_values}),
    json_values,
)
pod_cidrs = st.one_of(st.none(), st.just(""), cidrs, st.lists(cidrs, max_size=3).map(",".join))


# ---- assertions on what was accepted -------------------------------------------------------


def _assert_ip(text: str, zone_ok: bool = False) -> None:
    """A value that reaches a plugin as an IP must be a plain one Go's net.ParseIP reads too
    (no zone), or for DNS servers at most a zone that is one resolv.conf word: never
    whitespace, a newline or NUL."""
    assert zone_ok or "%" not in text, f"accepted IP with a zone {text!r}"
    assert not any(c.isspace() or c == "\0" for c in text), f"accepted IP {text!r}"
    ipaddress.ip_address(text)


def check_caps(caps: dict[str, Any]) -> None:
    """What capability_args returned is well-formed wire data."""
    json.dumps(caps, allow_nan=False)
    for pm in caps.get(ann.CAP_PORT_MAPPINGS, []):
        assert 1 <= pm["hostPort"] <= 65535 and 1 <= pm["containerPort"] <= 65535, pm
        assert pm["protocol"] in ("tcp", "udp", "sctp"), pm
        if "hostIP" in pm:
            _assert_ip(pm["hostIP"])
    bw = caps.get(ann.CAP_BANDWIDTH)
    if bw is not None:
        assert bw, "an empty bandwidth capability"
        for direction in ("ingress", "egress"):
            if f"{direction}Rate" in bw:
                assert ann.MIN_BANDWIDTH_BPS <= bw[f"{direction}Rate"] <= ann.MAX_BANDWIDTH_BPS, bw
    for range_set in caps.get(ann.CAP_IP_RANGES, []):
        assert range_set
        for r in range_set:
            net = ipaddress.ip_network(r["subnet"], strict=False)
            for name in ("rangeStart", "rangeEnd", "gateway"):
                if name in r:
                    _assert_ip(r[name])
                    assert ipaddress.ip_address(r[name]) in net
    dns = caps.get(ann.CAP_DNS)
    if dns is not None:
        for server in dns.get("servers", []):
            _assert_ip(server, zone_ok=True)
        for word in dns.get("searches", []) + dns.get("options", []):
            assert word and not any(c.isspace() or c == "\0" for c in word), dns


def error_keys(annotations: dict[str, Any]) -> set[str]:
    return set(annotations)


def assert_names_input(exc: ann.AnnotationError | InvalidRequestError, annotations: dict[str, Any]) -> None:
    """The error's key is an annotation that was given (a Multus error: `<key>[<entry>]` and
    maybe `.<field>`, with an entry that exists), or a CRI field path."""
    key = exc.key
    cri = ("port_mappings[", "dns_config.", "pod_cidr", "metadata.", "sandbox_id", "config.", "default_interface",
           "pod_id", "netns_path")
    if key.startswith(MULTUS + "[") and MULTUS in annotations:
        assert multus_entry_index(key) < multus_entries(annotations[MULTUS]), key
        assert str(exc).startswith(f"{key}: "), str(exc)
        return
    assert key in annotations or repr(key) in {repr(k) for k in annotations} or key.startswith(cri), \
        f"error key {key!r} names no input (annotations: {sorted(map(repr, annotations))[:6]})"
    assert str(exc).startswith(f"{key}: "), str(exc)


MULTUS = ann.MULTUS_NETWORKS_ANNOTATION


def multus_entry_index(key: str) -> int:
    m = re.match(re.escape(ann.MULTUS_NETWORKS_ANNOTATION) + r"\[(\d+)\]", key)
    assert m, f"Multus error key {key!r} names no entry"
    return int(m.group(1))


def multus_entries(value: Any) -> int:
    """How many entries the annotation value has, as Multus would split it."""
    if any(c in value for c in '[{"'):
        doc = json.loads(value)
        return len(doc) if isinstance(doc, list) else 0
    return len(value.split(","))


# ---- property tests ------------------------------------------------------------------------


@props(ci=150, full=2000)
@given(annotations=annotation_maps(), mappings=st.none() | st.lists(cri_mapping, max_size=3), pod_cidr=pod_cidrs,
       dns=dns_configs)
def test_capability_args_accept_or_name_the_key(annotations: dict[str, str], mappings: Any, pod_cidr: Any,
                                                dns: Any) -> None:
    """Every annotation the module interprets, plus CRI port mappings, pod CIDR and DNS."""
    _rec("annotations: capability args from generated annotations and CRI fields")
    try:
        caps = ann.capability_args(annotations, mappings, pod_cidr, dns, pod="ns/pod")
    except ann.AnnotationError as exc:
        assert_names_input(exc, annotations)
        return
    check_caps(caps)


@props(ci=100, full=1500)
@given(value=port_mappings_value, existing=st.lists(st.fixed_dictionaries(
    {"hostPort": st.integers(1, 65535), "containerPort": st.integers(1, 65535),
     "protocol": st.sampled_from(["tcp", "udp", "sctp"])}), max_size=2))
def test_seed_insert_functions_accept_or_name_the_key(value: str, existing: list[dict[str, Any]]) -> None:
    """insert_portmapping / insert_iprange / insert_bandwidth (the seed API) on generated values."""
    _rec("annotations: seed insert_* functions")
    for fn, key in ((lambda: ann.insert_portmapping(value, {ann.CAP_PORT_MAPPINGS: existing}),
                     ann.PORT_MAPPINGS_ANNOTATION),
                    (lambda: ann.insert_iprange(value, {}), ann.IP_RANGES_ANNOTATION),
                    (lambda: ann.insert_bandwidth(value, {}, "egress"), ann.EGRESS_BANDWIDTH_ANNOTATION)):
        try:
            caps = fn()
        except ann.AnnotationError as exc:
            assert exc.key in (key, ann.CAP_PORT_MAPPINGS), (exc.key, key)
            continue
        check_caps(caps)


@props(ci=100, full=1500)
@given(value=extra_value, default_if=st.sampled_from(["eth0", "net1"]))
def test_extra_networks_accept_or_name_the_key(value: str, default_if: str) -> None:
    _rec("annotations: extra networks")
    try:
        nets = ann.parse_extra_networks({ann.EXTRA_NETWORKS_ANNOTATION: value}, reserved_interfaces=("lo", default_if))
    except ann.AnnotationError as exc:
        assert exc.key == ann.EXTRA_NETWORKS_ANNOTATION, exc.key
        return
    seen = set()
    for net in nets:
        assert ann.NETWORK_NAME_RE.fullmatch(net.name), net
        name = net.interface
        assert 0 < len(name.encode()) <= 15 and name not in (".", "..", "all", "default", "lo", default_if), net
        assert name not in seen and not any(c in "/:%\0" or c.isspace() for c in name), net
        seen.add(name)


@props(ci=150, full=2000)
@given(value=multus_value, default_if=st.sampled_from(["eth0", "net1"]), isulad=st.booleans())
def test_multus_networks_accept_or_name_annotation_entry_and_field(value: str, default_if: str,
                                                                   isulad: bool) -> None:
    """Multus's annotation (text and JSON forms): refused with `<key>[<entry>].<field>` (or
    the key alone for the value as a whole), or selections whose every field is plugin-safe."""
    _rec("annotations: Multus network selection")
    annotations = {ann.MULTUS_NETWORKS_ANNOTATION: value}
    if isulad:
        annotations[ann.EXTRA_NETWORKS_ANNOTATION] = "[]"
    try:
        sels = ann.parse_multus_networks(annotations, reserved_interfaces=("lo", default_if))
    except ann.AnnotationError as exc:
        key = exc.key
        if key != ann.MULTUS_NETWORKS_ANNOTATION:
            assert multus_entry_index(key) < multus_entries(value), key
        elif isulad:
            assert ann.EXTRA_NETWORKS_ANNOTATION in exc.reason
        return
    assert not isulad or not sels, "both annotations accepted together"
    seen: set[str] = set()
    gateways: set[int] = set()
    for sel in sels:
        assert ann.NETWORK_NAME_RE.fullmatch(sel.name), sel
        assert sel.namespace == "" or re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", sel.namespace), sel
        name = sel.interface
        assert 0 < len(name.encode()) <= 15 and name not in (".", "..", "all", "default", "lo", default_if), sel
        assert name not in seen and not any(c in "/:%\0" or c.isspace() for c in name), sel
        seen.add(name)
        for ip in sel.ips + sel.default_route:
            _assert_ip(ip.split("/")[0])
        assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", sel.mac) or sel.mac == "", sel
        caps: dict[str, Any] = {}
        if sel.port_mappings:
            caps[ann.CAP_PORT_MAPPINGS] = [pm.model_dump() for pm in sel.port_mappings]
        if sel.bandwidth is not None:
            caps[ann.CAP_BANDWIDTH] = sel.bandwidth.model_dump()
        check_caps(caps)
        for k, v in sel.cni_args:
            assert k and not set(";=\0") & set(k + v), (k, v)
            assert k not in ("IgnoreUnknown", "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID",
                             "K8S_POD_UID", "IP", "MAC"), k
        for gw in sel.default_route:
            family = ipaddress.ip_address(gw).version
            assert family not in gateways, "two default routes of one family"
            gateways.add(family)


@props(ci=150, full=2000)
@given(namespace=nasty_text, name=nasty_text, sandbox=nasty_text, uid=nasty_text, annotations=annotation_maps())
def test_cni_args_accept_or_name_the_key(namespace: str, name: str, sandbox: str, uid: str,
                                         annotations: dict[str, str]) -> None:
    """CNI_ARGS from pod identity and extension annotations: accepted pairs can be joined as
    `K=V;K=V` and split back to the same pairs; the pod identity can never be overridden."""
    _rec("annotations: CNI_ARGS from identity and extension annotations")
    try:
        args = ann.build_cni_args(namespace, name, sandbox, uid, annotations)
    except ann.AnnotationError as exc:
        assert_names_input(exc, annotations)
        return
    joined = ";".join(f"{k}={v}" for k, v in args)
    joined.encode("utf-8")
    pairs = [p.split("=") for p in joined.split(";")]
    assert [tuple(p) for p in pairs] == args, "CNI_ARGS do not round-trip"
    keys = [k for k, _ in args]
    assert len(keys) == len(set(keys)), f"duplicate CNI_ARGS key: {keys}"
    assert args[:5] == [("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", namespace), ("K8S_POD_NAME", name),
                        ("K8S_POD_INFRA_CONTAINER_ID", sandbox), ("K8S_POD_UID", uid)]


@props(ci=100, full=1500)
@given(dns=dns_configs)
def test_dns_capability_accepts_only_resolv_conf_safe_words(dns: Any) -> None:
    """DNS servers reach plugins (and resolv.conf) as words: an accepted server must be a plain
    IP address, never text carrying whitespace, a newline or NUL in an IPv6 zone."""
    _rec("annotations: DNS config")
    try:
        cap = ann.dns_capability(dns)
    except ann.AnnotationError as exc:
        assert exc.key.startswith("dns_config."), exc.key
        return
    check_caps({ann.CAP_DNS: cap} if cap else {})


@pytest.mark.parametrize("server", ["fe80::1%eth0\nsearch evil.example", "fe80::1%a b", "fe80::1%\0"])
def test_dns_server_zone_cannot_inject_resolv_conf_lines(server: str) -> None:
    """The shrunk counterexample of the property above, kept as a plain regression test."""
    _rec("annotations: DNS config")
    with pytest.raises(ann.AnnotationError) as info:
        ann.dns_capability({"servers": [server]})
    assert info.value.key == "dns_config.servers[0]"


@props(ci=60, full=1000)
@given(value=st.sampled_from(list(annotation_values)).flatmap(
    lambda k: st.tuples(st.just(k), json_values.filter(lambda v: not isinstance(v, str)))))
def test_non_string_annotation_values_name_the_key(value: tuple[str, Any]) -> None:
    """Annotation maps built by Python callers (the network API) may hold non-strings."""
    _rec("annotations: non-string values")
    key, raw = value
    with pytest.raises(ann.AnnotationError) as info:
        ann.capability_args({key: raw}, None, None, None)
        ann.parse_extra_networks({key: raw})
        ann.parse_multus_networks({key: raw})
        ann.build_cni_args("ns", "n", "sb", "uid", {key: raw})
    assert info.value.key == key


# ---- through the CRI adaptor's plan --------------------------------------------------------


@pytest.fixture(scope="module")
def adaptor(tmp_path_factory: pytest.TempPathFactory) -> CRIAdaptor:
    """A CRI adaptor over a conf dir with a default network `net` and an extra one `extra`
    (plan only reads configs: no plugin runs)."""
    root = tmp_path_factory.mktemp("badinput-plan")
    conf = root / "net.d"
    conf.mkdir()
    for prefix, name in (("10", "net"), ("20", "extra")):
        (conf / f"{prefix}-{name}.conflist").write_text(json.dumps(
            {"cniVersion": "1.0.0", "name": name, "plugins": [{"type": "bridge"}]}))
    settings = Settings(conf_dir=str(conf), cache_dir=str(root / "cache"), state_dir=str(root / "state"),
                        netns_dir=str(root / "netns"), bin_dirs=[str(root / "bin")])
    ad = CRIAdaptor(settings, watch=False)
    ad.update()
    assert ad.operator.networks.names == ["net", "extra"]
    return ad


@props(ci=150, full=2000)
@given(annotations=annotation_maps(), mappings=st.none() | st.lists(cri_mapping, max_size=3), pod_cidr=pod_cidrs,
       dns=dns_configs, name=nasty_text, namespace=nasty_text, uid=nasty_text,
       default_if=st.sampled_from(["eth0", "eth0", "net1", "lo", "a/b", "x" * 16, ""]))
def test_plan_rejects_with_invalid_request_naming_the_key(adaptor: CRIAdaptor, annotations: dict[str, str],
                                                          mappings: Any, pod_cidr: Any, dns: Any, name: str,
                                                          namespace: str, uid: str, default_if: str) -> None:
    """The whole pod request as RunPodSandbox hands it over: InvalidRequestError naming the key,
    or a plan whose planes carry only validated values."""
    _rec("annotations: CRI adaptor plan of a generated pod request")
    conf = NetworkApiConf(name=name, namespace=namespace, pod_id="0123abcd", pod_uid=uid,
                          netns_path="/run/netns/x", default_interface=default_if, annotations=annotations,
                          port_mappings=list(mappings or []), pod_cidr=pod_cidr or None, dns=dns)
    try:
        planes = adaptor.plan(conf)
    except InvalidRequestError as exc:
        assert_names_input(exc, annotations)
        return
    except NetworkNotReadyError:
        pytest.fail("conf dir has networks")
    assert planes[-1][1].ifname == default_if and planes[-1][0].name == "net"
    for net, plane in planes:
        check_caps(dict(plane.capability_args))
        assert not any(c in "/:\0" or c.isspace() for c in plane.ifname)
        for k, v in plane.args:
            assert not set(";=\0") & set(k + v), (k, v)


def test_plan_sizes_recorded(tmp_path: Path) -> None:
    """Sanity of the generators: a hand-picked valid request goes through every parser."""
    _rec("annotations: capability args from generated annotations and CRI fields")
    caps = ann.capability_args(
        {ann.PORT_MAPPINGS_ANNOTATION: json.dumps([{"hostPort": 80, "containerPort": 8080, "hostIP": "::1"}]),
         ann.INGRESS_BANDWIDTH_ANNOTATION: "10M", ann.IP_RANGES_ANNOTATION: '[[{"subnet": "10.213.0.0/24"}]]'},
        [{"host_port": 81, "container_port": 81, "protocol": 1}], "10.213.0.0/16", {"servers": ["10.0.0.53"]})
    check_caps(caps)
    assert len(caps[ann.CAP_PORT_MAPPINGS]) == 2 and caps[ann.CAP_BANDWIDTH]["ingressRate"] == 10_000_000
