"""cri_net.libcni.conf: finding, parsing and looking up network configuration files.

Behaviour spec: /work/shared/reference/libcni-behaviour.md section 1. Go reference: libcni/conf.go
(libcni v1.3): ConfFiles, NetworkPluginConfFromBytes, NetworkConfFromBytes, NetworkConfFromFile,
NetworkPluginConfsFromFiles, LoadNetworkConf, ConfListFromConf, InjectConf.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cri_net.libcni import conf
from cri_net.libcni.conf import (
    NetworkConfigList,
    PluginConfig,
    SkippedFile,
    conf_files,
    conf_list_from_bytes,
    conf_list_from_conf,
    conf_list_from_file,
    inject,
    load_conf_list,
    load_file,
    plugin_conf_from_bytes,
    plugin_conf_from_file,
)
from cri_net.libcni.errors import ConfigError, ErrorCode, NetworkNotFoundError, NoConfigsFoundError


def write(path: Path, content: str | bytes | dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, dict):
        content = json.dumps(content)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def conflist(name: str, *types: str, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"cniVersion": version, "name": name, **extra}
    if types:
        doc["plugins"] = [{"type": t} for t in types]
    return doc


def config_error(func, *args, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        func(*args, **kwargs)
    assert info.value.code == ErrorCode.INVALID_NETWORK_CONFIG == 7
    return info.value


# =========================================================================== conf_files


def test_conf_files_sorted_exact_extensions(tmp_path: Path) -> None:
    names = ["b.conf", "a.conflist", "c.json", "99-z.conf", "00-a.json", "d.conf.bak", "e.CONF", "f.Conflist",
             "g.conflistx", "h.jsonc", "conf", "noext", "i.conf~", "j.yaml"]
    for n in names:
        write(tmp_path / n, "{}")
    (tmp_path / "sub.conf").mkdir()  # sub-directories skipped even with a matching name
    (tmp_path / "dir.conflist").mkdir()
    got = conf_files(str(tmp_path))
    assert got == [str(tmp_path / n) for n in ["00-a.json", "99-z.conf", "a.conflist", "b.conf", "c.json"]]


@pytest.mark.parametrize(
    ("exts", "expected"),
    [
        ((".conflist",), ["a.conflist"]),
        ((".conf",), ["b.conf"]),
        ((".conf", ".json"), ["b.conf", "c.json"]),
        ([".json"], ["c.json"]),
        ((), []),
    ],
)
def test_conf_files_extension_filter(tmp_path: Path, exts, expected: list[str]) -> None:
    for n in ["b.conf", "a.conflist", "c.json"]:
        write(tmp_path / n, "{}")
    assert conf_files(str(tmp_path), exts) == [str(tmp_path / n) for n in expected]


def test_conf_files_sort_is_by_byte_order(tmp_path: Path) -> None:
    names = ["B.conf", "a.conf", "10-x.conf", "9-x.conf", "_.conf", "é.conf"]
    for n in names:
        write(tmp_path / n, "{}")
    assert [os.path.basename(p) for p in conf_files(str(tmp_path))] == sorted(names, key=lambda s: s.encode())


def test_conf_files_missing_dir_is_empty(tmp_path: Path) -> None:
    assert conf_files(str(tmp_path / "nope")) == []
    assert conf_files(str(tmp_path / "nope" / "deeper"), (".conf",)) == []


def test_conf_files_empty_dir(tmp_path: Path) -> None:
    assert conf_files(str(tmp_path)) == []


def test_conf_files_not_a_directory_is_an_error(tmp_path: Path) -> None:
    f = write(tmp_path / "file", "{}")
    err = config_error(conf_files, str(f))
    assert str(f) in str(err)


def test_conf_files_symlink_to_file_included(tmp_path: Path) -> None:
    target = write(tmp_path / "real" / "x.txt", "{}")
    (tmp_path / "link.conf").symlink_to(target)
    (tmp_path / "dirlink.conf").symlink_to(tmp_path / "real")
    assert conf_files(str(tmp_path)) == [str(tmp_path / "link.conf")]


# =========================================================================== plugin_conf_from_bytes


def test_plugin_conf_valid() -> None:
    text = '{"cniVersion":"0.4.0","name":"net","type":"bridge","capabilities":{"portMappings":true,"ips":false},"x":1}'
    p = plugin_conf_from_bytes(("\n  " + text + "\n").encode())
    assert isinstance(p, PluginConfig)
    assert p.type == "bridge" and p.network.type == "bridge"
    assert p.network.name == "net" and p.network.cniVersion == "0.4.0"
    assert p.network.capabilities == {"portMappings": True, "ips": False}
    assert p.raw == text  # surrounding whitespace stripped, nothing else touched


@pytest.mark.parametrize("data", ['{"type":"x"}', b'{"type":"x"}'])
def test_plugin_conf_name_and_version_optional(data: Any) -> None:
    p = plugin_conf_from_bytes(data)
    assert (p.network.name, p.network.cniVersion, p.network.capabilities) == ("", "", {})


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ('{"name":"n"}', "error parsing configuration: missing 'type'"),
        ('{"name":"n","type":""}', "error parsing configuration: missing 'type'"),
        ("{}", "error parsing configuration: missing 'type'"),
        ('{"type":5}', "invalid 'type'"),
        ('{"type":null}', "invalid 'type'"),
        ('{"type":["bridge"]}', "invalid 'type'"),
        ('{"type":"x","name":5}', "invalid 'name'"),
        ('{"type":"x","cniVersion":1.0}', "invalid 'cniVersion'"),
        ('{"type":"x","capabilities":{"a":"yes"}}', "invalid 'capabilities.a'"),
        ('{"type":"x","capabilities":[]}', "invalid 'capabilities'"),
        ("[]", "not a JSON object"),
        ('"bridge"', "not a JSON object"),
        ("1", "not a JSON object"),
        ("null", "not a JSON object"),
        ('{"type":"x",}', "line 1 column 13"),
        ('{"type":"x"', "line 1 column 12"),
        ('{\n  "type": "x"\n  "name": "n"\n}', "line 3 column 3"),
        ("", "line 1 column 1"),
        ('{"type":"x","n":NaN}', "NaN"),
        ('{"type":"x","n":Infinity}', "Infinity"),
        ('{"type":"x","n":-Infinity}', "Infinity"),
        ('{"type":"x","cniVersion":"abc"}', "invalid cniVersion 'abc'"),
        ('{"type":"x","cniVersion":"9.9.9"}', "unsupported cniVersion '9.9.9'"),
        ('{"type":"x","cniVersion":"1.2.3.4"}', "too many parts"),
    ],
)
def test_plugin_conf_errors(data: str, fragment: str) -> None:
    err = config_error(plugin_conf_from_bytes, data)
    assert fragment in str(err)
    assert err.source is None


def test_plugin_conf_not_utf8() -> None:
    err = config_error(plugin_conf_from_bytes, b'{"type":"\xff"}')
    assert "utf-8" in str(err).lower()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"name":"n"}', "missing 'type'"),
        ("{bad", "line 1 column 2"),
        ('{"type":"x","cniVersion":"abc"}', "invalid cniVersion 'abc'"),
        ('{"type":"x","cniVersion":"9.9.9"}', "unsupported cniVersion '9.9.9'"),
    ],
)
def test_plugin_conf_from_file_errors_name_the_file(tmp_path: Path, content: str, fragment: str) -> None:
    path = write(tmp_path / "10-net.conf", content)
    err = config_error(plugin_conf_from_file, str(path))
    assert fragment in str(err)
    assert str(path) in str(err)
    assert err.source == str(path)


def test_plugin_conf_from_missing_file(tmp_path: Path) -> None:
    err = config_error(plugin_conf_from_file, str(tmp_path / "nope.conf"))
    assert str(tmp_path / "nope.conf") in str(err)
    assert "error reading" in str(err)


# =========================================================================== conf_list_from_bytes


def test_conf_list_valid() -> None:
    raw = (b'{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"bridge","capabilities":{"ips":true}},'
           b'{"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}]}')
    lst = conf_list_from_bytes(raw, source="/etc/cni/net.d/10-net.conflist")
    assert isinstance(lst, NetworkConfigList)
    assert lst.name == "net" and lst.cni_version == "1.0.0"
    assert lst.plugin_types == ["bridge", "portmap"]
    assert lst.raw == raw  # original bytes kept (Go's Bytes; what the cache stores)
    assert lst.source == "/etc/cni/net.d/10-net.conflist"
    assert lst.capabilities == frozenset({"ips", "portMappings"})
    assert (lst.disable_check, lst.disable_gc, lst.load_only_inlined_plugins) == (False, False, False)


def test_conf_list_from_str() -> None:
    lst = conf_list_from_bytes('{"name":"é","plugins":[{"type":"x"}]}')
    assert lst.name == "é" and lst.raw == '{"name":"é","plugins":[{"type":"x"}]}'.encode()
    assert lst.cni_version == ""  # cniVersion optional


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"plugins": [{"type": "x"}]}, "error parsing configuration list: no name"),
        ({"cniVersion": "1.0.0", "plugins": [{"type": "x"}]}, "no name"),
        ({"name": 5, "plugins": [{"type": "x"}]}, "invalid 'name'"),
        ({"name": None, "plugins": [{"type": "x"}]}, "invalid 'name'"),
        ({"name": ["n"], "plugins": [{"type": "x"}]}, "invalid 'name'"),
        ({"name": "n", "cniVersion": 1, "plugins": [{"type": "x"}]}, "invalid 'cniVersion'"),
        ({"name": "n", "cniVersion": 1.0, "plugins": [{"type": "x"}]}, "invalid 'cniVersion'"),
        ({"name": "n", "cniVersion": None, "plugins": [{"type": "x"}]}, "invalid 'cniVersion'"),
        ({"name": "n", "plugins": []}, "error parsing configuration list: no plugins in list"),
        ({"name": "n"}, "no plugins in list"),  # nothing inline and no fragments
        ({"name": "n", "plugins": None}, "plugins"),
        ({"name": "n", "plugins": {"type": "x"}}, "invalid 'plugins'"),
        ({"name": "n", "plugins": [{"name": "a"}]}, "failed to parse plugin config 0: error parsing configuration: missing 'type'"),
        ({"name": "n", "plugins": [{"type": "a"}, {"type": ""}]}, "failed to parse plugin config 1: "),
        ({"name": "n", "plugins": [{"type": "a"}, {"type": "b"}, {"x": 1}]}, "failed to parse plugin config 2: "),
        ({"name": "n", "plugins": [{"type": "a"}, {"type": 7}]}, "failed to parse plugin config 1: "),
        ({"name": "n", "plugins": [{"type": "a", "cniVersion": "abc"}]}, "failed to parse plugin config 0: "),
        ({"name": "n", "cniVersion": "abc", "plugins": [{"type": "x"}]}, "invalid cniVersion 'abc'"),
        ({"name": "n", "cniVersion": "9.9.9", "plugins": [{"type": "x"}]}, "unsupported cniVersion '9.9.9'"),
        ({"name": "n", "cniVersion": "1.2.3.4", "plugins": [{"type": "x"}]}, "too many parts"),
        ({"name": "n", "loadOnlyInlinedPlugins": True},
         "error parsing configuration list: `loadOnlyInlinedPlugins` is true, and no 'plugins' key"),
        ({"name": "n", "loadOnlyInlinedPlugins": "true"}, "`loadOnlyInlinedPlugins` is true, and no 'plugins' key"),
    ],
)
def test_conf_list_errors(doc: dict[str, Any], fragment: str) -> None:
    err = config_error(conf_list_from_bytes, json.dumps(doc).encode())
    assert fragment in str(err)


@pytest.mark.parametrize("item", ['"x"', "1", "null", "[]"])
def test_conf_list_plugin_not_an_object(item: str) -> None:
    err = config_error(conf_list_from_bytes, f'{{"name":"n","plugins":[{{"type":"a"}},{item}]}}')
    assert "plugins.1" in str(err) or "plugin config 1" in str(err)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[]", "error parsing configuration list: not a JSON object"),
        ('"x"', "not a JSON object"),
        ('{"name":"n",}', "error parsing configuration list: "),
        ('{"name":"n","plugins":[{"type":"a"}]', "line 1 column"),
        ('{"name":"n","plugins":[{"type":"a","v":NaN}]}', "NaN"),
        ('{"name":"n","mtu":Infinity,"plugins":[{"type":"a"}]}', "Infinity"),
    ],
)
def test_conf_list_decode_errors(text: str, fragment: str) -> None:
    assert fragment in str(config_error(conf_list_from_bytes, text))


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ('{"name":"n",}', "line 1 column 13 (char 12)"),
        ('{\n "name": "n"\n "plugins": []\n}', "line 3 column 2 (char 16)"),
    ],
)
def test_conf_list_decode_error_position(text: str, position: str) -> None:
    assert position in str(config_error(conf_list_from_bytes, text))


def test_conf_list_errors_name_the_source() -> None:
    err = config_error(conf_list_from_bytes, b'{"name":"n","cniVersion":"9.9.9","plugins":[{"type":"x"}]}',
                       source="/etc/cni/net.d/10-x.conflist")
    assert str(err).startswith("/etc/cni/net.d/10-x.conflist: ")
    assert err.source == "/etc/cni/net.d/10-x.conflist"
    err = config_error(conf_list_from_bytes, b'{"name":"n","plugins":[{"type":"a"},{}]}', source="/d/f.conflist")
    assert str(err) == "/d/f.conflist: failed to parse plugin config 1: error parsing configuration: missing 'type'"


BOOL_KEYS = ["disableCheck", "disableGC", "loadOnlyInlinedPlugins"]
ATTR = {"disableCheck": "disable_check", "disableGC": "disable_gc", "loadOnlyInlinedPlugins": "load_only_inlined_plugins"}


@pytest.mark.parametrize("key", BOOL_KEYS)
@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("true", True), ("false", False), ("TRUE", True), ("False", False),
     ("tRuE", True), ("FALSE", False)],
)
def test_conf_list_lenient_bools(key: str, value: Any, expected: bool) -> None:
    lst = conf_list_from_bytes(json.dumps({"name": "n", key: value, "plugins": [{"type": "a"}]}))
    assert getattr(lst, ATTR[key]) is expected
    for other in BOOL_KEYS:
        if other != key:
            assert getattr(lst, ATTR[other]) is False


@pytest.mark.parametrize("key", BOOL_KEYS)
@pytest.mark.parametrize("value", ["yes", "no", "1", "0", "", " true", 1, 0, 1.0, None, [], {}, ["true"]])
def test_conf_list_bad_bools_name_the_key(key: str, value: Any) -> None:
    err = config_error(conf_list_from_bytes, json.dumps({"name": "n", key: value, "plugins": [{"type": "a"}]}))
    assert key in str(err)
    assert str(err).startswith("error parsing configuration list: ")


@pytest.mark.parametrize(
    ("cni_version", "cni_versions", "expected"),
    [
        ("", ["0.3.1", "1.0.0"], "1.0.0"),
        ("", ["1.0.0", "0.3.1"], "1.0.0"),  # max, not last
        ("", ["0.3.0", "0.4.0", "0.3.1"], "0.4.0"),
        ("", ["1.0.0", "2.0.0"], "1.0.0"),  # above 1.1.0: dropped
        ("", ["1.1.0", "1.1.1", "5.0.0"], "1.1.0"),
        ("1.0.0", ["0.4.0"], "1.0.0"),  # cniVersion takes part in the choice
        ("0.3.1", ["1.1.0"], "1.1.0"),
        ("0.4.0", ["1.0.0", "2.0.0"], "1.0.0"),
        ("0.4.0", [], "0.4.0"),
        ("", [], ""),
        ("", ["2.0.0"], ""),  # nothing usable: like no version at all
    ],
)
def test_conf_list_cni_versions(cni_version: str, cni_versions: list[str], expected: str) -> None:
    doc: dict[str, Any] = {"name": "n", "cniVersions": cni_versions, "plugins": [{"type": "a"}]}
    if cni_version:
        doc["cniVersion"] = cni_version
    assert conf_list_from_bytes(json.dumps(doc)).cni_version == expected


def test_conf_list_cni_versions_downgrades_newer_cni_version() -> None:
    """BUG (medium): conf._pick_version validates `cniVersion` on its own before looking at
    `cniVersions`, so a config written for a newer spec that lists older fall-backs is rejected
    ("unsupported cniVersion '1.2.0'"). Go's NetworkConfFromBytes drops every version greater
    than version.Current() (including cniVersion) and picks the max of the rest: 1.1.0 here.
    That graceful downgrade is the whole point of spec 1.1.0's `cniVersions`."""
    doc = {"name": "n", "cniVersion": "1.2.0", "cniVersions": ["1.0.0", "1.1.0"], "plugins": [{"type": "a"}]}
    assert conf_list_from_bytes(json.dumps(doc)).cni_version == "1.1.0"


