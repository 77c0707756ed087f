"""Parallel planes on the real plugins (issue 13): a pod with the default network and two
extra planes (bridge + host-local each, each on its own bridge and subnet) through a real
``cri-net serve``. A plane failing while the others are mid-ADD, a plane hanging past the
plugin timeout while the others succeed, and a SIGKILL of the server mid-parallel-attach:
nothing leaks (host audit clean), and a restart reconciles.
"""

from __future__ import annotations

import json
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from adaptors.cri import annotations as ann
from integration.faultkit import Call, config_id, pod_config, sigkill, wait_for
from integration.hostaudit import Audit, UniqueNet, bridge_ports, iptables_save
from integration.serve_fixture import SLOW_PLUGIN, CRIServer, cri_server_factory  # noqa: F401 - fixture

FAIL_PLUGIN = "crinet-t-failafter"
# A chained plugin whose ADD fails (code 11) after a short sleep, with prevResult in hand, so
# the plugins before it in its chain really hold an interface and a lease when it fails.
_FAIL_SRC = r'''
import json, os, sys, time
cmd = os.environ.get("CNI_COMMAND", "")
conf = json.loads(sys.stdin.read() or "{}")
if cmd == "VERSION":
    print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": ["0.3.1", "0.4.0", "1.0.0"]}))
elif cmd == "ADD":
    time.sleep(float(conf.get("sleep", 0)))
    print(json.dumps({"cniVersion": "1.0.0", "code": 11, "msg": "injected failure of this plane"}))
    sys.exit(1)
'''


def install_fail_plugin(srv: CRIServer) -> None:
    srv.bin_dir.mkdir(parents=True, exist_ok=True)
    path = srv.bin_dir / FAIL_PLUGIN
    path.write_text(f"#!{sys.executable}\n{_FAIL_SRC}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def extra_plane(srv: CRIServer, net: UniqueNet, *tail: dict[str, Any]) -> None:
    """Write `net` as an extra plane of `srv` (its leases and cache under the server's dirs)."""
    net.ipam_dirs.add(srv.ipam_dir)
    net.cache_dirs.add(srv.cache_dir)
    doc = net.conflist(ipam_dir=srv.ipam_dir, extra_plugins=tail)
    (srv.conf_dir / f"20-{net.name}.conflist").write_text(json.dumps(doc))


def three_planes(factory: Callable[..., CRIServer], net_factory: Callable[[], UniqueNet], *,
                 tail_a: tuple[dict[str, Any], ...] = (), tail_b: tuple[dict[str, Any], ...] = (),
                 extra_args: tuple[str, ...] = (), parallel: bool = True) -> tuple[CRIServer, UniqueNet, UniqueNet]:
    srv = factory(start=False, slow_plugin=True, extra_args=list(extra_args))
    if not parallel:
        config = srv.root / "config.toml"
        config.write_text("parallel_attach = false\n")
        srv.extra_args += ["--config", str(config)]
    install_fail_plugin(srv)
    a, b = net_factory(), net_factory()
    extra_plane(srv, a, *tail_a)
    extra_plane(srv, b, *tail_b)
    srv.start()
    return srv, a, b


def held_plane(tmp_path: Path, seconds: float) -> tuple[dict[str, Any], Path]:
    """A slow plugin entry for an extra plane's chain (its own delay file and markers)."""
    hold = tmp_path / "hold"
    (hold / "markers").mkdir(parents=True)
    (hold / "delay").write_text(str(seconds))
    return {"type": SLOW_PLUGIN, "markerDir": str(hold / "markers"), "delayFile": str(hold / "delay")}, hold


def ifnames(srv: CRIServer) -> set[str]:
    return {f.rsplit("-", 1)[1] for f in srv.cache_files()}


def pod(name: str, a: UniqueNet, b: UniqueNet) -> dict[str, Any]:
    cfg = pod_config(name, namespace="planes")
    cfg["annotations"] = {ann.EXTRA_NETWORKS_ANNOTATION: json.dumps(
        [{"name": a.name, "interface": "net1"}, {"name": b.name, "interface": "net2"}])}
    return cfg


def audit_planes(host_audit: Callable[..., Audit], srv: CRIServer, a: UniqueNet, b: UniqueNet) -> Audit:
    """The server's host audit; the extra planes' bridges stay by design (the bridge plugin
    never deletes one), what hangs off them is checked by `assert_nothing_of`."""
    return host_audit(cache_dir=srv.cache_dir, ipam_dir=srv.ipam_dir, state_dir=srv.state_dir,
                      netns_dirs=[srv.netns_dir],
                      ignore=[srv.foreign_state, *(n.per_network_state for n in (srv.net, a, b) if n is not None)])


def assert_nothing_of(srv: CRIServer, what: str, *planes: UniqueNet) -> None:
    assert srv.cache_files() == [], f"{what}: cache files left: {srv.cache_files()}"
    leases = [p for p in srv.ipam_dir.rglob("*") if p.is_file() and not p.name.startswith(("last_reserved", "lock"))]
    assert leases == [], f"{what}: leases left: {leases}"
    for net in planes:
        assert bridge_ports(net.bridge) == [], f"{what}: veths left on {net.bridge}"
        rules = [str(r) for t in ("nat", "filter") for r in iptables_save("ipv4", t)
                 if net.name in r.line or net.bridge in r.line or str(net.subnet) in r.line]
        assert rules == [], f"{what}: iptables rules of {net.name} left: {rules}"
    with srv.client() as c:
        assert [p.id for p in c.pods()] == [], f"{what}: pods left"


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "sequential"])
def test_three_planes_attach_and_detach(cri_server_factory, net_factory, host_audit, tmp_path, parallel):
    """With extra-a held mid-ADD, the default network and extra-b attach meanwhile (parallel),
    or wait for it (sequential); either way the pod comes up whole and goes away whole."""
    slow, hold = held_plane(tmp_path, 30)
    srv, a, b = three_planes(cri_server_factory, net_factory, tail_a=(slow,), parallel=parallel)
    audit = audit_planes(host_audit, srv, a, b)
    cfg = pod("three", a, b)
    call = Call(srv, "runp", cfg)
    wait_for(hold / "markers" / config_id(cfg))
    time.sleep(1.0)
    during = ifnames(srv)
    (hold / "delay").unlink()
    sid = call.join()
    if parallel:
        assert {"eth0", "net2"} <= during, f"planes waited for the held one: {during}"
    else:
        assert not during & {"eth0", "net2"}, f"sequential attach ran planes early: {during}"
    with srv.client() as c:
        st = c.inspectp(sid, verbose=False).status
        assert st.network.ip and st.state == 0
        assert ifnames(srv) == {"lo", "net1", "net2", "eth0"}
        c.stopp(sid)
        c.rmp(sid)
    assert_nothing_of(srv, "after remove", a, b)
    audit.assert_clean()


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "sequential"])
def test_a_plane_failing_while_others_are_mid_add_leaves_nothing(cri_server_factory, net_factory, host_audit,
                                                                   parallel):
    srv, a, b = three_planes(cri_server_factory, net_factory, tail_b=({"type": FAIL_PLUGIN, "sleep": 0.3},),
                             parallel=parallel)
    audit = audit_planes(host_audit, srv, a, b)
    srv.set_slow_delay(3.0)
    cfg = pod("failing", a, b)
    with srv.client() as c:
        with pytest.raises(grpc.RpcError) as exc:
            c.runp(cfg)
    msg = exc.value.details()
    assert b.name in msg and FAIL_PLUGIN in msg and "injected failure" in msg, msg
    # parallel: the default network was mid-ADD when b failed; sequential: it never started
    assert srv.slow_marker(config_id(cfg)).exists() is parallel
    srv.set_slow_delay(None)
    assert_nothing_of(srv, "after the failed RunPodSandbox", a, b)
    audit.assert_clean()


