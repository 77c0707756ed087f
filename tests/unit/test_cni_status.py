"""CNI STATUS of the `cri-net` hook for containerd 2.x and CRI-O (issue 10, item 6).

containerd >= 2.0.1 calls STATUS every few seconds on a 1.1.0 conflist. The answer comes from
cri-net's loaded networks plus the STATUS of those that speak 1.1.0 (their plugins are the fake
plugin's real executables); handed to the server it is served from memory. Also: the README's
runtime-side conflist selects 1.1.0 for a libcni that reads `cniVersions` and 1.0.0 for one
that does not (containerd 1.6), and the hook answers both.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from adaptors import status as cni_status
from cri_net.plugin import wire as cni_wire
from cri_net.libcni import CNI, conf_list_from_bytes
from cri_net.server.cni_endpoint import CNIEndpoint
from test_cni_handoff import endpoint  # noqa: F401 - fixture
from test_cni_plugin import ARGS, HOOK, Node, conflist, result100


@pytest.fixture
def node(tmp_path: Path, fakecni: Any) -> Node:
    return Node(tmp_path, fakecni)


def networks_1_1(node: Node) -> None:
    """`net` (default, plugin main) and `extra-a` (plugin xa), both 1.1.0; `old` (xb) 1.0.0."""
    node.write("10-net.conflist", conflist("net", "main", version="1.1.0"))
    node.write("20-extra-a.conflist", conflist("extra-a", "xa", version="1.1.0"))
    node.write("30-old.conflist", conflist("old", "xb", version="1.0.0"))


def status_calls(node: Node) -> list[tuple[str, str]]:
    return [c for c in node.plugin_calls() if c[1] == "STATUS"]


# ---- the answers ------------------------------------------------------------------------------

def test_ready_runs_status_of_every_1_1_0_network_only(node: Node) -> None:
    networks_1_1(node)
    run = node.run("STATUS", node.conf("1.1.0"))
    assert (run.code, run.stdout) == (0, ""), run
    assert sorted(status_calls(node)) == [("main", "STATUS"), ("xa", "STATUS")]
    for call in node.fake.calls(command="STATUS"):
        conf = json.loads(call["stdin"])
        assert conf["cniVersion"] == "1.1.0" and conf["name"] in ("net", "extra-a")


@pytest.mark.parametrize("state", ["empty", "missing", "only-bad-files"])
def test_no_usable_config_is_50_naming_the_dir_and_each_skipped_file(node: Node, state: str) -> None:
    conf = node.conf("1.1.0")
    if state == "missing":
        conf["confDir"] = str(node.tmp / "does-not-exist")
    elif state == "only-bad-files":
        node.write("10-bad.conflist", "{not json")
        node.write("20-noplugins.conflist", json.dumps({"cniVersion": "1.1.0", "name": "x", "plugins": []}))
    err = node.run("STATUS", conf).error(50)
    assert f"no usable network config in {conf['confDir']}" in err["msg"]
    if state == "only-bad-files":
        assert str(node.conf_dir / "10-bad.conflist") in err["details"]
        assert str(node.conf_dir / "20-noplugins.conflist") in err["details"]
        assert "no plugins in list" in err["details"]
    else:
        assert err["details"] == "no config files"
    assert status_calls(node) == []


def test_a_default_network_that_is_not_loaded_is_50_naming_it(node: Node) -> None:
    networks_1_1(node)
    err = node.run("STATUS", node.conf("1.1.0", defaultNetwork="nope")).error(50)
    assert "default network 'nope' is not loaded" in err["msg"]


@pytest.mark.parametrize("plugin, network, code", [("main", "net", 50), ("main", "net", 51),
                                                   ("xa", "extra-a", 50), ("xa", "extra-a", 51)])
def test_a_1_1_0_network_not_ready_gives_its_code_naming_it(node: Node, plugin: str, network: str,
                                                           code: int) -> None:
    networks_1_1(node)
    node.fake.script(plugin, "STATUS", stdout=json.dumps({"cniVersion": "1.1.0", "code": code,
                                                          "msg": "no uplink", "details": "eth9 down"}), exit=1)
    err = node.run("STATUS", node.conf("1.1.0")).error(code)
    assert f"cri-net network '{network}'" in err["msg"] and f"(plugin {plugin})" in err["msg"]
    assert "no uplink" in err["msg"] and err["details"] == "eth9 down"


def test_a_missing_or_broken_plugin_is_50_naming_the_network(node: Node) -> None:
    networks_1_1(node)
    node.write("20-extra-a.conflist", conflist("extra-a", "not-installed", version="1.1.0"))
    err = node.run("STATUS", node.conf("1.1.0")).error(50)
    assert "cri-net network 'extra-a'" in err["msg"] and 'failed to find plugin "not-installed"' in err["msg"]
    node.write("20-extra-a.conflist", conflist("extra-a", "xa", version="1.1.0"))
    node.fake.script("xa", "STATUS", stderr="segfault-ish", exit=2)
    err = node.run("STATUS", node.conf("1.1.0")).error(50)
    assert "cri-net network 'extra-a'" in err["msg"] and "segfault-ish" in err["msg"]


def test_status_of_an_older_runtime_version_still_answers(node: Node) -> None:
    """A 1.0.0 conflist never gets STATUS from libcni; sent anyway, it answers the same."""
    networks_1_1(node)
    assert node.run("STATUS", node.conf("1.0.0")).code == 0


# ---- handed to the server: from memory, fast ----------------------------------------------

def handed_status(endpoint: CNIEndpoint, node: Node, conf: dict[str, Any]) -> tuple[int, bytes, float]:
    env = {"CNI_COMMAND": "STATUS", "CNI_PATH": str(node.fake.bin), "CNI_CONTAINERID": "", "CNI_NETNS": "",
           "CNI_IFNAME": "", "CNI_ARGS": ""}
    start = time.perf_counter()
    rc, out = cni_wire.call(endpoint.path, env, json.dumps(conf).encode())
    return rc, out, (time.perf_counter() - start) * 1000


def test_handed_over_status_answers_from_memory_in_milliseconds(node: Node, endpoint: CNIEndpoint,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    networks_1_1(node)
    conf = node.conf("1.1.0", daemonSocket=endpoint.path)
    rc, out, first = handed_status(endpoint, node, conf)
    assert (rc, out) == (0, b"")
    calls_after_first = len(status_calls(node))
    assert calls_after_first == 2
    times = []
    for _ in range(20):
        rc, out, ms = handed_status(endpoint, node, conf)
        assert (rc, out) == (0, b"")
        times.append(ms)
    median = statistics.median(times)
    with capsys.disabled():
        print(f"\nhanded-over STATUS: first {first:.1f} ms (runs the plugins), then median {median:.2f} ms, "
              f"max {max(times):.2f} ms over {len(times)} calls")
    assert len(status_calls(node)) == calls_after_first, "a STATUS within the TTL ran plugins"
    assert median < 50
    # and through the real plugin executable, handed over
    run = node.run("STATUS", conf)
    assert (run.code, run.stdout) == (0, ""), run
    assert len(endpoint.adaptors._adaptors) == 1


def test_a_stale_answer_is_served_while_the_background_refresh_runs(node: Node, endpoint: CNIEndpoint,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the TTL the next call still answers at once (the last answer) and a refresh runs
    behind it; a network that went bad is reported once the refresh has seen it."""
    monkeypatch.setattr(cni_status, "STATUS_TTL", 0.3)
    networks_1_1(node)
    conf = node.conf("1.1.0", daemonSocket=endpoint.path)
    assert handed_status(endpoint, node, conf)[0] == 0
    node.fake.script("xa", "STATUS", rules=[{"sleep": 0.5, "stdout": json.dumps(
        {"code": 51, "msg": "half the fabric is down"}), "exit": 1}])
    time.sleep(0.35)
    rc, out, ms = handed_status(endpoint, node, conf)
    assert (rc, out) == (0, b""), "the stale answer must be served while the refresh runs"
    assert ms < 400, f"the call waited for the refresh ({ms:.0f} ms)"
    deadline = time.monotonic() + 10
    while True:
        rc, out, _ = handed_status(endpoint, node, conf)
        if rc:
            break
        assert time.monotonic() < deadline, "the refresh never reported the failure"
        time.sleep(0.1)
    err = json.loads(out)
    assert err["code"] == 51 and "cri-net network 'extra-a'" in err["msg"]
    assert "half the fabric is down" in err["msg"]
    wait_for_refreshes()


