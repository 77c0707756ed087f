"""Fault injection: the host changes under cri-net (issue 6, part B).

(a) A READY pod's pinned netns is deleted behind cri-net's back (unmounted and removed, as
``ip netns delete`` does, or only unmounted): Stop and Remove must still succeed and release
everything the plugins made on the host side: the bridge plugin's ipMasq chain, the lease,
portmap's rules, bandwidth's ifb, the cache file.

(b) Disk errors on the cache or state dir (read-only bind mount, tiny full tmpfs, a tmpfs with
room for exactly one more file): RunPodSandbox fails clearly, leaves no half-written or temp
file, rolls back everything, and the server keeps serving the pods it has.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from cri_net.fsutil import is_temp
from adaptors.cri import annotations as ann
from integration.faultkit_b import (
    audit_of,
    bridge_ports,
    config_id,
    eth0_ipv4,
    fill,
    free_port,
    host_links,
    masq_lines,
    pod_config,
    pod_ip,
    pod_traces,
    read_only,
    rpc_error,
    tiny_tmpfs,
    wait_for,
)
from integration.hostaudit import Audit, UniqueNet, ifb_name, iptables_save
from integration.serve_fixture import CRIServer, cri_server_factory  # noqa: F401 - fixture
from tests.reliability import record, scale

AUDITED = "host audit (netns, links, qdiscs, leases, iptables, cache, state) + per-pod traces"

# ------------------------------------------------------------------------- (a) netns gone


def shaped_pod(name: str) -> dict[str, object]:
    """A pod using every host-side feature of the chain: ipMasq, a port mapping, an ifb."""
    return pod_config(name, annotations={ann.INGRESS_BANDWIDTH_ANNOTATION: "10M",
                                         ann.EGRESS_BANDWIDTH_ANNOTATION: "10M"},
                      port_mappings=[{"protocol": "TCP", "container_port": 80, "host_port": free_port()}])


def host_side_of(net: UniqueNet, sid: str, ip: str) -> list[str]:
    """What the plugins keep on the host for pod ``sid``: ipMasq, portmap rules, its ifb."""
    out = [f"ipMasq: {ln.line}" for ln in masq_lines(net.name, sid)]
    out += [f"portmap: {ln.line}" for ln in iptables_save("ipv4", "nat")
            if ln not in masq_lines(net.name, sid) and (f"{ip}:80" in ln.line or f'id: \\"{sid}\\"' in ln.line)]
    if ifb_name(net.name, sid) in host_links():
        out.append(f"ifb {ifb_name(net.name, sid)}")
    return out


@pytest.mark.parametrize("how", ["umount+rm", "umount only"])
def test_netns_deleted_behind_cri_net_back_still_stops_and_removes_cleanly(
    how: str, cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet,
    host_audit: Callable[..., Audit]
) -> None:
    """Someone deletes a READY pod's netns; Stop and Remove must succeed and leave nothing."""
    srv = cri_server_factory()  # bridge (ipMasq) + host-local + portmap + bandwidth
    audit = audit_of(host_audit, srv)
    c = srv.client(timeout=60)
    keep = c.runp(pod_config("keep"))
    keep_ip = pod_ip(c, keep)
    runs = scale(ci=1, full=5)
    problems: list[str] = []
    for i in range(runs):
        sid = c.runp(shaped_pod(f"gone-{i}"))
        ip = str(pod_ip(c, sid))
        assert masq_lines(unique_net.name, sid), "no ipMasq chain to begin with: the test would prove nothing"
        assert ifb_name(unique_net.name, sid) in host_links()
        path = srv.netns_path(sid)
        subprocess.run(["umount", str(path)], check=True, capture_output=True)
        if how == "umount+rm":
            path.unlink()
        # The namespace had no other reference: the kernel destroys it and the veth pair.
        wait_for(lambda: len(bridge_ports(unique_net.bridge)) == 1, what="the pod's veth to go with its netns")

        for rpc, call in (("StopPodSandbox", c.stopp), ("RemovePodSandbox", c.rmp)):
            try:
                call(sid)
            except grpc.RpcError as exc:
                problems.append(f"{rpc} failed: {exc.code().name} {exc.details()}")
                if rpc == "StopPodSandbox":
                    continue
        left = pod_traces(srv, sid) + host_side_of(unique_net, sid, ip)
        if left:
            problems.append(f"pod {sid[:13]} left behind after Stop+Remove: {left}")
        assert pod_ip(c, keep) == keep_ip and eth0_ipv4(srv.netns_path(keep)) == [keep_ip]
    record(f"netns deleted behind cri-net's back ({how})", runs=runs, audited=AUDITED, suite="fault")
    assert not problems, "\n".join(problems)
    c.stopp(keep)
    c.rmp(keep)
    audit.assert_clean(ignore=[unique_net.per_network_state])


# ------------------------------------------------------------------------- (b) disk errors