@pytest.mark.parametrize(
    ("versions", "fragment"),
    [
        (["1.0.0", "x"], "invalid cniVersions entry 'x' at index 1"),
        (["abc"], "invalid cniVersions entry 'abc' at index 0"),
        (["1.0.0.0"], "invalid cniVersions entry"),
        ([1], "invalid 'cniVersions.0'"),
        ([None], "invalid 'cniVersions.0'"),
        ("1.0.0", "invalid 'cniVersions'"),
        ({"v": "1.0.0"}, "invalid 'cniVersions'"),
        (["0.5.0"], "unsupported cniVersions '0.5.0'"),  # below current but not a version we speak
    ],
)
def test_conf_list_cni_versions_errors(versions: Any, fragment: str) -> None:
    doc = {"name": "n", "cniVersions": versions, "plugins": [{"type": "a"}]}
    err = config_error(conf_list_from_bytes, json.dumps(doc), source="/d/x.conflist")
    assert fragment in str(err)
    assert "/d/x.conflist" in str(err)


def test_conf_list_plugin_raw_is_exact_text() -> None:
    text = ('{"name":"n","cniVersion":"1.0.0","plugins":[ {"type" : "a", "big": 18446744073709551617, "f": 1.0e3},\n'
            '  {"type":"b","s":"\\u00e9\\n","nested":{"z":1,"a":[0.10,-0.0]}} ]}')
    lst = conf_list_from_bytes(text)
    assert [p.raw for p in lst.plugins] == [
        '{"type" : "a", "big": 18446744073709551617, "f": 1.0e3}',
        '{"type":"b","s":"\\u00e9\\n","nested":{"z":1,"a":[0.10,-0.0]}}',
    ]
    assert lst.plugins[1].network.model_extra == {"s": "é\n", "nested": {"z": 1, "a": [0.1, -0.0]}}


