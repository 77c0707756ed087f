"""The native adaptor: bridge networks for plain containers (`crinet-<name>.conflist`).

`bridge.plan` (subnet / gateway / bridge-name choice) is tested directly with synthetic "used"
lists; `NativeAdaptor` runs the fake plugins through the real exec path, with the host's
addresses and links replaced by test values (nothing here touches host networking).

Spec: /work/shared/reference/isulad-network.md ("Native adaptor") and the issue's rules.
"""

from __future__ import annotations

import ipaddress
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from adaptors.cri import CRIAdaptor
from adaptors.native import NativeAdaptor, bridge
from cri_net import config
from cri_net.network import (AttachError, CheckError, CNIStateError, DetachError, InvalidRequestError, NetworkApiConf,
                             NetworkApiError, NetworkCreateRequest)

net = ipaddress.ip_network


def plugin_error(msg: str, code: int = 11) -> str:
    return json.dumps({"cniVersion": "1.0.0", "code": code, "msg": msg})


# ==== bridge.plan =============================================================================


def plan(name: str = "n", subnet: str | None = None, gateway: str | None = None, internal: bool = False,
         used: list[str] = (), bridges: set[str] = frozenset(), host: list[str] = ()) -> bridge.BridgePlan:
    return bridge.plan(name, subnet, gateway, internal, [net(u) for u in used], set(bridges),
                       [net(h, strict=False) for h in host])


def test_plan_auto_subnet_is_the_first_free_24_of_192_168():
    p = plan()
    assert (p.subnet, p.gateway, p.bridge, p.name, p.internal) == (
        net("192.168.0.0/24"), ipaddress.ip_address("192.168.0.1"), "crinet-br0", "n", False)


@pytest.mark.parametrize("used, host, expected", [
    pytest.param(["192.168.0.0/24"], [], "192.168.1.0/24", id="skips-used-network"),
    pytest.param(["192.168.0.0/24", "192.168.2.0/24"], [], "192.168.1.0/24", id="fills-the-gap"),
    pytest.param([], ["192.168.0.17/24"], "192.168.1.0/24", id="skips-host-address"),
    pytest.param([], ["192.168.0.0/23"], "192.168.2.0/24", id="host-wider-than-24"),
    pytest.param(["192.168.0.128/25"], [], "192.168.1.0/24", id="partial-overlap"),
    pytest.param([], ["192.168.3.4/16"], "172.16.0.0/24", id="all-192-168-taken-by-host"),
    pytest.param(["192.168.0.0/16", "172.16.0.0/12"], [], "10.0.0.0/24", id="falls-back-to-10"),
    pytest.param(["192.168.0.0/16", "172.16.0.0/13"], [], "172.24.0.0/24", id="second-half-of-172"),
    pytest.param([], ["127.0.0.1/8", "169.254.1.1/16", "fe80::1/64"], "192.168.0.0/24",
                 id="loopback-and-link-local-ignored"),
    pytest.param(["fd00::/8"], ["::1/128", "2001:db8::1/64"], "192.168.0.0/24", id="ipv6-does-not-block-ipv4"),
    pytest.param([], ["10.0.0.5/8", "172.17.0.1/16"], "192.168.0.0/24", id="docker-like-host"),
])
def test_plan_auto_subnet_avoids_used_and_host_networks(used, host, expected):
    p = plan(used=used, host=host)
    assert p.subnet == net(expected)
    assert p.gateway == net(expected).network_address + 1


def test_plan_auto_pools_in_order():
    assert [str(p) for p in bridge.AUTO_POOLS] == ["192.168.0.0/16", "172.16.0.0/12", "10.0.0.0/8"]


@st.composite
def _nets_in_192_168(draw):
    prefix = draw(st.integers(min_value=16, max_value=28))
    host = draw(st.integers(min_value=0, max_value=(1 << 16) - 1))
    return ipaddress.ip_network(f"192.168.{host >> 8}.{host & 255}/{prefix}", strict=False)


@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(used=st.lists(_nets_in_192_168(), max_size=8), host=st.lists(_nets_in_192_168(), max_size=3))
def test_plan_auto_subnet_is_the_first_candidate_that_overlaps_nothing(used, host):
    p = bridge.plan("n", None, None, False, used, set(), host)
    busy = used + host
    assert not any(p.subnet.overlaps(b) for b in busy)
    candidates = list(net("192.168.0.0/16").subnets(new_prefix=24)) + [net("172.16.0.0/24")]
    earlier = candidates[:candidates.index(p.subnet)]
    assert all(any(c.overlaps(b) for b in busy) for c in earlier)
    assert p.gateway == p.subnet.network_address + 1


