"""Proof that the integration harness itself works, using real host tools only.

Every later root test trusts these fixtures to notice leaks and to clean up; if the
audit were blind to a category or a purge missed a chain, those tests would pass on a
dirty host.  So each category is exercised here by creating the thing by hand, seeing
it reported, removing it and seeing the report go away.  Nothing here sends a packet:
links stay down, iptables rules only match the test's private subnet.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from integration import hostaudit
from integration.conftest import host_problems
from integration.hostaudit import CNI_PLUGIN_DIR
from integration.hostaudit import (
    Audit,
    CleanupError,
    HostDiff,
    IptablesLine,
    Link,
    SubnetAllocator,
    UniqueNet,
    assert_no_leaks,
    cni_shared_state,
    diff,
    random_suffix,
    snapshot,
)


def run(*argv: str, stdin: str | None = None) -> str:
    """Run a host tool, failing the test with its stderr if it fails."""
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def quiet(*argv: str) -> None:
    """Run a clean-up command whose failure (thing already gone) does not matter."""
    subprocess.run(argv, capture_output=True, check=False)


@pytest.fixture
def scratch_links() -> Iterator[list[str]]:
    """Host link names a test creates by hand; whatever is left is deleted at teardown."""
    names: list[str] = []
    yield names
    for name in reversed(names):
        quiet("ip", "link", "del", name)


@pytest.fixture
def scratch_chains() -> Iterator[list[tuple[str, str, str]]]:
    """(command, table, chain) a test creates by hand; flushed and deleted at teardown."""
    chains: list[tuple[str, str, str]] = []
    yield chains
    for cmd, table, chain in reversed(chains):
        quiet(cmd, "-w", "5", "-t", table, "-F", chain)
        quiet(cmd, "-w", "5", "-t", table, "-X", chain)


@pytest.fixture
def scratch_mounts() -> Iterator[list[str]]:
    """Mount points a test creates; lazily unmounted at teardown."""
    mounts: list[str] = []
    yield mounts
    for m in reversed(mounts):
        quiet("umount", "-l", m)


_no_error = contextlib.nullcontext


# ------------------------------------------------------------------------ the gate


def test_host_is_prepared_and_tests_are_marked_root(request: pytest.FixtureRequest) -> None:
    assert host_problems() == []
    assert request.node.get_closest_marker("root") is not None


# -------------------------------------------------------------------- the snapshot


def test_snapshot_is_stable_and_fast() -> None:
    snapshot()  # warm-up: pyroute2's import is a one-off cost
    timings = []
    snaps = []
    for _ in range(5):
        t0 = time.perf_counter()
        snaps.append(snapshot())
        timings.append(time.perf_counter() - t0)
    assert sorted(timings)[2] < 0.2, f"snapshot too slow: {timings}"
    for a, b in itertools.pairwise(snaps):
        d = diff(a, b)
        assert not d, str(d)
        assert str(d) == "host unchanged"
    # The host's own links are seen, loopback included.
    assert any(link.name == "lo" for link in snaps[0].links)


def test_diff_reports_exactly_the_new_netns_and_links(
    netns: Callable[[], str], scratch_links: list[str]
) -> None:
    before = snapshot()
    ns_path = netns()
    ns_name = os.path.basename(ns_path)
    sfx = random_suffix()
    bridge, veth, peer = f"crb{sfx}", f"crv{sfx}", f"crp{sfx}"
    scratch_links += [veth, bridge]
    run("ip", "link", "add", bridge, "type", "bridge")
    run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer, "netns", ns_name)
    run("ip", "link", "set", veth, "master", bridge)

    after = snapshot()
    d = diff(before, after)
    assert dict(d.removed) == {}
    assert dict(d.added) == {
        "netns": {ns_path},
        "links": {Link(veth, "veth", "veth"), Link(bridge, "bridge", "bridge")},
    }, str(d)
    assert d.leaked() == dict(d.added)
    text = str(d)
    assert f"+ {ns_path}" in text and f"+ veth {veth}" in text and f"+ bridge {bridge}" in text
    assert peer not in text  # the peer lives in the test namespace, not on the host

    with pytest.raises(AssertionError, match="leaked") as excinfo:
        assert_no_leaks(before, after)
    assert veth in str(excinfo.value) and bridge in str(excinfo.value) and ns_path in str(excinfo.value)

    # Partly cleaned: still a leak, and only the remainder is reported.
    run("ip", "link", "del", veth)  # takes the peer with it
    partly = snapshot()
    with pytest.raises(AssertionError) as excinfo:
        assert_no_leaks(before, partly)
    assert veth not in str(excinfo.value) and bridge in str(excinfo.value) and ns_path in str(excinfo.value)

    run("ip", "link", "del", bridge)
    run("ip", "netns", "delete", ns_name)  # the fixture must tolerate this at teardown
    clean = snapshot()
    assert not diff(before, clean), str(diff(before, clean))
    assert not assert_no_leaks(before, clean)


def test_removed_items_are_reported_but_are_not_leaks(scratch_links: list[str]) -> None:
    veth = f"crv{random_suffix()}"
    scratch_links.append(veth)
    run("ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
    before = snapshot()
    run("ip", "link", "del", veth)
    d = assert_no_leaks(before, snapshot())
    assert d.removed["links"] >= {Link(veth, "veth", "veth")}
    assert d.leaked() == {}
    assert f"- veth {veth}" in str(d)


def test_qdiscs_on_host_links_are_reported(scratch_links: list[str]) -> None:
    veth = f"crv{random_suffix()}"
    scratch_links.append(veth)
    run("ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
    before = snapshot()  # the veths exist already, with their default (ignored) qdiscs
    run("tc", "qdisc", "add", "dev", veth, "root", "tbf", "rate", "1mbit", "burst", "32kbit", "latency", "400ms")
    run("tc", "qdisc", "add", "dev", veth, "ingress")
    d = diff(before, snapshot())
    assert set(d.added) == {"qdiscs"}, str(d)
    got = {(q.dev, q.kind, q.parent) for q in d.added["qdiscs"]}
    assert got == {(veth, "tbf", "root"), (veth, "ingress", "ingress")}
    assert {q.handle for q in d.added["qdiscs"] if q.kind == "ingress"} == {"ffff:"}
    run("tc", "qdisc", "del", "dev", veth, "root")
    run("tc", "qdisc", "del", "dev", veth, "ingress")
    assert not diff(before, snapshot())


@pytest.mark.parametrize("family,cmd", [("ipv4", "iptables"), ("ipv6", "ip6tables")])
def test_iptables_chains_and_rules_are_reported(
    family: str, cmd: str, scratch_chains: list[tuple[str, str, str]]
) -> None:
    chain = f"CRINET-T-{random_suffix().upper()}"
    rule = ["-m", "comment", "--comment", "crinet harness", "-j", "RETURN"]
    before = snapshot()
    scratch_chains.append((cmd, "filter", chain))
    run(cmd, "-w", "5", "-t", "filter", "-N", chain)  # not referenced: matches no packet
    run(cmd, "-w", "5", "-t", "filter", "-A", chain, *rule)
    run(cmd, "-w", "5", "-t", "filter", "-A", chain, *rule)  # a duplicate, as a double ADD would

    after = snapshot()
    d = diff(before, after)
    rule_line = f'-A {chain} -m comment --comment "crinet harness" -j RETURN'
    assert dict(d.added) == {
        "iptables": {
            IptablesLine(family, "filter", f":{chain} -"),
            IptablesLine(family, "filter", rule_line, 1),
            IptablesLine(family, "filter", rule_line, 2),
        }
    }, str(d)
    assert f"{family}/filter: :{chain} -" in str(d)
    with pytest.raises(AssertionError, match=chain):
        assert_no_leaks(before, after)

    # Deleting one copy still leaves one rule (and the chain) behind.
    run(cmd, "-w", "5", "-t", "filter", "-D", chain, *rule)
    d = diff(before, snapshot())
    assert d.added["iptables"] == {
        IptablesLine(family, "filter", f":{chain} -"),
        IptablesLine(family, "filter", rule_line, 1),
    }

    run(cmd, "-w", "5", "-t", "filter", "-F", chain)
    run(cmd, "-w", "5", "-t", "filter", "-X", chain)
    assert_no_leaks(before, snapshot())


def test_leases_cache_and_state_files_are_reported(tmp_path: Path) -> None:
    ipam, cache, state = tmp_path / "ipam", tmp_path / "cache", tmp_path / "state"
    dirs = {"cache_dir": cache, "ipam_dir": ipam, "state_dir": state}
    before = snapshot(**dirs)  # none of the dirs exists yet: that is fine
    (ipam / "net1").mkdir(parents=True)
    (ipam / "net1" / "10.213.9.2").write_text("cid\r\neth0")
    (ipam / "net1" / "last_reserved_ip.0").write_text("10.213.9.2")
    (ipam / "net1" / "lock").write_text("")
    (cache / "results").mkdir(parents=True)
    (cache / "results" / "net1-cid-eth0").write_text("{}")
    (cache / "unrelated").write_text("")
    (state / "a" / "b").mkdir(parents=True)
    (state / "a" / "b" / "c.json").write_text("{}")

    d = diff(before, snapshot(**dirs))
    assert dict(d.added) == {
        "leases": {str(ipam / "net1" / "10.213.9.2")},
        "cache": {str(cache / "results" / "net1-cid-eth0")},
        "state": {str(state / "a" / "b" / "c.json")},
    }, str(d)

    # Bookkeeping host-local never deletes is not a leak once the lease is gone.
    (ipam / "net1" / "10.213.9.2").unlink()
    (cache / "results" / "net1-cid-eth0").unlink()
    (state / "a" / "b" / "c.json").unlink()
    assert_no_leaks(before, snapshot(**dirs))


def test_diff_refuses_snapshots_of_different_dirs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="different directories"):
        diff(snapshot(cache_dir=tmp_path / "a"), snapshot(cache_dir=tmp_path / "b"))


def test_nsfs_bind_mounts_in_extra_dirs_are_reported(
    netns: Callable[[], str], tmp_path: Path, scratch_mounts: list[str]
) -> None:
    pins = tmp_path / "pin dir"  # a space: mountinfo escapes it as \040
    pins.mkdir()
    before = snapshot(netns_dirs=[pins])
    ns_path = netns()
    target = pins / "ns1"
    target.touch()
    d = diff(before, snapshot(netns_dirs=[pins]))
    assert d.added.get("netns") == {ns_path}  # a plain file outside /run/netns is not a namespace
    scratch_mounts.append(str(target))
    run("mount", "--bind", ns_path, str(target))
    d = diff(before, snapshot(netns_dirs=[pins]))
    assert d.added["netns"] == {ns_path, str(target)}, str(d)
    run("umount", str(target))
    run("ip", "netns", "delete", os.path.basename(ns_path))
    assert_no_leaks(before, snapshot(netns_dirs=[pins]))


def test_ignore_filters_by_regex_or_predicate(scratch_links: list[str]) -> None:
    a, b = f"crv{random_suffix()}", f"crv{random_suffix()}"
    scratch_links += [a, b]
    before = snapshot()
    run("ip", "link", "add", a, "type", "veth", "peer", "name", f"{a}p")
    run("ip", "link", "add", b, "type", "veth", "peer", "name", f"{b}p")
    after = snapshot()
    with pytest.raises(AssertionError, match=b):
        assert_no_leaks(before, after, ignore=[rf"^links: veth {a}p?$"])
    d = assert_no_leaks(before, after, ignore=[rf"links: veth {a}", lambda cat, item: b in str(item)])
    assert not d
    assert isinstance(d, HostDiff)


def test_cni_shared_state_ignores_scaffolding_but_not_per_container_rules() -> None:
    def line(table: str, text: str) -> IptablesLine:
        return IptablesLine("ipv4", table, text)

    shared = [
        line("nat", ":CNI-HOSTPORT-DNAT -"),
        line("nat", ":CNI-HOSTPORT-MASQ -"),
        line("nat", "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT"),
        line("nat", '-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ'),
        line("nat", '-A CNI-HOSTPORT-MASQ -m comment --comment "CNI portfwd requiring masquerade" '
                    "-m mark --mark 0x2000/0x2000 -j MASQUERADE"),
        line("filter", ":CNI-FORWARD -"),
        line("filter", '-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD'),
    ]
    per_container = [
        line("nat", ":CNI-DN-0123456789abcdef01234 -"),
        line("nat", '-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"n\\" id: \\"c\\"" '
                    "-m multiport --dports 80 -j CNI-DN-0123456789abcdef01234"),
        line("filter", "-A CNI-FORWARD -s 10.213.1.2/32 -j ACCEPT"),
        line("filter", "-A CNI-ISOLATION-STAGE-1 -i cnt123456 ! -o cnt123456 -j CNI-ISOLATION-STAGE-2"),
        line("filter", ":CRINET-T-ABC -"),
    ]
    assert all(cni_shared_state("iptables", x) for x in shared)
    assert not any(cni_shared_state("iptables", x) for x in per_container)
    assert not cni_shared_state("links", Link("CNI-FORWARD", "other"))


def test_audit_waits_for_asynchronous_teardown(scratch_links: list[str]) -> None:
    veth = f"crv{random_suffix()}"
    scratch_links.append(veth)
    audit = Audit()
    run("ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
    with pytest.raises(AssertionError, match=veth):
        audit.assert_clean(settle=0)
    timer = threading.Timer(0.3, quiet, ("ip", "link", "del", veth))
    timer.start()
    try:
        audit.assert_clean(settle=5)
    finally:
        timer.cancel()
        timer.join()
    assert audit.checked


def test_host_audit_fixture(host_audit: Callable[..., Audit], tmp_path: Path, netns: Callable[[], str]) -> None:
    audit = host_audit(cache_dir=tmp_path / "cache", ipam_dir=tmp_path / "ipam")
    ns = netns()
    (tmp_path / "ipam" / "n").mkdir(parents=True)
    (tmp_path / "ipam" / "n" / "10.213.3.4").touch()
    with pytest.raises(AssertionError) as excinfo:
        audit.assert_clean(settle=0)
    assert ns in str(excinfo.value) and "10.213.3.4" in str(excinfo.value)
    run("ip", "netns", "delete", os.path.basename(ns))
    (tmp_path / "ipam" / "n" / "10.213.3.4").unlink()
    audit.assert_clean()  # after the purge: nothing at all


# ------------------------------------------------------------ netns and networks


def test_netns_factory_names_and_cleanup() -> None:
    with hostaudit.netns_scope() as make:
        a, b = make(), make()
        assert a != b
        for p in (a, b):
            assert p.startswith("/run/netns/crinet-t-") and os.path.exists(p)
        run("ip", "netns", "delete", os.path.basename(a))  # already gone at exit: fine
    assert not os.path.exists(a) and not os.path.exists(b)


def test_netns_cleanup_happens_when_the_body_fails() -> None:
    with pytest.raises(RuntimeError, match="test body failed"):
        with hostaudit.netns_scope() as make:
            path = make()
            raise RuntimeError("test body failed")
    assert not os.path.exists(path)


def test_unique_net_identity(unique_net: UniqueNet, net_factory: Callable[[], UniqueNet]) -> None:
    nets = [unique_net] + [net_factory() for _ in range(20)]
    host_nets = hostaudit.host_ipv4_networks()
    for net in nets:
        assert net.name.startswith("crinet-t-")
        assert net.bridge.startswith("cnt") and len(net.bridge) == 9  # <= IFNAMSIZ-1
        assert net.subnet.prefixlen == 24 and net.subnet.subnet_of(hostaudit.DEFAULT_SUBNET_POOL)
        assert net.gateway == net.subnet.network_address + 1 and net.gateway in net.subnet
        assert not any(net.subnet.overlaps(h) for h in host_nets)
    for x, y in itertools.combinations(nets, 2):
        assert not x.subnet.overlaps(y.subnet), (x, y)
        assert x.name != y.name and x.bridge != y.bridge

    conf = unique_net.conflist(ipam_dir="/tmp/crinet-ipam-unused")
    assert conf["name"] == unique_net.name
    assert conf["plugins"][0]["bridge"] == unique_net.bridge
    expected_range = {"subnet": str(unique_net.subnet), "gateway": str(unique_net.gateway)}
    assert conf["plugins"][0]["ipam"]["ranges"] == [[expected_range]]
    assert Path("/tmp/crinet-ipam-unused") in unique_net.ipam_dirs  # purged at teardown


def test_allocator_skips_host_addresses_and_never_overlaps(scratch_links: list[str]) -> None:
    pool = ipaddress.IPv4Network("10.214.250.0/23")  # outside the session pool
    veth = f"crv{random_suffix()}"
    scratch_links.append(veth)
    run("ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")  # stays down
    run("ip", "addr", "add", "10.214.250.1/24", "dev", veth)

    alloc = SubnetAllocator(pool)
    got = alloc.allocate()
    assert got == ipaddress.IPv4Network("10.214.251.0/24")
    with pytest.raises(RuntimeError, match="no free /24"):
        alloc.allocate()
    # A released subnet is only reused when nothing fresh is left.
    alloc.release(got)
    assert alloc.allocate() == got

    big = SubnetAllocator(pool="10.214.0.0/20")
    subnets = [big.allocate() for _ in range(16)]
    assert len(set(subnets)) == 16
    with pytest.raises(RuntimeError):
        big.allocate()


def test_purge_net_removes_plugin_debris_even_when_the_test_fails(
    tmp_path: Path, netns: Callable[[], str]
) -> None:
    """Recreate by hand what bridge(ipMasq) + portmap + firewall + host-local leave, then fail."""
    ipam, cache = tmp_path / "ipam", tmp_path / "cache"
    ns_name = os.path.basename(netns())  # the "container": exists before and after
    audit = Audit(cache_dir=cache, ipam_dir=ipam)
    allocator = SubnetAllocator()
    cid = "c0ffee" + random_suffix(8)
    chain_masq = f"CNI-{random_suffix(12)}"
    chain_dn = f"CNI-DN-{random_suffix(10)}"
    veth = f"crv{random_suffix()}"

    with pytest.raises(RuntimeError, match="simulated test failure"):
        with hostaudit.net_scope(allocator) as make:
            net = make()
            ip = net.host(2)
            comment = f'name: "{net.name}" id: "{cid}"'
            # bridge plugin: the bridge with its gateway address and a port.
            run("ip", "link", "add", net.bridge, "type", "bridge")
            run("ip", "addr", "add", f"{net.gateway}/24", "dev", net.bridge)
            run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns_name)
            run("ip", "link", "set", veth, "master", net.bridge)
            # bridge ipMasq: per-container chain with commented rules, jump from POSTROUTING.
            run("iptables", "-w", "5", "-t", "nat", "-N", chain_masq)
            run("iptables", "-w", "5", "-t", "nat", "-A", chain_masq, "-d", str(net.subnet),
                "-m", "comment", "--comment", comment, "-j", "ACCEPT")
            run("iptables", "-w", "5", "-t", "nat", "-A", chain_masq, "!", "-d", "224.0.0.0/4",
                "-m", "comment", "--comment", comment, "-j", "MASQUERADE")
            run("iptables", "-w", "5", "-t", "nat", "-A", "POSTROUTING", "-s", f"{ip}/32",
                "-m", "comment", "--comment", comment, "-j", chain_masq)
            # portmap: a DNAT chain for the container (here not referenced from the shared chain).
            run("iptables", "-w", "5", "-t", "nat", "-N", chain_dn)
            run("iptables", "-w", "5", "-t", "nat", "-A", chain_dn, "-p", "tcp", "--dport", "18080",
                "-j", "DNAT", "--to-destination", f"{ip}:80")
            # firewall: a rule by address and one by bridge.
            run("iptables", "-w", "5", "-t", "filter", "-A", "FORWARD", "-d", f"{ip}/32", "-j", "ACCEPT")
            run("iptables", "-w", "5", "-t", "filter", "-A", "FORWARD", "-i", net.bridge,
                "!", "-o", net.bridge, "-j", "ACCEPT")
            # an ipv6 chain named by comment only.
            run("ip6tables", "-w", "5", "-t", "nat", "-N", chain_masq)
            run("ip6tables", "-w", "5", "-t", "nat", "-A", chain_masq, "-m", "comment", "--comment", comment,
                "-j", "ACCEPT")
            # host-local lease (+ bookkeeping) and the libcni result cache.
            lease_dir = net.lease_dir(ipam)
            lease_dir.mkdir(parents=True)
            (lease_dir / str(ip)).write_text(f"{cid}\r\neth0")
            (lease_dir / "last_reserved_ip.0").write_text(str(ip))
            net.cache_dirs.add(cache)
            (cache / "results").mkdir(parents=True)
            (cache / "results" / f"{net.name}-{cid}-eth0").write_text("{}")

            leaked = audit.diff().leaked()
            assert set(leaked) == {"links", "iptables", "leases", "cache"}, leaked
            assert Link(net.bridge, "bridge", "bridge") in leaked["links"]
            assert len(leaked["iptables"]) == 10, "\n".join(map(str, sorted(leaked["iptables"], key=str)))
            raise RuntimeError("simulated test failure")

    assert not lease_dir.exists()
    audit.assert_clean(settle=0)
    assert net.subnet in allocator.released and net.subnet not in allocator.handed_out


def test_purge_net_is_a_no_op_on_a_clean_host() -> None:
    audit = Audit()
    net = UniqueNet.new(ipaddress.IPv4Network("10.213.254.0/24"))
    assert hostaudit.purge_net(net) == []
    audit.assert_clean(settle=0)


def test_cleanup_error_is_an_assertion_error() -> None:
    # Teardown problems must show up as test failures/errors, not as harness crashes.
    assert issubclass(CleanupError, AssertionError)


# ------------------------------------------------------- against the real plugins


def _run_plugin(
    conf: dict[str, object], command: str, container_id: str, netns_path: str
) -> dict[str, object] | None:
    """Exec one Debian CNI plugin the way a runtime does (env + config on stdin)."""
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns_path,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(CNI_PLUGIN_DIR),
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    }
    proc = subprocess.run(
        [str(CNI_PLUGIN_DIR / str(conf["type"]))],
        input=json.dumps(conf), env=env, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"{command} {conf['type']} failed ({proc.returncode}): {proc.stdout} {proc.stderr}")
    return json.loads(proc.stdout) if proc.stdout.strip() else None


@pytest.mark.parametrize("with_del", [True, False], ids=["add-del", "add-only"])
def test_real_plugin_chain_is_audited_and_purged(
    with_del: bool, tmp_path: Path, netns: Callable[[], str]
) -> None:
    """bridge(ipMasq) + portmap + firewall + bandwidth, ADDed for real.

    add-del: a correct DEL leaves nothing but the plugins' shared scaffolding (ignored by
    default) and the network's bridge (ignored with ``net.per_network_state``).  add-only: the test "forgot" DEL and fails; the
    network's purge must still remove every trace (bandwidth's ifb included).
    """
    ns = netns()
    cid = "crinet" + random_suffix(10)
    ipam, cache = tmp_path / "ipam", tmp_path / "cache"
    audit = Audit(cache_dir=cache, ipam_dir=ipam)
    allocator = SubnetAllocator()
    runtime_config = {
        "portmap": {"portMappings": [{"hostPort": 47913, "containerPort": 80, "protocol": "tcp"}]},
        "bandwidth": {"bandwidth": {"ingressRate": 1_000_000, "ingressBurst": 100_000,
                                    "egressRate": 1_000_000, "egressBurst": 100_000}},
    }

    with pytest.raises(RuntimeError, match="test body ended") if not with_del else _no_error():
        with hostaudit.net_scope(allocator) as make:
            net = make()
            conflist = net.conflist(ipam_dir=ipam, ip_masq=True, extra_plugins=[
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "firewall", "backend": "iptables", "ingressPolicy": "same-bridge"},
                {"type": "bandwidth", "capabilities": {"bandwidth": True}},
            ])
            confs = []
            prev = None
            for plugin in conflist["plugins"]:
                conf = {**plugin, "cniVersion": conflist["cniVersion"], "name": conflist["name"]}
                if plugin["type"] in runtime_config:
                    conf["runtimeConfig"] = runtime_config[plugin["type"]]
                confs.append(conf)
                if prev is not None:
                    conf = {**conf, "prevResult": prev}
                prev = _run_plugin(conf, "ADD", cid, ns) or prev

            leaked = audit.diff().leaked()
            assert {"links", "qdiscs", "leases", "iptables"} <= set(leaked), leaked
            assert hostaudit.ifb_name(net.name, cid) in {link.name for link in leaked["links"]}

            if with_del:
                for conf in reversed(confs):
                    _run_plugin({**conf, "prevResult": prev}, "DEL", cid, ns)
                # The bridge and its isolation rules outlive DEL by design.
                with pytest.raises(AssertionError, match=net.bridge):
                    audit.assert_clean(settle=0)
                audit.assert_clean(ignore=[net.per_network_state])
            else:
                with pytest.raises(AssertionError):
                    audit.assert_clean(settle=0)
                raise RuntimeError("test body ended without DEL")

    audit.assert_clean()  # after the purge: nothing at all
