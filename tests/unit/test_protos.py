"""The CRI runtime.v1 stubs: up to date with protos/, and wire-compatible with upstream.

Expected names and numbers below are taken from upstream k8s.io/cri-api v0.32.3
(Kubernetes v1.32.3), pkg/apis/runtime/v1/api.proto.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from cri_net.cri.pb.runtime.v1 import api_pb2, api_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_stubs_are_current():
    stale = _load_generator().stale_files()
    assert stale == [], f"stale generated files {stale}; run .venv/bin/python scripts/gen_protos.py"


def test_file_descriptor_identity():
    assert api_pb2.DESCRIPTOR.package == "runtime.v1"
    assert api_pb2.DESCRIPTOR.name == "runtime/v1/api.proto"
    assert api_pb2.PodSandboxConfig.__module__ == "cri_net.cri.pb.runtime.v1.api_pb2"


# Every field (name -> number) of the messages cri-net serves; compared exactly,
# so a missing, extra or renumbered field fails.
UPSTREAM_FIELDS: dict[str, dict[str, int]] = {
    "VersionRequest": {"version": 1},
    "VersionResponse": {"version": 1, "runtime_name": 2, "runtime_version": 3, "runtime_api_version": 4},
    "DNSConfig": {"servers": 1, "searches": 2, "options": 3},
    "PortMapping": {"protocol": 1, "container_port": 2, "host_port": 3, "host_ip": 4},
    "NamespaceOption": {"network": 1, "pid": 2, "ipc": 3, "target_id": 4, "userns_options": 5},
    "UserNamespace": {"mode": 1, "uids": 2, "gids": 3},
    "IDMapping": {"host_id": 1, "container_id": 2, "length": 3},
    "Int64Value": {"value": 1},
    "LinuxSandboxSecurityContext": {
        "namespace_options": 1, "selinux_options": 2, "run_as_user": 3, "readonly_rootfs": 4,
        "supplemental_groups": 5, "privileged": 6, "seccomp_profile_path": 7, "run_as_group": 8,
        "seccomp": 9, "apparmor": 10, "supplemental_groups_policy": 11,
    },
    "LinuxPodSandboxConfig": {
        "cgroup_parent": 1, "security_context": 2, "sysctls": 3, "overhead": 4, "resources": 5,
    },
    "PodSandboxMetadata": {"name": 1, "uid": 2, "namespace": 3, "attempt": 4},
    "PodSandboxConfig": {
        "metadata": 1, "hostname": 2, "log_directory": 3, "dns_config": 4, "port_mappings": 5,
        "labels": 6, "annotations": 7, "linux": 8, "windows": 9,
    },
    "RunPodSandboxRequest": {"config": 1, "runtime_handler": 2},
    "RunPodSandboxResponse": {"pod_sandbox_id": 1},
    "StopPodSandboxRequest": {"pod_sandbox_id": 1},
    "StopPodSandboxResponse": {},
    "RemovePodSandboxRequest": {"pod_sandbox_id": 1},
    "RemovePodSandboxResponse": {},
    "PodSandboxStatusRequest": {"pod_sandbox_id": 1, "verbose": 2},
    "PodIP": {"ip": 1},
    "PodSandboxNetworkStatus": {"ip": 1, "additional_ips": 2},
    "Namespace": {"options": 2},
    "LinuxPodSandboxStatus": {"namespaces": 1},
    "PodSandboxStatus": {
        "id": 1, "metadata": 2, "state": 3, "created_at": 4, "network": 5, "linux": 6,
        "labels": 7, "annotations": 8, "runtime_handler": 9,
    },
    "PodSandboxStatusResponse": {"status": 1, "info": 2, "containers_statuses": 3, "timestamp": 4},
    "PodSandboxStateValue": {"state": 1},
    "PodSandboxFilter": {"id": 1, "state": 2, "label_selector": 3},
    "ListPodSandboxRequest": {"filter": 1},
    "PodSandbox": {
        "id": 1, "metadata": 2, "state": 3, "created_at": 4, "labels": 5, "annotations": 6,
        "runtime_handler": 7,
    },
    "ListPodSandboxResponse": {"items": 1},
    "NetworkConfig": {"pod_cidr": 1},
    "RuntimeConfig": {"network_config": 1},
    "UpdateRuntimeConfigRequest": {"runtime_config": 1},
    "UpdateRuntimeConfigResponse": {},
    "RuntimeCondition": {"type": 1, "status": 2, "reason": 3, "message": 4},
    "RuntimeStatus": {"conditions": 1},
    "StatusRequest": {"verbose": 1},
    "StatusResponse": {"status": 1, "info": 2, "runtime_handlers": 3, "features": 4},
    "RuntimeHandler": {"name": 1, "features": 2},
    "RuntimeHandlerFeatures": {"recursive_read_only_mounts": 1, "user_namespaces": 2},
    "RuntimeFeatures": {"supplemental_groups_policy": 1},
}


@pytest.mark.parametrize("message", sorted(UPSTREAM_FIELDS))
def test_field_numbers_match_upstream(message):
    desc = api_pb2.DESCRIPTOR.message_types_by_name[message]
    assert {f.name: f.number for f in desc.fields} == UPSTREAM_FIELDS[message]


def _field(message: str, name: str) -> FieldDescriptor:
    return api_pb2.DESCRIPTOR.message_types_by_name[message].fields_by_name[name]


def _is_repeated(field: FieldDescriptor) -> bool:
    if hasattr(field, "is_repeated"):  # protobuf >= 6 (label was removed in 7)
        return field.is_repeated
    return field.label == FieldDescriptor.LABEL_REPEATED


@pytest.mark.parametrize(
    ("message", "name", "type_name", "repeated"),
    [
        ("PodSandboxConfig", "port_mappings", "PortMapping", True),
        ("PodSandboxConfig", "dns_config", "DNSConfig", False),
        ("PodSandboxStatus", "network", "PodSandboxNetworkStatus", False),
        ("PodSandboxStatus", "state", "PodSandboxState", False),
        ("PodSandboxNetworkStatus", "additional_ips", "PodIP", True),
        ("LinuxSandboxSecurityContext", "run_as_group", "Int64Value", False),
        ("NamespaceOption", "network", "NamespaceMode", False),
        ("Namespace", "options", "NamespaceOption", False),
        ("RuntimeStatus", "conditions", "RuntimeCondition", True),
        ("PortMapping", "protocol", "Protocol", False),
    ],
)
def test_field_types_match_upstream(message, name, type_name, repeated):
    field = _field(message, name)
    target = field.message_type or field.enum_type
    assert target.full_name == f"runtime.v1.{type_name}"
    assert _is_repeated(field) is repeated


def test_maps_and_scalars():
    for message, name in [("PodSandboxConfig", "labels"), ("PodSandboxConfig", "annotations"),
                          ("PodSandboxStatus", "annotations"), ("PodSandboxFilter", "label_selector"),
                          ("LinuxPodSandboxConfig", "sysctls"), ("StatusResponse", "info")]:
        assert _field(message, name).message_type.GetOptions().map_entry, (message, name)
    assert _field("PortMapping", "host_port").type == FieldDescriptor.TYPE_INT32
    assert _field("PodSandboxMetadata", "attempt").type == FieldDescriptor.TYPE_UINT32
    assert _field("PodSandboxStatus", "created_at").type == FieldDescriptor.TYPE_INT64
    assert _field("RuntimeCondition", "status").type == FieldDescriptor.TYPE_BOOL


@pytest.mark.parametrize(
    ("enum", "values"),
    [
        ("NamespaceMode", {"POD": 0, "CONTAINER": 1, "NODE": 2, "TARGET": 3}),
        ("PodSandboxState", {"SANDBOX_READY": 0, "SANDBOX_NOTREADY": 1}),
        ("Protocol", {"TCP": 0, "UDP": 1, "SCTP": 2}),
        ("ContainerState", {"CONTAINER_CREATED": 0, "CONTAINER_RUNNING": 1,
                            "CONTAINER_EXITED": 2, "CONTAINER_UNKNOWN": 3}),
        ("SupplementalGroupsPolicy", {"Merge": 0, "Strict": 1}),
    ],
)
def test_enum_values_match_upstream(enum, values):
    desc = api_pb2.DESCRIPTOR.enum_types_by_name[enum]
    assert {v.name: v.number for v in desc.values} == values


RUNTIME_RPCS = [
    "Version",
    "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus", "ListPodSandbox",
    "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "ListContainers",
    "ContainerStatus", "UpdateContainerResources", "ReopenContainerLog",
    "ExecSync", "Exec", "Attach", "PortForward",
    "ContainerStats", "ListContainerStats", "PodSandboxStats", "ListPodSandboxStats",
    "UpdateRuntimeConfig", "Status", "CheckpointContainer", "GetContainerEvents",
    "ListMetricDescriptors", "ListPodSandboxMetrics", "RuntimeConfig",
]
IMAGE_RPCS = ["ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"]


@pytest.mark.parametrize(("service", "rpcs"), [("RuntimeService", RUNTIME_RPCS),
                                               ("ImageService", IMAGE_RPCS)])
def test_service_rpcs_match_upstream(service, rpcs):
    desc = api_pb2.DESCRIPTOR.services_by_name[service]
    assert desc.full_name == f"runtime.v1.{service}"
    assert [m.name for m in desc.methods] == rpcs
    for rpc in ("RunPodSandbox", "PodSandboxStatus", "Status") if service == "RuntimeService" else ():
        method = desc.methods_by_name[rpc]
        assert method.input_type.name == f"{rpc}Request"
        assert method.output_type.name == f"{rpc}Response"
    servicer = getattr(api_pb2_grpc, f"{service}Servicer")
    stub = getattr(api_pb2_grpc, f"{service}Stub")
    assert callable(getattr(api_pb2_grpc, f"add_{service}Servicer_to_server"))
    for rpc in rpcs:
        assert callable(getattr(servicer, rpc)), rpc
    assert stub is not None


def test_streaming_shape():
    desc = api_pb2.DESCRIPTOR.services_by_name["RuntimeService"]
    streaming = [m.name for m in desc.methods if m.client_streaming or m.server_streaming]
    assert streaming == ["GetContainerEvents"]
    assert desc.methods_by_name["GetContainerEvents"].server_streaming


def test_wire_round_trip():
    req = api_pb2.RunPodSandboxRequest(
        config=api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name="p", uid="u", namespace="ns", attempt=1),
            port_mappings=[api_pb2.PortMapping(protocol=api_pb2.UDP, container_port=53,
                                               host_port=5353, host_ip="10.0.0.1")],
            annotations={"k": "v"},
        ),
        runtime_handler="runc",
    )
    data = req.SerializeToString(deterministic=True)
    # Field 2 (runtime_handler), wire type 2: tag byte 0x12, length 4.
    assert data.endswith(b"\x12\x04runc")
    assert api_pb2.RunPodSandboxRequest.FromString(data) == req
