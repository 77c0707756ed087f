"""State a restarted server cannot read (issue 11): it is reported and left alone, never torn
down; and the plugin GC never runs on a cache it could not fully read."""

from __future__ import annotations

import json
import os

import grpc
import pytest

from cri_net.libcni.cache import CacheRecord, ResultCache
from integration.test_server_rpc import cni_calls, env, pod, result_100, rpc_error, write_record  # noqa: F401 - fixture


@pytest.mark.parametrize("damage", ["truncated", "newer-state", "id-not-file-name", "not-json"])
def test_unreadable_record_keeps_netns_and_attachments(env, damage: str) -> None:  # noqa: F811
    env.write_conf("fake-a")
    env.start()
    sid = env.client().runp(pod("keep", uid="u-keep"))
    cache_before, netns_before = env.cache_files(sid), env.netns_files()
    assert cache_before and netns_before == [sid]
    env.stop()
    path = env.state_dir / "sandboxes" / f"{sid}.json"
    original = path.read_bytes()
    doc = json.loads(original)
    if damage == "truncated":
        path.write_bytes(original[:40])
    elif damage == "newer-state":
        path.write_text(json.dumps({**doc, "state": "PAUSED"}))
    elif damage == "id-not-file-name":
        path.write_text(json.dumps({**doc, "id": "f" * 64}))
    else:
        path.write_bytes(b"\x00\xff garbage")
    env.fake.clear_log()
    server = env.start()
    assert cni_calls(env.fake, "DEL") == [], "an unreadable pod's attachments were DEL'd at start-up"
    assert server.manager.gc_stale_attachments() == 0 and cni_calls(env.fake, "DEL") == []
    assert env.cache_files(sid) == cache_before and env.netns_files() == netns_before
    assert path.exists()
    c = env.client()
    [entry] = c.info()["unreadableSandboxes"]
    assert entry["id"] == sid and str(path) in entry["problem"]
    err = rpc_error(c.inspectp, sid)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and str(path) in err.details()
    err = rpc_error(c.runp, pod("keep", uid="u-keep"))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and str(path) in err.details()
    for call in (c.stopp, c.rmp):  # state unknown: refused (an OK would be a lie), never a teardown
        err = rpc_error(call, sid)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and str(path) in err.details(), err.details()
    assert cni_calls(env.fake, "DEL") == [] and env.netns_files() == netns_before
    # repaired by the operator: back to normal
    env.stop()
    path.write_bytes(original)
    env.start()
    c = env.client()
    assert c.info()["unreadableSandboxes"] == []
    c.rmp(sid)
    assert env.netns_files() == [] and env.cache_files(sid) == []


def test_a_record_of_another_identity_under_this_id_is_refused(env) -> None:  # noqa: F811
    """The id is a hash; a record under it with another identity is never handed out."""
    from cri_net.server.sandbox import sandbox_id

    env.write_conf("fake-a")
    sid = sandbox_id("default", "p1", "uid-1", 0)
    write_record(env.state_dir, sid, "someone-else", host_network=True)
    env.start()
    err = rpc_error(env.client().runp, pod("p1", uid="uid-1"))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and "someone-else" in err.details()


def test_plugin_gc_skipped_while_a_cached_result_is_unreadable(env) -> None:  # noqa: F811
    env.write_conf("fake-a", cniVersion="1.1.0")
    env.start()
    live = env.client().runp(pod("live", uid="u-live"))
    env.stop()
    results = env.cache_dir / "results"
    (results / f"net1-{'e0' * 32}-eth0").write_bytes(b'{"kind": "cniCacheV1", "truncat')
    env.fake.clear_log()
    env.start()
    assert [r for r in env.fake.records() if r["event"] == "start" and r["env"].get("CNI_COMMAND") == "GC"] == []
    assert env.cache_files(live)
    # once it is readable again, GC runs with every valid attachment
    (results / f"net1-{'e0' * 32}-eth0").unlink()
    cache = ResultCache(str(env.cache_dir))
    conf = env.fake.conflist_bytes("fake-a", version="1.1.0")
    cache.write(CacheRecord(container_id="d0" * 32, config=conf, ifname="eth0", network_name="net1",
                            netns="/var/run/netns/other-runtime", result=result_100("10.9.9.9/24")))
    env.restart()
    gcs = [r for r in env.fake.records() if r["event"] == "start" and r["env"].get("CNI_COMMAND") == "GC"]
    assert len(gcs) == 1


