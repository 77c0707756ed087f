"""Bad-input suite (issue 6): generated environments and stdin for `cri-net-cni`.

A runtime talks to the plugin only through CNI_* variables and a JSON config on stdin, and
understands only one answer shape: exit 0 with a result (or nothing), or exit 1 with one CNI
error JSON `{cniVersion, code, msg[, details]}` whose code is a well-known one. Whatever the
input, that is all that may come out: no traceback, no second line, no "internal error"
wrapping a Python exception the validation should have caught.

Most cases run `cri_net.plugin.launcher.main()` in-process (fast); a seeded subset runs the real
entry point `cri-net-cni` (~0.3 s each), which is what containerd execs. cri-net's
inner networks are conflists in a tmp conf dir naming a shell plugin that answers ADD with a
result on CNI_IFNAME; an accepted ADD is deleted again, and the cache dir must end empty.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sysconfig
import sys
import types
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from badinput_strategies import WELL_KNOWN_CODES, json_values, nasty_text, props, raw_json_text
from cri_net.plugin import handler as cni_plugin, launcher
from test_badinput_annotations import MULTUS, annotation_maps, multus_entries, multus_entry_index
from tests.reliability import record

SUITE = "bad-input"
ROOT = Path(__file__).resolve().parents[2]
HOOK = Path(sysconfig.get_path("scripts")) / "cri-net-cni"  # the running interpreter's entry point
ANNOTATIONS = "io.kubernetes.cri.pod-annotations"
EXTRA = "network.alpha.kubernetes.io/network"
GOOD_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=pod1;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=u1"
AUDITED = "exit status, stdout is one CNI error JSON (well-known code, msg) or a result; cache dir empty after"

# ADD answers a 1.0.0 result on CNI_IFNAME; VERSION every version; anything else nothing.
QUICK_PLUGIN = """#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
ADD) printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s"}],"ips":[{"interface":0,"address":"10.9.0.2/24","gateway":"10.9.0.1"}]}' "$CNI_IFNAME" ;;
VERSION) printf '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}' ;;
esac
"""


class Hook:
    """A conf dir (`net` default with every capability, `extra`), a bin dir, a cache dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        plugin = self.bin / "quick"
        plugin.write_text(QUICK_PLUGIN)
        plugin.chmod(0o755)
        self.conf_dir = root / "conf"
        self.conf_dir.mkdir()
        caps = {"ipRanges": True, "dns": True, ANNOTATIONS: True, "portMappings": True, "bandwidth": True}
        for fname, name, c in (("10-net.conflist", "net", caps), ("20-extra.conflist", "extra", {ANNOTATIONS: True})):
            (self.conf_dir / fname).write_text(json.dumps(
                {"cniVersion": "1.0.0", "name": name, "plugins": [{"type": "quick", "capabilities": c}]}))
        self.cache_dir = root / "cache"
        self.netns = root / "netns-file"
        self.netns.touch()

    def conf(self) -> dict[str, Any]:
        return {"cniVersion": "1.0.0", "name": "cri-net", "type": "cri-net", "confDir": str(self.conf_dir),
                "cacheDir": str(self.cache_dir), "binDirs": [str(self.bin)], "timeout": 20,
                "daemonSocket": ""}  # in this process: a serve on the default socket must not get these

    def env(self, command: str | None, **cni: str) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_CONTAINERID": "sb1",
               "CNI_NETNS": str(self.netns), "CNI_IFNAME": "eth0", "CNI_ARGS": GOOD_ARGS, "CNI_PATH": str(self.bin)}
        if command is not None:
            env["CNI_COMMAND"] = command
        env.update(cni)
        return env

    def cache_files(self) -> list[str]:
        results = self.cache_dir / "results"
        return sorted(os.listdir(results)) if results.exists() else []

    def run_inproc(self, env: dict[str, str], stdin: bytes) -> tuple[int, str]:
        """`launcher.main()` with exactly `env` and `stdin`: (exit status, stdout)."""
        out = io.StringIO()
        fake_stdin = types.SimpleNamespace(buffer=io.BytesIO(stdin))
        with mock.patch.dict(os.environ, env, clear=True), mock.patch.object(sys, "stdin", fake_stdin), \
                contextlib.redirect_stdout(out):
            code = launcher.main()
        return code, out.getvalue()

    def run_exec(self, env: dict[str, str], stdin: bytes) -> tuple[int, str]:
        """The real executable, as containerd runs it; stderr must hold no traceback either."""
        proc = subprocess.run([str(HOOK)], input=stdin, env={k: os.fsencode(v) for k, v in env.items()},
                              capture_output=True, timeout=60)
        assert b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")
        return proc.returncode, proc.stdout.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def hook(tmp_path_factory: pytest.TempPathFactory) -> Hook:
    return Hook(tmp_path_factory.mktemp("badinput-hook"))


