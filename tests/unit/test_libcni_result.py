"""cri_net.libcni.result: result families, parsing, conversion and Go-compatible rendering.

Go reference (libcni v1.3): pkg/types/020/types.go, pkg/types/040/types.go,
pkg/types/100/types.go, pkg/types/types.go (DNS, Route), pkg/types/internal/convert.go.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cri_net.libcni import result as R
from cri_net.libcni.errors import CNIError, ErrorCode
from cri_net.libcni.result import Result020, Result040, Result100, convert, parse_result

VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
FAMILY = {v: Result020 for v in R.FAMILY_020} | {v: Result040 for v in R.FAMILY_040} | {v: Result100 for v in R.FAMILY_100}

FAST = settings(derandomize=True, database=None, max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DNS_FULL = {"nameservers": ["10.1.0.1", "fd00::1"], "domain": "example.com", "search": ["a.example.com", "example.com"],
            "options": ["ndots:5"]}

# Canonical samples, written exactly as Go would marshal them (struct field order).
SAMPLE_020 = {
    "cniVersion": "0.2.0",
    "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1",
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}]},
    "ip6": {"ip": "fd00::5/64", "gateway": "fd00::1", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
    "dns": DNS_FULL,
}
SAMPLE_040 = {
    "cniVersion": "0.4.0",
    "interfaces": [{"name": "cni0", "mac": "0a:58:0a:01:00:01"},
                   {"name": "eth0", "mac": "0a:58:0a:01:00:05", "sandbox": "/var/run/netns/cni-1"}],
    "ips": [{"version": "4", "interface": 1, "address": "10.1.0.5/16", "gateway": "10.1.0.1"},
            {"version": "4", "interface": 1, "address": "10.2.0.5/16"},
            {"version": "6", "interface": 1, "address": "fd00::5/64", "gateway": "fd00::1"}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "::/0"}],
    "dns": DNS_FULL,
}
SAMPLE_100 = {
    "cniVersion": "1.0.0",
    "interfaces": SAMPLE_040["interfaces"],
    "ips": [{k: v for k, v in ip.items() if k != "version"} for ip in SAMPLE_040["ips"]],
    "routes": SAMPLE_040["routes"],
    "dns": DNS_FULL,
}

# What each family's sample becomes in each other family (cniVersion filled in per target).
EXPECTED = {
    ("020", "020"): SAMPLE_020,
    ("020", "040"): {
        "ips": [{"version": "4", "address": "10.1.0.5/16", "gateway": "10.1.0.1"},
                {"version": "6", "address": "fd00::5/64", "gateway": "fd00::1"}],
        # ip4 routes first, then ip6 routes
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}, {"dst": "::/0", "gw": "fd00::1"}],
        "dns": DNS_FULL,
    },
    ("020", "100"): {
        "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1"}, {"address": "fd00::5/64", "gateway": "fd00::1"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}, {"dst": "::/0", "gw": "fd00::1"}],
        "dns": DNS_FULL,
    },
    # down to 0.2.0: first address of each family, routes split by their family, interfaces lost
    ("040", "020"): {
        "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]},
        "ip6": {"ip": "fd00::5/64", "gateway": "fd00::1", "routes": [{"dst": "::/0"}]},
        "dns": DNS_FULL,
    },
    ("040", "040"): SAMPLE_040,
    ("040", "100"): SAMPLE_100,
    ("100", "020"): None,  # same as ("040", "020")
    ("100", "040"): SAMPLE_040,
    ("100", "100"): SAMPLE_100,
}
EXPECTED[("100", "020")] = EXPECTED[("040", "020")]


def fam(v: str) -> str:
    return {Result020: "020", Result040: "040", Result100: "100"}[FAMILY[v]]


def sample(v: str) -> dict[str, Any]:
    base = {"020": SAMPLE_020, "040": SAMPLE_040, "100": SAMPLE_100}[fam(v)]
    return {**copy.deepcopy(base), "cniVersion": v}


def expected(src: str, tgt: str) -> dict[str, Any]:
    exp = copy.deepcopy(EXPECTED[(fam(src), fam(tgt))])
    exp.pop("cniVersion", None)
    return {"cniVersion": tgt, **exp}


def err_of(func, *args, **kwargs) -> CNIError:
    with pytest.raises(CNIError) as info:
        func(*args, **kwargs)
    return info.value


# =========================================================================== parsing


@pytest.mark.parametrize("v", VERSIONS)
def test_parse_each_version(v: str) -> None:
    r = parse_result(sample(v))
    assert type(r) is FAMILY[v]
    assert r.cniVersion == v
    assert R.result_version(r) == v
    assert r.to_dict() == sample(v)


def test_parse_020_fields() -> None:
    r = parse_result(sample("0.2.0"))
    assert isinstance(r, Result020)
    assert r.ip4 is not None and r.ip4.ip == "10.1.0.5/16" and r.ip4.gateway == "10.1.0.1"
    assert [x.dst for x in r.ip4.routes] == ["0.0.0.0/0", "192.168.0.0/16"]
    assert r.ip4.routes[0].gw is None and r.ip4.routes[1].gw == "10.1.0.254"
    assert r.ip6 is not None and r.ip6.ip == "fd00::5/64"
    assert r.dns.nameservers == ["10.1.0.1", "fd00::1"] and r.dns.domain == "example.com"


def test_parse_040_fields() -> None:
    r = parse_result(sample("0.3.1"))
    assert isinstance(r, Result040)
    assert [i.name for i in r.interfaces] == ["cni0", "eth0"]
    assert r.interfaces[1].sandbox == "/var/run/netns/cni-1"
    assert [(ip.version, ip.interface, ip.address, ip.gateway) for ip in r.ips] == [
        ("4", 1, "10.1.0.5/16", "10.1.0.1"), ("4", 1, "10.2.0.5/16", None), ("6", 1, "fd00::5/64", "fd00::1")]
    assert [ip.family for ip in r.ips] == [4, 4, 6]
    assert [rt.is_ipv4 for rt in r.routes] == [True, False]


def test_parse_110_extended_fields() -> None:
    r = parse_result({
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "mac": "aa", "mtu": 1400, "sandbox": "/n", "socketPath": "/run/s.sock",
                        "pciID": "0000:03:00.1"}],
        "ips": [{"interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1", "mtu": 1300, "advmss": 1260, "priority": 10, "table": 100,
                    "scope": 0}],
    })
    assert isinstance(r, Result100)
    i = r.interfaces[0]
    assert (i.mtu, i.socketPath, i.pciID) == (1400, "/run/s.sock", "0000:03:00.1")
    rt = r.routes[0]
    assert (rt.mtu, rt.advmss, rt.priority, rt.table, rt.scope) == (1300, 1260, 10, 100, 0)


@pytest.mark.parametrize(
    ("data", "default", "expected_version", "expected_type"),
    [
        ({"ip4": {"ip": "10.0.0.2/24"}}, "", "0.1.0", Result020),  # no version anywhere: 0.1.0
        ({"cniVersion": "", "ip4": {"ip": "10.0.0.2/24"}}, "", "0.1.0", Result020),
        ({"ip4": {"ip": "10.0.0.2/24"}}, "0.2.0", "0.2.0", Result020),
        ({"ips": [{"version": "4", "address": "10.0.0.2/24"}]}, "0.3.1", "0.3.1", Result040),
        ({"cniVersion": "", "ips": [{"address": "10.0.0.2/24"}]}, "1.0.0", "1.0.0", Result100),
        ({"ips": [{"address": "10.0.0.2/24"}]}, "1.1.0", "1.1.0", Result100),
        # an explicit cniVersion wins over the config's
        ({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.2/24"}]}, "1.1.0", "0.4.0", Result040),
    ],
)
def test_missing_version_takes_config_version(data, default, expected_version, expected_type) -> None:
    r = parse_result(data, default)
    assert type(r) is expected_type
    assert r.cniVersion == expected_version


def test_unknown_keys_are_ignored() -> None:
    r = parse_result({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "extra": 1}], "vendor": {"x": 1}})
    d = r.to_dict()
    assert "vendor" not in d
    assert d["ips"] == [{"address": "10.0.0.2/24"}]


@pytest.mark.parametrize("v", ["0.5.0", "0.3.2", "1.2.0", "2.0.0", "1.0", "1", "abc", "v1.0.0"])
def test_unsupported_version_is_code_1(v: str) -> None:
    err = err_of(parse_result, {"cniVersion": v})
    assert err.code == ErrorCode.INCOMPATIBLE_CNI_VERSION == 1
    assert v in str(err)
    err = err_of(parse_result, {}, v)  # via the config's version too
    assert err.code == 1


@pytest.mark.parametrize("data", [[], "x", None, 1])
def test_non_object_is_code_6(data: Any) -> None:
    assert err_of(parse_result, data).code == ErrorCode.DECODING_FAILURE == 6


@pytest.mark.parametrize("v", [1, 1.0, ["1.0.0"], {"v": 1}, True])
def test_non_string_version_is_code_6(v: Any) -> None:
    assert err_of(parse_result, {"cniVersion": v}).code == 6


BAD_CIDRS = ["10.0.0.1", "fd00::1", "garbage", "", "10.0.0.256/24", "10.0.0.1/33", "fd00::1/129", "10.0.0.1/", "/24",
             "10.0.0.1/-1", "10.0.0.1/24/1", " 10.0.0.1/24", "10.0.0.1/24 ", "10.0.0/24", "::g/64"]
BAD_IPS = ["garbage", "10.0.0.1/24", "10.0.0.256", "fd00::g", " 10.0.0.1", "1.2.3"]


@pytest.mark.parametrize("bad", BAD_CIDRS)
@pytest.mark.parametrize(
    "make",
    [
        lambda a: {"cniVersion": "1.1.0", "ips": [{"address": a}]},
        lambda a: {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}], "routes": [{"dst": a}]},
        lambda a: {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": a}]},
        lambda a: {"cniVersion": "0.3.0", "routes": [{"dst": a}]},
        lambda a: {"cniVersion": "0.2.0", "ip4": {"ip": a}},
        lambda a: {"cniVersion": "0.1.0", "ip6": {"ip": "fd00::2/64", "routes": [{"dst": a}]}},
    ],
    ids=["100-address", "100-route-dst", "040-address", "040-route-dst", "020-ip", "020-route-dst"],
)
def test_invalid_cidr_is_code_6(make, bad: str) -> None:
    err = err_of(parse_result, make(bad))
    assert err.code == ErrorCode.DECODING_FAILURE
    assert "failed to decode" in err.msg


@pytest.mark.parametrize("bad", BAD_IPS)
@pytest.mark.parametrize(
    "make",
    [
        lambda g: {"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/24", "gateway": g}]},
        lambda g: {"cniVersion": "0.4.0", "routes": [{"dst": "0.0.0.0/0", "gw": g}]},
        lambda g: {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24", "gateway": g}},
    ],
    ids=["gateway", "route-gw", "020-gateway"],
)
def test_invalid_ip_is_code_6(make, bad: str) -> None:
    assert err_of(parse_result, make(bad)).code == 6


@pytest.mark.parametrize(
    "data",
    [
        {"cniVersion": "1.0.0", "ips": {"address": "10.0.0.2/24"}},  # not a list
        {"cniVersion": "1.0.0", "ips": [{"address": 10}]},
        {"cniVersion": "1.0.0", "ips": [{"interface": "0", "address": "10.0.0.2/24"}]},  # Go: *int
        {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0", "mtu": "1500"}]},
        {"cniVersion": "1.1.0", "routes": [{"dst": "0.0.0.0/0", "table": "main"}]},
        {"cniVersion": "0.4.0", "dns": {"nameservers": "10.0.0.1"}},  # Go: []string
        {"cniVersion": "0.4.0", "dns": []},
        {"cniVersion": "0.2.0", "ip4": "10.0.0.2/24"},
        {"cniVersion": "1.0.0", "interfaces": [{"name": 5}]},
    ],
)
def test_wrong_types_are_code_6(data: dict[str, Any]) -> None:
    assert err_of(parse_result, data).code == 6


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("FD00:0:0:0:0:0:0:5/64", "fd00::5/64"),  # Go's net.IP.String (RFC 5952)
        ("2001:db8:0:0:1:0:0:1/64", "2001:db8::1:0:0:1/64"),
        ("10.1.0.5/16", "10.1.0.5/16"),  # host bits kept, like Go's IPNet with ParseCIDR's IP
        ("0.0.0.0/0", "0.0.0.0/0"),
    ],
)
def test_addresses_are_rendered_canonically(written: str, canonical: str) -> None:
    r = parse_result({"cniVersion": "1.0.0", "ips": [{"address": written}], "routes": [{"dst": written}]})
    d = r.to_dict()
    assert d["ips"][0]["address"] == canonical
    assert d["routes"][0]["dst"] == canonical


def test_zone_address_rejected_like_go() -> None:
    """BUG (low): result._cidr/_ip accept an IPv6 zone ("fe80::1%eth0/64") and keep it verbatim.
    Go's net.ParseCIDR / net.ParseIP reject zones, so Go libcni fails to decode such a result
    (and any Go plugin receiving it as prevResult would fail). Expected: CNIError code 6."""
    assert err_of(parse_result, {"cniVersion": "1.0.0", "ips": [{"address": "fe80::1%eth0/64"}]}).code == 6


@pytest.mark.parametrize(
    ("data", "get"),
    [
        ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "gateway": ""}]}, lambda r: r.ips[0].gateway),
        ({"cniVersion": "0.4.0", "routes": [{"dst": "0.0.0.0/0", "gw": ""}]}, lambda r: r.routes[0].gw),
        ({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24", "gateway": ""}}, lambda r: r.ip4.gateway),
    ],
    ids=["gateway", "route-gw", "020-gateway"],
)
def test_empty_gateway_means_absent_like_go(data: dict[str, Any], get) -> None:
    """BUG (low): Go's net.IP.UnmarshalText turns "" into a nil IP (no error), so a plugin that
    prints "gateway": "" is accepted by Go libcni; result._ip rejects "" with code 6, failing
    the whole ADD. Expected: parse OK, gateway treated as absent (omitted by to_dict)."""
    r = parse_result(data)
    assert not get(r)


# =========================================================================== to_dict: omitempty and key order


def test_to_dict_020_exact() -> None:
    r = parse_result({"ip6": {"ip": "fd00::2/64"}, "ip4": {"routes": [{"gw": "10.0.0.1", "dst": "0.0.0.0/0"}],
                                                          "gateway": "10.0.0.1", "ip": "10.0.0.2/24"}}, "0.2.0")
    d = r.to_dict()
    assert d == {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24", "gateway": "10.0.0.1",
                                                "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]},
                 "ip6": {"ip": "fd00::2/64"}, "dns": {}}
    # Go struct order: cniVersion, ip4, ip6, dns; ipConfig: ip, gateway, routes; route: dst, gw
    assert list(d) == ["cniVersion", "ip4", "ip6", "dns"]
    assert list(d["ip4"]) == ["ip", "gateway", "routes"]
    assert list(d["ip4"]["routes"][0]) == ["dst", "gw"]


@pytest.mark.parametrize("v", ["0.1.0", "0.2.0"])
def test_to_dict_020_minimal(v: str) -> None:
    d = parse_result({"cniVersion": v, "ip4": {"ip": "10.0.0.2/24", "routes": []}}).to_dict()
    assert d == {"cniVersion": v, "ip4": {"ip": "10.0.0.2/24"}, "dns": {}}  # ip6 nil omitted, dns always
    assert parse_result({"cniVersion": v}).to_dict() == {"cniVersion": v, "dns": {}}


def test_to_dict_040_exact() -> None:
    r = parse_result({
        "dns": {"options": ["o"], "nameservers": ["1.1.1.1"]},
        "routes": [{"gw": "10.0.0.1", "dst": "0.0.0.0/0"}],
        "ips": [{"gateway": "10.0.0.1", "address": "10.0.0.2/24", "interface": 0, "version": "4"}],
        "interfaces": [{"sandbox": "/n", "mac": "aa", "name": "eth0"}],
        "cniVersion": "0.4.0",
    })
    d = r.to_dict()
    # Go struct order: cniVersion, interfaces, ips, routes, dns
    assert list(d) == ["cniVersion", "interfaces", "ips", "routes", "dns"]
    assert list(d["interfaces"][0]) == ["name", "mac", "sandbox"]
    assert list(d["ips"][0]) == ["version", "interface", "address", "gateway"]
    assert list(d["routes"][0]) == ["dst", "gw"]
    assert list(d["dns"]) == ["nameservers", "options"]
    assert d["ips"][0]["interface"] == 0  # *int: index 0 is kept


@pytest.mark.parametrize("v", ["0.3.0", "0.3.1", "0.4.0"])
def test_to_dict_040_minimal(v: str) -> None:
    assert parse_result({"cniVersion": v}).to_dict() == {"cniVersion": v, "dns": {}}
    d = parse_result({"cniVersion": v, "interfaces": [{"name": ""}], "ips": [{"version": "6", "address": "fd00::2/64"}],
                      "routes": [], "dns": {"nameservers": [], "domain": ""}}).to_dict()
    # interface name is never omitted; empty lists/strings are
    assert d == {"cniVersion": v, "interfaces": [{"name": ""}], "ips": [{"version": "6", "address": "fd00::2/64"}],
                 "dns": {}}


def test_to_dict_040_version_always_written() -> None:
    # ips[].version is always present in 0.3.x/0.4.0 output; filled from the address family
    d = parse_result({"cniVersion": "0.3.1", "ips": [{"address": "10.0.0.2/24"}, {"address": "fd00::2/64"}]}).to_dict()
    assert [ip["version"] for ip in d["ips"]] == ["4", "6"]


@pytest.mark.parametrize("v", ["1.0.0", "1.1.0"])
def test_to_dict_100_no_ip_version(v: str) -> None:
    d = parse_result({"cniVersion": v, "ips": [{"version": "4", "address": "10.0.0.2/24", "interface": 0}]}).to_dict()
    assert d["ips"] == [{"interface": 0, "address": "10.0.0.2/24"}]


@pytest.mark.parametrize("v", ["1.0.0", "1.1.0"])
def test_to_dict_100_omitempty(v: str) -> None:
    d = parse_result({
        "cniVersion": v,
        "interfaces": [{"name": "eth0", "mac": "", "mtu": 0, "sandbox": "", "socketPath": "", "pciID": ""}],
        "ips": [{"address": "10.0.0.2/24"}],
        "routes": [{"dst": "0.0.0.0/0", "mtu": 0, "advmss": 0, "priority": 0},
                   {"dst": "10.0.0.0/8", "table": 0, "scope": 0}],  # *int: 0 kept
        "dns": {"nameservers": ["10.0.0.1"]},
    }).to_dict()
    assert d == {
        "cniVersion": v,
        "interfaces": [{"name": "eth0"}],
        "ips": [{"address": "10.0.0.2/24"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.0.0.0/8", "table": 0, "scope": 0}],
        "dns": {"nameservers": ["10.0.0.1"]},
    }


def test_to_dict_100_extended_fields() -> None:
    d = parse_result({
        "cniVersion": "1.1.0",
        "interfaces": [{"pciID": "p", "socketPath": "/s", "sandbox": "/n", "mtu": 9000, "mac": "aa", "name": "eth0"}],
        "routes": [{"scope": 253, "table": 100, "priority": 5, "advmss": 1400, "mtu": 1450, "gw": "10.0.0.1",
                    "dst": "0.0.0.0/0"}],
    }).to_dict()
    assert d["interfaces"] == [{"name": "eth0", "mac": "aa", "mtu": 9000, "sandbox": "/n", "socketPath": "/s",
                                "pciID": "p"}]
    assert d["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.0.0.1", "mtu": 1450, "advmss": 1400, "priority": 5,
                            "table": 100, "scope": 253}]


@pytest.mark.parametrize("v", ["1.0.0", "1.1.0"])
def test_to_dict_100_omits_empty_dns_like_go(v: str) -> None:
    """BUG (medium): since CNI v1.2.0 (PR containernetworking/cni#1039) types100.Result has a
    MarshalJSON that deletes "dns" when DNS.IsEmpty(); 0.x results still always carry "dns":{}.
    Result100.to_dict always writes "dns": {}, so the `result` in our cache files (and the
    prevResult we inject) differs from Go libcni's for every 1.x result without DNS."""
    d = parse_result({"cniVersion": v, "ips": [{"address": "10.0.0.2/24"}]}).to_dict()
    assert d == {"cniVersion": v, "ips": [{"address": "10.0.0.2/24"}]}
    d = parse_result({"cniVersion": v, "dns": {"domain": "x"}}).to_dict()
    assert d == {"cniVersion": v, "dns": {"domain": "x"}}


@pytest.mark.parametrize(
    ("dns", "expected"),
    [
        ({}, {}),
        ({"domain": "d"}, {"domain": "d"}),
        ({"search": ["s"], "nameservers": ["n"]}, {"nameservers": ["n"], "search": ["s"]}),
        (DNS_FULL, DNS_FULL),
        ({"nameservers": [], "domain": "", "search": [], "options": []}, {}),
    ],
)
def test_dns_to_dict(dns: dict[str, Any], expected: dict[str, Any]) -> None:
    d = R.DNS.model_validate(dns).to_dict()
    assert d == expected
    assert list(d) == [k for k in ("nameservers", "domain", "search", "options") if k in expected]


# =========================================================================== conversion


@pytest.mark.parametrize("tgt", VERSIONS)
@pytest.mark.parametrize("src", VERSIONS)
def test_convert_matrix(src: str, tgt: str) -> None:
    r = parse_result(sample(src))
    c = convert(r, tgt)
    assert type(c) is FAMILY[tgt]
    assert c.cniVersion == tgt
    assert R.is_version_at_least(c, tgt)
    d = c.to_dict()
    assert d == expected(src, tgt)
    # what we render parses back to the same rendering at the target version
    assert parse_result(d).to_dict() == d
    # the source is left untouched (frozen models)
    assert r.to_dict() == sample(src)


@pytest.mark.parametrize("tgt", VERSIONS)
@pytest.mark.parametrize("src", VERSIONS)
def test_convert_round_trip(src: str, tgt: str) -> None:
    r = parse_result(sample(src))
    back = convert(convert(r, tgt), src)
    lossy = fam(tgt) == "020" and fam(src) != "020"
    if lossy:
        # 0.2.0 keeps one address per family and no interfaces
        d = back.to_dict()
        assert "interfaces" not in d
        assert [ip["address"] for ip in d["ips"]] == ["10.1.0.5/16", "fd00::5/64"]
    else:
        assert back.to_dict() == r.to_dict()
        assert back == r


@pytest.mark.parametrize("tgt", VERSIONS)
def test_convert_empty_version_means_010(tgt: str) -> None:
    r = parse_result(sample(tgt))
    assert convert(r, "").cniVersion == "0.1.0"


@pytest.mark.parametrize("tgt", ["0.5.0", "2.0.0", "1.0", "abc"])
def test_convert_to_unsupported_is_code_1(tgt: str) -> None:
    assert err_of(convert, parse_result(sample("1.0.0")), tgt).code == 1


def test_convert_to_020_picks_first_of_each_family_by_order() -> None:
    r = parse_result({
        "cniVersion": "1.1.0",
        "ips": [{"address": "fd00::10/64"}, {"address": "10.0.0.10/24", "gateway": "10.0.0.1"},
                {"address": "fd00::11/64", "gateway": "fd00::1"}, {"address": "10.0.0.11/24"}],
        "routes": [{"dst": "::/0", "gw": "fd00::1"}, {"dst": "0.0.0.0/0", "gw": "10.0.0.1"},
                   {"dst": "192.168.0.0/16", "mtu": 1400}, {"dst": "fd01::/64"}],
    })
    d = convert(r, "0.2.0").to_dict()
    assert d == {
        "cniVersion": "0.2.0",
        "ip4": {"ip": "10.0.0.10/24", "gateway": "10.0.0.1",
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}, {"dst": "192.168.0.0/16"}]},
        "ip6": {"ip": "fd00::10/64", "routes": [{"dst": "::/0", "gw": "fd00::1"}, {"dst": "fd01::/64"}]},
        "dns": {},
    }


