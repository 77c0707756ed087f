"""cri_net.libcni and `cri-net cni` against the real Debian plugins (issue 2).

Every test builds its own network from ``unique_net`` (bridge ``cnt<hex>``, a private /24),
keeps host-local's leases and libcni's cache inside ``tmp_path`` so they can be audited and
cannot collide with anything else, and checks with ``host_audit`` that DEL undid ADD.

Two upstream facts shape the tests (containernetworking-plugins 1.1.1):

* portmap's CHECK fails for IPv4-only pods (containernetworking/plugins#819), so CHECK is
  exercised on a bridge + host-local list only;
* the bridge plugin finds the ipMasq chain to delete from the addresses on the veth, so DEL
  must run while the netns exists; every test here DELs before the netns goes.

Plugin timeouts are covered by the unit tests (tests/unit/test_libcni_exec.py) with a fake
plugin; a real plugin that hangs on demand does not exist.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cri_net import libcni
from integration.hostaudit import CNI_PLUGIN_DIR
from integration.hostaudit import Audit, UniqueNet, free_port

CRI_NET = Path(sys.executable).with_name("cri-net")
PORTMAP = {"type": "portmap", "capabilities": {"portMappings": True}}
#: host-local keeps these next to the leases; they are not allocations.
LEASE_BOOKKEEPING = re.compile(r"^(last_reserved_ip\..*|lock)$")


# ------------------------------------------------------------------------- helpers


def write_conflist(conf_dir: Path, filename: str, doc: dict[str, Any]) -> Path:
    conf_dir.mkdir(parents=True, exist_ok=True)
    path = conf_dir / filename
    path.write_text(json.dumps(doc, indent=2))
    return path


def netns_name(path: str) -> str:
    return os.path.basename(path)


def netns_addresses(netns: str, ifname: str) -> list[ipaddress.IPv4Interface]:
    """IPv4 addresses on ``ifname`` inside ``netns`` (a /run/netns path), read with pyroute2."""
    from pyroute2 import NetNS

    with NetNS(netns_name(netns)) as ns:
        idx = ns.link_lookup(ifname=ifname)
        if not idx:
            return []
        return [
            ipaddress.IPv4Interface(f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}")
            for m in ns.get_addr(family=socket.AF_INET, index=idx[0])
        ]


def host_link_exists(name: str) -> bool:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def leases(ipam_dir: Path, net: UniqueNet) -> list[str]:
    """The lease files (one per allocated address) host-local holds for ``net``."""
    d = ipam_dir / net.name
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if not LEASE_BOOKKEEPING.match(p.name))


def cache_files(cache_dir: Path) -> list[str]:
    d = cache_dir / "results"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def nat_table() -> str:
    return subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout


def dnat_lines(host_port: int) -> list[str]:
    """nat-table lines that forward ``host_port`` (portmap's per-container rules)."""
    return [ln for ln in nat_table().splitlines() if re.search(rf"--dports? {host_port}\b", ln)]


def host_veth(result: libcni.Result100) -> str:
    """The host end of the pod's veth in a bridge result (the interface without a sandbox
    that is not the bridge)."""
    names = [i.name for i in result.interfaces if not i.sandbox]
    veths = [n for n in names if not n.startswith("cnt")]
    assert len(veths) == 1, f"expected one host veth in {result.interfaces}"
    return veths[0]


@pytest.fixture
def dirs(tmp_path: Path, unique_net: UniqueNet) -> dict[str, Path]:
    """conf/cache/ipam dirs of this test, registered with ``unique_net`` for purging."""
    out = {"conf": tmp_path / "net.d", "cache": tmp_path / "cache", "ipam": tmp_path / "ipam"}
    unique_net.cache_dirs.add(out["cache"])
    unique_net.ipam_dirs.add(out["ipam"])
    return out


def start_audit(host_audit: Callable[..., Audit], dirs: dict[str, Path]) -> Audit:
    return host_audit(cache_dir=dirs["cache"], ipam_dir=dirs["ipam"])


# --------------------------------------------------------------------------- tests


def test_add_del_bridge_host_local_portmap(
    unique_net: UniqueNet, netns: Callable[[], str], host_audit: Callable[..., Audit], dirs: dict[str, Path]
) -> None:
    ns = netns()  # made before the audit: the test owns it, CNI does not
    audit = start_audit(host_audit, dirs)
    write_conflist(dirs["conf"], "10-net.conflist",
                   unique_net.conflist(ipam_dir=dirs["ipam"], extra_plugins=[PORTMAP]))
    host_port = free_port()
    net = libcni.load_conf_list(str(dirs["conf"]), unique_net.name)
    assert net.plugin_types == ["bridge", "portmap"]
    cni = libcni.CNI([str(CNI_PLUGIN_DIR)], cache_dir=str(dirs["cache"]), timeout=30)
    rt = libcni.RuntimeConf(
        "crinet-lib-1", ns, "eth0",
        capability_args={"portMappings": [{"hostPort": host_port, "containerPort": 80, "protocol": "tcp"}]},
    )

    result = cni.add_network_list(net, rt)

    assert isinstance(result, libcni.Result100)
    assert len(result.ips) == 1
    addr = ipaddress.IPv4Interface(result.ips[0].address)
    assert addr.ip in unique_net.subnet and addr.ip != unique_net.gateway
    assert result.ips[0].gateway == str(unique_net.gateway)
    # The kernel agrees: the address is on eth0 inside the netns.
    assert netns_addresses(ns, "eth0") == [addr]
    veth = host_veth(result)
    assert host_link_exists(veth)
    assert leases(dirs["ipam"], unique_net) == [str(addr.ip)]
    cache_name = f"{unique_net.name}-crinet-lib-1-eth0"
    assert cache_files(dirs["cache"]) == [cache_name]
    cached = json.loads((dirs["cache"] / "results" / cache_name).read_text())
    assert cached["kind"] == "cniCacheV1" and cached["result"]["ips"][0]["address"] == str(addr)
    # portmap: a DNAT rule for the hostPort, reached through a per-container CNI-DN- chain.
    forwarded = dnat_lines(host_port)
    assert forwarded, f"no nat rule for hostPort {host_port}:\n{nat_table()}"
    assert any("CNI-DN-" in ln for ln in forwarded), forwarded
    assert any(f"--to-destination {addr.ip}:80" in ln for ln in forwarded), forwarded
    dn_chains = set(re.findall(r"CNI-DN-[0-9a-f]+", "\n".join(forwarded)))
    assert dn_chains

    cni.del_network_list(net, rt)

    assert not host_link_exists(veth), f"host veth {veth} survived DEL"
    assert leases(dirs["ipam"], unique_net) == []
    assert cache_files(dirs["cache"]) == []
    assert dnat_lines(host_port) == []
    nat = nat_table()
    assert not any(c in nat for c in dn_chains), f"portmap chain {dn_chains} survived DEL"
    # DEL is idempotent: nothing cached, nothing allocated, still success.
    cni.del_network_list(net, rt)
    audit.assert_clean(ignore=[unique_net.per_network_state])


def test_check_on_bridge_host_local(
    unique_net: UniqueNet, netns: Callable[[], str], host_audit: Callable[..., Audit], dirs: dict[str, Path]
) -> None:
    ns = netns()  # made before the audit: the test owns it, CNI does not
    audit = start_audit(host_audit, dirs)
    net = libcni.conf_list_from_bytes(json.dumps(unique_net.conflist(ipam_dir=dirs["ipam"])).encode())
    cni = libcni.CNI([str(CNI_PLUGIN_DIR)], cache_dir=str(dirs["cache"]), timeout=30)
    rt = libcni.RuntimeConf("crinet-check-1", ns, "eth0")
    result = cni.add_network_list(net, rt)
    addr = ipaddress.IPv4Interface(result.ips[0].address)

    cni.check_network_list(net, rt)  # plugins compare the live netns with the cached result
    cached = cni.cached_result(net, rt)
    assert cached is not None and cached.ips[0].address == str(addr)

    # CHECK really looks: take the address away and the bridge plugin notices.
    subprocess.run(["ip", "-n", netns_name(ns), "addr", "del", str(addr), "dev", "eth0"], check=True)
    with pytest.raises(libcni.PluginError) as err:
        cni.check_network_list(net, rt)
    assert err.value.plugin == "bridge" and err.value.command == "CHECK"

    cni.del_network_list(net, rt)
    assert leases(dirs["ipam"], unique_net) == []
    assert cache_files(dirs["cache"]) == []
    audit.assert_clean(ignore=[unique_net.per_network_state])


def test_cli_add_del_like_cnitool(
    unique_net: UniqueNet, netns: Callable[[], str], host_audit: Callable[..., Audit], dirs: dict[str, Path]
) -> None:
    ns = netns()  # made before the audit: the test owns it, CNI does not
    audit = start_audit(host_audit, dirs)
    write_conflist(dirs["conf"], "10-net.conflist",
                   unique_net.conflist(ipam_dir=dirs["ipam"], extra_plugins=[PORTMAP]))
    host_port = free_port()
    env = {
        **os.environ,
        "NETCONFPATH": str(dirs["conf"]),
        "CNI_PATH": str(CNI_PLUGIN_DIR),
        "CAP_ARGS": json.dumps({"portMappings": [{"hostPort": host_port, "containerPort": 8080, "protocol": "tcp"}]}),
    }
    env.pop("CNI_IFNAME", None)
    env.pop("CNI_ARGS", None)

    def cli(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CRI_NET), "cni", command, unique_net.name, ns, "--cache-dir", str(dirs["cache"])],
                              env=env, capture_output=True, text=True, timeout=60)

    add = cli("add")
    assert add.returncode == 0, add.stderr
    doc = json.loads(add.stdout)
    assert doc["cniVersion"] == "1.0.0"
    addr = ipaddress.IPv4Interface(doc["ips"][0]["address"])
    assert addr.ip in unique_net.subnet
    assert netns_addresses(ns, "eth0") == [addr]
    # cnitool's container id: "cnitool-" + sha512(absolute netns path)[:20].
    container_id = "cnitool-" + hashlib.sha512(os.path.abspath(ns).encode()).hexdigest()[:20]
    assert cache_files(dirs["cache"]) == [f"{unique_net.name}-{container_id}-eth0"]
    lease_dir = dirs["ipam"] / unique_net.name
    assert (lease_dir / str(addr.ip)).read_text().splitlines()[0] == container_id
    assert any(f"--to-destination {addr.ip}:8080" in ln for ln in dnat_lines(host_port))

    delete = cli("del")
    assert delete.returncode == 0, delete.stderr
    assert delete.stdout == ""
    assert leases(dirs["ipam"], unique_net) == []
    assert cache_files(dirs["cache"]) == []
    assert dnat_lines(host_port) == []
    again = cli("del")
    assert again.returncode == 0, again.stderr
    audit.assert_clean(ignore=[unique_net.per_network_state])