DISK_FAULTS = [
    ("cache", "read-only"),
    ("state", "read-only"),
    ("cache", "full"),
    ("state", "full"),
    ("cache", "room for one file"),
    ("state", "room for one file"),
]
ERRNO_TEXT = {"read-only": "Read-only file system", "full": "No space left on device",
              "room for one file": "No space left on device"}


def assert_no_partial_files(directory: Path) -> None:
    """Every file below ``directory`` is whole JSON (or host-local/record bookkeeping); no temp."""
    for p in directory.rglob("*"):
        if not p.is_file() or p.name == "filler":
            continue
        assert not is_temp(p.name), f"temp file left behind: {p}"
        if p.suffix == ".json" or p.parent.name == "results":
            try:
                json.loads(p.read_bytes())
            except ValueError as exc:
                raise AssertionError(f"half-written file {p}: {exc}") from None


@pytest.mark.parametrize("where,fault", DISK_FAULTS, ids=[f"{w}-{f.replace(' ', '-')}" for w, f in DISK_FAULTS])
def test_disk_error_fails_runp_clearly_and_the_server_keeps_serving(
    where: str, fault: str, cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet,
    host_audit: Callable[..., Audit]
) -> None:
    """RunPodSandbox on a read-only or full cache/state dir: a clear error, a full rollback,
    no partial file; Version/ListPodSandbox/PodSandboxStatus keep answering; once the disk
    is fixed pods work again; nothing leaks."""
    srv = cri_server_factory(start=False)
    target = srv.cache_dir if where == "cache" else srv.state_dir
    audit = audit_of(host_audit, srv)
    runs = scale(ci=2, full=10)
    with contextlib.ExitStack() as mounts:
        if fault != "read-only":
            mounts.enter_context(tiny_tmpfs(target, "64k"))
        srv.start()
        try:
            c = srv.client(timeout=60)
            keep = c.runp(pod_config("keep"))
            keep_ip = pod_ip(c, keep)
            with contextlib.ExitStack() as broken:
                filler = None
                if fault == "read-only":
                    broken.enter_context(read_only(target))
                else:
                    filler = fill(target)
                for i in range(runs):
                    if fault == "room for one file":  # one page free: the first write fits, the next not
                        assert filler is not None
                        size = filler.stat().st_size
                        with open(filler, "r+b") as fh:
                            fh.truncate(size - 4096)
                    cfg = pod_config(f"diskfault-{i}")
                    sid = config_id(cfg)
                    err = rpc_error(lambda cfg=cfg: c.runp(cfg))
                    assert err.code() == grpc.StatusCode.INTERNAL, err
                    assert ERRNO_TEXT[fault] in err.details(), err.details()
                    assert str(target) in err.details(), f"the error names no file: {err.details()}"
                    if fault == "room for one file":  # the fault hit half-way, after a first write
                        if where == "cache":  # loopback's result was cached, the pod network's not
                            assert f"network {unique_net.name!r} on eth0" in err.details(), err.details()
                        else:  # the CREATING record was written, the READY one not
                            assert re.search(rf"RunPodSandbox failed; rolling back.*pod_id={sid}", srv.log)
                    assert pod_traces(srv, sid) == [], pod_traces(srv, sid)
                    assert masq_lines(unique_net.name, sid) == []
                    assert len(bridge_ports(unique_net.bridge)) == 1
                    assert_no_partial_files(target)
                    # The server still serves the pod it has.
                    assert c.version().runtime_name == "cri-net"
                    assert [p.id for p in c.pods()] == [keep]
                    assert pod_ip(c, keep) == keep_ip
                    assert c.info()["status"]["conditions"][1]["status"] is True
                    if fault == "room for one file":  # take the free page back for the next round
                        assert filler is not None
                        with open(filler, "ab", buffering=0) as fh:
                            fh.write(b"\0" * 4096)
                if where == "state":  # stopping needs no disk: the network goes, Stop says OK, the log why
                    c.stopp(keep)
                    assert bridge_ports(unique_net.bridge) == [], "the stopped pod's veth is still there"
                    assert "its record could not be updated" in srv.log
                if filler is not None:
                    filler.unlink()
            # Disk fixed: pods work again, and both go cleanly.
            again = c.runp(pod_config("after-fix"))
            assert pod_ip(c, again) in unique_net.subnet
            for sid in (again, keep):
                c.stopp(sid)
                c.rmp(sid)
            assert c.pods() == [] and srv.record_ids() == []
            assert_no_partial_files(target)
        finally:
            if srv.alive():  # the pods' records may live on the tmpfs: remove them before unmounting
                with contextlib.suppress(Exception), srv.client(timeout=60) as c2:
                    for p in c2.pods():
                        c2.rmp(p.id)
                srv.stop()
    record(f"disk error on the {where} dir ({fault})", runs=runs, audited=AUDITED, suite="fault")
    audit.assert_clean(ignore=[unique_net.per_network_state])
