"""The result cache: Go libcni's cniCacheV1 format, byte for byte (spec section 5).

Files are produced through the real exec path (ADD with the fake plugin) or hand-crafted the way
Go's `json.Marshal(&cachedInfo)` writes them, and read back through `CNI`'s cache queries.
"""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from cri_net.libcni import CACHE_KIND, CacheError, CacheRecord, CNIError, ErrorCode, ResultCache, RuntimeConf

GO_ORDER = ["kind", "containerId", "config", "ifName", "networkName", "netns", "cniArgs", "capabilityArgs", "result"]

# the conflist exactly as an operator wrote it (whitespace, key order, a trailing newline); its
# base64 uses both '+' and '/', so the standard (not URL-safe) alphabet is checked too
CONFLIST = (b'{\n  "cniVersion": "1.0.0",\n  "name": "net1",\n  "comment": ">>>???",\n'
            b'  "plugins": [{"type": "fake-a", "capabilities": {"portMappings": true, "bandwidth": true}}]\n}\n')

PLUGIN_RESULT = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "mac": "0a:58:0a:01:02:03", "sandbox": "/var/run/netns/ns1"}],
    "ips": [{"interface": 0, "address": "10.1.2.3/24", "gateway": "10.1.2.1"}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.2.1"}],
    "dns": {"nameservers": ["10.0.0.10"], "search": ["svc.local"]},
}
CAP_ARGS = {
    "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}],
    "bandwidth": {"ingressRate": 1000, "egressRate": 2000},
    "aliases": ["a<b>&c"],
}
CNI_ARGS = [("IgnoreUnknown", "1"), ("K8S_POD_NAME", "web")]


def ordered_keys(data: bytes) -> list[str]:
    return [k for k, _ in json.loads(data, object_pairs_hook=lambda pairs: pairs)]


def add_reference(fakecni):
    from cri_net.libcni import conf_list_from_bytes

    fakecni.install("fake-a")
    fakecni.script("fake-a", "ADD", result=PLUGIN_RESULT)
    net = conf_list_from_bytes(CONFLIST)
    cni = fakecni.cni()
    rt = fakecni.rt("ctr1", "/var/run/netns/ns1", "eth0", args=CNI_ARGS, capability_args=CAP_ARGS)
    cni.add_network_list(net, rt)
    return cni, net, rt


# ---- what ADD writes ---------------------------------------------------------------------

def test_add_writes_exactly_what_go_libcni_writes(fakecni):
    add_reference(fakecni)
    b64 = base64.b64encode(CONFLIST).decode()
    assert "+" in b64 and "/" in b64 and b64.endswith("=")
    expected = (
        '{"kind":"cniCacheV1","containerId":"ctr1","config":"' + b64 + '","ifName":"eth0","networkName":"net1",'
        '"netns":"/var/run/netns/ns1","cniArgs":[["IgnoreUnknown","1"],["K8S_POD_NAME","web"]],'
        '"capabilityArgs":{"aliases":["a\\u003cb\\u003e\\u0026c"],"bandwidth":{"egressRate":2000,"ingressRate":1000},'
        '"portMappings":[{"containerPort":80,"hostIP":"","hostPort":8080,"protocol":"tcp"}]},'
        '"result":{"cniVersion":"1.0.0","dns":{"nameservers":["10.0.0.10"],"search":["svc.local"]},'
        '"interfaces":[{"mac":"0a:58:0a:01:02:03","name":"eth0","sandbox":"/var/run/netns/ns1"}],'
        '"ips":[{"address":"10.1.2.3/24","gateway":"10.1.2.1","interface":0}],'
        '"routes":[{"dst":"0.0.0.0/0","gw":"10.1.2.1"}]}}'
    ).encode()
    assert fakecni.cache_file().read_bytes() == expected


