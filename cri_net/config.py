"""cri-net's settings: defaults, then a config file (TOML or JSON), then command-line flags.

One model serves every sub-command, so `cri-net network ...` and `cri-net serve` always agree
on where configs, plugins, caches and state live.
"""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .cli.flags import DEFAULT_CONFIG_FILE  # noqa: E402  (one definition, light module)
from .cli.usage import seconds_problem

#: cri-net's own config file is a few hundred bytes; the conf-file bound applies.
MAX_CONFIG_FILE_SIZE = 1 << 20


class Settings(BaseModel):
    """Effective configuration; field names are the config-file keys."""

    model_config = ConfigDict(extra="forbid")

    listen: str = "unix:///run/cri-net/cri-net.sock"
    #: where cri-net-cni hands its calls over; None: `cni.sock` beside the CRI socket; "": off
    cni_listen: str | None = None
    conf_dir: str = "/etc/cri-net/net.d"
    bin_dirs: list[str] = Field(default_factory=lambda: ["/opt/cni/bin", "/usr/lib/cni"])
    cache_dir: str = "/var/lib/cni"
    state_dir: str = "/var/lib/cri-net"
    netns_dir: str = "/run/cri-net/netns"
    default_network: str | None = None
    #: delegate mode: the default network is the primary CNI config of this dir (the runtime's
    #: conf dir); `default_network` then names it there (None: the first that is not cri-net's)
    delegate_conf_dir: str | None = None
    plugin_timeout: float = 60.0
    ip_pref: Literal["ipv4", "ipv6", "cni"] = "ipv4"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    conf_poll_interval: float = 5.0
    #: HOST:PORT of the HTTP endpoint serving /metrics, /healthz and /readyz; None: off
    metrics_listen: str | None = None
    #: seconds between retries of DELs that failed when a pod was removed; 0: only at start-up
    gc_interval: float = 300.0
    #: attach (and detach) a pod's planes concurrently after loopback, rolling all of them back
    #: on a failure; false: one after another, for plugins that cannot take concurrent calls
    #: for one container
    parallel_attach: bool = True

    @field_validator("conf_dir", "cache_dir", "state_dir", "netns_dir", "delegate_conf_dir")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not os.path.isabs(value):
            raise ValueError(f"must be an absolute path, got {value!r}")
        return os.path.normpath(value)


    @field_validator("plugin_timeout", "conf_poll_interval", "gc_interval")
    @classmethod
    def _seconds(cls, value: float, info: Any) -> float:
        """Finite, positive and at most a day: infinity or 1e20 overflows a deadline, and a poll
        or GC interval under 10 ms is a busy loop (gc_interval 0: only at start-up)."""
        key = info.field_name
        problem = seconds_problem(value, minimum=0.0 if key == "plugin_timeout" else 0.01,
                                  zero_ok=key == "gc_interval")
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _listen_address(cls, value: str | None) -> str | None:
        if value:
            from .server.health import parse_listen

            parse_listen(value)  # raises naming the value
        return value or None

    @field_validator("bin_dirs")
    @classmethod
    def _absolute_dirs(cls, value: list[str]) -> list[str]:
        """Plugins are found only in absolute dirs: a relative one would depend on the cwd."""
        for i, d in enumerate(value):
            if not os.path.isabs(d):
                raise ValueError(f"bin_dirs[{i}] must be an absolute path, got {d!r}")
        return [os.path.normpath(d) for d in value]


class ConfigFileError(ValueError):
    """A config file that cannot be read or validated; names the file and the key. `key` and
    `reason` are set for a value that failed validation (a caller may name the key its own way)."""

    def __init__(self, message: str, key: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.key, self.reason = key, reason


def load_file(path: str) -> dict[str, Any]:
    from .fsutil import FileReadError, read_regular  # not at import: libcni is heavy

    try:
        data = read_regular(path, MAX_CONFIG_FILE_SIZE)  # a FIFO or /dev/zero here must not hang serve
    except FileReadError as exc:
        raise ConfigFileError(f"{path}: cannot read config file: {exc.reason}") from None
    try:
        doc = json.loads(data) if path.endswith(".json") else tomllib.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigFileError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'TOML'}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigFileError(f"{path}: top level must be a table/object")
    return {k.replace("-", "_"): v for k, v in doc.items()}


def build(config_file: str | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Defaults < config file < overrides (flags); raises ConfigFileError naming file and key."""
    values: dict[str, Any] = {}
    source = "flags"
    if config_file:
        values.update(load_file(config_file))
        source = config_file
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        reason = err["msg"].removeprefix("Value error, ")
        raise ConfigFileError(f"{source}: {key}: {reason}", key, reason) from None


def from_args(args: argparse.Namespace) -> Settings:
    config_file = getattr(args, "config", None)
    if config_file is None and os.path.exists(DEFAULT_CONFIG_FILE):
        config_file = DEFAULT_CONFIG_FILE
    keys = Settings.model_fields.keys()
    return build(config_file, {k: v for k, v in vars(args).items() if k in keys})
