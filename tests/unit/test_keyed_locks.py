"""KeyedLocks: one key at a time, keys in parallel, nothing kept for keys no one holds."""

from __future__ import annotations

import threading
import time

from cri_net.keyed_locks import KeyedLocks


def _spans(locks: KeyedLocks, keys: list[str]) -> list[tuple[str, float, float]]:
    spans: list[tuple[str, float, float]] = []
    start = threading.Barrier(len(keys))

    def work(key: str) -> None:
        start.wait()
        with locks.hold(key):
            t0 = time.monotonic()
            time.sleep(0.1)
            spans.append((key, t0, time.monotonic()))

    threads = [threading.Thread(target=work, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(spans, key=lambda s: s[1])


def test_same_key_is_serialised_and_other_keys_are_not() -> None:
    locks = KeyedLocks()
    same = _spans(locks, ["a", "a", "a"])
    assert all(prev[2] <= nxt[1] for prev, nxt in zip(same, same[1:])), same
    mixed = _spans(locks, ["a", "b", "c"])
    assert mixed[-1][1] < mixed[0][2], f"different keys waited for each other: {mixed}"
    assert len(locks) == 0


def test_the_lock_is_released_when_the_body_raises() -> None:
    locks = KeyedLocks()
    try:
        with locks.hold("k"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert len(locks) == 0
    with locks.hold("k"):  # not left locked
        pass
