"""One lock per key (a pod, a container), existing only while someone holds or waits for it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class KeyedLocks:
    """Calls for one key are serialised, different keys run in parallel, and a server that
    sees millions of pods keeps no lock for the ones that are done."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str, timeout: float | None = None) -> Iterator[None]:
        """Hold `key`'s lock; with `timeout`, TimeoutError when it is not free in time."""
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            if not lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
                raise TimeoutError(f"{key} is busy (waited {timeout:.1f} s)")
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)
