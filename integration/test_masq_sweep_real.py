"""The masquerade sweep after a DEL without netns, against the real bridge plugin and iptables.

The bridge plugin (ipMasq) leaves its per-pod nat chain behind when DEL runs after the netns
is gone; cri-net's operator removes exactly that pod's rules and nothing else.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from cri_net.operator import CNIOperator, PlaneRef
from cri_net.operator.masq_sweep import _jumps, plugin_comment
from integration.hostaudit import Audit, UniqueNet
from tests.reliability import record


def nat_rules_naming(container_id: str) -> list[str]:
    save = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
    return [line for line in save.splitlines() if container_id in line]


def test_jump_rules_are_parsed_from_iptables_save_quoting() -> None:
    dump = ('-A POSTROUTING -s 10.1.0.5/32 -m comment --comment "name: \\"net\\" id: \\"c1\\"" -j CNI-aaaa\n'
            '-A POSTROUTING -s 10.1.0.6/32 -m comment --comment "name: \\"net\\" id: \\"c10\\"" -j CNI-bbbb\n'
            '-A CNI-aaaa -d 10.1.0.0/24 -m comment --comment "name: \\"net\\" id: \\"c1\\"" -j ACCEPT\n'
            '-A POSTROUTING -m comment --comment "name: \\"net\\" id: \\"c1\\"" -j MASQUERADE\n')
    assert _jumps(dump, plugin_comment("net", "c1")) == [
        ["POSTROUTING", "-s", "10.1.0.5/32", "-m", "comment", "--comment", 'name: "net" id: "c1"', "-j", "CNI-aaaa"]]


def test_del_after_netns_is_gone_leaves_no_masquerade_chain(
        unique_net: UniqueNet, netns: Callable[[], str], host_audit: Callable[..., Audit], tmp_path: Path) -> None:
    conf_dir, cache, ipam = tmp_path / "net.d", tmp_path / "cache", tmp_path / "ipam"
    conf_dir.mkdir()
    unique_net.cache_dirs.add(cache)
    (conf_dir / "10.conflist").write_text(__import__("json").dumps(unique_net.conflist(ipam_dir=ipam, ip_masq=True)))
    audit = host_audit(cache_dir=cache, ipam_dir=ipam)
    op = CNIOperator(str(conf_dir), ["/usr/lib/cni"], str(cache))
    net = op.get(unique_net.name)
    keep_ns, gone_ns = netns(), netns()
    keep = PlaneRef(net.name, "sweep-keep", keep_ns, "eth0")
    gone = PlaneRef(net.name, "sweep-gone", gone_ns, "eth0")
    op.attach_network_plane(net, keep)
    op.attach_network_plane(net, gone)
    assert any("-j CNI-" in r for r in nat_rules_naming("sweep-gone")), "bridge set up no ipMasq chain"
    subprocess.run(["ip", "netns", "delete", Path(gone_ns).name], check=True)

    op.detach_network_plane(PlaneRef(net.name, "sweep-gone", "", "eth0"))
    assert nat_rules_naming("sweep-gone") == []
    assert any("-j CNI-" in r for r in nat_rules_naming("sweep-keep")), "another pod's rules were touched"
    op.detach_network_plane(keep)
    assert nat_rules_naming("sweep-keep") == []
    subprocess.run(["ip", "netns", "delete", Path(keep_ns).name], check=True)
    audit.assert_clean(ignore=[unique_net.per_network_state])
    record("netns deleted before DEL: the bridge plugin's masquerade chain is swept", runs=1, suite="fault",
           audited="nat rules naming the pod, netns, links, leases, cache files")
