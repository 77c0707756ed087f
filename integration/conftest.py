"""Fixtures for cri-net's root integration tests (everything under integration/).

These tests run real CNI plugins against the real host, so the harness has two jobs:
refuse to run on a host that cannot run them (failing, never skipping: a green run that
silently tested nothing is worse than a red one), and guarantee that every test, passed
or failed, leaves the host as it found it.  The mechanics live in
:mod:`integration.hostaudit`; this file only binds them to pytest's life cycle.

Typical use::

    def test_add_del(unique_net, netns, host_audit, tmp_path):
        audit = host_audit(cache_dir=tmp_path / "cache", ipam_dir=tmp_path / "ipam")
        conf = unique_net.conflist(ipam_dir=tmp_path / "ipam")
        ns = netns()                      # "/run/netns/crinet-t-1a2b3c"
        ...                               # ADD then DEL through cri-net
        audit.assert_clean()              # AssertionError listing any leftover
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from integration import hostaudit, hostlock
from integration.hostaudit import CNI_PLUGIN_DIR, Audit, Ignore, SubnetAllocator, UniqueNet

_HERE = Path(__file__).resolve().parent

#: Executables the harness and the plugins need; all come from iproute2 / iptables.
REQUIRED_EXECUTABLES: tuple[str, ...] = ("ip", "tc", "iptables", "iptables-save", "iptables-restore")
#: Debian's containernetworking-plugins (scripts/bootstrap.sh installs them).
REQUIRED_PLUGINS: tuple[str, ...] = ("bridge",)

#: One allocator for the whole session, so no two tests ever share a subnet.
SUBNETS = SubnetAllocator()

_REPORT_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()


def host_problems() -> list[str]:
    """Why this host cannot run the root integration tests ([] when it can)."""
    problems: list[str] = []
    if os.geteuid() != 0:
        problems.append(f"not running as root (euid {os.geteuid()})")
    for plugin in REQUIRED_PLUGINS:
        path = CNI_PLUGIN_DIR / plugin
        if not (path.is_file() and os.access(path, os.X_OK)):
            problems.append(f"CNI plugin {path} missing or not executable")
    for exe in REQUIRED_EXECUTABLES:
        if shutil.which(exe) is None:
            problems.append(f"{exe!r} not found in PATH")
    return problems


def _in_integration(item: pytest.Item) -> bool:
    return _HERE == Path(item.path).resolve().parent or _HERE in Path(item.path).resolve().parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under integration/ ``root`` so ``-m 'not root'`` can deselect them."""
    for item in items:
        if _in_integration(item):
            item.add_marker(pytest.mark.root)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's report so fixtures can tell whether the test passed."""
    report = yield
    item.stash.setdefault(_REPORT_KEY, {})[report.when] = report
    return report


#: Held for a whole integration session: the host audits see the whole host, so two sessions
#: (or a benchmark) running at once would report each other's pods as leaks.
HOST_LOCK = hostlock.HOST_LOCK


@pytest.fixture(scope="session", autouse=True)
def _host_lock(request: pytest.FixtureRequest) -> Iterator[None]:
    """Wait for any other cri-net integration session or benchmark on this host to finish
    (saying so on the terminal while it waits)."""
    with hostlock.hold(hostlock.terminal_writer(request.config), HOST_LOCK):
        yield


@pytest.fixture(scope="session", autouse=True)
def _root_host_gate(_host_lock: None) -> None:
    """Fail (never skip) every integration test on a host that cannot run them."""
    problems = host_problems()
    if problems:
        pytest.fail(
            "cri-net integration tests need a prepared root host; run `sudo scripts/bootstrap.sh` "
            "and run pytest as root.  Problems:\n  - " + "\n  - ".join(problems),
            pytrace=False,
        )


@pytest.fixture
def netns() -> Iterator[Callable[[], str]]:
    """Factory of fresh pinned network namespaces: ``netns() -> "/run/netns/crinet-t-xxxxxx"``.

    All of them are deleted at teardown (already-deleted ones are fine); loopback is
    left down.  Teardown fails the test if one cannot be deleted.
    """
    with hostaudit.netns_scope() as make:
        yield make


@pytest.fixture
def net_factory() -> Iterator[Callable[[], UniqueNet]]:
    """Factory of :class:`~integration.hostaudit.UniqueNet` for tests needing several networks.

    At teardown every network is purged (bridge and its ports, iptables rules/chains
    naming it, its bridge or its subnet, lease dirs, cached results), whether the
    test passed or not; what cannot be removed fails the test at teardown.
    """
    with hostaudit.net_scope(SUBNETS) as make:
        yield make


@pytest.fixture
def unique_net(net_factory: Callable[[], UniqueNet]) -> UniqueNet:
    """A network identity of this test alone: ``.name`` (``crinet-t-<hex6>``), ``.bridge``
    (``cnt<hex6>``), ``.subnet`` (a /24 of 10.213.0.0/16 unused on the host and in the
    session) and ``.gateway``; cleaned up as described in :func:`net_factory`."""
    return net_factory()


@pytest.fixture
def host_audit(request: pytest.FixtureRequest) -> Iterator[Callable[..., Audit]]:
    """Start a host audit: ``host_audit(cache_dir=..., ipam_dir=..., state_dir=..., netns_dirs=..., ignore=...)``.

    Each call takes the "before" snapshot right away and returns an
    :class:`~integration.hostaudit.Audit`; call ``.assert_clean()`` on it at the end of
    the test (after DEL, before fixtures clean up, since that clean-up would hide the
    leak).  The CNI plugins' once-per-host iptables scaffolding is always ignored.
    A passing test that never checks an audit it started gets a warning.
    """
    audits: list[Audit] = []

    def start(
        cache_dir: str | os.PathLike[str] | None = None,
        ipam_dir: str | os.PathLike[str] | None = hostaudit.DEFAULT_IPAM_DIR,
        state_dir: str | os.PathLike[str] | None = None,
        netns_dirs: Iterable[str | os.PathLike[str]] = (),
        ignore: Iterable[Ignore] = (),
    ) -> Audit:
        audit = Audit(
            cache_dir=cache_dir,
            ipam_dir=ipam_dir,
            state_dir=state_dir,
            netns_dirs=netns_dirs,
            ignore=[hostaudit.cni_shared_state, *ignore],
        )
        audits.append(audit)
        return audit

    yield start
    reports: dict[str, Any] = request.node.stash.get(_REPORT_KEY, {})
    passed = "call" in reports and reports["call"].passed
    if passed and any(not a.checked for a in audits):
        warnings.warn(
            f"{request.node.nodeid} started a host_audit but never called assert_clean()",
            stacklevel=1,
        )
