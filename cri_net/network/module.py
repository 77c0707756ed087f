"""NetworkModule: the seed's fifteen `network_module_*` calls over registered adaptors.

Adaptors are found by type ("cri" for pods, "native" for plain containers) and imported on
first use, so a caller that only needs one does not pay for the other.
"""

from __future__ import annotations

import importlib
import threading
from contextlib import AbstractContextManager
from typing import Any, Callable, Protocol

from ..config import Settings
from .capabilities import AnnotationError
from .errors import AdaptorNotFoundError, InvalidRequestError
from .models import Attachment, GCOutcome, NetworkApiConf, NetworkApiResult, NetworkCreateRequest, NetworkInfo, NetworkState


class Adaptor(Protocol):
    """What an adaptor provides: the only door from the ways in (server, CNI plugin, CLI) to
    the networks below. Unsupported calls raise NetworkApiError."""

    kind: str

    # readiness and configs
    def ready(self) -> bool: ...
    def update(self) -> None: ...
    def refresh(self) -> None: ...  # reload only if the conf dir changed since the last load
    def state(self) -> NetworkState: ...
    def status(self) -> None: ...  # CNI STATUS: raises NetworkStatusError (50/51) when not ready
    # containers / pods
    def validate(self, conf: NetworkApiConf) -> None: ...  # everything attach checks, nothing attached
    def attach(self, conf: NetworkApiConf) -> list[NetworkApiResult]: ...
    def check(self, conf: NetworkApiConf) -> list[NetworkApiResult]: ...
    def detach(self, conf: NetworkApiConf) -> None: ...
    def cached_results(self, container_id: str, planes: list[tuple[str, str]],
                       default_interface: str = "eth0") -> list[NetworkApiResult]: ...
    def cached_attachments(self, container_id: str | None = None) -> list[Attachment]: ...
    def gc(self, stale: Callable[[Attachment], bool],
           hold: Callable[[str], AbstractContextManager[None]] | None = None) -> GCOutcome: ...
    # network configs
    def conf_create(self, request: NetworkCreateRequest) -> NetworkInfo: ...
    def conf_inspect(self, name: str) -> str: ...
    def conf_list(self, filters: dict[str, list[str]] | None = None) -> list[NetworkInfo]: ...
    def conf_rm(self, name: str) -> str: ...
    def exist(self, name: str) -> bool: ...
    def close(self) -> None: ...


#: Where the seed's insert_* parse their values: the CRI adaptor owns the annotation formats.
CAPABILITY_VALUES = "adaptors.cri.annotations"

ADAPTORS: dict[str, str] = {
    "cri": "adaptors.cri:CRIAdaptor",
    "native": "adaptors.native:NativeAdaptor",
}


def create_adaptor(kind: str, settings: Settings, **options: Any) -> Adaptor:
    """A new adaptor of `kind` from the registry (imported on first use), e.g. the CRI adaptor
    a CNI hook call needs: `create_adaptor("cri", settings, hook=(type, name))`."""
    if kind not in ADAPTORS:
        raise AdaptorNotFoundError(kind, sorted(ADAPTORS))
    module_name, cls_name = ADAPTORS[kind].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(settings, **options)  # type: ignore[no-any-return]


class NetworkModule:
    """The network API. Create with `NetworkModule.init(settings)`; end with `exit()`."""

    def __init__(self, settings: Settings, watch: bool = False) -> None:
        self.settings = settings
        self.watch = watch
        self._adaptors: dict[str, Adaptor] = {}
        self._lock = threading.Lock()

    @classmethod
    def init(cls, settings: Settings, kinds: tuple[str, ...] = (), watch: bool = False) -> "NetworkModule":
        """network_module_init: settings, and optionally adaptors to load right away."""
        module = cls(settings, watch=watch)
        for kind in kinds:
            module.adaptor(kind)
        return module

    def adaptor(self, kind: str) -> Adaptor:
        with self._lock:
            if kind not in self._adaptors:
                self._adaptors[kind] = create_adaptor(kind, self.settings, watch=self.watch)
            return self._adaptors[kind]

    # ---- containers / pods -------------------------------------------------------------
    def attach(self, conf: NetworkApiConf, kind: str) -> list[NetworkApiResult]:
        return self.adaptor(kind).attach(conf)

    def check(self, conf: NetworkApiConf, kind: str) -> list[NetworkApiResult]:
        return self.adaptor(kind).check(conf)

    def detach(self, conf: NetworkApiConf, kind: str) -> None:
        self.adaptor(kind).detach(conf)

    # ---- configs -----------------------------------------------------------------------
    def conf_create(self, kind: str, request: NetworkCreateRequest) -> NetworkInfo:
        return self.adaptor(kind).conf_create(request)

    def conf_inspect(self, kind: str, name: str) -> str:
        return self.adaptor(kind).conf_inspect(name)

    def conf_list(self, kind: str, filters: dict[str, list[str]] | None = None) -> list[NetworkInfo]:
        return self.adaptor(kind).conf_list(filters)

    def conf_rm(self, kind: str, name: str) -> str:
        return self.adaptor(kind).conf_rm(name)

    def ready(self, kind: str) -> bool:
        return self.adaptor(kind).ready()

    def update(self, kind: str) -> None:
        self.adaptor(kind).update()

    def exist(self, kind: str, name: str) -> bool:
        return self.adaptor(kind).exist(name)

    def exit(self) -> None:
        """network_module_exit: stop watchers and drop adaptors."""
        with self._lock:
            for adaptor in self._adaptors.values():
                adaptor.close()
            self._adaptors.clear()

    # ---- capability values set directly by the caller (seed 12-14) ---------------------
    @staticmethod
    def insert_portmapping(value: str, conf: NetworkApiConf) -> NetworkApiConf:
        """Add port mappings: JSON list of {hostPort, containerPort, protocol, hostIP}."""
        return _with_caps(conf, lambda caps: _values().insert_portmapping(value, caps))

    @staticmethod
    def insert_bandwidth(value: str, conf: NetworkApiConf, direction: str = "ingress") -> NetworkApiConf:
        """Set one direction's rate: a Kubernetes quantity in bits/s ("10M", "1Mi")."""
        return _with_caps(conf, lambda caps: _values().insert_bandwidth(value, caps, direction))  # type: ignore[arg-type]

    @staticmethod
    def insert_iprange(value: str, conf: NetworkApiConf) -> NetworkApiConf:
        """Add IP range sets: JSON [[{subnet, rangeStart, rangeEnd, gateway}]]."""
        return _with_caps(conf, lambda caps: _values().insert_iprange(value, caps))


def _values() -> Any:
    return importlib.import_module(CAPABILITY_VALUES)


def _with_caps(conf: NetworkApiConf, change: Callable[[dict[str, Any]], dict[str, Any]]) -> NetworkApiConf:
    try:
        caps = change(dict(conf.capabilities))
    except AnnotationError as exc:
        raise InvalidRequestError(exc.key, exc.reason) from None
    return conf.model_copy(update={"capabilities": caps})
