"""SandboxManager: the pod lifecycle behind the CRI RPCs, independent of protobuf.

Crash safety: a record is written as CREATING before anything touches the host and flipped to
READY once every plane is attached. A server killed in between finds the CREATING record on
restart and rolls it back completely, so an interrupted pod is either whole or gone.

Ids are derived from (namespace, name, uid, attempt), so a retried RunPodSandbox finds the
pod it already made instead of making a second netns. The derivation is injective (a hash of
the JSON encoding); pods made by versions that hashed NUL-joined fields keep their old ids
(records store them) and are still found, by their recorded identity.

State that cannot be read is never a reason to tear anything down: a pod whose record is
unreadable keeps its netns and attachments, and is reported (Status, logs) instead.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import json
import logging
import os
import time
from dataclasses import dataclass, field
from contextlib import AbstractContextManager
from collections.abc import Callable
from typing import Any

from ..config import Settings
from ..fsutil import atomic_write, read_regular
from ..keyed_locks import KeyedLocks
from ..log import kv
from ..network import NetworkApiConf, NetworkApiResult, NetworkModule
from ..network.errors import AttachError, InvalidRequestError, NetworkApiError
from ..network import capabilities
from ..network.models import Attachment
from ..network.results import network_status, split_ips
from .. import netns, orphans
from . import limits
from .store import Plane, SandboxMetadata, SandboxRecord, SandboxStore

log = logging.getLogger("cri_net.server")
#: The runtime config file (the pod CIDR) is a few bytes; anything past this is not ours.
MAX_RUNTIME_FILE_SIZE = 64 << 10


def read_pod_cidr(path: str) -> str | None:
    """The pod CIDR UpdateRuntimeConfig saved in `path`; a file that cannot be used (not a
    regular file, too big, not JSON) is reported and ignored: kubelet sends the CIDR again."""
    try:
        doc = json.loads(read_regular(path, MAX_RUNTIME_FILE_SIZE, follow_symlinks=False))
        cidr = doc.get("pod_cidr") if isinstance(doc, dict) else None
        if cidr is not None and not isinstance(cidr, str):
            raise ValueError("pod_cidr is not a string")
        return cidr or None
    except (OSError, ValueError, RecursionError) as exc:
        if getattr(exc, "errno", None) != errno.ENOENT:
            kv(log, logging.WARNING, "ignoring unusable runtime config file", file=path, error=str(exc))
        return None


class SandboxNotFoundError(NetworkApiError):
    pass


class SandboxExistsError(NetworkApiError):
    pass


class CallAbandonedError(NetworkApiError):
    """The RPC ended (and its caller was answered) before the pod was ready: rolled back."""


class SandboxUnreadableError(NetworkApiError):
    """The pod's record exists but cannot be read: its state is unknown, so it is left alone."""


@dataclass
class PodRequest:
    """The parts of RunPodSandboxRequest that cri-net uses."""

    name: str
    namespace: str
    uid: str
    attempt: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    port_mappings: list[dict[str, Any]] = field(default_factory=list)
    dns: dict[str, list[str]] | None = None
    host_network: bool = False
    runtime_handler: str = ""


@dataclass
class SandboxView:
    """A record plus its planes' results from the CNI cache (what PodSandboxStatus reports)."""

    record: SandboxRecord
    results: list[NetworkApiResult]
    ip: str
    additional_ips: list[str]
    #: Multus-shaped status of every plane, default network first (network/results.py)
    network_status: list[dict[str, Any]] = field(default_factory=list)


def _short(value: str, limit: int = 80) -> str:
    """repr() of a client-supplied id, cut so an error never echoes a huge one back."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def sandbox_id(namespace: str, name: str, uid: str, attempt: int) -> str:
    """The pod's id: SHA-256 of its identity as a JSON array (injective, unlike a join)."""
    return hashlib.sha256(json.dumps([namespace, name, uid, attempt]).encode()).hexdigest()


def legacy_sandbox_id(namespace: str, name: str, uid: str, attempt: int) -> str:
    """The id versions before the JSON encoding gave (NUL-joined: not injective). Only used to
    find those versions' pods, and only when the record's identity matches exactly."""
    return hashlib.sha256(f"{namespace}\0{name}\0{uid}\0{attempt}".encode()).hexdigest()