def test_conf_list_duplicate_plugins_key_last_wins() -> None:
    lst = conf_list_from_bytes('{"name":"n","plugins":[{"type":"a"}],"plugins":[{"type":"b"},{"type":"c"}]}')
    assert lst.plugin_types == ["b", "c"]
    assert [p.raw for p in lst.plugins] == ['{"type":"b"}', '{"type":"c"}']


def test_conf_list_extra_plugins_appended() -> None:
    extra = [plugin_conf_from_bytes('{"type":"frag1"}'), plugin_conf_from_bytes('{"type":"frag2"}')]
    lst = conf_list_from_bytes('{"name":"n","plugins":[{"type":"a"}]}', extra_plugins=extra)
    assert lst.plugin_types == ["a", "frag1", "frag2"]
    lst = conf_list_from_bytes('{"name":"n"}', extra_plugins=extra)  # no inline plugins: fragments only
    assert lst.plugin_types == ["frag1", "frag2"]
    lst = conf_list_from_bytes('{"name":"n","loadOnlyInlinedPlugins":true,"plugins":[{"type":"a"}]}',
                               extra_plugins=extra)
    assert lst.plugin_types == ["a"]
    assert lst.load_only_inlined_plugins is True


def test_conf_list_empty_plugins_is_error_even_with_fragments() -> None:
    extra = [plugin_conf_from_bytes('{"type":"frag"}')]
    err = config_error(conf_list_from_bytes, '{"name":"n","plugins":[]}', extra_plugins=extra)
    assert "no plugins in list" in str(err)