def test_status_lists_a_bounded_number_of_unreadable_records(env) -> None:  # noqa: F811
    env.write_conf("fake-a")
    d = env.state_dir / "sandboxes"
    d.mkdir(parents=True, mode=0o700)
    for i in range(130):
        (d / f"{i:064x}.json").write_text("{" + "x" * 5000)
    env.start()
    info = env.client().info()
    assert len(info["unreadableSandboxes"]) == 100 and info["unreadableSandboxesOmitted"] == 30
    assert all(len(u["problem"]) <= 1000 for u in info["unreadableSandboxes"])
    assert env.records() == [f"{i:064x}.json" for i in range(130)]  # all kept


def test_the_largest_pod_the_limits_allow_is_still_readable_after_a_restart(env) -> None:  # noqa: F811
    """Every bound a pod author meets (metadata, port mappings, DNS) at its maximum at once: the
    record and the cache entry written for it stay under what is read back, so after a restart
    the pod is listed and stops and is removed normally. One mapping more is refused up front."""
    from cri_net.server import limits

    env.write_conf({"type": "fake-a", "capabilities": {"portMappings": True, "dns": True}})
    env.start()
    c = env.client()
    ip6 = "fd00:" + ":".join(["ffff"] * 7)  # the longest host IP spelling
    mappings = [{"host_port": 0, "container_port": 65535 - i, "protocol": 0, "host_ip": ip6}
                for i in range(limits.MAX_PORT_MAPPINGS // 2)]
    mappings += [{"host_port": 40000 + i, "container_port": 80, "protocol": 0, "host_ip": ip6}
                 for i in range(limits.MAX_PORT_MAPPINGS - len(mappings))]
    budget = limits.MAX_POD_METADATA_BYTES
    cfg = pod("big", uid="u-big", labels={"l": "y" * (budget // 2 - 1)}, annotations={"a": "x" * (budget // 2 - 1)},
              port_mappings=mappings)
    entry = "d" * limits.MAX_DNS_ENTRY_LEN
    cfg.dns_config.servers.extend([ip6] * limits.MAX_DNS_ENTRIES)
    cfg.dns_config.searches.extend([entry] * limits.MAX_DNS_ENTRIES)
    cfg.dns_config.options.extend([entry] * limits.MAX_DNS_ENTRIES)
    sid = c.runp(cfg)
    env.stop()
    env.start()
    c = env.client()
    assert c.info()["unreadableSandboxes"] == []
    assert [p.id for p in c.pods()] == [sid]
    c.stopp(sid)
    c.rmp(sid)
    assert env.netns_files() == [] and env.cache_files(sid) == []

    too_many = pod("bigger", uid="u-bigger", port_mappings=mappings + [{"host_port": 0, "container_port": 1}])
    err = rpc_error(c.runp, too_many)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "config.port_mappings" in err.details(), err.details()
    too_long = pod("dns", uid="u-dns")
    too_long.dns_config.searches.append("d" * (limits.MAX_DNS_ENTRY_LEN + 1))
    err = rpc_error(c.runp, too_long)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "config.dns_config.searches[0]" in err.details()
    assert env.netns_files() == [] and c.pods() == []


def test_a_netns_dir_that_is_not_a_directory_fails_the_pod_naming_it_and_runs_no_plugin(env) -> None:  # noqa: F811
    env.write_conf("fake-a")
    env.start()
    if env.netns_dir.is_dir():
        env.netns_dir.rmdir()
    os.mkfifo(env.netns_dir)
    env.fake.clear_log()
    err = rpc_error(env.client().runp, pod("nons", uid="u-nons"))
    assert err.code() == grpc.StatusCode.INTERNAL, err
    assert f"netns dir {env.netns_dir} is not a directory" in err.details(), err.details()
    assert env.fake.calls() == []  # no ADD, and no rollback DEL of planes never attached
    assert env.client().pods() == [] and list((env.state_dir / "sandboxes").iterdir()) == []
    env.netns_dir.unlink()
