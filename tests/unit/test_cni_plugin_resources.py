"""cri-net-cni (issue 11): what one pod may claim on the node, through the real hook binary
and fake inner plugins: a host port another pod's cached attachment holds, and IP ranges
outside what the runtime (containerd's pod CIDR) or the network's allow-list allow."""

from __future__ import annotations

import json
from typing import Any

from test_cni_plugin import ANNOTATIONS, Node, node  # noqa: F401 - fixture

IPR = "cri-net.io/ip-ranges"
MAPPING = {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}


def other_pod(container: str) -> str:
    return f"IgnoreUnknown=1;K8S_POD_NAMESPACE=ns2;K8S_POD_NAME=thief;K8S_POD_INFRA_CONTAINER_ID={container};" \
           "K8S_POD_UID=uid-2"


def test_a_mapped_host_port_is_refused_to_another_pod(node: Node) -> None:
    node.standard(rich=True)
    node.add(node.conf(rc={"portMappings": [MAPPING]}), container="sb1", netns=str(node.live))
    for mapping in (MAPPING, {**MAPPING, "hostIP": "127.0.0.1", "containerPort": 81}):
        run = node.run("ADD", node.conf(rc={"portMappings": [mapping]}), container="sb2", netns=str(node.live),
                       args=other_pod("sb2"))
        err = run.error(7)
        assert "8080/tcp" in err["msg"] and "ns1/pod1" in err["msg"], err
    assert not [f for f in node.cache_files() if "-sb2-" in f], "the refused pod left a cache entry"
    # another protocol is another port
    udp = node.run("ADD", node.conf(rc={"portMappings": [{**MAPPING, "protocol": "udp"}]}), container="sb3",
                   netns=str(node.live), args=other_pod("sb3"))
    assert udp.code == 0, udp
    # once the holder is deleted, the port is free
    assert node.run("DEL", node.conf(), container="sb1", netns=str(node.live), inproc=True).code == 0
    node.add(node.conf(rc={"portMappings": [MAPPING]}), container="sb2", netns=str(node.live), args=other_pod("sb2"))


def _ranges(subnet: str) -> dict[str, Any]:
    return {ANNOTATIONS: {IPR: json.dumps([[{"subnet": subnet}]])}}


def test_ip_ranges_annotation_needs_the_operators_leave(node: Node) -> None:
    node.standard()
    for subnet in ("127.0.0.0/24", "10.0.5.0/24"):  # nothing allowed: no runtime ipRanges, no allow-list
        err = node.run("ADD", node.conf(rc=_ranges(subnet)), netns=str(node.live)).error(7)
        assert IPR in err["msg"] and subnet in err["msg"], err
    assert node.cache_files() == []
    # the network's allow-list lets a range inside it through to the plugin
    doc = json.loads((node.conf_dir / "10-net.conflist").read_text())
    doc["criNet"] = {"allowedIPRanges": ["10.0.0.0/16"]}
    node.write("10-net.conflist", json.dumps(doc))
    node.add(node.conf(rc=_ranges("10.0.5.0/24")), netns=str(node.live))
    [call] = [r for r in node.fake.calls(command="ADD") if r["name"] == "main"]
    assert json.loads(call["stdin"])["runtimeConfig"]["ipRanges"] == [[{"subnet": "10.0.5.0/24"}]]
    err = node.run("ADD", node.conf(rc=_ranges("10.1.0.0/24")), container="sb9", netns=str(node.live)).error(7)
    assert "outside the allowed ranges" in err["msg"], err
