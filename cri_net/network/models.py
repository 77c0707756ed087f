"""Request and result types of the network API, named after the seed's C structs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ExtraNet(BaseModel):
    """An extra network plane: which network, on which interface in the sandbox."""

    model_config = ConfigDict(frozen=True)

    name: str
    interface: str


class NetworkApiConf(BaseModel):
    """What the caller knows about one sandbox (pod) or container (seed: network_api_conf).

    `port_mappings` are the CRI PortMapping messages (or dicts with their field names);
    `capabilities` holds values the caller set directly with `insert_*` (already validated),
    which are merged with what the annotations say at attach time.
    """

    name: str = ""
    namespace: str = ""
    pod_id: str
    pod_uid: str = ""
    netns_path: str = ""
    default_interface: str = "eth0"
    extra_nets: list[ExtraNet] = Field(default_factory=list)
    args: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    port_mappings: list[Any] = Field(default_factory=list)
    capabilities: dict[str, Any] = Field(default_factory=dict)
    pod_cidr: str | None = None
    dns: Any = None
    networks: list[str] = Field(default_factory=list, description="native adaptor: networks to join, in order")


class NetworkApiResult(BaseModel):
    """One attached plane (seed: network_api_result)."""

    name: str
    interface: str
    ips: list[str] = Field(default_factory=list)
    gateways: list[str] = Field(default_factory=list)
    mac: str = ""
    #: the plane's routes and DNS, as CNI 1.0 results carry them (for a runtime's combined result)
    routes: list[dict[str, Any]] = Field(default_factory=list, exclude=True)
    dns: dict[str, Any] = Field(default_factory=dict, exclude=True)
    #: the namespace an extra plane was selected in (Multus reports `namespace/name`); "" for
    #: the default network
    namespace: str = Field(default="", exclude=True)


class NetworkCreateRequest(BaseModel):
    """`conf create` input (native adaptor)."""

    name: str = ""
    driver: str = "bridge"
    subnet: str | None = None
    gateway: str | None = None
    internal: bool = False


class NetworkInfo(BaseModel):
    """A row of `conf list`."""

    name: str
    version: str
    plugins: list[str]
    file: str | None = None


@dataclass(frozen=True)
class NetworkState:
    """What an adaptor has loaded from its conf dir, and what it could not use."""

    conf_dir: str
    networks: list[dict[str, Any]]  # name, cniVersion, plugins, file; in file-name order
    default: str | None  # the default network's name (None: not ready)
    skipped: list[tuple[str, str]]  # (file, reason)
    last_reload_error: str = ""

    @property
    def names(self) -> list[str]:
        return [n["name"] for n in self.networks]


@dataclass(frozen=True)
class Attachment:
    """One attachment this adaptor made, as cached: what the runtime may be shown of it."""

    network: str
    container_id: str
    ifname: str
    netns: str = ""
    cni_args: tuple[tuple[str, str], ...] = ()
    capability_args: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None


@dataclass(frozen=True)
class GCOutcome:
    """What one garbage collection of stale attachments did."""

    removed: int = 0
    failures: list[str] = field(default_factory=list)  # "network/container/ifname: error"
