"""Byte-level injection into what the CNI launchers read of their stdin (issue 11, finding 1).

containerd's stdin for the `cri-net` plugin carries the pod's annotations (runtimeConfig
`io.kubernetes.cri.pod-annotations`), written by the pod's author. The launchers must honour
`daemonSocket` only as a top-level key of the plugin config: a nested one, one inside a
string, or a document the plugin's own parser would not read the same way must never choose
where the call goes.

The reference is Python's `json` module with the plugin's parser rules. Generated stdin
(containerd-shaped configs, then bytes inserted, replaced, dropped, keys spelled with escapes,
duplicated, truncated) goes through `cni_wire.socket_from_conf` (the Python launcher) and
through the C launcher's scanner (plugin/shim.c built with -DSCAN_TEST); the C scanner may answer
"unusual" (then the Python launcher decides) but must never answer differently.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from badinput_strategies import nasty_text, props
from cri_net.plugin import wire as cni_wire
from cri_net.plugin.launcher import install
from cri_net.server.cni_endpoint import CNIEndpoint
from test_cni_handoff import _Mute, hook
from test_cni_handoff import endpoint, node  # noqa: F401 - fixtures
from test_cni_plugin import Node
from tests.reliability import record

SHIM = Path(cni_wire.__file__).with_name("shim.c")
SUITE = "bad input"
AUDITED = "answer equals json's reading of the top-level key; no connection to a nested or injected socket"
EVIL = "/tmp/evil/cni.sock"


class _Pairs(list):  # type: ignore[type-arg]
    """An object's pairs, duplicates kept (json's object_pairs_hook)."""


def _reject(name: str) -> Any:
    raise ValueError(name)


def _finite(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(text)
    return value


def reference(stdin: bytes) -> str | None:
    """Where the plugin config itself says to hand the call, read with `json` (the spec)."""
    try:
        doc = json.loads(stdin or b"{}", object_pairs_hook=_Pairs, parse_constant=_reject, parse_float=_finite)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, _Pairs):
        return None
    values = [v for k, v in doc if k == "daemonSocket"]
    if not values:
        return cni_wire.DEFAULT_SOCKET
    value = values[0]
    if len(values) > 1 or not isinstance(value, str) or not value or "\0" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


@pytest.fixture(scope="module")
def c_scanner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C launcher's scanner as a program: stdin in, `<result> <value>` out."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "no C compiler: the native launcher's scanner cannot be checked"
    exe = tmp_path_factory.mktemp("scan") / "scan"
    subprocess.run([compiler, "-O2", "-DSCAN_TEST", '-DFALLBACK="/nonexistent"', "-o", str(exe), str(SHIM)],
                   check=True, capture_output=True)
    return exe


def c_scan(exe: Path, stdin: bytes) -> tuple[int, str]:
    out = subprocess.run([str(exe)], input=stdin, capture_output=True, timeout=10, check=True).stdout.decode()
    result, _, value = out.partition(" ")
    return int(result), value


def assert_agree(exe: Path, stdin: bytes) -> int:
    """Python launcher == reference; the C scanner agrees or defers. Returns C's result."""
    want = reference(stdin)
    assert cni_wire.socket_from_conf(stdin) == want, stdin
    result, value = c_scan(exe, stdin)
    if result == 0:
        assert want == cni_wire.DEFAULT_SOCKET, (stdin, result, value, want)
    elif result == 1:
        assert (want is None) if value == "" else (want == value), (stdin, result, value, want)
    else:
        assert result == -1, (stdin, result)
    return result


# ---- generated stdin ------------------------------------------------------------------------

KEY_SPELLINGS = ['"daemonSocket"', '"daemon\\u0053ocket"', '"\\u0064aemonSocket"', '"daemonsocket"',
                 '"daemonSocket "', '"daemonSocket\\u0000"', '"daemon\\/Socket"']
