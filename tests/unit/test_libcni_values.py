"""libcni's value types (plain classes, not pydantic or dataclasses, so a short-lived
`cri-net cni` does not pay for building them) behave as the frozen models they replaced:
immutable, compared by value, copied with changes; and libcni's lazy logger."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cri_net.libcni import (CacheRecord, GCAttachment, NetConf, NetworkAttachment, PluginArgs, PluginConfig,
                            RuntimeConf, conf_list_from_bytes, parse_result)
from cri_net.libcni.cache import decode_record
from cri_net.libcni.jsonshape import FieldError


def test_values_are_immutable_and_compared_by_their_fields() -> None:
    rt = RuntimeConf("ctr1", "/run/netns/x", "eth1", (("K", "V"),), {"portMappings": []})
    assert rt == RuntimeConf(container_id="ctr1", netns="/run/netns/x", ifname="eth1", args=(("K", "V"),),
                             capability_args={"portMappings": []})
    assert rt != RuntimeConf("ctr1", "/run/netns/x", "eth0", (("K", "V"),), {"portMappings": []})
    assert GCAttachment("c", "eth0") != RuntimeConf("c", "", "eth0")  # another type is never equal
    with pytest.raises(AttributeError):
        rt.ifname = "eth0"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del rt.netns
    assert hash(GCAttachment("c", "eth0")) == hash(GCAttachment("c", "eth0"))
    assert "container_id='ctr1'" in repr(rt) and "ifname='eth1'" in repr(rt)


def test_replace_copies_with_changes_and_refuses_unknown_fields() -> None:
    args = PluginArgs("ADD", "c", "/n", "eth0", (), ("/opt/cni/bin",))
    other = args.replace(command="DEL")
    assert (other.command, args.command) == ("DEL", "ADD")
    assert other.path == args.path
    with pytest.raises(TypeError, match="no field 'cmd'"):
        args.replace(cmd="DEL")


def test_a_network_list_keeps_its_constructor_and_dict() -> None:
    net = conf_list_from_bytes(b'{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a","capabilities":{"x":true}}]}')
    again = type(net)(**net.__dict__)
    assert again == net and again.capabilities == frozenset({"x"})
    renamed = net.replace(name="m")
    assert (renamed.name, net.name, renamed.plugins) == ("m", "n", net.plugins)


def test_netconf_keeps_unknown_keys_as_extra() -> None:
    plugin = conf_list_from_bytes(b'{"name":"n","plugins":[{"type":"bridge","bridge":"br0","ipam":{"type":"x"}}]}').plugins[0]
    assert isinstance(plugin, PluginConfig)
    net = plugin.network
    assert net.extra == net.model_extra == {"bridge": "br0", "ipam": {"type": "x"}}
    assert net.bridge == "br0"  # an extra key read as an attribute, as the pydantic model allowed
    with pytest.raises(AttributeError):
        net.nothing  # noqa: B018
    assert net.model_copy(update={"type": ""}).type == "" and net.type == "bridge"
    assert net == NetConf.from_dict({"type": "bridge", "bridge": "br0", "ipam": {"type": "x"}})
    assert net != NetConf.from_dict({"type": "bridge", "bridge": "br1", "ipam": {"type": "x"}})


@pytest.mark.parametrize(("doc", "where", "reason"), [
    ({"type": 5}, "type", "must be a string, not number"),
    ({"type": "x", "capabilities": {"a": "yes"}}, "capabilities.a", "must be a boolean, not string"),
    ({"type": "x", "capabilities": []}, "capabilities", "must be an object, not array"),
    ({"type": "x", "name": None}, "name", "must be a string, not null"),
])
def test_netconf_names_the_bad_field(doc, where: str, reason: str) -> None:
    with pytest.raises(FieldError) as info:
        NetConf.from_dict(doc)
    assert (info.value.where, info.value.reason) == (where, reason)


def test_result_errors_name_the_field_path() -> None:
    with pytest.raises(Exception) as info:
        parse_result({"cniVersion": "1.1.0", "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.0.0.0/8", "table": "main"}]})
    assert str(info.value) == "failed to decode 1.1.0 result: routes.1.table: must be an integer, not string"
    with pytest.raises(Exception) as info:
        parse_result({"cniVersion": "1.0.0", "interfaces": [{"mac": "aa"}]})
    assert str(info.value) == "failed to decode 1.0.0 result: interfaces.0.name: missing"


def test_cache_record_checks_what_a_file_holds() -> None:
    rec = CacheRecord(container_id="c", config="eyJhIjoxfQ==", ifname="eth0", network_name="n",
                      cni_args=[["K", "V"]], capability_args=None, result=None, owner=7)
    assert (rec.config, rec.cni_args, rec.capability_args, rec.result, rec.owner) == (b'{"a":1}', [("K", "V")], {}, {}, "")
    for bad in ({"container_id": 5}, {"config": "not base64!"}, {"config": 3}, {"cni_args": [["K"]]},
                {"cni_args": "K=V"}, {"capability_args": []}, {"result": "x"}, {"netns": None}):
        with pytest.raises(ValueError):
            CacheRecord(**bad)
    assert decode_record(b'{"kind":"cniCacheV1","containerId":"c","cniArgs":[["K",1]]}') is None
    assert decode_record(b'{"kind":"cniCacheV1","containerId":"c","cniArgs":null,"x":1}') == CacheRecord(container_id="c")
    att = NetworkAttachment("c", "n", "eth0", b"{}")
    assert (att.capability_args, att.owner, att.cni_args) == ({}, "", ())


def test_libcni_logs_without_importing_logging_until_a_record_counts() -> None:
    """Below WARNING nothing is emitted while nothing has configured logging, so the lazy
    logger drops such records without importing it; a WARNING imports it and is logged."""
    code = """
import sys
from cri_net.libcni.logfields import DEBUG, INFO, WARNING, LazyLogger, configure_on_first_use, kv
log = LazyLogger("cri_net.libcni")
kv(log, DEBUG, "quiet"); kv(log, INFO, "quiet")
assert "logging" not in sys.modules
configure_on_first_use(lambda: print("setup ran", file=sys.stderr), WARNING)
kv(log, INFO, "still quiet")
assert "logging" not in sys.modules
kv(log, WARNING, "loud", a=1)
assert "logging" in sys.modules
import logging
assert log.logger is logging.getLogger("cri_net.libcni")
configure_on_first_use(lambda: print("runs at once", file=sys.stderr), WARNING)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["setup ran", "loud", "runs at once"]