def check_output(code: int, stdout: str, command: str | None) -> dict[str, Any] | None:
    """The only two shapes a runtime understands; returns the parsed document (None: empty)."""
    assert "Traceback" not in stdout, stdout
    assert code in (0, 1), (code, stdout)
    if code == 0:
        if stdout.strip() == "":
            assert command in ("DEL", "CHECK", "STATUS", "GC"), f"{command} succeeded with no output"
            return None
        doc = json.loads(stdout)
        assert isinstance(doc, dict) and "code" not in doc, doc
        if command == "ADD":
            assert isinstance(doc.get("cniVersion"), str), doc
        if command == "VERSION":
            assert doc["supportedVersions"] == list(cni_plugin.SUPPORTED_VERSIONS), doc
        return doc
    lines = stdout.splitlines()
    assert len(lines) == 1, f"error output is not one line: {stdout!r}"
    err = json.loads(lines[0])
    assert isinstance(err, dict) and set(err) <= {"cniVersion", "code", "msg", "details"}, err
    assert isinstance(err.get("cniVersion"), str), err
    assert type(err["code"]) is int and err["code"] in WELL_KNOWN_CODES, err
    assert isinstance(err["msg"], str) and err["msg"].strip(), err
    assert "internal error" not in err["msg"], f"bad input surfaced as an unhandled exception: {err}"
    if err["code"] == cni_plugin.INVALID_CONFIG and "details" in err:
        assert err["details"].startswith("key: ") and len(err["details"]) > 5, err
    return err


def cleanup_add(hook: Hook, env: dict[str, str], stdin: bytes, code: int) -> None:
    """An accepted ADD is deleted again (same env/stdin); the cache dir must then be empty."""
    if env.get("CNI_COMMAND") == "ADD" and code == 0:
        del_code, out = hook.run_inproc({**env, "CNI_COMMAND": "DEL"}, stdin)
        assert check_output(del_code, out, "DEL") is None and del_code == 0, out
    assert hook.cache_files() == [], f"left in the cache dir: {hook.cache_files()}"


# ---- generators ------------------------------------------------------------------------------

commands = st.sampled_from(["ADD"] * 6 + ["DEL", "DEL", "CHECK", "STATUS", "GC", "VERSION", "add", "", "ADD\n",
                                         "FROB"])
env_text = nasty_text.map(lambda s: s.replace("\0", ""))  # an environment cannot carry NUL
cni_args_text = st.one_of(
    st.lists(st.sampled_from(["K8S_POD_NAME=", "K8S_POD_NAMESPACE=", "K8S_POD_UID=", "IgnoreUnknown=1",
                              "K8S_POD_INFRA_CONTAINER_ID=", ";", "=", "p", ";;", "\udcff", " ", "\n"]) | env_text,
             max_size=10).map("".join),
    st.just(GOOD_ARGS),
)
rc_keys = st.sampled_from(["portMappings", "PortMappings", "bandwidth", "Bandwidth", "ipRanges", "IPRanges", "dns",
                           "DNS", ANNOTATIONS, "aliases", "mac"])
mapping = st.fixed_dictionaries({}, optional={
    "hostPort": st.integers(-1, 70000) | json_values, "containerPort": st.integers(-1, 70000) | json_values,
    "protocol": st.sampled_from(["tcp", "UDP", "sctp", "icmp", ""]) | json_values,
    "hostIP": st.sampled_from(["", "127.0.0.1", "::1", "x"]) | json_values}) | json_values
