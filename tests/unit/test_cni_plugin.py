"""`cri-net-cni`, the CNI plugin a runtime (containerd) calls to hand a pod to cri-net.

The plugin under test runs for real as a subprocess (the `cri-net-cni` entry point) with the CNI
environment and the runtime-side config on stdin; cri-net's own (inner) networks are conflists
in a tmp confDir naming fake plugins (tests/fakeplugin), whose runs are recorded. The
property-based tests call `cri_net.plugin.launcher.main()` in-process (fast) with a patched
environment, stdin and stdout.

Covered: identity from CNI_ARGS/CNI_CONTAINERID, capability args from runtimeConfig (spec and
containerd-1.6 capitalised spellings) forwarded to the plugins that declare them, inner
CNI_ARGS, extra planes from the pod annotation, no loopback, one combined result per requested
cniVersion, DEL from the cache (idempotent, netns gone), CHECK, STATUS, GC, VERSION, error JSON
and codes, rollback of a failed ADD. The tests under "bugs" fail today (see their docstrings).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from cri_net.plugin import handler as cni_plugin, launcher
from cri_net.libcni import CacheRecord

ROOT = Path(__file__).resolve().parents[2]
HOOK = Path(sysconfig.get_path("scripts")) / "cri-net-cni"  # the running interpreter's entry point
EXTRA = "network.alpha.kubernetes.io/network"
ANNOTATIONS = "io.kubernetes.cri.pod-annotations"
ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=pod1;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-1"
INNER_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=pod1;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-1"
VERSIONS = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]
EXTRAS = json.dumps([{"name": "extra-a", "interface": "net1"}, {"name": "extra-b", "interface": "net2"}])


def conflist(name: str, *plugins: str | dict[str, Any], version: str = "1.0.0", **top: Any) -> str:
    return json.dumps({"cniVersion": version, "name": name, **top,
                       "plugins": [{"type": p} if isinstance(p, str) else p for p in plugins]})


def result100(ifname: str, address: str, gateway: str, netns: str = "/whatever", mac: str = "",
              routes: list[dict[str, Any]] | None = None, dns: dict[str, Any] | None = None) -> dict[str, Any]:
    iface: dict[str, Any] = {"name": ifname, "sandbox": netns}
    if mac:
        iface["mac"] = mac
    return {"cniVersion": "1.0.0", "interfaces": [iface],
            "ips": [{"interface": 0, "address": address, "gateway": gateway}],
            "routes": routes or [], "dns": dns or {}}


def plugin_error(msg: str, code: int = 11) -> str:
    return json.dumps({"cniVersion": "1.0.0", "code": code, "msg": msg})


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    def error(self, code: int | None) -> dict[str, Any]:
        """Assert a CNI error JSON with `code` (None: any integer) and exit status 1; return it."""
        assert self.code == 1, (self.code, self.stdout, self.stderr)
        err = self.json
        assert isinstance(err["code"], int), err
        assert code is None or err["code"] == code, err
        assert isinstance(err["msg"], str) and err["msg"]
        assert "cniVersion" in err
        assert set(err) <= {"cniVersion", "code", "msg", "details"}
        assert "Traceback" not in self.stderr
        return err


class Node:
    """A cri-net confDir/cacheDir, fake inner plugins, netns paths, and the hook to run."""

    def __init__(self, tmp: Path, fake: Any) -> None:
        self.tmp, self.fake = tmp, fake
        self.conf_dir = tmp / "cri-net.d"
        self.conf_dir.mkdir()
        self.cache_dir = tmp / "cache"
        self.results = self.cache_dir / "results"
        self.gone = str(tmp / "netns" / "gone")  # never created: the netns is gone
        self.live = tmp / "netns" / "live"
        self.live.parent.mkdir()
        self.live.symlink_to("/proc/self/ns/net")  # a live netns (nsfs) without root
        fake.install("loopback", "main", "pm", "bw", "xa", "xb", "foreign")

    def write(self, filename: str, text: str) -> Path:
        path = self.conf_dir / filename
        path.write_text(text, encoding="utf-8")
        return path

    def standard(self, marker: str = "orig", rich: bool = False) -> None:
        """`net` (default): main (ipRanges, dns, pod annotations), with `rich` followed by pm
        (portMappings) and bw (bandwidth); `extra-a`: xa (portMappings, pod annotations);
        `extra-b`: xb."""
        chain: list[dict[str, Any]] = [{"type": "main", "marker": marker,
                                        "capabilities": {"ipRanges": True, "dns": True, ANNOTATIONS: True}}]
        if rich:
            chain += [{"type": "pm", "capabilities": {"portMappings": True}},
                      {"type": "bw", "capabilities": {"bandwidth": True}}]
        self.write("10-net.conflist", conflist("net", *chain))
        self.write("20-extra-a.conflist", conflist(
            "extra-a", {"type": "xa", "marker": marker, "capabilities": {"portMappings": True, ANNOTATIONS: True}}))
        self.write("30-extra-b.conflist", conflist("extra-b", {"type": "xb", "marker": marker}))

    def scripted_results(self, netns: str) -> None:
        self.fake.script("main", "ADD", result=result100(
            "eth0", "10.0.0.5/24", "10.0.0.1", netns, mac="aa:bb:cc:dd:ee:01",
            routes=[{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}],
            dns={"nameservers": ["10.0.0.53"], "search": ["svc.local"]}))
        self.fake.script("xa", "ADD", result=result100(
            "net1", "10.1.0.5/24", "10.1.0.1", netns, routes=[{"dst": "10.1.0.0/16"}],
            dns={"nameservers": ["10.1.0.53"]}))
        self.fake.script("xb", "ADD", result=result100("net2", "fd00::5/64", "fd00::1", netns))

    def conf(self, version: str = "1.0.0", rc: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        # no handoff: a cri-net serve listening on the default socket must not get these calls
        doc: dict[str, Any] = {"cniVersion": version, "name": "cri-net", "type": "cri-net",
                               "confDir": str(self.conf_dir), "cacheDir": str(self.cache_dir),
                               "binDirs": [str(self.fake.bin)], "timeout": 20, "daemonSocket": ""}
        if rc is not None:
            doc["runtimeConfig"] = rc
        doc.update(extra)
        return doc

    def run(self, command: str | None, conf: dict[str, Any] | None = None, *, stdin: bytes | None = None,
            container: str = "sb1", netns: str | None = None, ifname: str = "eth0", args: str = ARGS,
            inproc: bool = False) -> Run:
        """Run the hook: a real subprocess, or (`inproc`, for setup steps and variants of a
        case already run as a subprocess) `launcher.main()` in this process."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        env.update(CNI_CONTAINERID=container, CNI_NETNS=self.gone if netns is None else netns,
                   CNI_IFNAME=ifname, CNI_ARGS=args, CNI_PATH=str(self.fake.bin))
        if command is not None:
            env["CNI_COMMAND"] = command
        data = stdin if stdin is not None else json.dumps(conf if conf is not None else self.conf()).encode()
        if inproc:
            code, out = run_main(env, data)
            return Run(code, out, "")
        proc = subprocess.run([str(HOOK)], input=data, env=env, capture_output=True, timeout=60)
        return Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    def add(self, conf: dict[str, Any] | None = None, **kw: Any) -> Run:
        """An ADD as a setup step (in-process), asserted to succeed."""
        run = self.run("ADD", conf, inproc=True, **kw)
        assert run.code == 0, run
        return run

    def cache_files(self) -> list[str]:
        return sorted(os.listdir(self.results)) if self.results.exists() else []

    def plugin_calls(self, command: str | None = None) -> list[tuple[str, str]]:
        return [(r["name"], r["env"]["CNI_COMMAND"]) for r in self.fake.calls(command=command)]


