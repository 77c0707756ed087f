"""Running plugins through the real exec path (CNI -> Executor -> subprocess -> fake plugin).

Spec: /work/shared/reference/libcni-behaviour.md section 2 (what each plugin receives, lookup,
exec and failure text) plus timeouts, "text file busy" retries and concurrent use.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time

import pytest

from cri_net.libcni import (
    CNIError, ErrorCode, Executor, PluginArgs, PluginError, PluginNotFoundError, PluginTimeoutError,
)
from cri_net.libcni.invoke import BUSY_ATTEMPTS, find_in_path
from fakeplugin.harness import wait_gone

CNI_VARS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")


def cni_env(record: dict) -> dict[str, str]:
    return {k: v for k, v in record["env"].items() if k.startswith("CNI_")}


# ---- environment -------------------------------------------------------------------------

def test_environment_has_all_six_cni_vars_with_args_and_path(fakecni, tmp_path):
    bin2 = tmp_path / "bin2"
    bin2.mkdir()
    fakecni.install("fake-a")
    cni = fakecni.cni(bin_dirs=[fakecni.bin, bin2])
    rt = fakecni.rt("ctr1", "/var/run/netns/ns1", "eth0",
                    args=[("IgnoreUnknown", "1"), ("K8S_POD_NAME", "web"), ("K8S_POD_NAMESPACE", "default")])
    cni.add_network_list(fakecni.conflist("fake-a"), rt)
    (call,) = fakecni.calls()
    assert cni_env(call) == {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "ctr1",
        "CNI_NETNS": "/var/run/netns/ns1",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web;K8S_POD_NAMESPACE=default",
        "CNI_PATH": f"{fakecni.bin}:{bin2}",
    }


def test_environment_vars_set_even_when_empty(fakecni, monkeypatch):
    # stale values in the runtime's own environment must be overridden, also by ""
    monkeypatch.setenv("CNI_NETNS", "/stale/netns")
    monkeypatch.setenv("CNI_ARGS", "STALE=1")
    fakecni.install("fake-a")
    cni = fakecni.cni()
    cni.add_network_list(fakecni.conflist("fake-a"), fakecni.rt("ctr1", netns="", args=()))
    cni.status_network_list(fakecni.conflist("fake-a", version="1.1.0"))
    add, status = fakecni.calls()
    for call in (add, status):
        assert set(CNI_VARS) <= set(call["env"])
    assert add["env"]["CNI_NETNS"] == "" and add["env"]["CNI_ARGS"] == ""
    assert cni_env(status) == {"CNI_COMMAND": "STATUS", "CNI_CONTAINERID": "", "CNI_NETNS": "", "CNI_IFNAME": "",
                               "CNI_ARGS": "", "CNI_PATH": str(fakecni.bin)}


def test_cni_args_are_not_escaped(fakecni):
    fakecni.install("fake-a")
    rt = fakecni.rt(args=[("A", "x=y"), ("B", "")])
    fakecni.cni().add_network_list(fakecni.conflist("fake-a"), rt)
    assert fakecni.calls()[0]["env"]["CNI_ARGS"] == "A=x=y;B="


def test_runtime_environment_is_passed_through(fakecni, monkeypatch):
    monkeypatch.setenv("FAKECNI_MARKER", "marker-value")
    fakecni.install("fake-a")
    fakecni.cni().add_network_list(fakecni.conflist("fake-a"), fakecni.rt())
    assert fakecni.calls()[0]["env"]["FAKECNI_MARKER"] == "marker-value"


def test_executor_env_replaces_the_runtime_environment(fakecni, monkeypatch):
    monkeypatch.setenv("FAKECNI_MARKER", "from-os-environ")
    fakecni.install("fake-a")
    cni = fakecni.cni(env={**fakecni.env, "ONLY_THIS": "1"})
    cni.add_network_list(fakecni.conflist("fake-a"), fakecni.rt())
    env = fakecni.calls()[0]["env"]
    assert env["ONLY_THIS"] == "1"
    assert "FAKECNI_MARKER" not in env
    assert set(CNI_VARS) <= set(env)


def test_plugin_args_environ_unit():
    env = PluginArgs("DEL", "c", "", "eth0", (("K", "V"), ("L", "W")), ("/a", "/b")).environ({"X": "1", "CNI_NETNS": "old"})
    assert env == {"X": "1", "CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_NETNS": "", "CNI_ARGS": "K=V;L=W",
                   "CNI_IFNAME": "eth0", "CNI_PATH": "/a:/b"}


# ---- stdin -------------------------------------------------------------------------------

def test_stdin_overrides_name_and_version_and_forwards_unknown_keys_verbatim(fakecni):
    fakecni.install("fake-a")
    plugin = ('{"type": "fake-a", "name": "other", "cniVersion": "0.3.1", '
              '"big": 18446744073709551617, "f": 1.0e3, "nested": {"z": [1, 2]}, "s": "\\u00e9<&>"}')
    raw = ('{"cniVersion": "1.0.0", "name": "net1", "plugins": [' + plugin + ']}').encode()
    from cri_net.libcni import conf_list_from_bytes
    fakecni.cni().add_network_list(conf_list_from_bytes(raw), fakecni.rt())
    stdin = fakecni.calls()[0]["stdin"]
    # member values arrive byte-for-byte (Go would turn the big int into a float and 1.0e3 into 1000);
    # only the whitespace around the ':' is not kept
    for key, value in (("big", "18446744073709551617"), ("f", "1.0e3"), ("nested", '{"z": [1, 2]}'),
                       ("s", '"\\u00e9<&>"'), ("type", '"fake-a"')):
        assert re.search(rf'"{key}"\s*:\s*{re.escape(value)}[,}}]', stdin), (key, value, stdin)
    conf = json.loads(stdin)
    assert conf["name"] == "net1" and conf["cniVersion"] == "1.0.0"
    assert list(conf) == ["type", "name", "cniVersion", "big", "f", "nested", "s"]
    assert "prevResult" not in conf and "runtimeConfig" not in conf


def test_stdin_version_and_name_added_when_plugin_has_none(fakecni):
    fakecni.install("fake-a")
    fakecni.cni().add_network_list(fakecni.conflist({"type": "fake-a", "x": 1}, version="0.4.0"), fakecni.rt())
    conf = fakecni.calls()[0]["config"]
    assert conf == {"type": "fake-a", "x": 1, "cniVersion": "0.4.0", "name": "net1"}


def test_version_command_uses_fixed_stdin_and_dummy_values(fakecni):
    fakecni.install("fake-a")
    info = fakecni.cni().version_info("fake-a")
    assert info.supported_versions == ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
    (call,) = fakecni.calls()
    assert call["stdin"] == '{"cniVersion":"1.1.0"}'
    env = cni_env(call)
    assert env["CNI_COMMAND"] == "VERSION"
    assert env["CNI_NETNS"] == env["CNI_IFNAME"] == env["CNI_PATH"] == "dummy"
    assert set(CNI_VARS) <= set(env)


# ---- plugin lookup -----------------------------------------------------------------------

def test_first_bin_dir_holding_the_plugin_wins(fakecni, tmp_path):
    first, second, third = tmp_path / "b1", tmp_path / "b2", tmp_path / "b3"
    (first / "fake-a").mkdir(parents=True)  # a directory is not a plugin
    fakecni.install("fake-a", bin_dir=second)
    fakecni.install("fake-a", bin_dir=third)
    fakecni.cni(bin_dirs=[first, second, third]).add_network_list(fakecni.conflist("fake-a"), fakecni.rt())
    assert fakecni.calls()[0]["argv"][0] == str(second / "fake-a")


def test_lookup_follows_symlinks_and_skips_dangling_ones(fakecni, tmp_path):
    first, second, store = tmp_path / "b1", tmp_path / "b2", tmp_path / "store"
    first.mkdir()
    (real,) = fakecni.install("fake-real", bin_dir=store)
    os.symlink(tmp_path / "nowhere", first / "fake-a")  # dangling: not a regular file
    second.mkdir()
    os.symlink(real, second / "fake-a")
    cni = fakecni.cni(bin_dirs=[first, second])
    cni.add_network_list(fakecni.conflist("fake-a"), fakecni.rt())
    (call,) = fakecni.calls()
    assert call["argv"][0] == str(second / "fake-a") and call["name"] == "fake-a"


def test_default_cache_dir_is_var_lib_cni():
    from cri_net.libcni import CNI

    assert CNI(["/nonexistent"]).cache_dir == "/var/lib/cni"


@pytest.mark.parametrize("bad", ["../fake-a", "sub/fake-a", "/bin/true", ".", ".."])
def test_plugin_name_with_slash_is_refused(fakecni, bad):
    fakecni.install("fake-a")
    (fakecni.bin / "sub").mkdir()
    fakecni.install("fake-a", bin_dir=fakecni.bin / "sub")
    with pytest.raises(PluginError) as info:
        fakecni.cni().add_network_list(fakecni.conflist({"type": bad}), fakecni.rt())
    assert info.value.code == ErrorCode.INVALID_NETWORK_CONFIG
    if "/" in bad:
        assert f"invalid plugin name: {bad}" in str(info.value)
    assert fakecni.calls() == []
    assert not fakecni.cache_file().exists()


def test_missing_plugin_error_names_it(fakecni, tmp_path):
    fakecni.install("fake-a")
    cni = fakecni.cni(bin_dirs=[fakecni.bin, tmp_path / "nowhere"])
    with pytest.raises(PluginError) as info:
        cni.add_network_list(fakecni.conflist("fake-a", "fake-missing"), fakecni.rt())
    exc = info.value
    assert exc.plugin == "fake-missing" and exc.command == "ADD"
    assert isinstance(exc.cause, PluginNotFoundError)
    assert f'failed to find plugin "fake-missing" in path [{fakecni.bin} {tmp_path / "nowhere"}]' in str(exc)
    assert 'type="fake-missing"' in str(exc)
    assert fakecni.sequence() == [("fake-a", "ADD")]
    assert not fakecni.cache_file().exists()


@pytest.mark.parametrize("name, paths, message", [
    ("", ["/x"], "no plugin name provided"),
    ("a/b", ["/x"], "invalid plugin name: a/b"),
    ("a\0b", ["/x"], "invalid plugin name"),
    ("fake-a", [], "no paths provided"),
])
def test_find_in_path_refusals(name, paths, message):
    with pytest.raises(PluginNotFoundError, match=message):
        find_in_path(name, paths)


# ---- failure decoding --------------------------------------------------------------------

FAILURES = [
    pytest.param({"stdout": '{"code":7,"msg":"bad config","details":"more detail"}', "exit": 1},
                 7, "bad config; more detail", id="json-error-with-details"),
    pytest.param({"stdout": '{"cniVersion":"1.0.0","code":11,"msg":"try later"}', "exit": 1},
                 11, "try later", id="json-error-without-details"),
    pytest.param({"stdout": '{"code":4,"msg":"from stdout"}', "stderr": "ignored stderr", "exit": 1},
                 4, "from stdout", id="stdout-wins-over-stderr"),
    pytest.param({"stderr": "boom\n", "exit": 1},
                 999, 'netplugin failed: "boom\\n"', id="stderr-only"),
    pytest.param({"exit": 3},
                 999, "netplugin failed with no error message: exit status 3", id="nothing"),
    pytest.param({"stdout": "not json at all", "exit": 2},
                 999, 'netplugin failed but error parsing its diagnostic message "not json at all"',
                 id="garbage-stdout"),
    pytest.param({"stdout": '["a list"]', "exit": 1},
                 999, 'netplugin failed but error parsing its diagnostic message "[\\"a list\\"]"',
                 id="json-not-an-object"),
]


@pytest.mark.parametrize("behaviour, code, text", FAILURES)
def test_plugin_failure_is_decoded(fakecni, behaviour, code, text):
    fakecni.install("fake-a")
    fakecni.script("fake-a", "ADD", **behaviour)
    with pytest.raises(PluginError) as info:
        fakecni.cni().add_network_list(fakecni.conflist("fake-a"), fakecni.rt())
    exc = info.value
    assert exc.code == code and exc.cause.code == code
    assert str(exc.cause).startswith(text)
    assert str(exc) == f'plugin type="fake-a" name="net1" failed (add): {exc.cause}'
    assert not fakecni.cache_file().exists()


def test_plugin_error_names_plugin_command_and_network(fakecni):
    fakecni.install("fake-a", "fake-b")
    fakecni.script("fake-a", "DEL", stdout='{"code":5,"msg":"cannot delete"}', exit=1)
    net = fakecni.conflist("fake-a", "fake-b", name="mynet")
    with pytest.raises(PluginError) as info:
        fakecni.cni().del_network_list(net, fakecni.rt())
    exc = info.value
    assert (exc.plugin, exc.command, exc.network, exc.code) == ("fake-a", "DEL", "mynet", 5)
    assert 'type="fake-a"' in str(exc) and 'name="mynet"' in str(exc) and "(del)" in str(exc)
    assert str(exc).endswith("cannot delete")


# ---- timeouts ----------------------------------------------------------------------------

TIMEOUT = 0.5
SLACK = 3.0


@pytest.mark.parametrize("behaviour", [
    pytest.param({"sleep": 30}, id="plugin-sleeps"),
    pytest.param({"fork_sleep": 30}, id="child-holds-stdout"),
    pytest.param({"fork_sleep": 30, "sleep": 30}, id="both-sleep"),
])
def test_timed_out_plugin_is_killed_with_its_children(fakecni, behaviour):
    fakecni.install("fake-a")
    fakecni.script("fake-a", "ADD", **behaviour)
    cni = fakecni.cni(timeout=TIMEOUT)
    start = time.monotonic()
    with pytest.raises(PluginError) as info:
        cni.add_network_list(fakecni.conflist("fake-a"), fakecni.rt())
    elapsed = time.monotonic() - start
    assert TIMEOUT <= elapsed < TIMEOUT + SLACK
    exc = info.value
    assert exc.code == ErrorCode.TRY_AGAIN_LATER == 11
    assert isinstance(exc.cause, PluginTimeoutError)
    assert "timed out" in str(exc) and 'type="fake-a"' in str(exc)
    assert not fakecni.cache_file().exists()
    (call,) = fakecni.calls()
    # the plugin itself was reaped by the executor: not even a zombie is left
    assert not os.path.exists(f"/proc/{call['pid']}")
    if call["child_pid"]:
        assert wait_gone(call["child_pid"]), "the plugin's child survived the kill"


def test_executor_run_raises_plugin_timeout_error(fakecni):
    (path,) = fakecni.install("fake-a")
    fakecni.script("fake-a", "*", sleep=30)
    start = time.monotonic()
    with pytest.raises(PluginTimeoutError) as info:
        Executor(timeout=0.3).run(str(path), b"{}", PluginArgs("ADD", "c", "", "eth0"))
    assert time.monotonic() - start < 0.3 + SLACK
    assert info.value.code == 11 and info.value.command == "ADD"


def test_plugin_within_timeout_succeeds(fakecni):
    fakecni.install("fake-a")
    fakecni.script("fake-a", "ADD", sleep=0.1)
    result = fakecni.cni(timeout=5).add_network_list(fakecni.conflist("fake-a"), fakecni.rt())
    assert result.ips[0].address == "10.22.0.5/16"


# ---- text file busy ----------------------------------------------------------------------

def test_text_file_busy_is_retried_until_released(fakecni):
    (path,) = fakecni.install("fake-a")
    fd = os.open(path, os.O_WRONLY)
    released = threading.Event()

    def release() -> None:
        time.sleep(0.3)
        os.close(fd)
        released.set()

    thread = threading.Thread(target=release)
    thread.start()
    try:
        start = time.monotonic()
        result = fakecni.cni(busy_wait=0.1).add_network_list(fakecni.conflist("fake-a"), fakecni.rt())
        elapsed = time.monotonic() - start
    finally:
        thread.join()
    assert released.is_set()
    assert elapsed >= 0.25  # it really had to wait for the release
    assert result.interfaces[0].name == "eth0"
    assert len(fakecni.calls()) == 1
    assert fakecni.cache_file().exists()


def test_text_file_busy_gives_up_after_the_retries(fakecni):
    (path,) = fakecni.install("fake-a")
    fd = os.open(path, os.O_WRONLY)
    try:
        start = time.monotonic()
        with pytest.raises(PluginError) as info:
            fakecni.cni(busy_wait=0.05).add_network_list(fakecni.conflist("fake-a"), fakecni.rt())
        elapsed = time.monotonic() - start
    finally:
        os.close(fd)
    assert elapsed >= (BUSY_ATTEMPTS - 1) * 0.05
    assert elapsed < 5
    assert "Text file busy" in str(info.value) and str(path) in str(info.value)
    assert fakecni.calls() == []
    assert not fakecni.cache_file().exists()


def test_exec_failure_other_than_busy_is_not_retried(fakecni):
    (path,) = fakecni.install("fake-a")
    path.chmod(0o644)  # not executable: EACCES, even for root
    start = time.monotonic()
    with pytest.raises(PluginError) as info:
        fakecni.cni(busy_wait=1.0).add_network_list(fakecni.conflist("fake-a"), fakecni.rt())
    assert time.monotonic() - start < 0.9
    assert "Permission denied" in str(info.value)


# ---- concurrency -------------------------------------------------------------------------

def test_concurrent_adds_overlap_and_are_all_cached(fakecni):
    n, nap = 16, 0.3
    fakecni.install("fake-a")
    fakecni.script("fake-a", "ADD", sleep=nap)
    cni = fakecni.cni(timeout=30)
    net = fakecni.conflist("fake-a")
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def add(i: int) -> None:
        try:
            barrier.wait()
            cni.add_network_list(net, fakecni.rt(f"ctr{i}", f"/var/run/netns/ns{i}", args=[("I", str(i))]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    # runs really overlapped: some plugin started while another was still sleeping
    records = fakecni.records()
    starts = {r["pid"]: r["t"] for r in records if r["event"] == "start"}
    ends = {r["pid"]: r["t"] for r in records if r["event"] == "end"}
    assert len(starts) == len(ends) == n
    overlap = max(sum(1 for p in starts if starts[p] <= t0 < ends[p]) for t0 in starts.values())
    assert overlap >= 2

    for i in range(n):
        record = json.loads(fakecni.cache_file(container_id=f"ctr{i}").read_bytes())
        assert record["containerId"] == f"ctr{i}"
        assert record["netns"] == f"/var/run/netns/ns{i}"
        assert record["cniArgs"] == [["I", str(i)]]
        assert record["result"]["interfaces"][0]["sandbox"] == f"/var/run/netns/ns{i}"
    assert sorted(a.container_id for a in cni.cached_attachments()) == sorted(f"ctr{i}" for i in range(n))
    assert not [p for p in (fakecni.cache_dir / "results").iterdir() if p.name.startswith(".tmp")]


def test_cni_error_base_class_for_exec_failures(fakecni):
    fakecni.install("fake-a")
    fakecni.script("fake-a", "ADD", exit=1)
    with pytest.raises(CNIError):
        fakecni.cni().add_network_list(fakecni.conflist("fake-a"), fakecni.rt())


def test_a_plugin_killed_by_a_signal_is_reported_as_go_does(fakecni) -> None:
    """Go libcni says "signal: killed", not a negative exit status."""
    from cri_net.libcni.invoke import exit_text, plugin_error

    assert exit_text(2) == "exit status 2"
    assert exit_text(-9) == "signal: killed" and exit_text(-11) == "signal: segmentation fault"
    assert plugin_error(-9, b"", b"").msg == "netplugin failed with no error message: signal: killed"
