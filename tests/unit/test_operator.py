"""The cni-operator: loading a conf dir (`load_networks`, `NetworkSet`), reloading and watching it
(`CNIOperator.update/watch`, `ConfDirWatcher`), and plane operations through the real exec path
(loopback, attach with rollback, detach with the cached config, check, cached results).

Spec: /work/shared/reference/isulad-network.md ("Config dir scan", "Config reload") and the
issue's loading rules. Plugins are the scripted fake plugin of tests/fakeplugin.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from cri_net.libcni import CNIError, ErrorCode, PluginError
from cri_net.operator import (LOOPBACK_CONFLIST, MAX_CONF_FILE_SIZE, MAX_CONF_FILES, CNIOperator, ConfDirWatcher,
                              NetworkSet, PlaneRef, load_networks)
from tests.polling import eventually as wait_for

# ---- helpers -------------------------------------------------------------------------------


def conflist(name: str, *plugins: str | dict[str, Any], version: str = "1.0.0", **top: Any) -> str:
    doc: dict[str, Any] = {"cniVersion": version, "name": name, **top,
                           "plugins": [{"type": p} if isinstance(p, str) else p for p in plugins]}
    return json.dumps(doc)


def write(conf_dir: Path, filename: str, text: str | bytes) -> Path:
    conf_dir.mkdir(parents=True, exist_ok=True)
    path = conf_dir / filename
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def reasons(ns: NetworkSet) -> dict[str, str]:
    return {os.path.basename(s.path): s.reason for s in ns.skipped}


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    d = tmp_path / "net.d"
    d.mkdir()
    return d


# ==== loader ==================================================================================


def test_loads_conf_conflist_and_json_in_file_name_order(conf_dir):
    write(conf_dir, "30-c.json", json.dumps({"cniVersion": "0.4.0", "name": "c", "type": "ptp"}))
    write(conf_dir, "10-a.conflist", conflist("a", "bridge", "portmap"))
    write(conf_dir, "20-b.conf", json.dumps({"cniVersion": "0.3.1", "name": "b", "type": "macvlan"}))
    ns = load_networks(str(conf_dir))
    assert ns.names == ["a", "b", "c"]
    assert ns.default().name == "a"
    assert ns.get("b").plugin_types == ["macvlan"]  # a single conf is upconverted to a one-plugin list
    assert ns.get("b").cni_version == "0.3.1"
    assert ns.get("a").plugin_types == ["bridge", "portmap"]
    assert ns.get("c").source == str(conf_dir / "30-c.json")
    assert ns.skipped == ()
    assert set(ns.by_name) == {"a", "b", "c"}
    assert ns.conf_dir == str(conf_dir)


def test_other_extensions_are_ignored_silently_directories_reported(conf_dir):
    write(conf_dir, "10-a.conflist", conflist("a", "bridge"))
    for name in ("00-x.txt", "00-y.conf.bak", "00-z.CONF", "00-w.conflist~", "README"):
        write(conf_dir, name, conflist(name.replace(".", "_"), "bridge"))
    (conf_dir / "05-dir.conf").mkdir()
    ns = load_networks(str(conf_dir))
    assert ns.names == ["a"]
    # a directory with a config name is what someone meant as a config: say why it is not one
    assert [(s.path, "directory" in s.reason) for s in ns.skipped] == [(str(conf_dir / "05-dir.conf"), True)]


def test_missing_conf_dir_is_an_empty_set_not_an_error(tmp_path):
    ns = load_networks(str(tmp_path / "nope"))
    assert ns.networks == () and ns.skipped == ()
    assert ns.default() is None
    assert ns.get("x") is None
    assert ns.names == []


def test_file_over_one_mib_is_skipped_with_the_reason(conf_dir):
    body = conflist("big", "bridge")
    write(conf_dir, "10-big.conflist", body + " " * (MAX_CONF_FILE_SIZE + 1 - len(body)))
    body2 = conflist("exact", "bridge")
    write(conf_dir, "20-exact.conflist", body2 + " " * (MAX_CONF_FILE_SIZE - len(body2)))
    write(conf_dir, "30-ok.conflist", conflist("ok", "bridge"))
    ns = load_networks(str(conf_dir))
    assert MAX_CONF_FILE_SIZE == 1 << 20
    assert ns.names == ["exact", "ok"]  # exactly 1 MiB is still fine
    r = reasons(ns)
    assert list(r) == ["10-big.conflist"]
    assert "larger" in r["10-big.conflist"] and str(MAX_CONF_FILE_SIZE) in r["10-big.conflist"]


@pytest.mark.parametrize("filename, text, why", [
    pytest.param("10-bad.conflist", "{not json", "pars", id="unparsable-list"),
    pytest.param("10-bad.conf", "[1, 2", "pars", id="unparsable-conf"),
    pytest.param("10-bad.json", b"\xff\xfe{}", "pars", id="not-utf8"),
    pytest.param("10-bad.conf", json.dumps({"cniVersion": "0.4.0", "name": "x"}), "type", id="conf-without-type"),
    pytest.param("10-bad.conflist", conflist("x", {"name": "p"}), "type", id="list-plugin-without-type"),
    pytest.param("10-bad.conflist", json.dumps({"cniVersion": "1.0.0", "name": "x", "plugins": []}), "no plugins",
                 id="empty-plugins"),
    pytest.param("10-bad.conflist", json.dumps({"cniVersion": "1.0.0", "name": "x"}), "no plugins", id="no-plugins"),
    pytest.param("10-bad.conflist", conflist("bad name", "bridge"), "invalid network name", id="space-in-name"),
    pytest.param("10-bad.conflist", conflist("-lead", "bridge"), "invalid network name", id="leading-dash"),
    pytest.param("10-bad.conflist", conflist("a/b", "bridge"), "invalid network name", id="slash"),
    pytest.param("10-bad.conf", json.dumps({"cniVersion": "9.9.9", "name": "x", "type": "t"}), "cniVersion",
                 id="unsupported-version"),
])
def test_bad_files_are_skipped_with_the_reason_and_the_rest_load(conf_dir, filename, text, why):
    write(conf_dir, filename, text)
    write(conf_dir, "20-good.conflist", conflist("good", "bridge"))
    ns = load_networks(str(conf_dir))
    assert ns.names == ["good"]
    assert ns.default().name == "good"  # a broken first file does not become (or block) the default
    r = reasons(ns)
    assert list(r) == [filename]
    assert why in r[filename]


def test_empty_name_becomes_the_file_base_name(conf_dir):
    write(conf_dir, "10-first.conf", json.dumps({"cniVersion": "0.4.0", "name": "", "type": "ptp"}))
    write(conf_dir, "20-second.conflist", conflist("", "bridge"))
    write(conf_dir, "30-third.json", json.dumps({"cniVersion": "0.4.0", "type": "ptp"}))  # no name key at all
    ns = load_networks(str(conf_dir))
    assert ns.names == ["10-first", "20-second", "30-third"]


def test_base_name_that_is_not_a_valid_name_is_skipped(conf_dir):
    write(conf_dir, "my net.conflist", conflist("", "bridge"))
    ns = load_networks(str(conf_dir))
    assert ns.names == []
    assert "invalid network name" in reasons(ns)["my net.conflist"]


def test_duplicate_name_first_file_wins_and_the_second_is_reported(conf_dir):
    write(conf_dir, "10-a.conflist", conflist("net", "first"))
    write(conf_dir, "20-b.conf", json.dumps({"cniVersion": "0.4.0", "name": "net", "type": "second"}))
    write(conf_dir, "30-c.conflist", conflist("other", "x"))
    ns = load_networks(str(conf_dir))
    assert ns.names == ["net", "other"]
    assert ns.get("net").plugin_types == ["first"]
    r = reasons(ns)
    assert list(r) == ["20-b.conf"]
    assert "duplicate" in r["20-b.conf"] and "10-a.conflist" in r["20-b.conf"]


def test_duplicate_of_a_skipped_file_is_not_a_duplicate(conf_dir):
    write(conf_dir, "10-a.conflist", conflist("net", {"name": "no-type"}))
    write(conf_dir, "20-b.conflist", conflist("net", "second"))
    ns = load_networks(str(conf_dir))
    assert ns.names == ["net"] and ns.get("net").plugin_types == ["second"]


def test_at_most_1024_files_the_first_are_kept_and_the_rest_reported(conf_dir):
    assert MAX_CONF_FILES == 1024
    total = MAX_CONF_FILES + 6
    for i in range(total):
        write(conf_dir, f"{i:05d}.conflist", conflist(f"n{i:05d}", "bridge"))
    ns = load_networks(str(conf_dir))
    assert len(ns.networks) == MAX_CONF_FILES
    assert ns.names[0] == "n00000" and ns.names[-1] == f"n{MAX_CONF_FILES - 1:05d}"
    assert sorted(reasons(ns)) == [f"{i:05d}.conflist" for i in range(MAX_CONF_FILES, total)]
    assert all("1024" in s.reason for s in ns.skipped)


def test_file_filter_sees_base_names_and_filtered_files_are_not_reported(conf_dir):
    write(conf_dir, "10-a.conflist", conflist("a", "bridge"))
    write(conf_dir, "crinet-b.conflist", conflist("b", "bridge"))
    write(conf_dir, "crinet-bad.conflist", "{")
    seen: list[str] = []

    def only_native(name: str) -> bool:
        seen.append(name)
        return name.startswith("crinet-")

    ns = load_networks(str(conf_dir), only_native)
    assert ns.names == ["b"]
    assert list(reasons(ns)) == ["crinet-bad.conflist"]
    assert sorted(seen) == ["10-a.conflist", "crinet-b.conflist", "crinet-bad.conflist"]
    ns2 = load_networks(str(conf_dir), lambda n: not n.startswith("crinet-"))
    assert ns2.names == ["a"] and ns2.skipped == ()


def test_network_set_is_immutable(conf_dir):
    write(conf_dir, "10-a.conflist", conflist("a", "bridge"))
    ns = load_networks(str(conf_dir))
    with pytest.raises(Exception):
        ns.networks = ()  # type: ignore[misc]


# ==== operator: update / keep last good =======================================================


@pytest.fixture
def op_factory(tmp_path, fakecni):
    made: list[CNIOperator] = []

    def make(conf_dir: Path, **kw: Any) -> CNIOperator:
        kw.setdefault("cache_dir", str(tmp_path / "cache"))
        kw.setdefault("timeout", 10)
        op = CNIOperator(str(conf_dir), [str(fakecni.bin)], **kw)
        made.append(op)
        return op

    yield make
    for op in made:
        op.close()


def test_operator_loads_at_construction_and_update_rereads(conf_dir, op_factory):
    write(conf_dir, "10-a.conflist", conflist("a", "bridge"))
    op = op_factory(conf_dir)
    assert op.networks.names == ["a"]
    write(conf_dir, "20-b.conflist", conflist("b", "bridge"))
    assert op.networks.names == ["a"]  # nothing changes until a reload
    fresh = op.update()
    assert fresh.names == ["a", "b"] and op.networks is fresh
    assert op.last_reload_error == ""
    (conf_dir / "10-a.conflist").unlink()
    assert op.update().names == ["b"]
    assert op.get("b").name == "b"


def test_operator_get_unknown_network_is_a_config_error(conf_dir, op_factory):
    write(conf_dir, "10-a.conflist", conflist("a", "bridge"))
    with pytest.raises(CNIError) as exc:
        op_factory(conf_dir).get("zzz")
    assert exc.value.code == ErrorCode.INVALID_NETWORK_CONFIG and "zzz" in str(exc.value)


def test_reload_of_a_wholly_bad_dir_keeps_the_last_good_set_and_says_why(conf_dir, op_factory):
    path = write(conf_dir, "10-a.conflist", conflist("a", "bridge"))
    op = op_factory(conf_dir)
    good = op.networks
    path.write_text("{broken", encoding="utf-8")
    kept = op.update()
    assert kept.names == ["a"] and op.networks.names == ["a"]
    assert op.networks.get("a") is good.get("a")
    assert "10-a.conflist" in op.last_reload_error and "pars" in op.last_reload_error
    assert list(reasons(op.networks)) == ["10-a.conflist"]  # the set reports what the dir holds now
    path.write_text(conflist("a2", "bridge"), encoding="utf-8")
    assert op.update().names == ["a2"]
    assert op.last_reload_error == ""
    assert op.networks.skipped == ()


def test_reload_of_an_empty_or_missing_dir_keeps_the_last_good_set(conf_dir, op_factory):
    path = write(conf_dir, "10-a.conflist", conflist("a", "bridge"))
    op = op_factory(conf_dir)
    path.unlink()
    assert op.update().names == ["a"]
    assert "no usable network config" in op.last_reload_error and "no config files" in op.last_reload_error
    conf_dir.rmdir()
    assert op.update().names == ["a"]
    assert op.last_reload_error


def test_reload_when_conf_dir_is_unreadable_keeps_the_last_good_set(conf_dir, op_factory):
    write(conf_dir, "10-a.conflist", conflist("a", "bridge"))
    op = op_factory(conf_dir)
    for f in conf_dir.iterdir():
        f.unlink()
    conf_dir.rmdir()
    conf_dir.write_text("not a directory")  # scandir fails with ENOTDIR
    assert op.update().names == ["a"]
    assert op.last_reload_error


def test_without_keep_last_good_an_empty_dir_empties_the_set(conf_dir, op_factory):
    path = write(conf_dir, "10-a.conflist", conflist("a", "bridge"))
    op = op_factory(conf_dir, keep_last_good=False)
    path.unlink()
    assert op.update().names == []
    assert op.last_reload_error == ""


def test_a_partly_bad_dir_is_applied(conf_dir, op_factory):
    write(conf_dir, "10-a.conflist", conflist("a", "bridge"))
    write(conf_dir, "20-b.conflist", conflist("b", "bridge"))
    op = op_factory(conf_dir)
    (conf_dir / "10-a.conflist").write_text("{", encoding="utf-8")
    assert op.update().names == ["b"]
    assert op.last_reload_error == ""
    assert list(reasons(op.networks)) == ["10-a.conflist"]


def test_operator_with_no_conf_dir_starts_empty(tmp_path, op_factory):
    op = op_factory(tmp_path / "missing")
    assert op.networks.names == [] and op.last_reload_error == ""


# ==== watching ================================================================================


@pytest.fixture(params=["inotify", "poll"])
def watch_mode(request, monkeypatch):
    if request.param == "poll":
        monkeypatch.setattr(ConfDirWatcher, "_inotify_fd", lambda self: None)
    return request.param


def test_watch_picks_up_a_new_and_a_changed_file(conf_dir, op_factory, watch_mode):
    write(conf_dir, "10-a.conflist", conflist("a", "bridge"))
    op = op_factory(conf_dir)
    op.watch(poll_interval=0.1)
    write(conf_dir, "20-b.conflist", conflist("b", "bridge"))
    assert wait_for(lambda: op.networks.names == ["a", "b"]), op.networks.names
    write(conf_dir, "20-b.conflist", conflist("b", "bridge", "portmap"))
    assert wait_for(lambda: op.networks.get("b") is not None
                    and op.networks.get("b").plugin_types == ["bridge", "portmap"])
    (conf_dir / "10-a.conflist").unlink()
    assert wait_for(lambda: op.networks.names == ["b"])


def test_watch_keeps_the_last_good_set_when_the_dir_goes_bad(conf_dir, op_factory, watch_mode):
    path = write(conf_dir, "10-a.conflist", conflist("a", "bridge"))
    op = op_factory(conf_dir)
    op.watch(poll_interval=0.1)
    path.write_text("{not json at all", encoding="utf-8")
    assert wait_for(lambda: op.last_reload_error != "")
    assert op.networks.names == ["a"]
    assert "10-a.conflist" in op.last_reload_error
    path.write_text(conflist("fixed", "bridge"), encoding="utf-8")
    assert wait_for(lambda: op.networks.names == ["fixed"])
    assert op.last_reload_error == ""


def test_watch_picks_up_a_conf_dir_created_after_start(tmp_path, op_factory):
    conf_dir = tmp_path / "later"
    op = op_factory(conf_dir)
    op.watch(poll_interval=0.1)
    assert op.networks.names == []
    write(conf_dir, "10-a.conflist", conflist("a", "bridge"))
    assert wait_for(lambda: op.networks.names == ["a"])


def test_watch_picks_up_a_same_size_replacement_that_keeps_its_mtime(conf_dir, op_factory):
    """A config replaced by a file of the same size whose mtime was preserved (cp -p, tar,
    rsync -a, a prepared file moved in place) is a changed file: inotify reports the move, and
    the reload must not be decided by (name, mtime, size) alone."""
    path = write(conf_dir, "10-a.conflist", conflist("net1", "bridge"))
    st = path.stat()
    op = op_factory(conf_dir)
    op.watch(poll_interval=0.1)
    staged = write(conf_dir.parent / "staging", "10-a.conflist", conflist("net2", "bridge"))
    assert staged.stat().st_size == st.st_size
    os.utime(staged, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.rename(staged, path)  # one atomic step: the watcher never sees an intermediate state
    assert wait_for(lambda: op.networks.names == ["net2"], timeout=1.5), op.networks.names


def test_watch_is_started_once_and_close_stops_it(conf_dir, op_factory):
    write(conf_dir, "10-a.conflist", conflist("a", "bridge"))
    op = op_factory(conf_dir)
    op.watch(poll_interval=0.1)
    watcher = op._watcher
    op.watch(poll_interval=0.1)
    assert op._watcher is watcher
    op.close()
    assert op._watcher is None
    assert not watcher._thread.is_alive()
    write(conf_dir, "20-b.conflist", conflist("b", "bridge"))
    time.sleep(0.3)
    assert op.networks.names == ["a"]  # no more reloads after close
    op.close()  # closing twice is fine


def test_watcher_survives_a_failing_callback(conf_dir):
    calls: list[float] = []

    def on_change() -> None:
        calls.append(time.monotonic())
        raise RuntimeError("boom")

    w = ConfDirWatcher(str(conf_dir), on_change, poll_interval=0.1, debounce=0.1).start()
    try:
        write(conf_dir, "a.conflist", "x")
        assert wait_for(lambda: len(calls) >= 1)
        write(conf_dir, "b.conflist", "y")
        assert wait_for(lambda: len(calls) >= 2)  # still alive after the exception
        assert w._thread.is_alive()
    finally:
        w.stop()
    assert not w._thread.is_alive()


def test_watcher_stop_is_idempotent(conf_dir):
    """A second stop() must not write to (or close) a pipe fd that was already closed: that
    number may by then belong to another file of the process."""
    w = ConfDirWatcher(str(conf_dir), lambda: None, poll_interval=0.05).start()
    w.stop()
    w.stop()


def test_watcher_does_not_call_back_without_changes(conf_dir):
    calls: list[int] = []
    write(conf_dir, "a.conflist", "x")
    w = ConfDirWatcher(str(conf_dir), lambda: calls.append(1), poll_interval=0.05).start()
    time.sleep(0.3)
    w.stop()
    assert calls == []


# ==== planes ==================================================================================


@pytest.fixture
def netns(tmp_path: Path) -> Path:
    p = tmp_path / "netns" / "ns1"
    p.parent.mkdir()
    p.symlink_to("/proc/self/ns/net")  # a live netns (nsfs) without root
    return p


def env_of(call: dict) -> dict:
    return call["env"]


def test_loopback_config_is_built_in(tmp_path, op_factory):
    op = op_factory(tmp_path / "none")
    assert op.loopback.name == "cni-loopback"
    assert op.loopback.cni_version == "0.3.1"
    assert op.loopback.plugin_types == ["loopback"]
    assert json.loads(LOOPBACK_CONFLIST) == {"cniVersion": "0.3.1", "name": "cni-loopback",
                                             "plugins": [{"type": "loopback"}]}


def test_attach_loopback_runs_loopback_on_lo(tmp_path, op_factory, fakecni, netns):
    fakecni.install("loopback")
    op = op_factory(tmp_path / "none")
    result = op.attach_loopback("ctr1", str(netns))
    (call,) = fakecni.calls()
    env = env_of(call)
    assert (call["name"], env["CNI_COMMAND"], env["CNI_IFNAME"]) == ("loopback", "ADD", "lo")
    assert env["CNI_CONTAINERID"] == "ctr1" and env["CNI_NETNS"] == str(netns)
    assert call["config"]["name"] == "cni-loopback" and call["config"]["cniVersion"] == "0.3.1"
    assert result is not None
    assert (tmp_path / "cache" / "results" / "cni-loopback-ctr1-lo").exists()
    fakecni.clear_log()
    op.detach_loopback("ctr1", str(netns))
    assert fakecni.sequence() == [("loopback", "DEL")]
    assert env_of(fakecni.calls()[0])["CNI_IFNAME"] == "lo"
    assert not (tmp_path / "cache" / "results" / "cni-loopback-ctr1-lo").exists()


def test_attach_plane_passes_args_and_capabilities_and_caches(conf_dir, op_factory, fakecni, netns, tmp_path):
    fakecni.install("main", "pm")
    write(conf_dir, "10-n.conflist", conflist("n", "main", {"type": "pm", "capabilities": {"portMappings": True}}))
    op = op_factory(conf_dir)
    caps = {"portMappings": [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]}
    plane = PlaneRef("n", "ctr1", str(netns), "eth0", (("IgnoreUnknown", "1"), ("K", "v")), caps)
    result = op.attach_network_plane(op.get("n"), plane)
    main, pm = fakecni.calls(command="ADD")
    assert env_of(main)["CNI_ARGS"] == "IgnoreUnknown=1;K=v"
    assert "runtimeConfig" not in main["config"]
    assert pm["config"]["runtimeConfig"] == caps
    assert op.cached_result(plane).to_dict() == result.to_dict()
    assert (tmp_path / "cache" / "results" / "n-ctr1-eth0").exists()


def test_failed_add_is_rolled_back_with_a_del_of_the_plane(conf_dir, op_factory, fakecni, netns, tmp_path):
    fakecni.install("a", "b", "c")
    fakecni.script("b", "ADD", exit=1, stdout=json.dumps({"code": 11, "msg": "no addresses left"}))
    write(conf_dir, "10-n.conflist", conflist("n", "a", "b", "c"))
    op = op_factory(conf_dir)
    with pytest.raises(PluginError) as exc:
        op.attach_network_plane(op.get("n"), PlaneRef("n", "ctr1", str(netns), "eth0"))
    assert exc.value.plugin == "b" and "no addresses left" in str(exc.value)
    assert fakecni.sequence() == [("a", "ADD"), ("b", "ADD"), ("c", "DEL"), ("b", "DEL"), ("a", "DEL")]
    assert op.cached_result(PlaneRef("n", "ctr1", str(netns), "eth0")) is None
    assert not (tmp_path / "cache" / "results" / "n-ctr1-eth0").exists()


def test_a_failing_rollback_del_does_not_hide_the_add_error(conf_dir, op_factory, fakecni, netns):
    fakecni.install("a", "b")
    fakecni.script("b", "ADD", exit=1, stdout=json.dumps({"code": 7, "msg": "add broke"}))
    fakecni.script("a", "DEL", exit=1, stdout=json.dumps({"code": 7, "msg": "del broke"}))
    write(conf_dir, "10-n.conflist", conflist("n", "a", "b"))
    op = op_factory(conf_dir)
    with pytest.raises(PluginError) as exc:
        op.attach_network_plane(op.get("n"), PlaneRef("n", "ctr1", str(netns), "eth0"))
    assert exc.value.command == "ADD" and exc.value.plugin == "b" and "add broke" in str(exc.value)
    assert fakecni.sequence()[-2:] == [("b", "DEL"), ("a", "DEL")]


def _attach_one(conf_dir, op_factory, fakecni, netns, marker="v1", **plane_kw):
    fakecni.install("a", "pm")
    write(conf_dir, "10-n.conflist", conflist("n", {"type": "a", "marker": marker},
                                              {"type": "pm", "capabilities": {"portMappings": True}, "marker": marker}))
    op = op_factory(conf_dir)
    plane = PlaneRef("n", "ctr1", str(netns), "eth0", **plane_kw)
    op.attach_network_plane(op.get("n"), plane)
    fakecni.clear_log()
    return op, plane


def test_detach_uses_the_cached_config_and_args_not_todays(conf_dir, op_factory, fakecni, netns):
    caps = {"portMappings": [{"hostPort": 80, "containerPort": 8080}]}
    op, plane = _attach_one(conf_dir, op_factory, fakecni, netns, args=(("K", "v1"),), capability_args=caps)
    write(conf_dir, "10-n.conflist", conflist("n", {"type": "a", "marker": "v2"}, "pm", "extra"))
    op.update()
    assert op.get("n").plugin_types == ["a", "pm", "extra"]
    op.detach_network_plane(PlaneRef("n", "ctr1", str(netns), "eth0", (("K", "v2"),), {}))
    assert fakecni.sequence() == [("pm", "DEL"), ("a", "DEL")]  # not today's three plugins
    pm, a = fakecni.calls()
    assert a["config"]["marker"] == "v1" and pm["config"]["marker"] == "v1"
    assert env_of(a)["CNI_ARGS"] == "K=v1"
    assert pm["config"]["runtimeConfig"] == caps
    assert "prevResult" in a["config"]  # DEL of a >= 0.4.0 list gets the cached result
    assert op.cached_result(plane) is None


def test_detach_after_the_file_is_gone_still_dels_with_the_cached_config(conf_dir, op_factory, fakecni, netns):
    op, plane = _attach_one(conf_dir, op_factory, fakecni, netns)
    write(conf_dir, "20-other.conflist", conflist("other", "a"))
    (conf_dir / "10-n.conflist").unlink()
    op.update()
    assert op.networks.names == ["other"]
    op.detach_network_plane(plane)
    assert fakecni.sequence() == [("pm", "DEL"), ("a", "DEL")]
    assert fakecni.calls()[0]["config"]["marker"] == "v1"


def test_detach_with_a_vanished_netns_sends_an_empty_cni_netns(conf_dir, op_factory, fakecni, netns):
    op, plane = _attach_one(conf_dir, op_factory, fakecni, netns)
    netns.unlink()
    op.detach_network_plane(plane)
    assert [env_of(c)["CNI_NETNS"] for c in fakecni.calls()] == ["", ""]
    fakecni.clear_log()
    netns2 = netns.parent / "ns2"
    netns2.symlink_to("/proc/self/ns/net")
    op2, _ = _attach_one(conf_dir, op_factory, fakecni, netns2)
    # a plane given without a netns falls back to the cached one (which still exists here)
    op2.detach_network_plane(PlaneRef("n", "ctr1", "", "eth0"))
    assert [env_of(c)["CNI_NETNS"] for c in fakecni.calls()] == [str(netns2)] * 2


def test_detach_of_a_conf_whose_name_came_from_the_file_name(conf_dir, op_factory, fakecni, netns):
    fakecni.install("a")
    write(conf_dir, "10-anon.conf", json.dumps({"cniVersion": "1.0.0", "name": "", "type": "a"}))
    op = op_factory(conf_dir)
    plane = PlaneRef("10-anon", "ctr1", str(netns), "eth0")
    op.attach_network_plane(op.get("10-anon"), plane)
    assert fakecni.calls()[0]["config"]["name"] == "10-anon"
    fakecni.clear_log()
    (conf_dir / "10-anon.conf").unlink()
    op.update()
    op.detach_network_plane(plane)
    (call,) = fakecni.calls()
    assert env_of(call)["CNI_COMMAND"] == "DEL" and call["config"]["name"] == "10-anon"


def test_detach_without_cache_uses_todays_config_or_does_nothing(conf_dir, op_factory, fakecni, netns):
    fakecni.install("a")
    write(conf_dir, "10-n.conflist", conflist("n", "a"))
    op = op_factory(conf_dir)
    op.detach_network_plane(PlaneRef("n", "ctr1", str(netns), "eth0", (("K", "v"),)))
    (call,) = fakecni.calls()
    assert env_of(call)["CNI_COMMAND"] == "DEL" and env_of(call)["CNI_ARGS"] == "K=v"
    fakecni.clear_log()
    op.detach_network_plane(PlaneRef("unknown", "ctr1", str(netns), "eth0"))
    assert fakecni.calls() == []


def test_detach_is_idempotent(conf_dir, op_factory, fakecni, netns):
    op, plane = _attach_one(conf_dir, op_factory, fakecni, netns)
    op.detach_network_plane(plane)
    op.detach_network_plane(plane)  # no cache any more: today's config, DEL is idempotent
    assert [c for _, c in fakecni.sequence()] == ["DEL"] * 4


def test_failed_del_keeps_the_cache_for_a_retry(conf_dir, op_factory, fakecni, netns):
    op, plane = _attach_one(conf_dir, op_factory, fakecni, netns)
    fakecni.script("a", "DEL", exit=1, stdout=json.dumps({"code": 5, "msg": "busy"}))
    with pytest.raises(PluginError) as exc:
        op.detach_network_plane(plane)
    assert exc.value.plugin == "a"
    assert op.cached_result(plane) is not None
    fakecni.script("a", "DEL")
    op.detach_network_plane(plane)
    assert op.cached_result(plane) is None


def test_check_runs_check_with_the_cached_config(conf_dir, op_factory, fakecni, netns):
    op, plane = _attach_one(conf_dir, op_factory, fakecni, netns, args=(("K", "v1"),))
    write(conf_dir, "10-n.conflist", conflist("n", {"type": "a", "marker": "v2"}))
    op.update()
    op.check_network_plane(PlaneRef("n", "ctr1", str(netns), "eth0"))
    assert fakecni.sequence() == [("a", "CHECK"), ("pm", "CHECK")]
    assert all(c["config"]["marker"] == "v1" and "prevResult" in c["config"] for c in fakecni.calls())
    assert env_of(fakecni.calls()[0])["CNI_ARGS"] == "K=v1"


def test_check_failure_and_missing_attachment(conf_dir, op_factory, fakecni, netns):
    op, plane = _attach_one(conf_dir, op_factory, fakecni, netns)
    fakecni.script("pm", "CHECK", exit=1, stdout=json.dumps({"code": 11, "msg": "rule missing"}))
    with pytest.raises(PluginError) as exc:
        op.check_network_plane(plane)
    assert exc.value.plugin == "pm"
    with pytest.raises(CNIError) as exc2:
        op.check_network_plane(PlaneRef("n", "other", str(netns), "eth0"))
    assert exc2.value.code == ErrorCode.UNKNOWN_CONTAINER


def test_cached_result_runs_no_plugin(conf_dir, op_factory, fakecni, netns):
    op, plane = _attach_one(conf_dir, op_factory, fakecni, netns)
    res = op.cached_result(plane)
    assert res is not None and res.to_dict()["ips"][0]["address"] == "10.22.0.5/16"
    assert op.cached_result(PlaneRef("n", "ctr2", str(netns), "eth0")) is None
    assert fakecni.calls() == []


def test_version_network_plane_asks_each_plugin_type_once(conf_dir, op_factory, fakecni):
    fakecni.install("a", "b")
    fakecni.script("b", "VERSION", versions=["0.4.0", "1.0.0"])
    write(conf_dir, "10-n.conflist", conflist("n", "a", "b", "a"))
    op = op_factory(conf_dir)
    info = op.version_network_plane(op.get("n"))
    assert set(info) == {"a", "b"}
    assert list(info["b"].supported_versions) == ["0.4.0", "1.0.0"]
    assert fakecni.sequence() == [("a", "VERSION"), ("b", "VERSION")]
