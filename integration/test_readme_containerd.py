"""The README's containerd set-up, exactly as written (issue 10).

Every other containerd test gives cri-net private directories; this one does not, because
the set-up a user follows is the one that must work. From README.md itself (so the two
cannot drift apart) it takes the launcher install command, the `make run` command and the
runtime-side conflist, byte for byte, under the file name the README gives. cri-net's
networks go where the README puts them (`/etc/cri-net/net.d`), the result cache is the
default `/var/lib/cni` that containerd shares, host-local keeps its leases in the default
`/var/lib/cni/networks`, and the launcher lives in `/opt/cni/bin`, which the conflist's
`binDirs` lists too. Then a pod with an extra plane, a bandwidth annotation and a host port
is started, stopped and removed, in-process and handed to a running `make run`; stop and
remove must be prompt, and nothing may be left: veths, leases, cache files (containerd's
own entry included), DNAT rules, the netns.

Whatever exists in the default directories before the test is moved aside and put back.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from cri_net.cri.pb.runtime.v1 import api_pb2 as pb
from integration.containerd.harness import ContainerdEnv, HarnessError, containerd_env
from integration.hostaudit import Audit, UniqueNet, bridge_ports
from integration.test_containerd_e2e import (BANDWIDTH, CONTAINER_PORT, PORTMAP, free_port, ipv4_of, listener_in,
                                             pod_config, tcp_ping)

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CRINET_CONF_DIR = Path("/etc/cri-net/net.d")
BIN_DIR = Path("/opt/cni/bin")
CACHE_DIR = Path("/var/lib/cni")
IPAM_DIR = CACHE_DIR / "networks"
CRI_SOCKET = Path("/run/cri-net/cri-net.sock")
CNI_SOCKET = Path("/run/cri-net/cni.sock")
#: what `make run` (cri-net serve with its defaults) creates besides the conf dir
SERVE_DIRS = [Path("/var/lib/cri-net"), Path("/run/cri-net")]
#: stop and remove must come back well inside crictl's and kubelet's deadlines
PROMPT_SECONDS = 20.0


class ReadmeSetup:
    """The README's containerd section, read from README.md."""

    def __init__(self) -> None:
        text = README.read_text()
        section = text[text.index("- **As a CNI plugin behind containerd"):]
        commands = re.search(r"```sh\n(.*?)```", section, re.S)
        assert commands, "README: no sh block in the containerd section"
        lines = [ln.split("#")[0].strip() for ln in commands.group(1).splitlines()]
        self.install = next(ln for ln in lines if "cni-plugin install" in ln)
        self.run = next(ln for ln in lines if ln.startswith("make run"))
        m = re.search(r"conflist as `([^`]+)`.*?```json\n(.*?)```", section, re.S)
        assert m, "README: no runtime-side conflist in the containerd section"
        self.conflist_path = Path(m.group(1))
        self.conflist = textwrap.dedent(m.group(2)).encode()
        conf = json.loads(self.conflist)
        [plugin] = conf["plugins"]
        self.hook_type, self.hook_name = plugin["type"], conf["name"]
        assert plugin["confDir"] == str(CRINET_CONF_DIR) and str(BIN_DIR) in plugin["binDirs"], plugin
        assert "cacheDir" not in plugin, "the README's conflist shares the default cache dir: test it as shown"


