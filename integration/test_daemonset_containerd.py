"""cri-net as a Kubernetes add-on, proven on a real containerd without Kubernetes (issue 14).

The node image is built from the repository's Dockerfile (integration/image.py: buildah,
a debootstrapped debian:bookworm-slim, cached in /tmp), imported into a real containerd 1.6
(integration/containerd/harness.py), and the DaemonSet of deploy/cri-net.yaml is run on it
through CRI the way kubelet would: the pod on the host network and PID namespace, privileged,
its init container and then its serve container with the command, args, env and mounts read
from the manifest file itself. Then a pod through that same containerd gets its network from
cri-net inside the container: extra plane, host port, bandwidth; stop and remove leave
nothing. Once with cri-net's own bridge default network, once in delegate mode over a `ptp`
primary network (kindnet's plugins).

The health endpoints are probed as the manifest's probes say (path and port of its
livenessProbe and readinessProbe): /readyz must answer 200 before any pod starts. Then the
upgrade path: a pod whose extra plane runs a slow plugin is started, and while its CNI ADD is
in flight on the handoff socket, serve is stopped as kubelet stops it (StopContainer with the
grace period). /readyz must answer 503 at once (and /healthz still 200: a draining pod must not
be killed), while the call in flight is still served to its end: the pod gets its planes.
Then a new DaemonSet pod (the upgrade's replacement) tears that pod down.

What the test changes from the manifest, and why:
- hostPath `path:` values are rewritten to temporary dirs (the runtime's CNI conf and bin
  dirs become the test containerd's own; /var/lib/cni, /etc/cri-net, /var/lib/cri-net are
  tmp dirs), except /run/cri-net (the launcher on the node connects to
  /run/cri-net/cni.sock: moved aside, made a shared mount for the Bidirectional propagation,
  restored), /run/netns (containerd 1.6 pins pod netns there; made shared as `ip netns` does)
  and /run/xtables.lock;
- in the bridge-mode run, `--delegate-conf-dir` is dropped from the init container's args;
- `--metrics-listen $(NODE_IP):<probe port>` gets a free port instead of the probes' port
  (parallel runs must not collide), and `$(NODE_IP)` expands to 127.0.0.1 (kubelet:
  status.hostIP; here the node is this host, reached on loopback); the probes are sent to
  that address.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_net.cri.client import CRIClient
from cri_net.cri.pb.runtime.v1 import api_pb2 as pb
from cri_net.libcni import conf_list_from_file
from integration.containerd.harness import ContainerdEnv, HarnessError, containerd_env
from integration.hostaudit import Audit, UniqueNet, bridge_ports
from integration.image import IMAGE_NAME, ImageBuild, node_image
from integration.test_containerd_e2e import (BANDWIDTH, CONTAINER_PORT, HOST_CACHE, PORTMAP, free_port, ipv4_of,
                                             listener_in, pod_config, tcp_ping)
from integration.test_readme_containerd import moved_aside

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "deploy" / "cri-net.yaml"
RUN_DIR = Path("/run/cri-net")
CNI_SOCKET = RUN_DIR / "cni.sock"
#: host paths used as they are (see the module doc)
REAL_HOST_PATHS = {"/run/cri-net", "/run/netns", "/run/xtables.lock"}
CONTAINER_IPAM = "/var/lib/cni/networks"  # host-local's default, inside the serve container
PROPAGATION = {None: pb.PROPAGATION_PRIVATE, "HostToContainer": pb.PROPAGATION_HOST_TO_CONTAINER,
               "Bidirectional": pb.PROPAGATION_BIDIRECTIONAL}
WAIT = 90.0
#: how long the slow plugin holds its ADD: serve gets SIGTERM meanwhile
SLOW_ADD_SECONDS = 4.0
#: what the test ships as a slow chained plugin (run by cri-net inside the image: its python3)
SLOW_PLUGIN = '''#!/usr/bin/python3
import json, os, sys, time
conf = json.load(sys.stdin)
cmd = os.environ.get("CNI_COMMAND")
if cmd == "VERSION":
    print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}))
elif cmd == "ADD":
    open(conf["marker"] + "." + os.environ["CNI_CONTAINERID"], "w").close()
    time.sleep(conf["seconds"])
    result = dict(conf["prevResult"], cniVersion=conf["cniVersion"])
    print(json.dumps(result))
'''


def manifest_objects() -> dict[str, dict[str, Any]]:
    doc = json.loads(MANIFEST.read_text())
    return {o["kind"]: o for o in doc["items"]}


def daemonset_pod() -> dict[str, Any]:
    return manifest_objects()["DaemonSet"]["spec"]["template"]["spec"]


def probes(container: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """The container's HTTP probes: {"liveness": (path, port), "readiness": (path, port)}."""
    found = {}
    for kind in ("liveness", "readiness"):
        get = container[f"{kind}Probe"]["httpGet"]
        found[kind] = (get["path"], int(get["port"]))
    return found