annotation_values = st.one_of(
    nasty_text, raw_json_text,
    st.just(json.dumps([{"name": "extra", "interface": "net1"}])),
    st.lists(st.fixed_dictionaries({"name": st.sampled_from(["extra", "net", "nope", "../x"]),
                                    "interface": st.sampled_from(["net1", "eth0", "a/b", "x" * 16, ""])}),
             max_size=2).map(json.dumps),
)
annotations = st.dictionaries(
    st.sampled_from([EXTRA, "kubernetes.io/ingress-bandwidth", "kubernetes.io/egress-bandwidth",
                     "cri-net.io/port-mappings", "cri-net.io/ip-ranges", "extension.network.kubernetes.io/cni",
                     "extension.network.kubernetes.io/cniargs/x", "free"]) | nasty_text,
    annotation_values | json_values, max_size=3)
runtime_config = (
    st.fixed_dictionaries({}, optional={"portMappings": st.lists(mapping, max_size=3) | json_values,
                                        "bandwidth": st.dictionaries(st.sampled_from(
                                            ["ingressRate", "IngressBurst", "egressRate", "x"]),
                                            st.integers(-1, 2**70) | json_values, max_size=3) | json_values,
                                        "ipRanges": json_values | st.just([[{"subnet": "10.9.0.0/24"}]]),
                                        "dns": json_values | st.just({"servers": ["10.0.0.53"]}),
                                        ANNOTATIONS: annotations | json_values})
    | st.dictionaries(rc_keys, json_values, max_size=3)
)