def run_main(environ: dict[str, str], stdin: bytes) -> tuple[int, str]:
    """`launcher.main()` in-process with exactly `environ` and `stdin`; (exit status, stdout)."""
    out = io.StringIO()
    fake_stdin = types.SimpleNamespace(buffer=io.BytesIO(stdin))
    with mock.patch.dict(os.environ, environ, clear=True), mock.patch.object(sys, "stdin", fake_stdin), \
            contextlib.redirect_stdout(out):
        code = launcher.main()
    return code, out.getvalue()


@pytest.fixture
def node(tmp_path: Path, fakecni: Any) -> Node:
    return Node(tmp_path, fakecni)


def extra_rc(value: str = EXTRAS, **more: str) -> dict[str, Any]:
    return {ANNOTATIONS: {EXTRA: value, **more}}


# ---- ADD ------------------------------------------------------------------------------------


def test_add_identity_from_cni_args_and_container_id_no_loopback(node: Node) -> None:
    node.standard(rich=True)
    # the runtime's pairs in another order, with a stale infra id: CNI_CONTAINERID is the sandbox
    runtime_args = ("K8S_POD_UID=uid-1;IgnoreUnknown=1;K8S_POD_NAME=pod1;K8S_POD_NAMESPACE=ns1;"
                    "K8S_POD_INFRA_CONTAINER_ID=stale")
    run = node.run("ADD", node.conf(parallelAttach=False, rc=extra_rc()), args=runtime_args, netns=str(node.live))
    assert run.code == 0, run
    assert ("loopback", "ADD") not in node.plugin_calls()
    calls = node.fake.calls(command="ADD")
    # extra planes in annotation order, then the default network
    assert [c["name"] for c in calls] == ["xa", "xb", "main", "pm", "bw"]
    for c in calls:
        env = c["env"]
        assert env["CNI_ARGS"] == INNER_ARGS
        assert env["CNI_CONTAINERID"] == "sb1"
        assert env["CNI_NETNS"] == str(node.live)
        assert env["CNI_PATH"] == str(node.fake.bin)
    ifnames = {c["name"]: c["env"]["CNI_IFNAME"] for c in calls}
    assert ifnames == {"xa": "net1", "xb": "net2", "main": "eth0", "pm": "eth0", "bw": "eth0"}
    assert node.cache_files() == ["extra-a-sb1-net1", "extra-b-sb1-net2", "net-sb1-eth0"]
    cached = json.loads((node.results / "net-sb1-eth0").read_text())
    assert cached["cniArgs"] == [p.split("=", 1) for p in INNER_ARGS.split(";")]


def test_add_uses_cni_ifname_for_default_interface(node: Node) -> None:
    node.standard()
    run = node.run("ADD", node.conf(), ifname="ens5", container="sbX", inproc=True)
    assert run.code == 0, run
    res = run.json
    assert [i["name"] for i in res["interfaces"]] == ["ens5"]
    assert {c["env"]["CNI_IFNAME"] for c in node.fake.calls(command="ADD")} == {"ens5"}
    assert node.cache_files() == ["net-sbX-ens5"]


@pytest.mark.parametrize("version", VERSIONS)
def test_add_combined_result_in_requested_version(node: Node, version: str) -> None:
    node.standard()
    node.scripted_results(node.gone)
    run = node.run("ADD", node.conf(version, rc=extra_rc()), inproc=version != "1.0.0")
    assert run.code == 0, run
    res = run.json
    assert res["cniVersion"] == version
    ifaces = res["interfaces"]
    assert [i["name"] for i in ifaces] == ["eth0", "net1", "net2"]
    assert ifaces[0]["mac"] == "aa:bb:cc:dd:ee:01"
    assert all(i.get("sandbox") == node.gone for i in ifaces)
    ips = [(ip["interface"], ip["address"], ip.get("gateway")) for ip in res["ips"]]
    assert ips == [(0, "10.0.0.5/24", "10.0.0.1"), (1, "10.1.0.5/24", "10.1.0.1"), (2, "fd00::5/64", "fd00::1")]
    if version in ("0.3.1", "0.4.0"):
        assert [ip["version"] for ip in res["ips"]] == ["4", "4", "6"]
    else:
        assert all("version" not in ip for ip in res["ips"])
    # routes and DNS from the default plane only
    assert res["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]
    assert res["dns"] == {"nameservers": ["10.0.0.53"], "search": ["svc.local"]}


def test_add_without_extra_planes_uses_derived_inner_result(node: Node) -> None:
    node.write("10-net.conflist", conflist("net", "main", version="0.3.1"))
    run = node.run("ADD", node.conf("1.1.0"), inproc=True)
    assert run.code == 0, run
    res = run.json
    assert res["cniVersion"] == "1.1.0"
    assert res["interfaces"] == [{"name": "eth0", "sandbox": node.gone}]
    assert res["ips"] == [{"interface": 0, "address": "10.22.0.5/16", "gateway": "10.22.0.1"}]
    assert node.fake.calls("main", "ADD")[0]["config"]["cniVersion"] == "0.3.1"


PORTS_SPEC = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"},
              {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]
BW_SPEC = {"ingressRate": 1000000, "ingressBurst": 4294967295, "egressRate": 2000000, "egressBurst": 4294967295}
RANGES_SPEC = [[{"subnet": "10.5.0.0/16", "rangeStart": "10.5.0.10", "rangeEnd": "10.5.0.20", "gateway": "10.5.0.1"}]]
DNS_SPEC = {"servers": ["8.8.8.8"], "searches": ["example.com"], "options": ["ndots:5"]}


def _containerd16_rc() -> dict[str, Any]:
    """What containerd 1.6 (go-cni structs without JSON tags) sends."""
    return {
        "PortMappings": [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "TCP", "HostIP": "127.0.0.1"},
                         {"HostPort": 5353, "ContainerPort": 53, "Protocol": "udp", "HostIP": ""},
                         {"HostPort": 0, "ContainerPort": 9000, "Protocol": "tcp", "HostIP": ""}],
        "Bandwidth": {"IngressRate": 1000000, "IngressBurst": 4294967295,
                      "EgressRate": 2000000, "EgressBurst": 4294967295},
        "IPRanges": [[{"Subnet": "10.5.0.0/16", "RangeStart": "10.5.0.10", "RangeEnd": "10.5.0.20",
                       "Gateway": "10.5.0.1"}]],
        "DNS": {"Servers": ["8.8.8.8"], "Searches": ["example.com"], "Options": ["ndots:5"]},
    }


