"""Fault injection, part A (issue 6): concurrency against a real ``cri-net serve``.

* 32 clients (threads, each with its own CRIClient and connection) fill the node at once,
  then replace their pods round after round (creations racing removals), then empty it.
* The same pod (same metadata) requested twice at once: one sandbox id, one netns, one IP.
* StopPodSandbox / RemovePodSandbox / PodSandboxStatus racing RunPodSandbox on the same pod,
  at random moments and deterministically while RunPodSandbox is held in its plugin chain.

Every call carries a gRPC deadline; a call that misses it (DEADLINE_EXCEEDED: a deadlock or
a starved server) fails the test.  After every phase the live host state must match what the
server lists (:func:`integration.faultkit.live_problems`: no duplicate IPs, no lease, veth,
netns, cached result, DNAT chain or ifb of a pod that is not READY), and at the end the
full host audit must be clean.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from cri_net.cri.client import CRIClient
from cri_net.cri.pb.runtime.v1 import api_pb2 as pb
from integration.faultkit import (
    SEED,
    Call,
    audit_of,
    config_id,
    free_port,
    live_problems,
    pod_config,
    rpc_code,
    wait_for,
)
from integration.hostaudit import Audit, UniqueNet
from integration.serve_fixture import CRIServer, cri_server_factory, nsfs_mounts_under  # noqa: F401 - fixture
from tests.reliability import record, scale

#: Deadline of every call. 32 pods at once on 2 cores take a few seconds; a minute is a hang.
DEADLINE = 60.0
CLIENTS = 32


@dataclass
class Held:
    """One pod's hold on its IP: from RunPodSandbox's answer to the start of its removal."""

    sid: str
    ip: str
    since: float
    until: float = float("inf")


def overlapping_holds(holds: list[Held]) -> list[str]:
    """Pairs of pods that held the same IP at the same time (a duplicate IP on the node)."""
    by_ip: dict[str, list[Held]] = {}
    for h in holds:
        by_ip.setdefault(h.ip, []).append(h)
    out = []
    for ip, hs in by_ip.items():
        hs.sort(key=lambda h: h.since)
        for a, b in zip(hs, hs[1:]):
            if b.since < a.until:
                out.append(f"{ip}: {a.sid[:13]} held it until {a.until:.3f}, {b.sid[:13]} got it at {b.since:.3f}")
    return out


def call_errors(where: str, errors: list[tuple[str, BaseException]]) -> list[str]:
    return [f"{where}: {what}: {rpc_code(exc)} {exc.details() if isinstance(exc, grpc.RpcError) else exc}"
            for what, exc in errors]


# ------------------------------------------------------------------------- 32 clients


def test_32_clients_create_and_remove_pods_at_once(
    cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    srv = cri_server_factory()
    audit = audit_of(host_audit, srv)
    rounds = scale(ci=1, full=5)
    rng = random.Random(SEED)
    main = srv.client(timeout=DEADLINE)
    clients = [srv.client(timeout=DEADLINE) for _ in range(CLIENTS)]
    wants: dict[str, dict[str, Any]] = {}
    # Some pods map a port or are shaped, so portmap and bandwidth run concurrently too.
    plans = [[pod_config(f"c{i}-r{r}", labels={"client": str(i)},
                         host_port=free_port() if rng.random() < 0.25 else None, bandwidth=rng.random() < 0.15)
              for r in range(rounds + 1)] for i in range(CLIENTS)]
    for plan in plans:
        wants.update({config_id(cfg): cfg for cfg in plan})
    holds: list[Held] = []
    errors: list[tuple[str, BaseException]] = []
    problems: list[str] = []
    lock = threading.Lock()
    phases = ["start", "fill", *(f"round {r}" for r in range(1, rounds + 1)), "empty"]
    done: list[float] = []

    def audit_phase() -> None:
        """Barrier action: every client is between calls; the node must be consistent."""
        phase = phases[len(done)]
        done.append(time.monotonic())
        if phase == "start":
            return
        found, ips = live_problems(srv, main, unique_net, wants)
        expect = 0 if phase == "empty" else CLIENTS
        if len(ips) != expect:
            found.append(f"{len(ips)} READY pods, expected {expect}")
        problems.extend(f"after {phase}: {p}" for p in found)

    barrier = threading.Barrier(CLIENTS, action=audit_phase, timeout=DEADLINE * 3)

    def create(c: CRIClient, cfg: dict[str, Any]) -> Held | None:
        try:
            sid = c.runp(cfg)
            since = time.monotonic()
            ip = c.inspectp(sid, verbose=False).status.network.ip
        except grpc.RpcError as exc:
            with lock:
                errors.append((f"runp {cfg['metadata']['name']}", exc))
            return None
        held = Held(sid, ip, since)
        with lock:
            holds.append(held)
        return held

    def remove(c: CRIClient, held: Held, stop_first: bool) -> None:
        held.until = time.monotonic()
        try:
            if stop_first:
                c.stopp(held.sid)
            c.rmp(held.sid)
        except grpc.RpcError as exc:
            with lock:
                errors.append((f"rmp {held.sid[:13]}", exc))

    def client(i: int) -> None:
        c, plan = clients[i], plans[i]
        barrier.wait()
        current = create(c, plan[0])
        barrier.wait()  # audit: the node is full
        for r in range(1, rounds + 1):
            # Half the clients remove first, half create first: removals race creations.
            if i % 2:
                if current is not None:
                    remove(c, current, stop_first=i % 4 == 1)
                current = create(c, plan[r])
            else:
                new = create(c, plan[r])
                if current is not None:
                    remove(c, current, stop_first=i % 4 == 0)
                current = new
            barrier.wait()  # audit: full again, every old pod gone
        if current is not None:
            remove(c, current, stop_first=i % 2 == 0)
        barrier.wait()  # audit: empty

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE * (rounds + 3) * 3)
    hung = [t.name for t in threads if t.is_alive()]
    took = time.monotonic() - t0
    pods = CLIENTS * (rounds + 1)
    record("32 clients creating and removing pods at once", runs=pods, suite="fault",
           audited="after each phase (full, every replacement round, empty): listed pods vs netns mounts, eth0, "
                   "host-local leases, cache, bridge veths, DNAT chains, ifbs; IP hold intervals never overlap; "
                   "at the end the full host audit",
           detail=f"{CLIENTS} clients x {rounds} replacement rounds: {pods} pods in {took:.1f}s")
    print("phase ends (s):", [round(t - t0, 2) for t in done])
    assert not hung, f"client threads still running after {DEADLINE * (rounds + 3) * 3}s (deadlock?): {hung}"
    problems += call_errors("call", errors)
    problems += [f"duplicate IP: {d}" for d in overlapping_holds(holds)]
    try:
        audit.assert_clean(ignore=[unique_net.per_network_state])
    except AssertionError as exc:
        problems.append(f"final host audit: {exc}")
    assert not problems, f"seed {SEED}: {len(problems)} problems:\n  " + "\n  ".join(problems)
    assert len(holds) == pods and main.pods() == [] and srv.record_ids() == []


# ------------------------------------------------------------------------- same pod twice


def test_same_pod_requested_twice_at_once(
    cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    srv = cri_server_factory(slow_plugin=True)
    audit = audit_of(host_audit, srv)
    main = srv.client(timeout=DEADLINE)
    cases = scale(ci=6, full=40)
    wants: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for n in range(cases):
        held = n % 2 == 1  # the first request held in its plugin chain when the second arrives
        cfg = pod_config(f"twice-{n}", host_port=free_port() if n % 3 == 0 else None)
        sid = config_id(cfg)
        wants[sid] = cfg
        where = f"case {n} ({'second while the first is held after bridge' if held else 'both at once'})"
        if held:
            srv.set_slow_delay(30)
            first = Call(srv, "runp", cfg, timeout=DEADLINE)
            wait_for(srv.slow_marker(sid))
            second = Call(srv, "runp", cfg, timeout=DEADLINE)
            time.sleep(0.1)
            if second.outcome:
                problems.append(f"{where}: the second RunPodSandbox returned {second.outcome[0]!r} while the "
                                f"first was still in its plugin chain")
            srv.set_slow_delay(None)
        else:
            go = threading.Barrier(2)
            first = Call(srv, "runp", cfg, timeout=DEADLINE, before=go.wait)
            second = Call(srv, "runp", cfg, timeout=DEADLINE, before=go.wait)
        got = [first.join(), second.join()]
        if got != [sid, sid]:
            answers = [g if isinstance(g, str) else rpc_code(g) for g in got]
            problems.append(f"{where}: RunPodSandbox answered {answers}, expected {sid[:13]} twice")
        found, ips = live_problems(srv, main, unique_net, wants)
        problems += [f"{where}: {p}" for p in found]
        if sid not in ips:
            problems.append(f"{where}: pod not READY after the two requests")
        mounts = [m for m in nsfs_mounts_under(srv.netns_dir) if sid in m]
        if len(mounts) != 1:
            problems.append(f"{where}: {len(mounts)} netns mounts for the pod")
        leases = [ip for ip, owner in srv.leases().items() if owner == sid]
        if len(leases) != 1:
            problems.append(f"{where}: {len(leases)} leases for the pod: {leases}")
    # Two removals of one pod at once: both succeed, nothing is left.
    sids = sorted(wants)
    pairs = [Call(srv, "rmp", sid, timeout=DEADLINE) for sid in sids for _ in range(2)]
    outcomes = [p.join() for p in pairs]
    problems += [f"RemovePodSandbox {sid[:13]} (twice at once): {rpc_code(o)}"
                 for sid, o in zip([s for s in sids for _ in range(2)], outcomes) if isinstance(o, BaseException)]
    found, _ = live_problems(srv, main, unique_net, wants)
    problems += [f"after removing twice at once: {p}" for p in found]
    record("the same pod requested twice at once", runs=cases, suite="fault",
           audited="per case: one id, one netns mount, one lease, one veth, cache, DNAT chain; after double "
                   "removals and at the end the full host audit",
           detail=f"{cases} pods, half with the first request held in the plugin chain; each removed twice at once")
    try:
        audit.assert_clean(ignore=[unique_net.per_network_state])
    except AssertionError as exc:
        problems.append(f"final host audit: {exc}")
    assert not problems, f"{len(problems)} problems:\n  " + "\n  ".join(problems)
    assert main.pods() == [] and srv.record_ids() == []


# ------------------------------------------------------------------------- racing RunPodSandbox


RACERS: tuple[tuple[str, ...], ...] = (("stopp",), ("rmp",), ("stopp", "rmp"), ("inspectp",))


def test_stop_remove_and_status_racing_run_pod_sandbox(
    cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    srv = cri_server_factory(slow_plugin=True)
    audit = audit_of(host_audit, srv)
    main = srv.client(timeout=DEADLINE)
    rng = random.Random(SEED)
    # A plain RunPodSandbox's duration scales the random delays.
    t0 = time.monotonic()
    warm = pod_config("warmup")
    main.runp(warm)
    runp_time = time.monotonic() - t0
    main.rmp(config_id(warm))
    keeper_cfg = pod_config("bystander")  # a pod of the node that no race touches
    keeper = main.runp(keeper_cfg)
    cases = scale(ci=2, full=10) * len(RACERS) * 2
    wants: dict[str, dict[str, Any]] = {keeper: keeper_cfg}
    problems: list[str] = []
    outcomes: Counter[str] = Counter()
    for n in range(cases):
        racers = RACERS[n % len(RACERS)]
        held = (n // len(RACERS)) % 2 == 0  # deterministic: racers issued while runp holds the pod
        cfg = pod_config(f"race-{n}", host_port=free_port() if rng.random() < 0.5 else None,
                         bandwidth=rng.random() < 0.3)
        sid = config_id(cfg)
        wants[sid] = cfg
        delay = 0.0 if held else rng.uniform(0, 1.2 * runp_time)
        when = "while runp is held after bridge" if held else f"{delay:.3f}s into runp"
        where = f"case {n} ({'+'.join(racers)} {when}, seed {SEED})"
        if held:
            srv.set_slow_delay(30)
        run = Call(srv, "runp", cfg, timeout=DEADLINE)
        if held:
            wait_for(srv.slow_marker(sid))
        else:
            time.sleep(delay)
        calls = [Call(srv, r, sid, timeout=DEADLINE) for r in racers]
        if held:
            time.sleep(0.1)
            # One pod held in its chain must not hold up the rest of the node.
            with CRIClient(str(srv.socket), timeout=5.0) as quick:
                try:
                    quick.pods()
                    quick.inspectp(keeper, verbose=False)
                except grpc.RpcError as exc:
                    problems.append(f"{where}: ListPodSandbox/PodSandboxStatus of another pod while runp is held: "
                                    f"{rpc_code(exc)}")
            for r, call in zip(racers, calls):
                if r != "inspectp" and call.outcome:
                    problems.append(f"{where}: {r} returned {call.outcome[0]!r} while runp still held the pod")
            srv.set_slow_delay(None)
        got = run.join()
        results = [c.join() for c in calls]
        if got != sid:
            problems.append(f"{where}: runp answered {rpc_code(got) if isinstance(got, BaseException) else got}")
        for r, res in zip(racers, results):
            if isinstance(res, BaseException) and not (r == "inspectp" and rpc_code(res) == "NOT_FOUND"):
                problems.append(f"{where}: racing {r} failed: {rpc_code(res)}")
        pods = {p.id: p for p in main.pods()}
        state = "gone" if sid not in pods else ("READY" if pods[sid].state == pb.SANDBOX_READY else "NOTREADY")
        outcomes[f"{'+'.join(racers)}/{'held' if held else 'random'}: {state}"] += 1
        # A racer that found the pod (always when held) takes effect after runp; one that
        # came before the pod existed was a no-op on an unknown pod.
        allowed = {"stopp": {"READY", "NOTREADY"}, "rmp": {"READY", "gone"}, "inspectp": {"READY"}}.get(
            racers[-1], set())
        if held:
            allowed = {"stopp": {"NOTREADY"}, "rmp": {"gone"}, "inspectp": {"READY"}}[racers[-1]]
        if len(racers) == 2:
            allowed = {"READY", "NOTREADY", "gone"} if not held else {"NOTREADY", "gone"}
        if state not in allowed:
            problems.append(f"{where}: pod is {state} after the race (allowed: {sorted(allowed)})")
        found, _ = live_problems(srv, main, unique_net, wants)
        problems += [f"{where}: {p}" for p in found]
        main.rmp(sid)
        if sid in {p.id for p in main.pods()}:
            problems.append(f"{where}: pod still listed after the final rmp")
    main.rmp(keeper)
    found, _ = live_problems(srv, main, unique_net, wants)
    problems += [f"at the end: {p}" for p in found]
    record("StopPodSandbox / RemovePodSandbox / PodSandboxStatus racing RunPodSandbox", runs=cases, suite="fault",
           audited="per race: listed pods vs netns mounts, eth0, leases, cache, veths, DNAT chains, ifbs; at the end "
                   "the full host audit",
           detail=", ".join(f"{k} x{v}" for k, v in sorted(outcomes.items())))
    print("race outcomes:", dict(outcomes))
    try:
        audit.assert_clean(ignore=[unique_net.per_network_state])
    except AssertionError as exc:
        problems.append(f"final host audit: {exc}")
    assert not problems, f"seed {SEED}: {len(problems)} problems:\n  " + "\n  ".join(problems)
    assert main.pods() == [] and srv.record_ids() == []
