"""A real ``cri-net serve`` for the root integration tests (issue 4).

Import the fixtures into a test module::

    from integration.serve_fixture import cri_server, cri_server_factory  # noqa: F401

    def test_something(cri_server):
        with cri_server.client() as c:
            sid = c.runp({...})

``cri_server`` is a :class:`CRIServer` already serving: a ``.venv/bin/cri-net serve``
subprocess whose every directory lives in the test's ``tmp_path`` (conf dir holding one
conflist built from ``unique_net``: bridge with ipMasq and isGateway + host-local with its
``dataDir`` in tmp + portmap + bandwidth; socket ``cri.sock``; netns dir ``netns``; state
dir; cache dir).  ``cri_server_factory(...)`` makes more (an empty conf dir, a shared
socket, a slow plugin in the chain...).

Teardown (passed or failed test): every server that still knows a pod gets it removed
through RemovePodSandbox (a dead server is started again first, so its restart
reconciliation runs), then every server is stopped; only then does the harness purge the
network (the fixtures depend on ``unique_net``, so they are torn down before it).  As a
last resort, nsfs mounts left in a netns dir are unmounted so the tmp dir can be deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_net.cri.client import CRIClient
from integration.hostaudit import CNI_PLUGIN_DIR
from integration.hostaudit import IptablesLine, Link, Qdisc, UniqueNet, ifb_name

CRI_NET = Path(sys.executable).with_name("cri-net")
PORTMAP: dict[str, Any] = {"type": "portmap", "capabilities": {"portMappings": True}}
BANDWIDTH: dict[str, Any] = {"type": "bandwidth", "capabilities": {"bandwidth": True}}
#: The CRI adaptor skips files starting with ``crinet-`` (the native adaptor's), so the
#: file name must not, even though the network's name does.
CONF_FILE = "10-default.conflist"
SLOW_PLUGIN = "crinet-t-slow"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 40.0

# A chained CNI plugin that passes prevResult through. On ADD it first touches
# <markerDir>/<container id> (so a test knows the chain got this far) and then waits while
# <delayFile> exists, at most the number of seconds written in it (no file: no wait), so a
# test can act while a RunPodSandbox is in the middle of its chain, then release it.
_SLOW_PLUGIN_SRC = r'''
import json, os, sys, time
cmd = os.environ.get("CNI_COMMAND", "")
conf = json.loads(sys.stdin.read() or "{}")
if cmd == "VERSION":
    print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}))
    sys.exit(0)
if cmd == "ADD":
    marker = os.path.join(conf["markerDir"], os.environ.get("CNI_CONTAINERID", "unknown"))
    with open(marker, "w") as fh:
        fh.write(str(os.getpid()))
    try:
        with open(conf["delayFile"]) as fh:
            deadline = time.monotonic() + float(fh.read().strip() or 0)
        while time.monotonic() < deadline and os.path.exists(conf["delayFile"]):
            time.sleep(0.02)
    except FileNotFoundError:
        pass
    result = dict(conf.get("prevResult") or {})
    result["cniVersion"] = conf.get("cniVersion", "1.0.0")
    print(json.dumps(result))
sys.exit(0)
'''


def default_conflist(net: UniqueNet, ipam_dir: Path, *, slow_dir: Path | None = None,
                     extra_plugins: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """bridge (ipMasq, isGateway) + host-local in ``ipam_dir`` + [slow] + portmap + bandwidth."""
    plugins: list[Mapping[str, Any]] = []
    if slow_dir is not None:
        plugins.append({"type": SLOW_PLUGIN, "markerDir": str(slow_dir / "markers"),
                        "delayFile": str(slow_dir / "delay")})
    plugins += [PORTMAP, BANDWIDTH, *extra_plugins]
    return net.conflist(ipam_dir=ipam_dir, ip_masq=True, extra_plugins=plugins)


def _unix_socket_alive(path: Path) -> bool:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def nsfs_mounts_under(directory: Path) -> list[str]:
    """Mount points of pinned network namespaces (nsfs) below ``directory``."""
    prefix = os.path.realpath(directory).rstrip("/") + "/"
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            if right.startswith("nsfs ") and left.split()[4].startswith(prefix):
                out.append(left.split()[4])
    return out


class CRIServer:
    """One ``cri-net serve`` process (possibly started several times) and its directories.

    Paths: ``root``, ``conf_dir``, ``socket``, ``netns_dir``, ``state_dir``, ``cache_dir``,
    ``ipam_dir``, ``log_path`` (stdout+stderr of every run, appended), ``bin_dir`` (extra
    plugins, e.g. the slow one).  ``proc`` is the live ``Popen`` (None before start).
    """

    def __init__(self, root: Path, net: UniqueNet | None, *, conflist: bool | dict[str, Any] = True,
                 socket: Path | None = None, slow_plugin: bool = False, share_dirs_with: CRIServer | None = None,
                 extra_args: Iterable[str] = (), install_default_network: bool = False) -> None:
        self.root = root
        self.net = net
        base = share_dirs_with.root if share_dirs_with is not None else root
        self.conf_dir = base / "net.d"
        self.netns_dir = base / "netns"
        self.state_dir = base / "state"
        self.cache_dir = base / "cache"
        self.ipam_dir = base / "ipam"
        self.bin_dir = base / "bin"
        self.slow_dir = base / "slow"
        self.socket = socket or root / "cri.sock"
        self.log_path = root / "serve.log"
        self.extra_args = list(extra_args)
        self.install_default_network = install_default_network
        #: A server sharing another's directories leaves the pods to that one at teardown.
        self.owns_pods = share_dirs_with is None
        #: Pod ids a test knows of (see :meth:`pod_ids`).
        self.known_ids: set[str] = set()
        self._logged_ids: tuple[int, frozenset[str]] = (-1, frozenset())
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self._clients: list[CRIClient] = []
        root.mkdir(parents=True, exist_ok=True)
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        if net is not None:
            net.ipam_dirs.add(self.ipam_dir)
            net.cache_dirs.add(self.cache_dir)
        if slow_plugin:
            self._install_slow_plugin()
        if share_dirs_with is None and net is not None and conflist:
            doc = conflist if isinstance(conflist, dict) else default_conflist(
                net, self.ipam_dir, slow_dir=self.slow_dir if slow_plugin else None)
            (self.conf_dir / CONF_FILE).write_text(json.dumps(doc, indent=2))

    # ------------------------------------------------------------------ slow plugin
    def _install_slow_plugin(self) -> None:
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        (self.slow_dir / "markers").mkdir(parents=True, exist_ok=True)
        plugin = self.bin_dir / SLOW_PLUGIN
        plugin.write_text(f"#!{sys.executable}\n{_SLOW_PLUGIN_SRC}")
        plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def set_slow_delay(self, seconds: float | None) -> None:
        """Make the slow plugin's ADD wait up to ``seconds``; None releases waiting ADDs
        and makes the next ones not wait at all."""
        delay = self.slow_dir / "delay"
        if seconds is None:
            delay.unlink(missing_ok=True)
        else:
            delay.write_text(str(seconds))

    def slow_marker(self, sandbox_id: str) -> Path:
        """The file the slow plugin touches when its ADD for ``sandbox_id`` starts."""
        return self.slow_dir / "markers" / sandbox_id

    # ------------------------------------------------------------------ process
    @property
    def command(self) -> list[str]:
        cmd = [str(CRI_NET), "serve", "--listen", f"unix://{self.socket}", "--conf-dir", str(self.conf_dir)]
        if self.bin_dir.is_dir():
            cmd += ["--bin-dir", str(self.bin_dir)]
        cmd += ["--bin-dir", str(CNI_PLUGIN_DIR), "--cache-dir", str(self.cache_dir), "--state-dir",
                str(self.state_dir), "--netns-dir", str(self.netns_dir), "--plugin-timeout", "30",
                "--log-level", "debug"]
        if self.install_default_network:
            cmd.append("--install-default-network")
        return cmd + self.extra_args

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to serve."""
        assert not self.alive(), "server already running"
        self.runs += 1
        with open(self.log_path, "ab") as log:
            log.write(f"===== run {self.runs}: {' '.join(self.command)}\n".encode())
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        env = dict(os.environ)
        env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        try:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                         start_new_session=True)
        finally:
            log.close()
        return self.proc

    def start(self, timeout: float = START_TIMEOUT) -> CRIServer:
        """Start and wait until Version answers on the socket and the start-up GC round (which
        runs beside serving) has finished, so a test sees the settled state."""
        rounds = self._gc_rounds_logged()
        proc = self.spawn()
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"cri-net serve exited with {proc.returncode} before serving:\n{self.log_tail()}")
            if self.socket.exists() and _unix_socket_alive(self.socket) and self._gc_rounds_logged() > rounds:
                try:
                    with CRIClient(str(self.socket), timeout=2.0):
                        return self
                except grpc.RpcError:
                    pass
            if time.monotonic() > deadline:
                self.kill(signal.SIGKILL)
                raise AssertionError(f"cri-net serve did not serve within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def _gc_rounds_logged(self) -> int:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text.count("start-up GC done") + text.count("start-up GC failed")

    def run_to_exit(self, timeout: float = START_TIMEOUT) -> tuple[int, str]:
        """Start a server that is expected to give up: (exit code, what this run logged)."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        proc = self.spawn()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            raise AssertionError(f"cri-net serve was expected to exit but still runs after {timeout}s:\n"
                                 f"{self.log_tail()}") from None
        return rc, self.log_path.read_bytes()[offset:].decode(errors="replace")

    def send(self, sig: int) -> None:
        """Send ``sig`` to the server (by pid) without waiting."""
        assert self.alive(), "server not running"
        self.proc.send_signal(sig)  # type: ignore[union-attr]

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the server to exit; its exit code."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self, sig: int = signal.SIGKILL, timeout: float = STOP_TIMEOUT) -> int | None:
        """Send ``sig`` to the server (by pid) and wait for it to exit; its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful stop: SIGTERM, wait, assert exit 0 and the socket removed."""
        assert self.alive(), "server not running"
        self.send(signal.SIGTERM)
        self.assert_stopped_cleanly(timeout)

    def assert_stopped_cleanly(self, timeout: float = STOP_TIMEOUT) -> None:
        """Wait for the exit that a SIGTERM started; assert exit 0 and the socket removed."""
        rc = self.wait(timeout)
        assert rc == 0, f"cri-net serve exited {rc} on SIGTERM:\n{self.log_tail()}"
        assert not self.socket.exists(), f"{self.socket} left behind by a graceful stop"

    def restart(self, timeout: float = START_TIMEOUT) -> CRIServer:
        """Stop gracefully if running (a dead server is just started again), then start."""
        if self.alive():
            self.stop()
        return self.start(timeout)

    def client(self, timeout: float = 30.0) -> CRIClient:
        """A new CRIClient (crictl-like) on the socket; closed at teardown if not before."""
        c = CRIClient(str(self.socket), timeout=timeout)
        self._clients.append(c)
        return c

    # ------------------------------------------------------------------ inspection
    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.splitlines()[-lines:])

    def netns_path(self, sandbox_id: str) -> Path:
        return self.netns_dir / sandbox_id

    def record_ids(self) -> list[str]:
        """Ids of the sandbox records on disk (any state, CREATING included)."""
        d = self.state_dir / "sandboxes"
        return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []

    def leases(self) -> dict[str, str]:
        """host-local leases of the test network: ip -> container id."""
        if self.net is None:
            return {}
        d = self.ipam_dir / self.net.name
        out: dict[str, str] = {}
        if d.is_dir():
            for p in d.iterdir():
                if p.is_file() and not (p.name == "lock" or p.name.startswith("last_reserved_ip.")):
                    out[p.name] = (p.read_text(errors="replace").splitlines() or [""])[0].strip()
        return out

    def cache_files(self) -> list[str]:
        d = self.cache_dir / "results"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    # ------------------------------------------------------------------ audit filter
    def pod_ids(self) -> set[str]:
        """Every sandbox id this server's pods ever had: from its log, records and leases,
        plus :attr:`known_ids` (ids a test computed for requests that may not have logged)."""
        size = self.log_path.stat().st_size if self.log_path.exists() else 0
        if self._logged_ids[0] != size:  # the filter asks once per changed item: read once
            self._logged_ids = (size, frozenset(re.findall(r"pod_id=([0-9a-f]{64})\b", self.log)))
        return set(self._logged_ids[1]) | set(self.record_ids()) | set(self.leases().values()) | self.known_ids

    def foreign_state(self, category: str, item: Any) -> bool:
        """Ignore predicate (for ``host_audit``) for host state that is provably *not* this
        server's: the host is shared with whatever else runs concurrently (other sessions,
        benchmarks), and the audit looks at the whole host.

        Foreign: namespaces pinned in /run/netns (the server pins only in its netns dir);
        bridges other than the test's; veths enslaved to another bridge, or on no bridge
        with their peer on the host too; other links (and their qdiscs) that are not one
        of this server's pods' ifb devices; iptables
        lines naming neither the test network (name, bridge, an address in its subnet),
        nor one of this server's pod ids, nor a per-pod chain of them.  Anything that could
        be this server's (a veth on no bridge whose peer is in a namespace) is kept, so real
        leaks still show.
        """
        if self.net is None:
            return False
        if category == "netns":
            return str(item).startswith("/run/netns/")
        if category == "links" and isinstance(item, Link):
            return self._foreign_link(item.name)
        if category == "qdiscs" and isinstance(item, Qdisc):
            return self._foreign_link(item.dev)
        if category == "iptables" and isinstance(item, IptablesLine):
            return not self._our_rule(item)
        return False

    def _foreign_link(self, name: str) -> bool:
        assert self.net is not None
        if name == self.net.bridge or name in {ifb_name(self.net.name, i) for i in self.pod_ids()}:
            return False
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        # one link (and its master) asked of the kernel by name: an audit asks about every
        # new link, and on a host where another run churns thousands of veths a full dump
        # per link would take minutes
        with IPRoute() as ipr:
            try:
                [link] = ipr.link("get", ifname=name)
            except NetlinkError:
                return True  # gone since the snapshot: not left behind by anyone
            info = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or ""
            if info != "veth":
                return True  # another bridge, or a device our pods never get (only ifb, by name)
            master_index = link.get("master")
            master = None
            if master_index:
                with contextlib.suppress(NetlinkError):  # its master just went: judged as on no bridge
                    [master] = ipr.link("get", index=master_index)
            if master is not None:
                return master.get("ifname") != self.net.bridge
        # On no bridge: ours only if its peer is in another namespace (a pod's eth0); a pair
        # with both ends on the host is someone's test veth.
        return link.get("IFLA_LINK_NETNSID") is None

    def _our_rule(self, line: IptablesLine) -> bool:
        assert self.net is not None
        net, text = self.net, line.line
        word = r"(?<![\w-]){}(?![\w-])"
        if any(re.search(word.format(re.escape(w)), text) for w in (net.name, net.bridge)):
            return True
        for m in re.finditer(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(/\d{1,2})?(?![\d.])", text):
            with contextlib.suppress(ValueError):
                if ipaddress.IPv4Network(m.group(1) + (m.group(2) or ""), strict=False).subnet_of(net.subnet):
                    return True
        ids = self.pod_ids()
        if any(i in text for i in ids):
            return True
        chains = set()
        for i in ids:
            digest = hashlib.sha512((net.name + i).encode()).hexdigest()
            chains |= {("CNI-" + digest)[:28], ("CNI-DN-" + digest)[:28]}
        return line.chain in chains or line.target in chains

    # ------------------------------------------------------------------ teardown
    def cleanup(self) -> list[str]:
        """Best effort: remove every pod the server knows, stop it; returns the problems."""
        problems: list[str] = []
        ids = set(self.record_ids()) if self.owns_pods else set()
        if ids:
            try:
                if not self.alive():
                    self.start()
                with self.client(timeout=60) as c:
                    ids |= {p.id for p in c.pods()}
                    for sid in sorted(ids):
                        try:
                            c.rmp(sid)
                        except grpc.RpcError as exc:
                            problems.append(f"rmp {sid[:13]}: {exc.code()} {exc.details()}")
            except Exception as exc:  # noqa: BLE001 - teardown carries on
                problems.append(f"removing pods: {exc}")
        for c in self._clients:
            with contextlib.suppress(Exception):
                c.close()
        if self.alive():
            try:
                rc = self.kill(signal.SIGTERM, timeout=15)
                if rc != 0:
                    problems.append(f"exit code {rc} on SIGTERM")
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                problems.append("did not exit within 15 s of SIGTERM (killed)")
        for mount in nsfs_mounts_under(self.netns_dir) if self.netns_dir.exists() else []:
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
            problems.append(f"netns {mount} still mounted after the pods were removed (unmounted)")
        return problems


@pytest.fixture
def cri_server_factory(tmp_path: Path, unique_net: UniqueNet) -> Iterator[Callable[..., CRIServer]]:
    """``make(name="srv", start=True, **CRIServer kwargs) -> CRIServer`` in ``tmp_path/name``.

    Every server made is cleaned up at teardown (pods removed, process stopped).
    """
    servers: list[CRIServer] = []

    def make(name: str = "srv", *, start: bool = True, net: UniqueNet | None = unique_net,
             **kwargs: Any) -> CRIServer:
        srv = CRIServer(tmp_path / name, net, **kwargs)
        servers.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    problems: list[str] = []
    for srv in reversed(servers):
        problems += [f"{srv.root.name}: {p}" for p in srv.cleanup()]
    if problems:
        warnings.warn("cri-net serve teardown: " + "; ".join(problems), stacklevel=1)


@pytest.fixture
def cri_server(cri_server_factory: Callable[..., CRIServer]) -> CRIServer:
    """A serving ``cri-net serve`` on ``unique_net`` (see the module docstring)."""
    return cri_server_factory()
