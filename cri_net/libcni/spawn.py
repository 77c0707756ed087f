"""One child process with its three pipes: spawned, fed, drained and reaped on the calling
thread, bounded by a deadline and by output limits.

`os.posix_spawn` instead of `subprocess.Popen`: a plugin run is the hot path of every pod, and
Popen spends about as much CPU in Python (environment encoding, its error pipe, its file
objects) as a short plugin spends starting up. posix_spawn does the same in C (glibc uses
CLONE_VFORK, and reports an exec failure such as ETXTBSY as an OSError), with the same
guarantees the plugins had under Popen:

- its own process group (a timeout kills everything the plugin forked);
- SIGPIPE and SIGXFSZ back to their defaults (Python ignores them, and an ignored signal
  survives exec), and no blocked signals;
- no descriptor of ours but the three pipes: Python's descriptors are close-on-exec already,
  and the inheritable ones our own parent left us are made close-on-exec before the first
  spawn (one look at /proc/self/fd per process: a look per spawn cost 0.25 ms, as much as
  the rest of the spawn). Like Go's os/exec, a descriptor made inheritable later on purpose
  is passed on.
"""

from __future__ import annotations

import fcntl
import os
import select
import threading
import time
from collections.abc import Mapping

# the numbers from _signal: `signal` builds its enums at import, ~1 ms of a `cri-net cni` call
from _signal import SIGKILL, SIGPIPE, SIGXFSZ

_READ_CHUNK = 1 << 16
_DEFAULT_SIGNALS = frozenset({SIGPIPE, SIGXFSZ})


class Deadline(Exception):
    """The child outlived its deadline; it is still running (call `Child.kill`)."""


class TooMuchOutput(Exception):
    """The child's stdout passed the limit; it is still running (call `Child.kill`)."""


def _above_stdio(fd: int) -> int:
    """`fd` moved to 3 or above (a pipe may land on 0-2 when our own stdio is closed, and a
    dup2 onto the child's 0-2 would then clobber another pipe)."""
    if fd > 2:
        return fd
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    finally:
        os.close(fd)


def _pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC)
    return _above_stdio(r), _above_stdio(w)


def _inheritable_fds() -> list[int]:
    """Our descriptors above stdio that an exec would pass on."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    found = []
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:  # the listing's own fd, or closed meanwhile
                pass
    return found


_swept = False
_sweep_lock = threading.Lock()


def _close_inherited_on_exec() -> None:
    """Once per process: what our parent left inheritable becomes close-on-exec."""
    global _swept
    if _swept:
        return
    with _sweep_lock:
        if not _swept:
            for fd in _inheritable_fds():
                try:
                    os.set_inheritable(fd, False)
                except OSError:  # closed meanwhile
                    pass
            _swept = True


class Child:
    """A spawned program; `communicate` feeds it and collects its output, `kill` ends it."""

    def __init__(self, path: str, env: Mapping[str, str]) -> None:
        _close_inherited_on_exec()
        fds: list[int] = []
        try:
            in_r, in_w = _pipe()
            fds += (in_r, in_w)
            out_r, out_w = _pipe()
            fds += (out_r, out_w)
            err_r, err_w = _pipe()
            fds += (err_r, err_w)
            actions: list[tuple[int, ...]] = [(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
                                              (os.POSIX_SPAWN_DUP2, err_w, 2)]
            self.pid = os.posix_spawn(path, [path], env, file_actions=actions, setpgroup=0,
                                      setsigdef=_DEFAULT_SIGNALS, setsigmask=())
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        self.stdin: int | None = in_w
        self.stdout: int | None = out_r
        self.stderr: int | None = err_r
        self.returncode: int | None = None

    def _close(self, name: str) -> None:
        fd = getattr(self, name)
        if fd is not None:
            setattr(self, name, None)
            os.close(fd)

    def communicate(self, stdin: bytes, deadline: float | None, max_stdout: int,
                    max_stderr: int) -> tuple[bytes, bytes]:
        """Feed `stdin`, read stdout and stderr in one poll loop, then reap the child; returns
        (stdout, the first `max_stderr` bytes of stderr). Raises Deadline past `deadline`
        (monotonic) or TooMuchOutput past `max_stdout`, with the child still running."""
        assert self.stdin is not None and self.stdout is not None and self.stderr is not None
        out: list[bytes] = []
        err: list[bytes] = []
        out_len = err_len = 0
        in_fd, out_fd, err_fd = self.stdin, self.stdout, self.stderr
        view, sent = memoryview(stdin), 0
        poller = select.poll()  # poll: no extra fd per call, unlike epoll
        open_fds = {out_fd, err_fd}
        if stdin:
            os.set_blocking(in_fd, False)
            poller.register(in_fd, select.POLLOUT)
            open_fds.add(in_fd)
        else:
            self._close("stdin")
        poller.register(out_fd, select.POLLIN)
        poller.register(err_fd, select.POLLIN)
        while open_fds:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise Deadline()
            for fd, _ in poller.poll(None if remaining is None else remaining * 1000):
                if fd == in_fd:
                    try:
                        sent += os.write(fd, view[sent:])
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # the plugin does not read its config: its business
                        sent = len(view)
                    if sent >= len(view):
                        poller.unregister(fd)
                        open_fds.discard(fd)
                        self._close("stdin")
                    continue
                chunk = os.read(fd, _READ_CHUNK)
                if not chunk:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                elif fd == out_fd:
                    out_len += len(chunk)
                    if out_len > max_stdout:
                        raise TooMuchOutput()
                    out.append(chunk)
                elif err_len < max_stderr:
                    chunk = chunk[:max_stderr - err_len]
                    err_len += len(chunk)
                    err.append(chunk)
        self._close("stdout")
        self._close("stderr")
        self._wait(deadline)  # closed its pipes but may keep running
        return b"".join(out), b"".join(err)

    def _reaped(self, flags: int) -> bool:
        pid, status = os.waitpid(self.pid, flags)
        if pid == 0:
            return False
        self.returncode = os.waitstatus_to_exitcode(status)
        return True

    def _wait(self, deadline: float | None) -> None:
        if deadline is None:
            self._reaped(0)
            return
        try:
            pidfd = os.pidfd_open(self.pid)
        except OSError:  # no pidfd (old kernel): poll the exit status
            pidfd = -1
        try:
            delay = 0.0005
            while not self._reaped(os.WNOHANG):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Deadline()
                if pidfd >= 0:
                    select.select([pidfd], [], [], remaining)
                else:
                    time.sleep(min(delay, remaining))
                    delay = min(delay * 2, 0.05)
        finally:
            if pidfd >= 0:
                os.close(pidfd)

    def kill(self) -> None:
        """Kill the child and everything in its process group, then reap it. Its pipes are
        closed unread: whatever it (or an escaped grandchild) still writes is not ours to buffer."""
        if self.returncode is None:
            try:
                os.killpg(self.pid, SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.kill(self.pid, SIGKILL)  # left its group: still ours to end
            except ProcessLookupError:
                pass
        for name in ("stdin", "stdout", "stderr"):
            self._close(name)
        if self.returncode is None:
            self._reaped(0)