# =========================================================================== fragments


def test_fragments_appended_sorted(tmp_path: Path) -> None:
    path = write(tmp_path / "10-net.conflist", conflist("net", "bridge"))
    write(tmp_path / "net" / "20-c.conf", '{"type":"c"}')
    write(tmp_path / "net" / "10-b.conf", '{"type":"b", "big": 18446744073709551617}')
    write(tmp_path / "net" / "30-d.json", '{"type":"d"}')  # only *.conf
    write(tmp_path / "net" / "40-e.conflist", '{"type":"e"}')
    (tmp_path / "net" / "50-sub.conf").mkdir()
    write(tmp_path / "net" / "50-sub.conf" / "x.conf", '{"type":"x"}')  # not recursive
    write(tmp_path / "other" / "10-z.conf", '{"type":"z"}')  # another network's fragments
    lst = conf_list_from_file(str(path))
    assert lst.plugin_types == ["bridge", "b", "c"]
    assert lst.plugins[1].raw == '{"type":"b", "big": 18446744073709551617}'
    assert lst.raw == path.read_bytes()  # the list's own bytes, not the fragments
    assert lst.source == str(path)


def test_fragment_dir_is_the_network_name_not_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path / "10-file.conflist", conflist("netname", "a"))
    write(tmp_path / "10-file" / "1.conf", '{"type":"wrong"}')
    write(tmp_path / "netname" / "1.conf", '{"type":"right"}')
    assert conf_list_from_file(str(path)).plugin_types == ["a", "right"]


