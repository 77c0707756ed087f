"""Security suite (issue 6): names that try to leave cri-net's directories, and file modes.

Network names, container ids, interface names and plugin types come from config files, the
runtime and pods. Containing `/`, `..`, NUL or whitespace, they must never make cri-net read
or write outside its cache dir, nor exec anything but a plugin inside its bin dirs. Proofs:

- a canary executable outside the bin dir writes a marker file if it is ever run;
- decoy cache files planted where a traversing name would point must never be read back (a
  decoy result carries an address no plugin here returns) nor changed;
- after every operation, the only files under the test root are the fake plugin's own and
  cache files directly in `<cache dir>/results`.

File modes: cache files 0600 and sandbox records 0600, their dirs 0700, even under umask 0.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sysconfig
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from badinput_strategies import props
from cri_net.libcni import CNI, CacheRecord, CNIError, Executor, ResultCache, RuntimeConf, conf_list_from_bytes
from cri_net.server.store import SandboxMetadata, SandboxRecord, SandboxStore
from fakeplugin.harness import FakeCNI
from tests.reliability import record

SUITE = "security"
ROOT = Path(__file__).resolve().parents[2]
HOOK = Path(sysconfig.get_path("scripts")) / "cri-net-cni"  # the running interpreter's entry point
DECOY_IP = "10.66.6.6/32"
TRAVERSAL = ["/", "..", "../", "\0", " ", "\t", "\n", "-", ".", "decoy", "canary", "evil", "a", "eth0", "results",
             "cache", "~", "*"]
names = st.lists(st.sampled_from(TRAVERSAL), min_size=1, max_size=6).map("".join)


def canary(root: Path) -> tuple[Path, Path]:
    """An executable outside every bin dir that leaves `marker` if anything runs it."""
    d = root / "canary"
    d.mkdir(exist_ok=True)
    marker = root / "canary-ran"
    exe = d / "evil"
    exe.write_text(f"#!/bin/sh\ntouch {marker}\necho '{{\"cniVersion\":\"1.0.0\"}}'\n")
    exe.chmod(0o755)
    return exe, marker


class Box:
    """A test root: fake plugin `good` in bin/, cache/, a canary and decoys around them."""

    def __init__(self, root: Path, fake: FakeCNI) -> None:
        self.root, self.fake = root, fake
        fake.install("good")
        self.exe, self.marker = canary(root)
        # decoys where `<results>/<net>-<ctr>-<if>` lands when a part climbs out of results/
        decoy = CacheRecord(container_id="x", config=b"{}", ifname="eth0", network_name="decoy",
                            result={"cniVersion": "1.0.0", "ips": [{"address": DECOY_IP}]}).to_json().encode()
        self.decoys: dict[Path, bytes] = {}
        for path in (fake.cache_dir / "decoy-ctr1-eth0", fake.root / "decoy-ctr1-eth0", root / "decoy-ctr1-eth0",
                     fake.cache_dir / "results-decoy", fake.cache_dir / "results" / "decoy" / "x-eth0"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(decoy)
            self.decoys[path] = decoy
        self.baseline = self.files()

    def files(self) -> set[Path]:
        """Every file under the root except the fake plugin's log/script."""
        return {p for p in self.root.rglob("*") if p.is_file() and self.fake.state not in p.parents}

    def assert_contained(self) -> None:
        assert not self.marker.exists(), "the canary outside the bin dir was executed"
        for path, data in self.decoys.items():
            assert path.read_bytes() == data, f"decoy {path} was changed"
        new = self.files() - self.baseline
        results = self.fake.cache_dir / "results"
        strays = [p for p in new if p.parent != results]
        assert not strays, f"files written outside {results}: {strays}"
        for p in new:
            assert p.name.count("/") == 0 and ".." != p.name and "\0" not in p.name


@pytest.fixture
def box(tmp_path: Path, fakecni: FakeCNI) -> Box:
    return Box(tmp_path, fakecni)


def conflist(name: str, *types: str, version: str = "1.0.0") -> bytes:
    return json.dumps({"cniVersion": version, "name": name, "plugins": [{"type": t} for t in types]}).encode()


def only_cni_errors(call: Callable[[], Any]) -> Any:
    """Run `call`; anything but success or a CNIError (a ValueError from exec, say) fails."""
    try:
        return call()
    except CNIError as exc:
        assert type(exc.code) is int and str(exc)
        return exc


# ---- names that try to leave the cache dir -------------------------------------------------


