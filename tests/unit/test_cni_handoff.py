"""cri-net-cni handing its calls to a running `cri-net serve` (the CNI socket), and the launcher.

The endpoint runs in this process (`CNIEndpoint` on a tmp socket); the plugin runs for real as
a subprocess (the console script, or the `-S` launcher that `cri-net cni-plugin install`
writes) and its inner networks are fake plugins (tests/fakeplugin), exec'd for real. A call
that was handed over shows up in the endpoint's adaptor pool and runs the inner plugins with
the endpoint process as their parent.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cri_net.plugin import handler as cni_plugin, launcher, wire as cni_wire
from cri_net.plugin.launcher import install
from cri_net.server.cni_endpoint import CNIEndpoint
from test_cni_plugin import ARGS, HOOK, ROOT, Node, Run, result100


@pytest.fixture
def node(tmp_path: Path, fakecni: Any) -> Node:
    n = Node(tmp_path, fakecni)
    n.standard()
    n.fake.script("main", "ADD", result=result100("eth0", "10.0.0.5/24", "10.0.0.1", str(n.live)))
    return n


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[CNIEndpoint]:
    ep = CNIEndpoint(str(tmp_path / "run" / "cni.sock"))
    ep.start()
    yield ep
    ep.stop()


def hook(node: Node, command: str, conf: dict[str, Any], exe: Path = HOOK, container: str = "sb1") -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update(CNI_COMMAND=command, CNI_CONTAINERID=container, CNI_NETNS=str(node.live), CNI_IFNAME="eth0",
               CNI_ARGS=ARGS, CNI_PATH=str(node.fake.bin))
    proc = subprocess.run([str(exe)], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=60)
    return Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def test_add_check_del_are_handed_to_the_server(node: Node, endpoint: CNIEndpoint) -> None:
    conf = node.conf(daemonSocket=endpoint.path)
    add = hook(node, "ADD", conf)
    assert add.code == 0, add
    assert add.json["ips"] == [{"interface": 0, "address": "10.0.0.5/24", "gateway": "10.0.0.1"}]
    assert len(endpoint.adaptors._adaptors) == 1, "the call did not reach the endpoint"
    assert node.cache_files() == ["net-sb1-eth0"]
    assert hook(node, "CHECK", conf).code == 0
    dele = hook(node, "DEL", conf)
    assert dele.code == 0 and dele.stdout == "", dele
    assert node.cache_files() == []
    assert [c for c in node.plugin_calls() if c[0] == "main"] == [("main", "ADD"), ("main", "CHECK"), ("main", "DEL")]


def test_handoff_answers_exactly_what_in_process_work_answers(node: Node, endpoint: CNIEndpoint) -> None:
    for version in ("0.3.1", "1.0.0", "1.1.0"):
        handed = hook(node, "ADD", node.conf(version, daemonSocket=endpoint.path), container=f"h{version}")
        local = hook(node, "ADD", node.conf(version, daemonSocket=""), container=f"l{version}")
        assert handed.code == local.code == 0, (handed, local)
        assert handed.json == local.json
    # errors too: a bad runtimeConfig is reported with the same code and words
    bad = {"portMappings": "lots"}
    handed = hook(node, "ADD", node.conf(rc=bad, daemonSocket=endpoint.path)).error(cni_plugin.INVALID_CONFIG)
    local = hook(node, "ADD", node.conf(rc=bad, daemonSocket="")).error(cni_plugin.INVALID_CONFIG)
    assert handed == local


def test_no_server_means_in_process_work(node: Node, tmp_path: Path) -> None:
    conf = node.conf(daemonSocket=str(tmp_path / "nobody" / "cni.sock"))
    add = hook(node, "ADD", conf)
    assert add.code == 0, add
    assert node.cache_files() == ["net-sb1-eth0"]
    assert hook(node, "DEL", conf).code == 0
    assert node.cache_files() == []


def test_conf_dir_changes_reach_a_kept_adaptor(node: Node, endpoint: CNIEndpoint) -> None:
    conf = node.conf(daemonSocket=endpoint.path)
    assert hook(node, "ADD", conf, container="c1").code == 0
    # a new first file becomes the default network; the kept adaptor must see it at once
    node.write("05-first.conflist", json.dumps({"cniVersion": "1.0.0", "name": "first", "plugins": [{"type": "xb"}]}))
    node.fake.script("xb", "ADD", result=result100("eth0", "10.9.0.5/24", "10.9.0.1", str(node.live)))
    add = hook(node, "ADD", conf, container="c2")
    assert add.code == 0, add
    assert add.json["ips"][0]["address"] == "10.9.0.5/24"
    assert len(endpoint.adaptors._adaptors) == 1
    assert hook(node, "DEL", conf, container="c1").code == 0
    assert hook(node, "DEL", conf, container="c2").code == 0
    assert node.cache_files() == []


class _Mute:
    """A socket that accepts calls and hangs up without answering (a server that died mid-call)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.requests.append(cni_wire.read_all(conn))

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def test_server_dying_mid_call(node: Node, tmp_path: Path) -> None:
    mute = _Mute(str(tmp_path / "mute.sock"))
    try:
        conf = node.conf(daemonSocket=str(tmp_path / "mute.sock"))
        # ADD may have been half done by the server: never repeat it here; "try again later"
        err = hook(node, "ADD", conf).error(cni_plugin.TRY_AGAIN_LATER)
        assert "no answer from cri-net serve" in err["msg"]
        assert node.fake.calls() == [] and node.cache_files() == []
        # the request carried the CNI environment and stdin
        env, stdin = cni_wire.decode_request(mute.requests[0])
        assert env["CNI_COMMAND"] == "ADD" and env["CNI_CONTAINERID"] == "sb1" and json.loads(stdin) == conf
        # DEL is idempotent: it runs here instead, so the runtime's clean-up always works
        node.add(node.conf(daemonSocket=""))
        assert hook(node, "DEL", conf).code == 0
        assert node.cache_files() == []
        assert len(mute.requests) == 2
    finally:
        mute.close()