@st.composite
def stdin_docs(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    """The hook's own config with generated runtimeConfig and top-level mutations, or garbage."""
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return draw(raw_json_text).encode("utf-8", "surrogatepass")
    doc = dict(base)
    if draw(st.integers(0, 7)):
        doc["cniVersion"] = draw(st.sampled_from(["1.0.0", "1.0.0", "0.4.0", "0.3.1", "1.1.0", "0.3.0"]))
    else:
        doc["cniVersion"] = draw(st.sampled_from(["0.2.0", "", "9.9.9", "1.0"]) | json_values)
    doc["runtimeConfig"] = draw(runtime_config if draw(st.integers(0, 3)) else json_values)
    for key, value in draw(st.dictionaries(st.sampled_from(
            ["timeout", "defaultNetwork", "cni.dev/valid-attachments", "prevResult", "name", "capabilities"]),
            json_values, max_size=2)).items():
        doc[key] = value
    if draw(st.booleans()):
        doc["defaultNetwork"] = draw(st.sampled_from(["net", "extra", "nope", "../net", ""]))
    return json.dumps(doc).encode()


# ---- property tests ------------------------------------------------------------------------


@props(ci=120, full=1500)
@given(data=st.data())
def test_inproc_generated_stdin_and_env_answer_cni_json(hook: Hook, data: st.DataObject) -> None:
    """main() on generated stdin (config + runtimeConfig + annotations) and CNI_* variables."""
    command = data.draw(commands)
    stdin = data.draw(stdin_docs(hook.conf()))
    env = hook.env(command or None)
    for var in data.draw(st.sets(st.sampled_from(["CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS", "CNI_ARGS"]),
                                 max_size=2)):
        env[var] = data.draw(cni_args_text if var == "CNI_ARGS" else env_text)
    record("cri-net-cni: generated stdin and environment (in-process)", runs=1, audited=AUDITED, suite=SUITE)
    code, out = hook.run_inproc(env, stdin)
    check_output(code, out, command)
    cleanup_add(hook, env, stdin, code)


@props(ci=80, full=1000)
@given(args=cni_args_text, command=st.sampled_from(["ADD", "DEL", "CHECK"]))
def test_inproc_generated_cni_args(hook: Hook, args: str, command: str) -> None:
    """CNI_ARGS strings: a pair without '=' is code 4 naming it; values that cannot go on to
    the inner plugins are code 7 naming the CRI field; otherwise the pod is attached."""
    record("cri-net-cni: generated CNI_ARGS (in-process)", runs=1, audited=AUDITED, suite=SUITE)
    env = hook.env(command, CNI_ARGS=args)
    stdin = json.dumps(hook.conf()).encode()
    code, out = hook.run_inproc(env, stdin)
    doc = check_output(code, out, command)
    if code == 1:
        assert doc is not None and doc["code"] in (cni_plugin.INVALID_ENV, cni_plugin.INVALID_CONFIG,
                                                   cni_plugin.UNKNOWN_CONTAINER), doc
        if doc["code"] == cni_plugin.INVALID_ENV:
            assert "CNI_ARGS" in doc["msg"], doc
    elif command == "ADD":
        assert doc is not None and doc["interfaces"][0]["name"] == "eth0", doc
    cleanup_add(hook, env, stdin, code)


@props(ci=10, full=120)
@given(data=st.data())
def test_real_executable_generated_stdin_and_env(hook: Hook, data: st.DataObject) -> None:
    """The same generated cases through the `cri-net-cni` entry point (interpreter start, real
    stdin/stdout/environment bytes, exit status); environment values may hold bytes that are
    not UTF-8 (os.fsencode of surrogate escapes), which only a real exec can carry."""
    command = data.draw(commands)
    stdin = data.draw(stdin_docs(hook.conf()))
    env = hook.env(command or None)
    env["CNI_ARGS"] = data.draw(cni_args_text)
    env["CNI_IFNAME"] = data.draw(st.sampled_from(["eth0", "eth0", "net1"]) | env_text)
    record("cri-net-cni: generated stdin and environment (real executable)", runs=1, audited=AUDITED, suite=SUITE)
    code, out = hook.run_exec(env, stdin)
    check_output(code, out, command)
    cleanup_add(hook, env, stdin, code)


@pytest.mark.parametrize("stdin", [b"[" * 100_000, b'{"a":' * 5000 + b"1" + b"}" * 5000,
                                   json.dumps({"runtimeConfig": {"dns": {"servers": [[[[[]]]]]}}}).encode()],
                         ids=["unclosed", "deep-object", "nested-dns"])
def test_real_executable_pathological_stdin(hook: Hook, stdin: bytes) -> None:
    """Pathological JSON through the real executable: still one error line, never a crash."""
    record("cri-net-cni: generated stdin and environment (real executable)", runs=1, audited=AUDITED, suite=SUITE)
    code, out = hook.run_exec(hook.env("ADD"), stdin)
    err = check_output(code, out, "ADD")
    assert code == 1 and err is not None and err["code"] in (cni_plugin.DECODING_FAILURE, cni_plugin.INVALID_CONFIG,
                                                             cni_plugin.INCOMPATIBLE_VERSION), err



@props(ci=80, full=1000)
@given(pod_annotations=annotation_maps(), mappings=st.lists(mapping, max_size=2),
       version=st.sampled_from(["1.0.0", "0.4.0", "0.3.1", "1.1.0"]))
def test_inproc_generated_pod_annotations(hook: Hook, pod_annotations: dict[str, str], mappings: list[Any],
                                          version: str) -> None:
    """A well-formed ADD whose pod annotations (containerd's pod-annotations capability) and
    port mappings are generated: attached (default interface first, then the extra planes),
    or code 7 whose details name the annotation key or runtimeConfig field at fault."""
    record("cri-net-cni: generated pod annotations and port mappings (in-process)", runs=1, audited=AUDITED,
           suite=SUITE)
    conf = {**hook.conf(), "cniVersion": version,
            "runtimeConfig": {ANNOTATIONS: pod_annotations, "portMappings": mappings}}
    env, stdin = hook.env("ADD"), json.dumps(conf).encode()
    code, out = hook.run_inproc(env, stdin)
    doc = check_output(code, out, "ADD")
    assert doc is not None
    if code == 0:
        names = [i["name"] for i in doc.get("interfaces", [])]
        if names:
            assert names[0] == "eth0", doc
    else:
        assert doc["code"] == cni_plugin.INVALID_CONFIG, doc
        key = doc.get("details", "").removeprefix("key: ")
        if key.startswith(MULTUS + "[") and MULTUS in pod_annotations:  # entry (and field) of it
            assert multus_entry_index(key) < multus_entries(pod_annotations[MULTUS]), doc
        else:
            assert key in pod_annotations or key.startswith(("port_mappings[", "runtimeConfig.")), doc
        assert doc["msg"].startswith(key), doc
    cleanup_add(hook, env, stdin, code)