@pytest.mark.parametrize("spelling", ["spec", "containerd-1.6", "mixed"])
def test_add_capabilities_forwarded_in_spec_spelling(node: Node, spelling: str) -> None:
    node.standard(rich=True)
    pod_annotations = {"team": "blue", EXTRA: json.dumps([{"name": "extra-a", "interface": "net1"}])}
    if spelling == "spec":
        rc = {"portMappings": PORTS_SPEC, "bandwidth": BW_SPEC, "ipRanges": RANGES_SPEC, "dns": DNS_SPEC}
    elif spelling == "containerd-1.6":
        rc = _containerd16_rc()
    else:  # containerd 1.6 values under the spec's key names
        c = _containerd16_rc()
        rc = {"portMappings": c["PortMappings"], "bandwidth": c["Bandwidth"], "ipranges": c["IPRanges"],
              "Dns": c["DNS"]}
    rc[ANNOTATIONS] = pod_annotations
    run = node.run("ADD", node.conf(rc=rc), inproc=spelling != "containerd-1.6")
    assert run.code == 0, run
    stdin = {c["name"]: c["config"] for c in node.fake.calls(command="ADD")}
    assert stdin["pm"]["runtimeConfig"] == {"portMappings": PORTS_SPEC}
    assert stdin["bw"]["runtimeConfig"] == {"bandwidth": BW_SPEC}
    assert stdin["main"]["runtimeConfig"] == {"ipRanges": RANGES_SPEC, "dns": DNS_SPEC, ANNOTATIONS: pod_annotations}
    # extra planes: pod annotations only, never the port mappings (one host port, one plane)
    assert stdin["xa"]["runtimeConfig"] == {ANNOTATIONS: pod_annotations}
    cached = json.loads((node.results / "net-sb1-eth0").read_text())
    assert cached["capabilityArgs"]["portMappings"] == PORTS_SPEC


def test_add_plugins_without_capabilities_get_no_runtime_config(node: Node) -> None:
    node.write("10-net.conflist", conflist("net", "main", {"type": "pm", "capabilities": {"portMappings": False}}))
    run = node.run("ADD", node.conf(rc={"PortMappings": [{"HostPort": 1, "ContainerPort": 2}], "bandwidth": BW_SPEC}),
                   inproc=True)
    assert run.code == 0, run
    for c in node.fake.calls(command="ADD"):
        assert "runtimeConfig" not in c["config"], c["config"]


def test_add_annotation_driven_capabilities_reach_default_network(node: Node) -> None:
    """Bandwidth and port mappings from pod annotations are merged with the runtime's."""
    node.standard(rich=True)
    rc = {"portMappings": PORTS_SPEC[:1],
          ANNOTATIONS: {"kubernetes.io/ingress-bandwidth": "10M",
                        "cri-net.io/port-mappings": json.dumps([{"hostPort": 9999, "containerPort": 99}])}}
    run = node.run("ADD", node.conf(rc=rc), inproc=True)
    assert run.code == 0, run
    stdin = {c["name"]: c["config"] for c in node.fake.calls(command="ADD")}
    assert stdin["pm"]["runtimeConfig"]["portMappings"] == [
        PORTS_SPEC[0], {"hostPort": 9999, "containerPort": 99, "protocol": "tcp"}]
    assert stdin["bw"]["runtimeConfig"]["bandwidth"] == {"ingressRate": 10_000_000, "ingressBurst": 4294967295}


# ---- DEL ------------------------------------------------------------------------------------


def test_del_detaches_every_plane_with_cached_config_netns_gone(node: Node) -> None:
    node.standard(marker="orig", rich=True)
    node.add(node.conf(parallelAttach=False, rc=extra_rc()))
    node.standard(marker="edited", rich=True)  # the inner confs change after the pod started
    node.fake.clear_log()
    # the runtime's DEL need not repeat the annotations: the cache knows the planes
    run = node.run("DEL", node.conf(parallelAttach=False))
    assert run.code == 0, run
    assert run.stdout == ""
    calls = node.fake.calls(command="DEL")
    # default first (its chain reversed), then the extra planes in reverse attach order
    assert [c["name"] for c in calls] == ["bw", "pm", "main", "xb", "xa"]
    for c in calls:
        assert c["env"]["CNI_NETNS"] == ""  # the netns path does not exist any more
        assert c["env"]["CNI_CONTAINERID"] == "sb1"
        assert c["env"]["CNI_ARGS"] == INNER_ARGS
    by_name = {c["name"]: c["config"] for c in calls}
    assert by_name["main"]["marker"] == "orig"
    assert by_name["xa"]["marker"] == "orig"
    assert by_name["xb"]["marker"] == "orig"
    assert by_name["main"]["prevResult"]["ips"][0]["address"] == "10.22.0.5/16"
    assert node.cache_files() == []
    assert ("loopback", "DEL") not in node.plugin_calls()
    # idempotent
    node.fake.clear_log()
    again = node.run("DEL", node.conf(parallelAttach=False, rc=extra_rc()), inproc=True)
    assert again.code == 0, again
    assert again.stdout == ""
    assert node.cache_files() == []


def test_del_with_live_netns_passes_it_on(node: Node) -> None:
    node.standard()
    node.add(node.conf(rc=extra_rc()), netns=str(node.live))
    node.fake.clear_log()
    run = node.run("DEL", node.conf(rc=extra_rc()), netns=str(node.live))
    assert run.code == 0, run
    assert {c["env"]["CNI_NETNS"] for c in node.fake.calls(command="DEL")} == {str(node.live)}
    assert node.cache_files() == []


