"""Network namespaces: whether a path is a live one, and the ones cri-net pins itself.

A live netns is a file on nsfs (the filesystem of /proc/self/ns/net): existence alone is not
enough, since a netns pinned by a bind mount can be unmounted while its file stays behind, and
plugins given such a path fail every DEL ("unknown FS magic"). `live_netns` is how every layer
tells a DEL that the netns is gone. A pod's own netns is made on a short-lived thread:
unshare(CLONE_NEWNET) moves only that thread into a new namespace, pinned by bind-mounting
/proc/thread-self/ns/net (no fork of a multi-threaded server, no `ip` subprocess);
`mounted()` lists the pins of this mount namespace in one read of mountinfo.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
import threading
from collections.abc import Callable
from typing import Any, TypeVar

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

T = TypeVar("T")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class NetnsError(OSError):
    """A namespace could not be created or removed; names the path."""


def _oserror(what: str, path: str) -> NetnsError:
    err = ctypes.get_errno()
    return NetnsError(err, f"{what} {path}: {os.strerror(err)}")


def create(path: str) -> str:
    """Create a new network namespace pinned at `path` (which must not exist yet); a
    NetnsError names what is in the way (the netns dir a FIFO or a symlink loop, a file there)."""
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    except OSError as exc:
        why = "is not a directory" if isinstance(exc, FileExistsError) else exc.strerror
        raise NetnsError(exc.errno, f"netns dir {directory} {why}") from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
    except OSError as exc:
        raise NetnsError(exc.errno, f"create netns file {path}: {exc.strerror}") from None
    os.close(fd)
    failure: list[NetnsError] = []

    def pin() -> None:
        if _libc.unshare(CLONE_NEWNET) != 0:
            failure.append(_oserror("unshare(CLONE_NEWNET) for", path))
            return
        if _libc.mount(b"/proc/thread-self/ns/net", path.encode(), None, MS_BIND, None) != 0:
            failure.append(_oserror("bind-mount netns on", path))

    thread = threading.Thread(target=pin, name="netns-create")
    thread.start()
    thread.join()
    if failure:
        _unlink(path)
        raise failure[0]
    return path


def run_in(path: str, fn: Callable[[], T]) -> T:
    """`fn()` run inside the netns at `path`, on a short-lived thread that setns() moves
    there (a thread's netns is its own), so the caller's threads never change namespace and
    nothing forks: a fork of a multi-threaded gRPC server can crash in the child. `fn`'s
    exception, or an OSError naming `path` when the netns cannot be entered, is raised here."""
    outcome: list[Any] = []

    def body() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO there must not block
        except OSError as exc:
            outcome.append(NetnsError(exc.errno, f"open netns {path}: {exc.strerror}"))
            return
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                outcome.append(_oserror("setns(CLONE_NEWNET) into", path))
                return
        finally:
            os.close(fd)
        try:
            outcome.append((fn(),))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=body, name="netns-run")
    thread.start()
    thread.join()
    [got] = outcome
    if isinstance(got, BaseException):
        raise got
    return got[0]


def mounted() -> set[str]:
    """Every pinned network namespace (nsfs mount point) of this mount namespace."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            return {line.split()[4] for line in fh if " nsfs " in line}
    except OSError:
        return set()


def is_mounted(path: str) -> bool:
    """True when `path` is a pinned network namespace (an nsfs mount)."""
    return path in mounted()


def remove(path: str) -> None:
    """Unmount and delete `path`; a missing or unmounted path is fine (idempotent).

    Never through a symlink (a link planted in the netns dir must not unmount its target,
    only the link goes), and a directory is refused, not guessed at."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            raise NetnsError(errno.EISDIR, f"remove netns {path}: is a directory, not a netns file")
    except FileNotFoundError:
        return
    if _libc.umount2(path.encode(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # not a mount point / already gone
            raise NetnsError(err, f"unmount netns {path}: {os.strerror(err)}")
    _unlink(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# ---- liveness ------------------------------------------------------------------------------

_NSFS_DEV: int | None = None


def _nsfs_dev() -> int:
    global _NSFS_DEV
    if _NSFS_DEV is None:
        _NSFS_DEV = os.stat("/proc/self/ns/net").st_dev
    return _NSFS_DEV


def is_netns(path: str) -> bool:
    """True if `path` is a namespace file (nsfs) that can be handed to a plugin."""
    if not path:
        return False
    try:
        return os.stat(path).st_dev == _nsfs_dev()
    except OSError:
        return False


def live_netns(path: str) -> str:
    """`path` if it is a live netns, else "" (how a DEL is told the netns is gone)."""
    return path if is_netns(path) else ""