@contextlib.contextmanager
def moved_aside(paths: list[Path], store: Path) -> Iterator[None]:
    """Move whatever is at ``paths`` into ``store`` and put it back afterwards (after removing
    what the test left there)."""
    saved: list[tuple[Path, Path]] = []
    for i, path in enumerate(paths):
        if path.exists() or path.is_symlink():
            dest = store / f"{i}-{path.name}"
            shutil.move(str(path), dest)
            saved.append((path, dest))
    try:
        yield
    finally:
        for path in paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists() or path.is_symlink():
                path.unlink()
        for path, dest in saved:
            shutil.move(str(dest), path)


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def operator_env() -> dict[str, str]:
    """The environment of an operator's shell: under `make test ARGS=...` make hands its
    command-line variables to every make below it (MAKEFLAGS), and `make run` would pass the
    test's ARGS to `cri-net serve`."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "ARGS")}


@contextlib.contextmanager
def make_run(command: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`make run` in the repository, as the README says; SIGTERM and wait at the end."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", command], cwd=REPO, env=operator_env(), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (_listening(CRI_SOCKET) and _listening(CNI_SOCKET)):
            assert proc.poll() is None, f"make run exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"make run did not listen in 60 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            masks = _signal_masks(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(f"make run did not stop on SIGTERM ({masks}):\n{log.read_text()[-3000:]}") from None


def _signal_masks(pgid: int) -> str:
    """SigBlk/SigIgn of every process of the group: why a SIGTERM was not acted on."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) != pgid:
                continue
            fields = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                          if ":\t" in line)
            out.append(f"{fields['Name']}[{pid}] blocked={fields['SigBlk'].strip()} ignored={fields['SigIgn'].strip()}")
        except (OSError, KeyError, ValueError):
            continue
    return "; ".join(out) or "no process left in the group"