def test_del_with_empty_cni_netns_uses_cache(node: Node) -> None:
    node.standard()
    node.add(node.conf(rc=extra_rc()), netns=str(node.live))
    node.live.unlink()
    node.fake.clear_log()
    run = node.run("DEL", node.conf(), netns="", inproc=True)
    assert run.code == 0, run
    assert sorted(c["name"] for c in node.fake.calls(command="DEL")) == ["main", "xa", "xb"]
    assert {c["env"]["CNI_NETNS"] for c in node.fake.calls(command="DEL")} == {""}
    assert node.cache_files() == []


def test_del_of_unknown_sandbox_without_config_succeeds(node: Node) -> None:
    run = node.run("DEL", node.conf(), container="never", inproc=True)
    assert run.code == 0, run
    assert node.plugin_calls() == []


def test_del_only_touches_that_sandbox(node: Node) -> None:
    node.standard()
    node.add(node.conf(rc=extra_rc()), container="sbA")
    node.add(node.conf(rc=extra_rc()), container="sbB")
    node.fake.clear_log()
    assert node.run("DEL", node.conf(), container="sbA", inproc=True).code == 0
    assert {c["env"]["CNI_CONTAINERID"] for c in node.fake.calls()} == {"sbA"}
    assert node.cache_files() == ["extra-a-sbB-net1", "extra-b-sbB-net2", "net-sbB-eth0"]


def test_del_inner_failure_is_reported_and_others_still_detached(node: Node) -> None:
    node.standard()
    node.add(node.conf(rc=extra_rc()))
    node.fake.script("xa", "DEL", stdout=plugin_error("cannot release", 11), exit=1)
    run = node.run("DEL", node.conf())
    err = run.error(None)  # today 999 (DetachError); the inner plugin said 11
    assert "extra-a" in err["msg"] and "xa" in err["msg"] and "cannot release" in err["msg"]
    assert sorted(c["name"] for c in node.fake.calls(command="DEL")) == ["main", "xa", "xb"]
    assert node.cache_files() == ["extra-a-sb1-net1"]  # the failed plane stays for a retry
    node.fake.script("xa", "DEL")
    assert node.run("DEL", node.conf(), inproc=True).code == 0
    assert node.cache_files() == []


# ---- CHECK ----------------------------------------------------------------------------------


def test_check_runs_check_on_every_inner_plane(node: Node) -> None:
    node.standard()
    node.add(node.conf(rc=extra_rc()))
    node.fake.clear_log()
    run = node.run("CHECK", node.conf(rc=extra_rc()))
    assert run.code == 0, run
    assert run.stdout == ""
    calls = node.fake.calls(command="CHECK")
    assert sorted(c["name"] for c in calls) == ["main", "xa", "xb"]
    assert all("prevResult" in c["config"] for c in calls)
    assert all(c["env"]["CNI_ARGS"] == INNER_ARGS for c in calls)
    assert node.plugin_calls("ADD") == [] and node.plugin_calls("DEL") == []


def test_check_inner_failure_names_network_and_plugin(node: Node) -> None:
    node.standard()
    node.add(node.conf(rc=extra_rc()))
    node.fake.script("xb", "CHECK", stdout=plugin_error("address gone", 11), exit=1)
    err = node.run("CHECK", node.conf(rc=extra_rc()), inproc=True).error(11)
    assert "extra-b" in err["msg"] and "xb" in err["msg"] and "address gone" in err["msg"]


def test_check_without_attachment_fails(node: Node) -> None:
    node.standard()
    run = node.run("CHECK", node.conf(), container="never", inproc=True)
    err = run.error(3)
    assert "never" in err["msg"]
    assert node.plugin_calls() == []


# ---- STATUS / VERSION -----------------------------------------------------------------------


def test_status_ok_with_config(node: Node) -> None:
    node.standard()
    run = node.run("STATUS", node.conf("1.1.0"))
    assert (run.code, run.stdout) == (0, "")


@pytest.mark.parametrize("state", ["empty", "missing", "only-bad-files"])
def test_status_without_config_is_code_50(node: Node, state: str) -> None:
    conf = node.conf("1.1.0")
    if state == "missing":
        conf["confDir"] = str(node.tmp / "does-not-exist")
    elif state == "only-bad-files":
        node.write("10-bad.conflist", "{not json")
    err = node.run("STATUS", conf, inproc=state != "empty").error(50)
    assert err["cniVersion"] == "1.1.0"


def test_version_lists_supported_versions(node: Node) -> None:
    for stdin in (b"", b'{"cniVersion": "0.4.0"}', b'{"cniVersion": "1.1.0"}', b"{}"):
        run = node.run("VERSION", stdin=stdin, inproc=stdin != b"")
        assert run.code == 0, run
        out = run.json
        assert set(VERSIONS) <= set(out["supportedVersions"])
        assert out["cniVersion"] in out["supportedVersions"]
    assert node.run("VERSION", stdin=b'{"cniVersion": "0.4.0"}', inproc=True).json["cniVersion"] == "0.4.0"


# ---- GC -------------------------------------------------------------------------------------


def _write_foreign(node: Node, network: str, container: str, ifname: str, plugin_type: str) -> Path:
    record = CacheRecord(container_id=container, config=conflist(network, plugin_type).encode(), ifname=ifname,
                         network_name=network, netns=node.gone, cni_args=[("IgnoreUnknown", "1")],
                         result={"cniVersion": "1.0.0", "interfaces": [{"name": ifname}], "ips": []})
    node.results.mkdir(parents=True, exist_ok=True)
    path = node.results / f"{network}-{container}-{ifname}"
    path.write_text(record.to_json(), encoding="utf-8")
    return path


