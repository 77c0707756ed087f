"""Shared helpers of the fault-injection scenarios (issue 6): kill a real ``cri-net serve``
at chosen moments, race its RPCs, and audit the live host state against what the server
reports.

The live audit (:func:`live_problems`) is the heart of it: after every restart or race, each
pod the server lists must own exactly the host state a pod in its state owns (a READY pod: its
netns, one veth on the bridge, one host-local lease for the IP it reports, its cached
result, its portmap DNAT chain and bandwidth ifb when it asked for them; a NOTREADY pod: at
most its netns), and nothing on the host may belong to a pod the server does not list.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from cri_net.cri.client import CRIClient
from cri_net.cri.pb.runtime.v1 import api_pb2 as pb
from adaptors.cri import annotations as ann
from cri_net.server.sandbox import sandbox_id
from integration.hostaudit import CNI_PLUGIN_DIR, free_port  # noqa: F401 - re-exported for the fault tests
from tests.polling import wait_for_path as wait_for
from integration.hostaudit import Audit, UniqueNet, bridge_ports, ifb_name
from integration.serve_fixture import CRIServer, nsfs_mounts_under

#: Seeds of the randomised scenarios; override to explore: ``CRI_NET_FAULT_SEED=123``.
SEED = int(os.environ.get("CRI_NET_FAULT_SEED", "20240611"))

# A ``loopback`` that shadows the real one (the server's bin dir comes first): while
# <gateDir>/<cmd lower> exists (add / del) it touches <gateDir>/markers/<CMD>-<container id>
# and waits, at most the seconds written in the gate file; then it runs the real plugin.
# The loopback plane is attached first and detached last, so a DEL gate holds a
# StopPodSandbox / RemovePodSandbox after the pod's network is gone but before the server
# has written down that it is gone; an ADD gate holds RunPodSandbox with the netns made and
# nothing attached yet.
_GATED_LOOPBACK_SRC = r'''
import os, subprocess, sys, time
GATE = {gate!r}
REAL = {real!r}
cmd = os.environ.get("CNI_COMMAND", "")
data = sys.stdin.buffer.read()
gate = os.path.join(GATE, cmd.lower())
if cmd in ("ADD", "DEL") and os.path.exists(gate):
    marker = os.path.join(GATE, "markers", cmd + "-" + os.environ.get("CNI_CONTAINERID", "unknown"))
    with open(marker, "w") as fh:
        fh.write(str(os.getpid()))
    try:
        with open(gate) as fh:
            deadline = time.monotonic() + float(fh.read().strip() or 0)
        while time.monotonic() < deadline and os.path.exists(gate):
            time.sleep(0.02)
    except FileNotFoundError:
        pass
proc = subprocess.run([REAL], input=data, capture_output=True)
sys.stdout.buffer.write(proc.stdout)
sys.stderr.buffer.write(proc.stderr)
sys.exit(proc.returncode)
'''


class LoopbackGate:
    """The gated ``loopback`` of one server (install before the server starts)."""

    def __init__(self, srv: CRIServer) -> None:
        self.dir = srv.root / "lo-gate"
        (self.dir / "markers").mkdir(parents=True, exist_ok=True)
        srv.bin_dir.mkdir(parents=True, exist_ok=True)
        plugin = srv.bin_dir / "loopback"
        plugin.write_text(f"#!{sys.executable}\n" + _GATED_LOOPBACK_SRC.format(
            gate=str(self.dir), real=str(CNI_PLUGIN_DIR / "loopback")))
        plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def close(self, cmd: str, seconds: float) -> None:
        """Hold every ``cmd`` ("ADD"/"DEL") of loopback up to ``seconds`` from now on."""
        (self.dir / cmd.lower()).write_text(str(seconds))

    def open(self) -> None:
        """Release the held calls; the next ones run straight away."""
        for cmd in ("add", "del"):
            (self.dir / cmd).unlink(missing_ok=True)

    def marker(self, cmd: str, sid: str) -> Path:
        return self.dir / "markers" / f"{cmd}-{sid}"


# ------------------------------------------------------------------------- pods


def pod_config(name: str, *, uid: str | None = None, namespace: str = "fault", host_port: int | None = None,
               bandwidth: bool = False, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A crictl-style pod config; optionally a TCP port mapping and egress+ingress shaping."""
    cfg: dict[str, Any] = {
        "metadata": {"name": name, "namespace": namespace, "uid": uid or secrets.token_hex(8), "attempt": 0},
        "labels": labels or {}, "annotations": {}, "linux": {},
    }
    if host_port is not None:
        cfg["port_mappings"] = [{"protocol": "TCP", "container_port": 8080, "host_port": host_port}]
    if bandwidth:
        cfg["annotations"] = {ann.INGRESS_BANDWIDTH_ANNOTATION: "10M", ann.EGRESS_BANDWIDTH_ANNOTATION: "5M"}
    return cfg