def test_bad_requests_get_no_answer_and_the_endpoint_keeps_serving(node: Node, endpoint: CNIEndpoint) -> None:
    for junk in (b"", b"no magic", b"CRINET9\nCNI_COMMAND=ADD\0\0{}", b"CRINET1\nCNI_COMMAND=ADD\0{}",
                 b"CRINET1\nCNI_COMMAND\0\0{}", b"CRINET1\nPATH=/bin\0\0{}"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(endpoint.path)
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            assert cni_wire.read_all(s) == b"", junk
    assert hook(node, "ADD", node.conf(daemonSocket=endpoint.path)).code == 0
    assert hook(node, "DEL", node.conf(daemonSocket=endpoint.path)).code == 0


def test_calls_for_one_container_never_overlap(node: Node, endpoint: CNIEndpoint) -> None:
    node.fake.script("main", "*", sleep=0.3)
    node.fake.script("main", "ADD", sleep=0.3, result=result100("eth0", "10.0.0.5/24", "10.0.0.1", str(node.live)))
    conf = node.conf(daemonSocket=endpoint.path)
    runs: list[Run] = []
    threads = [threading.Thread(target=lambda c=c: runs.append(hook(node, c, conf))) for c in ("ADD", "DEL")]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join()
    assert all(r.code == 0 for r in runs), runs
    events = [r for r in node.fake.records() if r["name"] == "main"]
    starts = {r["pid"]: r["t"] for r in events if r["event"] == "start"}
    spans = sorted((starts[r["pid"]], r["t"]) for r in events if r["event"] == "end")
    assert len(spans) == 2 and spans[0][1] <= spans[1][0], f"calls overlapped: {spans}"


def test_socket_is_0660_and_removed_on_stop(tmp_path: Path) -> None:
    ep = CNIEndpoint(str(tmp_path / "s" / "cni.sock"))
    ep.start()
    assert oct(os.stat(ep.path).st_mode & 0o777) == "0o660"
    ep.stop()
    assert not os.path.exists(ep.path)
    ep.stop()  # idempotent


# ---- the launcher ---------------------------------------------------------------------------


def test_launcher_runs_without_site_and_works_both_ways(node: Node, endpoint: CNIEndpoint, tmp_path: Path) -> None:
    launcher = Path(install(str(tmp_path / "bin"), native=False))
    assert os.access(launcher, os.X_OK)
    first = launcher.read_text().splitlines()[0]
    assert first.startswith("#!") and first.endswith(" -S"), first
    version = hook(node, "VERSION", node.conf(), exe=launcher)
    assert version.code == 0 and "1.1.0" in version.json["supportedVersions"], version
    # handed over: only the standard library is loaded in the plugin process
    assert hook(node, "ADD", node.conf(daemonSocket=endpoint.path), exe=launcher).code == 0
    # no server: the launcher loads site-packages itself and does the work
    local = hook(node, "ADD", node.conf(daemonSocket=""), exe=launcher, container="sb2")
    assert local.code == 0, local
    assert node.cache_files() == ["net-sb1-eth0", "net-sb2-eth0"]
    for container in ("sb1", "sb2"):
        assert hook(node, "DEL", node.conf(daemonSocket=""), exe=launcher, container=container).code == 0
    assert node.cache_files() == []


def test_handed_over_call_loads_no_json_and_no_network_stack(node: Node, endpoint: CNIEndpoint) -> None:
    """The point of the handoff: the plugin process loads only the C socket module on top of a
    bare interpreter; without a server it loads the network stack and does the work."""
    probe = (f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom cri_net.plugin import launcher as cni_launcher\n"
             "import atexit, os\nloaded = lambda: ','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('json', 'socket', 'typing', 'pathlib', 'pydantic', 'grpc', 'adaptors', 'site') "
             "or m.startswith('cri_net.network')))\n"
             "real_exit = os._exit\nos._exit = lambda rc: (sys.stderr.write('LOADED=' + loaded()), "
             "sys.stderr.flush(), real_exit(rc))\ncni_launcher.run_plugin()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update(CNI_COMMAND="ADD", CNI_CONTAINERID="sb1", CNI_NETNS=str(node.live), CNI_IFNAME="eth0",
               CNI_ARGS=ARGS, CNI_PATH=str(node.fake.bin))
    python = Path(HOOK).parent / "python"
    for sock in (endpoint.path, ""):
        conf = node.conf(daemonSocket=sock)
        proc = subprocess.run([str(python), "-S", "-c", probe], input=json.dumps(conf).encode(), env=env,
                              capture_output=True, timeout=60)
        assert proc.returncode == 0, proc
        assert json.loads(proc.stdout)["ips"][0]["address"] == "10.0.0.5/24"
        loaded = proc.stderr.decode().rsplit("LOADED=", 1)[1].split(",")
        if sock:
            assert loaded == [""], loaded
        else:
            assert {"json", "pydantic", "adaptors", "site"} <= set(loaded), loaded
        assert hook(node, "DEL", conf).code == 0


@pytest.mark.parametrize("conf, want", [
    (b'{"cniVersion": "1.0.0", "type": "cri-net"}', cni_wire.DEFAULT_SOCKET),
    (b'{"daemonSocket": "/run/x/cni.sock", "type": "cri-net"}', "/run/x/cni.sock"),
    (b'{"daemonSocket" :\n "/run/x/cni.sock"}', "/run/x/cni.sock"),
    (b'{"daemonSocket": ""}', None),                     # off
    (b'{"daemonSocket": null}', None),                   # not a string: the real parser reports it
    (b'{"daemonSocket": "/run/\\u0078.sock"}', "/run/x.sock"),  # escapes: decoded as JSON does
    (b'{"daemonSocket": "/a", "runtimeConfig": {"daemonSocket": "/b"}}', "/a"),  # only the top level
    (b'{"runtimeConfig": {"io.kubernetes.cri.pod-annotations": {"daemonSocket": "/evil"}}}',
     cni_wire.DEFAULT_SOCKET),  # a pod annotation is never the plugin's key
    (b'{"daemon\\u0053ocket": "/a"}', "/a"),  # an escaped key is still the key
    (b'{"daemonSocket": "/a", "daemonSocket": "/b"}', None),  # twice: trust neither
    (b'{"daemonSocket": "/a"} {"daemonSocket": "/b"}', None),  # not one JSON document
    (b'{"daemonSocket": "/a", "x": NaN}', None),  # the plugin's parser refuses NaN
    # inside a string the quotes are escaped: not the key, so the default
    (b'{"annotations": {"k": "\\"daemonSocket\\": \\"/evil\\""}}', cni_wire.DEFAULT_SOCKET),
    (b'{"daemonSocket": "/run/unterminated', None),
])
def test_socket_is_the_configs_own_top_level_key(conf: bytes, want: str | None) -> None:
    assert cni_wire.socket_from_conf(conf) == want


def test_request_round_trip_keeps_only_the_cni_environment() -> None:
    env = {"CNI_COMMAND": "ADD", "CNI_ARGS": "A=1;B=x=y", "CNI_NETNS": "/run/netns/\u00e9", "PATH": "/bin",
           "HOME": "/root"}
    got_env, got_stdin = cni_wire.decode_request(cni_wire.encode_request(env, b'{"a": "\x00"}'))
    assert got_env == {k: v for k, v in env.items() if k.startswith("CNI_")}
    assert got_stdin == b'{"a": "\x00"}'
    assert cni_wire.decode_reply(cni_wire.encode_reply(7, b"out\nmore")) == (7, b"out\nmore")
    with pytest.raises(ValueError):
        cni_wire.decode_reply(b"x\n")


# ---- the native launcher (compiled plugin/shim.c) ---------------------------------------------


@pytest.fixture
def native(tmp_path: Path) -> Path:
    path = Path(install(str(tmp_path / "nbin")))
    assert path.read_bytes()[:4] == b"\x7fELF", "no C compiler found: the native launcher was not built"
    assert (tmp_path / "nbin" / ".cri-net-py").read_text().splitlines()[0].endswith(" -S")
    return path


def test_native_launcher_hands_over_and_falls_back(node: Node, endpoint: CNIEndpoint, native: Path,
                                                   tmp_path: Path) -> None:
    conf = node.conf(daemonSocket=endpoint.path)
    add = hook(node, "ADD", conf, exe=native)
    assert add.code == 0 and add.json["ips"][0]["address"] == "10.0.0.5/24", add
    assert len(endpoint.adaptors._adaptors) == 1
    assert hook(node, "CHECK", conf, exe=native).code == 0
    assert hook(node, "DEL", conf, exe=native).code == 0 and node.cache_files() == []
    # errors come back verbatim, exit status included
    err = hook(node, "ADD", node.conf(rc={"portMappings": "lots"}, daemonSocket=endpoint.path), exe=native)
    assert err.error(cni_plugin.INVALID_CONFIG)
    # no server, handoff off, or a command the server does not take: Python does the work
    for sock in (str(tmp_path / "nobody.sock"), ""):
        local = hook(node, "ADD", node.conf(daemonSocket=sock), exe=native, container="sb2")
        assert local.code == 0 and local.json == add.json, local
        assert hook(node, "DEL", node.conf(daemonSocket=sock), exe=native, container="sb2").code == 0
    version = hook(node, "VERSION", node.conf(), exe=native)
    assert version.code == 0 and "1.1.0" in version.json["supportedVersions"]
    assert node.cache_files() == []


_VERSION_STDIN = st.one_of(
    st.builds(lambda v, extra, first: json.dumps({**({"cniVersion": v} if first else {}), **extra,
                                                   **({} if first else {"cniVersion": v})}).encode(),
              st.one_of(st.sampled_from(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0", "", "9.9.9",
                                         "1.0.0 ", "1.0", "\u00e9", "1.0.0\u0000"]),
                        st.text(max_size=8), st.integers(), st.none(), st.lists(st.integers(), max_size=2)),
              st.dictionaries(st.sampled_from(["name", "type", "daemonSocket", "runtimeConfig", "x"]),
                              st.one_of(st.text(max_size=6), st.integers(), st.dictionaries(
                                  st.just("cniVersion"), st.just("0.4.0"))), max_size=3),
              st.booleans()),
    st.sampled_from([b"", b" ", b"{}", b"[]", b"null", b"{", b'{"cniVersion": "0.4.0", "cniVersion": "1.0.0"}',
                     b'{"cniVersion": "0.4.0"} x', b'\xef\xbb\xbf{"cniVersion": "0.4.0"}', b'{"cniV\\u0065rsion": "0.4.0"}',
                     b'{"cniVersion": "0.4.0", "n": 1e400}', b'{"cniVersion": "1.0.0", "v": NaN}']),
    st.binary(max_size=24),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stdin=_VERSION_STDIN)
