"""Shared helpers of the fault-injection scenarios, part B (plugins, conf dir, host faults).

A scriptable *fault plugin* (a real executable chained after the real bridge + host-local),
pod configs, the host audit of a ``cri-net serve``, and mount helpers (read-only bind mounts,
tiny tmpfs) that are always undone.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import ipaddress
import json
import os
import re
import secrets
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_net.cri.client import CRIClient
from cri_net.server.sandbox import sandbox_id
from integration.hostaudit import Audit, IptablesLine, UniqueNet, bridge_ports, free_port  # noqa: F401  (re-exported for the fault tests)
from tests.polling import wait_for
from integration.serve_fixture import BANDWIDTH, PORTMAP, CRIServer, nsfs_mounts_under

FAULT_PLUGIN = "crinet-t-fault"

# A chained CNI plugin whose behaviour per CNI_COMMAND comes from a JSON file a test rewrites
# at will ({"ADD": rule | [rules], "DEL": ...}; a rule with "pods" applies only to those pod
# names). Rule keys: sleep, fork_sleep (a child holding the pipes), stdout (raw text instead
# of the result), stderr, exit, signal (kill itself after printing). Every run is logged.
_FAULT_PLUGIN_SRC = r'''
import fcntl, json, os, sys, time
cmd = os.environ.get("CNI_COMMAND", "")
raw = sys.stdin.read()
try:
    conf = json.loads(raw or "{}")
except ValueError:
    conf = {}
if cmd == "VERSION":
    print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}))
    sys.exit(0)
args = dict(kv.split("=", 1) for kv in os.environ.get("CNI_ARGS", "").split(";") if "=" in kv)
pod = args.get("K8S_POD_NAME", "")
try:
    with open(conf["behaviourFile"]) as fh:
        script = json.load(fh)
except (KeyError, OSError, ValueError):
    script = {}
rules = script.get(cmd, [])
if isinstance(rules, dict):
    rules = [rules]
rule = next((r for r in rules if not r.get("pods") or pod in r["pods"]), {})
child = 0
if rule.get("fork_sleep"):
    child = os.fork()
    if child == 0:
        time.sleep(float(rule["fork_sleep"]))
        os._exit(0)
if conf.get("logFile"):
    with open(conf["logFile"], "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(json.dumps({"cmd": cmd, "cid": os.environ.get("CNI_CONTAINERID", ""),
                             "netns": os.environ.get("CNI_NETNS", ""), "pod": pod, "pid": os.getpid(),
                             "child": child, "rule": rule, "t": time.time()}) + "\n")
if rule.get("sleep"):
    time.sleep(float(rule["sleep"]))
if rule.get("stderr"):
    sys.stderr.write(rule["stderr"])
    sys.stderr.flush()
if "stdout" in rule:
    sys.stdout.write(rule["stdout"])
elif cmd == "ADD" and not rule.get("exit"):
    result = dict(conf.get("prevResult") or {})
    result["cniVersion"] = conf.get("cniVersion", "1.0.0")
    sys.stdout.write(json.dumps(result))
sys.stdout.flush()
if rule.get("signal"):
    os.kill(os.getpid(), int(rule["signal"]))
    time.sleep(10)
sys.exit(int(rule.get("exit", 0)))
'''


class FaultPlugin:
    """The fault plugin installed in a server's bin dir, its behaviour file and its run log."""

    def __init__(self, srv: CRIServer) -> None:
        self.dir = srv.root / "fault"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.behaviour_file = self.dir / "behaviour.json"
        self.log_file = self.dir / "log.jsonl"
        srv.bin_dir.mkdir(parents=True, exist_ok=True)
        path = srv.bin_dir / FAULT_PLUGIN
        path.write_text(f"#!{sys.executable} -S\n{_FAULT_PLUGIN_SRC}")
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.set()

    @property
    def conf(self) -> dict[str, Any]:
        """Its entry in a conflist's ``plugins``."""
        return {"type": FAULT_PLUGIN, "behaviourFile": str(self.behaviour_file), "logFile": str(self.log_file)}

    def set(self, **rules: Any) -> None:
        """Behaviour per command, e.g. ``set(ADD={"sleep": 60})``; ``set()`` = well behaved."""
        tmp = self.behaviour_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(rules))
        os.replace(tmp, self.behaviour_file)

    def runs(self, cmd: str | None = None, cid: str | None = None) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        out = [json.loads(line) for line in self.log_file.read_text().splitlines() if line.strip()]
        return [r for r in out if (cmd is None or r["cmd"] == cmd) and (cid is None or r["cid"] == cid)]


def fault_conflist(net: UniqueNet, ipam_dir: Path, fault: FaultPlugin | None) -> dict[str, Any]:
    """bridge (ipMasq) + host-local, then the fault plugin right after bridge, portmap, bandwidth."""
    extra = ([fault.conf] if fault is not None else []) + [PORTMAP, BANDWIDTH]
    return net.conflist(ipam_dir=ipam_dir, ip_masq=True, extra_plugins=extra)


