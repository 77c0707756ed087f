"""Watching a conf dir: inotify where the kernel offers it, a cheap listing poll otherwise.

The callback runs on the watcher's own thread after changes settle (debounced), so an
editor's write-then-rename shows up as one reload.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import select
import threading
from typing import Callable

from ..log import kv

log = logging.getLogger("cri_net.operator")

_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_IN_EVENTS = 0x2 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800  # modify, close_write, moves, create, delete, self


def _entry_signature(entry: os.DirEntry[str]) -> tuple[str, int, int, int]:
    """(name, mtime, size, inode) of what the entry points at; a dangling or looping symlink
    (or an entry gone meanwhile) is its own lstat with size -1, never an exception."""
    try:
        st = entry.stat()
        return entry.name, int(st.st_mtime_ns), st.st_size, st.st_ino
    except OSError:
        pass
    try:
        st = entry.stat(follow_symlinks=False)
        return entry.name, int(st.st_mtime_ns), -1, st.st_ino
    except OSError:
        return entry.name, 0, -1, 0


def dir_signature(path: str) -> tuple[tuple[str, int, int, int], ...]:
    """What the poll compares: one broken entry changes only its own line, so a file
    appearing or changing beside it is still seen."""
    try:
        with os.scandir(path) as it:
            return tuple(sorted(_entry_signature(e) for e in it))
    except OSError:
        return ()


class ConfDirWatcher:
    """Calls `on_change()` when files in `path` change; `stop()` ends the thread."""

    def __init__(self, path: str, on_change: Callable[[], None], poll_interval: float = 5.0,
                 debounce: float = 0.1) -> None:
        self.path, self.on_change = path, on_change
        self.poll_interval, self.debounce = poll_interval, debounce
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"confwatch:{path}", daemon=True)
        self._libc = None
        lib = ctypes.util.find_library("c")
        if lib:
            self._libc = ctypes.CDLL(lib, use_errno=True)

    def start(self) -> "ConfDirWatcher":
        """Take the baseline now, so a change made right after start() is not missed."""
        self._fd = self._inotify_fd()
        self._signature = dir_signature(self.path)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        os.write(self._wake_w, b"x")  # end a select() that is waiting for inotify
        self._thread.join(timeout=5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _inotify_fd(self) -> int | None:
        if self._libc is None or not os.path.isdir(self.path):
            return None
        fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return None
        if self._libc.inotify_add_watch(fd, self.path.encode(), _IN_EVENTS) < 0:
            os.close(fd)
            return None
        return fd

    def _run(self) -> None:
        signature, fd = self._signature, self._fd
        kv(log, logging.DEBUG, "watching conf dir", conf_dir=self.path, mode="inotify" if fd is not None else "poll")
        try:
            while not self._stop.is_set():
                event = False
                if fd is not None:
                    ready, _, _ = select.select([fd, self._wake_r], [], [], self.poll_interval)
                    if self._stop.is_set():
                        break
                    if fd in ready:
                        event = True
                        self._drain(fd)
                        self._stop.wait(self.debounce)
                        self._drain(fd)
                else:
                    self._stop.wait(self.poll_interval)
                    if os.path.isdir(self.path):
                        fd = self._inotify_fd()  # the dir appeared: switch to events
                # an event always reloads (a same-size rewrite may keep its mtime); the
                # listing signature catches what events miss (dir replaced, no inotify)
                new = dir_signature(self.path)
                if event or new != signature:
                    signature = new
                    try:
                        self.on_change()
                    except Exception:  # the watcher must outlive a bad reload
                        log.exception("conf dir reload failed", extra={"fields": {"conf_dir": self.path}})
        finally:
            if fd is not None:
                os.close(fd)

    @staticmethod
    def _drain(fd: int) -> None:
        try:
            while os.read(fd, 65536):
                pass
        except BlockingIOError:
            pass