def test_plan_auto_subnet_exhausted(monkeypatch):
    # small pools: walking the real ones (~70k /24s) would only make the test slow
    monkeypatch.setattr(bridge, "AUTO_POOLS", (net("192.168.0.0/23"), net("172.16.0.0/23"), net("10.0.0.0/23")))
    assert plan(used=["192.168.0.0/23", "172.16.0.0/24"]).subnet == net("172.16.1.0/24")
    with pytest.raises(InvalidRequestError) as exc:
        plan(used=["192.168.0.0/23", "172.16.0.0/23"], host=["10.0.0.1/23"])
    assert exc.value.key == "subnet"


def test_plan_explicit_subnet_is_normalised_and_gets_the_first_host_as_gateway():
    p = plan(subnet="10.5.6.7/16")
    assert p.subnet == net("10.5.0.0/16") and str(p.gateway) == "10.5.0.1"


def test_plan_ipv6_subnet():
    p = plan(subnet="fd00:1::/64", used=["192.168.0.0/16"], host=["fd00:2::1/64"])
    assert p.subnet == net("fd00:1::/64") and str(p.gateway) == "fd00:1::1"
    p = plan(subnet="fd00:1::/64", gateway="fd00:1::fe")
    assert str(p.gateway) == "fd00:1::fe"


@pytest.mark.parametrize("subnet, used, host", [
    pytest.param("192.168.0.0/24", ["192.168.0.0/24"], [], id="same-as-other-network"),
    pytest.param("192.168.0.0/16", ["192.168.7.0/24"], [], id="contains-other-network"),
    pytest.param("192.168.7.128/25", ["192.168.7.0/24"], [], id="inside-other-network"),
    pytest.param("10.1.0.0/16", [], ["10.1.2.3/24"], id="overlaps-host-address"),
    pytest.param("fd00::/64", ["fd00::/48"], [], id="ipv6-overlap"),
])
def test_plan_subnet_overlap_is_refused(subnet, used, host):
    with pytest.raises(InvalidRequestError) as exc:
        plan(subnet=subnet, used=used, host=host)
    assert exc.value.key == "subnet" and "overlaps" in exc.value.reason


@pytest.mark.parametrize("subnet", ["banana", "10.0.0.0/33", "300.1.1.0/24", "10.0.0.0/31", "10.0.0.1/32", ""])
def test_plan_bad_subnet(subnet):
    if subnet == "":
        p = plan(subnet=subnet)  # empty means "choose one"
        assert p.subnet == net("192.168.0.0/24")
        return
    with pytest.raises(InvalidRequestError) as exc:
        plan(subnet=subnet)
    assert exc.value.key == "subnet"


def test_plan_small_subnet_boundary():
    p = plan(subnet="10.9.9.8/30")
    assert str(p.gateway) == "10.9.9.9"


@pytest.mark.parametrize("subnet, gateway, why", [
    pytest.param(None, "192.168.0.1", "needs a subnet", id="gateway-without-subnet"),
    pytest.param("10.1.0.0/24", "10.2.0.1", "not inside", id="outside"),
    pytest.param("10.1.0.0/24", "10.1.0.0", "network or broadcast", id="network-address"),
    pytest.param("10.1.0.0/24", "10.1.0.255", "network or broadcast", id="broadcast-address"),
    pytest.param("10.1.0.0/24", "fd00::1", "not inside", id="wrong-family"),
    pytest.param("fd00::/64", "fd00::", "network or broadcast", id="ipv6-subnet-router-anycast"),
    pytest.param("10.1.0.0/24", "10.1.0.x", "invalid gateway", id="garbage"),
])
def test_plan_bad_gateway(subnet, gateway, why):
    with pytest.raises(InvalidRequestError) as exc:
        plan(subnet=subnet, gateway=gateway)
    assert exc.value.key == "gateway" and why in exc.value.reason


@pytest.mark.parametrize("gateway", ["10.1.0.1", "10.1.0.254", "10.1.0.100"])
def test_plan_good_gateway(gateway):
    assert str(plan(subnet="10.1.0.0/24", gateway=gateway).gateway) == gateway


@pytest.mark.parametrize("used, expected", [
    pytest.param(set(), "crinet-br0", id="none-used"),
    pytest.param({"crinet-br0", "crinet-br1"}, "crinet-br2", id="next"),
    pytest.param({"crinet-br1", "eth0", "crinet0"}, "crinet-br0", id="first-unused"),
    pytest.param({f"crinet-br{i}" for i in range(1023)}, "crinet-br1023", id="last"),
])
def test_plan_bridge_name_is_the_first_unused(used, expected):
    p = plan(name="", bridges=used)
    assert p.bridge == expected
    assert p.name == expected  # an unnamed network is named after its bridge


def test_plan_all_bridge_names_used():
    with pytest.raises(InvalidRequestError) as exc:
        plan(bridges={f"crinet-br{i}" for i in range(1024)})
    assert exc.value.key == "name"