def test_add_cache_file_keys_and_values(fakecni):
    add_reference(fakecni)
    data = fakecni.cache_file().read_bytes()
    assert ordered_keys(data) == GO_ORDER
    doc = json.loads(data)
    assert doc["kind"] == "cniCacheV1" == CACHE_KIND
    assert doc["containerId"] == "ctr1"
    assert base64.b64decode(doc["config"], validate=True) == CONFLIST
    assert doc["ifName"] == "eth0" and doc["networkName"] == "net1" and doc["netns"] == "/var/run/netns/ns1"
    assert doc["cniArgs"] == [list(a) for a in CNI_ARGS]
    assert doc["capabilityArgs"] == CAP_ARGS  # all of them, not only those some plugin consumed
    assert doc["result"] == PLUGIN_RESULT
    # compact, keys sorted at every level inside result and capabilityArgs
    for key in ("result", "capabilityArgs"):
        assert json.dumps(doc[key], separators=(",", ":"), sort_keys=True).replace("<", "\\u003c") \
            .replace(">", "\\u003e").replace("&", "\\u0026").encode() in data
    assert not data.endswith(b"\n")


@pytest.mark.parametrize("netns, args, caps, present", [
    ("", (), {}, []),
    ("/var/run/netns/x", (), {}, ["netns"]),
    ("", (("A", "1"),), {}, ["cniArgs"]),
    ("", (), {"dns": {"servers": ["1.1.1.1"]}}, ["capabilityArgs"]),
    ("/n", (("A", "1"),), {"x": 1}, ["netns", "cniArgs", "capabilityArgs"]),
])
def test_empty_fields_are_omitted(fakecni, netns, args, caps, present):
    fakecni.install("fake-a")
    fakecni.cni().add_network_list(fakecni.conflist("fake-a"), fakecni.rt("ctr1", netns, args=args,
                                                                           capability_args=caps))
    keys = ordered_keys(fakecni.cache_file().read_bytes())
    assert keys == [k for k in GO_ORDER if k in ["kind", "containerId", "config", "ifName", "networkName", "result"]
                    + present]


def test_modes_are_0700_and_0600_whatever_the_umask(fakecni):
    old = os.umask(0)
    try:
        add_reference(fakecni)
    finally:
        os.umask(old)
    results = fakecni.cache_dir / "results"
    assert stat.S_IMODE(results.stat().st_mode) == 0o700
    assert stat.S_IMODE(fakecni.cache_file().stat().st_mode) == 0o600
    assert [p.name for p in results.iterdir()] == ["net1-ctr1-eth0"]  # no temp file left behind


def test_re_add_replaces_the_file_atomically(fakecni):
    cni, net, rt = add_reference(fakecni)
    fakecni.script("fake-a", "ADD", result={**PLUGIN_RESULT, "ips": [{"address": "10.9.9.9/24"}]})
    cni.add_network_list(net, rt)
    doc = json.loads(fakecni.cache_file().read_bytes())
    assert doc["result"]["ips"] == [{"address": "10.9.9.9/24"}]
    assert sorted(p.name for p in (fakecni.cache_dir / "results").iterdir()) == ["net1-ctr1-eth0"]


def test_round_trip_through_the_cache_queries(fakecni):
    cni, net, rt = add_reference(fakecni)
    assert cni.cached_result(net, rt).to_dict() == PLUGIN_RESULT
    config, cached_rt = cni.cached_config("net1", RuntimeConf("ctr1", ifname="eth0"))
    assert config == CONFLIST
    assert cached_rt == RuntimeConf("ctr1", "/var/run/netns/ns1", "eth0", tuple(CNI_ARGS), CAP_ARGS)
    (att,) = cni.cached_attachments("ctr1")
    assert (att.container_id, att.network, att.ifname, att.config, att.netns, att.cni_args, att.capability_args) == \
        ("ctr1", "net1", "eth0", CONFLIST, "/var/run/netns/ns1", tuple(CNI_ARGS), CAP_ARGS)
    assert cni.cached_result(net, RuntimeConf("other", ifname="eth0")) is None
    assert cni.cached_config("net1", RuntimeConf("other", ifname="eth0")) is None


# ---- reading what Go wrote ---------------------------------------------------------------

GO_CONFIG = (b'{"cniVersion":"1.0.0","name":"gonet","plugins":[{"type":"fake-a","bridge":"cni0",'
             b'"capabilities":{"portMappings":true}},{"type":"fake-b"}]}')
