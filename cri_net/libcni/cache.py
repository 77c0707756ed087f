"""The result cache, byte-compatible with Go libcni's `cniCacheV1` files.

Layout: `<cache_dir>/results/<network>-<containerId>-<ifName>`. Go tools (cnitool, containerd,
CRI-O) read what we write and we read what they write. Unlike Go libcni, writes are atomic
(temp file, rename) with modes 0700/0600, so no reader and no killed writer ever sees or leaves
half a file. Like Go libcni they are not fsynced: after a power cut an entry written in the
last seconds may be missing or unusable (skipped and reported, as a missing one).
"""

from __future__ import annotations

import binascii
import errno
import os

from .atomic import atomic_write, is_temp
from .jsonshape import Value
from .logfields import WARNING, LazyLogger, kv
from . import rawjson
from .errors import CacheError, CNIError, ErrorCode
from .fileread import FileReadError, read_regular

TYPE_CHECKING = False  # `typing` costs a short-lived CLI ~4 ms
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, Iterable

log = LazyLogger("cri_net.libcni")

CACHE_KIND = "cniCacheV1"
DEFAULT_CACHE_DIR = "/var/lib/cni"
#: The key of the optional owner tag, written after Go's fields. Go's decoder ignores unknown
#: keys, so Go tools still read the file; a runtime sharing the cache dir can tell which
#: attachments it made (Go's cache has no such notion).
OWNER_KEY = "cri-net.io/owner"
#: A cache file larger than this is refused unread: a record is the conflist (at most 1 MiB,
#: base64) plus a result, and the results dir is shared with other runtimes.
MAX_CACHE_FILE_SIZE = 4 << 20
#: How many distinct unusable cache files are remembered, so each is logged once, not per listing.
_REPORTED_LIMIT = 1024
_reported: set[tuple[str, str]] = set()


def _report_unusable(path: str, reason: str) -> None:
    key = (path, reason)
    if key in _reported:
        return
    if len(_reported) >= _REPORTED_LIMIT:
        _reported.clear()
    _reported.add(key)
    kv(log, WARNING, "skipping unusable cache file", file=path, reason=reason)


#: A cache file's keys (Go's cachedInfo JSON names) -> CacheRecord's attribute names.
_KEYS = {"kind": "kind", "containerId": "container_id", "config": "config", "ifName": "ifname",
         "networkName": "network_name", "netns": "netns", "cniArgs": "cni_args", "capabilityArgs": "capability_args",
         "result": "result", OWNER_KEY: "owner"}


class CacheRecord:
    """One cniCacheV1 file. `config` is the conflist bytes (base64 on disk).

    The constructor checks and normalises its values as a decoded file needs (a ValueError
    names the field), so `from_json` is the constructor under the file's key names."""

    __slots__ = ("kind", "container_id", "config", "ifname", "network_name", "netns", "cni_args",
                 "capability_args", "result", "owner")

    def __init__(self, kind: str = CACHE_KIND, container_id: str = "", config: bytes | str | None = b"",
                 ifname: str = "", network_name: str = "", netns: str = "",
                 cni_args: Iterable[tuple[str, str]] | None = None, capability_args: dict[str, Any] | None = None,
                 result: dict[str, Any] | None = None, owner: Any = "") -> None:
        self.kind = _text(kind, "kind")
        self.container_id = _text(container_id, "containerId")
        self.config = _config_bytes(config)
        self.ifname = _text(ifname, "ifName")
        self.network_name = _text(network_name, "networkName")
        self.netns = _text(netns, "netns")
        self.cni_args = _cni_args(cni_args)
        self.capability_args = _object(capability_args, "capabilityArgs")
        self.result = _object(result, "result")
        #: who made the attachment ("" for Go tools and plain libcni users)
        self.owner = owner if isinstance(owner, str) else ""  # a foreign value is no claim of ours

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CacheRecord:
        """A record from a decoded cache file (Go's key names; unknown keys are ignored)."""
        return cls(**{attr: doc[key] for key, attr in _KEYS.items() if key in doc})

    def __eq__(self, other: object) -> bool:
        if type(other) is not CacheRecord:
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the pydantic model it replaced

    def __repr__(self) -> str:
        return "CacheRecord(" + ", ".join(f"{a}={getattr(self, a)!r}" for a in self.__slots__) + ")"

    def to_json(self) -> str:
        """Exactly what Go's json.Marshal(&cachedInfo) writes (field order, omitempty)."""
        doc: dict[str, Any] = {
            "kind": self.kind,
            "containerId": self.container_id,
            "config": binascii.b2a_base64(self.config, newline=False).decode("ascii"),
            "ifName": self.ifname,
            "networkName": self.network_name,
        }
        parts = [f"{rawjson.go_dumps(k)}:{rawjson.go_dumps(v)}" for k, v in doc.items()]
        if self.netns:
            parts.append(f'"netns":{rawjson.go_dumps(self.netns)}')
        if self.cni_args:
            parts.append(f'"cniArgs":{rawjson.go_dumps([list(a) for a in self.cni_args])}')
        if self.capability_args:
            parts.append(f'"capabilityArgs":{rawjson.go_dumps(self.capability_args)}')
        if self.result:
            parts.append(f'"result":{rawjson.go_dumps(self.result)}')
        if self.owner:
            parts.append(f'{rawjson.go_dumps(OWNER_KEY)}:{rawjson.go_dumps(self.owner)}')
        return "{" + ",".join(parts) + "}"