@pytest.mark.parametrize(
    ("ips", "routes", "expected"),
    [
        # only IPv4: IPv6 routes have nowhere to go and are dropped (like Go's convertTo02x)
        ([{"version": "4", "address": "10.0.0.2/24"}], [{"dst": "::/0"}, {"dst": "0.0.0.0/0"}],
         {"ip4": {"ip": "10.0.0.2/24", "routes": [{"dst": "0.0.0.0/0"}]}}),
        ([{"version": "6", "address": "fd00::2/64"}], [{"dst": "::/0"}, {"dst": "0.0.0.0/0"}],
         {"ip6": {"ip": "fd00::2/64", "routes": [{"dst": "::/0"}]}}),
        ([{"version": "6", "address": "fd00::2/64"}], [], {"ip6": {"ip": "fd00::2/64"}}),
    ],
)
@pytest.mark.parametrize("tgt", ["0.1.0", "0.2.0"])
def test_convert_040_to_020_single_family(ips, routes, expected, tgt: str) -> None:
    r = parse_result({"cniVersion": "0.4.0", "ips": ips, "routes": routes})
    assert convert(r, tgt).to_dict() == {"cniVersion": tgt, **expected, "dns": {}}


@pytest.mark.parametrize("src", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
@pytest.mark.parametrize("tgt", ["0.1.0", "0.2.0"])
def test_convert_no_ips_to_020_fails(src: str, tgt: str) -> None:
    r = parse_result({"cniVersion": src, "interfaces": [{"name": "eth0"}], "routes": [{"dst": "0.0.0.0/0"}]})
    err = err_of(convert, r, tgt)
    assert err.msg == "cannot convert: no valid IP addresses"
    # other targets are fine
    for other in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]:
        assert convert(r, other).cniVersion == other


