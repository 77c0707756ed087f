"""Fault injection: the conf dir changes under load (issue 6, part B).

A thread keeps creating, checking and removing pods on a real ``cri-net serve`` while the main
thread edits its conf dir: the default network's bridge and subnet change (same network
name), an unparsable file appears, a second network is added, the default file is truncated
in place, the only usable file is removed (the server keeps its last good set and says why),
then the original config is restored. Pods made at every stage are kept: their status IP must
stay right throughout, and at the end each is torn down with the config it was created with
(its cached config names its original bridge), releasing its lease, with nothing leaked.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from integration.faultkit_b import (
    audit_of,
    bridge_ports,
    eth0_ipv4,
    masq_lines,
    pod_config,
    pod_ip,
    pod_traces,
    wait_for,
)
from integration.hostaudit import Audit, UniqueNet
from integration.serve_fixture import CONF_FILE, CRIServer, cri_server_factory, default_conflist  # noqa: F401
from tests.reliability import record, scale

_RELOAD = re.compile(r"loaded networks|no usable networks; keeping previous|reload failed")


def reloads(srv: CRIServer) -> int:
    """How many conf dir reloads the server has logged."""
    return len(_RELOAD.findall(srv.log))


def replace_file(srv: CRIServer, name: str, text: str) -> None:
    """Atomic replace from outside the conf dir: the watcher sees one event, the final file."""
    tmp = srv.root / f"staging-{name}"
    tmp.write_text(text)
    tmp.replace(srv.conf_dir / name)


def cached_bridge(srv: CRIServer, net_name: str, sid: str) -> str:
    """The bridge named by the config cached for the pod's eth0 (what its DEL will use)."""
    doc = json.loads((srv.cache_dir / "results" / f"{net_name}-{sid}-eth0").read_bytes())
    return str(json.loads(base64.b64decode(doc["config"]))["plugins"][0]["bridge"])


class Churn(threading.Thread):
    """Creates, checks and removes pods until stopped; records every failure."""

    def __init__(self, srv: CRIServer, nets: dict[str, list[UniqueNet]]) -> None:
        super().__init__(name="churn", daemon=True)
        self.srv, self.nets = srv, nets
        self.stop_event = threading.Event()
        self.done = 0
        self.errors: list[str] = []
        self.cond = threading.Condition()

    def run(self) -> None:
        with self.srv.client(timeout=60) as c:
            n = 0
            while not self.stop_event.is_set() and len(self.errors) < 10:
                n += 1
                sid = ""
                try:
                    sid = c.runp(pod_config(f"churn-{n}"))
                    status = c.inspectp(sid)
                    ip = ipaddress.IPv4Address(status.status.network.ip)
                    [net_name] = {k.split("/")[0] for k in json.loads(status.info["cniResults"])} - {"cni-loopback"}
                    subnets = [n.subnet for n in self.nets.get(net_name, [])]
                    if not any(ip in s for s in subnets):
                        self.errors.append(f"churn-{n}: ip {ip} not in a subnet of {net_name} {subnets}")
                    if eth0_ipv4(self.srv.netns_path(sid)) != [ip]:
                        self.errors.append(f"churn-{n}: status ip {ip} is not eth0's")
                    for rpc, call in (("StopPodSandbox", c.stopp), ("RemovePodSandbox", c.rmp)):
                        try:  # a failed stop is reported, and the pod is removed all the same
                            call(sid)
                        except grpc.RpcError as exc:
                            self.errors.append(f"churn-{n} ({sid[:13]}) on {net_name}: {rpc}: {exc.details()}")
                    left = pod_traces(self.srv, sid) + [f"lease {p.name}" for p in lease_files(self.srv, sid)]
                    left += [f"ipMasq {ln.line}" for ln in masq_lines(net_name, sid)]
                    if left:
                        self.errors.append(f"churn-{n}: left behind {left}")
                except (grpc.RpcError, AssertionError, ValueError, OSError) as exc:
                    detail = exc.details() if isinstance(exc, grpc.RpcError) else repr(exc)
                    self.errors.append(f"churn-{n} ({sid[:13]}): {detail}")
                with self.cond:
                    self.done += 1
                    self.cond.notify_all()

    def wait_more(self, count: int, timeout: float = 60.0) -> None:
        """Wait until ``count`` more lifecycles have finished."""
        with self.cond:
            target = self.done + count
            assert self.cond.wait_for(lambda: self.done >= target or not self.is_alive(), timeout), "churn stalled"


