"""The kind harness (integration/kind/): everything of it that runs without a Docker engine.

kind itself cannot run here, so ``integration/kind/e2e.sh`` is only documented.  What is
checked for real:

* the manifests (JSON documents in ``.yaml`` files: JSON is YAML, and no YAML parser is a
  project dependency) parse, say what the harness needs (default CNI disabled, privileged
  host-network installer, the pod's annotations) and reference files that exist;
* the conflists shipped for the nodes parse with :mod:`cri_net.libcni`;
* ``bash -n`` on the scripts, and their settings agree with the manifests;
* ``node-setup.sh`` runs for real against temporary dirs (pip install from this source,
  launcher, runtime conflist, cri-net's networks rendered on this test's subnets and
  bridges), twice, the second run changing nothing; then the local containerd 1.6 of
  :mod:`integration.containerd.harness`, given exactly the conflist and bin dir node-setup
  wrote, runs a pod with an extra plane, a port mapping and a bandwidth annotation, and
  removing the pod leaves the host as it was.

pip installs from a local wheelhouse of cri-net's pinned dependencies
(``/tmp/crinet-kind-cache``, filled from PyPI once per machine) rather than from the index
on every run, which would take minutes here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_net.cri.pb.runtime.v1 import api_pb2 as pb
from cri_net.libcni import conf_list_from_file
from integration.containerd.harness import ContainerdEnv, HarnessError, containerd_env
from integration.hostaudit import Audit, UniqueNet
from integration.test_containerd_e2e import (CONTAINER_PORT, HOST_CACHE, bridge_ports, free_port, ipv4_of,
                                             lease_files, listener_in, pod_config, remove_pod, tcp_ping)

KIND = Path(__file__).resolve().parent / "kind"
ROOT = KIND.parent.parent
NODE_SETUP = KIND / "node-setup.sh"
E2E = KIND / "e2e.sh"
CNI_DIR = "/usr/lib/cni"
WHEEL_CACHE = Path("/tmp/crinet-kind-cache")
RUNTIME_CAPABILITIES = {"io.kubernetes.cri.pod-annotations", "portMappings", "bandwidth", "ipRanges", "dns"}
EXTRA_NETWORKS = "network.alpha.kubernetes.io/network"


def manifest(name: str) -> Any:
    path = KIND / name
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise AssertionError(f"{path} is not a JSON document (kept JSON so it needs no YAML parser): {exc}") from None


def script_var(script: Path, name: str) -> str:
    """The literal default of ``NAME=...`` / ``NAME=${NAME:-...}`` in a script."""
    text = script.read_text()
    m = re.search(rf"^(?:export )?{name}=(?:\$\{{{name}:-(?P<d>[^}}]*)\}}|(?P<v>\S+))", text, re.M)
    assert m, f"{script.name} sets no {name}"
    return m.group("d") if m.group("d") is not None else m.group("v")


def copied_sources() -> list[str]:
    """Repository paths the Dockerfile COPYs into the installer image's /src."""
    sources = []
    for line in (KIND / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            *srcs, dest = line.split()[1:]
            assert dest.startswith("/src"), line
            sources += srcs
    return sources


# ------------------------------------------------------------- manifests and scripts


def test_kind_config_disables_the_default_cni() -> None:
    conf = manifest("kind-config.yaml")
    assert conf["kind"] == "Cluster" and conf["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert conf["networking"]["disableDefaultCNI"] is True
    pod_subnet = ipaddress.ip_network(conf["networking"]["podSubnet"])
    template = conf_list_from_file(str(KIND / "net.d" / "10-pods.conflist"))
    placeholder = json.loads(template.raw)["plugins"][0]["ipam"]["ranges"][0][0]["subnet"]
    assert ipaddress.ip_network(placeholder).subnet_of(pod_subnet)
    assert [n["role"] for n in conf["nodes"]] == ["control-plane"]


def test_daemonset_installs_with_node_setup_from_the_image() -> None:
    ds = manifest("daemonset.yaml")
    assert ds["kind"] == "DaemonSet" and ds["apiVersion"] == "apps/v1"
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    spec = ds["spec"]["template"]["spec"]
    # Before cri-net is installed the node has no pod network and is tainted not-ready.
    assert spec["hostNetwork"] is True and spec["hostPID"] is True
    assert {"operator": "Exists"} in spec["tolerations"]
    [init] = spec["initContainers"]
    assert init["securityContext"]["privileged"] is True
    image = script_var(E2E, "IMAGE")
    assert {c["image"] for c in spec["initContainers"] + spec["containers"]} == {image}
    assert all(c["imagePullPolicy"] == "Never" for c in spec["initContainers"] + spec["containers"])  # kind load

    # The init container copies the image's /src to the node's /opt/cri-net/src (hostPath) and
    # runs node-setup.sh from there inside the node's mount namespace.
    volumes = {v["name"]: v for v in spec["volumes"]}
    [mount] = init["volumeMounts"]
    assert volumes[mount["name"]]["hostPath"]["path"] == "/opt/cri-net"
    command = " ".join(init["command"])
    host_src = "/opt/cri-net/src"
    assert f"cp -a /src {mount['mountPath']}/src.new" in command
    assert re.search(r"nsenter --target 1 --mount\b.* -- bash " + re.escape(host_src), command), command
    referenced = re.findall(re.escape(host_src) + r"/(\S+)", command)
    assert referenced == ["integration/kind/node-setup.sh"]
    for rel in referenced:
        assert (ROOT / rel).is_file(), rel
        assert any(rel == s or rel.startswith(s.rstrip("/") + "/") for s in copied_sources()), \
            f"the Dockerfile does not copy {rel} into the image"
    # The main container runs cri-net serve on the node (the plugin hands its calls to it),
    # from the venv node-setup.sh points `current` at, with the networks it wrote.
    [serve] = spec["containers"]
    assert serve["securityContext"]["privileged"] is True
    argv = serve["command"]
    assert argv[:2] == ["nsenter", "--target"] and "--net" in argv and "--mount" in argv
    assert argv[argv.index("--") + 1:argv.index("--") + 3] == ["/opt/cri-net/current/bin/cri-net", "serve"]
    assert argv[argv.index("--conf-dir") + 1] == script_var(NODE_SETUP, "CRI_NET_CONF_DIR")
    env = {e["name"]: e for e in init["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["CRI_NET_STORAGE_CIDR"]["value"] == script_var(E2E, "STORAGE_CIDR")


def test_dockerfile_copies_files_that_exist() -> None:
    sources = copied_sources()
    assert {"pyproject.toml", "README.md", "cri_net", "adaptors", "integration/kind"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"


def test_e2e_pod_has_the_annotations_and_the_script_its_names() -> None:
    pod = manifest("e2e-pod.yaml")
    assert pod["kind"] == "Pod" and pod["metadata"]["name"] == script_var(E2E, "POD")
    ann = pod["metadata"]["annotations"]
    storage = json.loads((KIND / "net.d" / "20-storage.conflist").read_text())["name"]
    assert json.loads(ann[EXTRA_NETWORKS]) == [{"name": storage, "interface": "net1"}]
    assert storage == script_var(E2E, "STORAGE_NETWORK") == script_var(NODE_SETUP, "CRI_NET_STORAGE_NETWORK")
    assert ann["kubernetes.io/ingress-bandwidth"] == "10M" and ann["kubernetes.io/egress-bandwidth"] == "5M"
    e2e = E2E.read_text()
    assert "rate 10Mbit" in e2e and "rate 5Mbit" in e2e
    [container] = pod["spec"]["containers"]
    assert container["image"] == script_var(E2E, "POD_IMAGE")
    [port] = container["ports"]
    assert str(port["hostPort"]) == script_var(E2E, "HOST_PORT")
    assert f"-p {port['containerPort']}" in " ".join(container["command"])
    pods = json.loads((KIND / "net.d" / "10-pods.conflist").read_text())["name"]
    assert pods == script_var(E2E, "POD_NETWORK") == script_var(NODE_SETUP, "CRI_NET_POD_NETWORK")
    # Every file of the harness the script names exists.
    named = set(re.findall(r"\$HERE/(\w[\w.-]*)", e2e))
    assert {"Dockerfile", "kind-config.yaml", "daemonset.yaml", "e2e-pod.yaml"} <= named
    for name in named:
        assert (KIND / name).is_file(), f"e2e.sh uses $HERE/{name}, which does not exist"


def test_node_conflists_parse_with_libcni() -> None:
    nets = {p.name: conf_list_from_file(str(p)) for p in sorted((KIND / "net.d").glob("*.conflist"))}
    assert set(nets) == {"10-pods.conflist", "20-storage.conflist"}
    pods, storage = nets["10-pods.conflist"], nets["20-storage.conflist"]
    assert pods.plugin_types == ["bridge", "portmap", "bandwidth"]
    assert {"portMappings", "bandwidth"} <= pods.capabilities
    assert storage.plugin_types == ["bridge"]
    runtime = conf_list_from_file(str(KIND / "10-cri-net.conflist"))
    assert runtime.name == "cri-net" and runtime.plugin_types == ["cri-net"]
    [plugin] = json.loads(runtime.raw)["plugins"]
    assert plugin["confDir"] == "/etc/cri-net/net.d" and plugin["defaultNetwork"] == pods.name
    assert set(runtime.capabilities) == RUNTIME_CAPABILITIES


def test_scripts_parse() -> None:
    for script in (NODE_SETUP, E2E):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"bash -n {script.name}: {proc.stderr}"
        assert os.access(script, os.X_OK), f"{script.name} is not executable"


# ------------------------------------------------------------ node-setup.sh for real


def _dependency_pins() -> list[str]:
    """cri-net's runtime dependency closure at the versions this venv has, plus the
    setuptools its build backend needs."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    todo = [str(r) for r in metadata.requires("cri-net") or []]
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name in pins:
            continue
        pins[name] = metadata.version(name)
        todo += [str(r) for r in metadata.requires(name) or []]
    try:
        setuptools = f"setuptools=={metadata.version('setuptools')}"
    except metadata.PackageNotFoundError:
        setuptools = "setuptools>=68"
    return sorted(f"{n}=={v}" for n, v in pins.items()) + [setuptools]


def wheelhouse() -> Path:
    """A dir of wheels for every dependency (downloaded once per machine, in parallel)."""
    pins = _dependency_pins()
    key = hashlib.sha256("\n".join([sys.version, *pins]).encode()).hexdigest()[:16]
    target = WHEEL_CACHE / f"wheels-{key}"
    if (target / ".complete").is_file():
        return target
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    with open(WHEEL_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").is_file():
            return target
        partial = WHEEL_CACHE / f"partial-{key}-{os.getpid()}"
        partial.mkdir()
        procs = [(pin, subprocess.Popen([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                                         "--only-binary=:all:", "--disable-pip-version-check", "-d", str(partial),
                                         pin], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
                 for pin in pins]
        failed = []
        for pin, proc in procs:
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                failed.append(f"{pin}: {err.strip()[-500:]}")
        if failed:
            pytest.fail("cannot download the wheels node-setup.sh installs:\n  " + "\n  ".join(failed), pytrace=False)
        (partial / ".complete").write_text("\n".join(pins) + "\n")
        os.replace(partial, target)
    return target


class NodeSetup:
    """node-setup.sh pointed at temporary dirs, on two test networks."""

    def __init__(self, tmp_path: Path, pods: UniqueNet, storage: UniqueNet) -> None:
        self.pods, self.storage = pods, storage
        # A snapshot of the source, as the DaemonSet copies it to the node: the checkout
        # may change under a long test, and a changed source is (rightly) installed anew.
        self.src = tmp_path / "src"
        self.src.mkdir()
        for item in ("pyproject.toml", "README.md", "constraints.txt", "cri_net", "adaptors"):
            if (ROOT / item).is_dir():
                shutil.copytree(ROOT / item, self.src / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(ROOT / item, self.src / item)
        self.prefix = tmp_path / "opt-cri-net"
        self.cni_bin = tmp_path / "opt-cni-bin"
        self.cni_conf = tmp_path / "etc-cni-net.d"
        self.conf_dir = tmp_path / "etc-cri-net" / "net.d"
        self.cache_dir = tmp_path / "crinet-cache"
        self.ipam_dir = tmp_path / "ipam"
        for net in (pods, storage):
            net.cache_dirs.add(self.cache_dir)
            net.ipam_dirs.add(self.ipam_dir)
        self.env = {
            "CRI_NET_PREFIX": str(self.prefix), "CRI_NET_PYTHON": sys.executable, "CRI_NET_APT": "never",
            "CNI_BIN_DIR": str(self.cni_bin), "CNI_CONF_DIR": str(self.cni_conf),
            "CRI_NET_CONF_DIR": str(self.conf_dir), "CRI_NET_BIN_DIRS": CNI_DIR,
            "CRI_NET_CACHE_DIR": str(self.cache_dir), "CRI_NET_IPAM_DIR": str(self.ipam_dir),
            "CRI_NET_POD_CIDR": str(pods.subnet), "CRI_NET_POD_NETWORK": pods.name,
            "CRI_NET_POD_BRIDGE": pods.bridge, "CRI_NET_STORAGE_NETWORK": storage.name,
            "CRI_NET_STORAGE_CIDR": str(storage.subnet), "CRI_NET_STORAGE_BRIDGE": storage.bridge,
        }

    @property
    def runtime_conflist(self) -> Path:
        return self.cni_conf / "00-cri-net.conflist"

    def run(self, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
        full = {k: v for k, v in os.environ.items() if not k.startswith(("CRI_NET_", "CNI_"))}
        full.update(self.env, **env)
        return subprocess.run(["bash", str(NODE_SETUP), str(self.src)], env=full, capture_output=True, text=True,
                              timeout=timeout)

    def outputs(self) -> dict[str, bytes]:
        return {str(p): p.read_bytes() for p in [self.cni_bin / "cri-net", self.runtime_conflist,
                                                 self.conf_dir / "10-pods.conflist",
                                                 self.conf_dir / "20-storage.conflist"]}


@pytest.fixture
def node(tmp_path: Path, net_factory: Callable[[], UniqueNet]) -> NodeSetup:
    return NodeSetup(tmp_path, net_factory(), net_factory())


@pytest.fixture
def containerd(tmp_path: Path, net_factory: Callable[[], UniqueNet]) -> Iterator[Callable[..., ContainerdEnv]]:
    """``containerd(conf_bytes, bin_dirs)``: started, torn down before the networks are purged."""
    with contextlib.ExitStack() as stack:
        envs: list[ContainerdEnv] = []

        def make(conf: bytes, bin_dirs: list[str]) -> ContainerdEnv:
            try:
                env = stack.enter_context(containerd_env(tmp_path, conf, bin_dirs))
            except HarnessError as exc:
                pytest.fail(f"cannot run containerd on this host: {exc}", pytrace=False)
            envs.append(env)
            return env

        yield make
    failures = [f for env in envs for f in env.cleanup_failures]
    if failures:
        pytest.fail("containerd harness could not clean up:\n  " + "\n  ".join(failures), pytrace=False)


@pytest.mark.parametrize("env, message", [
    ({"CRI_NET_POD_CIDR": "", "CRI_NET_KUBECONFIG": "/nonexistent/kubelet.conf"}, "CRI_NET_POD_CIDR is not set"),
    ({"CRI_NET_POD_CIDR": "10.244.0.1/24"}, "CRI_NET_POD_CIDR='10.244.0.1/24'"),
    ({"CRI_NET_POD_BRIDGE": "a-bridge-name-too-long"}, "1 to 15 characters"),
])
def test_node_setup_refuses_bad_settings_before_installing(node: NodeSetup, env: dict[str, str],
                                                           message: str) -> None:
    proc = node.run(timeout=60, **env)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert not node.prefix.exists() and not node.cni_bin.exists() and not node.cni_conf.exists()


def test_node_setup_reads_the_pod_cidr_with_the_kubelets_kubeconfig(node: NodeSetup, tmp_path: Path) -> None:
    """Without CRI_NET_POD_CIDR the Node's spec.podCIDR is read with kubectl (a stand-in
    here, empty on its first call as before the controller-manager assigns one)."""
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    calls = tmp_path / "kubectl-calls"
    (fake / "kubectl").write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n[ "$(wc -l < {calls})" -ge 2 ] && printf 10.244.3.0/24\nexit 0\n')
    (fake / "kubectl").chmod(0o755)
    kubeconfig = tmp_path / "kubelet.conf"
    kubeconfig.write_text("{}")
    # A bad bridge name stops it right after the lookup, before anything is installed.
    proc = node.run(timeout=60, PATH=f"{fake}:{os.environ['PATH']}", CRI_NET_POD_CIDR="", NODE_NAME="kind-worker",
                    CRI_NET_KUBECONFIG=str(kubeconfig), CRI_NET_STORAGE_BRIDGE="x" * 16)
    assert "pod CIDR of node kind-worker: 10.244.3.0/24" in proc.stdout, (proc.stdout, proc.stderr)
    assert proc.returncode != 0 and "CRI_NET_STORAGE_BRIDGE" in proc.stderr
    assert calls.read_text().splitlines() == [
        f"--kubeconfig {kubeconfig} get node kind-worker -o jsonpath={{.spec.podCIDR}}"] * 2
    assert not node.prefix.exists()


def test_node_setup_then_containerd_runs_an_annotated_pod(node: NodeSetup, containerd: Callable[..., ContainerdEnv],
                                                          host_audit: Callable[..., Audit]) -> None:
    wheels = wheelhouse()
    pip_args = f"--no-index --find-links {shlex.quote(str(wheels))}"
    t0 = time.monotonic()
    first = node.run(CRI_NET_PIP_ARGS=pip_args)
    assert first.returncode == 0, f"node-setup.sh failed:\n{first.stdout}\n{first.stderr}"
    assert f"pip installing cri-net from {node.src}" in first.stdout
    install_time = time.monotonic() - t0

    # What it wrote: a launcher into the bin dir, cri-net's networks on this test's subnets
    # and bridges, and the runtime conflist naming them; libcni parses every one.
    [venv] = node.prefix.glob("venv-*")
    launcher = (node.cni_bin / "cri-net").read_text().splitlines()
    assert launcher[0] == f"#!{venv}/bin/python -S" and launcher[-1] == "run_plugin()", launcher
    assert (node.prefix / "current").resolve() == venv.resolve()
    assert os.access(node.cni_bin / "cri-net", os.X_OK)
    version = subprocess.run([str(node.cni_bin / "cri-net")], input='{"cniVersion": "1.0.0"}', text=True,
                             capture_output=True, env={"CNI_COMMAND": "VERSION"}, timeout=30)
    assert json.loads(version.stdout)["supportedVersions"][-1] == "1.1.0", version
    pods = conf_list_from_file(str(node.conf_dir / "10-pods.conflist"))
    storage = conf_list_from_file(str(node.conf_dir / "20-storage.conflist"))
    for parsed, net in ((pods, node.pods), (storage, node.storage)):
        bridge = json.loads(parsed.raw)["plugins"][0]
        assert parsed.name == net.name and bridge["bridge"] == net.bridge
        assert bridge["ipam"]["ranges"] == [[{"subnet": str(net.subnet)}]]
        assert bridge["ipam"]["dataDir"] == str(node.ipam_dir)
    assert pods.plugin_types == ["bridge", "portmap", "bandwidth"]
    runtime = conf_list_from_file(str(node.runtime_conflist))
    [plugin] = json.loads(runtime.raw)["plugins"]
    assert runtime.name == "cri-net" and plugin["type"] == "cri-net"
    assert plugin["confDir"] == str(node.conf_dir) and plugin["binDirs"] == [CNI_DIR]
    assert plugin["cacheDir"] == str(node.cache_dir) and plugin["defaultNetwork"] == node.pods.name
    assert set(runtime.capabilities) == RUNTIME_CAPABILITIES

    # Idempotent: a second run installs nothing and rewrites nothing.
    before = node.outputs()
    second = node.run(CRI_NET_PIP_ARGS=pip_args, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "already installed" in second.stdout and "wrote" not in second.stdout, second.stdout
    assert second.stdout.count("unchanged") == 4
    assert node.outputs() == before and list(node.prefix.glob("venv-*")) == [venv]

    # containerd runs exactly what node-setup wrote: its conflist, its bin dir.
    env = containerd(node.runtime_conflist.read_bytes(), [str(node.cni_bin), CNI_DIR])
    audit = host_audit(cache_dir=HOST_CACHE, ipam_dir=node.ipam_dir, state_dir=node.cache_dir,
                       ignore=[env.foreign_state([node.pods, node.storage])])
    c = env.client()
    host_port = free_port()
    annotations = {EXTRA_NETWORKS: json.dumps([{"name": node.storage.name, "interface": "net1"}]),
                   "kubernetes.io/ingress-bandwidth": "10M"}
    try:
        sid = c.runp(pod_config("kind-node", annotations=annotations, port_mappings=[
            {"protocol": pb.TCP, "container_port": CONTAINER_PORT, "host_port": host_port}]))
    except grpc.RpcError as exc:
        raise AssertionError(f"RunPodSandbox failed: {exc.code()} {exc.details()}\n{env.log_tail()}") from None

    status = c.inspectp(sid, verbose=False).status
    assert status.state == pb.SANDBOX_READY
    ip = ipaddress.IPv4Address(status.network.ip)
    assert ip in node.pods.subnet and ip != node.pods.gateway
    netns = env.netns_of(sid, c)
    assert [a.ip for a in ipv4_of(netns, "eth0")] == [ip]
    [net1] = ipv4_of(netns, "net1")
    assert net1.ip in node.storage.subnet
    assert len(lease_files(node.ipam_dir)) == 2
    [host_veth] = bridge_ports(node.pods.bridge)
    assert len(bridge_ports(node.storage.bridge)) == 1
    tc = subprocess.run(["tc", "qdisc", "show", "dev", host_veth], capture_output=True, text=True).stdout
    assert "tbf" in tc and "10Mbit" in tc, f"no 10Mbit tbf on {host_veth}: {tc}"
    with listener_in(netns, CONTAINER_PORT):
        assert tcp_ping(str(node.pods.gateway), host_port) == "pong:ping"

    remove_pod(c, sid)
    assert lease_files(node.ipam_dir) == []
    assert bridge_ports(node.pods.bridge) == [] and bridge_ports(node.storage.bridge) == []
    assert not Path(netns).exists()
    audit.assert_clean(ignore=[node.pods.per_network_state, node.storage.per_network_state])
    assert install_time < 60, f"node-setup.sh took {install_time:.0f}s"