def _text(value: Any, key: str) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"cache record {key!r} must be a string, not {type(value).__name__}")


def _config_bytes(value: Any) -> bytes:
    """The conflist: base64 text in a file (strictly decoded), bytes from a caller, null = none."""
    if value is None:
        return b""
    if isinstance(value, str):
        # b64decode(validate=True) without the base64 module (~1 ms); binascii.Error is a ValueError
        return binascii.a2b_base64(value, strict_mode=True)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise ValueError(f"cache record 'config' must be base64 text, not {type(value).__name__}")


def _cni_args(value: Any) -> list[tuple[str, str]]:
    """[[K, V], ...]; null is none."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"cache record 'cniArgs' must be an array, not {type(value).__name__}")
    out = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise ValueError(f"cache record 'cniArgs' entry {i} is not a pair of strings")
        out.append((pair[0], pair[1]))
    return out


def _object(value: Any, key: str) -> dict[str, Any]:
    """A JSON object; null is empty."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise ValueError(f"cache record {key!r} must be an object, not {type(value).__name__}")


class NetworkAttachment(Value):
    """A cached attachment of a container to a network (Go's NetworkAttachment). `owner` is
    the record's owner tag ("" when the writer set none: Go tools, `cri-net cni`)."""

    _fields = ("container_id", "network", "ifname", "config", "netns", "cni_args", "capability_args", "owner")

    def __init__(self, container_id: str, network: str, ifname: str, config: bytes, netns: str = "",
                 cni_args: tuple[tuple[str, str], ...] = (), capability_args: dict[str, Any] | None = None,
                 owner: str = "") -> None:
        d = self.__dict__
        d["container_id"], d["network"], d["ifname"], d["config"], d["netns"] = container_id, network, ifname, config, netns
        d["cni_args"], d["owner"] = cni_args, owner
        d["capability_args"] = {} if capability_args is None else capability_args


def _component(value: str, what: str) -> str:
    if "/" in value or "\0" in value or value in (".", ".."):
        raise CNIError(ErrorCode.INVALID_ENVIRONMENT_VARIABLES, f"invalid {what} for a cache path: {value!r}")
    return value