def config_id(cfg: dict[str, Any]) -> str:
    md = cfg["metadata"]
    return sandbox_id(md["namespace"], md["name"], md["uid"], md.get("attempt", 0))


def audit_of(host_audit: Callable[..., Audit], srv: CRIServer) -> Audit:
    """Host audit of the server's dirs; state provably someone else's is ignored."""
    return host_audit(cache_dir=srv.cache_dir, ipam_dir=srv.ipam_dir, state_dir=srv.state_dir,
                      netns_dirs=[srv.netns_dir], ignore=[srv.foreign_state])


def rpc_code(exc: BaseException) -> str:
    return exc.code().name if isinstance(exc, grpc.RpcError) else type(exc).__name__


class Call:
    """One client call on its own thread with its own client; ``join()`` gives the value or
    the exception (a call that outlives ``deadline`` s is reported, never waited on forever)."""

    def __init__(self, srv: CRIServer, method: str, *args: Any, timeout: float = 60.0,
                 before: Callable[[], Any] | None = None) -> None:
        self.timeout = timeout
        self.method = method
        self.before = before  # e.g. a barrier's wait, so that several calls start at once
        self.outcome: list[Any] = []
        self.client = srv.client(timeout=timeout)
        self.thread = threading.Thread(target=self._run, args=args, daemon=True)
        self.thread.start()

    def _run(self, *args: Any) -> None:
        if self.before is not None:
            self.before()
        try:
            self.outcome.append(getattr(self.client, self.method)(*args))
        except Exception as exc:  # noqa: BLE001 - handed to join()
            self.outcome.append(exc)

    def join(self) -> Any:
        self.thread.join(self.timeout + 10)
        assert not self.thread.is_alive(), f"{self.method} did not return within {self.timeout + 10}s"
        return self.outcome[0]


# ------------------------------------------------------------------------- kill


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry))
    return out


def sigkill(srv: CRIServer, *, group: bool = False, release: Callable[[], None] = lambda: None,
            settle: float = 30.0) -> None:
    """kill -9 the server. ``group``: its whole process group (the plugins it is running die
    too, as under systemd); otherwise only the server, and the plugins it was running are
    left to finish on their own first (``release`` lets held test plugins go on), so the
    restarted server does not race them."""
    assert srv.proc is not None and srv.alive(), "server not running"
    pgid = srv.proc.pid  # start_new_session: the server leads its own group
    if group:
        os.killpg(pgid, signal.SIGKILL)
    srv.kill(signal.SIGKILL)
    release()
    deadline = time.monotonic() + settle
    while group_members(pgid):
        assert time.monotonic() < deadline, f"plugins of the killed server still run after {settle}s"
        time.sleep(0.02)


# ------------------------------------------------------------------------- live audit


def eth0_ipv4(netns: Path) -> list[str]:
    proc = subprocess.run(["nsenter", f"--net={netns}", "ip", "-4", "-o", "addr", "show", "eth0"],
                          capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        return []
    return [m.split("/")[0] for m in re.findall(r"\binet (\S+)", proc.stdout)]



def link_names() -> set[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {m.get("ifname") for m in ipr.get_links()}


def dnat_chain(net: UniqueNet, sid: str) -> str:
    return ("CNI-DN-" + hashlib.sha512((net.name + sid).encode()).hexdigest())[:28]


def nat_chains() -> set[str]:
    out = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"^:(\S+)", out, re.M))


def live_problems(srv: CRIServer, c: CRIClient, net: UniqueNet, wants: dict[str, dict[str, Any]],
                  settle: float = 1.0, stopping: set[str] = frozenset()) -> tuple[list[str], dict[str, str]]:
    """Check every listed pod against the host; returns (problems, READY pod id -> IP).

    ``wants``: pod id -> its config, for the pods whose port mapping / shaping is checked.
    ``stopping``: pods whose StopPodSandbox / RemovePodSandbox was interrupted and not retried
    yet; when NOTREADY, they may still hold some of their network (the retry DELs it again).
    The kernel destroys a released namespace (and the veth end in it) asynchronously, so a
    problem counts only if it is still there after ``settle`` seconds.
    """
    deadline = time.monotonic() + settle
    while True:
        problems, ips = _live_problems(srv, c, net, wants, stopping)
        if not problems or time.monotonic() >= deadline:
            return problems, ips
        time.sleep(0.1)


