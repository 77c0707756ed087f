"""Bad-input suite (issue 11, findings 10 and 11): special and unbounded files in every
directory cri-net reads.

FIFOs, a symlink to /dev/zero, symlink loops, dangling symlinks, directories and unix
sockets with a config or record name, huge sparse files, files that fail on read
(/proc/self/mem), mode-000 files and truncated JSON are placed among valid entries in the
conf dir, a network's fragment dir, the cache results dir, the state dir and as the pod
CIDR file and the config file. Each reader must: finish (every call runs under a timeout),
never raise anything but its documented error, report every unusable entry naming the
file, and still use every valid entry beside them.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from badinput_strategies import props
from cri_net import config
from cri_net.libcni import CacheRecord, ResultCache, SkippedFile, load_conf_list
from cri_net.libcni.cache import MAX_CACHE_FILE_SIZE
from cri_net.libcni.conf import MAX_CONF_FILE_SIZE
from cri_net.operator.loader import load_networks
from cri_net.operator.watcher import dir_signature
from cri_net.server.sandbox import MAX_RUNTIME_FILE_SIZE, read_pod_cidr
from cri_net.server.store import MAX_RECORD_SIZE, SandboxMetadata, SandboxRecord, SandboxStore
from tests.reliability import record

SUITE = "bad-input"
AUDITED = "no hang (timeout), no crash, every unusable entry reported naming the file, valid entries still used"
CALL_TIMEOUT = 20.0

#: Every kind of entry that is not a usable regular file, plus two regular-but-bad ones.
KINDS = ("fifo", "devzero", "loop", "dangling", "dir", "sparse", "socket", "procmem", "mode000", "truncated",
         "fifolink")
_counter = itertools.count()


def bounded(fn: Callable[[], Any], timeout: float = CALL_TIMEOUT) -> Any:
    """fn() on a daemon thread, failing the test (not hanging it) past `timeout`."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} still running after {timeout}s (hangs on a special file)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def make_special(path: Path, kind: str, limit: int, sockets: list[socket.socket]) -> None:
    """Create an entry of `kind` at `path` (a sparse file is `limit` + 1 bytes, unwritten)."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "fifolink":
        os.mkfifo(path.with_name(path.name + ".target"))
        path.symlink_to(path.name + ".target")
    elif kind == "devzero":
        path.symlink_to("/dev/zero")
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "dangling":
        path.symlink_to(path.name + ".missing")
    elif kind == "dir":
        path.mkdir()
    elif kind == "sparse":
        with open(path, "wb") as fh:
            fh.truncate(limit + 1)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sockets.append(sock)
    elif kind == "procmem":
        path.symlink_to("/proc/self/mem")  # a regular file whose read fails (EIO)
    elif kind == "mode000":
        path.write_bytes(b'{"cniVersion": "1.0.0", "name": ')  # unparsable even where root can read it
        path.chmod(0)
    elif kind == "truncated":
        path.write_bytes(b'{"cniVersion": "1.0.0", "name": "trunc", "plugins": [{"type": ')
    else:
        raise AssertionError(kind)


@pytest.fixture
def sockets() -> Any:
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("special-files")


def fresh_dir(root: Path) -> Path:
    path = root / f"d{next(_counter)}"
    path.mkdir()
    return path


def conflist(name: str) -> bytes:
    return json.dumps({"cniVersion": "1.0.0", "name": name, "plugins": [{"type": "bridge"}]}).encode()


specials = st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from([".conflist", ".conf", ".json"])),
                    min_size=1, max_size=5)


# ---- conf dir --------------------------------------------------------------------------------

@props(ci=40, full=600)
@given(entries=specials, valid_first=st.booleans())
def test_conf_dir_with_special_files(root: Path, sockets: list[socket.socket], entries: list[tuple[str, str]],
                                     valid_first: bool) -> None:
    """load_networks, load_conf_list and the watcher's signature on a conf dir mixing special
    entries with one valid network: all finish, the valid network loads, and every special
    entry is in `skipped` with its path and a reason."""
    record("special files: conf dir", runs=1, audited=AUDITED, suite=SUITE)
    conf_dir = fresh_dir(root)
    good = conf_dir / ("00-good.conflist" if valid_first else "99-good.conflist")
    good.write_bytes(conflist("good"))
    bad = []
    for i, (kind, ext) in enumerate(entries):
        path = conf_dir / f"5{i}-{kind}{ext}"
        make_special(path, kind, MAX_CONF_FILE_SIZE, sockets)
        bad.append(str(path))
    try:
        result = bounded(lambda: load_networks(str(conf_dir)))
        assert result.names == ["good"], (result.names, result.skipped)
        skipped = {s.path: s.reason for s in result.skipped}
        assert sorted(skipped) == sorted(bad), (skipped, bad)
        for path, reason in skipped.items():
            assert reason.strip() and len(reason) < 4096, (path, reason)
        listed: list[SkippedFile] = []
        net = bounded(lambda: load_conf_list(str(conf_dir), "good", listed))
        assert net.name == "good"
        assert {s.path for s in listed} <= set(bad)
        sig = bounded(lambda: dir_signature(str(conf_dir)))
        assert {e[0] for e in sig} >= {good.name} | {os.path.basename(b) for b in bad}
    finally:
        shutil.rmtree(conf_dir, ignore_errors=True)


@pytest.mark.parametrize("kind", KINDS)
def test_fragment_dir_special_file_fails_only_its_network(tmp_path: Path, sockets: list[socket.socket],
                                                          kind: str) -> None:
    """A special file among a network's plugin fragments (`<conf dir>/<name>/*.conf`): that
    network is skipped naming the fragment (a directory is not a fragment, as in Go), the
    other network still loads."""
    record("special files: conf dir", runs=1, audited=AUDITED, suite=SUITE)
    (tmp_path / "10-frag.conflist").write_bytes(json.dumps({"cniVersion": "1.0.0", "name": "frag"}).encode())
    (tmp_path / "frag").mkdir()
    (tmp_path / "frag" / "10-a.conf").write_text('{"type": "bridge"}')
    make_special(tmp_path / "frag" / "20-x.conf", kind, MAX_CONF_FILE_SIZE, sockets)
    (tmp_path / "20-other.conflist").write_bytes(conflist("other"))
    result = bounded(lambda: load_networks(str(tmp_path)))
    if kind == "dir":
        assert result.names == ["frag", "other"] and result.get("frag").plugin_types == ["bridge"]
        return
    assert result.names == ["other"], result
    (skip,) = result.skipped
    assert skip.path == str(tmp_path / "10-frag.conflist") and "20-x.conf" in skip.reason, skip


def test_self_referencing_conflist_regression(tmp_path: Path) -> None:
    """The reported case: `x.conflist -> x.conflist` used to raise OSError (ELOOP) out of the
    listing, which made serve exit and every later reload fail."""
    record("special files: conf dir", runs=1, audited=AUDITED, suite=SUITE)
    (tmp_path / "10-good.conflist").write_bytes(conflist("good"))
    (tmp_path / "05-loop.conflist").symlink_to("05-loop.conflist")
    result = load_networks(str(tmp_path))
    assert result.names == ["good"]
    assert [(s.path, "loop" in s.reason) for s in result.skipped] == [(str(tmp_path / "05-loop.conflist"), True)]
    assert len(dir_signature(str(tmp_path))) == 2


@pytest.mark.parametrize("kind", ["loop", "fifo", "devzero", "dir", "dangling"])
def test_cni_cli_reports_special_files_without_a_traceback(tmp_path: Path, sockets: list[socket.socket],
                                                           kind: str) -> None:
    """`cri-net cni version good` (the cnitool drop-in, as a real process) with a special
    file in NETCONFPATH: answers for the good network, names the bad file on stderr, no
    traceback, within the timeout."""
    record("special files: conf dir", runs=1, audited=AUDITED, suite=SUITE)
    make_special(tmp_path / "05-bad.conflist", kind, MAX_CONF_FILE_SIZE, sockets)
    (tmp_path / "10-good.conflist").write_bytes(json.dumps(
        {"cniVersion": "1.0.0", "name": "good", "plugins": [{"type": "loopback"}]}).encode())
    env = {**os.environ, "NETCONFPATH": str(tmp_path), "CNI_PATH": "/usr/lib/cni"}
    proc = subprocess.run([sys.executable, "-m", "cri_net.cli.main", "cni", "version", "good"], env=env,
                          capture_output=True, timeout=CALL_TIMEOUT, text=True)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["name"] == "good"
    assert f"skipped {tmp_path / '05-bad.conflist'}" in proc.stderr, proc.stderr


# ---- cache results dir -----------------------------------------------------------------------

def cache_record(container: str) -> CacheRecord:
    return CacheRecord(container_id=container, config=conflist("net1"), ifname="eth0", network_name="net1",
                       result={"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.2/24"}]})


@props(ci=40, full=600)
@given(entries=st.lists(st.sampled_from(KINDS), min_size=1, max_size=5))
def test_cache_results_dir_with_special_files(root: Path, sockets: list[socket.socket], entries: list[str],
                                              caplog: pytest.LogCaptureFixture) -> None:
    """The attachment listing (GC, start-up reconciliation, DEL of a whole pod) and reads of
    the very path: finish, list the valid attachment, report each unusable file naming it;
    a read of a special file is a CacheError naming it, never a hang or a huge buffer."""
    record("special files: cache results dir", runs=1, audited=AUDITED, suite=SUITE)
    cache_dir = fresh_dir(root)
    cache = ResultCache(str(cache_dir))
    cache.write(cache_record("good"))
    bad = []
    for i, kind in enumerate(entries):
        container = f"bad{i}"
        path = Path(cache.path("net1", container, "eth0"))
        make_special(path, kind, MAX_CACHE_FILE_SIZE, sockets)
        bad.append((container, kind, str(path)))
    try:
        unusable: list[tuple[str, str]] = []
        atts = bounded(lambda: cache.attachments(unusable=unusable))
        assert [a.container_id for a in atts] == ["good"]
        reported = {p for p, _ in unusable}
        for container, kind, path in bad:
            if kind in ("truncated", "mode000"):  # regular files: unreadable JSON is "not cniCacheV1"
                continue
            assert path in reported, (kind, path, unusable)
            try:
                got = bounded(lambda: cache.read("net1", container, "eth0"))
            except OSError as exc:
                pytest.fail(f"{type(exc).__name__} escaped for {kind}: {exc}")
            except Exception as exc:  # noqa: BLE001
                assert path in str(exc) and type(exc).__name__ == "CacheError", (kind, exc)
            else:
                assert got is None, (kind, got)
        assert cache.read("net1", "good", "eth0") is not None
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


# ---- state dir -------------------------------------------------------------------------------

def sandbox(sid: str) -> SandboxRecord:
    return SandboxRecord(id=sid, metadata=SandboxMetadata(name="p", uid="u", namespace="ns"), state="READY",
                         created_at=1)


@props(ci=40, full=600)
@given(entries=st.lists(st.sampled_from(KINDS), min_size=1, max_size=5))
def test_state_dir_with_special_files(root: Path, sockets: list[socket.socket], entries: list[str]) -> None:
    """SandboxStore.load (server start-up) with special `*.json` entries beside a valid
    record: finishes, loads the valid one, reports each bad file naming it."""
    record("special files: state dir", runs=1, audited=AUDITED, suite=SUITE)
    state_dir = fresh_dir(root)
    SandboxStore(str(state_dir)).put(sandbox("a" * 64))
    bad = []
    for i, kind in enumerate(entries):
        path = state_dir / "sandboxes" / f"s{i}.json"  # short: a unix socket path has 108 bytes
        make_special(path, kind, MAX_RECORD_SIZE, sockets)
        bad.append(str(path))
    try:
        store = SandboxStore(str(state_dir))
        problems = bounded(store.load)
        assert [r.id for r in store.all()] == ["a" * 64]
        for path in bad:
            assert any(p.startswith(path) for p in problems), (path, problems)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


# ---- single files: the pod CIDR file and the config file ------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_pod_cidr_file_special(tmp_path: Path, sockets: list[socket.socket], kind: str,
                               caplog: pytest.LogCaptureFixture) -> None:
    """The runtime file holding the pod CIDR: no CIDR, a warning naming the file, no hang."""
    record("special files: pod CIDR and config file", runs=1, audited=AUDITED, suite=SUITE)
    path = tmp_path / "runtime.json"
    make_special(path, kind, MAX_RUNTIME_FILE_SIZE, sockets)
    with caplog.at_level(logging.WARNING, logger="cri_net.server"):
        assert bounded(lambda: read_pod_cidr(str(path))) is None
    assert any(getattr(r, "fields", {}).get("file") == str(path) for r in caplog.records), caplog.records
    path_ok = tmp_path / "ok.json"
    path_ok.write_text('{"pod_cidr": "10.1.0.0/16"}')
    assert read_pod_cidr(str(path_ok)) == "10.1.0.0/16"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ext", [".toml", ".json"])
def test_config_file_special(tmp_path: Path, sockets: list[socket.socket], kind: str, ext: str) -> None:
    """cri-net's own config file: a ConfigFileError naming the file, never a hang."""
    record("special files: pod CIDR and config file", runs=1, audited=AUDITED, suite=SUITE)
    path = tmp_path / f"config{ext}"
    make_special(path, kind, 1 << 20, sockets)
    with pytest.raises(config.ConfigFileError) as info:
        bounded(lambda: config.load_file(str(path)))
    assert str(path) in str(info.value)


