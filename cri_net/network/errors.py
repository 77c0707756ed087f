"""Errors of the network API. Each says what failed and where, for the caller to map
(INVALID_ARGUMENT for `InvalidRequestError`, an error naming network and plugin otherwise)."""

from __future__ import annotations

from ..libcni import CNIError, PluginError


class NetworkApiError(Exception):
    """Base class of every network API error."""


class InvalidRequestError(NetworkApiError, ValueError):
    """A request field or annotation is malformed; `key` names it. Nothing was changed."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


class AdaptorNotFoundError(NetworkApiError):
    def __init__(self, kind: str, known: list[str]) -> None:
        super().__init__(f"unknown network adaptor type {kind!r} (known: {', '.join(known)})")
        self.kind = kind


class NetworkNotReadyError(NetworkApiError):
    def __init__(self, conf_dir: str) -> None:
        super().__init__(f"network plugin not ready: cni config uninitialized (no usable config in {conf_dir})")
        self.conf_dir = conf_dir


class CNIStateError(NetworkApiError):
    """The node's CNI state (the cache dir shared with the runtime) cannot be used, e.g. its
    results dir is not a directory; nothing was changed by this request."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"cannot use the CNI cache: {cause}")
        self.cause = cause


class PlaneError(NetworkApiError):
    """An operation on one plane (`network` on `ifname`) failed; names the plugin when known."""

    operation = "operate on"

    def __init__(self, network: str, ifname: str, cause: Exception, rollback_failures: list[str] | None = None) -> None:
        self.network, self.ifname, self.cause = network, ifname, cause
        self.plugin = cause.plugin if isinstance(cause, PluginError) else ""
        self.code = cause.code if isinstance(cause, CNIError) else 999
        self.rollback_failures = rollback_failures or []
        msg = f"{self.operation} network {network!r} on {ifname}"
        if self.plugin:
            msg += f" (plugin {self.plugin})"
        msg += f" failed: {cause}"
        if self.rollback_failures:
            msg += "; rollback also failed: " + "; ".join(self.rollback_failures)
        super().__init__(msg)


class AttachError(PlaneError):
    """Attaching failed; everything attached before was rolled back."""

    operation = "attach"


class CheckError(PlaneError):
    operation = "check"


class DetachError(NetworkApiError):
    """One or more planes failed to detach; every other plane was still detached."""

    def __init__(self, failures: list[tuple[str, str, Exception]]) -> None:
        self.failures = failures
        super().__init__("detach failed for " + "; ".join(f"network {n!r} on {i}: {e}" for n, i, e in failures))


class NetworkStatusError(NetworkApiError):
    """CNI STATUS: the networks are not ready (`code` 50) or have limited connectivity (51)."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details