def test_gc_dels_stale_attachments_keeps_listed_and_foreign(node: Node) -> None:
    node.standard()
    node.add(node.conf(rc=extra_rc()), container="keep1")
    node.add(node.conf(rc=extra_rc()), container="stale1", netns=str(node.live))
    # what a runtime sharing the cache dir wrote: its own cri-net attachment, loopback, another network
    foreign = [_write_foreign(node, "cri-net", "stale1", "eth0", "cri-net"),
               _write_foreign(node, "cni-loopback", "stale1", "lo", "loopback"),
               _write_foreign(node, "other-net", "stale1", "eth0", "foreign"),
               _write_foreign(node, "other-net", "stale2", "eth0", "foreign")]
    before = {p: p.read_bytes() for p in foreign}
    node.fake.clear_log()
    valid = [{"containerID": "keep1", "ifname": "eth0"}]
    run = node.run("GC", node.conf("1.1.0", **{"cni.dev/valid-attachments": valid}), container="", args="")
    assert run.code == 0, run
    assert run.stdout == ""
    calls = node.fake.calls()
    assert {c["env"]["CNI_COMMAND"] for c in calls} == {"DEL"}
    assert {c["env"]["CNI_CONTAINERID"] for c in calls} == {"stale1"}
    assert sorted(c["name"] for c in calls) == ["main", "xa", "xb"]
    assert {c["env"]["CNI_NETNS"] for c in calls} == {str(node.live)}
    assert {c["env"]["CNI_ARGS"] for c in calls} == {INNER_ARGS.replace("sb1", "stale1")}
    for p, data in before.items():
        assert p.read_bytes() == data
    assert node.cache_files() == sorted(["extra-a-keep1-net1", "extra-b-keep1-net2", "net-keep1-eth0"]
                                        + [p.name for p in foreign])


# ---- a shared cache dir: the runtime's own entry for the hook is never cri-net's --------------


def test_del_check_and_results_leave_the_runtimes_entries_alone(node: Node) -> None:
    """containerd caches its own result for the hook network (type cri-net) under the same
    container id in the shared /var/lib/cni; DEL must not take it for one of cri-net's planes
    (running it would run the hook itself: the hang of issue 10)."""
    node.standard()
    node.add(node.conf(parallelAttach=False, rc=extra_rc()))
    foreign = [_write_foreign(node, "cri-net", "sb1", "eth0", "cri-net"),
               _write_foreign(node, "other-net", "sb1", "eth7", "foreign")]
    before = {p: p.read_bytes() for p in foreign}
    node.fake.clear_log()
    check = node.run("CHECK", node.conf(parallelAttach=False, rc=extra_rc()))
    assert check.code == 0, check
    assert sorted(node.plugin_calls("CHECK")) == [("main", "CHECK"), ("xa", "CHECK"), ("xb", "CHECK")]
    run = node.run("DEL", node.conf(parallelAttach=False))
    assert run.code == 0, run
    assert [c["name"] for c in node.fake.calls(command="DEL")] == ["main", "xb", "xa"]
    assert ("foreign", "DEL") not in node.plugin_calls()
    assert {p: p.read_bytes() for p in foreign} == before
    assert node.cache_files() == sorted(p.name for p in foreign)


def test_results_are_tagged_with_the_hooks_owner(node: Node) -> None:
    node.standard()
    node.add(node.conf(rc=extra_rc()))
    owners = {f: json.loads((node.results / f).read_text()).get("cri-net.io/owner") for f in node.cache_files()}
    assert owners == {"net-sb1-eth0": "cri-net/cni", "extra-a-sb1-net1": "cri-net/cni",
                      "extra-b-sb1-net2": "cri-net/cni"}


def test_networks_that_would_run_the_hook_are_refused_at_load(node: Node, tmp_path: Path) -> None:
    """A network of cri-net's naming the hook's type, the hook's network name, or any plugin
    that is a cri-net launcher is skipped (naming the file): cri-net must never call itself."""
    from adaptors.cri import CRIAdaptor
    from cri_net.plugin.launcher import install

    install(str(node.fake.bin), "innocent", native=False)  # a launcher under another name
    node.write("01-self.conflist", conflist("self", "main", "cri-net"))
    node.write("02-named.conflist", conflist("cri-net", "main"))
    node.write("03-disguised.conflist", conflist("disguised", "main", "innocent"))
    node.standard()
    inv = cni_plugin.Invocation({"CNI_COMMAND": "ADD"}, json.dumps(node.conf()).encode())
    adaptor = CRIAdaptor(inv.settings(), hook=inv.hook)
    assert adaptor.operator.networks.names == ["net", "extra-a", "extra-b"]
    reasons = {Path(s.path).name: s.reason for s in adaptor.operator.networks.skipped}
    assert "is the cri-net hook itself" in reasons["01-self.conflist"]
    assert "the runtime's name for the cri-net hook" in reasons["02-named.conflist"]
    assert "is a cri-net launcher" in reasons["03-disguised.conflist"]
    run = node.run("ADD", node.conf())  # the default is the first network left: net
    assert run.code == 0, run
    assert {n for n, _ in node.plugin_calls()} == {"main"}


@pytest.mark.parametrize("native", [False, True], ids=["python", "native"])
def test_a_launcher_run_by_cri_net_refuses_to_call_cri_net_again(tmp_path: Path, native: bool) -> None:
    """Belt and braces: plugins cri-net runs see CRI_NET_CALLER; a launcher reached anyway
    answers code 7 at once instead of handing the call back (or recursing in-process)."""
    from cri_net.plugin.launcher import install

    path = install(str(tmp_path / "bin"), native=native)
    env = {"PATH": os.environ["PATH"], "CRI_NET_CALLER": "1", "CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1",
           "CNI_NETNS": "", "CNI_IFNAME": "eth0", "CNI_ARGS": "", "CNI_PATH": str(tmp_path / "bin")}
    conf = {"cniVersion": "1.0.0", "name": "cri-net", "type": "cri-net", "confDir": str(tmp_path / "none")}
    proc = subprocess.run([path], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=30)
    assert proc.returncode == 1, proc
    err = json.loads(proc.stdout)
    assert err["code"] == 7 and "refusing to call cri-net again" in err["msg"], err
    version = subprocess.run([path], input=b'{"cniVersion":"1.0.0"}', env={**env, "CNI_COMMAND": "VERSION"},
                             capture_output=True, timeout=30)
    assert version.returncode == 0 and "supportedVersions" in json.loads(version.stdout)


def test_gc_without_valid_attachments_list_removes_nothing(node: Node) -> None:
    node.standard()
    node.add(node.conf(), container="c1")
    node.fake.clear_log()
    assert node.run("GC", node.conf("1.1.0"), container="", args="", inproc=True).code == 0
    assert node.plugin_calls() == []
    assert node.cache_files() == ["net-c1-eth0"]


def test_gc_with_gone_netns_sends_empty_netns(node: Node) -> None:
    node.standard()
    node.add(node.conf(), container="c1")
    node.fake.clear_log()
    run = node.run("GC", node.conf("1.1.0", **{"cni.dev/valid-attachments": []}), container="", args="",
                   inproc=True)
    assert run.code == 0, run
    assert {c["env"]["CNI_NETNS"] for c in node.fake.calls()} == {""}
    assert node.cache_files() == []