def fault_server(factory: Callable[..., CRIServer], net: UniqueNet, *, name: str = "srv",
                 extra_args: Iterable[str] = ()) -> tuple[CRIServer, FaultPlugin]:
    """A serving ``cri-net serve`` whose only network chains the fault plugin after bridge."""
    srv = factory(name, start=False, conflist=False, extra_args=list(extra_args))
    fault = FaultPlugin(srv)
    write_conf(srv.conf_dir / "10-default.conflist", fault_conflist(net, srv.ipam_dir, fault))
    srv.start()
    return srv, fault


def write_conf(path: Path, doc: dict[str, Any] | str) -> None:
    """Replace a conf file atomically (a rename: the watcher never sees half of it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2))
    os.replace(tmp, path)


# ------------------------------------------------------------------------- pods


def pod_config(name: str, *, uid: str | None = None, namespace: str = "default",
               annotations: dict[str, str] | None = None,
               port_mappings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A pod config as crictl's ``runp pod.json`` takes it."""
    cfg: dict[str, Any] = {"metadata": {"name": name, "namespace": namespace, "uid": uid or secrets.token_hex(8),
                                        "attempt": 0},
                           "labels": {}, "annotations": annotations or {}, "linux": {}}
    if port_mappings:
        cfg["port_mappings"] = port_mappings
    return cfg


def config_id(cfg: dict[str, Any]) -> str:
    md = cfg["metadata"]
    return sandbox_id(md["namespace"], md["name"], md["uid"], md.get("attempt", 0))


def audit_of(host_audit: Callable[..., Audit], srv: CRIServer, other_nets: Iterable[UniqueNet] = ()) -> Audit:
    """Audit of the server's dirs and the host, ignoring state provably not this server's
    (:meth:`CRIServer.foreign_state`), for its network and ``other_nets`` it also uses."""
    views = [srv]
    for net in other_nets:
        view = copy.copy(srv)
        view.net = net
        views.append(view)

    def foreign(category: str, item: Any) -> bool:
        return all(v.foreign_state(category, item) for v in views)

    return host_audit(cache_dir=srv.cache_dir, ipam_dir=srv.ipam_dir, state_dir=srv.state_dir,
                      netns_dirs=[srv.netns_dir], ignore=[foreign])


def eth0_ipv4(netns: Path) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses on eth0 inside the pinned namespace ``netns`` (via nsenter)."""
    proc = subprocess.run(["nsenter", f"--net={netns}", "ip", "-4", "-o", "addr", "show", "eth0"],
                          capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, f"ip addr in {netns}: {proc.stderr}"
    return [ipaddress.IPv4Interface(m).ip for m in re.findall(r"\binet (\S+)", proc.stdout)]


def pod_ip(c: CRIClient, sid: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(c.inspectp(sid, verbose=False).status.network.ip)



def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def pod_traces(srv: CRIServer, sid: str) -> list[str]:
    """What of pod ``sid`` is still on disk: record, netns (file or mount), lease, cache files."""
    out = []
    if sid in srv.record_ids():
        out.append("record")
    if srv.netns_path(sid).exists() or str(srv.netns_path(sid)) in nsfs_mounts_under(srv.netns_dir):
        out.append("netns")
    out += [f"lease {ip}" for ip, owner in srv.leases().items() if owner == sid]
    out += [f"cache {f}" for f in srv.cache_files() if sid in f]
    return out


def masq_lines(net_name: str, sid: str) -> list[IptablesLine]:
    """The bridge plugin's ipMasq state of one pod in nat: its ``CNI-<hash>`` chain and the
    POSTROUTING jump carrying ``name: "<net>" id: "<cid>"``."""
    import hashlib

    from integration.hostaudit import iptables_save

    chain = ("CNI-" + hashlib.sha512((net_name + sid).encode()).hexdigest())[:28]
    return [ln for ln in iptables_save("ipv4", "nat")
            if ln.chain == chain or ln.target == chain or f'id: \\"{sid}\\"' in ln.line]


def pid_gone(pid: int) -> bool:
    """True once ``pid`` runs no more (gone, or a zombie: dead either way)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


# ------------------------------------------------------------------------- mounts


def _umount(path: Path) -> None:
    proc = subprocess.run(["umount", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:  # busy: detach it anyway, the test must not leave mounts behind
        subprocess.run(["umount", "-l", str(path)], capture_output=True, text=True, check=False)


def is_mountpoint(path: Path) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        return any(line.split()[4] == real for line in fh)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` bind-mounted on itself read-only for the duration; always unmounted."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True, capture_output=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True, capture_output=True)
        probe = path / f".probe-{secrets.token_hex(3)}"
        with pytest.raises(OSError) as info:
            probe.write_text("x")
        assert info.value.errno == errno.EROFS
        yield path
    finally:
        _umount(path)
        assert not is_mountpoint(path), f"{path} still mounted"


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str = "64k") -> Iterator[Path]:
    """A ``size`` tmpfs mounted on ``path`` (hiding what is there) for the duration."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        _umount(path)
        assert not is_mountpoint(path), f"{path} still mounted"


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` up with one file; returns it (delete to free)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def host_links() -> set[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {m.get("ifname") for m in ipr.get_links()}
