"""The CRI RuntimeService (runtime.v1) as cri-net serves it: pod sandbox RPCs and status.

Protobuf stays in this module: requests become `PodRequest`s for the SandboxManager, and
errors become gRPC codes (INVALID_ARGUMENT naming the field for bad input, NOT_FOUND,
ALREADY_EXISTS, FAILED_PRECONDITION when no network is configured, INTERNAL naming network
and plugin for plugin failures). Every RPC cri-net does not serve answers UNIMPLEMENTED.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

import grpc

from .. import __version__, metrics
from ..log import kv
from ..network.errors import InvalidRequestError, NetworkApiError, NetworkNotReadyError
from ..network.results import NETWORK_STATUS_KEY
from ..cri.pb.runtime.v1 import api_pb2 as pb
from ..cri.pb.runtime.v1 import api_pb2_grpc as pb_grpc
from .admission import Admission, Busy
from .sandbox import PodRequest, SandboxExistsError, SandboxManager, SandboxNotFoundError, SandboxUnreadableError
from .store import SandboxRecord

log = logging.getLogger("cri_net.server")

SERVED = ("Version", "Status", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus",
          "ListPodSandbox", "UpdateRuntimeConfig")
UNIMPLEMENTED_MSG = ("cri-net is a network hook, not a container runtime; it serves only "
                     + ", ".join(SERVED) + " of runtime.v1.RuntimeService")
_STATES = {"READY": pb.SANDBOX_READY, "NOTREADY": pb.SANDBOX_NOTREADY}
_PROTOCOLS = {pb.TCP: "tcp", pb.UDP: "udp", pb.SCTP: "sctp"}


#: gRPC drops a status whose message is too big for its headers (the client then sees
#: RESOURCE_EXHAUSTED instead of the real error), so messages are cut well below that.
MAX_DETAILS = 4096


def clamp(text: str, limit: int = MAX_DETAILS) -> str:
    return text if len(text) <= limit else text[:limit - 20] + f"... ({len(text)} chars)"


#: Status lists at most this many unreadable records (the rest are counted).
MAX_LISTED_PROBLEMS = 100
#: ListPodSandbox answers stay below gRPC's default receive limit (4 MiB), so that every
#: client can read them, whatever it set (kubelet and crictl take 16 MiB).
LIST_BUDGET = 4 * 1024 * 1024 - 64 * 1024
#: Set on a listed pod whose labels/annotations were left out to fit the budget; the pod's
#: PodSandboxStatus still carries them all.
OMITTED_ANNOTATION = "cri-net.io/list-omitted"


def fit_list(items: list[pb.PodSandbox], budget: int) -> int:
    """Trim `items` in place until they fit `budget` bytes: annotations first, then labels,
    largest pods first (kubelet reads id, metadata, state and created_at from a list; the
    label filter runs before this). Returns how many pods were trimmed."""
    total = sum(i.ByteSize() + 8 for i in items)  # + field tag and length prefix
    trimmed: set[str] = set()
    for field in ("annotations", "labels"):
        for item in sorted(items, key=lambda i: i.ByteSize(), reverse=True):
            if total <= budget:
                return len(trimmed)
            if not getattr(item, field):
                continue
            before = item.ByteSize()
            omitted = ",".join(filter(None, (item.annotations.get(OMITTED_ANNOTATION), field)))
            item.ClearField(field)
            item.annotations[OMITTED_ANNOTATION] = omitted
            total -= before - item.ByteSize()
            trimmed.add(item.id)
    return len(trimmed)


def _abort_for(exc: Exception, context: grpc.ServicerContext) -> None:
    msg = clamp(str(exc))
    if isinstance(exc, InvalidRequestError):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, msg)
    if isinstance(exc, SandboxNotFoundError):
        context.abort(grpc.StatusCode.NOT_FOUND, msg)
    if isinstance(exc, SandboxExistsError):
        context.abort(grpc.StatusCode.ALREADY_EXISTS, msg)
    if isinstance(exc, SandboxUnreadableError):
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, msg)
    if isinstance(exc, NetworkNotReadyError):
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, msg)
    context.abort(grpc.StatusCode.INTERNAL, msg)


def _guard(method: Callable[..., Any]) -> Callable[..., Any]:
    """Map our exceptions to gRPC codes; anything unexpected is INTERNAL, never a crash."""

    def wrapper(self: "RuntimeService", request: Any, context: grpc.ServicerContext) -> Any:
        start = time.monotonic()
        failure: Exception | None = None
        try:
            return method(self, request, context)
        except NetworkApiError as exc:  # adaptors map every CNI error to one of these
            failure = exc
            kv(log, logging.WARNING, "rpc failed", rpc=method.__name__, pod=_pod_of(request),
               network=self.network_of(method.__name__, exc), error=str(exc))
            _abort_for(exc, context)
        except OSError as exc:
            failure = exc
            kv(log, logging.ERROR, "rpc failed", rpc=method.__name__, pod=_pod_of(request),
               network=self.network_of(method.__name__, exc), error=str(exc))
            context.abort(grpc.StatusCode.INTERNAL, clamp(f"{method.__name__}: {exc}"))
        except Exception as exc:
            failure = exc
            if context.code() is not None:  # grpc's abort: a bare Exception raised once the code is set
                raise
            # a bug: the caller still gets a status naming it (not UNKNOWN), the log the traceback
            kv(log, logging.ERROR, "rpc failed: unexpected error", rpc=method.__name__, pod=_pod_of(request),
               error=f"{type(exc).__name__}: {exc}", exc_info=True)
            context.abort(grpc.StatusCode.INTERNAL, clamp(f"{method.__name__}: internal error: {type(exc).__name__}: {exc}"))
        except BaseException as exc:
            failure = exc  # type: ignore[assignment]  # counted, then re-raised
            raise
        finally:
            elapsed = time.monotonic() - start
            metrics.observe_operation(method.__name__, self.network_of(method.__name__, failure), elapsed,
                                      ok=failure is None)
            kv(log, logging.DEBUG, "rpc", rpc=method.__name__, ms=round(elapsed * 1000, 2))

    wrapper.__name__ = method.__name__
    return wrapper


#: Pod starts running plugins at once, and waiting for a slot; the rest are refused at once.
SETUP_RUNNING, SETUP_WAITING = 16, 32
#: Stops and removes (DELs) have their own slots: a flood of hung starts never blocks teardown,
#: and a mass deletion (kubelet stops every pod of a drained node at once) queues rather than fails.
TEARDOWN_RUNNING, TEARDOWN_WAITING = 8, 120
#: gRPC workers always left for the RPCs that run no plugin (Version, Status, List...).
CHEAP_WORKERS = 16
#: The longest an RPC waits for a slot when its caller set no deadline.
MAX_SLOT_WAIT = 120.0


def _gated(gate: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run the RPC in a slot of the service's `gate` admission; RESOURCE_EXHAUSTED when too
    many are running and waiting, UNAVAILABLE when no slot freed up within the caller's deadline."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: "RuntimeService", request: Any, context: grpc.ServicerContext) -> Any:
            remaining = context.time_remaining()
            wait = MAX_SLOT_WAIT if remaining is None else min(MAX_SLOT_WAIT, remaining)
            try:
                with getattr(self, gate).slot(wait):
                    return method(self, request, context)
            except Busy as exc:
                kv(log, logging.WARNING, "rpc refused", rpc=method.__name__, error=str(exc))
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED if exc.full else grpc.StatusCode.UNAVAILABLE,
                              clamp(f"{method.__name__}: {exc}"))

        wrapper.__name__ = method.__name__
        return wrapper

    return wrap


def worker_count() -> int:
    """gRPC workers: every admitted or waiting plugin RPC, plus the ones kept for cheap RPCs."""
    return SETUP_RUNNING + SETUP_WAITING + TEARDOWN_RUNNING + TEARDOWN_WAITING + CHEAP_WORKERS


#: RPCs that act on a pod's networks: their metrics and failure logs name the network.
POD_RPCS = frozenset({"RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus"})


def _pod_of(request: Any) -> str:
    """namespace/name of a RunPodSandbox request, else the sandbox id the request names."""
    config = getattr(request, "config", None)
    if config is not None and hasattr(config, "metadata"):
        return clamp(f"{config.metadata.namespace}/{config.metadata.name}", 256)
    return clamp(str(getattr(request, "pod_sandbox_id", "")), 256)


def _unimplemented(name: str) -> Callable[..., Any]:
    def method(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{name}: {UNIMPLEMENTED_MSG}")

    method.__name__ = name
    return method


def _pod_request(req: pb.RunPodSandboxRequest) -> PodRequest:
    cfg = req.config
    md = cfg.metadata
    mappings = [{"host_port": pm.host_port, "container_port": pm.container_port,
                 "protocol": _PROTOCOLS.get(pm.protocol, pm.protocol), "host_ip": pm.host_ip}
                for pm in cfg.port_mappings]
    dns = None
    if cfg.HasField("dns_config"):
        dns = {"servers": list(cfg.dns_config.servers), "searches": list(cfg.dns_config.searches),
               "options": list(cfg.dns_config.options)}
    ns_opts = cfg.linux.security_context.namespace_options
    return PodRequest(name=md.name, namespace=md.namespace, uid=md.uid, attempt=md.attempt, labels=dict(cfg.labels),
                      annotations=dict(cfg.annotations), port_mappings=mappings, dns=dns,
                      host_network=ns_opts.network == pb.NODE, runtime_handler=req.runtime_handler)


def _metadata(record: SandboxRecord) -> pb.PodSandboxMetadata:
    md = record.metadata
    return pb.PodSandboxMetadata(name=md.name, uid=md.uid, namespace=md.namespace, attempt=md.attempt)


class RuntimeService(pb_grpc.RuntimeServiceServicer):
    def __init__(self, manager: SandboxManager, readiness: Any = None) -> None:
        """`readiness` (server.health.Readiness): when given, Status's NetworkReady is /readyz's answer."""
        self.manager = manager
        self.setup = Admission("pod starts", SETUP_RUNNING, SETUP_WAITING)
        self.teardown = Admission("pod stops and removals", TEARDOWN_RUNNING, TEARDOWN_WAITING)
        self.readiness = readiness

    def network_of(self, rpc: str, exc: BaseException | None = None) -> str:
        """The network a pod RPC was about: the failing plane's, else the default network."""
        if rpc not in POD_RPCS:
            return ""
        failed = getattr(exc, "network", None)
        if isinstance(failed, str) and failed:
            return failed
        try:
            return self.manager.adaptor.default_network().name
        except NetworkApiError:
            return ""

    @_guard
    def Version(self, request: pb.VersionRequest, context: grpc.ServicerContext) -> pb.VersionResponse:
        return pb.VersionResponse(version="0.1.0", runtime_name="cri-net", runtime_version=__version__,
                                  runtime_api_version="v1")

    @_guard
    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusResponse:
        adaptor = self.manager.adaptor
        ready = adaptor.ready()
        network = pb.RuntimeCondition(type="NetworkReady", status=ready)
        if not ready:
            network.reason = "NetworkPluginNotReady"
            network.message = f"Network plugin returns error: cni config uninitialized ({adaptor.state().conf_dir})"
        elif self.readiness is not None and not self.readiness.ready():  # agree with /readyz
            network.status = False
            network.reason = "NetworkPluginNotReady"
            network.message = f"cri-net serve is not ready: {self.readiness.reason()}"
        else:
            reload_error = adaptor.state().last_reload_error
            if reload_error:  # still ready on the last good networks; crictl info shows why they are old
                network.reason = "ConfDirReloadFailed"
                network.message = clamp(f"serving the last good networks: {reload_error}", 1000)
        status = pb.RuntimeStatus(conditions=[pb.RuntimeCondition(type="RuntimeReady", status=True), network])
        info: dict[str, str] = {}
        if request.verbose:
            state = adaptor.state()
            info["config"] = json.dumps({
                "confDir": state.conf_dir,
                "networks": state.networks,
                "skipped": [{"file": path, "reason": reason} for path, reason in state.skipped],
                "lastReloadError": state.last_reload_error,
                "podCIDR": self.manager.pod_cidr or "",
            })
            # pods whose record cannot be read: their state is unknown and they are left alone
            unreadable = sorted(self.manager.store.unreadable.items())
            info["unreadableSandboxes"] = json.dumps([{"id": clamp(i, 200), "problem": clamp(why, 1000)}
                                                      for i, why in unreadable[:MAX_LISTED_PROBLEMS]])
            if len(unreadable) > MAX_LISTED_PROBLEMS:
                info["unreadableSandboxesOmitted"] = str(len(unreadable) - MAX_LISTED_PROBLEMS)
        return pb.StatusResponse(status=status, info=info)

    @_gated("setup")
    @_guard
    def RunPodSandbox(self, request: pb.RunPodSandboxRequest, context: grpc.ServicerContext) -> pb.RunPodSandboxResponse:
        if not request.HasField("config") or not request.config.HasField("metadata"):
            raise InvalidRequestError("config.metadata", "required")
        return pb.RunPodSandboxResponse(pod_sandbox_id=self.manager.run(_pod_request(request),
                                                                         still_wanted=context.is_active))

    @_gated("teardown")
    @_guard
    def StopPodSandbox(self, request: pb.StopPodSandboxRequest, context: grpc.ServicerContext) -> pb.StopPodSandboxResponse:
        self.manager.stop(request.pod_sandbox_id)
        return pb.StopPodSandboxResponse()

    @_gated("teardown")
    @_guard
    def RemovePodSandbox(self, request: pb.RemovePodSandboxRequest,
                         context: grpc.ServicerContext) -> pb.RemovePodSandboxResponse:
        self.manager.remove(request.pod_sandbox_id)
        return pb.RemovePodSandboxResponse()

    @_guard
    def PodSandboxStatus(self, request: pb.PodSandboxStatusRequest,
                         context: grpc.ServicerContext) -> pb.PodSandboxStatusResponse:
        view = self.manager.status(request.pod_sandbox_id)
        r = view.record
        mode = pb.NODE if r.host_network else pb.POD
        status = pb.PodSandboxStatus(
            id=r.id, metadata=_metadata(r), state=_STATES.get(r.state, pb.SANDBOX_NOTREADY), created_at=r.created_at,
            network=pb.PodSandboxNetworkStatus(ip=view.ip, additional_ips=[pb.PodIP(ip=i) for i in view.additional_ips]),
            linux=pb.LinuxPodSandboxStatus(namespaces=pb.Namespace(options=pb.NamespaceOption(network=mode))),
            labels=r.labels, annotations=r.annotations, runtime_handler=r.runtime_handler)
        info: dict[str, str] = {}
        if request.verbose:
            planes = self.manager.adaptor.cached_attachments(r.id)
            info["netns"] = json.dumps(r.netns_path)
            info["planes"] = json.dumps([res.model_dump() for res in view.results])
            info["cniResults"] = json.dumps({f"{a.network}/{a.ifname}": a.result for a in planes})
            info["cniArgs"] = json.dumps({f"{a.network}/{a.ifname}": a.cni_args for a in planes})
            info["capabilityArgs"] = json.dumps({f"{a.network}/{a.ifname}": a.capability_args for a in planes})
            info[NETWORK_STATUS_KEY] = json.dumps(view.network_status)
        return pb.PodSandboxStatusResponse(status=status, info=info, timestamp=time.time_ns())

    @_guard
    def ListPodSandbox(self, request: pb.ListPodSandboxRequest, context: grpc.ServicerContext) -> pb.ListPodSandboxResponse:
        f = request.filter
        state = None
        if f.HasField("state"):
            state = "READY" if f.state.state == pb.SANDBOX_READY else "NOTREADY"
        records = self.manager.list(f.id, state, dict(f.label_selector))
        items = [pb.PodSandbox(id=r.id, metadata=_metadata(r), state=_STATES.get(r.state, pb.SANDBOX_NOTREADY),
                               created_at=r.created_at, labels=r.labels, annotations=r.annotations,
                               runtime_handler=r.runtime_handler) for r in records]
        trimmed = fit_list(items, LIST_BUDGET)
        if trimmed:
            kv(log, logging.WARNING, "ListPodSandbox answer over budget: metadata omitted from some pods",
               pods=len(items), trimmed=trimmed, budget=LIST_BUDGET)
        return pb.ListPodSandboxResponse(items=items)

    @_guard
    def UpdateRuntimeConfig(self, request: pb.UpdateRuntimeConfigRequest,
                            context: grpc.ServicerContext) -> pb.UpdateRuntimeConfigResponse:
        self.manager.update_pod_cidr(request.runtime_config.network_config.pod_cidr)
        return pb.UpdateRuntimeConfigResponse()


for _name in pb.DESCRIPTOR.services_by_name["RuntimeService"].methods_by_name:
    if _name not in SERVED:
        setattr(RuntimeService, _name, _unimplemented(_name))


class ImageService(pb_grpc.ImageServiceServicer):
    """cri-net manages no images: every ImageService RPC is UNIMPLEMENTED."""


for _name in pb.DESCRIPTOR.services_by_name["ImageService"].methods_by_name:
    setattr(ImageService, _name, _unimplemented(_name))