@pytest.fixture
def readme_node(tmp_path: Path, net_factory: Callable[[], UniqueNet]) -> Iterator[tuple[ReadmeSetup, UniqueNet, UniqueNet]]:
    """The node as the README leaves it, minus containerd: launcher installed with the
    README's command, cri-net's default network and an extra plane in /etc/cri-net/net.d."""
    for sock in (CRI_SOCKET, CNI_SOCKET):
        if _listening(sock):
            pytest.fail(f"a cri-net serve already listens on {sock}: the README's set-up cannot be tested "
                        "as written on this host", pytrace=False)
    setup = ReadmeSetup()
    default, extra = net_factory(), net_factory()
    store = tmp_path / "moved-aside"
    store.mkdir()
    touched = [CRINET_CONF_DIR, BIN_DIR / "cri-net", BIN_DIR / ".cri-net-py", *SERVE_DIRS]
    with moved_aside(touched, store):
        CRINET_CONF_DIR.mkdir(parents=True)
        (CRINET_CONF_DIR / f"10-{default.name}.conflist").write_text(
            json.dumps(default.conflist(extra_plugins=[PORTMAP, BANDWIDTH])))
        (CRINET_CONF_DIR / f"20-{extra.name}.conflist").write_text(json.dumps(extra.conflist()))
        proc = subprocess.run(["bash", "-c", setup.install], cwd=REPO, env=operator_env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{setup.install}: {proc.stderr}"
        assert (BIN_DIR / "cri-net").is_file()
        yield setup, default, extra


def _start(tmp_path: Path, setup: ReadmeSetup) -> contextlib.AbstractContextManager[ContainerdEnv]:
    return containerd_env(tmp_path, setup.conflist, [str(BIN_DIR), "/usr/lib/cni"],
                          cni_conf_file=setup.conflist_path.name)


def _leftovers(sid: str, netns: str, default: UniqueNet, extra: UniqueNet) -> list[str]:
    found = [f"cache file {p}" for p in (CACHE_DIR / "results").glob(f"*{sid}*")]
    for net in (default, extra):
        found += [f"lease {p}" for p in (IPAM_DIR / net.name).glob("*") if p.is_file()
                  and not p.name.startswith(("last_reserved_ip", "lock"))]
        found += [f"veth {v} on {net.bridge}" for v in bridge_ports(net.bridge)]
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
    found += [f"nat rule {ln}" for ln in nat.splitlines() if sid in ln]
    if Path(netns).exists():
        found.append(f"netns {netns}")
    return found


@pytest.mark.parametrize("with_serve", [False, True], ids=["inprocess", "make-run"])
def test_readme_containerd_setup(with_serve: bool, tmp_path: Path, readme_node: tuple[ReadmeSetup, UniqueNet, UniqueNet],
                                 host_audit: Callable[..., Audit]) -> None:
    setup, default, extra = readme_node
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(make_run(setup.run, tmp_path / "serve.log")) if with_serve else None
        try:
            env = stack.enter_context(_start(tmp_path, setup))
        except HarnessError as exc:
            pytest.fail(f"cannot run containerd on this host: {exc}", pytrace=False)
        audit = host_audit(cache_dir=CACHE_DIR, ipam_dir=IPAM_DIR,
                           ignore=[env.foreign_state([default, extra]), default.per_network_state,
                                   extra.per_network_state])
        c = env.client()
        host_port = free_port()
        annotations = {"network.alpha.kubernetes.io/network": json.dumps([{"name": extra.name, "interface": "net1"}]),
                       "kubernetes.io/ingress-bandwidth": "10M"}
        try:
            sid = c.runp(pod_config("readme", annotations=annotations, port_mappings=[
                {"protocol": pb.TCP, "container_port": CONTAINER_PORT, "host_port": host_port}]))
        except grpc.RpcError as exc:
            raise AssertionError(f"RunPodSandbox failed: {exc.code()} {exc.details()}\n{env.log_tail()}") from None
        netns = env.netns_of(sid, c)
        [ip] = ipv4_of(netns, "eth0")
        [extra_ip] = ipv4_of(netns, "net1")
        assert ip.ip in default.subnet and extra_ip.ip in extra.subnet
        assert c.inspectp(sid, verbose=False).status.network.ip == str(ip.ip)
        # cri-net's attachments and containerd's own entry for the hook share /var/lib/cni
        cached = sorted(p.name for p in (CACHE_DIR / "results").glob(f"*{sid}*"))
        assert f"{setup.hook_name}-{sid}-eth0" in cached and f"{default.name}-{sid}-eth0" in cached, cached
        [host_veth] = bridge_ports(default.bridge)
        tc = subprocess.run(["tc", "qdisc", "show", "dev", host_veth], capture_output=True, text=True).stdout
        assert "tbf" in tc, tc
        with listener_in(netns, CONTAINER_PORT):
            assert tcp_ping(str(default.gateway), host_port) == "pong:ping"

        t0 = time.monotonic()
        try:
            c.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=PROMPT_SECONDS)
            c.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=PROMPT_SECONDS)
        except grpc.RpcError as exc:
            raise AssertionError(f"stop/remove failed: {exc.code()} {exc.details()}\n{env.log_tail()}") from None
        took = time.monotonic() - t0
        assert took < PROMPT_SECONDS, f"stopp + rmp took {took:.1f} s"
        assert sid not in {p.id for p in c.pods()}
        left = _leftovers(sid, netns, default, extra)
        assert left == [], "left behind:\n  " + "\n  ".join(left)
        audit.assert_clean()
        if server is not None:
            log = (tmp_path / "serve.log").read_text()
            calls = re.findall(r'"CNI call" command=(\w+) pod=default/readme ', log)
            assert calls == ["ADD", "DEL", "DEL"], log[-3000:]


def test_make_run_writes_its_default_network_where_the_runtime_does_not_look(tmp_path: Path) -> None:
    """`make run` on an empty node writes cri-net-default into cri-net's own conf dir, so
    the README's containerd steps, taken afterwards, still leave 00-cri-net.conflist first."""
    setup = ReadmeSetup()
    for sock in (CRI_SOCKET, CNI_SOCKET):
        if _listening(sock):
            pytest.fail(f"a cri-net serve already listens on {sock}", pytrace=False)
    runtime_dir = setup.conflist_path.parent
    store = tmp_path / "moved-aside"
    store.mkdir()
    before = sorted(os.listdir(runtime_dir)) if runtime_dir.is_dir() else []
    with moved_aside([CRINET_CONF_DIR, *SERVE_DIRS], store):
        with make_run(setup.run, tmp_path / "serve.log"):
            written = sorted(os.listdir(CRINET_CONF_DIR))
        assert written == ["10-cri-net-default.conflist"], written
        after = sorted(os.listdir(runtime_dir)) if runtime_dir.is_dir() else []
        assert after == before, f"make run wrote into the runtime's conf dir {runtime_dir}: {after}"
        assert setup.conflist_path.name < "10-cri-net-default.conflist"