def lease_files(srv: CRIServer, sid: str) -> list[Path]:
    """host-local leases held by ``sid`` in any network's dir of the server's ipam dir."""
    out = []
    for d in srv.ipam_dir.iterdir() if srv.ipam_dir.is_dir() else []:
        for p in d.iterdir():
            if p.is_file() and p.name[0].isdigit() and p.read_text(errors="replace").split() [:1] == [sid]:
                out.append(p)
    return out


def test_conf_dir_changes_under_load(
    cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet, net_factory: Callable[[], UniqueNet],
    host_audit: Callable[..., Audit]
) -> None:
    a, b, other = unique_net, net_factory(), net_factory()
    srv = cri_server_factory()  # 10-default.conflist: network a on bridge a (ipMasq, portmap, bandwidth)
    for n in (b, other):
        n.ipam_dirs.add(srv.ipam_dir)
        n.cache_dirs.add(srv.cache_dir)
    audit = audit_of(host_audit, srv, other_nets=[b, other])
    conf_a = default_conflist(a, srv.ipam_dir)
    conf_a_on_b = copy.deepcopy(conf_a)  # same network name, b's bridge and subnet
    conf_a_on_b["plugins"][0]["bridge"] = b.bridge
    conf_a_on_b["plugins"][0]["ipam"]["ranges"] = b.ipam()["ranges"]
    conf_other = default_conflist(other, srv.ipam_dir)
    text_a, text_a_on_b = json.dumps(conf_a, indent=2), json.dumps(conf_a_on_b, indent=2)
    c = srv.client(timeout=60)
    churn = Churn(srv, {a.name: [a, b], other.name: [other]})
    kept: list[tuple[str, Any, UniqueNet, str]] = []  # (sid, ip, net it is on, network name)
    stages = 0

    def stage(label: str, change: Callable[[], None], on: UniqueNet, name: str,
              check: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """Apply ``change``, wait for the reload, let the churn run, keep a pod made now."""
        nonlocal stages
        before = reloads(srv)
        change()
        wait_for(lambda: reloads(srv) > before, timeout=10, what=f"a reload after {label}")
        if check is not None:  # a change of two files may take two reloads
            try:
                wait_for(lambda: check(c.info()["config"]), timeout=10, what=label)
            except AssertionError:
                raise AssertionError(f"{label}: Status verbose says {c.info()['config']}") from None
        info = c.info()
        assert srv.alive(), f"server died after {label}"
        assert [x["status"] for x in info["status"]["conditions"]] == [True, True], info["status"]
        churn.wait_more(2)
        sid = c.runp(pod_config(f"kept-{len(kept)}"))
        ip = pod_ip(c, sid)
        assert ip in on.subnet, f"{label}: new pod got {ip}, expected one in {on.subnet}"
        kept.append((sid, ip, on, name))
        for k_sid, k_ip, _, _ in kept:  # every pod made so far still has its address
            assert pod_ip(c, k_sid) == k_ip, f"{label}: status ip of {k_sid[:13]} changed"
            assert eth0_ipv4(srv.netns_path(k_sid)) == [k_ip]
        stages += 1

    def skipped(cfg: dict[str, Any], file: str, why: str) -> bool:
        return any(s["file"].endswith(file) and why in s["reason"] for s in cfg["skipped"])

    def names(cfg: dict[str, Any]) -> list[str]:
        return [n["name"] for n in cfg["networks"]]

    rounds = scale(ci=1, full=4)
    churn.start()
    try:
        kept_first = c.runp(pod_config("kept-initial"))
        kept.append((kept_first, pod_ip(c, kept_first), a, a.name))
        for _ in range(rounds):
            stage("bridge and subnet edited", lambda: replace_file(srv, CONF_FILE, text_a_on_b), b, a.name,
                  lambda cfg: names(cfg) == [a.name])
            stage("unparsable file added", lambda: replace_file(srv, "20-broken.conflist", '{"cniVersion": "1.0'),
                  b, a.name, lambda cfg: names(cfg) == [a.name] and skipped(cfg, "20-broken.conflist", ""))
            stage("second network added", lambda: replace_file(srv, "30-other.conflist", json.dumps(conf_other)),
                  b, a.name, lambda cfg: names(cfg) == [a.name, other.name])
            stage("default file truncated in place",
                  lambda: (srv.conf_dir / CONF_FILE).write_text(text_a_on_b[: len(text_a_on_b) // 2]),
                  other, other.name, lambda cfg: names(cfg) == [other.name] and skipped(cfg, CONF_FILE, ""))
            stage("only usable file removed", lambda: (srv.conf_dir / "30-other.conflist").unlink(), other,
                  other.name, lambda cfg: names(cfg) == [other.name] and "no usable network config"
                  in cfg["lastReloadError"] and skipped(cfg, "20-broken.conflist", ""))

            def restore() -> None:
                (srv.conf_dir / "20-broken.conflist").unlink()
                replace_file(srv, CONF_FILE, text_a)

            stage("original config restored", restore, a, a.name,
                  lambda cfg: names(cfg) == [a.name] and not cfg["skipped"] and not cfg["lastReloadError"])
    finally:
        churn.stop_event.set()
        churn.join(timeout=60)
    problems = [f"churn: {e}" for e in churn.errors]
    assert churn.done >= 2 * 6 * rounds

    # Each kept pod sits on the bridge it was made on, and its cached config (what DEL uses) says so.
    for net in (a, b, other):
        expected = sum(1 for _, _, on, _ in kept if on is net)
        assert len(bridge_ports(net.bridge)) == expected, f"{net.bridge}: {bridge_ports(net.bridge)}, {expected}"
    for sid, _, on, name in kept:
        assert cached_bridge(srv, name, sid) == on.bridge
    # Removed under today's config (a on bridge a; "other" is gone from the conf dir).
    for sid, _, on, name in kept:
        for rpc, call in (("StopPodSandbox", c.stopp), ("RemovePodSandbox", c.rmp)):
            try:
                call(sid)
            except grpc.RpcError as exc:
                problems.append(f"kept pod on {name}/{on.bridge}: {rpc}: {exc.details()}")
        left = pod_traces(srv, sid) + [f"lease {p.name}" for p in lease_files(srv, sid)]
        left += [ln.line for ln in masq_lines(name, sid)]
        if left:
            problems.append(f"kept pod {sid[:13]} on {name}/{on.bridge} left {left}")
    for net in (a, b, other):
        assert bridge_ports(net.bridge) == [], f"veths left on {net.bridge}"
    assert c.pods() == []
    record("conf dir changes under load (edit bridge/subnet, bad files, add/remove networks)",
           runs=churn.done + len(kept), audited="host audit of all three networks' bridges, subnets and leases "
           "+ per-pod traces; status IP of live pods after every change", suite="fault",
           detail=f"{stages} conf dir changes, {churn.done} churned lifecycles, {len(kept)} long-lived pods")
    assert not problems, "pods made before a conf dir change were not torn down cleanly:\n" + "\n".join(problems)
    audit.assert_clean(ignore=[a.per_network_state, b.per_network_state, other.per_network_state])
