"""Multus's `k8s.v1.cni.cncf.io/networks` with the real plugins (issue 16).

The pod's default network is bridge + host-local (with a default route); the extra networks
are a bridge each with the reference `static` IPAM and `tuning`:

- `ext-cap` declares the standard `ips` (on bridge, which hands its stdin to static) and
  `mac` (tuning) capabilities: per-attachment addresses and MAC go as runtimeConfig;
- `ext-args` declares nothing: the same requests go as `IP=`/`MAC=` CNI_ARGS, which static
  and tuning read.

Through a real `cri-net serve` (gRPC, as crictl) and through a real containerd 1.6 running
cri-net-cni: the pod gets the requested address and MAC on its interface, the
network-status lists every interface (default first), the default route follows
`default-route` (and only it), a gateway the pod cannot reach fails the pod with nothing
left behind, and removing the pods leaves nothing (host audit).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from integration.containerd.harness import ContainerdEnv
from integration.hostaudit import Audit, UniqueNet, bridge_ports
from integration.serve_fixture import CONF_FILE, CRIServer, cri_server_factory  # noqa: F401 - fixture
from integration.test_containerd_e2e import CriNetSetup, containerd, lease_files, remove_pod  # noqa: F401
from integration.test_containerd_e2e import pod_config as containerd_pod
from integration.test_serve_real import audit_of, pod_config

KEY = "k8s.v1.cni.cncf.io/networks"
STATUS = "k8s.v1.cni.cncf.io/network-status"
MAC_CAP = "02:4d:75:6c:74:01"
MAC_ARGS = "02:4d:75:6c:74:02"


def static_net(net: UniqueNet, *, capabilities: bool) -> dict[str, Any]:
    """bridge (isGateway: its bridge holds the subnet's first address) + static IPAM + tuning."""
    bridge: dict[str, Any] = {"type": "bridge", "bridge": net.bridge, "isGateway": True, "ipam": {"type": "static"}}
    tuning: dict[str, Any] = {"type": "tuning"}
    if capabilities:
        bridge["capabilities"] = {"ips": True}
        tuning["capabilities"] = {"mac": True}
    return {"cniVersion": "1.0.0", "name": net.name, "plugins": [bridge, tuning]}


def with_default_route(doc: dict[str, Any]) -> dict[str, Any]:
    doc["plugins"][0]["ipam"]["routes"] = [{"dst": "0.0.0.0/0"}]
    return doc


def in_netns(netns: str | Path, *args: str) -> Any:
    proc = subprocess.run(["nsenter", f"--net={netns}", "ip", "-j", *args], capture_output=True, text=True,
                          timeout=10)
    assert proc.returncode == 0, f"ip {' '.join(args)} in {netns}: {proc.stderr.strip()}"
    return json.loads(proc.stdout or "[]")


def link_of(netns: str | Path, ifname: str) -> tuple[str, list[str]]:
    """(MAC, IPv4 addresses with prefix) of `ifname` in `netns`."""
    [link] = in_netns(netns, "addr", "show", "dev", ifname)
    return link["address"], [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"] if a["family"] == "inet"]


def default_routes(netns: str | Path) -> list[tuple[str, str]]:
    return [(r.get("gateway", ""), r["dev"]) for r in in_netns(netns, "-4", "route", "show", "default")]


def multus(*entries: dict[str, Any]) -> dict[str, str]:
    return {KEY: json.dumps(list(entries))}


# ------------------------------------------------------------------ through cri-net serve


@pytest.fixture
def multus_server(cri_server_factory: Callable[..., CRIServer],
                  net_factory: Callable[[], UniqueNet]) -> tuple[CRIServer, UniqueNet, UniqueNet]:
    srv = cri_server_factory(start=False)
    conf = srv.conf_dir / CONF_FILE
    conf.write_text(json.dumps(with_default_route(json.loads(conf.read_text()))))
    cap, args = net_factory(), net_factory()
    for net in (cap, args):
        net.cache_dirs.add(srv.cache_dir)
    (srv.conf_dir / "20-ext-cap.conflist").write_text(json.dumps(static_net(cap, capabilities=True)))
    (srv.conf_dir / "30-ext-args.conflist").write_text(json.dumps(static_net(args, capabilities=False)))
    srv.start()
    return srv, cap, args


def test_multus_attachments_through_grpc(multus_server, host_audit: Callable[..., Audit]) -> None:
    srv, cap, args = multus_server
    assert srv.net is not None
    audit = host_audit(cache_dir=srv.cache_dir, ipam_dir=srv.ipam_dir, state_dir=srv.state_dir,
                       netns_dirs=[srv.netns_dir],
                       ignore=[srv.foreign_state, *(n.per_network_state for n in (srv.net, cap, args))])
    cap_ip, args_ip = f"{cap.host(7)}/24", f"{args.host(9)}/24"
    with srv.client() as c:
        # 1. addresses and MACs through the capabilities, and through CNI_ARGS
        sid = c.runp(pod_config("multus", annotations=multus(
            {"name": cap.name, "interface": "net1", "ips": [cap_ip], "mac": MAC_CAP},
            {"name": args.name, "ips": [args_ip], "mac": MAC_ARGS})))
        netns = srv.netns_path(sid)
        assert link_of(netns, "net1") == (MAC_CAP, [cap_ip])
        assert link_of(netns, "net2") == (MAC_ARGS, [args_ip])  # net2: Multus's default name for entry 1
        resp = c.inspectp(sid, verbose=True)
        ip = resp.status.network.ip
        assert ipaddress.IPv4Address(ip) in srv.net.subnet
        assert list(resp.status.network.additional_ips) == []  # extra planes are not the pod's IPs
        status = json.loads(resp.info[STATUS])
        eth0_mac, _ = link_of(netns, "eth0")
        assert status == [
            {"name": srv.net.name, "interface": "eth0", "ips": [ip], "mac": eth0_mac, "default": True, "dns": {}},
            {"name": f"default/{cap.name}", "interface": "net1", "ips": [str(cap.host(7))], "mac": MAC_CAP,
             "default": False, "dns": {}},
            {"name": f"default/{args.name}", "interface": "net2", "ips": [str(args.host(9))], "mac": MAC_ARGS,
             "default": False, "dns": {}}]
        caps = json.loads(resp.info["capabilityArgs"])
        assert caps[f"{cap.name}/net1"]["ips"] == [cap_ip] and caps[f"{cap.name}/net1"]["mac"] == MAC_CAP
        assert ["IP", args_ip] in json.loads(resp.info["cniArgs"])[f"{args.name}/net2"]
        assert default_routes(netns) == [(str(srv.net.gateway), "eth0")]  # no default-route asked

        # 2. default-route: the pod's one IPv4 default route goes through the extra network
        sid2 = c.runp(pod_config("gw", annotations=multus(
            {"name": cap.name, "interface": "ext0", "ips": [f"{cap.host(8)}/24"], "default-route": [str(cap.gateway)]})))
        netns2 = srv.netns_path(sid2)
        assert default_routes(netns2) == [(str(cap.gateway), "ext0")]
        assert [s["interface"] for s in json.loads(c.inspectp(sid2, verbose=True).info[STATUS])] == ["eth0", "ext0"]

        # 3. a gateway the attachment cannot reach: the pod fails, everything is rolled back
        before = set(srv.cache_files())
        with pytest.raises(grpc.RpcError) as info:
            c.runp(pod_config("nogw", annotations=multus(
                {"name": cap.name, "ips": [f"{cap.host(10)}/24"], "default-route": ["192.0.2.1"]})))
        assert "default-route" in (info.value.details() or ""), info.value.details()
        assert set(srv.cache_files()) == before
        assert "nogw" not in {p.metadata.name for p in c.pods()}

        # 4. refused before anything is attached, naming annotation, entry and field
        with pytest.raises(grpc.RpcError) as info:
            c.runp(pod_config("bad", annotations=multus({"name": cap.name}, {"name": args.name, "mac": "01:00:5e:00:00:01"})))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"{KEY}[1].mac" in (info.value.details() or "")
        assert set(srv.cache_files()) == before

        for s in (sid, sid2):
            c.stopp(s)
            c.rmp(s)
    assert srv.cache_files() == []
    assert bridge_ports(cap.bridge) == [] and bridge_ports(args.bridge) == []
    audit.assert_clean()


# ------------------------------------------------------------------- through containerd


def test_multus_pod_through_containerd(containerd: Callable[..., ContainerdEnv], tmp_path: Path,  # noqa: F811
                                       net_factory: Callable[[], UniqueNet], host_audit: Callable[..., Audit]) -> None:
    crinet = CriNetSetup(tmp_path, net_factory(), net_factory())
    default_file = crinet.conf_dir / "10-default.conflist"
    default_file.write_text(json.dumps(with_default_route(json.loads(default_file.read_text()))))
    (crinet.conf_dir / "20-extra.conflist").write_text(json.dumps(static_net(crinet.extra, capabilities=True)))
    env = crinet.start(containerd)
    audit = crinet.audit(host_audit, env)
    c = env.client()
    extra = crinet.extra
    extra_ip = f"{extra.host(7)}/24"
    annotations = multus({"name": extra.name, "interface": "net1", "ips": [extra_ip], "mac": MAC_CAP,
                          "default-route": [str(extra.gateway)]})
    try:
        sid = c.runp(containerd_pod("multus", annotations=annotations))
    except grpc.RpcError as exc:
        raise AssertionError(f"RunPodSandbox failed: {exc.code()} {exc.details()}\n{env.log_tail()}") from None
    netns = env.netns_of(sid, c)
    assert link_of(netns, "net1") == (MAC_CAP, [extra_ip])
    assert default_routes(netns) == [(str(extra.gateway), "net1")]
    # containerd's own view: cri-net's one CNI result lists both interfaces, default first
    cni_result = json.loads(c.inspectp(sid, verbose=True).info["info"])["cniResult"]
    interfaces = cni_result["Interfaces"]
    [ip] = [i["IP"] for i in interfaces["eth0"]["IPConfigs"]]
    assert ipaddress.IPv4Address(ip) in crinet.default.subnet
    assert [i["IP"] for i in interfaces["net1"]["IPConfigs"]] == [str(extra.host(7))]
    assert interfaces["net1"]["Mac"] == MAC_CAP
    # ... and its routes: the one default route is the extra network's, as in the pod
    assert [(r.get("dst"), r.get("gw")) for r in cni_result.get("Routes") or []] == [("0.0.0.0/0", str(extra.gateway))]
    assert c.inspectp(sid, verbose=False).status.network.ip == ip

    remove_pod(c, sid)
    crinet.assert_clean(sid, netns)
    audit.assert_clean(ignore=[crinet.default.per_network_state, crinet.extra.per_network_state])