@pytest.mark.parametrize("tgt", ["0.1.0", "0.2.0", "0.3.0", "0.4.0", "1.0.0", "1.1.0"])
def test_convert_empty_020(tgt: str) -> None:
    # a 0.2.0 result without ip4/ip6 converts up (to an empty list of ips), and within 0.x
    r = parse_result({"cniVersion": "0.2.0"})
    c = convert(r, tgt)
    assert c.to_dict().get("ips") is None and c.cniVersion == tgt


@pytest.mark.parametrize("tgt", ["0.3.0", "0.3.1", "0.4.0"])
def test_110_only_fields_dropped_when_rendering_040(tgt: str) -> None:
    r = parse_result({
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "mac": "aa", "mtu": 9000, "sandbox": "/n", "socketPath": "/s", "pciID": "p"}],
        "ips": [{"interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1", "mtu": 1450, "advmss": 1400, "priority": 5, "table": 100,
                    "scope": 0}],
    })
    d = convert(r, tgt).to_dict()
    assert d == {
        "cniVersion": tgt,
        "interfaces": [{"name": "eth0", "mac": "aa", "sandbox": "/n"}],
        "ips": [{"version": "4", "interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}],
        "dns": {},
    }
    # a 0.4.0 result carrying 1.1.0-only keys is rendered without them too
    d040 = parse_result({**r.to_dict(), "cniVersion": tgt}).to_dict()
    assert d040 == d


@pytest.mark.parametrize(("src", "tgt"), [("1.1.0", "1.0.0"), ("1.0.0", "1.1.0")])
def test_convert_within_100_keeps_extended_fields(src: str, tgt: str) -> None:
    # Go: "The types did not change between v1.0 and v1.1" (one struct for both)
    data = {"cniVersion": src, "interfaces": [{"name": "eth0", "mtu": 9000, "socketPath": "/s", "pciID": "p"}],
            "routes": [{"dst": "0.0.0.0/0", "mtu": 1450, "advmss": 1400, "priority": 5, "table": 1, "scope": 2}]}
    d = convert(parse_result(data), tgt).to_dict()
    assert d["interfaces"] == data["interfaces"]
    assert d["routes"] == data["routes"]


# =========================================================================== properties

_v4 = st.ip_addresses(v=4)
_v6 = st.ip_addresses(v=6)


@st.composite
def _cidr(draw, v: int | None = None) -> str:
    fam_ = draw(st.sampled_from([4, 6])) if v is None else v
    ip = draw(_v4 if fam_ == 4 else _v6)
    plen = draw(st.integers(0, 32 if fam_ == 4 else 128))
    return str(ipaddress.ip_interface(f"{ip}/{plen}"))


_text = st.text(max_size=6)
_dns = st.fixed_dictionaries({}, optional={
    "nameservers": st.lists(_text, max_size=2), "domain": _text,
    "search": st.lists(_text, max_size=2), "options": st.lists(_text, max_size=2)})
_ints = st.integers(min_value=0, max_value=2**31 - 1)


@st.composite
def _route(draw, extended: bool, v: int | None = None) -> dict[str, Any]:
    fam_ = draw(st.sampled_from([4, 6])) if v is None else v
    out: dict[str, Any] = {"dst": draw(_cidr(fam_))}
    if draw(st.booleans()):
        out["gw"] = str(draw(_v4 if fam_ == 4 else _v6))
    if extended:
        for key in ("mtu", "advmss", "priority", "table", "scope"):
            if draw(st.booleans()):
                out[key] = draw(_ints)
    return out


@st.composite
def _result(draw, versions: list[str]) -> dict[str, Any]:
    v = draw(st.sampled_from(versions))
    family = FAMILY[v]
    out: dict[str, Any] = {"cniVersion": v}
    if family is Result020:
        for key, f in (("ip4", 4), ("ip6", 6)):
            if draw(st.booleans()):
                cfg: dict[str, Any] = {"ip": draw(_cidr(f))}
                if draw(st.booleans()):
                    cfg["gateway"] = str(draw(_v4 if f == 4 else _v6))
                cfg["routes"] = draw(st.lists(_route(False, f), max_size=2))
                out[key] = cfg
    else:
        extended = family is Result100
        ifaces = []
        for _ in range(draw(st.integers(0, 2))):
            i: dict[str, Any] = {"name": draw(_text)}
            keys = ["mac", "sandbox"] + (["mtu", "socketPath", "pciID"] if extended else [])
            for key in keys:
                if draw(st.booleans()):
                    i[key] = draw(_ints) if key == "mtu" else draw(_text)
            ifaces.append(i)
        out["interfaces"] = ifaces
        ips = []
        for _ in range(draw(st.integers(0, 3))):
            addr = draw(_cidr())
            ip: dict[str, Any] = {"address": addr}
            if not extended:
                ip["version"] = str(ipaddress.ip_interface(addr).version)
            if ifaces and draw(st.booleans()):
                ip["interface"] = draw(st.integers(0, len(ifaces) - 1))
            if draw(st.booleans()):
                ip["gateway"] = str(draw(_v4 if ipaddress.ip_interface(addr).version == 4 else _v6))
            ips.append(ip)
        out["ips"] = ips
        out["routes"] = draw(st.lists(_route(extended), max_size=3))
    out["dns"] = draw(_dns)
    return out


@FAST
@given(data=_result(VERSIONS))
def test_property_same_family_identity(data: dict[str, Any]) -> None:
    r = parse_result(data)
    d = r.to_dict()
    assert parse_result(d) == r
    assert parse_result(d).to_dict() == d


@FAST
@given(data=_result(VERSIONS), tgt=st.sampled_from(VERSIONS))
def test_property_convert_never_crashes(data: dict[str, Any], tgt: str) -> None:
    r = parse_result(data)
    try:
        c = convert(r, tgt)
    except CNIError as exc:
        # the only legitimate failure: nothing to put into ip4/ip6
        assert FAMILY[tgt] is Result020
        assert exc.msg == "cannot convert: no valid IP addresses"
        assert not data.get("ips")
        return
    assert type(c) is FAMILY[tgt] and c.cniVersion == tgt
    d = c.to_dict()
    assert parse_result(d).to_dict() == d
    assert d.get("dns", {}) == r.dns.to_dict()
    src_family = FAMILY[data["cniVersion"]]
    if FAMILY[tgt] is not Result020 and src_family is not Result020:
        assert [ip["address"] for ip in d.get("ips", [])] == [ip["address"] for ip in data["ips"]]
        assert [rt["dst"] for rt in d.get("routes", [])] == [rt["dst"] for rt in data["routes"]]
        if not (src_family is Result100 and FAMILY[tgt] is Result040):  # 1.1.0-only fields are lost in 0.x
            # lossless otherwise: back to the source version renders the same
            assert convert(c, data["cniVersion"]).to_dict() == r.to_dict()
    if src_family is Result020 and (data.get("ip4") or data.get("ip6")):
        # going up from 0.2.0 and back is lossless (without addresses there is no way back)
        assert convert(c, data["cniVersion"]).to_dict() == r.to_dict()
