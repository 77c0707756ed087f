"""Typed CNI errors.

Every failure the library reports is a `CNIError` carrying the spec's well-known code, so a
runtime (or our own CNI plugin) can forward it as `{code, msg, details}` without guessing.
Subclasses add context: which file, which plugin, which command, which network.
"""

from __future__ import annotations

from enum import IntEnum

TYPE_CHECKING = False  # `typing` costs a plugin answering VERSION ~5 ms
if TYPE_CHECKING:
    from typing import Any


class ErrorCode(IntEnum):
    """Well-known CNI error codes (spec 1.1.0, "Error" section)."""

    INCOMPATIBLE_CNI_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENVIRONMENT_VARIABLES = 4
    IO_FAILURE = 5
    DECODING_FAILURE = 6
    INVALID_NETWORK_CONFIG = 7
    TRY_AGAIN_LATER = 11
    PLUGIN_NOT_AVAILABLE = 50
    LIMITED_CONNECTIVITY = 51
    INTERNAL = 999


class CNIError(Exception):
    """A CNI error: `code`, `msg` and optional `details`; str() is "msg; details" like Go's."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def __str__(self) -> str:
        return f"{self.msg}; {self.details}" if self.details else self.msg

    def to_dict(self, cni_version: str | None = None) -> dict[str, Any]:
        """The spec's error object, as a plugin prints it on stdout."""
        out: dict[str, Any] = {}
        if cni_version is not None:
            out["cniVersion"] = cni_version
        out["code"] = self.code
        out["msg"] = self.msg
        if self.details:
            out["details"] = self.details
        return out


class ConfigError(CNIError):
    """A network configuration that cannot be used; `source` names the file (or "<bytes>")."""

    def __init__(self, msg: str, source: str | None = None, details: str = "") -> None:
        self.source = source
        text = f"{source}: {msg}" if source else msg
        super().__init__(ErrorCode.INVALID_NETWORK_CONFIG, text, details)


class NoConfigsFoundError(ConfigError):
    def __init__(self, conf_dir: str) -> None:
        super().__init__(f"no net configurations found in {conf_dir}")
        self.conf_dir = conf_dir


class NetworkNotFoundError(ConfigError):
    def __init__(self, conf_dir: str, name: str) -> None:
        super().__init__(f'no net configuration with name "{name}" in {conf_dir}')
        self.conf_dir, self.name = conf_dir, name


class PluginNotFoundError(CNIError):
    """The plugin binary is not in any bin dir (or its name is unsafe)."""

    def __init__(self, msg: str, plugin: str) -> None:
        super().__init__(ErrorCode.INVALID_NETWORK_CONFIG, msg)
        self.plugin = plugin


class PluginError(CNIError):
    """A plugin run that failed; names the plugin, the command and the network.

    `cause` is the plugin's own error (its code is kept), so `str()` reads like Go libcni:
    `plugin type="bridge" name="net1" failed (add): <plugin message>`.
    """

    def __init__(self, plugin: str, command: str, network: str, cause: CNIError) -> None:
        self.plugin, self.command, self.network, self.cause = plugin, command, network, cause
        desc = f'type="{plugin}"' + (f' name="{network}"' if network else "")
        super().__init__(cause.code, f"plugin {desc} failed ({command.lower()}): {cause.msg}", cause.details)


class PluginTimeoutError(CNIError):
    def __init__(self, plugin_path: str, command: str, timeout: float) -> None:
        super().__init__(
            ErrorCode.TRY_AGAIN_LATER,
            f"plugin {plugin_path} timed out after {timeout:g}s running {command}; killed",
        )
        self.plugin_path, self.command, self.timeout = plugin_path, command, timeout


class PluginOutputTooLargeError(CNIError):
    """A plugin wrote more to stdout than anyone reads; it was killed before it could grow us."""

    def __init__(self, plugin_path: str, command: str, limit: int) -> None:
        super().__init__(
            ErrorCode.INTERNAL,
            f"plugin {plugin_path} wrote more than {limit} bytes to stdout running {command}; killed",
        )
        self.plugin_path, self.command, self.limit = plugin_path, command, limit


class CacheError(CNIError):
    def __init__(self, msg: str, path: str = "") -> None:
        super().__init__(ErrorCode.IO_FAILURE, f"{msg}" + (f" ({path})" if path else ""))
        self.path = path