def test_fragments_only_list(tmp_path: Path) -> None:
    path = write(tmp_path / "10-net.conflist", conflist("net"))
    write(tmp_path / "net" / "b.conf", '{"type":"b"}')
    write(tmp_path / "net" / "a.conf", '{"type":"a","capabilities":{"portMappings":true}}')
    lst = conf_list_from_file(str(path))
    assert lst.plugin_types == ["a", "b"]
    assert lst.capabilities == frozenset({"portMappings"})


def test_fragments_ignored_with_load_only_inlined(tmp_path: Path) -> None:
    path = write(tmp_path / "10-net.conflist", conflist("net", "a", loadOnlyInlinedPlugins=True))
    write(tmp_path / "net" / "b.conf", '{"type":"b"}')
    lst = conf_list_from_file(str(path))
    assert lst.plugin_types == ["a"]


def test_broken_fragment_ignored_with_load_only_inlined(tmp_path: Path) -> None:
    """BUG (low): conf_list_from_file calls plugin_fragments() before it knows
    loadOnlyInlinedPlugins, so an unparsable `<dir>/<name>/*.conf` fails a list that says not to
    load fragments at all. Go's NetworkConfFromFile only reads fragments when
    !conf.LoadOnlyInlinedPlugins, so this list loads fine there."""
    path = write(tmp_path / "10-net.conflist", conflist("net", "a", loadOnlyInlinedPlugins=True))
    write(tmp_path / "net" / "b.conf", "{broken")
    assert conf_list_from_file(str(path)).plugin_types == ["a"]


