"""cri_net.orphans: plugins whose caller died are killed (their whole process group), every
other process is left alone: live callers' plugins, untagged processes, an old "1" tag."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from cri_net import orphans


def _dead_tag() -> str:
    proc = subprocess.Popen(["true"])
    tag = orphans.caller_tag(proc.pid)
    proc.wait()
    return tag


def _plugin(caller: str | None) -> subprocess.Popen[bytes]:
    """A stand-in plugin in its own process group with a child of its own (as iptables is)."""
    env = {k: v for k, v in os.environ.items() if k != orphans.CALLER_ENV}
    if caller is not None:
        env[orphans.CALLER_ENV] = caller
    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    return subprocess.Popen([sys.executable, "-c", code], env=env, process_group=0)


def _group_members(pgid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getpgid(int(name)) == pgid and not orphans._zombie(int(name)):
                    out.append(int(name))
            except OSError:
                pass
    return out


def test_caller_tag_names_this_process_for_good() -> None:
    pid, _, start = orphans.caller_tag().partition(":")
    assert int(pid) == os.getpid() and start.isdigit()
    assert orphans._alive(orphans.caller_tag())
    assert not orphans._alive(_dead_tag())
    assert not orphans._alive(f"{os.getpid()}:1")  # the same pid, another process (pid reuse)


def test_only_plugins_of_a_dead_caller_are_killed_with_their_children() -> None:
    dead, live, untagged, legacy = _plugin(_dead_tag()), _plugin(orphans.caller_tag()), _plugin(None), _plugin("1")
    procs = [dead, live, untagged, legacy]
    try:
        deadline = time.monotonic() + 10
        while len(_group_members(dead.pid)) < 2:  # the plugin and its child
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert orphans.kill_orphaned_plugins() == 1
        dead.wait(5)
        assert _group_members(dead.pid) == []  # the child went with it
        assert all(p.poll() is None for p in (live, untagged, legacy))
        assert orphans.kill_orphaned_plugins() == 0
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, 9)
            except OSError:
                pass
            p.wait()


def test_a_daemon_a_plugin_left_on_purpose_is_not_killed() -> None:
    """A process with a dead caller's tag that made itself a session leader (setsid, as a
    daemon does) is not a plugin call in progress: it is left alone."""
    env = dict(os.environ, **{orphans.CALLER_ENV: _dead_tag()})
    daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env, start_new_session=True)
    try:
        time.sleep(0.2)
        assert daemon.pid not in orphans.orphaned_plugin_groups()
        assert orphans.kill_orphaned_plugins() == 0 and daemon.poll() is None
    finally:
        daemon.kill()
        daemon.wait()


def test_a_process_in_another_pid_namespace_or_of_another_user_is_never_killed() -> None:
    """A pod author can set CRI_NET_CALLER in their container (its own PID namespace), and any
    node user in theirs: neither makes cri-net kill anything."""
    tag = f"{orphans.CALLER_ENV}={_dead_tag()}"
    clean = {k: v for k, v in os.environ.items() if k != orphans.CALLER_ENV}
    # a container's process: tagged inside a new PID namespace, its parent (the shim's place) not
    pod = subprocess.Popen(["unshare", "--pid", "--fork", "env", tag, "sleep", "60"], env=clean, process_group=0)
    user = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", tag, "sleep", "60"],
                            env=clean, process_group=0)
    try:
        deadline = time.monotonic() + 10
        while len(_group_members(pod.pid)) < 2 or not _group_members(user.pid):
            assert time.monotonic() < deadline, "the stand-ins did not start"
            time.sleep(0.02)
        assert orphans.kill_orphaned_plugins() == 0
        assert pod.poll() is None and user.poll() is None and len(_group_members(pod.pid)) == 2
    finally:
        for p in (pod, user):
            try:
                os.killpg(p.pid, 9)
            except OSError:
                pass
            p.wait()
