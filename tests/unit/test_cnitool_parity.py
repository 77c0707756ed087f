"""`cri-net cni` as a drop-in for upstream cnitool 1.3 (issue 10, item 5).

Each rule is what cnitool (cnitool/cmd/root.go over libcni/api.go) does with the same
environment and files; the plugins are the fake plugin's real executables, run through the
real exec path, so what is checked is what a plugin would see: CNI_* variables, stdin and the
cache files left behind.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from badinput_strategies import props
from cri_net.cli.main import main
from fakeplugin.harness import FakeCNI
from tests.reliability import record

SUITE = "bad-input"


@pytest.fixture
def tool(fakecni: FakeCNI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> "Tool":
    return Tool(fakecni, tmp_path, monkeypatch)


class Tool:
    """`cri-net cni` in-process, with cnitool's environment pointing at the fake plugins."""

    def __init__(self, fake: FakeCNI, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fake, self.mp = fake, monkeypatch
        self.conf_dir = root / "net.d"
        self.conf_dir.mkdir()
        self.netns = str(root / "ns1")
        monkeypatch.setenv("NETCONFPATH", str(self.conf_dir))
        monkeypatch.setenv("CNI_PATH", str(fake.bin))
        for var in ("CAP_ARGS", "CNI_ARGS", "CNI_IFNAME"):
            monkeypatch.delenv(var, raising=False)

    def network(self, *plugins: str | dict[str, Any], name: str = "net1", version: str = "1.0.0") -> None:
        self.fake.install(*{p if isinstance(p, str) else p["type"] for p in plugins})
        data = FakeCNI.conflist_bytes(*plugins, name=name, version=version)
        (self.conf_dir / f"{len(list(self.conf_dir.iterdir())):02d}.conflist").write_bytes(data)

    def run(self, *argv: str, capsys: pytest.CaptureFixture[str] | None = None) -> int:
        return main(["cni", *argv, "--cache-dir", str(self.fake.cache_dir)])

    def container_id(self, netns: str | None = None) -> str:
        return "cnitool-" + hashlib.sha512((netns or self.netns).encode()).hexdigest()[:20]

    def cache_file(self, network: str = "net1", ifname: str = "eth0") -> Path:
        return self.fake.cache_file(network, self.container_id(), ifname)

    def plant_go_cache(self, network: str, ifname: str = "eth0", result: dict[str, Any] | None = None) -> Path:
        """A cniCacheV1 file as Go libcni writes it (json.Marshal of cachedInfo)."""
        path = self.cache_file(network, ifname)
        path.parent.mkdir(parents=True, exist_ok=True)
        conf = FakeCNI.conflist_bytes("fake-a", name=network)
        path.write_text(json.dumps({
            "kind": "cniCacheV1", "containerId": self.container_id(), "config": base64.b64encode(conf).decode(),
            "ifName": ifname, "networkName": network, "netns": self.netns,
            "result": result or {"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.7/24"}]}}))
        return path


def stdin_of(call: dict[str, Any]) -> dict[str, Any]:
    return json.loads(call["stdin"])


# ---- results without a usable cniVersion -------------------------------------------------

@pytest.mark.parametrize("version", ["1.1.0", "1.0.0", "0.4.0"])
@pytest.mark.parametrize("field", ["missing", "empty", "null", "number", "object"])
def test_add_result_without_a_string_version_takes_the_networks(tool, capsys, version, field):
    """Go's fixupResultVersion keeps only a non-empty string cniVersion; anything else in that
    field (or no field) means "the network's version", and the ADD succeeds and is cached."""
    ips = [{"address": "10.9.0.7/24"}] if version != "0.4.0" else [{"version": "4", "address": "10.9.0.7/24"}]
    result: dict[str, Any] = {"ips": ips}
    if field != "missing":
        result["cniVersion"] = {"empty": "", "null": None, "number": 1, "object": {"v": 1}}[field]
    tool.network("fake-a", "fake-b", version=version)
    tool.fake.script("fake-a", "ADD", result=result)
    tool.fake.script("fake-b", "ADD", omit_version=True)
    assert tool.run("add", "net1", tool.netns) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["cniVersion"] == version and printed["ips"][0]["address"] == "10.9.0.7/24"
    assert stdin_of(tool.fake.calls("fake-b")[0])["prevResult"]["cniVersion"] == version
    assert json.loads(tool.cache_file().read_bytes())["result"]["cniVersion"] == version


# ---- CHECK and DEL take the names Go takes there -----------------------------------------

