"""Plugins a killed cri-net left running, found and stopped before its work is rolled back.

Every plugin runs in its own process group, so a SIGKILL of the process that ran it (a
crash, `make run` killed, a restart without systemd's cgroup kill) leaves it running. A
restarted server rolls back the interrupted pod with a DEL; a portmap ADD that finished
after that DEL left DNAT rules for a dead pod that nothing would ever remove. So each
plugin's environment names who ran it (`CRI_NET_CALLER=<pid>:<start time>`), and at start-up
the server kills the process group of every plugin whose caller no longer exists, and waits
for it to be gone, before any rollback runs. Only processes of our user in our PID namespace
are considered (a pod's processes live in their own), and a session leader (a daemon a plugin
started on purpose with setsid) is left alone.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time

from .log import kv
from .plugin.wire import CALLER_ENV

log = logging.getLogger("cri_net.orphans")

#: /proc/<pid>/environ read at most: a plugin's environment is a few KiB
MAX_ENVIRON = 256 * 1024
#: how long a killed group may take to disappear before start-up goes on regardless
KILL_WAIT_SECONDS = 5.0


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot): with the pid, one process for good."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read(4096)
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()  # after "(comm)", which may hold spaces
    return fields[19].decode() if len(fields) > 19 else None


def caller_tag(pid: int | None = None) -> str:
    """`<pid>:<start time>` of this process (or `pid`): the value of CALLER_ENV for its plugins."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_start_time(pid) or '?'}"


def _alive(tag: str) -> bool:
    pid_text, colon, start = tag.partition(":")
    if not (colon and pid_text.isdigit()):
        return True  # not a tag of ours (an older cri-net wrote "1"): never guess
    return _start_time(int(pid_text)) == start


def _caller_of(pid: int) -> str | None:
    try:
        fd = os.open(f"/proc/{pid}/environ", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, MAX_ENVIRON)
    except OSError:
        return None
    finally:
        os.close(fd)
    prefix = CALLER_ENV.encode() + b"="
    for entry in data.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix):].decode("ascii", "replace")
    return None


def _session_leader(pid: int) -> bool:
    try:
        return os.getsid(pid) == pid
    except OSError:
        return True  # gone: nothing to kill


def _process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _ours(pid: int, pid_ns: str, uid: int) -> bool:
    """Whether `pid` could be a plugin we ran: our user, our PID namespace. Anyone can put
    CRI_NET_CALLER in an environment (a pod author in their container spec, a user on the
    node), and such a process must never be killed for it."""
    try:
        return os.stat(f"/proc/{pid}").st_uid == uid and os.readlink(f"/proc/{pid}/ns/pid") == pid_ns
    except OSError:
        return False


def orphaned_plugin_groups() -> dict[int, str]:
    """Process group -> dead caller's tag, for every running plugin whose caller is gone."""
    me, uid = os.getpid(), os.geteuid()
    pid_ns = os.readlink("/proc/self/ns/pid")
    groups: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me or not _ours(int(name), pid_ns, uid):
            continue
        pid = int(name)
        tag = _caller_of(pid)
        if tag is None or _alive(tag):
            continue
        if _session_leader(pid):  # a daemon a plugin left on purpose (setsid), not a call in progress
            continue
        pgid = _process_group(pid)
        if pgid is not None and pgid not in (0, 1, os.getpgrp()):  # never our own group, nor init's
            groups[pgid] = tag
    return groups


def kill_orphaned_plugins(wait: float = KILL_WAIT_SECONDS) -> int:
    """SIGKILL every orphaned plugin's process group and wait (at most `wait` s) until none of
    them is left; returns how many groups were killed. Call it before rolling anything back."""
    groups = orphaned_plugin_groups()
    killed = len(groups)
    for pgid, tag in groups.items():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                kv(log, logging.WARNING, "cannot kill an orphaned plugin", pgid=pgid, error=str(exc))
            continue
        kv(log, logging.WARNING, "killed a plugin its caller left running", pgid=pgid, caller=tag)
    deadline = time.monotonic() + wait
    while groups and time.monotonic() < deadline:
        groups = {g: t for g, t in groups.items() if _group_alive(g)}
        if groups:
            time.sleep(0.02)
    if groups:
        kv(log, logging.WARNING, "orphaned plugins still running after SIGKILL", pgids=",".join(map(str, groups)))
    return killed


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    # a killed process stays until its parent reaps it; orphans are reaped by init at once,
    # but a zombie still answers kill(0): look for a member that is not one
    for name in os.listdir("/proc"):
        if name.isdigit() and _process_group(int(name)) == pgid and not _zombie(int(name)):
            return True
    return False


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read(4096)
    except OSError:
        return True
    rest = stat[stat.rfind(b")") + 2:]
    return rest[:1] in (b"Z", b"X")
