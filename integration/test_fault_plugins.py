"""Fault injection: misbehaving plugins chained with the real bridge + host-local (issue 6, part B).

Each test runs a real ``cri-net serve`` whose network is bridge (ipMasq) + host-local, then a
scriptable fault plugin (:class:`integration.faultkit_b.FaultPlugin`, a real executable), then
portmap and bandwidth. The fault plugin hangs, crashes, prints garbage or fails DEL; the tests
check the error RunPodSandbox/StopPodSandbox return, that the pod is rolled back or cleaned up
completely (no lease, veth, ipMasq chain, cache file, netns, record), that other pods are
unaffected, and end with a host audit.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from integration.faultkit_b import (
    FAULT_PLUGIN,
    bridge_ports,
    audit_of,
    config_id,
    eth0_ipv4,
    fault_server,
    masq_lines,
    pid_gone,
    pod_config,
    pod_ip,
    pod_traces,
    rpc_error,
    wait_for,
)
from integration.hostaudit import Audit, UniqueNet
from integration.serve_fixture import CRIServer, cri_server_factory  # noqa: F401 - fixture
from tests.reliability import record, scale

AUDITED = "host audit (netns, links, qdiscs, leases, iptables, cache, state) + per-pod traces"


def assert_rolled_back(srv: CRIServer, net: UniqueNet, sid: str, live_pods: int) -> None:
    """Nothing of the failed pod ``sid`` is left, and only ``live_pods`` veths are on the bridge."""
    assert pod_traces(srv, sid) == [], f"pod {sid[:13]} not rolled back: {pod_traces(srv, sid)}"
    assert masq_lines(net.name, sid) == [], f"ipMasq rules of {sid[:13]} left: {masq_lines(net.name, sid)}"
    ports = bridge_ports(net.bridge)
    assert len(ports) == live_pods, f"veths on {net.bridge}: {ports}, expected {live_pods}"


def assert_add_then_del(runs: list[dict[str, Any]], what: str = "") -> None:
    """One ADD, then the rollback's DEL(s) (the plane's, then the pod's: DEL is idempotent)."""
    cmds = [r["cmd"] for r in runs]
    assert cmds[:1] == ["ADD"] and len(cmds) > 1 and set(cmds[1:]) == {"DEL"}, (what, cmds)


def assert_still_fine(srv: CRIServer, sid: str, ip: Any) -> None:
    """A pod made before the fault keeps its IP, in its status and on its eth0."""
    with srv.client() as c:
        assert pod_ip(c, sid) == ip
    assert eth0_ipv4(srv.netns_path(sid)) == [ip]


def remove_all(srv: CRIServer) -> None:
    with srv.client(timeout=60) as c:
        for p in c.pods():
            c.stopp(p.id)
            c.rmp(p.id)
        assert c.pods() == []


# ------------------------------------------------------------------------- hang