# ---- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value, needle", [
    ("not json", EXTRA),
    (json.dumps([{"name": "nope", "interface": "net1"}]), EXTRA),
    (json.dumps([{"name": "extra-a", "interface": "eth0"}]), EXTRA),
    (json.dumps([{"name": "net", "interface": "net1"}]), EXTRA),
])
def test_bad_extra_network_annotation_is_code_7_naming_key(node: Node, value: str, needle: str) -> None:
    node.standard()
    err = node.run("ADD", node.conf(rc=extra_rc(value)), inproc=value != "not json").error(7)
    assert needle in err["msg"] or needle in err.get("details", "")
    assert node.plugin_calls() == []
    assert node.cache_files() == []


@pytest.mark.parametrize("rc, key", [
    ({ANNOTATIONS: {"kubernetes.io/ingress-bandwidth": "lots"}}, "kubernetes.io/ingress-bandwidth"),
    ({ANNOTATIONS: {"cri-net.io/port-mappings": "[1]"}}, "cri-net.io/port-mappings"),
    ({"PortMappings": [{"HostPort": 70000, "ContainerPort": 80}]}, "port_mappings[0].host_port"),
    ({"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]}, "port_mappings[0].protocol"),
    ({"dns": {"servers": ["not-an-ip"]}}, "dns_config.servers[0]"),
])
def test_bad_runtime_config_is_code_7_naming_key(node: Node, rc: dict[str, Any], key: str) -> None:
    node.standard()
    err = node.run("ADD", node.conf(rc=rc), inproc=key != "port_mappings[0].host_port").error(7)
    assert key in err["msg"]
    assert err.get("details") == f"key: {key}"
    assert node.plugin_calls() == []


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "9.9.9", "", "latest"])
def test_unsupported_cni_version_is_code_1(node: Node, version: str) -> None:
    node.standard()
    err = node.run("ADD", node.conf(version), inproc=version != "9.9.9").error(1)
    assert "cniVersion" in err["msg"]
    assert node.plugin_calls() == []


def test_missing_cni_command_is_code_4(node: Node) -> None:
    node.run(None, node.conf()).error(4)
    node.run("", node.conf(), inproc=True).error(4)


def test_unknown_cni_command_is_code_4(node: Node) -> None:
    node.standard()
    err = node.run("FROB", node.conf(), inproc=True).error(4)
    assert "FROB" in err["msg"]


@pytest.mark.parametrize("args", ["K8S_POD_NAME", "IgnoreUnknown=1;bogus;K8S_POD_NAME=p", "=v"])
def test_bad_cni_args_pair_is_code_4(node: Node, args: str) -> None:
    node.standard()
    err = node.run("ADD", node.conf(), args=args, inproc=args != "K8S_POD_NAME").error(4)
    assert "CNI_ARGS" in err["msg"]
    assert node.plugin_calls() == []


@pytest.mark.parametrize("stdin", [b"not json", b"{", b"[1, 2]", b'"str"', b"\xff\xfe\x00garbage", b"null"])
def test_garbage_stdin_is_code_6(node: Node, stdin: bytes) -> None:
    node.run("ADD", stdin=stdin, inproc=stdin != b"not json").error(6)


def test_missing_container_id_on_add_is_an_error(node: Node) -> None:
    node.standard()
    node.run("ADD", node.conf(), container="", inproc=True).error(3)
    assert node.plugin_calls() == []


def test_invalid_plugin_config_is_code_7(node: Node) -> None:
    conf = node.conf()
    conf["confDir"] = "relative/dir"
    err = node.run("ADD", conf, inproc=True).error(7)
    assert "confDir: must be an absolute path" in err["msg"] and err.get("details") == "key: confDir"


def test_no_config_in_conf_dir_is_code_11(node: Node) -> None:
    err = node.run("ADD", node.conf()).error(11)
    assert str(node.conf_dir) in err["msg"]
    assert node.cache_files() == []


def test_inner_plugin_failure_in_default_network_rolls_back_everything(node: Node) -> None:
    node.standard(rich=True)
    node.fake.script("pm", "ADD", stdout=plugin_error("port 8080 busy", 11), exit=1)
    run = node.run("ADD", node.conf(parallelAttach=False, rc={**extra_rc(), "portMappings": PORTS_SPEC}))
    err = run.error(11)
    assert "'net'" in err["msg"] and "pm" in err["msg"] and "port 8080 busy" in err["msg"]
    seq = node.plugin_calls()
    adds = [n for n, c in seq if c == "ADD"]
    dels = [n for n, c in seq if c == "DEL"]
    assert adds == ["xa", "xb", "main", "pm"]
    # the failed plane's whole chain, then the extra planes in reverse
    assert dels == ["bw", "pm", "main", "xb", "xa"]
    assert node.cache_files() == []


def test_inner_plugin_failure_in_extra_plane_names_it(node: Node) -> None:
    node.standard()
    node.fake.script("xb", "ADD", stdout=plugin_error("no vlan", 7), exit=1)
    err = node.run("ADD", node.conf(parallelAttach=False, rc=extra_rc()), inproc=True).error(7)
    assert "extra-b" in err["msg"] and "xb" in err["msg"] and "no vlan" in err["msg"]
    assert [n for n, c in node.plugin_calls() if c == "DEL"] == ["xb", "xa"]
    assert "main" not in [n for n, _ in node.plugin_calls()]
    assert node.cache_files() == []


def test_inner_plugin_missing_binary_rolls_back(node: Node) -> None:
    node.standard()
    node.write("10-net.conflist", conflist("net", "main", "not-installed"))
    run = node.run("ADD", node.conf(rc=extra_rc()), inproc=True)
    assert run.code == 1, run
    err = run.json
    assert "'net'" in err["msg"] and "not-installed" in err["msg"]
    assert node.cache_files() == []


def test_error_json_uses_requested_version(node: Node) -> None:
    assert node.run("ADD", node.conf("0.4.0"), inproc=True).error(11)["cniVersion"] == "0.4.0"


# ---- bugs: inputs that end as internal errors, lazy imports ------------------------------