@pytest.mark.parametrize("name", ["net 1", "net:1", "_net1", ".net1", "net\u00e91", "net;1=2"])
def test_check_and_del_accept_names_go_only_refuses_on_add(tool, capsys, name):
    """Go validates the network name on ADD only; an attachment cached under such a name (by
    an older libcni or another runtime) can still be checked and torn down, with its cached
    result as prevResult, and its cache file goes."""
    tool.network("fake-a", name=name)
    assert tool.run("add", name, tool.netns) == 1
    assert "invalid characters found in network name" in capsys.readouterr().err
    cache = tool.plant_go_cache(name)
    assert tool.run("check", name, tool.netns) == 0, capsys.readouterr().err
    assert tool.run("del", name, tool.netns) == 0, capsys.readouterr().err
    assert tool.fake.sequence() == [("fake-a", "CHECK"), ("fake-a", "DEL")]
    for call in tool.fake.calls():
        assert stdin_of(call)["name"] == name
        assert stdin_of(call)["prevResult"]["ips"] == [{"address": "10.9.0.7/24"}]
    assert not cache.exists()


@pytest.mark.parametrize("ifname", ["eth 0", "a" * 16, "eth:0", ".", "\u00e9" * 8])
def test_del_passes_through_an_interface_name_go_passes_through(tool, capsys, ifname, monkeypatch):
    """Go's DEL runs the plugins with whatever CNI_IFNAME says (only ADD validates it); the
    cache is still only touched through names that are one path component."""
    tool.network("fake-a", "fake-b")
    monkeypatch.setenv("CNI_IFNAME", ifname)
    assert tool.run("del", "net1", tool.netns) == 0, capsys.readouterr().err
    assert tool.fake.sequence() == [("fake-b", "DEL"), ("fake-a", "DEL")]
    assert {c["env"]["CNI_IFNAME"] for c in tool.fake.calls()} == {ifname}
    assert not (tool.fake.cache_dir / "results").exists()


def test_empty_cni_ifname_means_eth0(tool, capsys, monkeypatch):
    tool.network("fake-a")
    monkeypatch.setenv("CNI_IFNAME", "")
    assert tool.run("add", "net1", tool.netns) == 0, capsys.readouterr().err
    assert tool.fake.calls()[0]["env"]["CNI_IFNAME"] == "eth0"
    assert tool.cache_file(ifname="eth0").exists()
    assert tool.run("del", "net1", tool.netns) == 0
    assert not tool.cache_file(ifname="eth0").exists()


def test_ifname_flag_wins_over_the_environment(tool, capsys, monkeypatch):
    """cnitool 1.3's --ifname/-i."""
    tool.network("fake-a")
    monkeypatch.setenv("CNI_IFNAME", "eth7")
    assert tool.run("add", "net1", tool.netns, "-i", "net9") == 0, capsys.readouterr().err
    assert tool.fake.calls()[0]["env"]["CNI_IFNAME"] == "net9"
    assert tool.cache_file(ifname="net9").exists()


# ---- CNI_PATH and CAP_ARGS -----------------------------------------------------------------

@pytest.mark.parametrize("shape", ["{bin}", "{bin}:", ":{bin}", "/nonexistent::{bin}", "{bin}::/x:"])
def test_cni_path_reaches_plugins_exactly_as_given(tool, capsys, monkeypatch, shape):
    tool.network("fake-a")
    value = shape.format(bin=tool.fake.bin)
    monkeypatch.setenv("CNI_PATH", value)
    assert tool.run("add", "net1", tool.netns) == 0, capsys.readouterr().err
    assert tool.fake.calls()[0]["env"]["CNI_PATH"] == value


def test_an_empty_cni_path_entry_is_the_working_dir_and_runs_that_file(tool, capsys, monkeypatch, tmp_path):
    """filepath.SplitList keeps empty entries and Go's FindInPath joins them to the plugin
    name, i.e. the working dir; the file found there is the one that runs."""
    tool.network("fake-a")
    monkeypatch.chdir(tool.fake.bin)
    monkeypatch.setenv("CNI_PATH", "/nonexistent::")
    assert tool.run("add", "net1", tool.netns) == 0, capsys.readouterr().err
    assert tool.fake.calls()[0]["argv"][0] == str(tool.fake.bin / "fake-a")


@pytest.mark.parametrize("value, sent", [("null", None), ("{}", None), ('{"portMappings": []}', {"portMappings": []}),
                                         ("", None)])
def test_cap_args_values_go_accepts(tool, capsys, monkeypatch, value, sent):
    tool.network({"type": "fake-a", "capabilities": {"portMappings": True}})
    monkeypatch.setenv("CAP_ARGS", value)
    assert tool.run("add", "net1", tool.netns) == 0, capsys.readouterr().err
    assert stdin_of(tool.fake.calls()[0]).get("runtimeConfig") == sent


@pytest.mark.parametrize("value", ["[]", "1", '"x"', "true", "{", "nul"])
def test_cap_args_go_refuses_is_refused_before_any_plugin(tool, capsys, monkeypatch, value):
    tool.network("fake-a")
    monkeypatch.setenv("CAP_ARGS", value)
    assert tool.run("add", "net1", tool.netns) == 1
    assert "CAP_ARGS" in capsys.readouterr().err
    assert tool.fake.calls() == []