FRAGMENTS = [f'"daemonSocket": "{EVIL}"', f', "daemonSocket": "{EVIL}"', f'{{"daemonSocket": "{EVIL}"}}',
             f'\\"daemonSocket\\": \\"{EVIL}\\"', '"', "\\", "{", "}", "[", "]", ",", ":", " ", "\n", "\0",
             "1e999", "NaN", "-0", "0.5", "1E2", "true", "null", "\\u0022", "\\ud800"]
BYTE_FRAGMENTS = [f.encode() for f in FRAGMENTS] + [b"\xff", b"\xc3\xa9", b"\xed\xa0\x80", b"\xef\xbb\xbf",
                                                    b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\x7f"]

annotation_text = st.sampled_from(["daemonSocket", "cniVersion", EVIL, f'"daemonSocket": "{EVIL}"',
                                   '\\"daemonSocket\\"', "}", '"}', "é"]) | nasty_text


@st.composite
def containerd_stdin(draw: st.DrawFn, plain_socket: bool = False) -> bytes:
    """A plugin config as containerd sends it: the operator's keys, then runtimeConfig with the
    pod's annotations; key order, spacing and escaping vary. `plain_socket`: the operator's
    daemonSocket (if any) is a short printable-ASCII path."""
    items: list[tuple[str, Any]] = [("cniVersion", draw(st.sampled_from(["0.4.0", "1.0.0", "1.1.0"]))),
                                    ("name", "cri-net"), ("type", "cri-net")]
    if draw(st.booleans()):
        plain = st.sampled_from(["/run/x/cni.sock", "", "/tmp/a b.sock", "rel.sock"])
        odd = st.sampled_from(["/é.sock", "/" + "x" * 120, '/a"b', "/a\\b"]) | nasty_text
        items.append(("daemonSocket", draw(plain if plain_socket else plain | odd)))
    annotations = draw(st.dictionaries(annotation_text, annotation_text, max_size=4))
    runtime = {"io.kubernetes.cri.pod-annotations": annotations,
               "portMappings": [{"hostPort": draw(st.integers(0, 65535)), "containerPort": 80, "protocol": "tcp"}]}
    if draw(st.booleans()):
        runtime["daemonSocket"] = EVIL
    items.append(("runtimeConfig", runtime))
    if draw(st.booleans()):
        items.append(("prevResult", {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.5/24"}], "x": [[], {}]}))
    items = draw(st.permutations(items))
    indent = draw(st.sampled_from([None, 1, "\t"]))
    text = json.dumps(dict(items), ensure_ascii=draw(st.booleans()), indent=indent)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def injected_stdin(draw: st.DrawFn) -> bytes:
    """containerd-shaped stdin with bytes injected, replaced or dropped, or the top-level key
    spelled another way; sometimes left alone, so valid documents stay common."""
    data = draw(containerd_stdin())
    choice = draw(st.integers(0, 4))
    if choice == 1:  # another spelling of the key, at the top level, maybe a second time
        key = draw(st.sampled_from(KEY_SPELLINGS)).encode()
        data = b"{" + key + f': "{EVIL}", '.encode() + data.lstrip()[1:]
    for _ in range(draw(st.integers(0, 3)) if choice >= 2 else 0):
        at = draw(st.integers(0, len(data)))
        piece = draw(st.sampled_from(BYTE_FRAGMENTS) | st.binary(min_size=1, max_size=3))
        how = draw(st.sampled_from(["insert", "replace", "drop", "cut"]))
        if how == "insert":
            data = data[:at] + piece + data[at:]
        elif how == "replace":
            data = data[:at] + piece + data[at + len(piece):]
        elif how == "drop":
            data = data[:at] + data[at + draw(st.integers(1, 4)):]
        else:
            data = data[:at]
    if choice == 4 and draw(st.booleans()):  # json.loads also reads UTF-16/32 and a BOM
        data = data.decode("utf-8", "replace").encode(draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32",
                                                                                  "utf-8-sig"])), "surrogatepass")
    return data


@props(ci=400, full=4000)
@given(injected_stdin())
def test_launchers_read_only_the_top_level_key(c_scanner: Path, stdin: bytes) -> None:
    assert_agree(c_scanner, stdin)
    record("launchers: byte-level injection into the stdin they scan", audited=AUDITED, suite=SUITE)


@props(ci=100, full=1000)
@given(containerd_stdin(plain_socket=True).filter(lambda b: b.isascii()))
def test_c_launcher_decides_plain_containerd_stdin_itself(c_scanner: Path, stdin: bytes) -> None:
    """The fast path stays fast: what containerd writes (ASCII, no exponents) is decided by the
    C scanner without starting Python."""
    assert assert_agree(c_scanner, stdin) in (0, 1), stdin


@pytest.mark.parametrize("stdin", [
    b"", b" ", b"{}", b"[]", b'"x"', b"{} ", b"\n{\n}\n", b'{"a":{}}', b'{"a":[]}', b'{"a": -0.5}', b'{"a": 01}',
    b'{"a": 1.}', b'{"a": .5}', b'{"a": -}', b'{"a": tru}', b'{"a": "\\x"}', b'{"a": "\\u12"}', b'{"a": "\t"}',
    b'{"a": 1,}', b'{"a" 1}', b'{,"a": 1}', b'{"daemonSocket": "/a"}', b'{"daemonSocket": "/a",}',
    b'{"daemonSocket": "/a\xc3\xa9"}', b'{"daemonSocket": "\\u0000"}', b'{"daemonSocket": "\\ud800"}',
    b'{"daemonSocket": 1}', b'{"daemonSocket": ["/a"]}', b'{"daemonSocket": "' + b"x" * 200 + b'"}',
    b'{"a": ' + b"9" * 301 + b"}", b'{"a": ' + b"9" * 5000 + b"}", b'{"a": 1e400}', b'{"a": -Infinity}',
    b'{"a": ' + b"[" * 70 + b"]" * 70 + b"}", b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'\xef\xbb\xbf{"daemonSocket": "/bom"}', '{"daemonSocket": "/u16"}'.encode("utf-16"),
])
def test_edge_documents(c_scanner: Path, stdin: bytes) -> None:
    assert_agree(c_scanner, stdin)


# ---- the real launchers, end to end ---------------------------------------------------------


def _attacks(evil: str) -> list[dict[str, Any]]:
    """runtimeConfig values a pod's author controls, each naming `evil`."""
    return [
        {"io.kubernetes.cri.pod-annotations": {"daemonSocket": evil}},
        {"io.kubernetes.cri.pod-annotations": {"x": f'"daemonSocket": "{evil}"'}},
        {"io.kubernetes.cri.pod-annotations": {"daemonSocket": evil, "daemon\u0053ocket": evil}},
        {"daemonSocket": evil, "io.kubernetes.cri.pod-annotations": {"a": "}", "b": '"}, "daemonSocket": "'}},
    ]


@pytest.mark.parametrize("kind", ["native", "python"])
def test_pod_annotations_never_redirect_the_call(node: Node, endpoint: CNIEndpoint, tmp_path: Path,
                                                 kind: str) -> None:
    """The plugin config says where the server is; annotations naming another socket are data."""
    exe = Path(install(str(tmp_path / "bin"), native=kind == "native"))
    evil = str(tmp_path / "evil.sock")
    mute = _Mute(evil)
    try:
        for n, rc in enumerate(_attacks(evil)):
            conf = node.conf(rc=rc, daemonSocket=endpoint.path)
            add = hook(node, "ADD", conf, exe=exe, container=f"a{n}")
            assert add.code == 0 and add.json["ips"][0]["address"] == "10.0.0.5/24", add
            assert hook(node, "DEL", conf, exe=exe, container=f"a{n}").code == 0
        assert mute.requests == [], "a pod annotation redirected the CNI call"
        assert len(endpoint.adaptors._adaptors) == 1, "the calls did not reach the configured server"
        assert node.cache_files() == []
    finally:
        mute.close()
    record("launchers: pod annotations naming another daemonSocket (real launchers)", runs=8, audited=AUDITED,
           suite=SUITE)

