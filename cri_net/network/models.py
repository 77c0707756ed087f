"""Request and result types of the network API, named after the seed's C structs."""

from __future__ import annotations

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
