"""Bad-input suite (issue 6): generated plugin output against libcni's exec and result decoding.

A CNI plugin is a separate program: whatever it prints on stdout, with whatever exit status,
libcni must turn into either a result or a `CNIError` carrying an integer code and naming the
plugin (`PluginError`: `plugin type="..." name="..." failed (add): ...`), and a failed ADD
must leave nothing in the cache dir. The plugin is the fake one (tests/fakeplugin), a real
executable run through the real exec path, scripted to print generated text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from badinput_strategies import deep_json, json_values, nasty_text, props, raw_json_text
from cri_net.libcni import CNIError, PluginError
from fakeplugin.harness import FakeCNI
from tests.reliability import record

SUITE = "bad-input"
AUDITED = "CNIError (int code) naming the plugin, or a valid result; cache dir empty after a failed ADD"

addresses = st.one_of(st.sampled_from(["10.22.0.5/16", "fd00::5/64", "10.22.0.5", "300.1.1.1/24", "", "x/24",
                                       "10.0.0.1/33", "10.0.0.0/8\n"]), nasty_text)
ip_entry = st.fixed_dictionaries({"address": addresses}, optional={
    "gateway": st.sampled_from(["10.22.0.1", "::1", "", "nope"]) | json_values,
    "interface": st.integers(-2, 5) | json_values, "version": st.sampled_from(["4", "6", "5"]) | json_values})
result_docs = st.fixed_dictionaries({}, optional={
    "cniVersion": st.sampled_from(["1.0.0", "0.4.0", "0.3.1", "0.2.0", "1.1.0", "", "9.9.9"]) | json_values,
    "interfaces": st.lists(st.fixed_dictionaries({"name": nasty_text}, optional={"mac": nasty_text,
                                                                                "sandbox": nasty_text})) | json_values,
    "ips": st.lists(ip_entry, max_size=3) | json_values,
    "routes": st.lists(st.fixed_dictionaries({"dst": addresses}, optional={"gw": json_values}), max_size=2)
    | json_values,
    "dns": st.fixed_dictionaries({}, optional={"nameservers": json_values, "search": json_values}) | json_values,
    "ip4": st.fixed_dictionaries({"ip": addresses}) | json_values,
})
error_docs = st.fixed_dictionaries({}, optional={
    "code": st.sampled_from([1, 7, 11, 50, 999, 0, -1, 2**40]) | json_values,
    "msg": nasty_text | json_values, "details": nasty_text | json_values, "cniVersion": json_values})
stdouts = st.one_of(
    result_docs.map(json.dumps), error_docs.map(json.dumps), raw_json_text, st.binary(max_size=64).map(
        lambda b: b.decode("latin-1")), st.just(""), st.sampled_from([deep_json(3000), "[" * 10_000, " " * 10]),
)


@pytest.fixture
def fake(fakecni: FakeCNI) -> FakeCNI:
    fakecni.install("good", "bad")
    return fakecni


def cache_entries(fake: FakeCNI) -> list[str]:
    results = fake.cache_dir / "results"
    return sorted(os.listdir(results)) if results.exists() else []


def check_failure(exc: BaseException, plugin: str, command: str) -> None:
    assert isinstance(exc, CNIError), f"{type(exc).__name__} escaped libcni: {exc!s:.200}"
    assert type(exc.code) is int, exc.code
    assert isinstance(exc, PluginError) and exc.plugin == plugin, f"error does not name plugin {plugin}: {exc!s:.200}"
    assert f'type="{plugin}"' in str(exc) and f"({command.lower()})" in str(exc), str(exc)[:200]


@props(ci=60, full=1500)
@given(stdout=stdouts, exit_code=st.sampled_from([0, 0, 1, 2, 127]), stderr=st.sampled_from(["", "boom\n", "\xff"]),
       chained=st.booleans())
def test_add_with_generated_plugin_output(fake: FakeCNI, stdout: str, exit_code: int, stderr: str,
                                          chained: bool) -> None:
    """ADD through a chain whose last plugin prints generated text (after a good one when
    `chained`): a result or a CNIError naming the bad plugin; nothing cached on failure."""
    record("plugin output: generated ADD stdout/exit status", runs=1, audited=AUDITED, suite=SUITE)
    fake.script("bad", "ADD", stdout=stdout, exit=exit_code, stderr=stderr)
    net = fake.conflist(*(["good"] if chained else []), "bad")
    cni = fake.cni(timeout=20)
    rt = fake.rt()
    try:
        result = cni.add_network_list(net, rt)
    except Exception as exc:  # noqa: BLE001 - the property is about what escapes
        check_failure(exc, "bad", "ADD")
        if exit_code != 0 and stdout.strip():
            try:
                doc = json.loads(stdout)
            except (ValueError, RecursionError):
                doc = None
            if isinstance(doc, dict) and type(doc.get("code")) is int and isinstance(doc.get("msg", ""), str) \
                    and isinstance(doc.get("details", ""), str):
                assert exc.code == doc["code"], (exc.code, doc)  # the plugin's own code is kept
        assert cache_entries(fake) == [], "a failed ADD left a cache file"
        return
    assert exit_code == 0
    json.dumps(result.to_dict(), allow_nan=False)
    assert cache_entries(fake) == ["net1-ctr1-eth0"]
    cni.del_network_list(net, rt)
    assert cache_entries(fake) == []


@props(ci=40, full=800)
@given(stdout=stdouts, exit_code=st.sampled_from([0, 1]), command=st.sampled_from(["DEL", "CHECK", "STATUS", "GC"]))
def test_other_commands_with_generated_plugin_output(fake: FakeCNI, stdout: str, exit_code: int, command: str) -> None:
    """DEL/CHECK/STATUS/GC ignore a successful plugin's stdout; a failing one is a CNIError
    naming it (GC reports one error listing the failures)."""
    record("plugin output: generated DEL/CHECK/STATUS/GC stdout", runs=1, audited=AUDITED, suite=SUITE)
    fake.script("bad", command, stdout=stdout, exit=exit_code)
    net = fake.conflist("bad", version="1.1.0")
    cni = fake.cni(timeout=20)
    call: dict[str, Any] = {"DEL": lambda: cni.del_network_list(net, fake.rt()),
                            "CHECK": lambda: cni.check_network_list(net, fake.rt()),
                            "STATUS": lambda: cni.status_network_list(net),
                            "GC": lambda: cni.gc_network_list(net, [])}
    try:
        call[command]()
    except Exception as exc:  # noqa: BLE001
        assert exit_code != 0, f"{command} failed on a plugin that succeeded: {exc}"
        if command == "GC":
            assert isinstance(exc, CNIError) and "bad" in str(exc), exc
        else:
            check_failure(exc, "bad", command)
        return
    assert exit_code == 0, f"{command} ignored exit status {exit_code}"


@props(ci=25, full=500)
@given(stdout=stdouts, exit_code=st.sampled_from([0, 1]))
def test_version_with_generated_plugin_output(fake: FakeCNI, stdout: str, exit_code: int) -> None:
    """VERSION answers: a PluginInfo with string versions, or a CNIError."""
    record("plugin output: generated VERSION stdout", runs=1, audited=AUDITED, suite=SUITE)
    fake.script("bad", "VERSION", stdout=stdout, exit=exit_code)
    try:
        info = fake.cni(timeout=20).version_info("bad")
    except Exception as exc:  # noqa: BLE001
        assert isinstance(exc, CNIError) and type(exc.code) is int, f"{type(exc).__name__}: {exc!s:.200}"
        return
    assert isinstance(info.cni_version, str) and all(isinstance(v, str) for v in info.supported_versions)


@pytest.mark.parametrize("stdout, exit_code", [(deep_json(3000), 0), ('{"code":' + "[" * 5000 + "]" * 5000 + "}", 1),
                                               ("[" * 100_000, 0)], ids=["deep-result", "deep-error", "unclosed"])
def test_deeply_nested_plugin_output_is_a_cni_error(fake: FakeCNI, stdout: str, exit_code: int) -> None:
    """The shrunk counterexamples: JSON nested past Python's recursion limit."""
    record("plugin output: generated ADD stdout/exit status", runs=1, audited=AUDITED, suite=SUITE)
    fake.script("bad", "ADD", stdout=stdout, exit=exit_code)
    with pytest.raises(Exception) as info:
        fake.cni(timeout=20).add_network_list(fake.conflist("bad"), fake.rt())
    check_failure(info.value, "bad", "ADD")
    assert cache_entries(fake) == []


def test_failed_add_keeps_existing_cache_of_other_attachments(fake: FakeCNI, tmp_path: Path) -> None:
    """A failed ADD of one attachment never touches another attachment's cache file."""
    record("plugin output: generated ADD stdout/exit status", runs=1, audited=AUDITED, suite=SUITE)
    cni = fake.cni(timeout=20)
    fake.script("bad", "ADD")  # derived result: succeeds
    cni.add_network_list(fake.conflist("bad"), fake.rt(container_id="ok"))
    before = (fake.cache_dir / "results" / "net1-ok-eth0").read_bytes()
    fake.script("bad", "ADD", stdout="garbage")
    with pytest.raises(CNIError):
        cni.add_network_list(fake.conflist("bad"), fake.rt(container_id="ctr1"))
    assert cache_entries(fake) == ["net1-ok-eth0"]
    assert (fake.cache_dir / "results" / "net1-ok-eth0").read_bytes() == before