@pytest.mark.parametrize("name, ok", [
    ("a", True), ("net-1_x.y", True), ("0abc", True), ("x" * 200, True),
    ("x" * 201, False), ("-a", False), ("_a", False), (".a", False), ("a b", False), ("a/b", False), ("", False),
    ("a\n", False), ("ü", False),
])
def test_validate_name(name, ok):
    if ok:
        bridge.validate_name(name)
    else:
        with pytest.raises(InvalidRequestError) as exc:
            bridge.validate_name(name)
        assert exc.value.key == "name"


# ==== bridge.conflist =========================================================================


def test_conflist_external_network():
    p = plan(name="web", subnet="10.7.0.0/24")
    doc = json.loads(bridge.conflist(p, "1.0.0"))
    assert doc["cniVersion"] == "1.0.0" and doc["name"] == "web"
    br, pm, fw = doc["plugins"]
    assert br == {"type": "bridge", "bridge": "crinet-br0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
                  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.7.0.0/24", "gateway": "10.7.0.1"}]],
                           "routes": [{"dst": "0.0.0.0/0"}]}}
    assert pm == {"type": "portmap", "capabilities": {"portMappings": True}}
    assert fw == {"type": "firewall"}


def test_conflist_internal_network_has_no_gateway_masquerade_or_default_route():
    doc = json.loads(bridge.conflist(plan(subnet="10.7.0.0/24", internal=True), "0.4.0"))
    br = doc["plugins"][0]
    assert br["isGateway"] is False and br["ipMasq"] is False and br["hairpinMode"] is True
    assert "routes" not in br["ipam"]
    assert br["ipam"]["ranges"] == [[{"subnet": "10.7.0.0/24", "gateway": "10.7.0.1"}]]


def test_conflist_ipv6_default_route_and_dnsname():
    doc = json.loads(bridge.conflist(plan(subnet="fd00:1::/64"), "1.0.0", ["dnsname"]))
    assert doc["plugins"][0]["ipam"]["routes"] == [{"dst": "::/0"}]
    assert [p["type"] for p in doc["plugins"]] == ["bridge", "portmap", "firewall", "dnsname"]
    assert doc["plugins"][3]["capabilities"] == {"aliases": True}


def test_installed_looks_for_a_regular_file(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "dnsname").write_text("")
    (tmp_path / "a" / "firewall").mkdir()
    assert bridge.installed("dnsname", [str(tmp_path / "a"), str(tmp_path / "b")])
    assert not bridge.installed("firewall", [str(tmp_path / "a"), str(tmp_path / "b")])
    assert not bridge.installed("dnsname", [])


# ==== NativeAdaptor ===========================================================================


class Env:
    def __init__(self, tmp: Path, fakecni: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp, self.fake = tmp, fakecni
        self.conf_dir = tmp / "net.d"
        self.conf_dir.mkdir()
        self.cache_dir = tmp / "cache"
        self.host_nets: list[str] = []
        self.host_links: set[str] = set()
        monkeypatch.setattr(bridge, "host_networks", lambda: [net(h, strict=False) for h in self.host_nets])
        monkeypatch.setattr(bridge, "host_link_names", lambda: set(self.host_links))
        fakecni.install("loopback", "bridge", "portmap", "firewall")
        self.adaptors: list[Any] = []
        self.netns = self.make_netns("c1")

    def make_netns(self, name: str) -> Path:
        p = self.tmp / "netns" / name
        p.parent.mkdir(exist_ok=True)
        p.touch()
        return p

    def settings(self, **over: Any) -> config.Settings:
        values = {"conf_dir": str(self.conf_dir), "bin_dirs": [str(self.fake.bin)], "cache_dir": str(self.cache_dir),
                  "plugin_timeout": 20}
        values.update(over)
        return config.build(None, values)

    def adaptor(self) -> NativeAdaptor:
        a = NativeAdaptor(self.settings())
        self.adaptors.append(a)
        return a

    def cri(self) -> CRIAdaptor:
        a = CRIAdaptor(self.settings())
        self.adaptors.append(a)
        return a

    def write_net(self, name: str, *plugins: dict[str, Any] | str, bridge_name: str | None = None,
                  subnet: str = "10.99.0.0/24", version: str = "1.0.0") -> Path:
        """A native network written by hand (cheaper than conf_create: no VERSION calls)."""
        first = {"type": "bridge", "bridge": bridge_name or f"crnx-{name}"[:15],
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]]}}
        rest = [{"type": p} if isinstance(p, str) else p for p in plugins]
        path = self.conf_dir / f"crinet-{name}.conflist"
        path.write_text(json.dumps({"cniVersion": version, "name": name, "plugins": [first, *rest]}))
        return path

    def conf(self, *networks: str, **kw: Any) -> NetworkApiConf:
        values: dict[str, Any] = {"pod_id": "c1", "netns_path": str(self.netns), "networks": list(networks)}
        values.update(kw)
        return NetworkApiConf(**values)

    def runs(self) -> list[tuple[str, str, str]]:
        return [(c["name"], c["env"]["CNI_COMMAND"], c["env"]["CNI_IFNAME"]) for c in self.fake.calls()]

    def files(self) -> list[str]:
        return sorted(os.listdir(self.conf_dir))

    def cache_files(self) -> list[str]:
        d = self.cache_dir / "results"
        return sorted(os.listdir(d)) if d.exists() else []


