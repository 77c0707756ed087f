"""Bad-input suite (issue 6): generated CRI requests through a real `cri-net serve` socket.

Hypothesis builds RunPodSandboxRequests with odd metadata (names, namespaces and uids with
`/`, `..`, NUL, `;`, `=`, newlines, non-ASCII; now and then huge), random annotation keys and
values (every annotation cri-net interprets, plus free ones), port mappings with random
ports, protocols (unknown enum numbers too) and host IPs, and DNS options; and
PodSandboxStatus/Stop/Remove with random ids next to a live pod.

For every request: the server still answers Version; a rejection is INVALID_ARGUMENT (or
NOT_FOUND for an unknown id) whose message starts with the offending key or field; a rejected
RunPodSandbox leaves no record, netns or cache file; an accepted one is READY and is removed
again through RemovePodSandbox. One host audit (netns mounts, links, qdiscs, leases, iptables,
cache and state files) spans each whole batch.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cri_net.cri.pb.runtime.v1 import api_pb2 as pb
from adaptors.cri import annotations as ann
from cri_net.server.sandbox import sandbox_id
from integration.hostaudit import Audit
from integration.serve_fixture import CRIServer, cri_server, cri_server_factory  # noqa: F401 - fixtures
from tests.reliability import record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
from badinput_strategies import host_ips, props, proto_text  # noqa: E402

SUITE = "bad-input"
AUDITED = ("per request: server answers Version, status code + key in message, no record/netns/cache file "
           "for rejections; per batch: host audit (netns, links, qdiscs, leases, iptables, cache, state)")
FIELD_PATHS = ("config.", "metadata.", "port_mappings[", "dns_config.", "pod_cidr", "sandbox_id", "pod_sandbox_id",
               "default_interface", "pod_id", "netns_path")


def audit_of(host_audit: Callable[..., Audit], srv: CRIServer) -> Audit:
    return host_audit(cache_dir=srv.cache_dir, ipam_dir=srv.ipam_dir, state_dir=srv.state_dir,
                      netns_dirs=[srv.netns_dir], ignore=[srv.foreign_state])


def no_trace(srv: CRIServer) -> None:
    """Nothing of any pod is left in the server's directories."""
    assert srv.record_ids() == [], f"records left: {srv.record_ids()}"
    netns = sorted(p.name for p in srv.netns_dir.iterdir()) if srv.netns_dir.exists() else []
    assert netns == [], f"netns left: {netns}"
    assert srv.cache_files() == [], f"cache files left: {srv.cache_files()}"
    assert srv.leases() == {}, f"leases left: {srv.leases()}"


def names_a_key(details: str, annotations: dict[str, str]) -> bool:
    """The message starts with a CRI field path or a given annotation key (`key: ...`,
    `key[i]: ...`)."""
    return details.startswith(FIELD_PATHS) or any(
        k and details.startswith(k) and details[len(k):len(k) + 1] in (":", "[") for k in annotations)


# ---- generators ------------------------------------------------------------------------------

idents = st.one_of(st.sampled_from(["pod", "default", "kube-system", "a.b-c", "uid-1234"]), proto_text,
                   st.sampled_from(["x" * 300, "é" * 200]))
ann_values = st.one_of(
    proto_text,
    st.sampled_from(["10M", "1k", "1P", "0", "-1M", "1e3", "garbage", "999P"]),
    st.lists(st.fixed_dictionaries({"hostPort": st.integers(-1, 70000), "containerPort": st.integers(0, 70000)},
                                   optional={"protocol": st.sampled_from(["tcp", "udp", "sctp", "icmp"]),
                                             "hostIP": host_ips}), max_size=2).map(json.dumps),
    st.lists(st.fixed_dictionaries({"name": st.sampled_from(["nope", "../x", ""]),
                                    "interface": st.sampled_from(["net1", "eth0", "a/b"])}), max_size=2).map(json.dumps),
    st.lists(st.lists(st.fixed_dictionaries({"subnet": st.sampled_from(["10.213.0.0/24", "10.0.0.1/24", "x"])}),
                      max_size=1), max_size=1).map(json.dumps),
    st.builds(lambda k, v: f"{k}={v}", proto_text, proto_text),
)
ann_keys = st.sampled_from([ann.PORT_MAPPINGS_ANNOTATION, ann.IP_RANGES_ANNOTATION, ann.INGRESS_BANDWIDTH_ANNOTATION,
                            ann.EGRESS_BANDWIDTH_ANNOTATION, ann.EGRESS_BANDWIDTH_MISSPELT_ANNOTATION,
                            ann.EXTRA_NETWORKS_ANNOTATION, ann.CNI_EXTENSION_ANNOTATION,
                            ann.CNI_ARGS_ANNOTATION_PREFIX + "x", "free/annotation"]) | proto_text