@pytest.mark.parametrize("number", [b"1e400", b"-1e999", b"NaN", b"Infinity"])
def test_non_finite_capability_number_attaches_nothing(node: Node, number: bytes) -> None:
    """`1e400` is valid JSON (Python reads it as inf); NaN/Infinity are not JSON at all.

    Either way the request must be refused (or forwarded) without leaving an attachment: today
    the extra plane is attached, then injecting the default network's capability args raises a
    ValueError that is not a CNIError, so attach_all (adaptors/planes.py) does not roll back."""
    node.standard(rich=True)
    conf = json.dumps(node.conf(rc=extra_rc())).encode()
    conf = conf[:-1] + b', "runtimeConfig": {"bandwidth": {"ingressRate": ' + number + b"}, " + \
        json.dumps(ANNOTATIONS).encode() + b": " + json.dumps({EXTRA: EXTRAS}).encode() + b"}}"
    run = node.run("ADD", stdin=conf, inproc=number != b"1e400")
    assert run.code == 1, run
    adds = [n for n, c in node.plugin_calls() if c == "ADD"]
    dels = [n for n, c in node.plugin_calls() if c == "DEL"]
    assert sorted(dels) == sorted(adds), f"attached and never detached: ADD {adds}, DEL {dels}"
    assert node.cache_files() == []
    assert run.json["code"] in (cni_plugin.DECODING_FAILURE, cni_plugin.INVALID_CONFIG), run.json


@pytest.mark.parametrize("rc", [
    {"dns": {"servers": 5}},
    {"dns": {"searches": True}},
    {"portMappings": True},
    {"PortMappings": 7},
], ids=["dns-servers-int", "dns-searches-bool", "portmappings-bool", "portmappings-int"])
def test_malformed_runtime_config_is_a_config_error_not_internal(node: Node, rc: dict[str, Any]) -> None:
    """A wrongly-typed runtimeConfig value is the runtime's mistake (code 6/7 naming it), not
    "cri-net-cni internal error: TypeError: ... is not iterable" (999) from Invocation.request/_dns."""
    node.standard()
    run = node.run("ADD", node.conf(rc=rc), inproc=True)
    assert run.code == 1
    err = run.json
    assert err["code"] in (cni_plugin.DECODING_FAILURE, cni_plugin.INVALID_CONFIG), err
    assert "internal error" not in err["msg"]
    assert node.plugin_calls() == []


def test_deeply_nested_stdin_is_a_decoding_failure(node: Node) -> None:
    """Garbage stdin is code 6; JSON nested past the recursion limit ends as a 999 RecursionError."""
    err = node.run("ADD", stdin=b"[" * 100_000 + b"]" * 100_000, inproc=True).json
    assert err["code"] == cni_plugin.DECODING_FAILURE, err


