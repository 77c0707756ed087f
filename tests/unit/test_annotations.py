"""Pod annotations and CRI inputs -> CNI capability args / CNI_ARGS (adaptors/cri/annotations.py and the parsers beside it).

Table-driven valid and invalid forms of every input (each invalid one must name the right key),
plus hypothesis properties: for any value of an annotation the parsers return a valid result
or raise AnnotationError naming that key -- never any other exception.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import pickle
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptors.cri import annotations as ann
from adaptors.cri.annotations import (
    AnnotationError,
    Bandwidth,
    DNSConfig,
    ExtraNetwork,
    IPRange,
    PortMapping,
    build_cni_args,
    capability_args,
    dns_capability,
    insert_bandwidth,
    insert_iprange,
    insert_portmapping,
    parse_bandwidth,
    parse_extra_networks,
    parse_ip_ranges,
    parse_port_mappings,
    parse_quantity,
)

PM = "cri-net.io/port-mappings"
IPR = "cri-net.io/ip-ranges"
ING = "kubernetes.io/ingress-bandwidth"
EGR = "kubernetes.io/egress-bandwidth"
ENG = "kubernetes.io/engress-bandwidth"
NETS = "network.alpha.kubernetes.io/network"
CNIARGS = "extension.network.kubernetes.io/cniargs/"
CNIEXT = "extension.network.kubernetes.io/cni"
BURST = 4294967295


def j(value: Any) -> str:
    return json.dumps(value)


# --- AnnotationError -------------------------------------------------------------------------


def test_annotation_error_shape() -> None:
    err = AnnotationError("port_mappings[2].host_port", "70000 is out of range 1..65535")
    assert isinstance(err, ValueError)
    assert err.key == "port_mappings[2].host_port"
    assert err.reason == "70000 is out of range 1..65535"
    assert str(err) == "port_mappings[2].host_port: 70000 is out of range 1..65535"
    again = pickle.loads(pickle.dumps(err))
    assert (again.key, again.reason, str(again)) == (err.key, err.reason, str(err))


@pytest.mark.parametrize("key", [PM, IPR, ING, EGR, ENG, NETS, CNIEXT, CNIARGS + "x"])
def test_oversized_annotation_rejected(key: str) -> None:
    big = {key: "1" * (64 * 1024 + 1)}
    parse = {NETS: lambda: parse_extra_networks(big), CNIEXT: lambda: build_cni_args("ns", "n", "id", "uid", big),
             CNIARGS + "x": lambda: build_cni_args("ns", "n", "id", "uid", big)}.get(
        key, lambda: capability_args(big, [], None, None))
    with pytest.raises(AnnotationError) as exc:
        parse()
    assert exc.value.key == key
    assert "65536-byte limit" in exc.value.reason


def test_oversized_unrelated_annotation_is_passed_through() -> None:
    big = "x" * (100 * 1024)
    caps = capability_args({"kubectl.kubernetes.io/last-applied-configuration": big}, [], None, None)
    assert caps == {"io.kubernetes.cri.pod-annotations": {"kubectl.kubernetes.io/last-applied-configuration": big}}


def test_exactly_64k_is_accepted() -> None:
    value = "[" + " " * (64 * 1024 - 2) + "]"
    assert parse_port_mappings([], {PM: value}) == []


def test_non_string_annotation_value() -> None:
    with pytest.raises(AnnotationError) as exc:
        parse_bandwidth({ING: 10})  # type: ignore[dict-item]
    assert exc.value.key == ING


# --- Quantities ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, want", [
    ("10M", 10_000_000), ("1Mi", 1_048_576), ("1.5k", 1_500), ("100m", 1), ("1P", 10**15),
    ("2P", 2 * 10**15), ("0", 0), ("-0", 0), ("+5k", 5_000), ("1k", 1_000), ("1Ki", 1_024),
    ("1Gi", 2**30), ("1Ti", 2**40), ("1Pi", 2**50), ("1Ei", 2**60), ("1G", 10**9), ("1T", 10**12),
    ("1E", 10**18), ("1e3", 1_000), ("1E3", 1_000), ("1e+3", 1_000), ("1.5e3", 1_500),
    ("15e-1", 2), ("1e-3", 1), (".5", 1), ("5.", 5), ("0.5Ki", 512), ("1.0001k", 1001),
    ("1500m", 2), ("1000m", 1), ("007", 7), ("1e-999999999", 1), ("0e999999999", 0),
    ("9223372036854775807", 2**63 - 1), ("12345678.9", 12345679),
])
def test_parse_quantity(text: str, want: int) -> None:
    assert parse_quantity(text) == want


@pytest.mark.parametrize("text", [
    "", " ", "abc", "-1", "-1k", "10 M", " 10M", "10M ", "10MB", "1e", "1e3.5", "1.2.3", ".", "k",
    "Ki", "1KI", "1ki", "1K", "0x10", "1,000", "1_000", "NaN", "inf", "1e9999999", "9223372036854775808",
    "10Ei", "١٠", "1" * 200,
])
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(AnnotationError) as exc:
        parse_quantity(text, key="some/key")
    assert exc.value.key == "some/key"


@given(st.integers(min_value=0, max_value=10**6),
       st.sampled_from([("", 1), ("k", 10**3), ("M", 10**6), ("G", 10**9), ("Ki", 2**10), ("Mi", 2**20),
                        ("Gi", 2**30), ("e2", 100), ("E1", 10)]))
def test_quantity_integer_suffixes(n: int, suffix: tuple[str, int]) -> None:
    assert parse_quantity(f"{n}{suffix[0]}") == n * suffix[1]


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=6))
def test_quantity_fractions_round_up(units: int, places: int) -> None:
    text = f"{units // 10**places}.{units % 10**places:0{places}d}" if places else str(units)
    assert parse_quantity(text) == -(-units // 10**places)


@settings(max_examples=300)
@given(st.text(max_size=30) | st.from_regex(r"[+-]?[0-9]{0,25}(\.[0-9]{0,25})?([eE][+-]?[0-9]{1,8}|[mkMGTPE]|[KMGTPE]i)?",
                                            fullmatch=True))
def test_quantity_never_crashes(text: str) -> None:
    try:
        value = parse_quantity(text, key="q")
    except AnnotationError as exc:
        assert exc.key == "q"
    else:
        assert isinstance(value, int) and 0 <= value <= 2**63 - 1


# --- Bandwidth -------------------------------------------------------------------------------


@pytest.mark.parametrize("annotations, want", [
    ({}, None),
    ({"other": "x"}, None),
    ({ING: "10M"}, {"ingressRate": 10_000_000, "ingressBurst": BURST}),
    ({EGR: "1Mi"}, {"egressRate": 1_048_576, "egressBurst": BURST}),
    ({ING: "1k", EGR: "1P"}, {"ingressRate": 1_000, "ingressBurst": BURST,
                              "egressRate": 10**15, "egressBurst": BURST}),
    ({ING: "1.5k"}, {"ingressRate": 1_500, "ingressBurst": BURST}),
    ({ING: "999.1"}, {"ingressRate": 1_000, "ingressBurst": BURST}),  # rounded up to 1k
])
def test_parse_bandwidth(annotations: dict[str, str], want: dict[str, int] | None) -> None:
    bw = parse_bandwidth(annotations)
    assert (bw.model_dump() if bw else None) == want


@pytest.mark.parametrize("annotations, key", [
    ({ING: "100m"}, ING),  # 100 milli-bits -> 1 -> below 1k
    ({ING: "999"}, ING),
    ({EGR: "2P"}, EGR),
    ({EGR: "1.0000001P"}, EGR),
    ({ING: "0"}, ING),
    ({ING: ""}, ING),
    ({ING: "-10M"}, ING),
    ({EGR: "ten megabits"}, EGR),
    ({ING: "10M", EGR: "garbage"}, EGR),
    ({ENG: "1"}, ENG),
    ({ENG: "1M", EGR: "2M"}, ENG),  # alias conflicts with the real key
])
def test_parse_bandwidth_rejects(annotations: dict[str, str], key: str) -> None:
    with pytest.raises(AnnotationError) as exc:
        parse_bandwidth(annotations)
    assert exc.value.key == key


def test_bandwidth_out_of_range_message() -> None:
    with pytest.raises(AnnotationError) as exc:
        parse_bandwidth({ING: "100m"})
    assert "out of range" in exc.value.reason and "1k..1P" in exc.value.reason


def test_misspelt_egress_alias_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cri_net.network"):
        bw = parse_bandwidth({ENG: "10M"}, pod="default/web")
    assert bw == Bandwidth(egress_rate=10_000_000, egress_burst=BURST)
    [record] = [r for r in caplog.records if r.name == "cri_net.network"]
    assert record.levelno == logging.WARNING
    assert "deprecated" in record.getMessage() and EGR in record.getMessage()
    assert record.fields == {"key": ENG, "pod": "default/web"}  # type: ignore[attr-defined]


def test_misspelt_alias_with_same_value_as_real_key(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cri_net.network"):
        bw = parse_bandwidth({ENG: "10M", EGR: "10M"})
    assert bw is not None and bw.egress_rate == 10_000_000
    assert any("deprecated" in r.getMessage() for r in caplog.records)


def test_no_warning_without_alias(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="cri_net.network"):
        parse_bandwidth({EGR: "10M"})
    assert not caplog.records


def test_bandwidth_model_wire_form() -> None:
    assert Bandwidth().model_dump() == {}
    assert json.loads(Bandwidth(ingress_rate=1000, ingress_burst=5).model_dump_json()) == {
        "ingressRate": 1000, "ingressBurst": 5}
    assert Bandwidth.model_validate({"egressRate": 1}).egress_rate == 1


# --- Port mappings ---------------------------------------------------------------------------


class FakeProto:
    """Stands in for a runtime.v1.PortMapping protobuf message (attribute access, int enum)."""

    def __init__(self, host_port: int, container_port: int, protocol: int = 0, host_ip: str = "") -> None:
        self.host_port, self.container_port, self.protocol, self.host_ip = host_port, container_port, protocol, host_ip


def cri(host_port: Any = 80, container_port: Any = 8080, protocol: Any = "TCP", host_ip: Any = "") -> dict[str, Any]:
    return {"host_port": host_port, "container_port": container_port, "protocol": protocol, "host_ip": host_ip}


def wire(mappings: list[PortMapping]) -> list[dict[str, Any]]:
    return [pm.model_dump() for pm in mappings]


@pytest.mark.parametrize("cri_mappings, annotations, want", [
    ([], None, []),
    (None, {}, []),
    ([cri()], None, [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]),
    ([cri(host_port=0), cri(host_port=0, container_port=0, protocol="bogus")], None, []),  # skipped unchecked
    ([cri(protocol="UDP"), cri(protocol="SCTP"), cri(protocol="tcp")],
     None, [{"hostPort": 80, "containerPort": 8080, "protocol": p} for p in ("udp", "sctp", "tcp")]),
    ([cri(protocol=0), cri(protocol=1), cri(protocol=2)],
     None, [{"hostPort": 80, "containerPort": 8080, "protocol": p} for p in ("tcp", "udp", "sctp")]),
    ([cri(protocol=None), cri(host_port=81, protocol="")], None,
     [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}, {"hostPort": 81, "containerPort": 8080, "protocol": "tcp"}]),
    ([cri(host_ip="10.1.2.3"), cri(host_ip="::1"), cri(host_ip="")], None,
     [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp", "hostIP": "10.1.2.3"},
      {"hostPort": 80, "containerPort": 8080, "protocol": "tcp", "hostIP": "::1"},
      {"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]),
    ([{"host_port": 1, "container_port": 65535}], None, [{"hostPort": 1, "containerPort": 65535, "protocol": "tcp"}]),
    ([FakeProto(443, 8443, 2, "192.168.0.1"), FakeProto(0, 1)], None,
     [{"hostPort": 443, "containerPort": 8443, "protocol": "sctp", "hostIP": "192.168.0.1"}]),
    ([], {PM: "[]"}, []),
    ([], {PM: j([{"hostPort": 8080, "containerPort": 80}])}, [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
    ([], {PM: j([{"hostPort": 53, "containerPort": 53, "protocol": "UDP", "hostIP": "fd00::1"}])},
     [{"hostPort": 53, "containerPort": 53, "protocol": "udp", "hostIP": "fd00::1"}]),
    ([], {PM: j([{"hostPort": 53, "containerPort": 53, "protocol": "udp", "hostIP": ""}])},
     [{"hostPort": 53, "containerPort": 53, "protocol": "udp"}]),
    ([cri(protocol="UDP")], {PM: j([{"hostPort": 80, "containerPort": 1}, {"hostPort": 80, "containerPort": 1, "hostIP": "1.1.1.1"}])},
     [{"hostPort": 80, "containerPort": 8080, "protocol": "udp"}, {"hostPort": 80, "containerPort": 1, "protocol": "tcp"},
      {"hostPort": 80, "containerPort": 1, "protocol": "tcp", "hostIP": "1.1.1.1"}]),
])
def test_parse_port_mappings(cri_mappings: Any, annotations: Any, want: list[dict[str, Any]]) -> None:
    assert wire(parse_port_mappings(cri_mappings, annotations)) == want


@pytest.mark.parametrize("cri_mappings, annotations, key", [
    ([cri(host_port=70000)], None, "port_mappings[0].host_port"),
    ([cri(), cri(host_port=-1)], None, "port_mappings[1].host_port"),
    ([cri(host_port="80")], None, "port_mappings[0].host_port"),
    ([cri(host_port=True)], None, "port_mappings[0].host_port"),
    ([cri(host_port=80.0)], None, "port_mappings[0].host_port"),
    ([cri(container_port=0)], None, "port_mappings[0].container_port"),
    ([cri(container_port=65536)], None, "port_mappings[0].container_port"),
    ([{"host_port": 80}], None, "port_mappings[0].container_port"),
    ([cri(), cri(), cri(host_port=81, protocol="icmp")], None, "port_mappings[2].protocol"),
    ([cri(protocol=3)], None, "port_mappings[0].protocol"),
    ([cri(protocol=-1)], None, "port_mappings[0].protocol"),
    ([cri(protocol=False)], None, "port_mappings[0].protocol"),
    ([cri(protocol=1.0)], None, "port_mappings[0].protocol"),
    ([cri(host_ip="300.1.1.1")], None, "port_mappings[0].host_ip"),
    ([cri(host_ip="fe80::1%eth0")], None, "port_mappings[0].host_ip"),
    ([cri(host_ip=" 1.1.1.1")], None, "port_mappings[0].host_ip"),
    ([cri(host_ip=7)], None, "port_mappings[0].host_ip"),
    ([cri(), "80:8080"], None, "port_mappings[1]"),  # not a port mapping at all
    ([cri(), cri(container_port=1)], None, "port_mappings[1]"),  # same (80, tcp, all addresses)
    ([cri(host_ip="::1"), cri(host_ip="0:0::1")], None, "port_mappings[1]"),  # same address, other spelling
    ([cri(protocol="tcp"), cri(protocol=0)], None, "port_mappings[1]"),
    ([cri()], {PM: j([{"hostPort": 80, "containerPort": 9}])}, PM),  # duplicate across CRI and annotation
    ([], {PM: j([{"hostPort": 80, "containerPort": 9}] * 2)}, PM),
    ([], {PM: "not json"}, PM),
    ([], {PM: ""}, PM),
    ([], {PM: "{}"}, PM),
    ([], {PM: "null"}, PM),
    ([], {PM: j([1])}, PM),
    ([], {PM: j([{"hostPort": 80}])}, PM),
    ([], {PM: j([{"containerPort": 80}])}, PM),
    ([], {PM: j([{"hostPort": 0, "containerPort": 80}])}, PM),
    ([], {PM: j([{"hostPort": 65536, "containerPort": 80}])}, PM),
    ([], {PM: j([{"hostPort": "80", "containerPort": 80}])}, PM),
    ([], {PM: j([{"hostPort": 80.0, "containerPort": 80}])}, PM),
    ([], {PM: j([{"hostPort": True, "containerPort": 80}])}, PM),
    ([], {PM: j([{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}])}, PM),
    ([], {PM: j([{"hostPort": 80, "containerPort": 80, "protocol": 0}])}, PM),
    ([], {PM: j([{"hostPort": 80, "containerPort": 80, "hostIP": "localhost"}])}, PM),
    ([], {PM: j([{"hostPort": 80, "containerPort": 80, "hostIp": "1.2.3.4"}])}, PM),  # typo: unknown field
    ([], {PM: '[{"hostPort": 80, "hostPort": 81, "containerPort": 80}]'}, PM),  # duplicate JSON key
    ([], {PM: '[{"hostPort": NaN, "containerPort": 80}]'}, PM),
    ([], {PM: "[" * 5000 + "]" * 5000}, PM),
    ([], {PM: "[" + "1" * 5000 + "]"}, PM),
])
def test_parse_port_mappings_rejects(cri_mappings: Any, annotations: Any, key: str) -> None:
    with pytest.raises(AnnotationError) as exc:
        parse_port_mappings(cri_mappings, annotations)
    assert exc.value.key == key


def test_port_mapping_error_names_entry() -> None:
    with pytest.raises(AnnotationError) as exc:
        parse_port_mappings([], {PM: j([{"hostPort": 1, "containerPort": 1}, {"hostPort": 99999, "containerPort": 1}])})
    assert str(exc.value) == f"{PM}: entry 1: hostPort 99999 is out of range 1..65535"


def test_port_mapping_model() -> None:
    pm = PortMapping(host_port=1, container_port=2, protocol="udp", host_ip="1.2.3.4")
    assert pm.model_dump() == {"hostPort": 1, "containerPort": 2, "protocol": "udp", "hostIP": "1.2.3.4"}
    assert json.loads(PortMapping(host_port=1, container_port=2).model_dump_json()) == {
        "hostPort": 1, "containerPort": 2, "protocol": "tcp"}
    assert PortMapping.model_validate(pm.model_dump()) == pm
    with pytest.raises(ValueError):
        PortMapping(host_port=0, container_port=2)


def test_insert_portmapping() -> None:
    caps = {"dns": {"servers": ["1.1.1.1"]}, "portMappings": [{"hostPort": 3, "containerPort": 4, "protocol": "tcp"}]}
    out = insert_portmapping(j([{"hostPort": 1, "containerPort": 2, "protocol": "SCTP"}]), caps)
    assert out == {"dns": {"servers": ["1.1.1.1"]}, "portMappings": [
        {"hostPort": 3, "containerPort": 4, "protocol": "tcp"}, {"hostPort": 1, "containerPort": 2, "protocol": "sctp"}]}
    assert len(caps["portMappings"]) == 1  # input untouched
    assert insert_portmapping("[]", {}) == {}
    with pytest.raises(AnnotationError) as exc:
        insert_portmapping(j([{"hostPort": 3, "containerPort": 9}]), caps)
    assert exc.value.key == PM and "portMappings[0]" in exc.value.reason


# --- IP ranges -------------------------------------------------------------------------------


@pytest.mark.parametrize("annotations, pod_cidr, want", [
    ({}, None, None),
    ({}, "", None),
    ({}, "10.88.0.0/16", [[{"subnet": "10.88.0.0/16"}]]),
    ({}, "10.88.0.0/16,fd00:88::/64", [[{"subnet": "10.88.0.0/16"}], [{"subnet": "fd00:88::/64"}]]),
    ({}, " 10.88.0.0/16 , fd00:88::/64 ", [[{"subnet": "10.88.0.0/16"}], [{"subnet": "fd00:88::/64"}]]),
    ({}, "10.88.0.1/16", [[{"subnet": "10.88.0.1/16"}]]),  # kubelet's value is kept as given
    ({IPR: j([[{"subnet": "10.1.0.0/24"}]])}, "10.88.0.0/16", [[{"subnet": "10.1.0.0/24"}]]),  # annotation wins
    ({IPR: j([[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20", "gateway": "10.1.0.1"}]])},
     None, [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20", "gateway": "10.1.0.1"}]]),
    ({IPR: j([[{"subnet": "10.1.0.0/24", "rangeStart": "", "gateway": ""}]])}, None, [[{"subnet": "10.1.0.0/24"}]]),
    ({IPR: j([[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.5", "rangeEnd": "10.1.0.5"}]])}, None,
     [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.5", "rangeEnd": "10.1.0.5"}]]),
    ({IPR: j([[{"subnet": "10.1.0.0/24"}, {"subnet": "10.2.0.0/24"}], [{"subnet": "fd00::/120", "gateway": "fd00::1"}]])},
     None, [[{"subnet": "10.1.0.0/24"}, {"subnet": "10.2.0.0/24"}], [{"subnet": "fd00::/120", "gateway": "fd00::1"}]]),
])
def test_parse_ip_ranges(annotations: dict[str, str], pod_cidr: str | None, want: Any) -> None:
    # pod-chosen ranges need the operator's leave: here an allow-list covering them all
    allowed = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
    got = parse_ip_ranges(annotations, pod_cidr, allowed=allowed)
    assert (None if got is None else [[r.model_dump() for r in s] for s in got]) == want


@pytest.mark.parametrize("annotations, pod_cidr, key", [
    ({}, "10.88.0.0", "pod_cidr"),
    ({}, "banana", "pod_cidr"),
    ({}, "10.88.0.0/16,", "pod_cidr"),
    ({}, "10.88.0.0/33", "pod_cidr"),
    ({IPR: j([[{"subnet": "10.1.0.0/24"}]])}, "nope", "pod_cidr"),  # validated even when overridden
    ({IPR: ""}, None, IPR),
    ({IPR: "[]"}, None, IPR),
    ({IPR: "[[]]"}, None, IPR),
    ({IPR: j([{"subnet": "10.1.0.0/24"}])}, None, IPR),  # missing the outer level
    ({IPR: j({"subnet": "10.1.0.0/24"})}, None, IPR),
    ({IPR: j([["10.1.0.0/24"]])}, None, IPR),
    ({IPR: j([[{}]])}, None, IPR),
    ({IPR: j([[{"subnet": ""}]])}, None, IPR),
    ({IPR: j([[{"subnet": 10}]])}, None, IPR),
    ({IPR: j([[{"subnet": "10.1.0.0"}]])}, None, IPR),
    ({IPR: j([[{"subnet": "10.1.0.1/24"}]])}, None, IPR),  # host bits set
    ({IPR: j([[{"subnet": "10.1.0.0/255.255.255.0"}]])}, None, IPR),
    ({IPR: j([[{"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.1"}]])}, None, IPR),
    ({IPR: j([[{"subnet": "10.1.0.0/24", "rangeEnd": "10.1.1.0"}]])}, None, IPR),
    ({IPR: j([[{"subnet": "10.1.0.0/24", "gateway": "fd00::1"}]])}, None, IPR),
    ({IPR: j([[{"subnet": "10.1.0.0/24", "gateway": "10.1.0.x"}]])}, None, IPR),
    ({IPR: j([[{"subnet": "10.1.0.0/24", "gateway": 1}]])}, None, IPR),
    ({IPR: j([[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.20", "rangeEnd": "10.1.0.10"}]])}, None, IPR),
    ({IPR: j([[{"subnet": "10.1.0.0/24", "range_start": "10.1.0.20"}]])}, None, IPR),
    ({IPR: j([[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]])}, None, IPR),  # mixed families in one set
    ({IPR: j([[{"subnet": "fe80::%eth0/64"}]])}, None, IPR),
])
def test_parse_ip_ranges_rejects(annotations: dict[str, str], pod_cidr: str | None, key: str) -> None:
    with pytest.raises(AnnotationError) as exc:
        parse_ip_ranges(annotations, pod_cidr)
    assert exc.value.key == key


def test_ip_range_error_names_position() -> None:
    with pytest.raises(AnnotationError) as exc:
        parse_ip_ranges({IPR: j([[{"subnet": "10.0.0.0/8"}], [{"subnet": "10.1.0.0/24"}, {"subnet": "10.2.0.0/24", "gateway": "10.3.0.1"}]])}, None)
    assert exc.value.reason == "range set 1, range 1: gateway '10.3.0.1' is outside subnet 10.2.0.0/24"


def test_insert_iprange() -> None:
    caps = {"ipRanges": [[{"subnet": "10.88.0.0/16"}]]}
    out = insert_iprange(j([[{"subnet": "fd00::/64"}]]), caps)
    assert out == {"ipRanges": [[{"subnet": "10.88.0.0/16"}], [{"subnet": "fd00::/64"}]]}
    assert caps == {"ipRanges": [[{"subnet": "10.88.0.0/16"}]]}
    with pytest.raises(AnnotationError) as exc:
        insert_iprange("[[{}]]", {})
    assert exc.value.key == IPR


def test_insert_bandwidth() -> None:
    out = insert_bandwidth("10M", {"bandwidth": {"ingressRate": 5000, "ingressBurst": BURST}}, "egress")
    assert out == {"bandwidth": {"ingressRate": 5000, "ingressBurst": BURST, "egressRate": 10_000_000, "egressBurst": BURST}}
    assert insert_bandwidth("1Mi", {}) == {"bandwidth": {"ingressRate": 1_048_576, "ingressBurst": BURST}}
    with pytest.raises(AnnotationError) as exc:
        insert_bandwidth("2P", {}, "egress")
    assert exc.value.key == EGR
    with pytest.raises(AnnotationError) as exc:
        insert_bandwidth("1M", {}, "sideways")  # type: ignore[arg-type]
    assert exc.value.key == "direction"


def test_ip_range_model() -> None:
    assert IPRange(subnet="10.0.0.0/8").model_dump() == {"subnet": "10.0.0.0/8"}
    assert IPRange.model_validate({"subnet": "a", "rangeStart": "b"}).range_start == "b"


# --- Extra network planes --------------------------------------------------------------------


@pytest.mark.parametrize("value, want", [
    (None, []),
    ("[]", []),
    (j([{"name": "storage", "interface": "net1"}]), [ExtraNetwork(name="storage", interface="net1")]),
    (j([{"name": "b-net", "interface": "net2"}, {"name": "a.net_1", "interface": "net1"}, {"name": "b-net", "interface": "x"}]),
     [ExtraNetwork(name="b-net", interface="net2"), ExtraNetwork(name="a.net_1", interface="net1"),
      ExtraNetwork(name="b-net", interface="x")]),  # annotation order kept; same network on two interfaces is fine
    (j([{"name": "n", "interface": "a" * 15}]), [ExtraNetwork(name="n", interface="a" * 15)]),
    (j([{"name": "0", "interface": "é" * 7}]), [ExtraNetwork(name="0", interface="é" * 7)]),  # 14 bytes
])
def test_parse_extra_networks(value: str | None, want: list[ExtraNetwork]) -> None:
    assert parse_extra_networks({} if value is None else {NETS: value}) == want


@pytest.mark.parametrize("value", [
    "", "{", "null", "{}", j({"name": "n", "interface": "i"}), j(["n"]), j([None]),
    j([{"name": "n"}]), j([{"interface": "net1"}]),  # iSulad's hole bug: must be an error
    j([{"name": "good", "interface": "net1"}, {"name": "", "interface": "net2"}]),
    j([{"name": "n", "interface": ""}]), j([{"name": 1, "interface": "net1"}]), j([{"name": "n", "interface": 1}]),
    j([{"name": "n", "interface": None}]), j([{"name": "-n", "interface": "net1"}]), j([{"name": "n/x", "interface": "net1"}]),
    j([{"name": "n x", "interface": "net1"}]), j([{"name": "ñ", "interface": "net1"}]), j([{"name": "n\n", "interface": "net1"}]),
    j([{"name": "n", "interface": "a" * 16}]), j([{"name": "n", "interface": "é" * 8}]),
    j([{"name": "n", "interface": "."}]), j([{"name": "n", "interface": ".."}]), j([{"name": "n", "interface": "a/b"}]),
    j([{"name": "n", "interface": "a:b"}]), j([{"name": "n", "interface": "a b"}]), j([{"name": "n", "interface": "a\tb"}]),
    j([{"name": "n", "interface": "a\u00a0b"}]), j([{"name": "n", "interface": "a\x00b"}]),
    j([{"name": "n", "interface": "eth0"}]), j([{"name": "n", "interface": "lo"}]),
    j([{"name": f"n{i}", "interface": f"net{i + 1}"} for i in range(33)]),
    j([{"name": "n", "interface": "net%d"}]), j([{"name": "n", "interface": "all"}]),
    j([{"name": "n", "interface": "default"}]),
    j([{"name": "a", "interface": "net1"}, {"name": "b", "interface": "net1"}]),
    j([{"name": "n", "interface": "net1", "ips": []}]),
])
def test_parse_extra_networks_rejects(value: str) -> None:
    with pytest.raises(AnnotationError) as exc:
        parse_extra_networks({NETS: value})
    assert exc.value.key == NETS


def test_extra_networks_reserved_interfaces_configurable() -> None:
    value = j([{"name": "n", "interface": "eth0"}])
    assert parse_extra_networks({NETS: value}, reserved_interfaces=("lo",)) == [ExtraNetwork(name="n", interface="eth0")]
    with pytest.raises(AnnotationError):
        parse_extra_networks({NETS: j([{"name": "n", "interface": "net9"}])}, reserved_interfaces=("net9",))


# --- CNI_ARGS --------------------------------------------------------------------------------

BUILTIN = [("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", "ns"), ("K8S_POD_NAME", "web-0"),
           ("K8S_POD_INFRA_CONTAINER_ID", "abc123"), ("K8S_POD_UID", "u-1")]


def args(annotations: dict[str, str] | None) -> list[tuple[str, str]]:
    return build_cni_args("ns", "web-0", "abc123", "u-1", annotations)


@pytest.mark.parametrize("annotations, extra", [
    (None, []),
    ({"unrelated": "A=B"}, []),
    ({CNIARGS + "x": "FOO=bar"}, [("FOO", "bar")]),
    ({CNIARGS + "x": "FOO="}, [("FOO", "")]),
    ({CNIARGS: "FOO=bar"}, [("FOO", "bar")]),
    # sorted by annotation key, not by insertion order
    ({CNIARGS + "z": "Z=1", CNIARGS + "a": "A=1", CNIARGS + "m": "M=1"}, [("A", "1"), ("M", "1"), ("Z", "1")]),
    # first (in sorted key order) wins among extensions
    ({CNIARGS + "b": "K=second", CNIARGS + "a": "K=first"}, [("K", "first")]),
    # built-in keys are never overridden
    ({CNIARGS + "a": "K8S_POD_NAME=evil", CNIARGS + "b": "IgnoreUnknown=0", CNIARGS + "c": "K8S_POD_UID=x",
      CNIARGS + "d": "OK=1"}, [("OK", "1")]),
    ({CNIEXT: "multus"}, [("CNI_MUTLINET_EXTENSION", "multus")]),
    ({CNIEXT: ""}, [("CNI_MUTLINET_EXTENSION", "")]),
    # the dedicated annotation is reserved: an extension cannot override it
    ({CNIARGS + "a": "CNI_MUTLINET_EXTENSION=x", CNIEXT: "real", CNIARGS + "b": "B=2"},
     [("CNI_MUTLINET_EXTENSION", "real"), ("B", "2")]),
])
def test_build_cni_args(annotations: dict[str, str] | None, extra: list[tuple[str, str]]) -> None:
    assert args(annotations) == BUILTIN + extra


@pytest.mark.parametrize("annotations, key", [
    ({CNIARGS + "a": "FOO"}, CNIARGS + "a"),
    ({CNIARGS + "a": ""}, CNIARGS + "a"),
    ({CNIARGS + "a": "A=B=C"}, CNIARGS + "a"),
    ({CNIARGS + "a": "=V"}, CNIARGS + "a"),
    ({CNIARGS + "a": "A=1;B=2"}, CNIARGS + "a"),
    ({CNIARGS + "a": "A;=1"}, CNIARGS + "a"),
    ({CNIARGS + "a": "A=\x00"}, CNIARGS + "a"),
    ({CNIARGS + "a": "OK=1", CNIARGS + "b": "bad"}, CNIARGS + "b"),
    ({CNIARGS + "a": "K8S_POD_NAME=x;y"}, CNIARGS + "a"),  # invalid even though it would be skipped
    ({CNIEXT: "a;b"}, CNIEXT),
    ({CNIEXT: "a=b"}, CNIEXT),
])
def test_build_cni_args_rejects(annotations: dict[str, str], key: str) -> None:
    with pytest.raises(AnnotationError) as exc:
        args(annotations)
    assert exc.value.key == key


@pytest.mark.parametrize("field, key", [(0, "metadata.namespace"), (1, "metadata.name"), (2, "sandbox_id"), (3, "metadata.uid")])
@pytest.mark.parametrize("bad", ["a;b", "a=b", "a\x00b"])
def test_build_cni_args_rejects_bad_builtin(field: int, key: str, bad: str) -> None:
    values = ["ns", "n", "id", "uid"]
    values[field] = bad
    with pytest.raises(AnnotationError) as exc:
        build_cni_args(*values, None)  # type: ignore[arg-type]
    assert exc.value.key == key


# --- DNS ----------------------------------------------------------------------------------


class FakeDNS:
    def __init__(self, servers: list[str], searches: list[str], options: list[str]) -> None:
        self.servers, self.searches, self.options = servers, searches, options


@pytest.mark.parametrize("dns, want", [
    (None, None),
    ({}, None),
    ({"servers": [], "searches": [], "options": []}, None),
    ({"servers": ["10.96.0.10", "fd00::10"], "searches": ["ns.svc.cluster.local", "svc.cluster.local"],
      "options": ["ndots:5"]},
     {"servers": ["10.96.0.10", "fd00::10"], "searches": ["ns.svc.cluster.local", "svc.cluster.local"], "options": ["ndots:5"]}),
    ({"servers": ["1.1.1.1"]}, {"servers": ["1.1.1.1"]}),
    (FakeDNS([], ["a"], []), {"searches": ["a"]}),
    (DNSConfig(servers=["fe80::1%eth0"], options=["edns0"]), {"servers": ["fe80::1%eth0"], "options": ["edns0"]}),
    ({"servers": ("8.8.8.8",)}, {"servers": ["8.8.8.8"]}),
])
def test_dns_capability(dns: Any, want: Any) -> None:
    assert dns_capability(dns) == want


@pytest.mark.parametrize("dns, key", [
    ({"servers": ["dns.example"]}, "dns_config.servers[0]"),
    ({"servers": ["1.1.1.1", ""]}, "dns_config.servers[1]"),
    ({"servers": "1.1.1.1"}, "dns_config.servers"),
    ({"servers": [1]}, "dns_config.servers[0]"),
    ({"searches": ["a b"]}, "dns_config.searches[0]"),
    ({"searches": ["ok", ""]}, "dns_config.searches[1]"),
    ({"options": ["ndots:5", "x\ny"]}, "dns_config.options[1]"),
    ({"options": 5}, "dns_config.options"),
])
def test_dns_capability_rejects(dns: Any, key: str) -> None:
    with pytest.raises(AnnotationError) as exc:
        dns_capability(dns)
    assert exc.value.key == key


# --- Aggregate -------------------------------------------------------------------------------


def test_capability_args_everything() -> None:
    annotations = {ING: "10M", EGR: "1Mi", PM: j([{"hostPort": 9090, "containerPort": 90, "protocol": "udp"}]),
                   "app": "web"}
    caps = capability_args(annotations, [cri(), cri(host_port=0)], "10.88.0.0/16,fd00::/64",
                           {"servers": ["10.96.0.10"], "searches": ["svc"], "options": []})
    assert list(caps) == ["portMappings", "bandwidth", "ipRanges", "dns", "io.kubernetes.cri.pod-annotations"]
    assert caps == {
        "portMappings": [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"},
                         {"hostPort": 9090, "containerPort": 90, "protocol": "udp"}],
        "bandwidth": {"ingressRate": 10_000_000, "ingressBurst": BURST, "egressRate": 1_048_576, "egressBurst": BURST},
        "ipRanges": [[{"subnet": "10.88.0.0/16"}], [{"subnet": "fd00::/64"}]],
        "dns": {"servers": ["10.96.0.10"], "searches": ["svc"]},
        "io.kubernetes.cri.pod-annotations": annotations,
    }
    json.dumps(caps)  # plain JSON-ready data


def test_capability_args_empty() -> None:
    assert capability_args({}, [], None, None) == {}
    assert capability_args(None, None, "", {}) == {}


@pytest.mark.parametrize("annotations, mappings, pod_cidr, dns, key", [
    ({ING: "1"}, [cri()], None, None, ING),
    ({PM: "["}, [], None, None, PM),
    ({}, [cri(host_port=1 << 20)], None, None, "port_mappings[0].host_port"),
    ({IPR: "[[]]"}, [], None, None, IPR),
    ({}, [], "x/y", None, "pod_cidr"),
    ({}, [], None, {"servers": ["x"]}, "dns_config.servers[0]"),
    ({"weird": 1}, [], None, None, "weird"),
])
def test_capability_args_rejects(annotations: Any, mappings: Any, pod_cidr: Any, dns: Any, key: str) -> None:
    with pytest.raises(AnnotationError) as exc:
        capability_args(annotations, mappings, pod_cidr, dns)
    assert exc.value.key == key


# --- Properties: any input -> a valid value or AnnotationError naming the key ------------------

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
ports = st.integers(min_value=-2, max_value=65537) | st.sampled_from([80, 443, 8080]) | json_scalars
ips = st.sampled_from(["", "10.0.0.1", "10.0.0.0", "::1", "fd00::5", "10.0.0.300", "fe80::1%eth0", "x"]) | json_scalars
protocols = st.sampled_from(["tcp", "UDP", "Sctp", "icmp", "", 0, 1, 2, 3]) | json_scalars


def near(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects that are mostly well formed: each known field present or not, sometimes junk."""
    return st.fixed_dictionaries({}, optional=fields) | st.fixed_dictionaries(
        {}, optional={**fields, "extra": json_scalars})


