"""Delegate mode (cri_net/operator/primary.py): the node's primary CNI as the default network.

The hook runs for real (`cri-net-cni` subprocess, fake plugins from tests/fakeplugin) with a
runtime conf dir holding cri-net's own conflist, broken files and the primary network, as a
kind node has (00-cri-net.conflist before 10-kindnet.conflist). The property test generates
conf dirs of every kind of file and holds `find_primary` to "the first usable config, in
file-name order, that is not cri-net's".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cri_net.plugin import handler as cni_plugin
from cri_net.network.errors import NetworkNotReadyError
from cri_net.operator.primary import find_primary
from test_cni_plugin import EXTRAS, Node, conflist, extra_rc, result100


class Cluster(Node):
    """A cri-net conf dir with extra planes, and the runtime's conf dir with the primary."""

    def __init__(self, tmp: Path, fake: Any) -> None:
        super().__init__(tmp, fake)
        self.fake.install("prim", "prim2", "portmap", "bandwidth")
        self.standard()
        (self.conf_dir / "10-net.conflist").unlink()  # cri-net's own default: unused here
        self.runtime_dir = tmp / "runtime-net.d"
        self.runtime_dir.mkdir()
        self.runtime("00-cri-net.conflist", conflist("cri-net", {"type": "cri-net"}))
        self.runtime("05-broken.conflist", "{not json")
        self.primary("orig")
        self.runtime("20-later.conflist", conflist("later", "prim2"))
        self.fake.script("prim", "ADD", result=result100("eth0", "10.244.1.7/24", "10.244.1.1", str(self.live)))
        self.scripted_results(str(self.live))

    def runtime(self, name: str, text: str) -> Path:
        path = self.runtime_dir / name
        path.write_text(text)
        return path

    def primary(self, marker: str) -> Path:
        return self.runtime("10-kindnet.conflist", conflist(
            "kindnet", {"type": "prim", "marker": marker, "capabilities": {"portMappings": True}},
            {"type": "pm", "capabilities": {"portMappings": True}}))

    def conf(self, version: str = "1.0.0", rc: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        return super().conf(version, rc, **{"delegateConfDir": str(self.runtime_dir), **extra})


@pytest.fixture
def cluster(tmp_path: Path, fakecni: Any) -> Cluster:
    return Cluster(tmp_path, fakecni)


PORTS = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]


def test_add_keeps_the_primarys_address_and_adds_the_extra_planes(cluster: Cluster) -> None:
    rc = {**extra_rc(EXTRAS), "portMappings": PORTS}
    add = cluster.run("ADD", cluster.conf(rc=rc), netns=str(cluster.live))
    assert add.code == 0, add
    assert add.json["ips"][0]["address"] == "10.244.1.7/24"  # the primary's, first
    assert [i["name"] for i in add.json["interfaces"]] == ["eth0", "net1", "net2"]
    # bandwidth chained (the primary has no plugin for it), portmap not (pm has the capability)
    # the planes attach concurrently (parallel_attach); each chain runs in its own order
    calls = cluster.plugin_calls("ADD")
    assert sorted(calls) == sorted([("xa", "ADD"), ("xb", "ADD"), ("prim", "ADD"), ("pm", "ADD"), ("bandwidth", "ADD")])
    assert [c for c in calls if c[0] in ("prim", "pm", "bandwidth")] == [("prim", "ADD"), ("pm", "ADD"),
                                                                          ("bandwidth", "ADD")]
    [prim] = cluster.fake.calls("prim", "ADD")
    assert prim["config"]["name"] == "kindnet" and prim["config"]["marker"] == "orig"
    assert prim["config"]["runtimeConfig"] == {"portMappings": PORTS}  # port mappings go to the default
    assert prim["env"]["CNI_IFNAME"] == "eth0"
    assert cluster.fake.calls("prim2") == []
    assert cluster.cache_files() == ["extra-a-sb1-net1", "extra-b-sb1-net2", "kindnet-sb1-eth0"]


def test_detach_uses_the_cached_primary_after_its_file_changed(cluster: Cluster) -> None:
    cluster.add(cluster.conf(rc=extra_rc(EXTRAS)), netns=str(cluster.live))
    # the primary CNI is upgraded: new config; then removed altogether
    cluster.primary("upgraded")
    assert cluster.run("CHECK", cluster.conf(rc=extra_rc(EXTRAS)), netns=str(cluster.live)).code == 0
    (cluster.runtime_dir / "10-kindnet.conflist").unlink()
    cluster.fake.clear_log()
    delete = cluster.run("DEL", cluster.conf(rc=extra_rc(EXTRAS)))
    assert delete.code == 0, delete
    dels = cluster.fake.calls("prim", "DEL")
    assert [d["config"]["marker"] for d in dels] == ["orig"], "DEL must use the config the pod was attached with"
    assert len(cluster.fake.calls("bandwidth", "DEL")) == 1  # the chained plugin too, from the cache
    assert cluster.cache_files() == []
    assert cluster.run("DEL", cluster.conf(rc=extra_rc(EXTRAS))).code == 0  # the runtime's second DEL