@pytest.mark.parametrize("command, stdin", [("VERSION", b"{}"), ("ADD", b'{"cniVersion": "9.9.9"}')])
def test_version_and_version_errors_import_only_the_standard_library(command: str, stdin: bytes) -> None:
    """The module docstring: "Only the standard library is imported until a command needs the
    network module, so VERSION and argument errors cost no more than the interpreter's
    start-up": no pydantic, no adaptors, nothing of libcni but its error codes and versions."""
    code = ("import sys, json\nfrom cri_net.plugin import launcher\nrc = launcher.main()\n"
            "sys.stderr.write(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pydantic', 'cri_net', 'adaptors'))))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env["CNI_COMMAND"] = command
    proc = subprocess.run([sys.executable, "-c", code], input=stdin, env=env, capture_output=True, timeout=60)
    assert proc.stdout  # the answer (or the error JSON) was printed
    modules = json.loads(proc.stderr.decode().strip().splitlines()[-1])
    # libcni's error codes and version list are plain modules (its package face loads lazily)
    light = {"cri_net.libcni", "cri_net.libcni.errors", "cri_net.libcni.version"}
    heavy = [m for m in modules if m.split(".")[0] in ("pydantic", "adaptors")
             or (m.startswith("cri_net.libcni") and m not in light)]
    assert heavy == [], f"{command} imported {len(heavy)} non-stdlib modules, e.g. {heavy[:4]}"


# ---- property-based, in-process -------------------------------------------------------------

# A fast inner plugin for the property tests (hundreds of runs): the python fake plugin costs
# an interpreter start per run; this one only a shell. ADD answers a 1.0.0 result on CNI_IFNAME.
QUICK_PLUGIN = """#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
ADD) printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"interface":0,"address":"10.9.0.2/24","gateway":"10.9.0.1"}]}' "$CNI_IFNAME" "$CNI_NETNS" ;;
VERSION) printf '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}' ;;
esac
"""


class InProc:
    """cri-net's inner networks for the in-process property runs (`net` default, `extra`)."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        for name in ("quick", "quick2"):
            path = self.bin / name
            path.write_text(QUICK_PLUGIN)
            path.chmod(0o755)
        self.conf_dir = root / "conf"
        self.conf_dir.mkdir()
        (self.conf_dir / "10-net.conflist").write_text(conflist(
            "net", {"type": "quick", "capabilities": {"ipRanges": True, "dns": True, ANNOTATIONS: True}},
            {"type": "quick2", "capabilities": {"portMappings": True, "bandwidth": True}}))
        (self.conf_dir / "20-extra.conflist").write_text(conflist(
            "extra", {"type": "quick", "capabilities": {ANNOTATIONS: True}}))
        self.cache_dir = root / "cache"
        self.results = self.cache_dir / "results"

    def base_conf(self) -> dict[str, Any]:
        return {"cniVersion": "1.0.0", "name": "cri-net", "type": "cri-net", "confDir": str(self.conf_dir),
                "cacheDir": str(self.cache_dir), "binDirs": [str(self.bin)], "timeout": 20}

    def cache_files(self) -> list[str]:
        return sorted(os.listdir(self.results)) if self.results.exists() else []

    def __call__(self, environ: dict[str, str], stdin: bytes) -> tuple[int, str]:
        return run_main({"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environ}, stdin)


@pytest.fixture(scope="module")
def inproc(tmp_path_factory: pytest.TempPathFactory) -> InProc:
    return InProc(tmp_path_factory.mktemp("cni-plugin-inproc"))


def assert_cni_output(code: int, stdout: str) -> dict[str, Any] | None:
    """Success (exit 0: nothing, or a JSON object) or error JSON with an integer code (exit 1)."""
    assert code in (0, 1), code
    assert "Traceback" not in stdout
    if code == 0:
        if stdout == "":
            return None
        doc = json.loads(stdout)
        assert isinstance(doc, dict) and "code" not in doc, doc
        return doc
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    err = json.loads(lines[0])
    assert isinstance(err, dict)
    assert isinstance(err["code"], int) and not isinstance(err["code"], bool)
    assert isinstance(err["msg"], str) and err["msg"]
    assert isinstance(err["cniVersion"], str)
    assert set(err) <= {"cniVersion", "code", "msg", "details"}
    return err


COMMANDS = st.sampled_from(["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "", "add", "FROB"])
PROPS = settings(max_examples=200, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# finite numbers only: non-finite ones are test_non_finite_capability_number_attaches_nothing
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=15)
KEYS = st.sampled_from(["portMappings", "PortMappings", "bandwidth", "Bandwidth", "ipRanges", "dns", "DNS",
                        ANNOTATIONS, "other"])
ANNOTATION_KEYS = st.sampled_from([EXTRA, "kubernetes.io/ingress-bandwidth", "kubernetes.io/egress-bandwidth",
                                   "cri-net.io/port-mappings", "cri-net.io/ip-ranges",
                                   "extension.network.kubernetes.io/cni",
                                   "extension.network.kubernetes.io/cniargs/x", "free"])
ANNOTATION_VALUES = st.one_of(
    st.text(max_size=30),
    st.just(json.dumps([{"name": "extra", "interface": "net1"}])),
    st.just("10M"), st.just(json.dumps([{"hostPort": 80, "containerPort": 8080}])),
    JSON.map(json.dumps), JSON)


def _env(command: str, args: str = ARGS, container: str = "sb-prop") -> dict[str, str]:
    return {"CNI_COMMAND": command, "CNI_CONTAINERID": container, "CNI_NETNS": "/nonexistent/netns",
            "CNI_IFNAME": "eth0", "CNI_ARGS": args, "CNI_PATH": "/nonexistent"}


@seed(20240601)
@PROPS
@given(command=COMMANDS, data=st.binary(max_size=200))
def test_property_arbitrary_stdin_bytes(inproc: InProc, command: str, data: bytes) -> None:
    env = _env(command)
    if not command:
        env.pop("CNI_COMMAND")
    code, out = inproc(env, data)
    doc = assert_cni_output(code, out)
    if command != "VERSION":
        assert code == 1 and doc is not None  # no random bytes make a config naming a conf dir
    assert inproc.cache_files() == []


@seed(20240602)
@PROPS
@given(command=st.sampled_from(["ADD", "ADD", "DEL", "CHECK", "GC", "STATUS"]),
       version=st.sampled_from(VERSIONS + ["0.2.0", "", "x"]) | st.text(max_size=5),
       rc=st.dictionaries(KEYS, JSON, max_size=4) | JSON,
       annotations=st.dictionaries(ANNOTATION_KEYS, ANNOTATION_VALUES, max_size=3) | JSON,
       top=st.dictionaries(st.sampled_from(["timeout", "binDirs", "defaultNetwork", "cni.dev/valid-attachments",
                                            "confDir", "prevResult"]), JSON, max_size=2))
def test_property_arbitrary_json_config(inproc: InProc, command: str, version: str, rc: Any, annotations: Any,
                                        top: dict[str, Any]) -> None:
    conf = inproc.base_conf()
    conf["cniVersion"] = version
    if isinstance(rc, dict):
        rc = {**rc, ANNOTATIONS: annotations}
    conf["runtimeConfig"] = rc
    for key, value in top.items():
        if key == "confDir" and isinstance(value, str) and value.startswith("/"):
            continue  # never point the plugin at a real directory
        if key == "binDirs" and isinstance(value, list):
            continue  # nor at arbitrary plugin dirs
        conf[key] = value
    code, out = inproc(_env(command), json.dumps(conf).encode())
    doc = assert_cni_output(code, out)
    if command == "ADD" and code == 0:
        assert doc is not None and doc["cniVersion"] == version
        assert doc["interfaces"][0]["name"] == "eth0"
        code, out = inproc(_env("DEL"), json.dumps(conf).encode())
        assert assert_cni_output(code, out) is None
    # a failed ADD leaves nothing attached; a successful one was detached again
    assert inproc.cache_files() == []


_ARG_PIECES = st.sampled_from(["K8S_POD_NAME=", "K8S_POD_NAMESPACE=", "K8S_POD_UID=", "IgnoreUnknown=1",
                               "K8S_POD_INFRA_CONTAINER_ID=", ";", "=", "a", "\udcff", "é", " ", "\t"])


@seed(20240603)
@PROPS
@given(raw=st.lists(_ARG_PIECES | st.text(max_size=6), max_size=12).map("".join)
       | st.binary(max_size=40).map(lambda b: os.fsdecode(b.replace(b"\0", b""))))
def test_property_arbitrary_cni_args(inproc: InProc, raw: str) -> None:
    raw = raw.replace("\0", "")
    try:
        raw.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = raw.encode("utf-8", "replace").decode("utf-8")  # not representable in an environment
    conf = json.dumps(inproc.base_conf()).encode()
    code, out = inproc(_env("ADD", args=raw), conf)
    doc = assert_cni_output(code, out)
    assert doc is not None
    if code == 0:
        assert doc["cniVersion"] == "1.0.0" and doc["interfaces"][0]["name"] == "eth0"
        code, out = inproc(_env("DEL", args=raw), conf)
        assert assert_cni_output(code, out) is None
    else:
        assert doc["code"] in (cni_plugin.INVALID_ENV, cni_plugin.INVALID_CONFIG), doc
    assert inproc.cache_files() == []


def test_del_without_netns_or_cache_still_dels_the_default_network(node: Node) -> None:
    """An ADD interrupted before its result was cached leaves IPAM state behind; the runtime's
    DEL (containerd sends a second one with an empty CNI_NETNS on remove) must still reach the
    inner plugins, with today's config, so they can release it."""
    node.standard(marker="today", rich=True)
    node.fake.clear_log()
    run = node.run("DEL", node.conf(), netns="", inproc=True)
    assert run.code == 0, run
    calls = node.fake.calls(command="DEL")
    assert [c["name"] for c in calls] == ["bw", "pm", "main"]
    assert all(c["env"]["CNI_NETNS"] == "" for c in calls)
    assert {c["config"]["marker"] for c in calls if c["name"] == "main"} == {"today"}


@pytest.mark.parametrize("extra, key", [({"timeout": 1e20}, "timeout"), ({"timeout": -1}, "timeout"),
                                        ({"binDirs": "not-a-list"}, "binDirs"),
                                        ({"parallelAttach": "maybe"}, "parallelAttach")])
def test_a_bad_hook_setting_is_code_7_naming_the_conflists_own_key(node: Node, extra: dict[str, Any],
                                                                   key: str) -> None:
    """The runtime's conflist says `timeout`, not cri-net's `plugin_timeout`: name what it says."""
    node.standard()
    err = node.run("ADD", node.conf(**extra), inproc=True).error(7)
    assert err["msg"].startswith(f"invalid cri-net plugin config: {key}: "), err
    assert err.get("details") == f"key: {key}"
    assert node.plugin_calls() == []