def _live_problems(srv: CRIServer, c: CRIClient, net: UniqueNet, wants: dict[str, dict[str, Any]],
                   stopping: set[str]) -> tuple[list[str], dict[str, str]]:
    problems: list[str] = []
    pods = {p.id: p for p in c.pods()}
    ready = {sid for sid, p in pods.items() if p.state == pb.SANDBOX_READY}
    # NOTREADY pods whose interrupted stop may have left part of their network behind.
    half = {sid for sid in stopping if sid in pods and sid not in ready}
    leases = srv.leases()
    owners: dict[str, list[str]] = {}
    for ip_, owner in leases.items():
        owners.setdefault(owner, []).append(ip_)
    ips: dict[str, str] = {}
    mounts = {Path(m).name for m in nsfs_mounts_under(srv.netns_dir)} if srv.netns_dir.exists() else set()
    cache = srv.cache_files()
    for sid in sorted(pods):
        st = c.inspectp(sid, verbose=False).status
        if sid in ready:
            ip_ = st.network.ip
            ips[sid] = ip_
            if not ip_:
                problems.append(f"READY pod {sid[:13]} reports no IP (lease {owners.get(sid)}, "
                                f"cache {[f for f in cache if sid in f]})")
                continue
            if ipaddress.IPv4Address(ip_) not in net.subnet:
                problems.append(f"READY pod {sid[:13]} reports {ip_}, not in {net.subnet}")
            if leases.get(ip_) != sid:
                problems.append(f"READY pod {sid[:13]} reports {ip_} but host-local leases it to "
                                f"{leases.get(ip_, 'nobody')!r:.16} (its leases: {owners.get(sid)})")
            if sid not in mounts:
                problems.append(f"READY pod {sid[:13]} has no pinned netns")
            elif eth0_ipv4(srv.netns_path(sid)) != [ip_]:
                problems.append(f"READY pod {sid[:13]} reports {ip_}, eth0 has {eth0_ipv4(srv.netns_path(sid))}")
        elif st.network.ip:
            problems.append(f"NOTREADY pod {sid[:13]} still reports IP {st.network.ip}")
    dup = {ip_ for ip_ in ips.values() if ip_ and list(ips.values()).count(ip_) > 1}
    if dup:
        problems.append(f"duplicate IPs among READY pods: {sorted(dup)}")
    for owner, held in sorted(owners.items()):
        if owner in half:
            continue
        if owner not in ready:
            problems.append(f"lease(s) {held} held by {owner[:13]}, which is not a READY pod "
                            f"({'NOTREADY' if owner in pods else 'not listed'})")
        elif len(held) > 1:
            problems.append(f"pod {owner[:13]} holds several leases {held}")
    for m in sorted(mounts - set(pods)):
        problems.append(f"netns {m[:13]} pinned for a pod the server does not list")
    if set(srv.record_ids()) != set(pods):
        problems.append(f"records on disk {sorted(i[:13] for i in set(srv.record_ids()) ^ set(pods))} "
                        f"differ from the listed pods")
    for f in cache:
        if not any(sid in f for sid in ready | half):
            problems.append(f"cached result {f} of no READY pod")
    ports = bridge_ports(net.bridge)
    if not len(ready) <= len(ports) <= len(ready | half):
        problems.append(f"{len(ports)} veths on {net.bridge} for {len(ready)} READY pods"
                        + (f" and {len(half)} half-stopped ones" if half else ""))
    chains = {ch for ch in nat_chains() if ch.startswith("CNI-DN-")}
    links = link_names()
    for sid, cfg in wants.items():
        has_port, has_bw = bool(cfg.get("port_mappings")), bool(cfg.get("annotations"))
        live = sid in ready
        if sid in half:
            continue
        if (dnat_chain(net, sid) in chains) != (live and has_port):
            problems.append(f"pod {sid[:13]} ({'READY' if live else 'not READY'}, port mapping {has_port}): "
                            f"DNAT chain present={dnat_chain(net, sid) in chains}")
        if (ifb_name(net.name, sid) in links) != (live and has_bw):
            problems.append(f"pod {sid[:13]} ({'READY' if live else 'not READY'}, shaping {has_bw}): "
                            f"ifb present={ifb_name(net.name, sid) in links}")
    return problems, ips
