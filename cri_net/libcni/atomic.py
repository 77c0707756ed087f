"""Atomic file writes: temp file in the same dir, fsync, rename, fsync the dir.

A crash or a full disk leaves either the old file or the new one, never half of one, and no
temp file behind.
"""

from __future__ import annotations

import errno
import os
import stat
import time

TEMP_PREFIX = ".tmp-"


def make_dirs(path: str, mode: int = 0o700) -> None:
    """Create `path` and every missing parent with `mode`, whatever the umask (like Go's
    os.MkdirAll(path, 0700); os.makedirs gives only the last one `mode`)."""
    missing = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            continue  # made meanwhile by someone else: not ours to change
        os.chmod(directory, mode)


def atomic_write(path: str, data: bytes, mode: int = 0o600, dir_mode: int = 0o700, sync_dir: bool = True,
                 sync: bool = True, replace: bool = True) -> None:
    """Write `data` to `path` atomically with file `mode`; creates the parent dir with `dir_mode`.

    `sync_dir=False` skips the directory fsync that makes the rename itself durable: readers
    still never see half a file, but a power cut may lose the newest version. `sync=False`
    skips every fsync: atomic for readers and against a killed process, not against a power cut.
    `replace=False` creates `path` only if nothing (not even a dangling symlink) is there, else
    FileExistsError: the finished temp file is hard-linked into place, never renamed over."""
    try:
        _atomic_write(path, data, mode, dir_mode, sync_dir, sync, replace)
    except OSError as exc:
        if exc.filename is None:  # a write or fsync: say which file (a full disk names no path)
            raise type(exc)(exc.errno, exc.strerror, path) from None
        raise


def _atomic_write(path: str, data: bytes, mode: int, dir_mode: int, sync_dir: bool, sync: bool,
                  replace: bool) -> None:
    directory = os.path.dirname(path) or "."
    make_dirs(directory, dir_mode)
    fd, tmp = _create_temp(directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        if replace:
            os.rename(tmp, path)
        else:
            os.link(tmp, path, follow_symlinks=False)
            os.unlink(tmp)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if not (sync and sync_dir):
        return
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _create_temp(directory: str) -> tuple[int, str]:
    """A new file, mode 0600, under an unused random name (what tempfile.mkstemp does; the
    tempfile module costs a short-lived `cri-net cni` ~3 ms of imports)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        path = os.path.join(directory, TEMP_PREFIX + os.urandom(6).hex())
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temp file name", directory)


def is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIX)


#: A temp file younger than this may be a write in progress by another process sharing the
#: dir (the CNI hook writes into the cache dir cri-net serve shares), so it is left alone.
STALE_TEMP_AGE = 300.0


def remove_stale_temps(directory: str, min_age: float = STALE_TEMP_AGE) -> int:
    """Delete temp files a crash left in `directory` that are older than `min_age` seconds."""
    removed = 0
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    now = time.time()
    for name in names:
        if is_temp(name):
            path = os.path.join(directory, name)
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < min_age:
                    continue  # never ours (we only make files), or possibly still being written
                os.unlink(path)
                removed += 1
            except OSError:  # gone meanwhile
                pass
    return removed
