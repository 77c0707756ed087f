"""Security suite (issue 6), root: a real `cri-net serve` with hostile names and plugin types.

- The CRI socket is 0660; sandbox records and cache files are 0600 in dirs no one else can
  write, under the umask the server really runs with.
- A network whose chain names a plugin type climbing out of the bin dir to a canary
  executable fails RunPodSandbox with an error naming the plugin; the canary never runs and
  the host is left as it was.
- Pod metadata made of `/`, `..` and friends never decides a path: the netns and the record
  are named by the sandbox id, and nothing appears outside the server's directories.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from cri_net.cri.pb.runtime.v1 import api_pb2 as pb
from integration.hostaudit import Audit, UniqueNet
from integration.serve_fixture import CRIServer, cri_server, cri_server_factory, default_conflist  # noqa: F401
from tests.reliability import record

SUITE = "security"


def audit_of(host_audit: Callable[..., Audit], srv: CRIServer) -> Audit:
    return host_audit(cache_dir=srv.cache_dir, ipam_dir=srv.ipam_dir, state_dir=srv.state_dir,
                      netns_dirs=[srv.netns_dir], ignore=[srv.foreign_state])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_socket_records_and_cache_files_modes(cri_server: CRIServer, host_audit: Callable[..., Audit],
                                              unique_net: UniqueNet) -> None:
    record("file modes: socket, sandbox records, cache files (real server)", runs=1, suite=SUITE,
           audited="mode bits of the socket, records, cache files and their dirs; host audit")
    srv = cri_server
    audit = audit_of(host_audit, srv)
    assert stat.S_ISSOCK(srv.socket.stat().st_mode)
    assert mode(srv.socket) == 0o660, oct(mode(srv.socket))
    with srv.client() as c:
        sid = c.runp({"metadata": {"name": "modes", "namespace": "default", "uid": "modes-uid"}})
        rec = srv.state_dir / "sandboxes" / f"{sid}.json"
        assert mode(rec) == 0o600, oct(mode(rec))
        assert mode(rec.parent) == 0o700, oct(mode(rec.parent))
        cache = [srv.cache_dir / "results" / f for f in srv.cache_files()]
        assert cache, "no cache file for a READY pod"
        for f in cache:
            assert mode(f) == 0o600, (f, oct(mode(f)))
        assert mode(srv.cache_dir / "results") == 0o700
        for d in (srv.state_dir, srv.cache_dir, srv.netns_dir):
            assert not mode(d) & (stat.S_IWOTH | stat.S_IWGRP), (d, oct(mode(d)))
        c.rmp(sid)
    audit.assert_clean(ignore=[unique_net.per_network_state])


@pytest.mark.parametrize("climb", ["../../..", "../../../../../../.."])
def test_plugin_type_climbing_to_a_canary_never_runs_it(cri_server_factory: Callable[..., CRIServer],
                                                        host_audit: Callable[..., Audit], unique_net: UniqueNet,
                                                        tmp_path: Path, climb: str) -> None:
    """bridge, then a plugin whose type is `<climb><tmp>/canary/evil` (which, joined to
    /usr/lib/cni, is the canary): RunPodSandbox fails naming it, bridge's ADD is rolled back,
    the canary's marker never appears."""
    record("plugin types with / ..: exec only inside bin dirs (real server)", runs=1, suite=SUITE,
           audited="canary outside the bin dirs never ran; error names the plugin; host audit")
    canary_dir = tmp_path / "canary"
    canary_dir.mkdir()
    marker = tmp_path / "canary-ran"
    evil = canary_dir / "evil"
    evil.write_text(f"#!/bin/sh\ntouch {marker}\ncat\n")
    evil.chmod(0o755)
    ptype = f"{climb}{evil}"
    assert os.path.realpath(os.path.join("/usr/lib/cni", ptype)) == str(evil)
    srv = cri_server_factory(start=False)
    doc = default_conflist(unique_net, srv.ipam_dir, extra_plugins=[{"type": ptype}])
    (srv.conf_dir / "10-default.conflist").write_text(json.dumps(doc))
    srv.start()
    audit = audit_of(host_audit, srv)
    with srv.client() as c:
        with pytest.raises(grpc.RpcError) as info:
            c.runp({"metadata": {"name": "canary", "namespace": "default", "uid": "canary-uid"}})
        details = info.value.details()
        assert "invalid plugin name" in details and ptype in details, details
        c.version()
    assert not marker.exists(), "the canary outside the bin dirs was executed"
    assert srv.record_ids() == [] and srv.cache_files() == []
    audit.assert_clean(ignore=[unique_net.per_network_state])


def test_traversing_pod_metadata_decides_no_path(cri_server: CRIServer, host_audit: Callable[..., Audit],
                                                 unique_net: UniqueNet, tmp_path: Path) -> None:
    """Names and namespaces like `../../../tmp/x` are accepted as CNI_ARGS values, but the
    netns, the record and the cache file are named by the sandbox id only."""
    record("names with / .. whitespace in pod metadata (real server)", runs=1, suite=SUITE,
           audited="files created only under the server's dirs, named by the sandbox id; host audit")
    srv = cri_server
    audit = audit_of(host_audit, srv)
    outside_before = {p for p in tmp_path.rglob("*") if srv.root not in p.parents and p != srv.root}
    with srv.client() as c:
        sid = c.runp({"metadata": {"name": "../../../../tmp/evil", "namespace": "../..", "uid": "/ .. \t x"},
                      "annotations": {"../../x": "../../y"}})
        assert len(sid) == 64 and all(ch in "0123456789abcdef" for ch in sid)
        assert sorted(p.name for p in srv.netns_dir.iterdir()) == [sid]
        assert srv.record_ids() == [sid]
        assert all(sid in f for f in srv.cache_files())
        c.rmp(sid)
    outside_after = {p for p in tmp_path.rglob("*") if srv.root not in p.parents and p != srv.root}
    assert outside_after == outside_before, outside_after - outside_before
    assert not Path("/tmp/evil").exists()
    audit.assert_clean(ignore=[unique_net.per_network_state])