def test_load_only_inlined_without_plugins_is_error(tmp_path: Path) -> None:
    path = write(tmp_path / "10-net.conflist", conflist("net", loadOnlyInlinedPlugins=True))
    write(tmp_path / "net" / "b.conf", '{"type":"b"}')
    err = config_error(conf_list_from_file, str(path))
    assert "`loadOnlyInlinedPlugins` is true, and no 'plugins' key" in str(err)
    assert str(path) in str(err)


def test_list_without_plugins_or_fragments_is_error(tmp_path: Path) -> None:
    path = write(tmp_path / "10-net.conflist", conflist("net"))
    (tmp_path / "net").mkdir()
    err = config_error(conf_list_from_file, str(path))
    assert "no plugins in list" in str(err)
    assert str(path) in str(err)


@pytest.mark.parametrize(("content", "fragment"), [("{bad", "line 1 column 2"), ('{"name":"x"}', "missing 'type'")])
def test_broken_fragment_is_error_naming_it(tmp_path: Path, content: str, fragment: str) -> None:
    path = write(tmp_path / "10-net.conflist", conflist("net", "a"))
    frag = write(tmp_path / "net" / "2.conf", content)
    write(tmp_path / "net" / "1.conf", '{"type":"ok"}')
    err = config_error(conf_list_from_file, str(path))
    assert str(frag) in str(err)
    assert fragment in str(err)


@pytest.mark.parametrize("name", ["a/b", "..", ".", ""])
def test_unsafe_network_name_reads_no_fragments(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / "conf" / "10-net.conflist", conflist(name, "a"))
    write(tmp_path / "conf" / "a" / "b" / "x.conf", '{"type":"leak"}')
    write(tmp_path / "x.conf", '{"type":"leak"}')
    write(tmp_path / "conf" / "x.conf", '{"type":"leak"}')
    assert conf_list_from_file(str(path)).plugin_types == ["a"]


# =========================================================================== conf_list_from_conf / load_file


def test_conf_list_from_conf_upconverts() -> None:
    text = '{"cniVersion":"0.3.1","name":"mynet","type":"bridge","big":18446744073709551617,"f":1.0e3,"ipam":{"b":1,"a":2}}'
    p = plugin_conf_from_bytes(text)
    lst = conf_list_from_conf(p, source="/d/10-mynet.conf")
    assert lst.name == "mynet" and lst.cni_version == "0.3.1"
    assert lst.plugin_types == ["bridge"]
    assert lst.plugins[0].raw == text
    assert lst.source == "/d/10-mynet.conf"
    assert json.loads(lst.raw) == {"cniVersion": "0.3.1", "name": "mynet", "plugins": [json.loads(text)]}
    assert text.encode() in lst.raw  # the plugin text itself is forwarded unchanged


@pytest.mark.parametrize(
    ("text", "name", "version"),
    [
        ('{"type":"loopback"}', "", ""),
        ('{"type":"loopback","name":"lo"}', "lo", ""),
        ('{"type":"loopback","cniVersion":"1.1.0"}', "", "1.1.0"),
    ],
)
def test_conf_list_from_conf_optional_fields(text: str, name: str, version: str) -> None:
    lst = conf_list_from_conf(plugin_conf_from_bytes(text))
    assert (lst.name, lst.cni_version, lst.plugin_types) == (name, version, ["loopback"])


@pytest.mark.parametrize("ext", [".conf", ".json"])
def test_load_file_single_conf(tmp_path: Path, ext: str) -> None:
    path = write(tmp_path / f"10-x{ext}", '{"cniVersion":"0.4.0","name":"x","type":"ptp"}\n')
    lst = load_file(str(path))
    assert (lst.name, lst.cni_version, lst.plugin_types, lst.source) == ("x", "0.4.0", ["ptp"], str(path))


def test_load_file_conflist_with_fragments(tmp_path: Path) -> None:
    path = write(tmp_path / "10-x.conflist", conflist("x", "a"))
    write(tmp_path / "x" / "1.conf", '{"type":"b"}')
    lst = load_file(str(path))
    assert lst.plugin_types == ["a", "b"] and lst.source == str(path)


def test_load_file_conflist_is_parsed_as_list(tmp_path: Path) -> None:
    # a single-plugin document saved as .conflist is a list without a name... or plugins
    path = write(tmp_path / "10-x.conflist", '{"cniVersion":"0.4.0","type":"ptp"}')
    assert "no name" in str(config_error(load_file, str(path)))
    # and a list saved as .conf is a plugin conf without a type
    path = write(tmp_path / "10-y.conf", json.dumps(conflist("y", "a")))
    assert "missing 'type'" in str(config_error(load_file, str(path)))