def wait_for_refreshes(timeout: float = 10.0) -> None:
    """No refresh thread may outlive its test (it would run plugins with the next test's env)."""
    deadline = time.monotonic() + timeout
    while any(t.name.startswith("cni-status-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a STATUS refresh thread is stuck"
        time.sleep(0.05)


def test_a_changed_network_is_probed_again_at_once(node: Node, endpoint: CNIEndpoint) -> None:
    networks_1_1(node)
    conf = node.conf("1.1.0", daemonSocket=endpoint.path)
    assert handed_status(endpoint, node, conf)[0] == 0
    node.fake.script("xb", "STATUS", stdout=json.dumps({"code": 50, "msg": "xb is gone"}), exit=1)
    node.write("30-old.conflist", conflist("old", "xb", version="1.1.0"))  # now speaks 1.1.0
    rc, out, _ = handed_status(endpoint, node, conf)
    assert rc == 1 and json.loads(out)["code"] == 50 and "cri-net network 'old'" in json.loads(out)["msg"]


# ---- the runtime-side conflist: 1.1.0 for new libcni, 1.0.0 for containerd 1.6 --------------

def readme_conflist(node: Node, **plugin: Any) -> dict[str, Any]:
    """The README's runtime-side conflist, pointed at this test's dirs."""
    return {"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0"], "name": "cri-net",
            "plugins": [{"type": "cri-net", "confDir": str(node.conf_dir), "cacheDir": str(node.cache_dir),
                         "binDirs": [str(node.fake.bin)], "daemonSocket": "",
                         "capabilities": {"io.kubernetes.cri.pod-annotations": True, "portMappings": True,
                                          "bandwidth": True, "ipRanges": True, "dns": True}, **plugin}]}


def test_readme_conflist_is_1_1_0_to_a_cni_versions_reader_and_1_0_0_without(node: Node) -> None:
    doc = readme_conflist(node)
    assert conf_list_from_bytes(json.dumps(doc)).cni_version == "1.1.0"  # libcni >= 1.2, cri-net
    del doc["cniVersions"]  # what a libcni that ignores the key sees (containerd 1.6)
    assert conf_list_from_bytes(json.dumps(doc)).cni_version == "1.0.0"


@pytest.mark.parametrize("readers_version", ["1.1.0", "1.0.0"])
def test_the_hook_behind_the_readme_conflist_answers_both_runtimes(node: Node, tmp_path: Path,
                                                                   readers_version: str) -> None:
    """Through cri-net's own libcni, with the real hook executable installed as `cri-net`:
    STATUS reaches the hook only at 1.1.0, and ADD answers a result in the list's version
    (containerd 1.6 decodes it with 1.0.0 and rejects 1.1.0)."""
    node.write("10-net.conflist", conflist("net", "main", version="1.1.0"))
    node.fake.script("main", "ADD", result=result100("eth0", "10.0.0.5/24", "10.0.0.1", str(node.live)))
    bin_dir = tmp_path / "runtime-bin"
    bin_dir.mkdir()
    (bin_dir / "cri-net").symlink_to(HOOK)
    doc = readme_conflist(node)
    if readers_version == "1.0.0":
        del doc["cniVersions"]
    net = conf_list_from_bytes(json.dumps(doc))
    assert net.cni_version == readers_version
    cni = CNI([str(bin_dir)], cache_dir=str(tmp_path / "runtime-cache"), timeout=60)
    cni.status_network_list(net)
    assert len([c for c in node.fake.calls("main", "STATUS")]) == (1 if readers_version == "1.1.0" else 0)
    info = cni.version_info("cri-net")
    assert {"1.0.0", "1.1.0"} <= set(info.supported_versions)
    from cri_net.libcni import RuntimeConf
    args = tuple(tuple(p.split("=", 1)) for p in ARGS.split(";"))
    result = cni.add_network_list(net, RuntimeConf("sb-readme", str(node.live), "eth0", args))  # type: ignore[arg-type]
    assert result.cniVersion == readers_version
    assert result.to_dict()["ips"] == [{"interface": 0, "address": "10.0.0.5/24", "gateway": "10.0.0.1"}]
    cni.del_network_list(net, RuntimeConf("sb-readme", str(node.live), "eth0", args))  # type: ignore[arg-type]
    assert node.cache_files() == []
    assert not os.listdir(tmp_path / "runtime-cache" / "results")