port_mapping = st.builds(
    lambda proto, cport, hport, hip: pb.PortMapping(protocol=proto, container_port=cport, host_port=hport,
                                                    host_ip=hip),
    st.sampled_from([0, 1, 2]) | st.integers(3, 2**31 - 1),
    st.integers(-2**31, 2**31 - 1) | st.integers(1, 65535),
    st.just(0) | st.integers(-2**31, 2**31 - 1) | st.integers(30000, 65535),
    host_ips.map(lambda s: s.encode("utf-8", "replace").decode("utf-8")),
)
dns_word = st.sampled_from(["svc.cluster.local", "ndots:5", "edns0"]) | proto_text
dns_config = st.builds(
    lambda servers, searches, options: pb.DNSConfig(servers=servers, searches=searches, options=options),
    st.lists(st.sampled_from(["10.0.0.53", "::1", "fe80::1%eth0"]) | proto_text, max_size=2),
    st.lists(dns_word, max_size=2), st.lists(dns_word, max_size=2))


@st.composite
def run_requests(draw: st.DrawFn) -> pb.RunPodSandboxRequest:
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(
        name=draw(idents), namespace=draw(idents), uid=draw(idents), attempt=draw(st.integers(0, 2**32 - 1))))
    for k, v in draw(st.dictionaries(ann_keys, ann_values, max_size=3)).items():
        cfg.annotations[k] = v
    for k, v in draw(st.dictionaries(proto_text, proto_text, max_size=2)).items():
        cfg.labels[k] = v
    cfg.port_mappings.extend(draw(st.lists(port_mapping, max_size=2)))
    if draw(st.booleans()):
        cfg.dns_config.CopyFrom(draw(dns_config))
    if draw(st.integers(0, 9)) == 0:
        cfg.linux.security_context.namespace_options.network = pb.NODE
    return pb.RunPodSandboxRequest(config=cfg, runtime_handler=draw(st.sampled_from(["", "runc", "../x"])))


def request_id(req: pb.RunPodSandboxRequest) -> str:
    md = req.config.metadata
    return sandbox_id(md.namespace, md.name, md.uid, md.attempt)


# ---- tests -----------------------------------------------------------------------------------


def test_generated_run_pod_sandbox_requests(cri_server: CRIServer, host_audit: Callable[..., Audit]) -> None:
    srv = cri_server
    audit = audit_of(host_audit, srv)
    c = srv.client(timeout=60)
    outcomes: dict[str, int] = {}

    @props(ci=30, full=400)
    @given(req=run_requests())
    def one(req: pb.RunPodSandboxRequest) -> None:
        record("CRI: generated RunPodSandbox requests", runs=1, audited=AUDITED, suite=SUITE)
        srv.known_ids.add(request_id(req))
        try:
            sid = c.runtime.RunPodSandbox(req, timeout=60).pod_sandbox_id
        except grpc.RpcError as exc:
            outcomes[exc.code().name] = outcomes.get(exc.code().name, 0) + 1
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, \
                f"{exc.code().name}: {exc.details()!r:.300} for {str(req)[:400]!r}"
            assert names_a_key(exc.details(), dict(req.config.annotations)), exc.details()[:300]
            c.version()  # still serving
            no_trace(srv)
            return
        outcomes["OK"] = outcomes.get("OK", 0) + 1
        assert sid == request_id(req)
        status = c.inspectp(sid, verbose=False).status
        assert status.state == pb.SANDBOX_READY and status.metadata.name == req.config.metadata.name
        c.rmp(sid)
        c.version()
        no_trace(srv)

    one()
    print("RunPodSandbox outcomes:", outcomes)
    assert srv.alive(), srv.log_tail()
    audit.assert_clean(ignore=[srv.net.per_network_state] if srv.net else [])  # the bridge outlives its pods
    assert outcomes.get("OK") and outcomes.get("INVALID_ARGUMENT"), f"one-sided generator: {outcomes}"


@pytest.mark.parametrize("field, size", [("name", 200_000), ("uid", 140_000), ("namespace", 1_000_000)])
def test_huge_metadata_is_invalid_argument(cri_server: CRIServer, host_audit: Callable[..., Audit],
                                           field: str, size: int) -> None:
    """Metadata goes into CNI_ARGS, one environment string of every plugin run; past the
    kernel's 128 KiB per-string limit execve fails (E2BIG). That must be refused up front as
    INVALID_ARGUMENT naming the field, not reach the plugins and come back INTERNAL."""
    record("CRI: generated RunPodSandbox requests", runs=1, audited=AUDITED, suite=SUITE)
    srv = cri_server
    audit = audit_of(host_audit, srv)
    md = {"name": "pod", "namespace": "default", "uid": "u1", field: "x" * size}
    req = pb.RunPodSandboxRequest(config=pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(**md)))
    srv.known_ids.add(request_id(req))
    with srv.client() as c:
        with pytest.raises(grpc.RpcError) as info:
            c.runtime.RunPodSandbox(req, timeout=60)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (info.value.code(), info.value.details()[:300])
        assert field in info.value.details().split(":")[0], info.value.details()[:300]
        c.version()
    no_trace(srv)
    audit.assert_clean()


