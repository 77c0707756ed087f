"""A CRI client that behaves like crictl for the pod commands: Version first on every
connection (crictl refuses a runtime whose Version has an empty field), then the call.

Used by the tests, the benchmarks and anyone without crictl on the machine.
"""

from __future__ import annotations

import json
from typing import Any

import grpc

from .pb.runtime.v1 import api_pb2 as pb
from .pb.runtime.v1 import api_pb2_grpc as pb_grpc

MAX_MESSAGE = 16 * 1024 * 1024


class CRIClientError(RuntimeError):
    pass


class CRIClient:
    def __init__(self, endpoint: str, timeout: float = 30.0) -> None:
        target = endpoint if endpoint.startswith("unix://") else f"unix://{endpoint}"
        self.timeout = timeout
        self.channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", MAX_MESSAGE),
                                                              ("grpc.max_receive_message_length", MAX_MESSAGE)])
        self.runtime = pb_grpc.RuntimeServiceStub(self.channel)
        self.images = pb_grpc.ImageServiceStub(self.channel)
        self.version()  # what crictl does first on every connection

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "CRIClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def version(self) -> pb.VersionResponse:
        resp = self.runtime.Version(pb.VersionRequest(version="v1"), timeout=self.timeout)
        for field in ("version", "runtime_name", "runtime_version", "runtime_api_version"):
            if not getattr(resp, field):
                raise CRIClientError(f"Version response has an empty {field}")
        return resp

    def info(self) -> dict[str, Any]:
        """`crictl info`: status conditions plus the verbose info, decoded."""
        resp = self.runtime.Status(pb.StatusRequest(verbose=True), timeout=self.timeout)
        out: dict[str, Any] = {"status": {"conditions": [
            {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
            for c in resp.status.conditions]}}
        for key, value in resp.info.items():
            try:
                out[key] = json.loads(value)
            except ValueError:  # containerd puts plain strings there ("golang": "go1.19.8")
                out[key] = value
        return out

    def runp(self, config: pb.PodSandboxConfig | dict[str, Any], runtime_handler: str = "") -> str:
        """`crictl runp pod.json`: the pod config as a message or as crictl's JSON (dict)."""
        if isinstance(config, dict):
            from google.protobuf import json_format

            config = json_format.ParseDict(config, pb.PodSandboxConfig())
        resp = self.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=config, runtime_handler=runtime_handler),
                                          timeout=self.timeout)
        if not resp.pod_sandbox_id:
            raise CRIClientError("RunPodSandbox returned an empty id")
        return resp.pod_sandbox_id

    def inspectp(self, sandbox_id: str, verbose: bool = True) -> pb.PodSandboxStatusResponse:
        resp = self.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose),
                                             timeout=self.timeout)
        if not resp.HasField("status") or not resp.status.id:
            raise CRIClientError("PodSandboxStatus returned no status")
        return resp

    def pods(self, id_prefix: str = "", state: int | None = None,
             labels: dict[str, str] | None = None) -> list[pb.PodSandbox]:
        f = pb.PodSandboxFilter(id=id_prefix, label_selector=labels or {})
        if state is not None:
            f.state.state = state
        return list(self.runtime.ListPodSandbox(pb.ListPodSandboxRequest(filter=f), timeout=self.timeout).items)

    def stopp(self, sandbox_id: str) -> None:
        self.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self.timeout)

    def rmp(self, sandbox_id: str) -> None:
        self.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self.timeout)