pm_entries = near({"hostPort": ports, "containerPort": ports, "protocol": protocols, "hostIP": ips})
subnets = st.sampled_from(["10.0.0.0/24", "10.0.0.1/24", "fd00::/64", "10.0.0.0", "10.0.0.0/33", ""]) | json_scalars
range_addrs = st.sampled_from(["", "10.0.0.1", "10.0.0.200", "10.0.1.1", "fd00::1", "x"]) | json_scalars
range_entries = near({"subnet": subnets, "rangeStart": range_addrs, "rangeEnd": range_addrs, "gateway": range_addrs})
ifnames = st.sampled_from(["net1", "net2", "eth0", "lo", ".", "a" * 16, "a b", "a/b", "é" * 8]) | st.text(max_size=17) | json_scalars
net_names = st.sampled_from(["default", "storage", "a.b_c-d", "-x", ""]) | st.text(max_size=10) | json_scalars
net_entries = near({"name": net_names, "interface": ifnames})


def as_text(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    return st.text(max_size=40) | json_values.map(json.dumps) | strategy.map(json.dumps)


def check_key(fn: Any, key: str) -> Any:
    try:
        return fn()
    except AnnotationError as exc:
        assert exc.key == key, (exc.key, str(exc))
        assert str(exc).startswith(f"{key}: ") and exc.reason
        return None


@PROPS
@given(as_text(st.lists(pm_entries, max_size=4)))
def test_property_port_mapping_annotation(value: str) -> None:
    got = check_key(lambda: parse_port_mappings([], {PM: value}), PM)
    for pm in got or []:
        assert 1 <= pm.host_port <= 65535 and 1 <= pm.container_port <= 65535 and pm.protocol in ("tcp", "udp", "sctp")
    if got:
        idents = [(pm.host_port, pm.protocol, pm.host_ip) for pm in got]
        assert len(set(idents)) == len(idents)


@PROPS
@given(st.lists(st.fixed_dictionaries({}, optional={"host_port": ports, "container_port": ports,
                                                     "protocol": protocols, "host_ip": ips}) | json_values, max_size=4))
def test_property_cri_port_mappings(mappings: list[Any]) -> None:
    try:
        got = parse_port_mappings(mappings, None)
    except AnnotationError as exc:
        assert exc.key.startswith("port_mappings[")
    else:
        assert all(isinstance(pm, PortMapping) for pm in got)


@PROPS
@given(st.sampled_from([ING, EGR, ENG]), st.text(max_size=30) | st.from_regex(r"-?[0-9]{1,6}(\.[0-9]{1,3})?[kMGTPm]?i?", fullmatch=True))
def test_property_bandwidth(key: str, value: str) -> None:
    bw = check_key(lambda: parse_bandwidth({key: value}), key)
    if bw is not None:
        rate = bw.ingress_rate if key == ING else bw.egress_rate
        assert rate is not None and 1_000 <= rate <= 10**15


@PROPS
@given(as_text(st.lists(st.lists(range_entries, max_size=3) | json_values, max_size=3)))
def test_property_ip_ranges(value: str) -> None:
    got = check_key(lambda: parse_ip_ranges({IPR: value}, None), IPR)
    for range_set in got or []:
        assert range_set and all(isinstance(r, IPRange) and r.subnet for r in range_set)


@PROPS
@given(st.text(max_size=40) | st.lists(st.sampled_from(["10.0.0.0/8", "fd00::/64", "", " ", "x", "10.0.0.0"]),
                                         max_size=3).map(",".join))
def test_property_pod_cidr(pod_cidr: str) -> None:
    got = check_key(lambda: parse_ip_ranges({}, pod_cidr), "pod_cidr")
    for range_set in got or []:
        assert len(range_set) == 1


@PROPS
@given(as_text(st.lists(net_entries, max_size=4)))
def test_property_extra_networks(value: str) -> None:
    got = check_key(lambda: parse_extra_networks({NETS: value}), NETS)
    for net in got or []:
        assert net.name and net.interface and len(net.interface.encode()) <= 15
        assert net.interface not in ("lo", "eth0")
    if got:
        assert len({n.interface for n in got}) == len(got)


@PROPS
@given(st.dictionaries(st.sampled_from([CNIARGS + s for s in "abc"] + [CNIEXT, "other"]),
                       st.text(max_size=12) | st.sampled_from(["A=1", "K8S_POD_NAME=x", "B=", "=", "A=1;B=2"]),
                       max_size=4))
def test_property_cni_args(annotations: dict[str, str]) -> None:
    try:
        got = args(annotations)
    except AnnotationError as exc:
        assert exc.key in annotations
    else:
        assert got[:5] == BUILTIN
        keys = [k for k, _ in got]
        assert len(set(keys)) == len(keys)
        assert all(";" not in k + v and "\0" not in k + v and "=" not in k + v for k, v in got)


@PROPS
@given(st.fixed_dictionaries({}, optional={"servers": st.lists(st.sampled_from(["1.1.1.1", "::1", "x", ""]) | json_scalars, max_size=3) | json_scalars,
                                           "searches": st.lists(st.text(max_size=8), max_size=3) | json_scalars,
                                           "options": st.lists(st.text(max_size=8), max_size=3) | json_scalars}))
def test_property_dns(dns: dict[str, Any]) -> None:
    try:
        got = dns_capability(dns)
    except AnnotationError as exc:
        assert exc.key.startswith("dns_config.")
    else:
        assert got is None or set(got) <= {"servers", "searches", "options"}


@PROPS
@given(st.dictionaries(st.sampled_from([PM, IPR, ING, EGR, ENG, "app"]), st.text(max_size=20) | json_values.map(json.dumps),
                       max_size=4))
def test_property_capability_args(annotations: dict[str, str]) -> None:
    try:
        caps = capability_args(annotations, [], "10.0.0.0/16", None)
    except AnnotationError as exc:
        assert exc.key in annotations
    else:
        assert set(caps) <= {"portMappings", "bandwidth", "ipRanges", "dns", "io.kubernetes.cri.pod-annotations"}
        assert all(caps.values())
        json.dumps(caps)


def test_module_exports_constants() -> None:
    assert ann.CAP_POD_ANNOTATIONS == "io.kubernetes.cri.pod-annotations"
    assert ann.MAX_ANNOTATION_VALUE_BYTES == 65536


@pytest.mark.parametrize("pod_cidr, allowed", [("10.1.0.0/24", None), (None, [ipaddress.ip_network("10.1.0.0/24")])],
                         ids=["pod-cidr", "allow-list"])
def test_a_pod_may_not_choose_the_gateway_the_host_bridge_would_take(pod_cidr: str | None, allowed: Any) -> None:
    """The bridge plugin gives its bridge the range's gateway and refuses every later pod that
    has another: a pod-chosen gateway would break its network for everyone (outside probe)."""
    value = j([[{"subnet": "10.1.0.0/24", "gateway": "10.1.0.200"}]])
    with pytest.raises(AnnotationError, match="may not choose its network's gateway") as info:
        parse_ip_ranges({IPR: value}, pod_cidr, allowed=allowed)
    assert info.value.key == IPR and "10.1.0.200" in info.value.reason and "10.1.0.1" in info.value.reason
    same = parse_ip_ranges({IPR: j([[{"subnet": "10.1.0.0/24", "gateway": "10.1.0.1"}]])}, pod_cidr, allowed=allowed)
    assert same is not None and same[0][0].gateway == "10.1.0.1"  # host-local's own: harmless


def test_a_narrower_subnet_inside_the_pod_cidr_is_that_part_of_it() -> None:
    got = parse_ip_ranges({IPR: j([[{"subnet": "10.1.0.64/26", "rangeEnd": "10.1.0.100"}],
                                   [{"subnet": "10.1.0.0/30"}]])}, "10.1.0.0/24")
    assert got is not None
    assert [[r.model_dump() for r in s] for s in got] == [
        [{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.64", "rangeEnd": "10.1.0.100"}],
        [{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.1", "rangeEnd": "10.1.0.3"}]]
    with pytest.raises(AnnotationError, match="holds no address"):
        parse_ip_ranges({IPR: j([[{"subnet": "10.1.0.0/32"}]])}, "10.1.0.0/24")