@pytest.mark.parametrize("command", ["gc", "status", "version", "add", "check", "del"])
@pytest.mark.parametrize("var, value", [("CNI_ARGS", "no-equals-sign"), ("CNI_ARGS", "A=1;;B=2"),
                                        ("CAP_ARGS", "[1,2]"), ("CAP_ARGS", "not json")])
def test_malformed_cni_args_or_cap_args_fail_every_command_before_any_plugin(tool, capsys, monkeypatch,
                                                                             command, var, value):
    """cnitool's setupRuntimeConfig parses both for every command. gc used to skip them and
    DEL every cached attachment; now nothing runs and the cache stays as it was."""
    tool.network("fake-a", version="1.1.0")
    assert tool.run("add", "net1", tool.netns) == 0, capsys.readouterr().err
    tool.fake.clear_log()
    monkeypatch.setenv(var, value)
    assert tool.run(command, "net1", tool.netns) == 1
    assert var in capsys.readouterr().err
    assert tool.fake.calls() == []
    assert tool.cache_file().exists()


# ---- gc in a cache dir shared with cri-net serve ------------------------------------------

def test_gc_keeps_owner_tagged_attachments_and_names_them_valid(tool, capsys):
    """cnitool's gc keeps nothing; ours keeps what `cri-net serve` and the cri-net plugin
    tagged (their live pods), collects the untagged one and tells 1.1.0 plugins what stays."""
    from cri_net.libcni import CNI

    tool.network("fake-a", version="1.1.0")
    net = tool.fake.conflist("fake-a", version="1.1.0")
    for owner, cid in (("cri-net/pod", "pod1"), ("cri-net/cni", "hook1"), ("cri-net/native", "native1")):
        CNI([str(tool.fake.bin)], cache_dir=str(tool.fake.cache_dir), owner=owner).add_network_list(
            net, tool.fake.rt(cid, netns=f"/run/netns/{cid}"))
    assert tool.run("add", "net1", tool.netns) == 0, capsys.readouterr().err  # untagged, as cnitool's
    tool.fake.clear_log()

    assert tool.run("gc", "net1") == 0, capsys.readouterr().err

    assert [c["env"]["CNI_CONTAINERID"] for c in tool.fake.calls(command="DEL")] == [tool.container_id()]
    assert not tool.cache_file().exists()
    assert all(tool.fake.cache_file(container_id=c).exists() for c in ("pod1", "hook1", "native1"))
    (gc,) = tool.fake.calls(command="GC")
    assert sorted(a["containerID"] for a in stdin_of(gc)["cni.dev/valid-attachments"]) == ["hook1", "native1", "pod1"]


def test_gc_without_tagged_attachments_is_cnitools(tool, capsys):
    tool.network("fake-a", version="1.1.0")
    assert tool.run("add", "net1", tool.netns) == 0, capsys.readouterr().err
    tool.fake.clear_log()
    assert tool.run("gc", "net1") == 0, capsys.readouterr().err
    assert tool.fake.sequence() == [("fake-a", "DEL"), ("fake-a", "GC")]
    assert "cni.dev/valid-attachments" not in stdin_of(tool.fake.calls(command="GC")[0])


# ---- CHECK with a cached result it cannot decode -----------------------------------------

@pytest.mark.parametrize("content", [
    b"garbage, not json",
    b"",
    b"[1, 2]",
    b'{"kind":"cniCacheV1","containerId":"c","ifName":"eth0","networkName":"net1",'
    b'"result":{"cniVersion":"1.0.0","ips":[{"address":"bogus"}]}}',
    b'{"cniVersion":"9.9.9"}',
])
def test_check_with_an_undecodable_cached_result_fails_like_go(tool, capsys, content):
    """Go: `failed to get network "net1" cached result: ...`, and no plugin runs (never a
    CHECK without its prevResult)."""
    tool.network("fake-a")
    path = tool.cache_file()
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert tool.run("check", "net1", tool.netns) == 1
    assert 'failed to get network "net1" cached result: ' in capsys.readouterr().err
    assert tool.fake.calls() == []
    assert path.read_bytes() == content


def test_check_without_a_cache_file_runs_without_prev_result(tool, capsys):
    tool.network("fake-a")
    assert tool.run("check", "net1", tool.netns) == 0, capsys.readouterr().err
    assert "prevResult" not in stdin_of(tool.fake.calls()[0])


# ---- container id ----------------------------------------------------------------------------