@props(ci=50, full=1200)
@given(network=names | st.just("net1"), container=names | st.just("ctr1"), ifname=names | st.just("eth0"))
def test_traversing_names_stay_in_the_cache_dir(box: Box, network: str, container: str, ifname: str) -> None:
    """ADD, CHECK, DEL and the cache queries with generated names: only CNIErrors, no file
    outside results/, decoys never read nor changed."""
    record("names with / .. NUL whitespace: cache dir containment", runs=1, suite=SUITE,
           audited="canary not run; decoys unchanged and never returned; no file outside <cache>/results")
    cni = box.fake.cni(timeout=20)
    net = conf_list_from_bytes(conflist("net1", "good"))
    net = type(net)(**{**net.__dict__, "name": network})  # a name no loader would accept, as an attacker's
    rt = RuntimeConf(container, "/var/run/netns/x", ifname)
    for op in (lambda: cni.add_network_list(net, rt), lambda: cni.check_network_list(net, rt),
               lambda: cni.cached_result(net, rt), lambda: cni.cached_config(network, rt),
               lambda: cni.cached_attachments(container), lambda: cni.del_network_list(net, rt)):
        out = only_cni_errors(op)
        if out is not None and not isinstance(out, CNIError):
            assert DECOY_IP not in json.dumps(getattr(out, "to_dict", lambda: str(out))()), "a decoy was read"
        box.assert_contained()
    assert not (box.fake.cache_dir / "results").exists() or not [
        p for p in (box.fake.cache_dir / "results").iterdir() if p.is_file()], "DEL left a cache file"


@pytest.mark.parametrize("field", ["ifname", "netns", "args"])
def test_nul_in_runtime_conf_is_a_cni_error_and_runs_nothing(box: Box, field: str) -> None:
    """NUL cannot cross exec: it must be refused as a CNIError before any plugin runs, like
    '/' in an interface name is (libcni/api.py validate_interface_name checks / : and
    whitespace, not NUL; invoke.py then hands it to execve, which raises ValueError)."""
    record("names with / .. NUL whitespace: cache dir containment", runs=1, suite=SUITE)
    rt = {"ifname": RuntimeConf("ctr1", "/x", "et\0h0"), "netns": RuntimeConf("ctr1", "/x\0y", "eth0"),
          "args": RuntimeConf("ctr1", "/x", "eth0", (("K8S_POD_NAME", "a\0b"),))}[field]
    cni = box.fake.cni(timeout=20)
    net = conf_list_from_bytes(conflist("net1", "good"))
    for op in (cni.add_network_list, cni.check_network_list, cni.del_network_list):
        with pytest.raises(CNIError):
            op(net, rt)
    assert box.fake.calls() == []
    box.assert_contained()


def test_cache_path_refuses_every_traversing_component(tmp_path: Path) -> None:
    """ResultCache.path: '/', NUL, '.' and '..' in any component are refused (code 4)."""
    record("names with / .. NUL whitespace: cache dir containment", runs=1, suite=SUITE)
    cache = ResultCache(str(tmp_path))
    for bad in ("/", "../x", "a/b", "..", ".", "a\0b"):
        for args in ((bad, "c", "eth0"), ("n", bad, "eth0"), ("n", "c", bad)):
            with pytest.raises(CNIError) as info:
                cache.path(*args)
            assert info.value.code == 4
            assert cache.read_result(*args) is None
            cache.delete(*args)
    assert not list(tmp_path.iterdir())


# ---- plugin types that try to exec outside the bin dirs ------------------------------------

TYPES = ["../canary/evil", "../../canary/evil", "/bin/sh", "../../../../../../bin/sh", "..", ".", "evil",
         " evil", "evil ", "./evil", "canary/evil", "evil\0", "", "bin/../../canary/evil"]


@pytest.mark.parametrize("ptype", TYPES)
def test_plugin_type_cannot_exec_outside_bin_dirs(box: Box, ptype: str) -> None:
    """ADD/DEL/CHECK/VERSION/validate of a plugin type naming a path: a clear CNIError (code 7,
    'invalid plugin name' or 'failed to find plugin'), and the canary never runs."""
    record("plugin types with / ..: exec only inside bin dirs", runs=1, suite=SUITE,
           audited="canary executable outside the bin dir never ran; clear error")
    bin_dir = box.fake.bin
    cni = CNI([str(bin_dir)], cache_dir=str(box.fake.cache_dir), executor=Executor(timeout=20))
    net = conf_list_from_bytes(conflist("net1", "good", ptype or "x", version="1.1.0"))
    if not ptype:
        net = type(net)(**{**net.__dict__, "plugins": (net.plugins[0], type(net.plugins[0])(
            network=net.plugins[0].network.model_copy(update={"type": ""}), raw='{"type": ""}'))})
    rt = RuntimeConf("ctr1", "/var/run/netns/x", "eth0")
    for op in (lambda: cni.add_network_list(net, rt), lambda: cni.check_network_list(net, rt),
               lambda: cni.del_network_list(net, rt), lambda: cni.version_info(ptype),
               lambda: cni.validate_network_list(net), lambda: cni.status_network_list(net),
               lambda: cni.gc_network_list(net, [])):
        with pytest.raises(CNIError) as info:
            op()
        msg = str(info.value)
        assert "invalid plugin name" in msg or "failed to find plugin" in msg or "no plugin name" in msg, msg
        box.assert_contained()
    assert not box.marker.exists()