def test_load_file_missing(tmp_path: Path) -> None:
    for name in ["nope.conf", "nope.conflist"]:
        err = config_error(load_file, str(tmp_path / name))
        assert str(tmp_path / name) in str(err)


# =========================================================================== load_conf_list


def test_load_conf_list_conflists_before_single_confs(tmp_path: Path) -> None:
    write(tmp_path / "00-a.conf", {"cniVersion": "0.3.1", "name": "a", "type": "single"})
    write(tmp_path / "50-a.conflist", conflist("a", "fromlist"))
    lst = load_conf_list(str(tmp_path), "a")
    assert lst.plugin_types == ["fromlist"]
    assert lst.source == str(tmp_path / "50-a.conflist")


def test_load_conf_list_first_by_file_name_wins(tmp_path: Path) -> None:
    write(tmp_path / "20-dup.conflist", conflist("dup", "second"))
    write(tmp_path / "10-dup.conflist", conflist("dup", "first"))
    write(tmp_path / "30-dup.conf", {"name": "dup", "type": "s2"})
    write(tmp_path / "05-dup.json", {"name": "dup", "type": "s1"})
    assert load_conf_list(str(tmp_path), "dup").plugin_types == ["first"]
    # single confs: first by file name across .conf and .json
    os.remove(tmp_path / "20-dup.conflist")
    os.remove(tmp_path / "10-dup.conflist")
    assert load_conf_list(str(tmp_path), "dup").plugin_types == ["s1"]


def test_load_conf_list_single_conf_upconverted(tmp_path: Path) -> None:
    text = '{"cniVersion":"0.4.0","name":"single","type":"bridge","x":1.0e3}'
    path = write(tmp_path / "10-single.conf", "\n" + text + "\n")
    write(tmp_path / "05-other.conflist", conflist("other", "a"))
    lst = load_conf_list(str(tmp_path), "single")
    assert (lst.name, lst.cni_version, lst.plugin_types) == ("single", "0.4.0", ["bridge"])
    assert lst.plugins[0].raw == text
    assert lst.source == str(path)


def test_load_conf_list_conflist_with_fragments(tmp_path: Path) -> None:
    write(tmp_path / "10-net.conflist", conflist("net", "a"))
    write(tmp_path / "net" / "1.conf", '{"type":"b"}')
    assert load_conf_list(str(tmp_path), "net").plugin_types == ["a", "b"]


@pytest.mark.parametrize("setup", ["missing", "empty", "other-files"])
def test_load_conf_list_no_configs(tmp_path: Path, setup: str) -> None:
    conf_dir = tmp_path / "net.d"
    if setup != "missing":
        conf_dir.mkdir()
    if setup == "other-files":
        write(conf_dir / "README", "x")
        write(conf_dir / "10-x.conf.disabled", "{}")
        (conf_dir / "sub.conf").mkdir()
    with pytest.raises(NoConfigsFoundError) as info:
        load_conf_list(str(conf_dir), "x")
    assert str(info.value) == f"no net configurations found in {conf_dir}"
    assert info.value.code == 7
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize("files", [["10-a.conflist"], ["10-a.conf"], ["10-a.conflist", "20-b.json"]])
def test_load_conf_list_not_found(tmp_path: Path, files: list[str]) -> None:
    for i, f in enumerate(files):
        if f.endswith(".conflist"):
            write(tmp_path / f, conflist(f"n{i}", "a"))
        else:
            write(tmp_path / f, {"name": f"n{i}", "type": "a"})
    with pytest.raises(NetworkNotFoundError) as info:
        load_conf_list(str(tmp_path), "X")
    assert str(info.value) == f'no net configuration with name "X" in {tmp_path}'
    assert (info.value.name, info.value.conf_dir, info.value.code) == ("X", str(tmp_path), 7)


def test_load_conf_list_skips_bad_files_and_reports_them(tmp_path: Path) -> None:
    bad_list = write(tmp_path / "10-bad.conflist", "{not json")
    bad_version = write(tmp_path / "11-bad.conflist", conflist("good", "a", version="9.9.9"))
    good = write(tmp_path / "20-good.conflist", conflist("good", "fine"))
    skipped: list[SkippedFile] = []
    lst = load_conf_list(str(tmp_path), "good", skipped)
    assert lst.plugin_types == ["fine"] and lst.source == str(good)
    assert [s.path for s in skipped] == [str(bad_list), str(bad_version)]
    assert str(bad_list) in skipped[0].reason and "line 1 column 2" in skipped[0].reason
    assert "unsupported cniVersion '9.9.9'" in skipped[1].reason