def test_cli_gc_collects_only_untagged_attachments(
    unique_net: UniqueNet, netns: Callable[[], str], host_audit: Callable[..., Audit], dirs: dict[str, Path]
) -> None:
    """`cri-net cni gc` on a cache dir shared with `cri-net serve` and the cri-net plugin keeps
    their (owner-tagged) attachments and collects only the untagged one `cri-net cni add`
    made, as cnitool would: before, it DELed the live pods too."""
    from adaptors.cri.adaptor import OWNER_HOOK, OWNER_POD

    ns_pod, ns_hook, ns_tool = netns(), netns(), netns()  # made before the audit: the test owns them
    audit = start_audit(host_audit, dirs)
    write_conflist(dirs["conf"], "10-net.conflist", unique_net.conflist(ipam_dir=dirs["ipam"]))
    net = libcni.load_conf_list(str(dirs["conf"]), unique_net.name)
    tagged = []
    for owner, ns, cid in ((OWNER_POD, ns_pod, "crinet-gc-pod"), (OWNER_HOOK, ns_hook, "crinet-gc-hook")):
        cni = libcni.CNI([str(CNI_PLUGIN_DIR)], cache_dir=str(dirs["cache"]), timeout=30, owner=owner)
        rt = libcni.RuntimeConf(cid, ns, "eth0")
        addr = ipaddress.IPv4Interface(cni.add_network_list(net, rt).ips[0].address)
        tagged.append((cni, rt, ns, addr))
    env = {**os.environ, "NETCONFPATH": str(dirs["conf"]), "CNI_PATH": str(CNI_PLUGIN_DIR)}
    for var in ("CNI_ARGS", "CAP_ARGS", "CNI_IFNAME"):
        env.pop(var, None)

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CRI_NET), "cni", *argv, "--cache-dir", str(dirs["cache"])],
                              env=env, capture_output=True, text=True, timeout=60)

    add = cli("add", unique_net.name, ns_tool)
    assert add.returncode == 0, add.stderr
    tool_addr = ipaddress.IPv4Interface(json.loads(add.stdout)["ips"][0]["address"])
    assert len(leases(dirs["ipam"], unique_net)) == 3

    gc = cli("gc", unique_net.name)

    assert gc.returncode == 0, gc.stderr
    assert netns_addresses(ns_tool, "eth0") == []  # the untagged attachment is collected...
    assert str(tool_addr.ip) not in leases(dirs["ipam"], unique_net)
    kept = sorted(f"{unique_net.name}-{rt.container_id}-eth0" for _, rt, _, _ in tagged)
    assert cache_files(dirs["cache"]) == kept
    for _, _, ns, addr in tagged:  # ...the tagged ones stay attached, leases and all
        assert netns_addresses(ns, "eth0") == [addr]
    assert leases(dirs["ipam"], unique_net) == sorted(str(a.ip) for *_, a in tagged)

    for cni, rt, _, _ in tagged:
        cni.del_network_list(net, rt)
    assert leases(dirs["ipam"], unique_net) == [] and cache_files(dirs["cache"]) == []
    audit.assert_clean(ignore=[unique_net.per_network_state])