def test_container_id_of_a_path_with_two_leading_slashes_is_cnitools(tool, capsys):
    """filepath.Abs cleans "//x" to "/x"; POSIX normpath keeps the double slash."""
    tool.network("fake-a")
    assert tool.run("add", "net1", "/" + tool.netns) == 0, capsys.readouterr().err
    env = tool.fake.calls()[0]["env"]
    assert env["CNI_NETNS"] == tool.netns and env["CNI_CONTAINERID"] == tool.container_id()
    assert tool.cache_file().exists()


def test_container_id_of_a_relative_path_under_a_symlinked_cwd_is_cnitools(tool, capsys, monkeypatch, tmp_path):
    """os.Getwd answers $PWD when it names the working dir, so cnitool hashes the symlinked
    path the shell shows; so must we."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    tool.network("fake-a")
    monkeypatch.chdir(link)
    monkeypatch.setenv("PWD", str(link))
    assert tool.run("add", "net1", "ns9") == 0, capsys.readouterr().err
    env = tool.fake.calls()[0]["env"]
    assert env["CNI_NETNS"] == str(link / "ns9")
    assert env["CNI_CONTAINERID"] == tool.container_id(str(link / "ns9"))


def test_a_netns_path_that_is_not_utf8_gets_the_id_of_its_raw_bytes(tool, capsys):
    """Go hashes the path's bytes; `.encode()` of the surrogate-escaped str raised a traceback.
    The plugins get the raw bytes in CNI_NETNS."""
    tool.network("fake-a")
    raw = os.fsencode(tool.netns) + b"-\xff\xfe"
    netns = os.fsdecode(raw)
    assert tool.run("add", "net1", netns) == 0, capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out)  # the fake plugin echoes CNI_NETNS; Go prints U+FFFD
    assert printed["interfaces"][0]["sandbox"] == tool.netns + "-\ufffd\ufffd"
    container_id = "cnitool-" + hashlib.sha512(raw).hexdigest()[:20]
    (call,) = tool.fake.calls()
    assert call["env"]["CNI_CONTAINERID"] == container_id
    assert os.fsencode(call["env"]["CNI_NETNS"]) == raw
    cached = tool.fake.cache_file("net1", container_id).read_bytes()  # as Go's json.Marshal writes it
    assert b'"netns":"' + os.fsencode(tool.netns) + b'-\\ufffd\\ufffd"' in cached
    assert tool.run("del", "net1", netns) == 0, capsys.readouterr().err
    assert not tool.fake.cache_file("net1", container_id).exists()


def test_a_stale_pwd_is_ignored(tool, capsys, monkeypatch, tmp_path):
    tool.network("fake-a")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PWD", str(tool.fake.bin))  # names another directory
    assert tool.run("add", "net1", "ns9") == 0, capsys.readouterr().err
    assert tool.fake.calls()[0]["env"]["CNI_NETNS"] == str(tmp_path / "ns9")


# ---- generated: whatever Go's DEL passes through, ours does -------------------------------

#: Names and interface names Go's DEL passes to the plugins unchecked (no NUL: exec cannot).
go_del_names = st.lists(st.sampled_from(["net", "eth0", " ", ":", ";", "=", "-", ".", "..", "/", "\u00e9", "\t",
                                         "a" * 16, "*", "$(id)", "\u202e"]), min_size=1, max_size=5).map("".join)


@props(ci=25, full=400)
@given(name=go_del_names, ifname=go_del_names)
def test_generated_del_names_reach_the_plugins_and_stay_in_the_cache_dir(fakecni, tmp_path, name, ifname):
    """DEL with a generated network and interface name: every plugin runs with them verbatim
    (stdin name, CNI_IFNAME), in reverse order; nothing is written, and a cache file is only
    ever read or removed inside <cache>/results."""
    record("cnitool parity: DEL passes names through", runs=1, suite=SUITE,
           audited="plugins ran with the exact names; no file outside <cache>/results; decoy kept")
    fakecni.install("fake-a", "fake-b")
    fakecni.clear_log()
    cni = fakecni.cni(timeout=20)
    from cri_net.libcni import RuntimeConf, conf_list_from_bytes
    net = conf_list_from_bytes(FakeCNI.conflist_bytes("fake-a", "fake-b"))
    net = type(net)(**{**net.__dict__, "name": name})
    decoy = tmp_path / "decoy"
    decoy.write_text("keep")
    cni.del_network_list(net, RuntimeConf("cnitool-0123456789abcdef0123", "/run/netns/x", ifname))
    calls = fakecni.calls()
    assert [c["name"] for c in calls] == ["fake-b", "fake-a"]
    assert all(c["env"]["CNI_IFNAME"] == ifname and stdin_of(c)["name"] == name for c in calls)
    assert decoy.read_text() == "keep"
    results = fakecni.cache_dir / "results"
    assert not fakecni.cache_dir.exists() or {p.parent for p in fakecni.cache_dir.rglob("*") if p.is_file()} <= {
        results}