def test_named_primary_and_a_missing_one(cluster: Cluster) -> None:
    add = cluster.run("ADD", cluster.conf(defaultNetwork="later"), netns=str(cluster.live))
    assert add.code == 0, add
    assert cluster.plugin_calls("ADD") == [("prim2", "ADD"), ("portmap", "ADD"), ("bandwidth", "ADD")]
    cluster.run("DEL", cluster.conf(defaultNetwork="later"))
    cluster.fake.clear_log()
    err = cluster.run("ADD", cluster.conf(defaultNetwork="flannel"), netns=str(cluster.live), container="sb2")
    msg = err.error(cni_plugin.TRY_AGAIN_LATER)["msg"]
    assert str(cluster.runtime_dir) in msg and "'flannel' not found" in msg, msg
    assert "00-cri-net.conflist" not in msg or "cri-net's own" in msg
    assert "05-broken.conflist" in msg and "kindnet: not the network named 'flannel'" in msg, msg
    assert cluster.fake.calls() == [] and cluster.cache_files() == []


def test_no_primary_yet_is_not_ready_and_changes_nothing(cluster: Cluster) -> None:
    for name in ("10-kindnet.conflist", "20-later.conflist"):
        (cluster.runtime_dir / name).unlink()
    err = cluster.run("ADD", cluster.conf(rc=extra_rc(EXTRAS)), netns=str(cluster.live))
    msg = err.error(cni_plugin.TRY_AGAIN_LATER)["msg"]
    assert "cri-net: cri-net's own" in msg and "delegate mode" in msg, msg
    assert cluster.fake.calls() == [] and cluster.cache_files() == []


def test_a_primary_whose_plugin_is_a_cri_net_launcher_is_passed_over(cluster: Cluster) -> None:
    launcher = cluster.fake.bin / "renamed-hook"
    launcher.write_text("#!/bin/sh\n# cri_net.cni_launcher\n")
    launcher.chmod(0o755)
    cluster.runtime("01-sneaky.conflist", conflist("sneaky", "renamed-hook"))
    net = find_primary(str(cluster.runtime_dir), [str(cluster.fake.bin)])
    assert net.name == "kindnet"


def test_bad_delegate_dir_is_an_invalid_config_naming_the_key(cluster: Cluster) -> None:
    err = cluster.run("ADD", cluster.conf(delegateConfDir="relative/net.d"), netns=str(cluster.live))
    msg = err.error(cni_plugin.INVALID_CONFIG)["msg"]
    assert "delegateConfDir: " in msg and "absolute" in msg, msg  # the conflist's own key
    assert cluster.fake.calls() == []


# ---- generated conf dirs ---------------------------------------------------------------------

KINDS = ["valid", "hook", "hook-name", "bad-json", "no-type", "no-plugins", "dir", "bad-name"]


def _write(path: Path, kind: str, name: str) -> bool:
    """Write one entry of `kind`; whether it is a usable primary."""
    text = {
        "valid": conflist(name, "prim"),
        "hook": conflist(name, {"type": "cri-net"}),
        "hook-name": conflist("cri-net", "prim"),
        "bad-json": '{"cniVersion": "1.0.0", "name": ',
        "no-type": json.dumps({"cniVersion": "1.0.0", "name": name}),
        "no-plugins": json.dumps({"cniVersion": "1.0.0", "name": name, "plugins": []}),
        "bad-name": conflist("-" + name, "prim"),
    }.get(kind)
    if text is None:
        path.mkdir()
    else:
        path.write_text(text)
    return kind == "valid"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.sampled_from(KINDS), max_size=7), data=st.data())
def test_find_primary_is_the_first_usable_config_not_cri_nets(tmp_path_factory: pytest.TempPathFactory,
                                                              entries: list[str], data: st.DataObject) -> None:
    conf_dir = tmp_path_factory.mktemp("net.d")
    names = data.draw(st.permutations([f"{i:02d}" for i in range(len(entries))]))
    usable = []
    for kind, prefix in zip(entries, names):
        ext = data.draw(st.sampled_from([".conflist", ".conf", ".json"]))
        if kind in ("valid", "hook", "hook-name", "bad-name") and ext != ".conflist":
            ext = ".conflist"
        path = conf_dir / f"{prefix}-{kind}{ext}"
        if _write(path, kind, f"net{prefix}"):
            usable.append(path.name)
    usable.sort()
    if usable:
        got = find_primary(str(conf_dir), [], hook_network="cri-net")
        assert got.name == f"net{usable[0][:2]}"
        assert got.plugin_types == ["prim", "portmap", "bandwidth"]
        named = data.draw(st.sampled_from(usable))
        assert find_primary(str(conf_dir), [], name=f"net{named[:2]}").name == f"net{named[:2]}"
    else:
        with pytest.raises(NetworkNotReadyError) as exc:
            find_primary(str(conf_dir), [], hook_network="cri-net")
        assert str(conf_dir) in str(exc.value)