def test_cni_args_annotations_past_the_exec_limit_are_invalid_argument(
        cri_server: CRIServer, host_audit: Callable[..., Audit]) -> None:
    """Three CNI_ARGS extension annotations of 60 KiB each: each is under the 64 KiB
    annotation limit, together they exceed what one environment string can carry."""
    record("CRI: generated RunPodSandbox requests", runs=1, audited=AUDITED, suite=SUITE)
    srv = cri_server
    audit = audit_of(host_audit, srv)
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="pod", namespace="default", uid="u2"))
    for i in range(3):
        cfg.annotations[f"{ann.CNI_ARGS_ANNOTATION_PREFIX}k{i}"] = f"K{i}=" + "v" * 60_000
    req = pb.RunPodSandboxRequest(config=cfg)
    srv.known_ids.add(request_id(req))
    with srv.client() as c:
        with pytest.raises(grpc.RpcError) as info:
            c.runtime.RunPodSandbox(req, timeout=60)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (info.value.code(), info.value.details()[:300])
        assert info.value.details().startswith(ann.CNI_ARGS_ANNOTATION_PREFIX), info.value.details()[:300]
    no_trace(srv)
    audit.assert_clean()


ids = st.one_of(proto_text, st.text(alphabet="0123456789abcdef", min_size=1, max_size=70),
                st.sampled_from(["", "../../etc/passwd", "/", ".", "a" * 5000, "\0"]))


def test_random_sandbox_ids_next_to_a_live_pod(cri_server: CRIServer, host_audit: Callable[..., Audit]) -> None:
    """Status/Stop/Remove with generated ids: NOT_FOUND/INVALID_ARGUMENT for Status, OK (the
    CRI calls are idempotent) or INVALID_ARGUMENT for Stop/Remove; the live pod is untouched
    unless the id is a prefix of its id."""
    srv = cri_server
    audit = audit_of(host_audit, srv)
    c = srv.client(timeout=60)
    live = c.runp({"metadata": {"name": "live", "namespace": "default", "uid": "live-uid"}})

    @props(ci=60, full=1000)
    @given(sid=ids, rpc=st.sampled_from(["status", "stop", "remove"]))
    def one(sid: str, rpc: str) -> None:
        if sid and live.startswith(sid):
            return  # a prefix of the live pod's id names it: not a random id
        record("CRI: random ids in PodSandboxStatus/Stop/Remove", runs=1, audited=AUDITED, suite=SUITE)
        call = {"status": lambda: c.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid), timeout=60),
                "stop": lambda: c.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=60),
                "remove": lambda: c.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid),
                                                             timeout=60)}[rpc]
        try:
            call()
            assert rpc != "status", f"PodSandboxStatus of unknown id {sid[:40]!r} succeeded"
        except grpc.RpcError as exc:
            allowed = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT} if rpc == "status" \
                else {grpc.StatusCode.INVALID_ARGUMENT}
            assert exc.code() in allowed, (rpc, sid[:40], exc.code(), exc.details()[:200])
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                assert exc.details().startswith("pod_sandbox_id"), exc.details()[:200]
            else:
                assert "not found" in exc.details(), exc.details()[:200]
        c.version()
        assert c.inspectp(live, verbose=False).status.state == pb.SANDBOX_READY

    one()
    assert srv.record_ids() == [live]
    c.rmp(live)
    no_trace(srv)
    audit.assert_clean(ignore=[srv.net.per_network_state] if srv.net else [])


@pytest.mark.parametrize("rpc", ["status", "stop", "remove"])
def test_huge_unknown_sandbox_id_answers_in_full(cri_server: CRIServer, rpc: str) -> None:
    """An unknown 100 KB id: Status is NOT_FOUND, Stop/Remove OK. The error message must not
    echo the whole id: gRPC drops a status message over its 16 KiB metadata limit, and the
    client gets RESOURCE_EXHAUSTED "Stream removed" instead of the real answer."""
    record("CRI: random ids in PodSandboxStatus/Stop/Remove", runs=1, audited=AUDITED, suite=SUITE)
    sid = "a" * 100_000
    with cri_server.client() as c:
        try:
            {"status": lambda: c.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid), timeout=60),
             "stop": lambda: c.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=60),
             "remove": lambda: c.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid),
                                                          timeout=60)}[rpc]()
            assert rpc != "status", "PodSandboxStatus of an unknown id succeeded"
        except grpc.RpcError as exc:
            assert rpc == "status" and exc.code() == grpc.StatusCode.NOT_FOUND, (exc.code(), exc.details()[:200])
            assert len(exc.details()) < 1024, f"error message of {len(exc.details())} chars echoes the id"
        c.version()