# ---- directory walks that delete: temp files, stale netns entries ---------------------------

@pytest.mark.parametrize("kind", ["dir", "fifo", "loop", "devzero"])
def test_stale_temp_cleanup_survives_special_entries(tmp_path: Path, sockets: list[socket.socket],
                                                     kind: str) -> None:
    """A `.tmp-*` entry that is not a file (a directory used to raise IsADirectoryError out of
    the state dir's load, failing start-up): left alone, the valid record still loads."""
    record("special files: state dir", runs=1, audited=AUDITED, suite=SUITE)
    SandboxStore(str(tmp_path)).put(sandbox("a" * 64))
    make_special(tmp_path / "sandboxes" / f".tmp-{kind}", kind, MAX_RECORD_SIZE, sockets)
    store = SandboxStore(str(tmp_path))
    bounded(store.load)
    assert [r.id for r in store.all()] == ["a" * 64]
    if kind == "dir":
        assert (tmp_path / "sandboxes" / ".tmp-dir").is_dir()


def test_netns_remove_never_unmounts_through_a_symlink_nor_deletes_a_dir(tmp_path: Path) -> None:
    """netns.remove on a symlink removes the link only (umount2 with UMOUNT_NOFOLLOW; the
    target, here a directory, is untouched); on a directory it raises naming it."""
    from cri_net import netns

    record("special files: state dir", runs=1, audited=AUDITED, suite=SUITE)
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    netns.remove(str(link))
    assert not link.is_symlink() and target.is_dir()
    with pytest.raises(OSError) as info:
        netns.remove(str(target))
    assert str(target) in str(info.value) and target.is_dir()