FAILING_SECOND_PLUGINS = {
    # The plugin runs and fails: tuning cannot write a sysctl that does not exist.
    "tuning-bad-sysctl": ("tuning", {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.crinet_no_such_key": "1"}}),
    # The plugin is not in the bin dir at all.
    "missing-binary": ("crinet-no-such-plugin", {"type": "crinet-no-such-plugin"}),
}


@pytest.mark.parametrize("case", sorted(FAILING_SECOND_PLUGINS))
def test_failed_add_then_del_leaves_nothing(
    case: str, unique_net: UniqueNet, netns: Callable[[], str], host_audit: Callable[..., Audit],
    dirs: dict[str, Path],
) -> None:
    plugin_type, second = FAILING_SECOND_PLUGINS[case]
    ns = netns()  # made before the audit: the test owns it, CNI does not
    audit = start_audit(host_audit, dirs)
    net = libcni.conf_list_from_bytes(
        json.dumps(unique_net.conflist(ipam_dir=dirs["ipam"], extra_plugins=[second])).encode())
    cni = libcni.CNI([str(CNI_PLUGIN_DIR)], cache_dir=str(dirs["cache"]), timeout=30)
    rt = libcni.RuntimeConf("crinet-fail-1", ns, "eth0")

    with pytest.raises(libcni.PluginError) as err:
        cni.add_network_list(net, rt)

    assert err.value.plugin == plugin_type
    assert err.value.command == "ADD"
    assert err.value.network == unique_net.name
    assert f'type="{plugin_type}"' in str(err.value)
    # bridge ran first: its address and veth exist, but nothing was cached.
    assert len(leases(dirs["ipam"], unique_net)) == 1
    assert len(netns_addresses(ns, "eth0")) == 1
    assert cache_files(dirs["cache"]) == []

    # What the caller must do after a failed ADD.  A plugin that cannot be found cannot be
    # run for DEL either, so the library may report it; but the plugins that *did* run
    # (bridge, host-local) must still get their DEL and release what they took.
    try:
        cni.del_network_list(net, rt)
    except libcni.PluginError as exc:
        if case != "missing-binary":
            raise
        assert exc.plugin == plugin_type, f"DEL failed on another plugin than the missing one: {exc}"

    assert leases(dirs["ipam"], unique_net) == [], (
        "host-local lease leaked: DEL of the list did not reach the bridge plugin")
    assert netns_addresses(ns, "eth0") == [], "the pod's veth survived DEL"
    assert cache_files(dirs["cache"]) == []
    audit.assert_clean(ignore=[unique_net.per_network_state])
