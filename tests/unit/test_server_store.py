"""SandboxStore: one JSON file per pod, written atomically 0600 in a 0700 dir, loaded whole."""

from __future__ import annotations

import os
import stat

import pytest

from cri_net.network.models import NetworkApiConf
from cri_net.server.store import Plane, SandboxMetadata, SandboxRecord, SandboxStore


def record(sid: str, name: str = "p", state: str = "READY", **kw) -> SandboxRecord:
    return SandboxRecord(id=sid, metadata=SandboxMetadata(name=name, uid=f"uid-{name}", namespace="ns", attempt=1),
                         state=state, created_at=1_700_000_000_000_000_000, **kw)


ID_A = "a" * 64
ID_B = "ab" + "0" * 62
ID_C = "c" * 64


def test_put_get_delete_round_trip(tmp_path):
    store = SandboxStore(str(tmp_path / "state"))
    rec = record(ID_A, labels={"app": "x"}, annotations={"k": "v"}, runtime_handler="runc",
                 netns_path="/run/cri-net/netns/" + ID_A,
                 network=NetworkApiConf(pod_id=ID_A, name="p", namespace="ns", netns_path="/x",
                                        annotations={"k": "v"}, port_mappings=[{"host_port": 80}]),
                 planes=[Plane(network="net1", interface="eth0")])
    assert store.get(ID_A) is None
    store.put(rec)
    assert store.get(ID_A) == rec
    assert [r.id for r in store.all()] == [ID_A]
    path = tmp_path / "state" / "sandboxes" / f"{ID_A}.json"
    assert path.is_file()

    fresh = SandboxStore(str(tmp_path / "state"))
    assert fresh.all() == []  # nothing until load()
    assert fresh.load() == []
    assert fresh.get(ID_A) == rec  # every field survives the disk round trip

    store.delete(ID_A)
    assert store.get(ID_A) is None and store.all() == []
    assert not path.exists()
    store.delete(ID_A)  # idempotent
    assert SandboxStore(str(tmp_path / "state")).load() == []


def test_put_overwrites_state(tmp_path):
    store = SandboxStore(str(tmp_path))
    rec = record(ID_A, state="CREATING")
    store.put(rec)
    rec.state = "READY"
    store.put(rec)
    fresh = SandboxStore(str(tmp_path))
    fresh.load()
    assert fresh.get(ID_A).state == "READY"
    assert sorted(os.listdir(tmp_path / "sandboxes")) == [f"{ID_A}.json"]  # no temp files left


def test_resolve(tmp_path):
    store = SandboxStore(str(tmp_path))
    for sid in (ID_A, ID_B, ID_C):
        store.put(record(sid))
    assert store.resolve(ID_A) == ID_A  # exact id, even though it is also a prefix of nothing else
    assert store.resolve("c") == ID_C
    assert store.resolve("ab") == ID_B
    assert store.resolve("aa") == ID_A
    assert store.resolve("d") is None
    assert store.resolve(ID_A + "0") is None
    with pytest.raises(LookupError, match="ambiguous"):
        store.resolve("a")


def test_files_are_0600_in_a_0700_dir(tmp_path):
    old = os.umask(0o022)
    try:
        store = SandboxStore(str(tmp_path / "state"))
        store.put(record(ID_A))
    finally:
        os.umask(old)
    d = tmp_path / "state" / "sandboxes"
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / f"{ID_A}.json").stat().st_mode) == 0o600


def test_load_creates_dir_0700(tmp_path):
    store = SandboxStore(str(tmp_path / "state"))
    assert store.load() == []
    assert stat.S_IMODE((tmp_path / "state" / "sandboxes").stat().st_mode) == 0o700


@pytest.mark.parametrize("content", [b"{not json", b"", b'{"id": "x"}', b"[]", b'{"id": 5, "metadata": null}'])
def test_corrupt_record_is_reported_and_others_load(tmp_path, content):
    store = SandboxStore(str(tmp_path))
    store.put(record(ID_A, name="a"))
    store.put(record(ID_C, name="c"))
    bad = tmp_path / "sandboxes" / ("b" * 64 + ".json")
    bad.write_bytes(content)
    (tmp_path / "sandboxes" / "README.txt").write_text("not a record")  # ignored: not .json

    fresh = SandboxStore(str(tmp_path))
    problems = fresh.load()
    assert len(problems) == 1 and str(bad) in problems[0]
    assert sorted(r.id for r in fresh.all()) == [ID_A, ID_C]
    assert bad.read_bytes() == content  # kept aside, not lost


def test_unreadable_record_is_reported(tmp_path):
    store = SandboxStore(str(tmp_path))
    store.put(record(ID_A))
    (tmp_path / "sandboxes" / ("b" * 64 + ".json")).mkdir()  # open() fails with IsADirectoryError
    fresh = SandboxStore(str(tmp_path))
    problems = fresh.load()
    assert len(problems) == 1 and "b" * 64 in problems[0]
    assert [r.id for r in fresh.all()] == [ID_A]


def test_a_record_over_the_read_limit_is_never_written(tmp_path):
    """What load() would refuse as too large must be refused at put(): the old file stays."""
    from cri_net.server.store import MAX_RECORD_SIZE

    store = SandboxStore(str(tmp_path))
    store.put(record(ID_A, state="CREATING"))
    path = tmp_path / "sandboxes" / f"{ID_A}.json"
    before = path.read_bytes()
    huge = record(ID_A, labels={"l": "x" * MAX_RECORD_SIZE})
    with pytest.raises(OSError, match="over the read limit") as info:
        store.put(huge)
    assert info.value.filename == str(path)
    assert path.read_bytes() == before and store.get(ID_A).state == "CREATING"
    assert sorted(os.listdir(tmp_path / "sandboxes")) == [f"{ID_A}.json"]  # no temp file either


@pytest.mark.parametrize("content, reason", [
    (b'{"id": 1}', "id: Input should be a valid string (and 2 more)"),
    (b"", "Invalid JSON"),
])
def test_an_unreadable_record_says_why_once(tmp_path, content, reason):
    bad = tmp_path / "sandboxes" / ("b" * 64 + ".json")
    bad.parent.mkdir(parents=True)
    bad.write_bytes(content)
    fresh = SandboxStore(str(tmp_path))
    [problem] = fresh.load()
    assert problem.count(str(bad)) == 1 and reason in problem, problem
    fifo = tmp_path / "sandboxes" / ("c" * 64 + ".json")
    os.mkfifo(fifo)
    problems = SandboxStore(str(tmp_path)).load()
    [fifo_problem] = [p for p in problems if str(fifo) in p]
    assert fifo_problem.count(str(fifo)) == 1 and "FIFO" in fifo_problem, fifo_problem