def test_hanging_plugin_is_killed_at_plugin_timeout_and_pod_rolled_back(
    cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    """A plugin that never answers ADD (and forked a child holding its pipes) must not hold
    RunPodSandbox forever: at ``plugin_timeout`` its process group is killed, the error names
    it, the pod is rolled back, and other pods are served meanwhile."""
    timeout = 2.0
    srv, fault = fault_server(cri_server_factory, unique_net, extra_args=["--plugin-timeout", str(timeout)])
    audit = audit_of(host_audit, srv)
    c = srv.client(timeout=60)
    keep = c.runp(pod_config("keep"))
    keep_ip = pod_ip(c, keep)
    runs = scale(ci=2, full=10)
    names = [f"hang-{i}" for i in range(runs)]
    fault.set(ADD=[{"pods": names, "sleep": 3600, "fork_sleep": 3600}])
    for i, name in enumerate(names):
        cfg = pod_config(name)
        sid = config_id(cfg)
        outcome: dict[str, Any] = {}

        def hung_runp(cfg: dict[str, Any] = cfg, outcome: dict[str, Any] = outcome) -> None:
            t0 = time.monotonic()
            try:
                with srv.client(timeout=60) as c2:
                    c2.runp(cfg)
            except grpc.RpcError as exc:
                outcome["error"] = exc
            outcome["took"] = time.monotonic() - t0

        thread = threading.Thread(target=hung_runp)
        thread.start()
        try:
            [run] = wait_for(lambda sid=sid: fault.runs("ADD", sid), timeout=10, what="the hanging ADD")
            # While it hangs, the server answers everything else, including a new pod.
            t0 = time.monotonic()
            assert c.version().runtime_name == "cri-net"
            assert pod_ip(c, keep) == keep_ip
            quick = c.runp(pod_config(f"quick-{i}"))
            assert pod_ip(c, quick) in unique_net.subnet
            c.stopp(quick)
            c.rmp(quick)
            assert time.monotonic() - t0 < timeout, "other RPCs waited for the hanging plugin"
        finally:
            thread.join(timeout=60)
        assert not thread.is_alive(), "RunPodSandbox never returned"
        err = outcome.get("error")
        assert err is not None, "RunPodSandbox succeeded although a plugin hung"
        assert err.code() == grpc.StatusCode.INTERNAL, err
        assert FAULT_PLUGIN in err.details() and "timed out" in err.details(), err.details()
        assert timeout <= outcome["took"] < timeout + 15, f"RunPodSandbox took {outcome['took']:.1f}s"
        # The plugin and the child it forked (same process group) are both dead.
        wait_for(lambda run=run: pid_gone(run["pid"]) and pid_gone(run["child"]), timeout=5,
                 what=f"plugin pid {run['pid']} and its child {run['child']} to be killed")
        assert_rolled_back(srv, unique_net, sid, live_pods=1)
        assert_add_then_del(fault.runs(cid=sid))
    assert_still_fine(srv, keep, keep_ip)
    remove_all(srv)
    audit.assert_clean(ignore=[unique_net.per_network_state])
    record("plugin hangs on ADD (plugin_timeout kills its process group)", runs=runs, audited=AUDITED, suite="fault")


# ------------------------------------------------------------------------- crash


CRASHES: list[tuple[str, dict[str, Any], str]] = [
    ("exit 1 with a message on stderr", {"exit": 1, "stderr": "fault: boom on stderr"}, "boom on stderr"),
    ("exit 7 with a CNI error on stdout",
     {"exit": 7, "stdout": '{"cniVersion":"1.0.0","code":7,"msg":"fault: json boom","details":"d"}'}, "json boom"),
    ("killed by SIGKILL after printing a result", {"signal": int(signal.SIGKILL)}, ""),
    ("killed by SIGSEGV with no output", {"signal": int(signal.SIGSEGV), "stdout": ""}, ""),
    ("exit 1, and its rollback DEL fails too", {"exit": 1, "stderr": "fault: add and del fail"}, "add and del fail"),
]


def test_plugin_crashing_half_way_through_the_list_rolls_back(
    cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    """bridge ran (veth, lease, ipMasq chain), then the next plugin dies: RunPodSandbox fails
    naming that plugin and everything bridge made is undone."""
    srv, fault = fault_server(cri_server_factory, unique_net)
    audit = audit_of(host_audit, srv)
    c = srv.client(timeout=60)
    keep = c.runp(pod_config("keep"))
    keep_ip = pod_ip(c, keep)
    reps = scale(ci=1, full=5)
    runs = 0
    for rep in range(reps):
        for i, (what, rule, expect) in enumerate(CRASHES):
            name = f"crash-{rep}-{i}"
            fault.set(ADD=[{"pods": [name], **rule}],
                      DEL=[{"pods": [name], "exit": 1, "stderr": "del fails too"}] if "DEL" in what else [])
            cfg = pod_config(name)
            sid = config_id(cfg)
            err = rpc_error(lambda cfg=cfg: c.runp(cfg))
            assert err.code() == grpc.StatusCode.INTERNAL, (what, err)
            assert f"plugin {FAULT_PLUGIN}" in err.details(), (what, err.details())
            assert expect in err.details(), (what, err.details())
            assert_add_then_del(fault.runs(cid=sid), what)
            assert_rolled_back(srv, unique_net, sid, live_pods=1)
            runs += 1
    fault.set()
    assert_still_fine(srv, keep, keep_ip)
    fine = c.runp(pod_config("after-crashes"))  # the network still works
    assert pod_ip(c, fine) in unique_net.subnet
    remove_all(srv)
    audit.assert_clean(ignore=[unique_net.per_network_state])
    record("plugin crashes half-way through the list (exit code, CNI error, signal)", runs=runs,
           audited=AUDITED, suite="fault", detail=", ".join(w for w, _, _ in CRASHES))


# ------------------------------------------------------------------------- garbage

_VALID = ('{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"address":"10.213.0.9/24",'
          '"interface":0,"gateway":"10.213.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}')
GARBAGE: list[tuple[str, str]] = [
    ("not JSON", "hello, I am not JSON"),
    ("empty output", ""),
    ("truncated JSON", _VALID[:45]),
    ("JSON with trailing garbage", _VALID + "garbage"),
    ("two JSON documents", _VALID + _VALID),
    ("control characters", "\u0000\u0001\u0002garbage"),
    ("a JSON array", "[1, 2, 3]"),
    ("a JSON string", '"ok"'),
    ("ips not a list", '{"cniVersion":"1.0.0","ips":"10.1.1.1"}'),
    ("an address that is no CIDR", '{"cniVersion":"1.0.0","ips":[{"address":"not-an-ip"}]}'),
    ("an ip without address", '{"cniVersion":"1.0.0","ips":[{}]}'),
    ("interfaces an object", '{"cniVersion":"1.0.0","interfaces":{"name":"x"}}'),
    ("unknown result version", '{"cniVersion":"9.9.9","ips":[]}'),
]


def garbage_cases() -> list[tuple[str, str]]:
    """The fixed list, plus (full scale) seeded random truncations of a valid result."""
    rng = random.Random(6)
    extra = [(f"valid result cut at byte {n}", _VALID[:n]) for n in
             sorted(rng.sample(range(1, len(_VALID) - 1), scale(ci=0, full=20)))]
    return GARBAGE + extra


def test_plugin_printing_garbage_fails_clearly_and_rolls_back(
    cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    """A plugin that exits 0 but prints something that is no CNI result: a clear error naming
    it, and a complete rollback of what bridge did before it."""
    srv, fault = fault_server(cri_server_factory, unique_net)
    audit = audit_of(host_audit, srv)
    c = srv.client(timeout=60)
    keep = c.runp(pod_config("keep"))
    keep_ip = pod_ip(c, keep)
    cases = garbage_cases()
    for i, (what, out) in enumerate(cases):
        name = f"garbage-{i}"
        fault.set(ADD=[{"pods": [name], "stdout": out}])
        cfg = pod_config(name)
        sid = config_id(cfg)
        err = rpc_error(lambda cfg=cfg: c.runp(cfg))
        assert err.code() == grpc.StatusCode.INTERNAL, (what, err)
        assert f"plugin {FAULT_PLUGIN}" in err.details(), (what, err.details())
        assert "result" in err.details(), (what, err.details())
        assert_rolled_back(srv, unique_net, sid, live_pods=1)
    fault.set()
    assert_still_fine(srv, keep, keep_ip)
    remove_all(srv)
    audit.assert_clean(ignore=[unique_net.per_network_state])
    record("plugin prints garbage on ADD (non-JSON, truncated, wrong shape)", runs=len(cases), audited=AUDITED,
           suite="fault")


# ------------------------------------------------------------------------- DEL fails


def test_plugin_failing_only_on_del_is_reported_retried_and_gc_cleans_up(
    cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    """DEL fails for one pod: StopPodSandbox reports it (and a second stop retries), other pods
    keep working, RemovePodSandbox still removes the pod; restart reconciliation retries the
    DEL (failing again: the server still starts) until the plugin works, then nothing leaks."""
    srv, fault = fault_server(cri_server_factory, unique_net)
    audit = audit_of(host_audit, srv)
    c = srv.client(timeout=60)
    reps = scale(ci=1, full=5)
    keep = c.runp(pod_config("keep"))
    keep_ip = pod_ip(c, keep)
    for rep in range(reps):
        name = f"victim-{rep}"
        sid = c.runp(pod_config(name))
        fault.set(DEL=[{"pods": [name], "exit": 1, "stderr": "fault: del refused"}])

        err = rpc_error(lambda sid=sid: c.stopp(sid))
        assert err.code() == grpc.StatusCode.INTERNAL, err
        assert FAULT_PLUGIN in err.details() and "del refused" in err.details(), err.details()
        err = rpc_error(lambda sid=sid: c.stopp(sid))  # a second stop retries the DEL
        assert "del refused" in err.details(), err.details()
        assert len(fault.runs("DEL", sid)) == 2, "the second StopPodSandbox did not retry DEL"
        # The failing plugin does not stop the rest of the chain from releasing what it holds.
        assert sid not in srv.leases().values(), "bridge/host-local DEL did not run past the failing plugin"
        assert masq_lines(unique_net.name, sid) == []

        # Other pods: the old one still fine, a new one comes and goes.
        assert_still_fine(srv, keep, keep_ip)
        other = c.runp(pod_config(f"other-{rep}"))
        assert pod_ip(c, other) in unique_net.subnet
        c.stopp(other)
        c.rmp(other)

        c.rmp(sid)  # removes the pod although its DEL still fails
        assert sid not in {p.id for p in c.pods()}
        assert sid not in srv.record_ids() and not srv.netns_path(sid).exists()
        cached = [f for f in srv.cache_files() if sid in f]
        assert cached, "the failed attachment's cache entry is gone: nothing left for GC to retry"

        # Restart while DEL still fails: the server comes up, the entry waits for the next GC.
        dels = len(fault.runs("DEL", sid))
        srv.restart()
        c = srv.client(timeout=60)
        assert len(fault.runs("DEL", sid)) > dels, "restart reconciliation did not retry the failed DEL"
        assert [f for f in srv.cache_files() if sid in f] == cached
        assert_still_fine(srv, keep, keep_ip)

        fault.set()  # the plugin works again: the next GC finishes the job
        srv.restart()
        c = srv.client(timeout=60)
        assert [f for f in srv.cache_files() if sid in f] == [], "GC did not DEL the stale attachment"
        assert pod_traces(srv, sid) == []
        last = fault.runs("DEL", sid)[-1]
        assert last["netns"] == "", "GC passed a netns that no longer exists"
    assert_still_fine(srv, keep, keep_ip)
    remove_all(srv)
    audit.assert_clean(ignore=[unique_net.per_network_state])
    record("plugin fails only on DEL (stop error, retry, remove, GC at restart)", runs=reps, audited=AUDITED,
           suite="fault")
