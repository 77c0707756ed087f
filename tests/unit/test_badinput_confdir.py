"""Bad-input suite (issue 6): generated conf dirs against the loader (cri_net/operator/loader.py).

The loader's promise (its docstring, and libcni/conf.py's "one broken file must never take a
node's networking down"): `load_networks` never raises for a bad file; every config file of
the dir is either loaded or reported in `skipped` with its path and a reason; names are
unique and valid, the first file winning a duplicate. Generated dirs mix valid configs with
invalid, huge, non-UTF-8, non-object, deeply nested and duplicate-name files, and fragment
dirs (spec 1.1.0 `<conf dir>/<network name>/*.conf`) holding garbage.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from badinput_strategies import deep_json, json_values, nasty_text, props
from tests.reliability import record
from cri_net.operator.loader import MAX_CONF_FILE_SIZE, NetworkSet, load_networks

SUITE = "bad-input"
AUDITED = "every config file loaded or skipped with its path and a reason; names unique and valid"
NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
EXTENSIONS = (".conf", ".conflist", ".json")

Content = bytes | int | tuple[str, int]
names = st.one_of(st.sampled_from(["net", "net", "other", "cni-loopback", "", "../x", "a b", "-x", "x" * 300]),
                  nasty_text)


@st.composite
def file_contents(draw: st.DrawFn, ext: str) -> tuple[str, Content]:
    """(kind, content); an int content is the size of a sparse file of NULs (the huge ones), a
    tuple ("deep", n) JSON nested n levels (written at write time, so reports stay short)."""
    kind = draw(st.sampled_from(["valid", "valid", "valid", "json", "truncated", "binary", "nonobject",
                                 "huge", "deep", "wrongtypes", "noplugins", "badversion", "duplicatekey"]))
    name = draw(names)
    plugin: dict[str, Any] = {"type": draw(st.sampled_from(["bridge", "x", ""]) | nasty_text)}
    if draw(st.booleans()):
        plugin["capabilities"] = draw(st.dictionaries(st.sampled_from(["portMappings", "dns"]), json_values,
                                                      max_size=2))
    version = draw(st.sampled_from(["1.0.0", "0.4.0", "1.1.0", "0.3.1"]))
    if ext == ".conflist":
        doc: Any = {"cniVersion": version, "name": name, "plugins": [plugin]}
    else:
        doc = {"cniVersion": version, "name": name, **plugin}
    if kind == "valid":
        return kind, json.dumps(doc).encode()
    if kind == "json":
        return kind, json.dumps(draw(json_values)).encode()
    if kind == "truncated":
        text = json.dumps(doc).encode()
        return kind, text[: draw(st.integers(0, len(text) - 1))]
    if kind == "binary":
        return kind, draw(st.binary(min_size=1, max_size=64)) + b"\xff\xfe"
    if kind == "nonobject":
        return kind, json.dumps(draw(st.sampled_from([[doc], "x", 1, None, True]))).encode()
    if kind == "huge":
        return kind, MAX_CONF_FILE_SIZE + draw(st.integers(1, 4096))
    if kind == "deep":
        return kind, ("deep", draw(st.sampled_from([10, 900, 3000, 50_000])))
    if kind == "wrongtypes":
        key = draw(st.sampled_from(["name", "cniVersion", "plugins", "type", "capabilities", "cniVersions",
                                    "disableCheck"]))
        doc[key] = draw(json_values)
        return kind, json.dumps(doc).encode()
    if kind == "noplugins":
        doc.pop("plugins", None)
        doc.pop("type", None)
        return kind, json.dumps(doc).encode()
    if kind == "badversion":
        doc["cniVersion"] = draw(st.sampled_from(["9.9.9", "1.0", "x", "", "0.0.0", "1.0.0-rc1"]))
        return kind, json.dumps(doc).encode()
    text = json.dumps(doc)  # duplicatekey: a second "name" (or "plugins") member
    return kind, (text[:-1] + ', "name": ' + json.dumps(draw(names)) + "}").encode()


@st.composite
def conf_dirs(draw: st.DrawFn) -> list[tuple[str, str, Content]]:
    """[(file name, kind, content)], file names unique, some with ignored extensions."""
    count = draw(st.integers(0, 6))
    files = []
    used: set[str] = set()
    for i in range(count):
        ext = draw(st.sampled_from(EXTENSIONS + (".txt", ".conf~", "")))
        stem = draw(st.sampled_from([f"{i:02d}-net", f"{i:02d}", "crinet-x", " ", "..x", "ü"]))
        fname = stem + ext
        if fname in used or fname in (".", ".."):
            continue
        used.add(fname)
        kind, content = draw(file_contents(ext if ext in EXTENSIONS else ".conflist"))
        files.append((fname, kind, content))
    return files


_counter = itertools.count()


def write_dir(root: Path, files: list[tuple[str, str, Content]], fragments: dict[str, list[bytes]]) -> Path:
    conf_dir = root / f"d{next(_counter)}"
    conf_dir.mkdir()
    for fname, _, content in files:
        path = conf_dir / fname
        if isinstance(content, int):
            with open(path, "wb") as fh:
                fh.truncate(content)  # sparse: a huge file without writing a megabyte
        elif isinstance(content, tuple):
            path.write_text(deep_json(content[1]))
        else:
            path.write_bytes(content)
    for net, frags in fragments.items():
        d = conf_dir / net
        d.mkdir(exist_ok=True)
        for i, data in enumerate(frags):
            (d / f"{i}.conf").write_bytes(data)
    return conf_dir


def check_set(conf_dir: Path, files: list[tuple[str, str, Content]], result: NetworkSet) -> None:
    """Every config file accounted for exactly once; loaded ones are valid and unique."""
    expected = {str(conf_dir / f) for f, _, _ in files if os.path.splitext(f)[1] in EXTENSIONS}
    loaded = [n.source for n in result.networks]
    skipped = [s.path for s in result.skipped]
    assert sorted(loaded + skipped) == sorted(expected), (loaded, skipped, sorted(expected))
    for s in result.skipped:
        assert isinstance(s.reason, str) and s.reason.strip(), s
        assert len(s.reason) < 4096, f"reason of {s.path} is {len(s.reason)} chars (echoes the file?)"
    names_ = [n.name for n in result.networks]
    assert len(names_) == len(set(names_)), names_
    for net in result.networks:
        assert NAME_RE.fullmatch(net.name) and net.name != "cni-loopback", net.name
        assert net.plugins and all(p.type for p in net.plugins), net
    kinds = {str(conf_dir / f): k for f, k, _ in files}
    for s in result.skipped:
        if kinds.get(s.path) == "huge":
            assert "larger" in s.reason, s
    # the first of a duplicate name wins: a loaded network's file sorts before its duplicates
    for s in result.skipped:
        m = re.search(r"first defined in (.+)$", s.reason)
        if m:
            assert m.group(1) in loaded and m.group(1) < s.path, s


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("badinput-confdir")


@props(ci=120, full=1500)
@given(files=conf_dirs(), fragments=st.dictionaries(
    st.sampled_from(["net", "other"]), st.lists(st.sampled_from([b"{", b'{"type": "x"}', b"\xff", b"[]", b'{"type": 1}',
                                                                 b"[" * 3000]), max_size=2), max_size=1))
def test_load_networks_never_raises_and_reports_every_skip(root: Path, files: list[tuple[str, str, Content]],
                                                           fragments: dict[str, list[bytes]]) -> None:
    record("conf dir: generated config files", runs=1, audited=AUDITED, suite=SUITE)
    conf_dir = write_dir(root, files, fragments)
    try:
        result = load_networks(str(conf_dir))
    except Exception as exc:  # the property: nothing a file holds may escape as an exception
        pytest.fail(f"load_networks raised {type(exc).__name__}: {str(exc)[:200]} for files "
                    f"{[(f, k) for f, k, _ in files]}")
    try:
        check_set(conf_dir, files, result)
    finally:
        shutil.rmtree(conf_dir, ignore_errors=True)


@pytest.mark.parametrize("depth", [1000, 5000, 100_000])
@pytest.mark.parametrize("fname", ["10-deep.conflist", "10-deep.conf"])
def test_deeply_nested_file_is_skipped_not_fatal(tmp_path: Path, fname: str, depth: int) -> None:
    """The shrunk counterexample of the property: a valid-but-deep JSON file next to a good one."""
    record("conf dir: generated config files", runs=1, audited=AUDITED, suite=SUITE)
    (tmp_path / fname).write_text(deep_json(depth))
    (tmp_path / "20-good.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "good", "plugins": [{"type": "bridge"}]}))
    result = load_networks(str(tmp_path))
    assert result.names == ["good"]
    assert [s.path for s in result.skipped] == [str(tmp_path / fname)]


def test_duplicate_names_first_file_wins(tmp_path: Path) -> None:
    """Three files naming one network: the first by file name is loaded, the others skipped
    naming it."""
    record("conf dir: generated config files", runs=1, audited=AUDITED, suite=SUITE)
    for i in (30, 10, 20):
        (tmp_path / f"{i}-n.conflist").write_text(json.dumps(
            {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": f"t{i}"}]}))
    result = load_networks(str(tmp_path))
    assert [n.plugin_types for n in result.networks] == [["t10"]]
    assert [os.path.basename(s.path) for s in result.skipped] == ["20-n.conflist", "30-n.conflist"]
    assert all("first defined in " + str(tmp_path / "10-n.conflist") in s.reason for s in result.skipped)