GO_RESULT = {
    "cniVersion": "1.0.0",
    "interfaces": [{"mac": "aa:bb:cc:dd:ee:01", "name": "cni0"}, {"mac": "aa:bb:cc:dd:ee:02", "name": "veth1234"},
                   {"mac": "aa:bb:cc:dd:ee:03", "name": "eth0", "sandbox": "/var/run/netns/cni-1234"}],
    "ips": [{"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2}],
    "routes": [{"dst": "0.0.0.0/0"}],
}
# (Go libcni >= 1.2 omits an empty "dns" from 1.x results.)
# byte for byte what Go libcni's cacheAdd writes (json.Marshal of cachedInfo: struct order, maps
# sorted, <>& escaped, omitempty, no trailing newline)
GO_FILE = (
    b'{"kind":"cniCacheV1","containerId":"abc123","config":"' + base64.b64encode(GO_CONFIG) + b'",'
    b'"ifName":"eth0","networkName":"gonet","netns":"/var/run/netns/cni-1234",'
    b'"cniArgs":[["IgnoreUnknown","1"],["K8S_POD_NAMESPACE","default"],["K8S_POD_NAME","a\\u0026b"]],'
    b'"capabilityArgs":{"portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]},'
    b'"result":{"cniVersion":"1.0.0","interfaces":[{"mac":"aa:bb:cc:dd:ee:01","name":"cni0"},'
    b'{"mac":"aa:bb:cc:dd:ee:02","name":"veth1234"},'
    b'{"mac":"aa:bb:cc:dd:ee:03","name":"eth0","sandbox":"/var/run/netns/cni-1234"}],'
    b'"ips":[{"address":"10.88.0.5/16","gateway":"10.88.0.1","interface":2}],"routes":[{"dst":"0.0.0.0/0"}]}}'
)
GO_CAPS = {"portMappings": [{"containerPort": 80, "hostPort": 8080, "protocol": "tcp"}]}
GO_ARGS = (("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", "default"), ("K8S_POD_NAME", "a&b"))


def plant(fakecni, name: str, data: bytes):
    path = fakecni.cache_dir / "results" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_reads_a_go_written_file(fakecni):
    from cri_net.libcni import conf_list_from_bytes

    plant(fakecni, "gonet-abc123-eth0", GO_FILE)
    cni = fakecni.cni()
    net = conf_list_from_bytes(GO_CONFIG)
    rt = RuntimeConf("abc123", ifname="eth0")
    assert cni.cached_result(net, rt).to_dict() == GO_RESULT
    config, cached_rt = cni.cached_config("gonet", rt)
    assert config == GO_CONFIG
    assert cached_rt == RuntimeConf("abc123", "/var/run/netns/cni-1234", "eth0", GO_ARGS, GO_CAPS)
    (att,) = cni.cached_attachments()
    assert (att.container_id, att.network, att.ifname, att.netns, att.cni_args, att.capability_args, att.config) == \
        ("abc123", "gonet", "eth0", "/var/run/netns/cni-1234", GO_ARGS, GO_CAPS, GO_CONFIG)


def test_writes_the_same_bytes_go_wrote(fakecni):
    from cri_net.libcni import conf_list_from_bytes

    fakecni.install("fake-a", "fake-b")
    fakecni.script("fake-a", "ADD", result=GO_RESULT)
    fakecni.script("fake-b", "ADD", stdout=json.dumps(GO_RESULT))
    fakecni.cni().add_network_list(conf_list_from_bytes(GO_CONFIG),
                                   RuntimeConf("abc123", "/var/run/netns/cni-1234", "eth0", GO_ARGS, GO_CAPS))
    assert fakecni.cache_file("gonet", "abc123").read_bytes() == GO_FILE


def test_del_of_a_go_written_attachment_uses_its_result(fakecni):
    from cri_net.libcni import conf_list_from_bytes

    fakecni.install("fake-a", "fake-b")
    path = plant(fakecni, "gonet-abc123-eth0", GO_FILE)
    fakecni.cni().del_network_list(conf_list_from_bytes(GO_CONFIG),
                                   RuntimeConf("abc123", "/var/run/netns/cni-1234", "eth0", GO_ARGS, GO_CAPS))
    assert [c["config"]["prevResult"] for c in fakecni.calls()] == [GO_RESULT, GO_RESULT]
    assert fakecni.calls()[1]["config"]["runtimeConfig"] == GO_CAPS
    assert not path.exists()


def test_go_record_with_null_and_missing_fields(fakecni):
    # Go writes "config":null for a nil []byte; older writers may lack optional fields
    plant(fakecni, "n-c-eth0", b'{"kind":"cniCacheV1","containerId":"c","config":null,"ifName":"eth0",'
                               b'"networkName":"n","cniArgs":null,"capabilityArgs":null}')
    cni = fakecni.cni()
    assert cni.cached_config("n", RuntimeConf("c", ifname="eth0")) == (b"", RuntimeConf("c", "", "eth0", (), {}))
    assert cni.cached_result(fakecni.conflist("fake-a", name="n"), RuntimeConf("c", ifname="eth0")) is None
    assert [(a.container_id, a.network, a.ifname) for a in cni.cached_attachments()] == [("c", "n", "eth0")]


@pytest.mark.parametrize("version, expect", [
    ("1.0.0", {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}],
               "ips": [{"interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"}]}),
    ("0.4.0", {"cniVersion": "0.4.0", "interfaces": [{"name": "eth0"}],
               "ips": [{"version": "4", "interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
               "dns": {}}),
])
def test_legacy_raw_result_file_is_read_by_cached_result(fakecni, version, expect):
    legacy = {"cniVersion": "0.3.1", "interfaces": [{"name": "eth0"}],
              "ips": [{"version": "4", "interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"}], "dns": {}}
    plant(fakecni, "net1-ctr1-eth0", json.dumps(legacy, indent=2).encode())
    cni = fakecni.cni()
    rt = RuntimeConf("ctr1", ifname="eth0")
    assert cni.cached_result(fakecni.conflist("fake-a", version=version), rt).to_dict() == expect
    assert cni.cached_config("net1", rt) is None  # not a cniCacheV1 record
    assert cni.cached_attachments() == []  # and not an attachment


# ---- listing attachments -----------------------------------------------------------------

def record(network: str, container: str, ifname: str, **extra) -> bytes:
    return CacheRecord(container_id=container, network_name=network, ifname=ifname, config=b"{}",
                       result={"cniVersion": "1.0.0"}, **extra).to_json().encode()


def test_attachments_filter_by_container_and_skip_what_is_not_an_attachment(fakecni):
    plant(fakecni, "net1-ctr1-eth0", record("net1", "ctr1", "eth0"))
    plant(fakecni, "net2-ctr1-eth1", record("net2", "ctr1", "eth1", netns="/n"))
    plant(fakecni, "net1-ctr11-eth0", record("net1", "ctr11", "eth0"))
    plant(fakecni, "net1-ctr2-eth0", record("net1", "ctr2", "eth0"))
    plant(fakecni, "a-ctr1-b", record("net9", "other", "eth0"))  # file name matches, record does not
    plant(fakecni, "net1-ctr1-legacy", json.dumps({"cniVersion": "0.4.0", "ips": []}).encode())
    plant(fakecni, "net1-ctr1-garbage", b"\x00\xffnot json")
    plant(fakecni, "net1-ctr1-otherkind", b'{"kind":"cniCacheV2","containerId":"ctr1","ifName":"x","networkName":"n"}')
    plant(fakecni, "net1-ctr1-nonet", record("", "ctr1", "eth0"))
    plant(fakecni, "net1-ctr1-noif", record("net1", "ctr1", ""))
    plant(fakecni, ".tmp-net1-ctr1-eth9", b'{"kind":"cniCacheV1","containerId":"ctr1"')  # torn temp file
    (fakecni.cache_dir / "results" / "net1-ctr1-adir").mkdir()  # unreadable: a directory
    os.symlink("/nonexistent/target", fakecni.cache_dir / "results" / "net1-ctr1-dangling")  # unreadable
    cni = fakecni.cni()

    def ids(atts):
        return [(a.network, a.container_id, a.ifname) for a in atts]

    assert ids(cni.cached_attachments("ctr1")) == [("net1", "ctr1", "eth0"), ("net2", "ctr1", "eth1")]
    assert ids(cni.cached_attachments("ctr11")) == [("net1", "ctr11", "eth0")]
    assert ids(cni.cached_attachments("nope")) == []
    assert ids(cni.cached_attachments()) == [  # sorted by file name
        ("net9", "other", "eth0"), ("net1", "ctr1", "eth0"), ("net1", "ctr11", "eth0"), ("net1", "ctr2", "eth0"),
        ("net2", "ctr1", "eth1")]
    assert ids(cni.cached_attachments(None)) == ids(cni.cached_attachments(""))


def test_owner_tag_round_trips_after_gos_fields_and_filters_attachments(fakecni):
    """A shared cache dir: each runtime lists only what it made. The tag is one more key after
    Go's fields (Go's decoder ignores unknown keys); Go's own records have none."""
    tagged = record("net1", "ctr1", "eth0", owner="cri-net/pod")
    assert tagged.endswith(b',"result":{"cniVersion":"1.0.0"},"cri-net.io/owner":"cri-net/pod"}')
    assert b"owner" not in record("net1", "ctr1", "eth0")  # untagged: exactly Go's bytes
    plant(fakecni, "net1-ctr1-eth0", tagged)
    plant(fakecni, "net2-ctr1-eth0", record("net2", "ctr1", "eth0"))
    plant(fakecni, "net3-ctr1-eth0", record("net3", "ctr1", "eth0", owner="someone-else"))
    plant(fakecni, "net4-ctr1-eth0", record("net4", "ctr1", "eth0")[:-1] + b',"cri-net.io/owner":7}')
    cni = fakecni.cni()
    assert [(a.network, a.owner) for a in cni.cached_attachments("ctr1")] == [
        ("net1", "cri-net/pod"), ("net2", ""), ("net3", "someone-else"), ("net4", "")]
    assert [a.network for a in cni.cached_attachments(owner="cri-net/pod")] == ["net1"]
    assert [a.network for a in cni.cached_attachments("ctr1", owner="")] == ["net2", "net4"]


def test_add_writes_the_instances_owner_tag(fakecni):
    from cri_net.libcni import CNI

    fakecni.install("fake-a")
    cni = CNI([str(fakecni.bin)], cache_dir=str(fakecni.cache_dir), owner="me")
    cni.add_network_list(fakecni.conflist("fake-a"), RuntimeConf("ctr1", "/n", "eth0"))
    [att] = cni.cached_attachments()
    assert att.owner == "me"
    assert [a.owner for a in fakecni.cni().cached_attachments()] == ["me"]


def test_no_cache_dir_means_no_attachments(fakecni):
    assert fakecni.cni().cached_attachments() == []
    assert fakecni.cni().cached_result(fakecni.conflist("fake-a"), RuntimeConf("ctr1")) is None


# ---- failed writes -----------------------------------------------------------------------

def test_failed_write_under_a_regular_file_raises_cache_error(fakecni, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    cache = ResultCache(str(blocker / "cache"))
    with pytest.raises(CacheError) as info:
        cache.write(CacheRecord(container_id="c", network_name="n", ifname="eth0", result={"a": 1}))
    assert info.value.code == ErrorCode.IO_FAILURE == 5
    assert "failed to write cached result" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fakecni", "not-a-dir"]


def test_add_whose_cache_write_fails_raises_cache_error(fakecni, tmp_path):
    from cri_net.libcni import CNI, Executor

    fakecni.install("fake-a")
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    cni = CNI([str(fakecni.bin)], cache_dir=str(blocker / "sub"), executor=Executor())
    with pytest.raises(CacheError):
        cni.add_network_list(fakecni.conflist("fake-a"), fakecni.rt())
    assert fakecni.sequence() == [("fake-a", "ADD")]
    assert blocker.read_text() == "x"


def test_failed_rename_leaves_no_temp_file(fakecni):
    results = fakecni.cache_dir / "results"
    target = results / "n-c-eth0"
    target.mkdir(parents=True)
    (target / "keep").write_text("x")  # a non-empty directory where the file should go
    with pytest.raises(CacheError):
        ResultCache(str(fakecni.cache_dir)).write(
            CacheRecord(container_id="c", network_name="n", ifname="eth0", result={"a": 1}))
    assert sorted(p.name for p in results.iterdir()) == ["n-c-eth0"]
    assert [p.name for p in target.iterdir()] == ["keep"]


# ---- path traversal ----------------------------------------------------------------------

BAD_COMPONENTS = [
    ("../escape", "ctr1", "eth0"),
    ("net1", "../../escape", "eth0"),
    ("net1", "ctr1", "../../../escape"),
    ("..", "ctr1", "eth0"),
    ("net1", ".", "eth0"),
    ("net1", "ctr1", ".."),
    ("net1", "a/b", "eth0"),
    ("net1", "ctr\0", "eth0"),
    ("/abs", "ctr1", "eth0"),
]


@pytest.mark.parametrize("network, container, ifname", BAD_COMPONENTS)
def test_result_cache_refuses_unsafe_components(fakecni, network, container, ifname):
    """Writing under an unsafe name is refused (code 4); reading or deleting one finds nothing,
    since no such entry can ever have been written (so DEL of it stays idempotent)."""
    cache = ResultCache(str(fakecni.cache_dir / "inner"))
    rec = CacheRecord(container_id=container, network_name=network, ifname=ifname, result={"a": 1})
    with pytest.raises(CNIError) as info:
        cache.write(rec)
    assert info.value.code == ErrorCode.INVALID_ENVIRONMENT_VARIABLES
    assert cache.read(network, container, ifname) is None
    assert cache.read_result(network, container, ifname) is None
    cache.delete(network, container, ifname)
    assert not (fakecni.cache_dir / "inner" / "results").exists() or \
        list((fakecni.cache_dir / "inner" / "results").iterdir()) == []


@pytest.mark.parametrize("network, container, ifname", [c for c in BAD_COMPONENTS if "\0" not in c[1]])
def test_operations_never_touch_files_outside_the_cache_dir(fakecni, tmp_path, network, container, ifname):
    fakecni.install("fake-a")
    cache_dir = tmp_path / "deep" / "cache"
    cache_dir.mkdir(parents=True)
    # decoys where a naive join would land (results/<net>-<ctr>-<if> with the '..' resolved)
    victims = [tmp_path / "escape", tmp_path / "deep" / "escape", cache_dir / "escape",
               tmp_path / "deep" / "cache" / "results" / "escape"]
    decoy = json.dumps({"cniVersion": "1.0.0", "ips": [{"address": "6.6.6.6/32"}]}).encode()
    for v in victims:
        v.parent.mkdir(parents=True, exist_ok=True)
        v.write_bytes(decoy)
    def snapshot():
        return {p: p.read_bytes() for root in (tmp_path / "deep", tmp_path / "escape")
                for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file()}

    before = snapshot()

    from cri_net.libcni import CNI, Executor

    cni = CNI([str(fakecni.bin)], cache_dir=str(cache_dir), executor=Executor())
    net = fakecni.conflist("fake-a", name=network)
    rt = RuntimeConf(container, "/n", ifname)
    with pytest.raises(CNIError):
        cni.add_network_list(net, rt)
    for op in (lambda: cni.cached_result(net, rt), lambda: cni.cached_config(network, rt),
               lambda: cni.del_network_list(net, rt)):
        try:
            got = op()
        except CNIError:
            continue
        assert got is None or "6.6.6.6" not in json.dumps(getattr(got, "to_dict", lambda: None)())
    assert snapshot() == before


def test_a_result_over_the_read_limit_is_never_written(tmp_path):
    """What read_result would refuse as too large must be refused at write(): an ADD that could
    never be DEL'd from its cache entry fails instead (and is rolled back by its caller)."""
    from cri_net.libcni.cache import MAX_CACHE_FILE_SIZE

    cache = ResultCache(str(tmp_path / "cache"))
    with pytest.raises(CacheError, match="over the read limit") as info:
        cache.write(CacheRecord(container_id="c", network_name="n", ifname="eth0",
                                result={"a": "x" * MAX_CACHE_FILE_SIZE}))
    assert info.value.code == ErrorCode.IO_FAILURE
    assert not (tmp_path / "cache" / "results").exists() or os.listdir(tmp_path / "cache" / "results") == []
