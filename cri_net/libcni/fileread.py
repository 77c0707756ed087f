"""Bounded reads of files cri-net did not write itself (configs, cache and state records).

A FIFO blocks `open()` until a writer comes, `/dev/zero` never ends, a sparse file can claim
terabytes, and a symlink can point anywhere (or at itself). Every such file must cost one
clear error naming it, never a hang, an unbounded buffer or an exception nobody expected.
Dependency-free (stdlib only), so libcni stays standalone and `cri_net.fsutil` reuses it.
"""

from __future__ import annotations

import errno
import os
import stat

#: Read block size; a file within its bound is read in one or two calls.
_CHUNK = 1 << 16


class FileReadError(OSError):
    """A file that cannot be used: `path` and a short `reason` (str() names both)."""

    def __init__(self, path: str, reason: str, err: int = 0) -> None:
        super().__init__(err, reason, path)
        self.path, self.reason = path, reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words for an error message."""
    for test, word in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return word
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def os_reason(exc: OSError, follow_symlinks: bool = True) -> str:
    """An OSError in words (ELOOP is a symlink loop, or a refused symlink without following)."""
    if exc.errno == errno.ELOOP:
        return "a symlink loop" if follow_symlinks else "a symlink (not followed here)"
    if exc.errno == errno.ENOENT:
        return "does not exist (or is a dangling symlink)"
    return exc.strerror or str(exc)


def check_regular(path: str, follow_symlinks: bool = True) -> os.stat_result:
    """stat `path` and refuse anything that is not a regular file, without opening it (opening a
    device can have side effects, opening a FIFO blocks)."""
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError as exc:
        raise FileReadError(path, os_reason(exc, follow_symlinks), exc.errno or 0) from None
    if not stat.S_ISREG(st.st_mode):
        what = file_kind(st.st_mode)
        if what == "a symlink":
            what = "a symlink (not followed here)"
        raise FileReadError(path, f"is {what}, not a regular file")
    return st


def read_regular(path: str, limit: int, follow_symlinks: bool = True) -> bytes:
    """At most `limit` bytes of the regular file `path`, or FileReadError naming it.

    stat first (no open of a FIFO or device), then open with O_NONBLOCK (a FIFO swapped in
    meanwhile cannot block) and O_NOFOLLOW unless `follow_symlinks`, fstat that it is still a
    regular file, and read at most `limit` + 1 bytes: past `limit` is an error, whatever the
    file's size claims (procfs and friends report 0)."""
    check_regular(path, follow_symlinks)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise FileReadError(path, os_reason(exc, follow_symlinks), exc.errno or 0) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileReadError(path, f"is {file_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise FileReadError(path, f"is larger than the limit of {limit} bytes ({st.st_size} bytes)", errno.EFBIG)
        chunks, total = [], 0
        while total <= limit:
            try:
                chunk = os.read(fd, min(limit + 1 - total, max(_CHUNK, st.st_size + 1)))
            except OSError as exc:
                raise FileReadError(path, f"read failed: {os_reason(exc)}", exc.errno or 0) from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise FileReadError(path, f"is larger than the limit of {limit} bytes", errno.EFBIG)
        return b"".join(chunks)
    finally:
        os.close(fd)