@props(ci=40, full=800)
@given(ptype=st.lists(st.sampled_from(["..", "/", "canary", "evil", ".", " ", "bin", "fakecni", "\0"]),
                      min_size=1, max_size=8).map("".join))
def test_generated_plugin_types_never_exec_outside(box: Box, ptype: str) -> None:
    record("plugin types with / ..: exec only inside bin dirs", runs=1, suite=SUITE,
           audited="canary executable outside the bin dir never ran; clear error")
    cni = box.fake.cni(timeout=20)
    net = conf_list_from_bytes(conflist("net1", ptype))
    out = only_cni_errors(lambda: cni.add_network_list(net, RuntimeConf("ctr1", "/x", "eth0")))
    assert isinstance(out, CNIError), f"plugin type {ptype!r} ran"
    box.assert_contained()


def test_hook_refuses_traversing_plugin_type_from_its_conf_dir(box: Box) -> None:
    """The real cri-net-cni with an inner network whose plugin type climbs to the canary:
    code 7 naming the plugin, canary not run, nothing cached."""
    record("plugin types with / ..: exec only inside bin dirs", runs=1, suite=SUITE,
           audited="canary executable outside the bin dir never ran; clear error")
    conf_dir = box.root / "inner"
    conf_dir.mkdir()
    (conf_dir / "10-net.conflist").write_bytes(conflist("net", "../canary/evil"))
    box.baseline = box.files()
    stdin = json.dumps({"cniVersion": "1.0.0", "name": "cri-net", "type": "cri-net", "confDir": str(conf_dir),
                        "cacheDir": str(box.fake.cache_dir), "binDirs": [str(box.fake.bin)],
                        "daemonSocket": ""}).encode()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "sb1",
           "CNI_NETNS": str(box.root / "ns"), "CNI_IFNAME": "eth0", "CNI_ARGS": "K8S_POD_NAME=p",
           "CNI_PATH": str(box.fake.bin), "FAKECNI_DIR": str(box.fake.state)}
    proc = subprocess.run([str(HOOK)], input=stdin, env=env, capture_output=True, timeout=60)
    assert proc.returncode == 1, proc
    err = json.loads(proc.stdout)
    assert err["code"] == 7 and "invalid plugin name" in err["msg"] and "../canary/evil" in err["msg"], err
    box.assert_contained()


# ---- file modes ----------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cache_files_are_0600_in_a_0700_dir_even_under_umask_0(fakecni: FakeCNI) -> None:
    """The cache dir and results/ are created by the first write (fsutil.atomic_write's
    makedirs): neither may end world-writable whatever the umask, or another user could swap
    results/ for a symlink and have root write cache files where they choose."""
    record("file modes: cache files and sandbox records", runs=1, suite=SUITE,
           audited="mode bits of files and dirs written under umask 0")
    fakecni.install("good")
    old = os.umask(0)
    try:
        fakecni.cni(timeout=20).add_network_list(conf_list_from_bytes(conflist("net1", "good")),
                                                 RuntimeConf("ctr1", "/x", "eth0"))
    finally:
        os.umask(old)
    path = fakecni.cache_file()
    assert _mode(path) == 0o600, oct(_mode(path))
    assert _mode(path.parent) == 0o700, oct(_mode(path.parent))
    assert not _mode(fakecni.cache_dir) & (stat.S_IWOTH | stat.S_IWGRP), oct(_mode(fakecni.cache_dir))


def test_sandbox_records_are_0600_in_a_0700_dir_even_under_umask_0(tmp_path: Path) -> None:
    """Same for the state dir the store creates (SandboxStore.load's makedirs)."""
    record("file modes: cache files and sandbox records", runs=1, suite=SUITE,
           audited="mode bits of files and dirs written under umask 0")
    old = os.umask(0)
    try:
        store = SandboxStore(str(tmp_path / "state"))
        store.load()
        store.put(SandboxRecord(id="a" * 64, metadata=SandboxMetadata(name="p", uid="u", namespace="n"),
                                created_at=1))
    finally:
        os.umask(old)
    path = tmp_path / "state" / "sandboxes" / ("a" * 64 + ".json")
    assert _mode(path) == 0o600, oct(_mode(path))
    assert _mode(path.parent) == 0o700, oct(_mode(path.parent))
    assert not _mode(tmp_path / "state") & (stat.S_IWOTH | stat.S_IWGRP), oct(_mode(tmp_path / "state"))
