"""The sandbox store: one JSON file per pod in `<state_dir>/sandboxes/`, written atomically
(0600), loaded whole at start-up so a restarted server knows every pod."""

from __future__ import annotations

import errno
import logging
import os
import threading
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from ..fsutil import FileReadError, atomic_write, make_dirs, read_regular, remove_stale_temps
from ..log import kv
from ..network.models import ExtraNet, NetworkApiConf

log = logging.getLogger("cri_net.server")

SandboxState = Literal["CREATING", "READY", "NOTREADY"]
#: A record larger than this is refused unread (a pod's record is a few KiB).
MAX_RECORD_SIZE = 4 << 20


class SandboxMetadata(BaseModel):
    name: str
    uid: str
    namespace: str
    attempt: int = 0


class Plane(BaseModel):
    """One attached network plane, enough to find its cached result."""

    network: str
    interface: str
    #: the namespace an extra plane was selected in ("" for the default network, and in
    #: records written before it was kept: the pod's namespace is reported then)
    namespace: str = ""


class SandboxRecord(BaseModel):
    """What cri-net keeps about a pod. `network` is the request the planes were built from."""

    id: str
    metadata: SandboxMetadata
    state: SandboxState = "CREATING"
    created_at: int
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    runtime_handler: str = ""
    host_network: bool = False
    netns_path: str = ""
    network: NetworkApiConf | None = None
    planes: list[Plane] = Field(default_factory=list)
    detached: bool = False  # a stop detached every plane: remove need not DEL again


class SandboxStore:
    """In-memory index over the on-disk records; every change is written through."""

    def __init__(self, state_dir: str) -> None:
        self.dir = os.path.join(state_dir, "sandboxes")
        self._records: dict[str, SandboxRecord] = {}
        #: id (file name) -> "file: why" of records that could not be read: their pods are
        #: in an unknown state, so nothing of theirs (netns, attachments, file) is touched
        self.unreadable: dict[str, str] = {}
        self._lock = threading.Lock()

    def load(self) -> list[str]:
        """Read every record; returns the problems (unreadable files are kept aside, not lost)."""
        problems = []
        self.unreadable = {}
        make_dirs(self.dir, 0o700)
        if removed := remove_stale_temps(self.dir, min_age=0):  # our own dir, read before any write
            kv(log, logging.WARNING, "removed temp files left by a crash", dir=self.dir, count=removed)
        for name in sorted(os.listdir(self.dir)):
            if not name.endswith(".json"):
                continue
            path = os.path.join(self.dir, name)
            try:
                # only regular files we wrote: a FIFO must not hang start-up, nor /dev/zero fill it
                record = SandboxRecord.model_validate_json(read_regular(path, MAX_RECORD_SIZE, follow_symlinks=False))
                if record.id != name[:-len(".json")]:
                    raise ValueError(f"its id {record.id[:80]!r} is not its file name")
            except (OSError, ValueError) as exc:  # ValidationError is a ValueError
                reason = _why_unreadable(exc)
                problems.append(f"{path}: {reason}")
                self.unreadable[name[:-len(".json")]] = f"{path}: {reason}"
                kv(log, logging.ERROR, "unreadable sandbox record; its pod's netns and attachments are left alone",
                   file=path, error=reason)
                continue
            self._records[record.id] = record
        return problems

    def put(self, record: SandboxRecord, durable: bool = True) -> None:
        """`durable=False`: atomic, survives a killed server, not a power cut (which also
        takes every netns, so a state only about live network can skip the fsyncs)."""
        path = os.path.join(self.dir, f"{record.id}.json")
        data = record.model_dump_json().encode()
        if len(data) > MAX_RECORD_SIZE:  # what could not be read back must not be written
            raise OSError(errno.EFBIG, f"sandbox record would be {len(data)} bytes, over the read limit of "
                                       f"{MAX_RECORD_SIZE}", path)
        atomic_write(path, data, 0o600, 0o700, sync=durable)
        with self._lock:
            self._records[record.id] = record

    def delete(self, sandbox_id: str) -> None:
        try:
            os.unlink(os.path.join(self.dir, f"{sandbox_id}.json"))
        except FileNotFoundError:
            pass
        with self._lock:
            self._records.pop(sandbox_id, None)

    def get(self, sandbox_id: str) -> SandboxRecord | None:
        return self._records.get(sandbox_id)

    def all(self) -> list[SandboxRecord]:
        with self._lock:
            return list(self._records.values())

    def resolve(self, prefix: str) -> str | None:
        """The full id for a unique prefix; None when unknown; LookupError when ambiguous."""
        if prefix in self._records:
            return prefix
        with self._lock:
            matches = [i for i in self._records if i.startswith(prefix)]
        if len(matches) > 1:
            shown = repr(prefix) if len(prefix) <= 80 else repr(prefix[:76]) + "..."
            raise LookupError(f"sandbox id prefix {shown} is ambiguous ({len(matches)} matches)")
        return matches[0] if matches else None


__all__ = ["ExtraNet", "Plane", "SandboxMetadata", "SandboxRecord", "SandboxState", "SandboxStore"]


def _why_unreadable(exc: Exception) -> str:
    """One line saying what is wrong with a record file (its path is said by the caller)."""
    if isinstance(exc, FileReadError):
        return exc.reason
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "the document"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"{where}: {first.get('msg', 'invalid')}{more}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