def metrics_listen_arg(container: dict[str, Any]) -> str:
    """The value of serve's --metrics-listen in the manifest; it must listen where the probes look."""
    args = container.get("args", [])
    assert "--metrics-listen" in args, f"{MANIFEST.name}: serve has no --metrics-listen for its probes: {args}"
    value = args[args.index("--metrics-listen") + 1]
    ports = {port for _path, port in probes(container).values()}
    assert value.rpartition(":")[2] == str(ports.pop()) and not ports, \
        f"{MANIFEST.name}: --metrics-listen {value} is not where the probes look: {probes(container)}"
    return value


def http_get(port: int, path: str, timeout: float) -> tuple[int, str]:
    """One probe as kubelet sends it: GET path on the node IP (127.0.0.1 here)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read(4096).decode(errors="replace")
    finally:
        conn.close()


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)


class Node:
    """The node's host paths for the manifest's volumes (tmp dirs, or the real ones)."""

    def __init__(self, tmp: Path, env: ContainerdEnv) -> None:
        self.cache = tmp / "var-lib-cni"
        self.etc = tmp / "etc-cri-net"
        self.paths = {"/opt/cni/bin": env.cni_bin_dir, "/etc/cni/net.d": env.cni_conf_dir,
                      "/var/lib/cni": self.cache, "/etc/cri-net": self.etc,
                      "/var/lib/cri-net": tmp / "var-lib-cri-net"}
        self.ipam = self.cache / "networks"

    def host_path(self, volume: dict[str, Any]) -> str:
        hp = volume["hostPath"]
        path = hp["path"]
        if path in REAL_HOST_PATHS:
            target = Path(path)
        else:
            assert path in self.paths, f"{MANIFEST.name}: hostPath {path} has no temporary stand-in in this test"
            target = Path(self.paths[path])
        if hp.get("type") == "FileOrCreate" and not target.exists():
            target.touch()
        elif not target.exists():
            target.mkdir(parents=True)
        return str(target)


def container_config(spec: dict[str, Any], volumes: dict[str, dict[str, Any]], node: Node,
                     drop_args: tuple[str, ...] = (), replace_args: dict[str, str] | None = None
                     ) -> pb.ContainerConfig:
    env = {"NODE_IP": "127.0.0.1"}
    for e in spec.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            assert e["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP", e
    args = list(spec.get("args", []))
    for flag in drop_args:  # a flag and its value
        if flag in args:
            i = args.index(flag)
            del args[i:i + 2]
    args = [(replace_args or {}).get(a, a) for a in args]
    mounts = []
    for vm in spec.get("volumeMounts", []):
        mounts.append(pb.Mount(container_path=vm["mountPath"], host_path=node.host_path(volumes[vm["name"]]),
                               readonly=bool(vm.get("readOnly")),
                               propagation=PROPAGATION[vm.get("mountPropagation")]))
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=spec["name"]), image=pb.ImageSpec(image=spec["image"]),
        command=spec.get("command", []), args=[_expand(a, env) for a in args],
        envs=[pb.KeyValue(key=k, value=v) for k, v in env.items()], mounts=mounts,
        log_path=f"{spec['name']}.log",
        linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
            privileged=spec["securityContext"]["privileged"],
            namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.NODE))))


@contextlib.contextmanager
def shared_run_dir(store: Path) -> Iterator[None]:
    """/run/cri-net moved aside, then a shared mount (Bidirectional propagation needs one);
    restored afterwards. /run/netns made a shared mount the way `ip netns add` makes it."""
    with socket.socket(socket.AF_UNIX) as s:
        if s.connect_ex(str(CNI_SOCKET)) == 0:
            pytest.fail(f"a cri-net serve already listens on {CNI_SOCKET}", pytrace=False)
    probe = f"crinet-ds-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", probe], check=True, capture_output=True)
    subprocess.run(["ip", "netns", "del", probe], check=True, capture_output=True)
    xtables = Path("/run/xtables.lock")
    made_lock = not xtables.exists()
    with moved_aside([RUN_DIR], store):
        RUN_DIR.mkdir(mode=0o755)
        subprocess.run(["mount", "--bind", str(RUN_DIR), str(RUN_DIR)], check=True)
        try:
            subprocess.run(["mount", "--make-shared", str(RUN_DIR)], check=True)
            yield
        finally:
            subprocess.run(["umount", "-R", "-l", str(RUN_DIR)], capture_output=True)
            if made_lock:
                xtables.unlink(missing_ok=True)


class DaemonSetPod:
    """The DaemonSet's pod on the test containerd, through CRI."""

    def __init__(self, env: ContainerdEnv, node: Node, tmp: Path, init_drop: tuple[str, ...]) -> None:
        self.env, self.node, self.tmp = env, node, tmp
        self.logs = tmp / "ds-logs-0"
        self.generation = 0
        self.c = env.client()
        self.spec = daemonset_pod()
        assert self.spec["hostNetwork"] and self.spec["hostPID"], "the DaemonSet must use the host network and PID"
        self.volumes = {v["name"]: v for v in self.spec["volumes"]}
        self.init_drop = init_drop
        [serve] = self.spec["containers"]
        self.probes = probes(serve)
        # the probes' port on this shared host would collide with a parallel run: a free one
        listen = metrics_listen_arg(serve)
        self.metrics_port = free_port()
        self.serve_args = {listen: f"{listen.rpartition(':')[0]}:{self.metrics_port}"}
        self.probe_timeout = float(serve["readinessProbe"].get("timeoutSeconds", 1))
        self.sid = self.serve_id = ""

    def probe(self, kind: str) -> tuple[int, str]:
        """kubelet's liveness or readiness probe of serve: (HTTP status, body)."""
        path, _port = self.probes[kind]
        return http_get(self.metrics_port, path, self.probe_timeout)

    def wait_ready(self) -> float:
        """Until the readiness probe answers 200 (bounded); seconds waited."""
        t0 = time.monotonic()
        seen: tuple[int, str] | str = "no answer"
        while time.monotonic() - t0 < WAIT:
            try:
                seen = self.probe("readiness")
            except OSError as exc:
                seen = f"{type(exc).__name__}: {exc}"
            if seen[0] == 200:
                return time.monotonic() - t0
            time.sleep(0.1)
        raise AssertionError(f"serve not ready after {WAIT:.0f}s: {seen}\n{self.log('serve')}")

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"

    def _wait_exit(self, cid: str, name: str) -> int:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            st = self.c.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=10).status
            if st.state == pb.CONTAINER_EXITED:
                return st.exit_code
            time.sleep(0.2)
        raise AssertionError(f"container {name} still running after {WAIT:.0f}s:\n{self.log(name)}")

    def _run_container(self, spec: dict[str, Any], drop: tuple[str, ...] = (),
                       replace: dict[str, str] | None = None) -> str:
        config = container_config(spec, self.volumes, self.node, drop, replace)
        sandbox = self.sandbox_config()
        cid = self.c.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=self.sid, config=config, sandbox_config=sandbox), timeout=60).container_id
        self.c.runtime.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)
        return cid

    def sandbox_config(self) -> pb.PodSandboxConfig:
        meta = manifest_objects()["DaemonSet"]["metadata"]
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=f"{meta['name']}-node", namespace=meta["namespace"],
                                           uid="ds-" + secrets.token_hex(6)),
            log_directory=str(self.logs),
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                privileged=True, namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.NODE))))

    def start(self) -> float:
        """Run the init container to completion, then serve until cni.sock answers; seconds taken."""
        t0 = time.monotonic()
        self.generation += 1  # a replacement pod (an upgrade) logs beside the old one
        self.logs = self.tmp / f"ds-logs-{self.generation}"
        self.logs.mkdir()
        self.sid = self.c.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=self.sandbox_config()),
                                                timeout=60).pod_sandbox_id
        [init] = self.spec["initContainers"]
        rc = self._wait_exit(self._run_container(init, self.init_drop), init["name"])
        assert rc == 0, f"init container {init['name']} exited {rc}:\n{self.log(init['name'])}"
        [serve] = self.spec["containers"]
        cid = self.serve_id = self._run_container(serve, replace=self.serve_args)
        deadline = time.monotonic() + WAIT
        while True:
            with socket.socket(socket.AF_UNIX) as s:
                if s.connect_ex(str(CNI_SOCKET)) == 0:
                    break
            st = self.c.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=10).status
            assert st.state != pb.CONTAINER_EXITED, f"serve exited {st.exit_code}:\n{self.log(serve['name'])}"
            assert time.monotonic() < deadline, f"serve did not listen on {CNI_SOCKET}:\n{self.log(serve['name'])}"
            time.sleep(0.2)
        return time.monotonic() - t0

    def stop(self) -> float:
        """As kubelet deletes the pod: StopContainer with the grace period (SIGTERM, then
        SIGKILL), then the sandbox; the seconds serve took to exit."""
        took = self.stop_serve()
        self.remove_sandbox()
        return took

    def stop_serve(self) -> float:
        """StopContainer of serve with the manifest's grace period; the seconds it took to exit 0."""
        grace = int(self.spec["terminationGracePeriodSeconds"])
        t0 = time.monotonic()
        self.c.runtime.StopContainer(pb.StopContainerRequest(container_id=self.serve_id, timeout=grace),
                                     timeout=grace + 30)
        took = time.monotonic() - t0
        st = self.c.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=self.serve_id), timeout=10).status
        assert st.exit_code == 0 and took < grace, f"serve exited {st.exit_code} after {took:.1f}s of SIGTERM " \
            f"(grace {grace}s):\n{self.log('serve')}"
        return took

    def remove_sandbox(self) -> None:
        self.c.stopp(self.sid)
        self.c.rmp(self.sid)


