"""Fault injection, part A (issue 6): ``kill -9`` a real ``cri-net serve`` at random points of
pod lifecycles, restart it, and check that what it reports is what the host holds.

Each lifecycle is RunPodSandbox, PodSandboxStatus, StopPodSandbox (sometimes skipped, as a
RemovePodSandbox of a running pod is allowed), RemovePodSandbox; one of its steps is hit by a
SIGKILL chosen by a seeded ``random.Random``: before the RPC is issued, a random delay into
it, or deterministically in the middle of it (the slow plugin holds RunPodSandbox after
bridge; a gated loopback holds it before any network, or holds Stop/Remove after the pod's
network is gone but before the server wrote that down).  Sometimes the whole process group
dies (as under systemd), sometimes only the server (its plugins finish on their own).  A
few pods stay alive across every kill.

After each restart: every listed pod owns exactly the host state of its state (see
:func:`integration.faultkit.live_problems`), the pods that were READY are READY with the
same IP, an interrupted RunPodSandbox is whole or gone, an acknowledged call is durable,
and retrying the interrupted call (twice) finishes the lifecycle.  At the end everything is
removed and the host audit must be clean.  Problems are collected over the whole run and
reported together with the seed (``CRI_NET_FAULT_SEED=<seed>`` reproduces the choices).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc

from cri_net.cri.client import CRIClient
from cri_net.cri.pb.runtime.v1 import api_pb2 as pb
from integration.faultkit import (
    SEED,
    Call,
    LoopbackGate,
    audit_of,
    config_id,
    free_port,
    live_problems,
    pod_config,
    rpc_code,
    sigkill,
    wait_for,
)
from integration.hostaudit import Audit, UniqueNet
from integration.serve_fixture import CRIServer, cri_server_factory  # noqa: F401 - fixture
from tests.reliability import record, scale

KEEPERS = 3
#: Kill modes per step; "delay" is a random fraction of the step's measured duration.
MODES: dict[str, tuple[str, ...]] = {
    "runp": ("before", "delay", "slow", "lo-add"),
    "status": ("before", "delay"),
    "stopp": ("before", "delay", "lo-del"),
    "rmp": ("before", "delay", "lo-del"),
}


class Lifecycles:
    """State of the run: the server, its client, what every pod should be, what went wrong."""

    def __init__(self, srv: CRIServer, gate: LoopbackGate, net: UniqueNet, seed: int) -> None:
        self.srv, self.gate, self.net, self.seed = srv, gate, net, seed
        self.c: CRIClient = srv.client()
        self.wants: dict[str, dict[str, Any]] = {}  # every pod ever made -> its config
        self.keepers: dict[str, str] = {}  # READY pods that must survive every kill -> IP
        self.problems: list[str] = []
        self.took: dict[str, list[float]] = {op: [] for op in MODES}
        self.outcomes: Counter[str] = Counter()
        self.kills = 0
        self.checks = 0

    def note(self, where: str, problems: list[str]) -> None:
        self.problems += [f"{where}: {p}" for p in problems]

    def call(self, op: str, sid: str, cfg: dict[str, Any]) -> Any:
        t0 = time.monotonic()
        out = self.c.runp(cfg) if op == "runp" else getattr(self.c, {"status": "inspectp"}.get(op, op))(sid)
        self.took[op].append(time.monotonic() - t0)
        return out

    def check(self, where: str, stopping: set[str] = frozenset()) -> dict[str, str]:
        """Live audit plus: keepers READY with their IP. Returns READY pod -> IP."""
        self.checks += 1
        problems, ips = live_problems(self.srv, self.c, self.net, self.wants, stopping=stopping)
        for sid, ip in self.keepers.items():
            if ips.get(sid) != ip:
                problems.append(f"kept pod {sid[:13]} was READY with {ip}, now "
                                f"{'READY with ' + ips[sid] if sid in ips else 'not READY'}")
        self.note(where, problems)
        return ips

    def state(self, sid: str) -> str:
        pods = {p.id: p for p in self.c.pods()}
        if sid not in pods:
            return "gone"
        return "READY" if pods[sid].state == pb.SANDBOX_READY else "NOTREADY"

    def restart(self) -> None:
        self.srv.start()
        self.c = self.srv.client()

    def kill_during(self, rng: random.Random, op: str, mode: str, sid: str, cfg: dict[str, Any],
                    group: bool) -> Any:
        """Issue ``op`` and kill the server as ``mode`` says; the call's outcome (None: never
        issued). The server is dead afterwards."""
        release = self._release
        if mode == "before":
            sigkill(self.srv, group=group)
            return None
        if mode == "slow":
            self.srv.set_slow_delay(30)
            marker = self.srv.slow_marker(sid)
        elif mode in ("lo-add", "lo-del"):
            self.gate.close(mode[3:].upper(), 30)
            marker = self.gate.marker(mode[3:].upper(), sid)
        else:
            marker = None
        args = (cfg,) if op == "runp" else (sid,)
        call = Call(self.srv, {"status": "inspectp"}.get(op, op), *args)
        if marker is not None:
            wait_for(marker)
            time.sleep(rng.uniform(0, 0.05))
        else:
            typical = sorted(self.took[op])[len(self.took[op]) // 2] if self.took[op] else 0.1
            time.sleep(rng.uniform(0, 1.3 * typical))
        sigkill(self.srv, group=group, release=release)
        return call.join()

    def _release(self) -> None:
        self.srv.set_slow_delay(None)
        self.gate.open()


def test_sigkill_at_random_points_of_pod_lifecycles(
    cri_server_factory: Callable[..., CRIServer], unique_net: UniqueNet, host_audit: Callable[..., Audit]
) -> None:
    seed = SEED
    rng = random.Random(seed)
    srv = cri_server_factory(slow_plugin=True, start=False)  # bridge, slow, portmap, bandwidth
    gate = LoopbackGate(srv)
    srv.start()
    audit = audit_of(host_audit, srv)
    run = Lifecycles(srv, gate, unique_net, seed)

    def make_keeper(i: int) -> None:
        cfg = pod_config(f"keep-{i}", host_port=free_port() if i % 2 == 0 else None, bandwidth=i % 3 == 1)
        sid = run.c.runp(cfg)
        run.wants[sid] = cfg
        run.keepers[sid] = run.c.inspectp(sid, verbose=False).status.network.ip

    for i in range(KEEPERS):
        make_keeper(i)
    # Two undisturbed lifecycles measure how long each step takes on this host.
    for i in range(2):
        cfg = pod_config(f"warmup-{i}", host_port=free_port())
        sid = config_id(cfg)
        run.wants[sid] = cfg
        for op in ("runp", "status", "stopp", "rmp"):
            run.call(op, sid, cfg)
        # rmp of a READY pod (DELs) costs more than of a stopped one; measure that one.
        cfg = pod_config(f"warmup-rm-{i}")
        sid = config_id(cfg)
        run.wants[sid] = cfg
        run.c.runp(cfg)
        run.call("rmp", sid, cfg)
    run.check("after warm-up")

    # Every (lifecycle shape, step, kill mode); a stopped pod's remove runs no plugin, so
    # there is nothing to hold in it.
    combos: list[tuple[list[str], str, str]] = []
    for ops in (["runp", "status", "stopp", "rmp"], ["runp", "status", "rmp"]):
        for op in ops:
            if op in ("runp", "status") and "stopp" not in ops:
                continue  # the same kill points as in the long shape
            modes = ("before", "delay") if op == "rmp" and "stopp" in ops else MODES[op]
            combos += [(ops, op, mode) for mode in dict.fromkeys(modes)]
    rng.shuffle(combos)
    lifecycles = scale(ci=len(combos), full=100)
    next_keeper = KEEPERS
    for n in range(lifecycles):
        cfg = pod_config(f"life-{n}", host_port=free_port() if rng.random() < 0.5 else None,
                         bandwidth=rng.random() < 0.3)
        sid = config_id(cfg)
        run.wants[sid] = cfg
        if n < len(combos):  # every kill point once first, in a seeded order
            ops, op, mode = combos[n]
        else:
            ops, op, mode = rng.choice(combos)
        step = ops.index(op)
        group = rng.random() < 0.3
        where = f"lifecycle {n} ({'/'.join(ops)}; kill {mode} {op}, {'group' if group else 'server'}, seed {seed})"

        for prior in ops[:step]:
            run.call(prior, sid, cfg)
        before = run.state(sid)
        ip_before = run.c.inspectp(sid, verbose=False).status.network.ip if before != "gone" else ""
        outcome = run.kill_during(rng, op, mode, sid, cfg, group)
        run.kills += 1
        acked = outcome is not None and not isinstance(outcome, BaseException)
        if isinstance(outcome, BaseException) and not isinstance(outcome, grpc.RpcError):
            run.problems.append(f"{where}: the interrupted call raised {outcome!r}")
        run.restart()
        interrupted_stop = {sid} if op in ("stopp", "rmp") and mode != "before" and not acked else set()
        ips = run.check(f"{where}, after restart", stopping=interrupted_stop)
        after = run.state(sid)
        run.outcomes[f"{op}/{mode}: {before}->{after}"] += 1

        # What the state may be now, given what was interrupted (or acknowledged).
        allowed: set[str]
        if mode == "before" or op == "status":
            allowed = {before}
        elif op == "runp":
            allowed = {"READY"} if acked else {"READY", "gone"}
        elif op == "stopp":
            allowed = {"NOTREADY"} if acked else {"READY", "NOTREADY"}
        else:  # rmp
            allowed = {"gone"} if acked else {before, "NOTREADY", "gone"}
        if after not in allowed:
            said = "returned OK" if acked else f"got {rpc_code(outcome)}" if outcome is not None else "was never issued"
            run.problems.append(f"{where}: pod {sid[:13]} was {before}, the interrupted call {said}, "
                                f"and after restart it is {after} (allowed: {sorted(allowed)})")
        if after == "READY" and before == "READY" and ips.get(sid) != ip_before:
            run.problems.append(f"{where}: pod {sid[:13]} was READY with {ip_before}, now reports {ips.get(sid)}")

        # The client retries what it was doing (twice: the retry itself must be idempotent),
        # then finishes the lifecycle.
        for attempt in range(2):
            try:
                got = run.call(op, sid, cfg)
            except grpc.RpcError as exc:
                run.problems.append(f"{where}: retry {attempt + 1} of {op} failed: {exc.code().name} "
                                    f"{exc.details()}")
                continue
            if op == "runp" and got != sid:
                run.problems.append(f"{where}: retried runp returned {got[:13]}, not {sid[:13]}")
        if op == "runp":
            first_ip = run.c.inspectp(sid, verbose=False).status.network.ip
            run.check(f"{where}, after retried runp")
            if run.c.inspectp(sid, verbose=False).status.network.ip != first_ip:
                run.problems.append(f"{where}: IP of {sid[:13]} changed between status calls")
        for later in ops[step + 1:]:
            try:
                run.call(later, sid, cfg)
            except grpc.RpcError as exc:
                run.problems.append(f"{where}: {later} after the retry failed: {exc.code().name} {exc.details()}")
        if run.state(sid) != "gone":
            run.problems.append(f"{where}: pod {sid[:13]} still listed after its RemovePodSandbox")

        # The kept set changes now and then, so kills also meet fresh long-lived pods.
        if rng.random() < 0.25:
            old = rng.choice(sorted(run.keepers))
            run.keepers.pop(old)
            run.c.stopp(old)
            run.c.rmp(old)
            make_keeper(next_keeper)
            next_keeper += 1
        run.check(f"{where}, lifecycle done")

    for sid in list(run.keepers):
        run.c.stopp(sid)
        run.c.rmp(sid)
    run.keepers.clear()
    run.check("after removing everything")
    assert run.c.pods() == [] and srv.record_ids() == []
    record("SIGKILL at random points of pod lifecycles", runs=lifecycles, suite="fault",
           audited="after every restart: each listed pod vs netns mount, eth0 address, host-local lease, cached "
                   "result, bridge veths, portmap DNAT chain, bandwidth ifb; kept pods READY with their IP; at the "
                   "end the full host audit (netns, links, qdiscs, leases, iptables, cache, state dir)",
           detail=f"seed {seed}: {lifecycles} lifecycles, {run.kills} kills, {run.checks} live audits; "
                  + ", ".join(f"{k} x{v}" for k, v in sorted(run.outcomes.items())))
    print(f"seed {seed}: outcomes", dict(run.outcomes))
    try:
        audit.assert_clean(ignore=[unique_net.per_network_state])
    except AssertionError as exc:
        run.problems.append(f"final host audit: {exc}")
    assert not run.problems, (f"seed {seed} (CRI_NET_FAULT_SEED={seed} reproduces the choices): "
                              f"{len(run.problems)} problems:\n  " + "\n  ".join(run.problems))