def test_load_conf_list_skips_bad_single_confs(tmp_path: Path) -> None:
    write(tmp_path / "10-x.conflist", conflist("x", "a"))
    bad = write(tmp_path / "20-bad.conf", '{"name":"single"}')  # no type
    write(tmp_path / "30-single.json", {"name": "single", "type": "ok"})
    skipped: list[SkippedFile] = []
    lst = load_conf_list(str(tmp_path), "single", skipped)
    assert lst.plugin_types == ["ok"]
    assert skipped == [SkippedFile(str(bad), f"{bad}: error parsing configuration: missing 'type'")]


def test_load_conf_list_bad_files_without_report_list(tmp_path: Path) -> None:
    write(tmp_path / "10-bad.conflist", "[]")
    write(tmp_path / "20-good.conflist", conflist("good", "a"))
    assert load_conf_list(str(tmp_path), "good").plugin_types == ["a"]


def test_load_conf_list_only_bad_files_is_not_found(tmp_path: Path) -> None:
    write(tmp_path / "10-bad.conflist", "[]")
    write(tmp_path / "10-bad.conf", "{}")
    skipped: list[SkippedFile] = []
    with pytest.raises(NetworkNotFoundError):
        load_conf_list(str(tmp_path), "x", skipped)
    assert [os.path.basename(s.path) for s in skipped] == ["10-bad.conflist", "10-bad.conf"]


def test_load_conf_list_stops_at_the_match(tmp_path: Path) -> None:
    write(tmp_path / "10-a.conflist", conflist("a", "x"))
    write(tmp_path / "20-bad.conflist", "{")
    skipped: list[SkippedFile] = []
    load_conf_list(str(tmp_path), "a", skipped)
    assert skipped == []


# =========================================================================== inject and raw text


RAW_PLUGIN = (
    '{\n'
    '  "cniVersion": "0.3.1",\n'
    '  "type": "bridge",\n'
    '  "big": 18446744073709551617,\n'
    '  "neg": -18446744073709551617,\n'
    '  "floats": [1.0e3, 0.10, 1E-7, -0.0, 100.000],\n'
    '  "unicode": "é\\u00e9 中 😀 \\ud83d\\ude00",\n'
    '  "nested": {"z": {"y": 1, "b": [true, null]}, "a": "<&>"},\n'
    '  "name": "old"\n'
    '}'
)


def test_raw_text_preserved_in_plugin_config() -> None:
    p = plugin_conf_from_bytes(RAW_PLUGIN + "\n\n")
    assert p.raw == RAW_PLUGIN
    lst = conf_list_from_bytes('{"name":"n","plugins":[' + RAW_PLUGIN + "]}")
    assert lst.plugins[0].raw == RAW_PLUGIN


def test_inject_replaces_in_place_and_keeps_the_rest_verbatim() -> None:
    p = plugin_conf_from_bytes(RAW_PLUGIN)
    out = inject(p, {"name": "net", "cniVersion": "1.0.0", "prevResult": {"cniVersion": "1.0.0", "ips": []}})
    assert out == (
        '{"cniVersion":"1.0.0","type":"bridge","big":18446744073709551617,"neg":-18446744073709551617,'
        '"floats":[1.0e3, 0.10, 1E-7, -0.0, 100.000],"unicode":"é\\u00e9 中 😀 \\ud83d\\ude00",'
        '"nested":{"z": {"y": 1, "b": [true, null]}, "a": "<&>"},"name":"net",'
        '"prevResult":{"cniVersion":"1.0.0","ips":[]}}'
    )
    parsed = json.loads(out)
    assert parsed["big"] == 18446744073709551617
    assert list(parsed) == ["cniVersion", "type", "big", "neg", "floats", "unicode", "nested", "name", "prevResult"]
    assert list(parsed["nested"]) == ["z", "a"]
    # the original is untouched
    assert p.raw == RAW_PLUGIN


def test_inject_runtime_config_unicode_and_order() -> None:
    p = plugin_conf_from_bytes('{"type":"x"}')
    out = inject(p, {"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 8080}], "aliases": ["é"]}})
    assert out == '{"type":"x","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":8080}],"aliases":["é"]}}'


def test_inject_nothing_is_compact_copy() -> None:
    p = plugin_conf_from_bytes('{ "type" : "x" , "a" : [ 1 ] }')
    assert inject(p, {}) == '{"type":"x","a":[ 1 ]}'


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_literals_rejected_everywhere(literal: str, tmp_path: Path) -> None:
    config_error(plugin_conf_from_bytes, f'{{"type":"x","v":{literal}}}')
    config_error(conf_list_from_bytes, f'{{"name":"n","plugins":[{{"type":"x","v":[{literal}]}}]}}')
    path = write(tmp_path / "10-x.conf", f'{{"type":"x","name":"x","v":{literal}}}')
    skipped: list[SkippedFile] = []
    with pytest.raises(NetworkNotFoundError):
        load_conf_list(str(tmp_path), "x", skipped)
    assert [s.path for s in skipped] == [str(path)]
