"""Host-side audit and clean-up for cri-net's root integration tests.

Every root test of cri-net drives real CNI plugins (bridge, host-local, portmap, ...)
against the real host.  A plugin, or cri-net itself, that forgets to undo something on
DEL leaves state behind that silently breaks later tests (address exhausted, stale
iptables DNAT, a bridge holding the gateway address) and, worse, hides the very bug the
test is there to catch.  This module therefore gives tests two things:

* :func:`snapshot` / :func:`diff` / :func:`assert_no_leaks`: take a picture of every kind
  of host state a CNI operation can leave behind, before and after, and fail with a
  readable list of what was left.  Snapshots only read (no chain, rule, link or
  namespace is ever created by one), so taking one cannot itself change the picture.
* :class:`UniqueNet`, :class:`SubnetAllocator` and :func:`purge_net`: a per-test network
  identity (name, bridge, subnet) that nothing else on the host uses, and a best-effort
  sweep that removes everything carrying that identity, so a failing test still leaves
  the host clean for the next one.

The module is plain Python (no pytest import) so that it can be used from a REPL while
debugging a dirty host: ``python -c 'from integration import hostaudit as h; print(h.snapshot())'``.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
import re
import socket
import secrets
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

__all__ = [
    "CATEGORIES",
    "DEFAULT_CACHE_DIR",
    "DEFAULT_IPAM_DIR",
    "DEFAULT_SUBNET_POOL",
    "IPTABLES_TABLES",
    "NETNS_RUN_DIR",
    "SHARED_CNI_CHAINS",
    "Audit",
    "HostDiff",
    "HostSnapshot",
    "Ignore",
    "IptablesLine",
    "Link",
    "Qdisc",
    "SubnetAllocator",
    "UniqueNet",
    "CleanupError",
    "assert_no_leaks",
    "cni_shared_state",
    "diff",
    "host_ipv4_networks",
    "ifb_name",
    "iptables_save",
    "net_scope",
    "netns_scope",
    "purge_net",
    "random_suffix",
    "snapshot",
]

#: Where ``ip netns add`` (and containerd, and the CNI test helpers) pin namespaces.
NETNS_RUN_DIR = Path("/run/netns")
#: host-local's default ``dataDir``: one directory per network, one file per lease.
DEFAULT_IPAM_DIR = Path("/var/lib/cni/networks")
#: libcni's default cache dir; results live in ``<cache>/results/<net>-<id>-<ifname>``.
DEFAULT_CACHE_DIR = Path("/var/lib/cni")
#: Debian's containernetworking-plugins: the real plugins every integration test runs
CNI_PLUGIN_DIR = Path("/usr/lib/cni")


_ISSUED_PORTS: set[int] = set()


def free_port() -> int:
    """A host port free now and never handed out before in this run: two live pods may not
    map one host port (cri-net refuses the second), and the kernel may repeat an ephemeral one."""
    while True:
        with socket.socket() as s:
            s.bind(("0.0.0.0", 0))
            port = int(s.getsockname()[1])
        if port not in _ISSUED_PORTS:
            _ISSUED_PORTS.add(port)
            return port
#: The only tables the CNI plugins shipped with Debian write to.
IPTABLES_TABLES: tuple[str, ...] = ("nat", "filter", "mangle")
#: Subnets handed to tests come from here; 10.213/16 is unlikely to be a real LAN.
DEFAULT_SUBNET_POOL = ipaddress.IPv4Network("10.213.0.0/16")

#: Categories of :class:`HostSnapshot`, in the order they are reported.
CATEGORIES: tuple[str, ...] = ("netns", "links", "qdiscs", "leases", "iptables", "cache", "state")

# host-local keeps these next to the leases; they are bookkeeping, not allocations, and
# host-local never removes them, so counting them would make every first ADD "leak".
_LEASE_BOOKKEEPING = re.compile(r"^(last_reserved_ip\..*|lock)$")
_COUNTERS_SUFFIX = re.compile(r"\s*\[\d+:\d+\]$")
_COUNTERS_PREFIX = re.compile(r"^\[\d+:\d+\]\s*")
_BUILTIN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})

#: Chains the Debian 1.1.1 plugins create once per host and never delete (portmap,
#: firewall and its ``ingressPolicy`` isolation).  Their *static* rules are the same
#: for every container, so they are not a leak of any one test; per-container rules in
#: them (which carry an address, an interface or a ``name: ... id: ...`` comment) are.
SHARED_CNI_CHAINS = frozenset(
    {
        "CNI-HOSTPORT-DNAT",
        "CNI-HOSTPORT-SETMARK",
        "CNI-HOSTPORT-MASQ",
        "CNI-HOSTPORT-SNAT",
        "CNI-FORWARD",
        "CNI-ADMIN",
        "CNI-ISOLATION-STAGE-1",
        "CNI-ISOLATION-STAGE-2",
    }
)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, order=True)
class Link:
    """A network interface in the host namespace.

    Identity is (name, kind, driver) rather than ifindex: a leak is "a veth called X is
    still there", and a device deleted and re-created under the same name is not a leak.
    ``kind`` is coarse (veth / bridge / other) because that is what tests reason about;
    ``driver`` keeps the kernel's link kind (``ifb``, ``dummy``, ...) for the report.
    """

    name: str
    kind: str
    driver: str = ""

    def __str__(self) -> str:
        extra = f" ({self.driver})" if self.kind == "other" and self.driver else ""
        return f"{self.kind} {self.name}{extra}"


@dataclass(frozen=True, order=True)
class Qdisc:
    """A non-default queueing discipline on a host link (the bandwidth plugin's tbf/ingress).

    Kernel-default qdiscs (handle ``0:``: noqueue, pfifo_fast, mq...) are not recorded:
    every new link gets one, so they would only repeat each leaked link a second time.
    """

    dev: str
    kind: str
    handle: str
    parent: str

    def __str__(self) -> str:
        return f"{self.kind} {self.handle} dev {self.dev} parent {self.parent}"


@dataclass(frozen=True, order=True)
class IptablesLine:
    """One normalised ``iptables-save`` line (chain declaration or rule).

    Counters are stripped so traffic does not show up as change.  ``copy`` numbers
    identical lines (1, 2, ...): a plugin that ADDs the same rule twice and DELs it once
    leaves a duplicate, which a plain set of lines would not see.
    """

    family: str  # "ipv4" | "ipv6"
    table: str
    line: str
    copy: int = 1

    @property
    def chain(self) -> str:
        """The chain this line declares (``:X``) or appends to (``-A X``)."""
        if self.line.startswith(":"):
            return self.line[1:].split()[0]
        parts = self.line.split()
        return parts[1] if len(parts) > 1 and parts[0] == "-A" else ""

    @property
    def is_chain(self) -> bool:
        """True for a chain declaration line."""
        return self.line.startswith(":")

    @property
    def target(self) -> str:
        """The ``-j``/``-g`` target of a rule ('' for declarations and target-less rules)."""
        parts = self.line.split()
        for i, tok in enumerate(parts[:-1]):
            if tok in ("-j", "-g", "--jump", "--goto"):
                return parts[i + 1]
        return ""

    def __str__(self) -> str:
        dup = f"  (copy {self.copy})" if self.copy > 1 else ""
        return f"{self.family}/{self.table}: {self.line}{dup}"


# ------------------------------------------------------------------------- snapshot


@dataclass(frozen=True)
class HostSnapshot:
    """What a CNI operation can leave on the host, at one moment.

    ``params`` records the directories the snapshot looked at: comparing snapshots of
    different directories would report every file as added or removed, so :func:`diff`
    refuses to do it.
    """

    netns: frozenset[str]
    links: frozenset[Link]
    qdiscs: frozenset[Qdisc]
    leases: frozenset[str]
    iptables: frozenset[IptablesLine]
    cache: frozenset[str]
    state: frozenset[str]
    params: tuple[tuple[str, str], ...] = ()

    def category(self, name: str) -> frozenset[Any]:
        """The items of one category (one of :data:`CATEGORIES`)."""
        if name not in CATEGORIES:
            raise KeyError(name)
        return getattr(self, name)  # type: ignore[no-any-return]


def snapshot(
    cache_dir: str | os.PathLike[str] | None = None,
    ipam_dir: str | os.PathLike[str] | None = DEFAULT_IPAM_DIR,
    state_dir: str | os.PathLike[str] | None = None,
    netns_dirs: Iterable[str | os.PathLike[str]] = (),
) -> HostSnapshot:
    """Take a :class:`HostSnapshot` of the host (root network namespace of this process).

    ``cache_dir``: libcni cache dir whose ``results/*`` are recorded (None: not looked at).
    ``ipam_dir``: host-local data dir (lease files) (None: not looked at).
    ``state_dir``: every file below it is recorded (cri-net's own state) (None: skipped).
    ``netns_dirs``: extra directories in which nsfs bind mounts count as namespaces
    (cri-net or containerd may pin namespaces elsewhere than /run/netns).

    Takes a few tens of milliseconds: six ``*tables-save`` runs and two netlink dumps.
    """
    cache = Path(cache_dir) if cache_dir is not None else None
    ipam = Path(ipam_dir) if ipam_dir is not None else None
    state = Path(state_dir) if state_dir is not None else None
    ns_dirs = tuple(sorted({os.path.realpath(d) for d in netns_dirs}))
    links, qdiscs = _links_and_qdiscs()
    return HostSnapshot(
        netns=_netns(ns_dirs),
        links=links,
        qdiscs=qdiscs,
        leases=_files(ipam, exclude=_LEASE_BOOKKEEPING) if ipam else frozenset(),
        iptables=frozenset(
            line for fam in ("ipv4", "ipv6") for table in IPTABLES_TABLES for line in iptables_save(fam, table)
        ),
        cache=_files(cache / "results", recursive=False) if cache else frozenset(),
        state=_files(state) if state else frozenset(),
        params=(
            ("cache_dir", str(cache)),
            ("ipam_dir", str(ipam)),
            ("state_dir", str(state)),
            ("netns_dirs", ":".join(ns_dirs)),
        ),
    )


def _netns(extra_dirs: tuple[str, ...]) -> frozenset[str]:
    """Paths of pinned network namespaces.

    Every entry of /run/netns counts, mounted or not: a file left there after a failed
    unmount is exactly the kind of debris ``ip netns`` then trips over.  Elsewhere only
    nsfs mounts count, since those dirs also hold unrelated files.
    """
    found: set[str] = set()
    try:
        found.update(str(NETNS_RUN_DIR / e) for e in os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        pass
    if extra_dirs:
        prefixes = tuple(d.rstrip("/") + "/" for d in extra_dirs)
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if not right.startswith("nsfs "):
                    continue
                mountpoint = _unescape_mountinfo(left.split()[4])
                if mountpoint.startswith(prefixes):
                    found.add(mountpoint)
    return frozenset(found)


def _unescape_mountinfo(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _link_kind(driver: str) -> str:
    return driver if driver in ("veth", "bridge") else "other"


def _links_and_qdiscs() -> tuple[frozenset[Link], frozenset[Qdisc]]:
    """Host links and their non-default qdiscs, from one netlink socket."""
    from pyroute2 import IPRoute  # imported lazily: costs ~0.3 s, only once per process

    with IPRoute() as ipr:
        names: dict[int, str] = {}
        links: set[Link] = set()
        for msg in ipr.get_links():
            name = msg.get("ifname")
            driver = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or ""
            names[msg["index"]] = name
            links.add(Link(name=name, kind=_link_kind(driver), driver=driver))
        qdiscs: set[Qdisc] = set()
        for msg in ipr.get_qdiscs():
            if msg["handle"] == 0:
                continue
            qdiscs.add(
                Qdisc(
                    dev=names.get(msg["index"], f"if{msg['index']}"),
                    kind=msg.get("TCA_KIND") or "?",
                    handle=_tc_handle(msg["handle"]),
                    parent=_tc_parent(msg["parent"]),
                )
            )
    return frozenset(links), frozenset(qdiscs)


def _tc_handle(h: int) -> str:
    major, minor = h >> 16, h & 0xFFFF
    return f"{major:x}:{minor:x}" if minor else f"{major:x}:"


def _tc_parent(p: int) -> str:
    if p == 0xFFFFFFFF:
        return "root"
    if p == 0xFFFFFFF1:
        return "ingress"
    return _tc_handle(p)


def _files(root: Path, *, exclude: re.Pattern[str] | None = None, recursive: bool = True) -> frozenset[str]:
    """Absolute paths of non-directory entries under ``root`` (missing root: empty)."""
    out: set[str] = set()
    if not root.is_dir():
        return frozenset()
    if not recursive:
        with os.scandir(root) as it:
            for e in it:
                if not e.is_dir(follow_symlinks=False) and not (exclude and exclude.match(e.name)):
                    out.add(e.path)
        return frozenset(out)
    for dirpath, dirnames, filenames in os.walk(root):
        # A symlink to a directory is not descended into but is still an entry.
        entries = filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        out.update(os.path.join(dirpath, n) for n in entries if not (exclude and exclude.match(n)))
    return frozenset(out)


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)


def _iptables_cmd(family: str, what: str) -> str:
    prefix = {"ipv4": "iptables", "ipv6": "ip6tables"}[family]
    return f"{prefix}-{what}" if what else prefix


def iptables_save(family: str, table: str) -> list[IptablesLine]:
    """Normalised lines of one table (``family`` is "ipv4" or "ipv6").

    ``-t`` is always passed so the output has the same shape whether or not the table
    exists yet (nft prints the built-in chains either way), hence a plugin creating
    the nat table on first use is not reported.  A missing ``ip6tables-save`` yields no
    lines (consistently in before and after); a failing one raises, since a broken
    iptables would make every audit meaningless.
    """
    exe = _iptables_cmd(family, "save")
    if shutil.which(exe) is None:
        if family == "ipv6":
            return []
        raise RuntimeError(f"{exe} not found")
    proc = _run([exe, "-t", table])
    if proc.returncode != 0:
        raise RuntimeError(f"{exe} -t {table} failed ({proc.returncode}): {proc.stderr.strip()}")
    seen: Counter[str] = Counter()
    out: list[IptablesLine] = []
    for raw in proc.stdout.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "*")) or line == "COMMIT":
            continue
        if line.startswith(":"):
            line = _COUNTERS_SUFFIX.sub("", line)
        else:
            line = _COUNTERS_PREFIX.sub("", line)
        seen[line] += 1
        out.append(IptablesLine(family, table, line, seen[line]))
    return out


# ----------------------------------------------------------------------------- diff

#: What :meth:`HostDiff.filtered` / :func:`assert_no_leaks` accept as ``ignore``: a
#: regex (str or compiled) searched in ``"<category>: <item>"``, or a predicate
#: ``(category, item) -> bool`` returning True for items to ignore.
Ignore = Union[str, "re.Pattern[str]", Callable[[str, Any], bool]]


@dataclass(frozen=True)
class HostDiff:
    """Per-category ``added`` (in after, not before) and ``removed`` items.

    Only categories with changes have keys.  ``bool(diff)`` is True when anything changed.
    """

    added: Mapping[str, frozenset[Any]]
    removed: Mapping[str, frozenset[Any]]

    def leaked(self) -> dict[str, frozenset[Any]]:
        """What is in *after* but not in *before*, per category (non-empty only)."""
        return {k: v for k, v in self.added.items() if v}

    def __bool__(self) -> bool:
        return any(self.added.values()) or any(self.removed.values())

    def filtered(self, ignore: Iterable[Ignore]) -> HostDiff:
        """A copy without the items any of ``ignore`` matches."""
        preds = [_predicate(i) for i in ignore]
        if not preds:
            return self

        def keep(cat: str, items: frozenset[Any]) -> frozenset[Any]:
            return frozenset(x for x in items if not any(p(cat, x) for p in preds))

        return HostDiff(
            added=_nonempty({c: keep(c, v) for c, v in self.added.items()}),
            removed=_nonempty({c: keep(c, v) for c, v in self.removed.items()}),
        )

    def lines(self) -> Iterator[str]:
        """The report, one line per change: ``+ cat: item`` / ``- cat: item``."""
        for cat in CATEGORIES:
            for sign, items in (("+", self.added.get(cat, frozenset())), ("-", self.removed.get(cat, frozenset()))):
                for item in sorted(items, key=str):
                    yield f"{sign} {cat}: {item}"

    def __str__(self) -> str:
        if not self:
            return "host unchanged"
        body = []
        for cat in CATEGORIES:
            add = sorted(map(str, self.added.get(cat, ())))
            rem = sorted(map(str, self.removed.get(cat, ())))
            if not add and not rem:
                continue
            body.append(f"  {cat}:")
            body.extend(f"    + {x}" for x in add)
            body.extend(f"    - {x}" for x in rem)
        return "host changed (+ added since before, - gone since before):\n" + "\n".join(body)


def _nonempty(d: Mapping[str, frozenset[Any]]) -> dict[str, frozenset[Any]]:
    return {k: v for k, v in d.items() if v}


def _predicate(ignore: Ignore) -> Callable[[str, Any], bool]:
    if callable(ignore) and not isinstance(ignore, re.Pattern):
        return ignore
    rx = re.compile(ignore) if isinstance(ignore, str) else ignore
    return lambda cat, item: rx.search(f"{cat}: {item}") is not None


def diff(before: HostSnapshot, after: HostSnapshot) -> HostDiff:
    """Compare two snapshots taken with the same directories (else ValueError)."""
    if before.params != after.params:
        raise ValueError(
            f"snapshots looked at different directories: {dict(before.params)} vs {dict(after.params)}"
        )
    added: dict[str, frozenset[Any]] = {}
    removed: dict[str, frozenset[Any]] = {}
    for cat in CATEGORIES:
        b, a = before.category(cat), after.category(cat)
        added[cat], removed[cat] = a - b, b - a
    return HostDiff(added=_nonempty(added), removed=_nonempty(removed))


_ADDRESS_OR_IFACE = re.compile(r"(^|\s)(!\s+)?(-s|-d|-i|-o|--to-destination|--to-source)\s")


def cni_shared_state(category: str, item: Any) -> bool:
    """Ignore predicate for the iptables scaffolding CNI plugins create once per host.

    portmap and firewall add chains (:data:`SHARED_CNI_CHAINS`) and static jumps into
    them on first use and, by design, never remove them.  Without this the first test
    that uses portmap on a fresh host would fail.  Per-container rules are *not*
    ignored: they name an address, an interface or carry an ``id:`` comment.
    """
    if category != "iptables" or not isinstance(item, IptablesLine):
        return False
    if item.is_chain:
        return item.chain in SHARED_CNI_CHAINS
    if _ADDRESS_OR_IFACE.search(item.line) or "id: " in item.line:
        return False
    return item.chain in SHARED_CNI_CHAINS or item.target in SHARED_CNI_CHAINS


def assert_no_leaks(before: HostSnapshot, after: HostSnapshot, ignore: Iterable[Ignore] = ()) -> HostDiff:
    """Raise AssertionError listing what *after* has that *before* had not.

    Things that disappeared are not leaks and do not fail, but are shown for context
    (a test deleting host state it did not create is worth noticing).  Returns the
    (filtered) diff so callers can make further assertions.
    """
    d = diff(before, after).filtered(ignore)
    leaked = d.leaked()
    if leaked:
        raise AssertionError("host state leaked by the test:\n" + str(d))
    return d


class Audit:
    """A "before" snapshot plus the arguments to take a comparable "after" one.

    Built by the ``host_audit`` fixture; usable directly too.  ``ignore`` given here
    applies to every check; :func:`cni_shared_state` is included by default.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        ipam_dir: str | os.PathLike[str] | None = DEFAULT_IPAM_DIR,
        state_dir: str | os.PathLike[str] | None = None,
        netns_dirs: Iterable[str | os.PathLike[str]] = (),
        ignore: Iterable[Ignore] = (cni_shared_state,),
    ) -> None:
        self._kwargs: dict[str, Any] = {
            "cache_dir": cache_dir,
            "ipam_dir": ipam_dir,
            "state_dir": state_dir,
            "netns_dirs": tuple(netns_dirs),
        }
        self.ignore: list[Ignore] = list(ignore)
        self.checked = False
        self.before: HostSnapshot = snapshot(**self._kwargs)

    def snapshot(self) -> HostSnapshot:
        """A new snapshot of the same directories as :attr:`before`."""
        return snapshot(**self._kwargs)

    def diff(self, ignore: Iterable[Ignore] = ()) -> HostDiff:
        """Everything that changed since :attr:`before` (after ``ignore`` filtering)."""
        return diff(self.before, self.snapshot()).filtered([*self.ignore, *ignore])

    def assert_clean(self, ignore: Iterable[Ignore] = (), settle: float = 1.0) -> HostDiff:
        """Fail if anything was added since :attr:`before` (see :func:`assert_no_leaks`).

        Some teardown is asynchronous in the kernel (a namespace, and the veth ends in
        it, is destroyed by a work queue after its last reference goes), so a leak is
        only reported once it has persisted for ``settle`` seconds.  A clean host
        costs one snapshot.
        """
        self.checked = True
        filters = [*self.ignore, *ignore]
        deadline = time.monotonic() + settle
        while True:
            try:
                return assert_no_leaks(self.before, self.snapshot(), filters)
            except AssertionError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(0.05)


# ------------------------------------------------------------- test network identity


def random_suffix(nbytes: int = 3) -> str:
    """Lowercase hex; 3 bytes keeps ``cnt<hex>`` and ``crinet-t-<hex>`` within IFNAMSIZ."""
    return secrets.token_hex(nbytes)


def host_ipv4_networks() -> list[ipaddress.IPv4Network]:
    """The networks of every IPv4 address configured in the host namespace."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return [
            ipaddress.IPv4Network(f"{m.get('IFA_ADDRESS') or m.get('address')}/{m['prefixlen']}", strict=False)
            for m in ipr.get_addr(family=2)
        ]


class SubnetAllocator:
    """Hands out non-overlapping subnets of a pool, skipping any the host already uses.

    One instance lives for the whole pytest session, so two tests never get the same
    subnet (a second host-local range or bridge gateway on the same subnet would make
    the host route table ambiguous).  Host addresses are re-read on every allocation,
    so a bridge left by another run, or a concurrent session's bridge, is avoided too.
    The choice among free subnets is random to make collisions with a concurrent
    session that has not configured its bridge yet unlikely.
    """

    def __init__(self, pool: ipaddress.IPv4Network | str = DEFAULT_SUBNET_POOL, prefixlen: int = 24) -> None:
        self.pool = ipaddress.IPv4Network(pool)
        if prefixlen < self.pool.prefixlen:
            raise ValueError(f"/{prefixlen} does not fit in {self.pool}")
        self.prefixlen = prefixlen
        #: Subnets currently held by a test.
        self.handed_out: list[ipaddress.IPv4Network] = []
        #: Subnets given back after a clean purge; reused only once the pool has no
        #: never-used subnet left, so a session normally never repeats a subnet.
        self.released: list[ipaddress.IPv4Network] = []

    def allocate(self) -> ipaddress.IPv4Network:
        """A free subnet; RuntimeError when the pool is exhausted."""
        busy = [n for n in host_ipv4_networks() if n.overlaps(self.pool)] + self.handed_out
        free = [s for s in self.pool.subnets(new_prefix=self.prefixlen) if not any(s.overlaps(b) for b in busy)]
        fresh = [s for s in free if s not in self.released]
        candidates = fresh or free
        if not candidates:
            raise RuntimeError(f"no free /{self.prefixlen} left in {self.pool} (busy: {', '.join(map(str, busy))})")
        chosen = candidates[secrets.randbelow(len(candidates))]
        if chosen in self.released:
            self.released.remove(chosen)
        self.handed_out.append(chosen)
        return chosen

    def release(self, subnet: ipaddress.IPv4Network) -> None:
        """Give a subnet back; call only once nothing on the host uses it any more."""
        self.handed_out.remove(subnet)
        self.released.append(subnet)


@dataclass
class UniqueNet:
    """Identity of one test's CNI network, unique within the session and on the host.

    ``ipam_dirs`` / ``cache_dirs`` say where :func:`purge_net` looks for this network's
    lease directory and cached results; :meth:`conflist` and :meth:`ipam` add the
    directories they are given, and tests using other dirs should add them.
    ``container_ids`` is optional: purge finds IDs from leases, results and iptables.
    """

    name: str
    bridge: str
    subnet: ipaddress.IPv4Network
    ipam_dirs: set[Path] = field(default_factory=lambda: {DEFAULT_IPAM_DIR})
    cache_dirs: set[Path] = field(default_factory=lambda: {DEFAULT_CACHE_DIR})
    container_ids: set[str] = field(default_factory=set)

    @classmethod
    def new(cls, subnet: ipaddress.IPv4Network) -> UniqueNet:
        """A fresh random identity on ``subnet``."""
        suffix = random_suffix()
        return cls(name=f"crinet-t-{suffix}", bridge=f"cnt{suffix}", subnet=subnet)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """First host address: what the bridge plugin puts on the bridge with isGateway."""
        return self.subnet.network_address + 1

    def host(self, n: int) -> ipaddress.IPv4Address:
        """The ``n``-th address of the subnet (n=1 is the gateway)."""
        addr = self.subnet.network_address + n
        if addr not in self.subnet:
            raise ValueError(f"{addr} not in {self.subnet}")
        return addr

    def per_network_state(self, category: str, item: Any) -> bool:
        """Ignore predicate for what CNI keeps per *network*, not per container.

        The bridge plugin never deletes its bridge on DEL (other containers may use
        it), and the firewall plugin's ``ingressPolicy`` isolation rules name the
        bridge and live as long as it does.  A test checking that DEL undid ADD
        passes this in ``ignore``; the network's purge still removes both at teardown.
        """
        if category == "links":
            return isinstance(item, Link) and item.name == self.bridge
        if category == "iptables" and isinstance(item, IptablesLine):
            return item.chain.startswith("CNI-ISOLATION-STAGE-") and bool(
                re.search(rf"(?<![\w-]){re.escape(self.bridge)}(?![\w-])", item.line)
            )
        return False

    def lease_dir(self, ipam_dir: str | os.PathLike[str] = DEFAULT_IPAM_DIR) -> Path:
        """host-local's directory for this network (registered for clean-up)."""
        self.ipam_dirs.add(Path(ipam_dir))
        return Path(ipam_dir) / self.name

    def ipam(self, data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """A host-local ``ipam`` section for this subnet (data dir registered for clean-up)."""
        conf: dict[str, Any] = {
            "type": "host-local",
            "ranges": [[{"subnet": str(self.subnet), "gateway": str(self.gateway)}]],
        }
        if data_dir is not None:
            self.ipam_dirs.add(Path(data_dir))
            conf["dataDir"] = str(data_dir)
        return conf

    def conflist(
        self,
        *,
        cni_version: str = "1.0.0",
        ipam_dir: str | os.PathLike[str] | None = None,
        ip_masq: bool = False,
        extra_plugins: Iterable[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """A bridge + host-local network config list for this identity, as a dict.

        ``extra_plugins`` (e.g. ``{"type": "portmap", "capabilities": {"portMappings": True}}``)
        are chained after bridge.
        """
        bridge: dict[str, Any] = {
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": True,
            "ipMasq": ip_masq,
            "ipam": self.ipam(ipam_dir),
        }
        return {"cniVersion": cni_version, "name": self.name, "plugins": [bridge, *map(dict, extra_plugins)]}


# ----------------------------------------------------------------------- clean-up


def _ipv4_literals(line: str) -> Iterator[ipaddress.IPv4Network]:
    for m in re.finditer(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(/\d{1,2})?(?![\d.])", line):
        try:
            yield ipaddress.IPv4Network(m.group(1) + (m.group(2) or ""), strict=False)
        except ValueError:
            continue


def _rule_belongs_to(net: UniqueNet, line: IptablesLine) -> bool:
    """Whether a rule was made for ``net``: by name (comment or chain), bridge or address."""
    word = r"(?<![\w-]){}(?![\w-])"
    if re.search(word.format(re.escape(net.name)), line.line):
        return True
    if re.search(word.format(re.escape(net.bridge)), line.line):
        return True
    return any(n.subnet_of(net.subnet) for n in _ipv4_literals(line.line))


def purge_net(net: UniqueNet) -> list[str]:
    """Remove every trace of ``net`` from the host; return what could not be removed.

    Best effort by design (each step runs even if an earlier one failed) because it
    runs in teardown after tests that may have failed half-way:

    * host links enslaved to the bridge (host ends of veths), then the bridge, then the
      bandwidth plugin's ``bwp<hash>`` ifb devices of the network's containers;
    * iptables rules naming the network (bridge ipMasq / portmap comments), the bridge,
      or an address inside the subnet (firewall, portmap DNAT); chains named after the
      network, the per-container chains those rules jumped to (``CNI-<hash>``,
      ``CNI-DN-<hash>``) and chains holding only such rules are flushed and deleted;
      the shared :data:`SHARED_CNI_CHAINS` stay;
    * ``<ipam_dir>/<name>`` for every registered ipam dir;
    * ``<cache_dir>/results/<name>-*`` for every registered cache dir.

    Container IDs (needed for the ifb names, which hash network name + ID) come from
    ``net.container_ids`` plus whatever the leases, cached results and iptables
    comments reveal, so a test need not register them.
    """
    errors: list[str] = []
    try:
        cids = net.container_ids | _discover_container_ids(net)
    except Exception as e:  # noqa: BLE001 - teardown must carry on
        cids = set(net.container_ids)
        errors.append(f"finding container ids: {e}")
    errors += _purge_links(net, cids)
    for family in ("ipv4", "ipv6"):
        for table in IPTABLES_TABLES:
            try:
                errors += _purge_iptables(net, family, table)
            except Exception as e:  # noqa: BLE001 - teardown must carry on
                errors.append(f"iptables {family}/{table}: {e}")
    for d in sorted(net.ipam_dirs):
        target = d / net.name
        try:
            if target.is_symlink() or target.is_file():
                target.unlink()
            elif target.exists():
                shutil.rmtree(target)
        except OSError as e:
            errors.append(f"lease dir {target}: {e}")
    for results in _results_dirs(net):
        try:
            for p in results.glob(f"{_glob_escape(net.name)}-*"):
                p.unlink(missing_ok=True)
        except OSError as e:
            errors.append(f"cache {results}: {e}")
    return errors


def _results_dirs(net: UniqueNet) -> list[Path]:
    return [d / "results" for d in sorted(net.cache_dirs) if (d / "results").is_dir()]


def _discover_container_ids(net: UniqueNet) -> set[str]:
    """Container IDs the host still associates with ``net``."""
    cids: set[str] = set()
    for d in net.ipam_dirs:
        lease_dir = d / net.name
        if not lease_dir.is_dir():
            continue
        for p in lease_dir.iterdir():
            if p.is_file() and not _LEASE_BOOKKEEPING.match(p.name):
                # host-local writes "<id>\r\n<ifname>" (older releases: just "<id>").
                first = p.read_text(errors="replace").splitlines()[:1]
                if first and first[0].strip():
                    cids.add(first[0].strip())
    prefix = f"{net.name}-"
    for results in _results_dirs(net):
        for p in results.glob(f"{_glob_escape(net.name)}-*"):
            rest = p.name[len(prefix):]
            # "<id>-<ifname>"; a wrong split (an ifname with "-") only yields an ifb
            # name that does not exist, so guessing is harmless.
            if "-" in rest:
                cids.add(rest.rsplit("-", 1)[0])
    comment = re.compile(r'name: \\"' + re.escape(net.name) + r'\\" id: \\"([^"\\]+)\\"')
    for family in ("ipv4", "ipv6"):
        for table in IPTABLES_TABLES:
            for line in iptables_save(family, table):
                cids.update(comment.findall(line.line))
    return cids


def ifb_name(network: str, container_id: str) -> str:
    """The bandwidth plugin's ifb device for a container (``bwp`` + sha512(net+id)[:12])."""
    return "bwp" + hashlib.sha512((network + container_id).encode()).hexdigest()[:12]


def _glob_escape(s: str) -> str:
    """Escape glob metacharacters (network names are free-form in CNI)."""
    return re.sub(r"([*?\[])", r"[\1]", s)


def _purge_links(net: UniqueNet, container_ids: Iterable[str]) -> list[str]:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    errors: list[str] = []

    def delete(ipr: IPRoute, index: int, what: str) -> None:
        try:
            ipr.link("del", index=index)
        except NetlinkError as e:
            if e.code != errno.ENODEV:  # vanished meanwhile (e.g. with its namespace)
                errors.append(f"{what}: {e}")

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=net.bridge)
        if idx:
            for msg in ipr.get_links():
                if msg.get("master") == idx[0]:
                    delete(ipr, msg["index"], f"bridge port {msg.get('ifname')}")
            delete(ipr, idx[0], f"bridge {net.bridge}")
        for cid in sorted(container_ids):
            name = ifb_name(net.name, cid)
            for index in ipr.link_lookup(ifname=name):
                delete(ipr, index, f"ifb {name}")
    return errors


def _purge_iptables(net: UniqueNet, family: str, table: str) -> list[str]:
    lines = iptables_save(family, table)
    declared = {ln.chain for ln in lines if ln.is_chain}
    user_chains = declared - _BUILTIN_CHAINS
    rules = [ln for ln in lines if not ln.is_chain]

    doomed = {c for c in user_chains if net.name in c}
    own = [r for r in rules if _rule_belongs_to(net, r)]
    # Per-container chains: targets of our rules (bridge's CNI-<hash> masquerade chain,
    # portmap's CNI-DN-<hash>), and chains holding nothing but our rules.
    doomed |= {r.target for r in own if r.target in user_chains}
    for chain in user_chains - doomed:
        in_chain = [r for r in rules if r.chain == chain]
        if in_chain and all(r in own for r in in_chain):
            doomed.add(chain)
    doomed -= SHARED_CNI_CHAINS
    # Rules still jumping into a doomed chain would make -X fail; the chain is ours, so
    # they are too.  Rules inside doomed chains go with the flush.
    own = [r for r in rules if r.chain not in doomed and (r in own or r.target in doomed)]
    if not own and not doomed:
        return []

    ops = [("-D" + r.line[2:]) for r in own]
    ops += [f"-F {c}" for c in sorted(doomed)]
    ops += [f"-X {c}" for c in sorted(doomed)]
    exe = _iptables_cmd(family, "restore")

    def restore(batch: list[str]) -> str:
        script = f"*{table}\n" + "\n".join(batch) + "\nCOMMIT\n"
        proc = _run([exe, "-w", "5", "--noflush"], stdin=script)
        return "" if proc.returncode == 0 else (proc.stderr.strip() or f"rc={proc.returncode}")

    if not restore(ops):
        return []
    # The batch is atomic; retry op by op so one stale line does not block the rest.
    return [f"{family}/{table}: {op!r}: {err}" for op in ops if (err := restore([op]))]


class CleanupError(AssertionError):
    """Teardown could not restore the host; the message lists what is left.

    An AssertionError so that pytest reports it as a test problem (at teardown) rather
    than as a crash of the harness.
    """


@contextmanager
def net_scope(allocator: SubnetAllocator) -> Iterator[Callable[[], UniqueNet]]:
    """Yield a factory of :class:`UniqueNet`; :func:`purge_net` all of them on exit.

    Runs on every exit, including an exception from the body (a failing test), and
    raises :class:`CleanupError` if something could not be removed.  Subnets purged
    cleanly go back to ``allocator``; the others stay reserved for the session.
    """
    nets: list[UniqueNet] = []

    def make() -> UniqueNet:
        net = UniqueNet.new(allocator.allocate())
        nets.append(net)
        return net

    try:
        yield make
    finally:
        errors: list[str] = []
        for net in reversed(nets):
            problems = purge_net(net)
            if problems:
                errors += [f"{net.name} ({net.bridge}, {net.subnet}): {p}" for p in problems]
            else:
                allocator.release(net.subnet)
        if errors:
            raise CleanupError("could not clean up test networks:\n  " + "\n  ".join(errors))


@contextmanager
def netns_scope(prefix: str = "crinet-t-") -> Iterator[Callable[[], str]]:
    """Yield a factory creating pinned network namespaces; delete them all on exit.

    The factory returns ``/run/netns/<prefix><random>``.  Namespaces already deleted
    by the body are fine; one that cannot be deleted raises :class:`CleanupError`
    (after trying all the others).  ``ip netns`` is used rather than pyroute2 so the
    namespaces are pinned exactly the way the CNI tooling and containerd pin theirs.
    """
    created: list[str] = []

    def make() -> str:
        for _ in range(5):
            name = f"{prefix}{random_suffix()}"
            proc = _run(["ip", "netns", "add", name])
            if proc.returncode == 0:
                created.append(name)
                return str(NETNS_RUN_DIR / name)
            if "exists" not in proc.stderr:
                break
        raise RuntimeError(f"ip netns add {name} failed: {proc.stderr.strip()}")

    try:
        yield make
    finally:
        errors: list[str] = []
        for name in reversed(created):
            path = NETNS_RUN_DIR / name
            if not path.exists():
                continue
            proc = _run(["ip", "netns", "delete", name])
            if path.exists():
                errors.append(f"{path}: {proc.stderr.strip() or 'still present after ip netns delete'}")
        if errors:
            raise CleanupError("could not delete test network namespaces:\n  " + "\n  ".join(errors))


def bridge_ports(bridge: str) -> list[str]:
    """Host links enslaved to ``bridge`` (the host ends of the pods' veths), sorted."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=bridge)
        if not idx:
            return []
        return sorted(m.get("ifname") for m in ipr.get_links() if m.get("master") == idx[0])