def test_a_plane_hanging_past_the_plugin_timeout_while_others_succeed(cri_server_factory, net_factory,
                                                                       host_audit, tmp_path):
    hang = tmp_path / "hang"
    (hang / "markers").mkdir(parents=True)
    (hang / "delay").write_text("60")
    slow = {"type": SLOW_PLUGIN, "markerDir": str(hang / "markers"), "delayFile": str(hang / "delay")}
    srv, a, b = three_planes(cri_server_factory, net_factory, tail_a=(slow,),
                             extra_args=("--plugin-timeout", "3"))
    audit = audit_planes(host_audit, srv, a, b)
    t0 = time.monotonic()
    with srv.client() as c:
        with pytest.raises(grpc.RpcError) as exc:
            c.runp(pod("hanging", a, b))
    took = time.monotonic() - t0
    msg = exc.value.details()
    assert a.name in msg and SLOW_PLUGIN in msg, msg
    assert took < 15, f"RunPodSandbox took {took:.1f}s with a 3 s plugin timeout"
    (hang / "delay").unlink()
    assert_nothing_of(srv, "after the timed-out RunPodSandbox", a, b)
    audit.assert_clean()


@pytest.mark.parametrize("group", [True, False], ids=["group", "server-only"])
def test_sigkill_mid_parallel_attach_then_restart_reconciles(cri_server_factory, net_factory, host_audit, group):
    srv, a, b = three_planes(cri_server_factory, net_factory)
    audit = audit_planes(host_audit, srv, a, b)
    cfg = pod("killed", a, b)
    sid = config_id(cfg)
    srv.set_slow_delay(30)
    call = Call(srv, "runp", cfg)
    wait_for(srv.slow_marker(sid))
    deadline = time.monotonic() + 20
    while not {"net1", "net2"} <= {f.rsplit("-", 1)[1] for f in srv.cache_files()}:
        assert time.monotonic() < deadline, f"extra planes not attached: {srv.cache_files()}"
        time.sleep(0.05)
    sigkill(srv, group=group, release=lambda: srv.set_slow_delay(None))
    call.join()
    srv.start()
    with srv.client() as c:
        pods = {p.id: p for p in c.pods()}
        if sid in pods:  # whole or gone; a listed pod is removed like any other
            c.stopp(sid)
            c.rmp(sid)
        assert [p.id for p in c.pods()] == []
    assert_nothing_of(srv, "after restart and remove", a, b)
    audit.assert_clean()
