"""One attachment of a container to a network (`RuntimeConf`, Go's libcni.RuntimeConf), and
what every operation checks about it before a plugin runs: names that could escape the cache
dir or break the plugin's environment are refused, naming what is wrong."""

from __future__ import annotations

import re
from .errors import CNIError, ErrorCode
from .jsonshape import Value

TYPE_CHECKING = False  # `typing` costs a short-lived CLI ~4 ms
if TYPE_CHECKING:
    from typing import Any, Mapping

_VALID_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
MAX_IFNAME_LEN = 15


class RuntimeConf(Value):
    """One attachment: which container, which netns, which interface, with which args."""

    _fields = ("container_id", "netns", "ifname", "args", "capability_args")

    def __init__(self, container_id: str, netns: str = "", ifname: str = "eth0",
                 args: tuple[tuple[str, str], ...] = (), capability_args: Mapping[str, Any] | None = None) -> None:
        d = self.__dict__
        d["container_id"], d["netns"], d["ifname"], d["args"] = container_id, netns, ifname, args
        d["capability_args"] = {} if capability_args is None else capability_args


class GCAttachment(Value):
    """An attachment that GC must keep."""

    _fields = ("container_id", "ifname")

    def __init__(self, container_id: str, ifname: str) -> None:
        self.__dict__["container_id"], self.__dict__["ifname"] = container_id, ifname


def validate_container_id(container_id: str) -> None:
    if not container_id:
        raise CNIError(ErrorCode.UNKNOWN_CONTAINER, "missing containerID")
    if not _VALID_NAME.fullmatch(container_id):
        raise CNIError(ErrorCode.INVALID_ENVIRONMENT_VARIABLES, "invalid characters in containerID", container_id)


def validate_network_name(name: str) -> None:
    if not name:
        raise CNIError(ErrorCode.INVALID_NETWORK_CONFIG, "missing network name:")
    if not _VALID_NAME.fullmatch(name):
        raise CNIError(ErrorCode.INVALID_NETWORK_CONFIG, "invalid characters found in network name", name)


def validate_interface_name(ifname: str) -> None:
    code = ErrorCode.INVALID_ENVIRONMENT_VARIABLES
    if not ifname:
        raise CNIError(code, "interface name is empty")
    if len(ifname.encode("utf-8")) > MAX_IFNAME_LEN:
        raise CNIError(code, "interface name is too long",
                       f"interface name should be less than {MAX_IFNAME_LEN + 1} characters")
    if ifname in (".", ".."):
        raise CNIError(code, "interface name is . or ..")
    if any(c in "/:\0" or c.isspace() for c in ifname):
        raise CNIError(code, "interface name contains / or : or whitespace characters")


def validate_runtime_conf(network: str, rt: RuntimeConf) -> None:
    """What ADD checks before a plugin runs (as Go's addNetwork): names that could escape the
    cache dir or break the plugin's environment are refused, naming what is wrong."""
    validate_container_id(rt.container_id)
    validate_network_name(network)
    validate_interface_name(rt.ifname)
    validate_encodable(rt)


def validate_encodable(rt: RuntimeConf) -> None:
    """What CHECK and DEL check: only what cannot reach a plugin intact (NUL bytes, CNI_ARGS
    pairs that do not survive K=V;K=V). Go checks names on ADD only, so an attachment made
    under older rules can still be checked and torn down; the cache is never read or written
    through a name that is not one path component (ResultCache.path)."""
    code = ErrorCode.INVALID_ENVIRONMENT_VARIABLES
    for what, value in (("containerID", rt.container_id), ("interface name", rt.ifname)):
        if "\0" in value:
            raise CNIError(code, f"{what} contains a NUL byte")
    if "\0" in rt.netns:
        raise CNIError(code, "netns path contains a NUL byte")
    for key, value in rt.args:
        if "\0" in key or "\0" in value:
            raise CNIError(code, f"CNI_ARGS {key[:40]!r} contains a NUL byte")
        if not key or "=" in key or ";" in key or ";" in value:
            raise CNIError(code, f"CNI_ARGS pair {key[:40]!r} cannot be encoded as K=V;K=V")
