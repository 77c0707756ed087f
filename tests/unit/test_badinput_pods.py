"""Bad-input suite, issue 11: pod identities and node-wide resources a pod can claim.

Generated classes: identity collisions (distinct identities, NUL/JSON/separator/unicode
pieces, never one id); special-purpose subnets (never a pod range, never a bridge network);
pod-chosen IP ranges inside/outside what the operator allowed; host port conflicts between
pods; ListPodSandbox answers that must fit their budget whatever the pods carry.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adaptors.cri import host_ports, ip_ranges
from adaptors.native import bridge
from badinput_strategies import (ORDINARY_BLOCKS, SPECIAL_BLOCKS, identities, identity_pairs, props, subnets_in,
                                 wire_mappings)
from cri_net.cri.pb.runtime.v1 import api_pb2 as pb
from cri_net.libcni import conf_list_from_file
from adaptors.cri import annotations as ann
from cri_net.network.errors import InvalidRequestError, NetworkApiError
from cri_net.server import limits
from cri_net.server.sandbox import legacy_sandbox_id, sandbox_id
from cri_net.server.service import OMITTED_ANNOTATION, fit_list
from tests.reliability import record

SUITE = "bad-input"
IPR = ann.IP_RANGES_ANNOTATION


def _rec(scenario: str) -> None:
    record(scenario, runs=1, audited="verdict against an independent oracle; error names the key", suite=SUITE)


# ---- identities ----------------------------------------------------------------------------

def test_nul_joined_identities_collided_before_and_do_not_now() -> None:
    """Finding 13: the old id hashed NUL-joined fields, so these two pods shared one id."""
    a, b = ("default", "x\0y", "u", 0), ("default", "x", "y\0u", 0)
    assert legacy_sandbox_id(*a) == legacy_sandbox_id(*b)
    assert sandbox_id(*a) != sandbox_id(*b)


@props(300, 5000)
@given(identity_pairs)
def test_distinct_identities_never_share_an_id(pair: tuple[tuple[str, str, str, int], ...]) -> None:
    _rec("identity: distinct pod identities (NUL, JSON, separators, unicode) never share a sandbox id")
    first, second = pair
    assert sandbox_id(*first) != sandbox_id(*second)
    assert len(sandbox_id(*first)) == 64


@props(200, 3000)
@given(identities)
def test_identity_validation_is_one_rule(identity: tuple[str, str, str, int]) -> None:
    """Every network mode uses validate_pod_identity: it accepts exactly what CNI_ARGS can carry."""
    _rec("identity: one validation rule for every network mode")
    namespace, name, uid, _ = identity
    try:
        ann.validate_pod_identity(namespace, name, uid)
    except ann.AnnotationError as exc:
        assert exc.key.startswith("metadata.")
        with pytest.raises(ann.AnnotationError):
            ann.build_cni_args(namespace, name, "a" * 64, uid, {})
    else:
        ann.build_cni_args(namespace, name, "a" * 64, uid, {})


# ---- special-purpose subnets ---------------------------------------------------------------

def _ranges(*subnets: str, **extra: str) -> dict[str, str]:
    return {IPR: json.dumps([[{"subnet": s, **extra}] for s in subnets])}


@props(200, 3000)
@given(subnets_in(SPECIAL_BLOCKS, supernets=True))
def test_special_subnets_are_never_a_pod_range_nor_a_bridge(subnet: str) -> None:
    _rec("ip ranges: special-purpose subnets (annotation, pod CIDR, network create) refused")
    everything = [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    with pytest.raises(ann.AnnotationError) as info:
        ann.parse_ip_ranges(_ranges(subnet), None, allowed=everything)
    assert info.value.key == IPR and subnet in info.value.reason
    with pytest.raises(InvalidRequestError) as err:
        bridge.plan("n", subnet, None, False, [], set(), [])
    assert err.value.args and "subnet" in str(err.value) and str(ipaddress.ip_network(subnet)) in str(err.value)


@pytest.mark.parametrize("subnet", ["127.0.0.0/24", "::/64", "224.1.0.0/24", "0.0.0.0/24", "255.255.255.0/24",
                                    "169.254.0.0/24", "fe80::/64", "0.0.0.0/0", "::1/128", "ff02::/16"])
def test_network_create_refuses_the_reported_subnets(subnet: str) -> None:
    """Finding 15, the subnets of the report."""
    with pytest.raises(InvalidRequestError, match="subnet"):
        bridge.plan("n", subnet, None, False, [], set(), [])


def test_network_create_overlap_counts_host_loopback_and_link_local() -> None:
    host = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("169.254.0.0/16")]
    # an auto-picked subnet never lands there either
    p = bridge.plan("n", None, None, False, [], set(), host)
    assert not any(p.subnet.overlaps(h) for h in host)
    busy = [ipaddress.ip_network("10.77.0.1/32")]
    with pytest.raises(InvalidRequestError, match="overlaps"):
        bridge.plan("n", "10.77.0.0/24", None, False, [], set(), busy)


@props(200, 3000)
@given(subnets_in(ORDINARY_BLOCKS))
def test_ordinary_subnets_are_not_special(subnet: str) -> None:
    _rec("ip ranges: ordinary private subnets accepted inside the allow-list")
    net = ipaddress.ip_network(subnet)
    assert ann.special_purpose(net) is None
    got = ann.parse_ip_ranges(_ranges(subnet), None, allowed=[net])
    assert got is not None and got[0][0].subnet == subnet


# ---- pod-chosen ranges against what the operator allowed -----------------------------------

@props(300, 5000)
@given(subnets_in(ORDINARY_BLOCKS), subnets_in(ORDINARY_BLOCKS), st.booleans())
def test_pod_ranges_must_lie_inside_the_allowed(subnet: str, allowed_cidr: str, as_pod_cidr: bool) -> None:
    _rec("ip ranges: pod-chosen subnets inside/outside the pod CIDR or allow-list")
    net, allowed = ipaddress.ip_network(subnet), ipaddress.ip_network(allowed_cidr)
    inside = net.version == allowed.version and net.subnet_of(allowed)  # type: ignore[arg-type]
    kwargs = {"pod_cidr": allowed_cidr, "allowed": None} if as_pod_cidr else {"pod_cidr": None, "allowed": [allowed]}
    try:
        got = ann.parse_ip_ranges(_ranges(subnet), kwargs["pod_cidr"], allowed=kwargs["allowed"])
    except ann.AnnotationError as exc:
        assert exc.key == IPR and subnet in exc.reason
        # inside, only a range of the pod CIDR's network or broadcast address alone is refused
        assert not inside or (as_pod_cidr and "holds no address" in exc.reason), exc
    else:
        assert inside and got is not None
        r = got[0][0]
        if as_pod_cidr and net != allowed:  # narrower: that part of the pod CIDR, its gateway unchanged
            assert r.subnet == allowed_cidr and not r.gateway, r
            start, end = ipaddress.ip_address(r.range_start), ipaddress.ip_address(r.range_end)
            assert net.network_address <= start <= end <= net.broadcast_address, r  # type: ignore[operator]
            assert allowed.network_address < start and end <= allowed.broadcast_address, r  # type: ignore[operator]
        else:
            assert r.subnet == subnet


def test_without_pod_cidr_or_allow_list_the_annotation_is_refused() -> None:
    with pytest.raises(ann.AnnotationError, match="allowedIPRanges") as info:
        ann.parse_ip_ranges(_ranges("10.1.0.0/24"), None)
    assert info.value.key == IPR


@pytest.mark.parametrize("extra, what", [({"gateway": "10.1.0.0"}, "gateway"), ({"gateway": "10.1.0.255"}, "gateway"),
                                         ({"rangeStart": "10.2.0.1"}, "rangeStart"), ({"gateway": "10.2.0.1"}, "gateway"),
                                         ({"rangeEnd": "fd00::1"}, "rangeEnd")])
def test_range_addresses_lie_inside_the_subnet(extra: dict[str, str], what: str) -> None:
    with pytest.raises(ann.AnnotationError, match=what) as info:
        ann.parse_ip_ranges(_ranges("10.1.0.0/24", **extra), None, allowed=[ipaddress.ip_network("10.0.0.0/8")])
    assert info.value.key == IPR


def _conflist(tmp_path: Path, cri_net: object) -> object:
    doc = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge"}]}
    if cri_net is not None:
        doc["criNet"] = cri_net
    path = tmp_path / "n.conflist"
    path.write_text(json.dumps(doc))
    return conf_list_from_file(str(path))


@pytest.mark.parametrize("value, want", [(None, []), ({}, []), ({"allowedIPRanges": []}, []),
                                         ({"allowedIPRanges": ["10.0.0.0/8", "fd00::/8"]},
                                          [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")])])
def test_config_allow_list(tmp_path: Path, value: object, want: list[object]) -> None:
    assert ip_ranges.config_allow_list(_conflist(tmp_path, value)) == want  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [[], "10.0.0.0/8", {"allowedIPRanges": "10.0.0.0/8"},
                                   {"allowedIPRanges": ["10.0.0.1/8"]}, {"allowedIPRanges": [10]},
                                   {"allowedIPRanges": ["banana"]}])
def test_config_allow_list_errors_name_file_and_key(tmp_path: Path, value: object) -> None:
    with pytest.raises(NetworkApiError) as info:
        ip_ranges.config_allow_list(_conflist(tmp_path, value))  # type: ignore[arg-type]
    assert "n.conflist" in str(info.value) and "criNet" in str(info.value)


# ---- host ports ----------------------------------------------------------------------------

def _oracle(a: dict[str, object], b: dict[str, object]) -> bool:
    def norm(m: dict[str, object]) -> tuple[object, str, str]:
        text = str(m.get("hostIP") or "")
        ip = ipaddress.ip_address(text) if text else None  # one address, whatever its spelling
        return m["hostPort"], str(m.get("protocol") or "tcp").lower(), "*" if ip is None or ip.is_unspecified else ip
    (pa, xa, ia), (pb_, xb, ib) = norm(a), norm(b)
    return pa == pb_ and xa == xb and (ia == ib or "*" in (ia, ib))


@props(300, 5000)
@given(wire_mappings, wire_mappings)
def test_host_port_conflicts(a: dict[str, object], b: dict[str, object]) -> None:
    _rec("host ports: conflicts between two pods' mappings (port, protocol, host IP, wildcards)")
    assert host_ports.conflicts(a, b) == host_ports.conflicts(b, a) == _oracle(a, b)


# ---- list budget ---------------------------------------------------------------------------

@props(60, 600)
@given(st.lists(st.tuples(st.integers(0, 300_000), st.integers(0, 60_000)), max_size=40), st.integers(10_000, 4_000_000))
def test_list_fits_its_budget(sizes: list[tuple[int, int]], budget: int) -> None:
    _rec("list budget: ListPodSandbox answers fit whatever the pods' metadata sizes")
    items = [pb.PodSandbox(id=f"{i:064x}", metadata=pb.PodSandboxMetadata(name=f"p{i}", uid="u", namespace="ns"),
                           annotations={"a": "x" * a} if a else {}, labels={"l": "y" * lab} if lab else {})
             for i, (a, lab) in enumerate(sizes)]
    before = [(i.id, i.metadata.name, bool(i.annotations), bool(i.labels)) for i in items]
    total = pb.ListPodSandboxResponse(items=items).ByteSize()
    trimmed = fit_list(items, budget)
    assert [(i.id, i.metadata.name) for i in items] == [b[:2] for b in before]  # every pod listed, identity intact
    assert (trimmed == 0) == (total <= budget)
    assert pb.ListPodSandboxResponse(items=items).ByteSize() <= budget  # pods here are small without metadata
    for item, (_, _, had_annotations, had_labels) in zip(items, before):
        omitted = item.annotations.get(OMITTED_ANNOTATION, "").split(",")
        assert ("a" in item.annotations) == had_annotations or "annotations" in omitted
        assert bool(item.labels) == had_labels or "labels" in omitted


@pytest.mark.parametrize("labels, annotations, field", [
    ({}, {"a": "x" * (limits.MAX_POD_METADATA_BYTES)}, "config.annotations"),
    ({"l": "y" * (limits.MAX_POD_METADATA_BYTES // 2)}, {"a": "x" * (limits.MAX_POD_METADATA_BYTES // 2)},
     "config.annotations"),
    ({"l": "y" * (limits.MAX_POD_METADATA_BYTES)}, {}, "config.labels"),
])
def test_pod_metadata_limit(labels: dict[str, str], annotations: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        limits.check_pod_metadata(labels, annotations, "")
    assert field in str(info.value)
    limits.check_pod_metadata({}, {"a": "x" * (limits.MAX_POD_METADATA_BYTES - 1)}, "")


@props(60, 1000)
@given(st.lists(wire_mappings, min_size=1, max_size=3), st.lists(wire_mappings, min_size=1, max_size=3))
def test_host_port_claims_against_the_cache(tmp_path_factory: pytest.TempPathFactory, held: list[dict[str, object]],
                                            wanted: list[dict[str, object]]) -> None:
    """A pod's claim against another pod's cached attachment (what a live pod holds)."""
    _rec("host ports: a claim against a live pod's cached portMappings")
    from adaptors.cri import CRIAdaptor
    from cri_net.config import Settings
    from cri_net.libcni import CacheRecord, ResultCache

    tmp = tmp_path_factory.mktemp("claims")
    ResultCache(str(tmp)).write(CacheRecord(
        container_id="a" * 64, config=b'{"cniVersion": "1.0.0", "name": "net", "plugins": []}', ifname="eth0",
        network_name="net", netns="/x", cni_args=[("K8S_POD_NAMESPACE", "ns"), ("K8S_POD_NAME", "holder")],
        capability_args={"portMappings": held}, result={"cniVersion": "1.0.0"}))
    adaptor = CRIAdaptor(Settings(conf_dir=str(tmp / "conf"), cache_dir=str(tmp), bin_dirs=[str(tmp)],
                                  state_dir=str(tmp / "s"), netns_dir=str(tmp / "n")))
    expected = any(_oracle(w, h) for w in wanted for h in held)
    try:
        with host_ports.claim(adaptor.operator, "b" * 64, "ns/taker", wanted):
            pass
    except InvalidRequestError as exc:
        assert expected and exc.key == "port_mappings" and "ns/holder" in exc.reason
    else:
        assert not expected
    with host_ports.claim(adaptor.operator, "a" * 64, "ns/holder", held):  # the holder itself: a retry
        pass