@pytest.fixture
def env(tmp_path, fakecni, monkeypatch):
    e = Env(tmp_path, fakecni, monkeypatch)
    yield e
    for a in e.adaptors:
        a.close()


# ---- conf_create ---------------------------------------------------------------------------


def test_create_writes_the_conflist_atomically_with_mode_0640(env):
    a = env.adaptor()
    info = a.conf_create(NetworkCreateRequest(name="web"))
    assert (info.name, info.plugins) == ("web", ["bridge", "portmap", "firewall"])
    path = env.conf_dir / "crinet-web.conflist"
    assert info.file == str(path)
    assert env.files() == ["crinet-web.conflist"]  # no temp file left behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    doc = json.loads(path.read_text())
    assert doc["name"] == "web"
    br = doc["plugins"][0]
    assert br["bridge"] == "crinet-br0" and br["isGateway"] and br["ipMasq"] and br["hairpinMode"]
    assert br["ipam"] == {"type": "host-local", "ranges": [[{"subnet": "192.168.0.0/24", "gateway": "192.168.0.1"}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}
    assert [p["type"] for p in doc["plugins"]] == ["bridge", "portmap", "firewall"]
    assert a.exist("web")
    assert a.conf_inspect("web") == path.read_text()
    assert {c["env"]["CNI_COMMAND"] for c in env.fake.calls()} == {"VERSION"}


def test_create_with_subnet_gateway_and_internal(env):
    a = env.adaptor()
    a.conf_create(NetworkCreateRequest(name="priv", subnet="10.30.1.9/24", gateway="10.30.1.254", internal=True))
    doc = json.loads((env.conf_dir / "crinet-priv.conflist").read_text())
    br = doc["plugins"][0]
    assert br["ipam"]["ranges"] == [[{"subnet": "10.30.1.0/24", "gateway": "10.30.1.254"}]]
    assert "routes" not in br["ipam"]
    assert br["isGateway"] is False and br["ipMasq"] is False


def test_create_ipv6(env):
    a = env.adaptor()
    a.conf_create(NetworkCreateRequest(name="v6", subnet="fd00:9::/64"))
    br = json.loads((env.conf_dir / "crinet-v6.conflist").read_text())["plugins"][0]
    assert br["ipam"]["ranges"] == [[{"subnet": "fd00:9::/64", "gateway": "fd00:9::1"}]]
    assert br["ipam"]["routes"] == [{"dst": "::/0"}]


def test_create_without_a_name_uses_the_bridge_name(env):
    a = env.adaptor()
    info = a.conf_create(NetworkCreateRequest())
    assert info.name == "crinet-br0"
    assert env.files() == ["crinet-crinet-br0.conflist"]


def test_second_network_gets_the_next_subnet_and_bridge_and_rm_frees_them(env):
    env.host_links = {"crinet-br0"}  # a leftover link on the host
    env.host_nets = ["192.168.0.10/24"]
    a = env.adaptor()
    a.conf_create(NetworkCreateRequest(name="one"))
    a.conf_create(NetworkCreateRequest(name="two"))
    one = json.loads(a.conf_inspect("one"))["plugins"][0]
    two = json.loads(a.conf_inspect("two"))["plugins"][0]
    assert (one["bridge"], one["ipam"]["ranges"][0][0]["subnet"]) == ("crinet-br1", "192.168.1.0/24")
    assert (two["bridge"], two["ipam"]["ranges"][0][0]["subnet"]) == ("crinet-br2", "192.168.2.0/24")


@pytest.mark.parametrize("request_kw, key", [
    pytest.param({"name": "x", "driver": "macvlan"}, "driver", id="driver-macvlan"),
    pytest.param({"name": "x", "driver": ""}, "driver", id="driver-empty"),
    pytest.param({"name": "-x"}, "name", id="bad-name"),
    pytest.param({"name": "x" * 201}, "name", id="long-name"),
    pytest.param({"name": "x", "gateway": "192.168.0.1"}, "gateway", id="gateway-without-subnet"),
    pytest.param({"name": "x", "subnet": "10.0.0.0/24", "gateway": "10.0.1.1"}, "gateway", id="gateway-outside"),
    pytest.param({"name": "x", "subnet": "10.0.0.0/24", "gateway": "10.0.0.255"}, "gateway", id="gateway-broadcast"),
    pytest.param({"name": "x", "subnet": "nope"}, "subnet", id="bad-subnet"),
    pytest.param({"name": "x", "subnet": "10.77.0.0/16"}, "subnet", id="overlaps-host"),
])
def test_create_refusals_write_nothing_and_run_nothing(env, request_kw, key):
    env.host_nets = ["10.77.3.1/24"]
    a = env.adaptor()
    with pytest.raises(InvalidRequestError) as exc:
        a.conf_create(NetworkCreateRequest(**request_kw))
    assert exc.value.key == key
    assert env.files() == []
    assert env.fake.calls() == []


def test_create_refuses_overlap_with_another_native_network(env):
    env.write_net("a", subnet="10.10.0.0/16")
    a = env.adaptor()
    with pytest.raises(InvalidRequestError) as exc:
        a.conf_create(NetworkCreateRequest(name="b", subnet="10.10.5.0/24"))
    assert exc.value.key == "subnet" and "10.10.0.0/16" in exc.value.reason
    assert env.files() == ["crinet-a.conflist"]
    info = a.conf_create(NetworkCreateRequest(name="c", subnet="10.11.0.0/24"))
    assert info.name == "c"


def test_create_refuses_duplicate_names_native_or_cri(env):
    (env.conf_dir / "10-dup.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "dup", "plugins": [{"type": "bridge"}]}))
    a = env.adaptor()
    a.conf_create(NetworkCreateRequest(name="mine"))
    for name in ("mine", "dup"):
        with pytest.raises(InvalidRequestError) as exc:
            a.conf_create(NetworkCreateRequest(name=name))
        assert exc.value.key == "name" and "already exists" in exc.value.reason
    assert env.files() == ["10-dup.conflist", "crinet-mine.conflist"]


@pytest.mark.parametrize("kind", ["other-network", "unparsable", "fifo", "dangling-symlink"])
def test_create_never_replaces_a_file_already_at_its_path(env, kind):
    """The name check sees loaded networks only: crinet-web.conflist may hold another network,
    an operator's half-finished edit, or something that is not a config at all."""
    path = env.conf_dir / "crinet-web.conflist"
    if kind == "other-network":
        path.write_text(json.dumps({"cniVersion": "1.0.0", "name": "storage", "plugins": [{"type": "bridge"}]}))
    elif kind == "unparsable":
        path.write_text('{"cniVersion": "1.0.0", "name": "db",')
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(env.conf_dir / "nowhere")
    before = os.lstat(path)
    content = path.read_text() if kind in ("other-network", "unparsable") else None
    a = env.adaptor()
    with pytest.raises(InvalidRequestError) as exc:
        a.conf_create(NetworkCreateRequest(name="web", subnet="10.40.0.0/24"))
    assert exc.value.key == "name" and str(path) in exc.value.reason
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    if content is not None:
        assert path.read_text() == content
    assert env.files() == ["crinet-web.conflist"]  # and no temp file left


@pytest.mark.parametrize("versions, expected", [
    pytest.param({"bridge": ["0.3.1", "0.4.0", "1.0.0"], "portmap": ["0.4.0", "1.0.0", "1.1.0"]}, "1.0.0",
                 id="newest-common"),
    pytest.param({"bridge": ["0.3.0", "0.3.1"], "portmap": ["0.3.1", "0.4.0"], "firewall": ["0.1.0", "0.3.1"]},
                 "0.3.1", id="old-plugins"),
    pytest.param({}, "1.1.0", id="all-support-everything"),
    pytest.param({"bridge": ["0.4.0", "1.0.0", "2.0.0"], "portmap": ["1.0.0", "2.0.0"], "firewall": ["1.0.0", "2.0.0"]},
                 "1.0.0", id="ignores-versions-we-do-not-speak"),
    pytest.param({"bridge": ["0.3.1"], "portmap": ["1.0.0"]}, "1.0.0", id="nothing-common-falls-back"),
])
def test_create_cni_version_is_the_newest_all_plugins_support(env, versions, expected):
    for plugin, vs in versions.items():
        env.fake.script(plugin, "VERSION", versions=vs)
    a = env.adaptor()
    info = a.conf_create(NetworkCreateRequest(name="v"))
    assert info.version == expected
    assert json.loads(a.conf_inspect("v"))["cniVersion"] == expected
    assert sorted(c["name"] for c in env.fake.calls(command="VERSION")) == ["bridge", "firewall", "portmap"]


def test_a_network_named_like_the_builtin_loopback_is_refused_or_fully_detached(env):
    """`cni-loopback` is the built-in loopback's network name, which the detach path skips in the
    cache; a user network of that name must either be refused at create, or be detached too."""
    a = env.adaptor()
    try:
        a.conf_create(NetworkCreateRequest(name="cni-loopback"))
    except InvalidRequestError as exc:
        assert exc.key == "name"
        return
    a.attach(env.conf("cni-loopback"))
    a.detach(env.conf())
    assert env.cache_files() == []


def test_create_with_a_legacy_plugin_that_predates_version(env):
    env.fake.install("firewall", legacy=True)
    a = env.adaptor()
    assert a.conf_create(NetworkCreateRequest(name="old")).version == "0.1.0"


def test_dnsname_is_added_only_when_its_binary_exists(env):
    a = env.adaptor()
    a.conf_create(NetworkCreateRequest(name="nodns"))
    assert "dnsname" not in a.conf_inspect("nodns")
    env.fake.install("dnsname")
    env.fake.script("dnsname", "VERSION", versions=["0.4.0"])
    info = a.conf_create(NetworkCreateRequest(name="dns"))
    assert info.plugins == ["bridge", "portmap", "firewall", "dnsname"]
    assert info.version == "0.4.0"  # dnsname takes part in the version choice
    assert json.loads(a.conf_inspect("dns"))["plugins"][3]["type"] == "dnsname"


def test_create_fails_cleanly_when_a_plugin_is_missing(env):
    (env.fake.bin / "firewall").unlink()
    a = env.adaptor()
    with pytest.raises(NetworkApiError) as exc:
        a.conf_create(NetworkCreateRequest(name="x"))
    assert "firewall" in str(exc.value)
    assert env.files() == []
    assert not a.exist("x")


def test_create_leaves_no_partial_file_when_the_write_fails(env, monkeypatch):
    a = env.adaptor()

    def boom(src, dst, *args, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "link", boom)  # the step that puts a new conflist in place
    with pytest.raises(OSError):
        a.conf_create(NetworkCreateRequest(name="x"))
    monkeypatch.undo()
    assert env.files() == []
    assert not a.exist("x")


# ---- list / inspect / exist / rm -------------------------------------------------------------


def test_list_filters(env):
    env.write_net("alpha", "portmap")
    env.write_net("beta", "firewall", subnet="10.98.0.0/24")
    env.write_net("alphabet", subnet="10.97.0.0/24")
    (env.conf_dir / "10-cri.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "cri", "plugins": [{"type": "bridge"}]}))
    a = env.adaptor()
    names = lambda f: [r.name for r in a.conf_list(f)]  # noqa: E731
    assert names(None) == ["alpha", "alphabet", "beta"]
    assert names({}) == ["alpha", "alphabet", "beta"]
    assert names({"name": ["alpha"]}) == ["alpha"]  # exact
    assert names({"name": ["alpha.*"]}) == ["alpha", "alphabet"]  # regex, whole name
    assert names({"name": ["lph"]}) == []  # not a substring search
    assert names({"name": ["beta", "alpha"]}) == ["alpha", "beta"]  # any of the values
    assert names({"plugin": ["portmap"]}) == ["alpha"]
    assert names({"plugin": ["bridge"]}) == ["alpha", "alphabet", "beta"]
    assert names({"plugin": ["fire.*"], "name": ["b.*"]}) == ["beta"]  # every key
    assert names({"name": ["[unclosed"]}) == []  # a bad regex matches nothing
    with pytest.raises(InvalidRequestError) as exc:
        a.conf_list({"driver": ["bridge"]})
    assert "driver" in exc.value.key
    row = a.conf_list({"name": ["beta"]})[0]
    assert (row.version, row.plugins) == ("1.0.0", ["bridge", "firewall"])


def test_native_sees_only_crinet_files_and_cri_never_sees_them(env):
    env.write_net("nat")
    (env.conf_dir / "10-cri.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "cri", "plugins": [{"type": "bridge"}]}))
    native, cri = env.adaptor(), env.cri()
    assert [n.name for n in native.conf_list()] == ["nat"]
    assert [n.name for n in cri.conf_list()] == ["cri"]
    assert native.exist("nat") and not native.exist("cri")
    assert cri.exist("cri") and not cri.exist("nat")
    with pytest.raises(NetworkApiError):
        native.conf_inspect("cri")
    with pytest.raises(NetworkApiError):
        native.conf_rm("cri")
    assert (env.conf_dir / "10-cri.conflist").exists()


def test_native_is_always_ready(env):
    assert env.adaptor().ready() is True


def test_rm_deletes_the_file_and_is_refused_while_a_container_is_attached(env):
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        assert not ipr.link_lookup(ifname="crnx-gone"), "test needs a bridge name absent from this host"
    env.write_net("a", "portmap", bridge_name="crnx-gone")
    env.write_net("b", subnet="10.98.0.0/24")
    a = env.adaptor()
    conf = env.conf("a")
    a.attach(conf)
    assert a.attached_containers("a") == ["c1"]
    with pytest.raises(NetworkApiError) as exc:
        a.conf_rm("a")
    assert "c1" in str(exc.value)
    assert (env.conf_dir / "crinet-a.conflist").exists() and a.exist("a")
    assert a.conf_rm("b") == "b"  # another network is fine
    a.detach(conf)
    assert a.attached_containers("a") == []
    assert a.conf_rm("a") == "a"
    assert env.files() == []
    assert not a.exist("a") and a.conf_list() == []
    with pytest.raises(NetworkApiError):
        a.conf_rm("a")


def test_rm_is_refused_across_a_restart(env):
    env.write_net("a")
    env.adaptor().attach(env.conf("a"))
    fresh = env.adaptor()  # a new adaptor: the cache is the only record
    with pytest.raises(NetworkApiError):
        fresh.conf_rm("a")


def test_created_network_can_be_removed(env):
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        if ipr.link_lookup(ifname="crinet-br0"):
            pytest.skip("host has a crinet-br0 link")
    a = env.adaptor()
    a.conf_create(NetworkCreateRequest(name="tmp"))
    assert a.conf_rm("tmp") == "tmp"
    assert env.files() == []
    info = a.conf_create(NetworkCreateRequest(name="again"))
    assert json.loads(a.conf_inspect(info.name))["plugins"][0]["bridge"] == "crinet-br0"


# ---- containers ----------------------------------------------------------------------------


def two_networks(env: Env) -> None:
    pm = {"type": "portmap", "capabilities": {"portMappings": True}}
    env.write_net("a", pm, subnet="10.91.0.0/24")
    env.write_net("b", pm, subnet="10.92.0.0/24")


def test_attach_networks_in_order_on_eth0_eth1_with_ports_to_the_first(env):
    two_networks(env)
    a = env.adaptor()
    results = a.attach(env.conf("a", "b", port_mappings=[{"host_port": 8080, "container_port": 80}],
                                args={"IP": "10.91.0.9"}))
    assert env.runs() == [("loopback", "ADD", "lo"), ("bridge", "ADD", "eth0"), ("portmap", "ADD", "eth0"),
                          ("bridge", "ADD", "eth1"), ("portmap", "ADD", "eth1")]
    by = {(c["name"], c["env"]["CNI_IFNAME"]): c for c in env.fake.calls()}
    assert by[("portmap", "eth0")]["config"]["runtimeConfig"] == {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    assert "runtimeConfig" not in by[("portmap", "eth1")]["config"]
    assert by[("bridge", "eth0")]["config"]["name"] == "a" and by[("bridge", "eth1")]["config"]["name"] == "b"
    assert by[("bridge", "eth0")]["env"]["CNI_ARGS"] == "IgnoreUnknown=1;IP=10.91.0.9"
    assert [(r.name, r.interface) for r in results] == [("a", "eth0"), ("b", "eth1")]
    assert results[0].ips == ["10.22.0.5/16"]
    assert env.cache_files() == ["a-c1-eth0", "b-c1-eth1", "cni-loopback-c1-lo"]


def test_inserted_port_mappings_add_to_the_published_ones(env):
    """`-p` port mappings and ones added with insert_portmapping both reach the first network
    (the CRI adaptor adds them up; the native one must not drop either)."""
    from cri_net.network import NetworkModule

    two_networks(env)
    a = env.adaptor()
    conf = env.conf("a", port_mappings=[{"host_port": 8080, "container_port": 80}])
    conf = NetworkModule.insert_portmapping('[{"hostPort": 9090, "containerPort": 90}]', conf)
    a.attach(conf)
    (pm,) = env.fake.calls(name="portmap", command="ADD")
    assert sorted(m["hostPort"] for m in pm["config"]["runtimeConfig"]["portMappings"]) == [8080, 9090]


def test_attach_to_a_created_network(env):
    a = env.adaptor()
    a.conf_create(NetworkCreateRequest(name="one"))
    env.fake.clear_log()
    results = a.attach(env.conf("one", port_mappings=[{"host_port": 8080, "container_port": 80}]))
    assert env.runs() == [("loopback", "ADD", "lo"), ("bridge", "ADD", "eth0"), ("portmap", "ADD", "eth0"),
                          ("firewall", "ADD", "eth0")]
    br, pm, _ = env.fake.calls()[1:]
    assert br["config"]["bridge"] == "crinet-br0" and br["config"]["name"] == "one"
    assert pm["config"]["runtimeConfig"]["portMappings"][0]["hostPort"] == 8080
    assert [(r.name, r.interface) for r in results] == [("one", "eth0")]


@pytest.mark.parametrize("kind", ["fifo", "symlink-loop"])
def test_an_unusable_cache_dir_is_a_network_api_error_and_nothing_runs(env, kind):
    """results/ that cannot be listed (a broken node) reaches callers as CNIStateError naming
    it (the server maps it, the hook answers CNI code 5), never as a libcni exception."""
    two_networks(env)
    a = env.adaptor()
    results = env.cache_dir / "results"
    results.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(results)
    else:
        results.symlink_to(results)
    for call in (lambda: a.attach(env.conf("a")), lambda: a.check(env.conf("a")), lambda: a.attachments(),
                 lambda: a.conf_rm("a")):
        with pytest.raises(CNIStateError) as exc:
            call()
        assert str(results) in str(exc.value) and exc.value.cause.code == 5
    assert env.fake.calls() == []


@pytest.mark.parametrize("networks, key", [
    pytest.param([], "networks", id="none"),
    pytest.param(["a", "a"], "networks", id="twice"),
    pytest.param(["a", "nope"], "networks[1]", id="unknown"),
])
def test_attach_refusals_run_nothing(env, networks, key):
    two_networks(env)
    a = env.adaptor()
    with pytest.raises(InvalidRequestError) as exc:
        a.attach(env.conf(*networks))
    assert exc.value.key == key
    assert env.fake.calls() == []


def test_attach_refuses_bad_ids_and_annotations(env):
    two_networks(env)
    a = env.adaptor()
    for kw, key in [({"pod_id": ""}, "pod_id"), ({"netns_path": ""}, "netns_path"),
                    ({"port_mappings": [{"host_port": 0.5, "container_port": 80}]}, "port_mappings[0].host_port")]:
        with pytest.raises(InvalidRequestError) as exc:
            a.attach(env.conf("a", **kw))
        assert exc.value.key == key
    assert env.fake.calls() == []


def test_a_failure_on_the_second_network_rolls_everything_back(env):
    two_networks(env)
    env.fake.script("bridge", "ADD", rules=[{"match": {"CNI_IFNAME": "eth1"}, "exit": 1,
                                            "stdout": plugin_error("no bridge")}])
    a = env.adaptor()
    with pytest.raises(AttachError) as exc:
        a.attach(env.conf("a", "b"))
    assert (exc.value.network, exc.value.plugin, exc.value.ifname) == ("b", "bridge", "eth1")
    assert env.runs() == [("loopback", "ADD", "lo"), ("bridge", "ADD", "eth0"), ("portmap", "ADD", "eth0"),
                          ("bridge", "ADD", "eth1"),
                          ("portmap", "DEL", "eth1"), ("bridge", "DEL", "eth1"),
                          ("portmap", "DEL", "eth0"), ("bridge", "DEL", "eth0"), ("loopback", "DEL", "lo")]
    assert env.cache_files() == []


def test_detach_reverse_and_best_effort_check_and_vanished_netns(env):
    two_networks(env)
    a = env.adaptor()
    conf = env.conf("a", "b")
    a.attach(conf)
    env.fake.clear_log()
    results = a.check(env.conf())
    assert env.runs() == [("bridge", "CHECK", "eth1"), ("portmap", "CHECK", "eth1"),
                          ("bridge", "CHECK", "eth0"), ("portmap", "CHECK", "eth0")]
    assert [r.interface for r in results] == ["eth0", "eth1"]
    env.fake.clear_log()
    env.fake.script("portmap", "DEL", rules=[{"match": {"CNI_IFNAME": "eth1"}, "exit": 1,
                                             "stdout": plugin_error("iptables locked")}])
    env.netns.unlink()
    with pytest.raises(DetachError) as exc:
        a.detach(env.conf())  # `disconnect` names no network: the cache is the truth
    assert [(n, i) for n, i, _ in exc.value.failures] == [("b", "eth1")]
    assert env.runs() == [("portmap", "DEL", "eth1"), ("bridge", "DEL", "eth1"),
                          ("portmap", "DEL", "eth0"), ("bridge", "DEL", "eth0"), ("loopback", "DEL", "lo")]
    assert all(c["env"]["CNI_NETNS"] == "" for c in env.fake.calls())
    assert env.cache_files() == ["b-c1-eth1"]
    env.fake.script("portmap", "DEL")
    a.detach(env.conf())
    a.detach(env.conf())  # idempotent
    assert env.cache_files() == []


def test_check_failure_names_the_plane(env):
    two_networks(env)
    a = env.adaptor()
    a.attach(env.conf("a"))
    env.fake.script("portmap", "CHECK", exit=1, stdout=plugin_error("chain missing"))
    with pytest.raises(CheckError) as exc:
        a.check(env.conf())
    assert (exc.value.network, exc.value.plugin, exc.value.ifname) == ("a", "portmap", "eth0")


def test_eleven_networks_detach_in_reverse_attach_order(env):
    """eth10 was attached last, so it is detached first, and check reports eth0..eth10 like
    attach does (interface names sort as text, "eth10" < "eth2", which must not decide the order)."""
    names = [f"n{i:02d}" for i in range(11)]
    for i, name in enumerate(names):
        env.write_net(name, subnet=f"10.{100 + i}.0.0/24")
    a = env.adaptor()
    results = a.attach(env.conf(*names))
    in_order = [f"eth{i}" for i in range(11)]
    assert [r.interface for r in results] == in_order
    checked = [r.interface for r in a.check(env.conf())]
    env.fake.clear_log()
    a.detach(env.conf())
    detached = [i for _, _, i in env.runs()]
    problems = []
    if checked != in_order:
        problems.append(f"check results order {checked}")
    if detached != list(reversed(in_order)) + ["lo"]:
        problems.append(f"detach order {detached}")
    assert not problems, "; ".join(problems)