def _wait_hook_loaded(env: ContainerdEnv) -> None:
    """containerd reloads its conf dir by itself: wait until it runs the cri-net hook."""
    c = env.client()
    deadline = time.monotonic() + WAIT
    seen = ""
    while time.monotonic() < deadline:
        resp = c.runtime.Status(pb.StatusRequest(verbose=True), timeout=10)
        ready = any(x.type == "NetworkReady" and x.status for x in resp.status.conditions)
        seen = resp.info.get("cniconfig", "")
        if ready and re.search(r'"Name":\s*"cri-net"', seen):
            return
        time.sleep(0.3)
    raise AssertionError(f"containerd did not load 00-cri-net.conflist; its cniconfig: {seen[:3000]}\n"
                         f"{env.log_tail(15)}")


def host_veth(netns: str) -> str:
    inner = subprocess.run(["nsenter", f"--net={netns}", "ip", "-o", "link", "show", "eth0"],
                           capture_output=True, text=True, check=True).stdout
    index = re.search(r"eth0@if(\d+):", inner).group(1)  # type: ignore[union-attr]
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    m = re.search(rf"^{index}: ([^:@]+)", out, re.M)
    assert m, f"no host link with index {index}"
    return m.group(1)


def has_interpreter(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF asks for a dynamic loader (a PT_INTERP header)."""
    phoff, phentsize, phnum = int.from_bytes(elf[0x20:0x28], "little"), int.from_bytes(
        elf[0x36:0x38], "little"), int.from_bytes(elf[0x38:0x3A], "little")
    return any(int.from_bytes(elf[phoff + i * phentsize:phoff + i * phentsize + 4], "little") == 3
               for i in range(phnum))


def ptp_primary(net: UniqueNet) -> dict[str, Any]:
    """A kindnet-like primary network: ptp + host-local + portmap (no bandwidth)."""
    return {"cniVersion": "0.3.1", "name": net.name, "plugins": [
        {"type": "ptp", "ipMasq": False, "mtu": 1500,
         "ipam": {"type": "host-local", "dataDir": CONTAINER_IPAM, "ranges": [[{"subnet": str(net.subnet)}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}


class Drain:
    """What `sigterm_during_add` saw."""

    sid = netns = ""
    unready_ms = add_done_after = stop_seconds = 0.0


def sigterm_during_add(ds: DaemonSetPod, c: CRIClient, slow: UniqueNet, marker: Path) -> Drain:
    """Start a pod whose `slow` plane holds its ADD; once the ADD is in the plugin, stop serve
    as kubelet does. /readyz must be 503 (and /healthz 200) while that ADD is still in flight,
    and the ADD must still be answered: the pod gets its planes."""
    seen = Drain()
    errors: list[BaseException] = []
    add_done = threading.Event()
    add_end = [0.0]

    def add() -> None:
        try:
            seen.sid = c.runp(pod_config("ds-drain", annotations={
                "network.alpha.kubernetes.io/network": json.dumps([{"name": slow.name, "interface": "net1"}])}))
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
        finally:
            add_end[0] = time.monotonic()
            add_done.set()

    adder = threading.Thread(target=add, name="slow-add", daemon=True)
    adder.start()
    deadline = time.monotonic() + WAIT
    while not list(marker.parent.glob(marker.name + ".*")):
        assert not add_done.is_set(), f"the slow ADD ended before its plugin ran: {errors}\n{ds.log('serve')}"
        assert time.monotonic() < deadline, f"the slow plugin never ran\n{ds.log('serve')}"
        time.sleep(0.05)
    for started in marker.parent.glob(marker.name + ".*"):
        started.unlink()

    stop: dict[str, Any] = {}

    def stop_serve() -> None:
        try:
            stop["seconds"] = ds.stop_serve()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            stop["error"] = exc

    sigterm = time.monotonic()
    stopper = threading.Thread(target=stop_serve, name="stop-serve", daemon=True)
    stopper.start()
    answers: list[tuple[int, str]] = []
    while time.monotonic() - sigterm < SLOW_ADD_SECONDS:
        answers.append(ds.probe("readiness"))
        if answers[-1][0] == 503:
            break
        time.sleep(0.02)
    seen.unready_ms = (time.monotonic() - sigterm) * 1000
    assert answers and answers[-1][0] == 503 and "draining" in answers[-1][1], \
        f"/readyz did not go 503 after SIGTERM: {answers[-3:]}\n{ds.log('serve')}"
    assert not add_done.is_set(), "the slow ADD was answered before readiness went false; nothing was proven"
    assert ds.probe("liveness") == (200, "ok\n"), "a draining serve must stay alive for the liveness probe"

    adder.join(WAIT)
    stopper.join(WAIT + int(ds.spec["terminationGracePeriodSeconds"]))
    assert not adder.is_alive() and not stopper.is_alive(), "the ADD or StopContainer hung"
    assert not errors, f"the ADD in flight at SIGTERM failed: {errors[0]}\n{ds.log('serve')}"
    assert "error" not in stop, stop["error"]
    seen.add_done_after, seen.stop_seconds = add_end[0] - sigterm, stop["seconds"]
    seen.netns = ds.env.netns_of(seen.sid, c)
    [eth0] = ipv4_of(seen.netns, "eth0")
    [net1] = ipv4_of(seen.netns, "net1")
    assert net1.ip in slow.subnet, net1
    assert c.inspectp(seen.sid, verbose=False).status.network.ip == str(eth0.ip)
    return seen


@pytest.fixture(scope="module")
def image() -> ImageBuild:
    try:
        return node_image()
    except HarnessError as exc:
        pytest.fail(f"cannot build the node image here: {exc}", pytrace=False)


@pytest.mark.parametrize("delegate", [False, True], ids=["bridge-default", "delegate-ptp"])
def test_daemonset_on_containerd(delegate: bool, image: ImageBuild, tmp_path: Path,
                                 net_factory: Callable[[], UniqueNet], host_audit: Callable[..., Audit]) -> None:
    default, extra, slow = net_factory(), net_factory(), net_factory()
    store = tmp_path / "moved-aside"
    store.mkdir()
    init_drop = () if delegate else ("--delegate-conf-dir",)
    primary = ptp_primary(default) if delegate else None
    with contextlib.ExitStack() as stack:
        stack.enter_context(shared_run_dir(store))
        try:
            env = stack.enter_context(containerd_env(
                tmp_path, json.dumps(primary).encode() if primary else None, ["/usr/lib/cni"],
                cni_conf_file=f"10-{default.name}.conflist"))
            t0 = time.monotonic()
            env.import_image(image.archive, IMAGE_NAME)
            import_seconds = time.monotonic() - t0
        except HarnessError as exc:
            pytest.fail(f"cannot run containerd on this host: {exc}", pytrace=False)
        node = Node(tmp_path, env)
        for net in (default, extra, slow):
            net.cache_dirs.add(node.cache)
            net.ipam_dirs.add(node.ipam)
        # cri-net's networks on this node (an operator's files in /etc/cri-net/net.d)
        conf_dir = node.etc / "net.d"
        conf_dir.mkdir(parents=True)
        if not delegate:
            (conf_dir / f"10-{default.name}.conflist").write_text(json.dumps(
                default.conflist(ipam_dir=CONTAINER_IPAM, extra_plugins=[PORTMAP, BANDWIDTH])))
        (conf_dir / f"20-{extra.name}.conflist").write_text(json.dumps(extra.conflist(ipam_dir=CONTAINER_IPAM)))
        # an extra plane whose chained plugin holds its ADD for SLOW_ADD_SECONDS (the node's bin dir)
        slow_plugin = f"crinet-slow-{secrets.token_hex(3)}"
        (env.cni_bin_dir / slow_plugin).write_text(SLOW_PLUGIN)
        (env.cni_bin_dir / slow_plugin).chmod(0o755)
        stack.callback((env.cni_bin_dir / slow_plugin).unlink, missing_ok=True)
        marker = f"slow-add-{secrets.token_hex(3)}"  # written in the container's /var/lib/cni
        (conf_dir / f"30-{slow.name}.conflist").write_text(json.dumps(slow.conflist(
            ipam_dir=CONTAINER_IPAM, extra_plugins=[{"type": slow_plugin, "seconds": SLOW_ADD_SECONDS,
                                                     "marker": f"/var/lib/cni/{marker}"}])))
        audit = host_audit(cache_dir=HOST_CACHE, ipam_dir=node.ipam, state_dir=node.cache / "results",
                           ignore=[env.foreign_state([default, extra, slow])])

        ds = DaemonSetPod(env, node, tmp_path, init_drop)
        started = ds.start()
        # the manifest's probes: alive at once, ready before any pod starts
        ready_after = ds.wait_ready()
        assert ds.probe("liveness") == (200, "ok\n")
        assert ds.probe("readiness") == (200, "ok\n")
        # the init container's work, on the node
        shim = (env.cni_bin_dir / "cri-net").read_bytes()
        assert shim[:4] == b"\x7fELF" and not has_interpreter(shim), "the launcher must be a static executable"
        runtime = conf_list_from_file(str(env.cni_conf_dir / "00-cri-net.conflist"))
        [plugin] = json.loads(runtime.raw)["plugins"]
        assert plugin["type"] == "cri-net" and plugin.get("delegateConfDir") == (
            "/etc/cni/net.d" if delegate else None), plugin
        _wait_hook_loaded(env)

        c = env.client()
        port = free_port()
        annotations = {"network.alpha.kubernetes.io/network": json.dumps([{"name": extra.name, "interface": "net1"}]),
                       "kubernetes.io/ingress-bandwidth": "10M"}
        try:
            sid = c.runp(pod_config("ds-pod", annotations=annotations, port_mappings=[
                {"protocol": pb.TCP, "container_port": CONTAINER_PORT, "host_port": port}]))
        except grpc.RpcError as exc:
            raise AssertionError(f"RunPodSandbox failed: {exc.code()} {exc.details()}\n{env.log_tail()}\n"
                                 f"serve log:\n{ds.log('serve')}") from None
        netns = env.netns_of(sid, c)
        [ip] = ipv4_of(netns, "eth0")
        [extra_ip] = ipv4_of(netns, "net1")
        assert ip.ip in default.subnet and extra_ip.ip in extra.subnet, (ip, extra_ip)
        assert c.inspectp(sid, verbose=False).status.network.ip == str(ip.ip)
        # cri-net in the container did the work: its cache is the node's (tmp) /var/lib/cni
        cached = sorted(p.name for p in (node.cache / "results").glob(f"*{sid}*"))
        assert cached == sorted([f"{default.name}-{sid}-eth0", f"{extra.name}-{sid}-net1"]), cached
        veth = host_veth(netns)
        tc = subprocess.run(["tc", "qdisc", "show", "dev", veth], capture_output=True, text=True).stdout
        assert "tbf" in tc and "10Mbit" in tc, f"no 10Mbit tbf on {veth}: {tc}"
        with listener_in(netns, CONTAINER_PORT):
            assert tcp_ping(str(default.gateway), port) == "pong:ping"

        c.stopp(sid)
        c.rmp(sid)
        left = [p.name for p in (node.cache / "results").glob(f"*{sid}*")]
        left += [str(p) for p in node.ipam.glob("*/*") if p.is_file() and not p.name.startswith(("last_", "lock"))]
        left += bridge_ports(extra.bridge) + ([] if delegate else bridge_ports(default.bridge))
        nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
        left += [ln for ln in nat.splitlines() if sid in ln]
        assert not Path(netns).exists() and left == [], left

        # The upgrade: SIGTERM while a pod's ADD is in flight on the handoff socket.
        drain = sigterm_during_add(ds, c, slow, node.cache / marker)
        assert not CNI_SOCKET.exists(), "serve left its socket behind after SIGTERM"
        ds.remove_sandbox()
        # the replacement DaemonSet pod tears down the pod its predecessor finished
        ds.start()
        ds.wait_ready()
        c.stopp(drain.sid)
        c.rmp(drain.sid)
        assert not Path(drain.netns).exists()
        left = [p.name for p in (node.cache / "results").glob(f"*{drain.sid}*")] + bridge_ports(slow.bridge)
        assert left == [], left
        stop_seconds = ds.stop()
        assert not CNI_SOCKET.exists(), "serve left its socket behind after SIGTERM"
        audit.assert_clean(ignore=[default.per_network_state, extra.per_network_state, slow.per_network_state])
        print(f"\nimage {image.size / 1e6:.0f} MB ({'cached' if image.cached else f'built in {image.seconds:.0f}s'}), "
              f"import {import_seconds:.1f}s, DaemonSet pod started in {started:.1f}s and ready "
              f"{ready_after:.1f}s later; SIGTERM during an ADD: /readyz 503 after {drain.unready_ms:.0f} ms, "
              f"the ADD answered {drain.add_done_after:.1f}s after SIGTERM, serve exited after "
              f"{drain.stop_seconds:.1f}s; last serve stopped {stop_seconds:.1f}s after SIGTERM")