class SandboxManager:
    def __init__(self, settings: Settings, module: NetworkModule) -> None:
        self.settings = settings
        self.module = module
        self.adaptor = module.adaptor("cri")
        self.store = SandboxStore(settings.state_dir)
        self._runtime_file = os.path.join(settings.state_dir, "runtime.json")
        self.pod_cidr: str | None = self._load_pod_cidr()
        self._locks = KeyedLocks()
        self._views: dict[str, SandboxView] = {}

    # ---- helpers -----------------------------------------------------------------------
    def _pod_lock(self, sid: str) -> AbstractContextManager[None]:
        """Requests for one pod are serialised; different pods run in parallel."""
        return self._locks.hold(sid)

    def resolve(self, id_or_prefix: str) -> str | None:
        if not id_or_prefix:
            raise InvalidRequestError("pod_sandbox_id", "required")
        try:
            return self.store.resolve(id_or_prefix)
        except LookupError as exc:
            raise InvalidRequestError("pod_sandbox_id", str(exc)) from None

    def _load_pod_cidr(self) -> str | None:
        return read_pod_cidr(self._runtime_file)

    def update_pod_cidr(self, cidr: str) -> None:
        """UpdateRuntimeConfig: the default ipRanges of pods created from now on."""
        key = "runtime_config.network_config.pod_cidr"
        for i, text in enumerate(filter(None, (c.strip() for c in cidr.split(",")))):
            try:
                if "/" not in text or "%" in text:
                    raise ValueError("expected address/prefix-length")
                net = ipaddress.ip_network(text, strict=False)
            except ValueError as exc:
                raise InvalidRequestError(key, f"entry {i} {text!r} is not a CIDR: {exc}") from None
            why = capabilities.special_purpose(net)
            if why is not None:
                raise InvalidRequestError(key, f"{net} {why}: never a pod range")
        atomic_write(self._runtime_file, json.dumps({"pod_cidr": cidr}).encode(), 0o600, 0o700)
        self.pod_cidr = cidr or None
        kv(log, logging.INFO, "pod CIDR updated", pod_cidr=cidr)

    # ---- lifecycle ---------------------------------------------------------------------
    def _validate_identity(self, req: PodRequest) -> None:
        """The same checks for every network mode (host-network pods used to skip them)."""
        for key in ("name", "namespace", "uid"):
            if not getattr(req, key):
                raise InvalidRequestError(f"config.metadata.{key}", "required")
        try:
            capabilities.validate_pod_identity(req.namespace, req.name, req.uid)
        except capabilities.AnnotationError as exc:
            raise InvalidRequestError(f"config.{exc.key}", exc.reason) from None
        limits.check_pod_metadata(req.labels, req.annotations, req.runtime_handler)
        limits.check_pod_network_config(req.port_mappings, req.dns)

    def _existing(self, req: PodRequest, sid: str) -> tuple[str, SandboxRecord | None]:
        """The pod's id and record, if it exists: under its id, or under the id an older
        version derived (only when that record's identity is exactly this pod's)."""
        identity = SandboxMetadata(name=req.name, uid=req.uid, namespace=req.namespace, attempt=req.attempt)
        for candidate in (sid, legacy_sandbox_id(req.namespace, req.name, req.uid, req.attempt)):
            if candidate in self.store.unreadable:
                raise SandboxExistsError(f"pod sandbox {candidate} of {req.namespace}/{req.name}: its record is "
                                         f"unreadable ({self.store.unreadable[candidate]}); it is left alone: "
                                         "repair or remove the file, then restart cri-net")
            record = self.store.get(candidate)
            if record is not None and record.metadata == identity:
                return candidate, record
            if record is not None and candidate == sid:
                raise SandboxExistsError(f"pod sandbox id {sid} is taken by pod {record.metadata.namespace}/"
                                         f"{record.metadata.name} (uid {_short(record.metadata.uid)})")
        return sid, None

    def run(self, req: PodRequest, still_wanted: Callable[[], bool] | None = None) -> str:
        """Create the pod's netns and attach its networks; its id. `still_wanted` (the RPC's
        `is_active`) is asked once the network is up: a caller that gave up meanwhile (its
        deadline, a disconnect, the server's own shutdown after the grace) was told the call
        failed, so the pod is rolled back instead of left READY for nobody."""
        self._validate_identity(req)
        sid = sandbox_id(req.namespace, req.name, req.uid, req.attempt)
        pod = f"{req.namespace}/{req.name}"
        with self._pod_lock(sid):
            existing_id, existing = self._existing(req, sid)
            if existing is not None:
                if existing.state == "READY":
                    return existing_id
                raise SandboxExistsError(f"pod sandbox {existing_id} for {pod} attempt {req.attempt} exists and is "
                                         f"{existing.state}; remove it first")
            netns_path = "" if req.host_network else os.path.join(self.settings.netns_dir, sid)
            conf = NetworkApiConf(name=req.name, namespace=req.namespace, pod_id=sid, pod_uid=req.uid,
                                  netns_path=netns_path, annotations=req.annotations, port_mappings=req.port_mappings,
                                  pod_cidr=self.pod_cidr, dns=req.dns)
            if not req.host_network:
                self.adaptor.plan(conf)  # validates the whole request before anything is created
            record = SandboxRecord(id=sid, metadata=SandboxMetadata(name=req.name, uid=req.uid, namespace=req.namespace,
                                                                    attempt=req.attempt),
                                   created_at=time.time_ns(), labels=req.labels, annotations=req.annotations,
                                   runtime_handler=req.runtime_handler, host_network=req.host_network,
                                   netns_path=netns_path, network=None if req.host_network else conf)
            self.store.put(record)
            try:
                if not req.host_network:
                    try:
                        netns.create(netns_path)
                    except OSError:
                        record.detached = True  # nothing attached yet: the rollback runs no DEL
                        raise
                    results = self.adaptor.attach(conf)
                    record.planes = [Plane(network=r.name, interface=r.interface, namespace=r.namespace)
                                     for r in results]
                if still_wanted is not None and not still_wanted():
                    raise CallAbandonedError(f"pod sandbox {sid} of {pod}: the caller gave up on RunPodSandbox "
                                             "(deadline, disconnect or shutdown) before its network was up")
                record.state = "READY"
                # not fsynced: a power cut takes the netns too, and a lost READY reads back as
                # CREATING, which start-up rolls back; the CREATING record before it is durable
                self.store.put(record, durable=False)
            except BaseException as exc:
                kv(log, logging.WARNING, "RunPodSandbox failed; rolling back", pod=pod, pod_id=sid, error=str(exc))
                if isinstance(exc, AttachError) and not exc.rollback_failures:
                    record.detached = True  # the adaptor already DEL'd every plane: no second round
                self._teardown(record)
                raise
        kv(log, logging.INFO, "pod sandbox ready", pod=pod, pod_id=sid, netns=netns_path)
        return sid

    def _detach(self, record: SandboxRecord) -> None:
        if record.network is not None and not record.detached:
            self.adaptor.detach(record.network)

    def _mark_stopping(self, record: SandboxRecord) -> None:
        """Write ahead: a pod is NOTREADY on disk before its first DEL, so a server killed
        mid-detach never comes back reporting a READY pod whose network is half gone (or an
        IP that host-local already gave back). `detached` stays False, so a retry DELs again."""
        self._views.pop(record.id, None)
        if record.state == "READY":
            record.state = "NOTREADY"
            try:
                self.store.put(record, durable=False)
            except OSError as exc:  # a full or read-only state dir must not keep the network attached
                kv(log, logging.WARNING, "could not record the pod as stopping; detaching anyway", pod_id=record.id,
                   error=str(exc))

    def _teardown(self, record: SandboxRecord) -> None:
        """Detach, drop the netns and the record; failures are logged (GC retries DEL)."""
        self._mark_stopping(record)
        try:
            self._detach(record)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the netns and record still go; GC retries DEL
            kv(log, logging.ERROR, "detach during teardown failed; GC will retry", pod_id=record.id, error=str(exc))
        if record.netns_path:
            try:
                netns.remove(record.netns_path)
            except OSError as exc:
                kv(log, logging.ERROR, "netns removal failed", pod_id=record.id, netns=record.netns_path,
                   error=str(exc))
        self.store.delete(record.id)

    def stop(self, id_or_prefix: str) -> None:
        """Detach every plane (cached config), keep the record NOTREADY and the netns; idempotent."""
        sid = self.resolve(id_or_prefix)
        if sid is None:
            self._refuse_unreadable(id_or_prefix, "stopped")
            return
        with self._pod_lock(sid):
            record = self.store.get(sid)
            if record is None:
                return
            self._mark_stopping(record)
            if not record.detached:
                self._detach(record)
                record.detached = True  # only once every plane is gone: a failed stop is retried
                try:
                    self.store.put(record, durable=False)  # lost in a power cut: the retried DEL is idempotent
                except OSError as exc:  # a full state dir: the network is gone all the same, say so
                    kv(log, logging.WARNING, "pod detached, but its record could not be updated; a restart DELs "
                       "again (idempotent)", pod_id=sid, error=str(exc))
        kv(log, logging.INFO, "pod sandbox stopped", pod=f"{record.metadata.namespace}/{record.metadata.name}",
           pod_id=sid)

    def remove(self, id_or_prefix: str) -> None:
        """Stop if needed, then delete the netns and the record; idempotent."""
        sid = self.resolve(id_or_prefix)
        if sid is None:
            self._refuse_unreadable(id_or_prefix, "removed")
            return
        with self._pod_lock(sid):
            record = self.store.get(sid)
            if record is None:
                return
            self._teardown(record)
        kv(log, logging.INFO, "pod sandbox removed", pod=f"{record.metadata.namespace}/{record.metadata.name}",
           pod_id=sid)

    def _refuse_unreadable(self, sandbox_id: str, what: str) -> None:
        """A pod whose record cannot be read is not "not found": its netns and attachments may
        be live, so an OK for stop or remove would be a lie that leaks them."""
        if sandbox_id in self.store.unreadable:
            raise SandboxUnreadableError(f"pod sandbox {sandbox_id}: state unknown, record unreadable "
                                         f"({self.store.unreadable[sandbox_id]}); it cannot be {what}: its network "
                                         "is left alone (repair or remove the file, then restart cri-net)")

    def view(self, record: SandboxRecord) -> SandboxView:
        """The pod's planes from the CNI cache: no plugin runs. A READY pod's planes do not
        change, so its view is kept in memory until the pod's state changes."""
        cached = self._views.get(record.id)
        if cached is not None and cached.record is record and record.state == "READY":
            return cached
        view = self._build_view(record)
        if record.state == "READY":  # a CREATING record turns READY in place: never keep its empty view
            self._views[record.id] = view
        return view

    def _build_view(self, record: SandboxRecord) -> SandboxView:
        default_if = record.network.default_interface if record.network else "eth0"
        results = self.adaptor.cached_results(record.id, [(p.network, p.interface) for p in record.planes],
                                              default_if) if record.state == "READY" else []
        ip, rest = split_ips(results, default_if, self.settings.ip_pref)
        status = network_status(results, default_if, {p.interface: p.namespace for p in record.planes},
                                record.metadata.namespace)
        return SandboxView(record, results, ip, rest, status)

    def status(self, id_or_prefix: str) -> SandboxView:
        sid = self.resolve(id_or_prefix)
        record = self.store.get(sid) if sid else None
        if record is None:
            self._refuse_unreadable(id_or_prefix, "reported")
            raise SandboxNotFoundError(f"pod sandbox {_short(id_or_prefix)} not found")
        return self.view(record)

    def list(self, id_prefix: str = "", state: str | None = None,
             labels: dict[str, str] | None = None) -> list[SandboxRecord]:
        out = []
        for record in self.store.all():
            if record.state == "CREATING":
                continue
            if id_prefix and not record.id.startswith(id_prefix):
                continue
            if state is not None and record.state != state:
                continue
            if labels and any(record.labels.get(k) != v for k, v in labels.items()):
                continue
            out.append(record)
        return sorted(out, key=lambda r: r.created_at)

    # ---- start-up ----------------------------------------------------------------------
    def reconcile(self) -> dict[str, int]:
        """Make store and netns mounts agree after a restart; returns counts. The cache's
        stale attachments are the GC's (`gc_stale_attachments`), which the server runs once
        serving: it reads every cache file, which at 10,000 pods took seconds of a restart."""
        # first: a plugin a killed server left running (an ADD of a pod rolled back below, or of
        # a hook call the runtime will DEL) would finish after that DEL and leak what it set up
        counts = {"orphaned_plugins": orphans.kill_orphaned_plugins(), "rolled_back": 0, "not_ready": 0,
                  "stale_netns": 0}
        self.store.load()
        pinned = netns.mounted()  # one read of mountinfo, not one per pod
        for record in self.store.all():
            if record.state == "CREATING":
                kv(log, logging.WARNING, "rolling back interrupted RunPodSandbox", pod_id=record.id)
                self._teardown(record)
                counts["rolled_back"] += 1
            elif record.state == "READY" and not record.host_network and record.netns_path not in pinned:
                record.state = "NOTREADY"
                self.store.put(record)
                counts["not_ready"] += 1
        known = {r.id for r in self.store.all()} | set(self.store.unreadable)  # unknown state: never torn down
        counts["unreadable"] = len(self.store.unreadable)
        if os.path.isdir(self.settings.netns_dir):
            for name in os.listdir(self.settings.netns_dir):
                if name not in known:
                    path = os.path.join(self.settings.netns_dir, name)
                    try:
                        netns.remove(path)
                    except OSError as exc:  # not ours to guess at (a directory, a busy mount): report it
                        kv(log, logging.WARNING, "cannot remove stale netns entry", file=path, error=str(exc))
                        continue
                    counts["stale_netns"] += 1
        kv(log, logging.INFO, "reconciled state", pods=len(known), **counts)
        return counts

    def gc_stale_attachments(self, known: set[str] | None = None) -> int:
        """DEL cached attachments of pods cri-net no longer has (a DEL that failed at
        RemovePodSandbox is retried here), through the adaptor's one GC routine; returns how
        many were removed. Only attachments whose netns lives in our netns dir are this
        server's: the hook's pods (containerd's) share the adaptor's cache dir."""
        ours = self.settings.netns_dir.rstrip("/") + "/"

        def stale(att: Attachment) -> bool:
            cid = att.container_id
            return (att.netns.startswith(ours) and not (known is not None and cid in known)
                    and self.store.get(cid) is None and cid not in self.store.unreadable)

        return self.adaptor.gc(stale, hold=self._pod_lock).removed