def test_native_version_answer_is_the_python_plugins_byte_for_byte(native: Path, stdin: bytes) -> None:
    """The shim answers VERSION itself (no Python start: a runtime asks it of every plugin it
    loads); for any stdin its answer, exit status included, is exactly the Python plugin's,
    and a config it cannot read with certainty goes to Python."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update(CNI_COMMAND="VERSION")
    proc = subprocess.run([str(native)], input=stdin, env=env, capture_output=True, timeout=60)
    rc, text = cni_plugin.run({"CNI_COMMAND": "VERSION"}, stdin)
    assert (proc.returncode, proc.stdout.decode("utf-8", "replace")) == (rc, text), stdin


def test_native_version_runs_no_python_for_a_plain_config(native: Path, tmp_path: Path) -> None:
    marker = tmp_path / "python-ran"
    fallback = native.with_name(".cri-net-py")
    real = fallback.read_text()
    fallback.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update(CNI_COMMAND="VERSION", CRI_NET_CALLER="1")  # VERSION is answered even to cri-net itself
    try:
        for stdin in (b'{"cniVersion": "0.4.0", "name": "cri-net", "type": "cri-net"}', b""):
            proc = subprocess.run([str(native)], input=stdin, env=env, capture_output=True, timeout=60)
            assert proc.returncode == 0 and json.loads(proc.stdout)["supportedVersions"][-1] == "1.1.0"
            assert not marker.exists(), "VERSION started the Python launcher"
        subprocess.run([str(native)], input=b'{"cniVersion": 1}', env=env, capture_output=True, timeout=60)
        assert marker.exists(), "an unusual config must be left to Python"
    finally:
        fallback.write_text(real)


def test_native_launcher_never_repeats_an_unanswered_add(node: Node, native: Path, tmp_path: Path) -> None:
    mute = _Mute(str(tmp_path / "mute.sock"))
    try:
        conf = node.conf("0.4.0", daemonSocket=str(tmp_path / "mute.sock"))
        err = hook(node, "ADD", conf, exe=native).error(cni_plugin.TRY_AGAIN_LATER)
        assert err["cniVersion"] == "0.4.0" and "no answer from cri-net serve" in err["msg"]
        assert node.fake.calls() == []
        env, stdin = cni_wire.decode_request(mute.requests[0])
        assert env["CNI_COMMAND"] == "ADD" and json.loads(stdin) == conf and "PATH" not in env
        node.add(node.conf(daemonSocket=""))
        assert hook(node, "DEL", conf, exe=native).code == 0  # DEL runs in Python instead
        assert node.cache_files() == []
    finally:
        mute.close()


@pytest.mark.parametrize("template", [
    b'{"cniVersion": "1.0.0", "daemonSocket": "%s", "type": "cri-net"}',
    b'{"daemonSocket" :\n "%s"}',
    b'{"daemonSocket": ""}',
    b'{"daemonSocket": null}',
    b'{"daemonSocket": "/run/\\u0078%s"}',
    b'{"daemonSocket": "%s", "runtimeConfig": {"daemonSocket": "/b"}}',
    b'{"annotations": {"k": "\\"daemonSocket\\": \\"%s\\""}}',
])
def test_native_and_python_read_daemon_socket_alike(node: Node, native: Path, tmp_path: Path,
                                                    template: bytes) -> None:
    """The shim and cni_wire.socket_from_conf must agree on when and where to connect."""
    sock = str(tmp_path / "m.sock")
    stdin = template.replace(b"%s", sock.encode()) if b"%s" in template else template
    python_choice = cni_wire.socket_from_conf(stdin)
    mute = _Mute(sock)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        env.update(CNI_COMMAND="DEL", CNI_CONTAINERID="sb9", CNI_IFNAME="eth0", CNI_PATH=str(node.fake.bin))
        subprocess.run([str(native)], input=stdin, env=env, capture_output=True, timeout=60)
    finally:
        mute.close()
    assert bool(mute.requests) == (python_choice == sock), (stdin, python_choice, mute.requests)


# ---- the static launcher of the node image (no Python on the node) --------------------------


@pytest.fixture
def pythonless(tmp_path: Path) -> Path:
    """The shim as the image builds it (static), with a fallback that does not exist and a
    1 s wait for a server."""
    out = tmp_path / "static-shim"
    proc = subprocess.run(["gcc", "-static", "-O2", "-Wall", "-s", "-DSERVER_WAIT=1",
                           f'-DFALLBACK="{tmp_path}/no-python/.cri-net-py"', "-o", str(out),
                           str(ROOT / "cri_net" / "plugin" / "shim.c")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


def test_pythonless_launcher_waits_for_a_server_then_answers_try_again_later(node: Node, pythonless: Path,
                                                                            tmp_path: Path) -> None:
    sock = str(tmp_path / "late" / "cni.sock")
    conf = node.conf("0.4.0", daemonSocket=sock)
    for command in ("ADD", "DEL", "CHECK"):
        t0 = time.monotonic()
        err = hook(node, command, conf, exe=pythonless).error(cni_plugin.TRY_AGAIN_LATER)
        took = time.monotonic() - t0
        assert 0.9 < took < 5, f"{command}: answered after {took:.1f}s, not after the 1 s wait"
        assert err["cniVersion"] == "0.4.0" and sock in err["msg"] and "no in-process fallback" in err["msg"], err
    # VERSION is never handed over: the shim answers it itself, at once
    t0 = time.monotonic()
    version = hook(node, "VERSION", conf, exe=pythonless)
    assert time.monotonic() - t0 < 0.9
    assert version.code == 0 and version.json["cniVersion"] == "0.4.0", version
    # a config only Python could read: no Python, so "try again later" at once
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update(CNI_COMMAND="VERSION")
    proc = subprocess.run([str(pythonless)], input=b'{"cniVersion": 1}', env=env, capture_output=True, timeout=60)
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == cni_plugin.TRY_AGAIN_LATER
    assert node.fake.calls() == [] and node.cache_files() == []


def test_pythonless_launcher_takes_a_server_that_comes_up_while_it_waits(node: Node, pythonless: Path,
                                                                        tmp_path: Path) -> None:
    (tmp_path / "late").mkdir()
    ep = CNIEndpoint(str(tmp_path / "late" / "cni.sock"))
    starter = threading.Timer(0.4, ep.start)
    starter.start()
    try:
        add = hook(node, "ADD", node.conf(daemonSocket=ep.path), exe=pythonless)
        assert add.code == 0 and add.json["ips"][0]["address"] == "10.0.0.5/24", add
        assert hook(node, "DEL", node.conf(daemonSocket=ep.path), exe=pythonless).code == 0
        assert node.cache_files() == []
    finally:
        starter.join()
        ep.stop()


@pytest.mark.parametrize("exe", ["python", "native"])
def test_a_config_over_the_input_limit_is_refused_with_a_reason_not_try_again_later(
        node: Node, endpoint: CNIEndpoint, tmp_path: Path, exe: str) -> None:
    """The server would refuse the request unread; the launcher (either one) says why, with
    CNI code 7, instead of the 'try again later' of an unanswered ADD that would never work."""
    launcher = Path(install(str(tmp_path / exe), native=exe == "native"))
    conf = node.conf(daemonSocket=endpoint.path, padding="x" * (cni_wire.MAX_INPUT + 1))
    for command in ("ADD", "DEL"):
        run = hook(node, command, conf, exe=launcher)
        err = run.error(7)
        assert "at most" in err["msg"] and str(cni_wire.MAX_INPUT) in err["msg"], run
    assert node.cache_files() == []


@pytest.mark.parametrize("var", ["CNI_IFNAME", "CNI_CONTAINERID", "CNI_ARGS"])
def test_an_environment_value_that_is_not_utf8_is_named_handed_over_or_not(
        node: Node, endpoint: CNIEndpoint, tmp_path: Path, var: str) -> None:
    """Code 4 naming the variable, never an internal error (it was 999 through the server)."""
    for conf in (node.conf(daemonSocket=endpoint.path), node.conf(daemonSocket="")):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        env.update(CNI_COMMAND="ADD", CNI_CONTAINERID="sb1", CNI_NETNS=str(node.live), CNI_IFNAME="eth0",
                   CNI_ARGS=ARGS, CNI_PATH=str(node.fake.bin))
        env[var] = env[var] + "\udcff"  # one byte that is not UTF-8, as a runtime could pass it
        proc = subprocess.run([str(HOOK)], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=60)
        run = Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
        err = run.error(cni_plugin.INVALID_ENV)
        assert var in err["msg"] and "UTF-8" in err["msg"], err
    assert node.cache_files() == []


# A server alone in its own process, so its peak memory is its own: the endpoint, then
# "ready"; at a line on stdin it prints how much its peak RSS (VmHWM) grew since it listened.
# glibc's mmap threshold is pinned so that a freed 15 MiB buffer goes back to the system at
# once: the peak then counts the requests held at one time, not how the heap was reused.
_LONE_ENDPOINT = textwrap.dedent("""
    import sys
    from cri_net.server.cni_endpoint import CNIEndpoint

    def hwm():
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))

    ep = CNIEndpoint(sys.argv[1])
    ep.start()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = hwm()
    print("ready", flush=True)
    sys.stdin.readline()
    print((hwm() - base) // 1024, flush=True)
    ep.stop()
""")


def test_many_large_requests_at_once_are_read_a_few_at_a_time(tmp_path: Path) -> None:
    """32 callers sending 15 MiB each at once: only cni_endpoint.LARGE_AT_ONCE are read and run
    together, so the server's peak memory stays near a few requests' worth whatever the number
    of callers (2 at once: +111 to +119 MiB here; before, 32 callers took it up by 466 MiB,
    and 64 to 2 GiB). Every caller still gets its answer."""
    from concurrent.futures import ThreadPoolExecutor
    import socket as socket_mod

    path = str(tmp_path / "cni.sock")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MALLOC_MMAP_THRESHOLD_=str(1 << 20))
    server = subprocess.Popen([sys.executable, "-c", _LONE_ENDPOINT, path], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    payload = b'{"cniVersion": "1.0.0", "padding": "' + b"x" * (15 << 20)  # not closed: fails fast, once read
    header = cni_wire.MAGIC + b"CNI_COMMAND=ADD\0CNI_CONTAINERID=big\0CNI_NETNS=/x\0CNI_IFNAME=eth0\0\0"

    def call() -> bytes:
        with socket_mod.socket(socket_mod.AF_UNIX) as s:
            s.connect(path)
            s.sendall(header)
            s.sendall(payload)
            s.shutdown(socket_mod.SHUT_WR)
            return cni_wire.read_all(s, timeout=120)

    try:
        assert server.stdout is not None and server.stdin is not None
        assert server.stdout.readline() == "ready\n", server.stderr.read() if server.stderr else ""
        with ThreadPoolExecutor(32) as pool:
            replies = list(pool.map(lambda _: call(), range(32)))
        server.stdin.write("done\n")
        server.stdin.flush()
        peak_mib = int(server.stdout.readline())
    finally:
        server.kill()
        server.wait()
    assert all(cni_wire.decode_reply(r)[0] == 1 for r in replies)  # each answered: cannot decode
    assert peak_mib < 300, f"the server's peak memory grew by {peak_mib} MiB for 32 large requests"