class ResultCache:
    """Reads and writes cache files under one cache dir."""

    def __init__(self, cache_dir: str = DEFAULT_CACHE_DIR) -> None:
        self.cache_dir = cache_dir
        self.results_dir = os.path.join(cache_dir, "results")

    def path(self, network: str, container_id: str, ifname: str) -> str:
        if not network or not container_id or not ifname:  # Go's getCacheFilePath refuses these too
            raise CNIError(ErrorCode.INVALID_ENVIRONMENT_VARIABLES,
                           f"cache file path requires network name ({_go_q(network)}), container ID "
                           f"({_go_q(container_id)}), and interface name ({_go_q(ifname)})")
        name = f"{_component(network, 'network name')}-{_component(container_id, 'container id')}-" \
               f"{_component(ifname, 'interface name')}"
        return os.path.join(self.results_dir, name)

    def write(self, record: CacheRecord) -> str:
        """Atomically write `record`; returns the path."""
        path = self.path(record.network_name, record.container_id, record.ifname)
        data = record.to_json().encode("utf-8")
        if len(data) > MAX_CACHE_FILE_SIZE:  # what could not be read back must not be written
            raise CacheError(f"cached result would be {len(data)} bytes, over the read limit of "
                             f"{MAX_CACHE_FILE_SIZE}", path)
        try:
            # no fsync (Go libcni syncs nothing either): without a dir fsync the file fsync bought
            # nothing a reader can tell after a power cut (the new name may be gone either way,
            # and a torn file is skipped as unusable, like a missing one), and it was the largest
            # cost of an attach of cri-net's own (~0.7 ms per plane, profiled); readers and a
            # killed writer still never see half a file
            atomic_write(path, data, mode=0o600, dir_mode=0o700, sync=False)
        except OSError as exc:
            raise CacheError(f"failed to write cached result: {exc.strerror}", path) from None
        return path

    def read_raw(self, network: str, container_id: str, ifname: str) -> bytes | None:
        try:
            path = self.path(network, container_id, ifname)
        except CNIError:
            return None  # a name that cannot be a cache file was never cached
        try:
            # Go libcni writes regular files: a symlink, FIFO or device here is refused unread
            return read_regular(path, MAX_CACHE_FILE_SIZE, follow_symlinks=False)
        except FileReadError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise CacheError(f"failed to read cached result: {exc.reason}", path) from None

    def read(self, network: str, container_id: str, ifname: str) -> CacheRecord | None:
        """The cniCacheV1 record, or None when absent or not cniCacheV1 (see `read_result`)."""
        data = self.read_raw(network, container_id, ifname)
        return None if data is None else decode_record(data)

    def read_result(self, network: str, container_id: str, ifname: str,
                    strict: bool = False) -> dict[str, Any] | None:
        """The cached result object; a file that is not cniCacheV1 is a legacy raw result.

        Lenient (DEL, queries): anything unusable reads as None. `strict` (CHECK, as Go's
        getCachedResult): only a missing file is None; names that make no cache path and a
        file holding no decodable result raise, so CHECK never runs without its prevResult."""
        if strict and (not network or not container_id or not ifname):
            self.path(network, container_id, ifname)  # raises, naming the empty part
        data = self.read_raw(network, container_id, ifname)
        if data is None:
            return None
        record = decode_record(data)
        if record is not None:
            return record.result or ({} if strict else None)
        try:
            legacy = rawjson.loads(data)
        except ValueError as exc:
            if strict:
                raise CNIError(ErrorCode.DECODING_FAILURE, f"decoding version from network config: {exc}") from None
            return None
        if isinstance(legacy, dict):
            return legacy
        if strict:
            raise CNIError(ErrorCode.DECODING_FAILURE,
                           f"decoding version from network config: cached result is a JSON {type(legacy).__name__}, "
                           "not an object")
        return None

    def delete(self, network: str, container_id: str, ifname: str) -> None:
        """Remove a cache entry; absent (or never cacheable) is fine, other failures raise CacheError."""
        try:
            path = self.path(network, container_id, ifname)
        except CNIError:
            return
        try:
            _unlink_quietly(path)
        except OSError as exc:
            raise CacheError(f"failed to remove cached result: {exc.strerror}", path) from None

    def attachments(self, container_id: str | None = None,
                    unusable: list[tuple[str, str]] | None = None) -> list[NetworkAttachment]:
        """Every readable cniCacheV1 attachment, sorted by file name, optionally one container's.

        A file that cannot be read (not a regular file, over the size limit) is skipped, logged
        once and appended to `unusable` as (path, reason); a file that is not cniCacheV1 (a
        legacy result, another tool's) is skipped silently."""
        return list(self.iter_attachments(container_id, unusable))

    def iter_attachments(self, container_id: str | None = None,
                         unusable: list[tuple[str, str]] | None = None) -> Iterator[NetworkAttachment]:
        """`attachments()` one at a time: the dir is listed first, each file read when its turn
        comes (a GC of 10,000 attachments then never holds them all in memory)."""
        try:
            names = os.listdir(self.results_dir)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CacheError(f"failed to list cached results: {exc.strerror}", self.results_dir) from None
        part = f"-{container_id}-" if container_id else ""
        if part:  # one container's: sort its few names, not the whole dir (every attach asks this)
            names = [n for n in names if part in n]
        names.sort()
        for name in names:
            if is_temp(name):  # a write in progress (or one a crash interrupted)
                continue
            if part:
                pos = name.find(part)
                if pos <= 0 or pos + len(part) >= len(name):
                    continue
            path = os.path.join(self.results_dir, name)
            try:
                record = decode_record(read_regular(path, MAX_CACHE_FILE_SIZE, follow_symlinks=False))
            except FileReadError as exc:
                if exc.errno != errno.ENOENT:  # not just removed meanwhile
                    _report_unusable(path, exc.reason)
                    if unusable is not None:
                        unusable.append((path, exc.reason))
                continue
            if record is None or not record.network_name or not record.ifname:
                continue
            if container_id and record.container_id != container_id:
                continue
            yield NetworkAttachment(
                container_id=record.container_id, network=record.network_name, ifname=record.ifname,
                config=record.config, netns=record.netns, cni_args=tuple(record.cni_args),
                capability_args=record.capability_args, owner=record.owner,
            )


def _go_q(value: str) -> str:
    """Go's %q of a plain string, near enough for an error message."""
    return rawjson.go_dumps(value)


def decode_record(data: bytes) -> CacheRecord | None:
    """A cniCacheV1 record, or None if `data` is not one."""
    try:
        obj = rawjson.loads(data)
        if not isinstance(obj, dict) or obj.get("kind") != CACHE_KIND:
            return None
        return CacheRecord.from_json(obj)
    except ValueError:  # not JSON, or a field of the wrong type
        return None


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
