"""`cri-net cni` is a cnitool drop-in, started once per call (issue 13: at most +40 ms a call
over the plugins it runs): it loads only what running a plugin list needs, and it still
reports what libcni logs in cri-net's format."""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from cri_net.cli import parser as cli_parser
from cri_net.cli.cni import parse_fast
from cri_net.cli.commands import COMMAND_MODULES
from cri_net.cli.main import main
from cri_net.cli.parser import build_parser
from fakeplugin.harness import FakeCNI

#: what a plugin run has no use for: the server's, the native adaptor's and the models'
#: libraries, and stdlib modules that cost milliseconds to import
NOT_FOR_A_PLUGIN_RUN = ("pydantic", "grpc", "pyroute2", "google.protobuf", "prometheus_client", "tenacity",
                        "dataclasses", "typing", "logging", "shutil", "tempfile", "decimal", "pathlib",
                        "argparse", "gettext", "locale", "signal")


def run_cni(fake: FakeCNI, conf_dir: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`cri-net cni ARGV` in a fresh interpreter; its result and the modules it had loaded."""
    modules = conf_dir.parent / "modules.json"
    code = ("import json, sys\nfrom cri_net.cli.main import main\nrc = main(sys.argv[2:])\n"
            "open(sys.argv[1], 'w').write(json.dumps(sorted(sys.modules)))\nsys.exit(rc)\n")
    env = {**os.environ, "NETCONFPATH": str(conf_dir), "CNI_PATH": str(fake.bin), **fake.env}
    proc = subprocess.run([sys.executable, "-c", code, str(modules), "cni", *argv, "--cache-dir", str(fake.cache_dir)],
                          capture_output=True, text=True, timeout=60, env=env)
    return proc, json.loads(modules.read_text()) if modules.exists() else []


@pytest.fixture
def conf_dir(fakecni: FakeCNI, tmp_path: Path) -> Path:
    fakecni.install("fake-a", "fake-b")
    d = tmp_path / "net.d"
    d.mkdir()
    (d / "10-net1.conflist").write_bytes(FakeCNI.conflist_bytes("fake-a", "fake-b", name="net1"))
    return d


@pytest.mark.parametrize("command", ["add", "check", "del"])
def test_a_plugin_run_loads_no_heavy_module(fakecni: FakeCNI, conf_dir: Path, tmp_path: Path, command: str) -> None:
    netns = str(tmp_path / "ns1")
    if command != "add":  # CHECK and DEL read the result ADD cached
        assert run_cni(fakecni, conf_dir, "add", "net1", netns)[0].returncode == 0
    proc, modules = run_cni(fakecni, conf_dir, command, "net1", netns)
    assert proc.returncode == 0, proc.stderr
    order = [("fake-b", "DEL"), ("fake-a", "DEL")] if command == "del" else [("fake-a", command.upper()), ("fake-b", command.upper())]
    assert fakecni.sequence()[-2:] == order
    loaded = [m for m in modules if m.split(".")[0] in NOT_FOR_A_PLUGIN_RUN or m in NOT_FOR_A_PLUGIN_RUN]
    assert loaded == [], f"cri-net cni {command} imported {loaded}"
    assert "cri_net.libcni.api" in modules  # it did run libcni (the list above is not vacuous)


def test_a_libcni_warning_is_still_printed_in_cri_nets_format(fakecni: FakeCNI, conf_dir: Path, tmp_path: Path) -> None:
    """Logging is set up only when libcni has a record to emit; such a record still reaches
    stderr as key=value, with its fields."""
    netns = str(tmp_path / "ns1")
    assert run_cni(fakecni, conf_dir, "add", "net1", netns)[0].returncode == 0
    [cache] = (fakecni.cache_dir / "results").iterdir()
    record = json.loads(cache.read_text())
    record["result"] = {"cniVersion": "1.0.0", "ips": [{"address": "not-a-cidr"}]}
    cache.write_text(json.dumps(record))
    proc, modules = run_cni(fakecni, conf_dir, "del", "net1", netns)
    assert proc.returncode == 0, proc.stderr
    assert "level=warning logger=cri_net.libcni" in proc.stderr
    assert 'msg="ignoring unusable cached result" network=net1' in proc.stderr
    assert "ips.0.address: invalid CIDR address: not-a-cidr" in proc.stderr
    assert "logging" in modules
    assert not cache.exists()


def test_a_config_loads_as_the_file_it_was_written_as(fakecni: FakeCNI, conf_dir: Path, tmp_path: Path) -> None:
    """The cache file of `cri-net cni add` holds the conflist's exact bytes, as Go libcni's."""
    assert run_cni(fakecni, conf_dir, "add", "net1", str(tmp_path / "ns1"))[0].returncode == 0
    [cache] = (fakecni.cache_dir / "results").iterdir()
    assert base64.b64decode(json.loads(cache.read_text())["config"]) == (conf_dir / "10-net1.conflist").read_bytes()


def _helps(parser: argparse.ArgumentParser, path: str = "cri-net") -> dict[str, str]:
    out = {path: parser.format_help()}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(_helps(sub, f"{path} {name}"))
    return out


@pytest.mark.parametrize("command", [c for cs in COMMAND_MODULES.values() for c in cs])
def test_one_sub_commands_parser_is_the_full_parsers(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run builds only its sub-command's parser (with the other sub-commands its module
    defines): the same help, flags and defaults as in the full parser."""
    monkeypatch.setenv("COLUMNS", "90")
    siblings = next(cs for cs in COMMAND_MODULES.values() if command in cs)
    full = {k: v for k, v in _helps(build_parser()).items() if k.split(" ")[1:2] and k.split(" ")[1] in siblings}
    only = {k: v for k, v in _helps(build_parser(command)).items() if k != "cri-net"}
    assert full and only == full


@pytest.mark.parametrize("columns", ["40", "90", "200"])
def test_help_is_what_argparse_prints(columns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """cri-net's parser class sizes help without shutil, to the same width argparse would."""
    monkeypatch.setenv("COLUMNS", columns)
    ours = _helps(build_parser())
    monkeypatch.setattr(cli_parser, "Parser", argparse.ArgumentParser)
    assert ours == _helps(build_parser())
    assert len(ours) > 10


def test_the_console_script_flushes_what_it_prints_before_its_fast_exit(fakecni: FakeCNI, conf_dir: Path,
                                                                         tmp_path: Path) -> None:
    """`cri-net cni` skips the interpreter's teardown (os._exit): its stdout (a pipe, so
    block-buffered) and stderr still arrive whole, and its exit status is main()'s."""
    cli = Path(sysconfig.get_path("scripts")) / "cri-net"
    env = {**os.environ, "NETCONFPATH": str(conf_dir), "CNI_PATH": str(fakecni.bin), **fakecni.env}
    netns = str(tmp_path / "ns1")
    add = subprocess.run([str(cli), "cni", "add", "net1", netns, "--cache-dir", str(fakecni.cache_dir)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert add.returncode == 0, add.stderr
    assert json.loads(add.stdout)["cniVersion"] == "1.0.0" and add.stdout.endswith("}\n")
    missing = subprocess.run([str(cli), "cni", "del", "nonet", netns, "--cache-dir", str(fakecni.cache_dir)],
                             capture_output=True, text=True, timeout=60, env=env)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == f'no net configuration with name "nonet" in {conf_dir}\n'


#: words a `cri-net cni` command line is made of: the ones parse_fast takes and the ones it
#: leaves to argparse (help, abbreviations, "--" alone and as a value, dash-led values, bad or
#: out-of-range timeouts, "=" forms)
_WORDS = st.sampled_from(["add", "check", "del", "status", "gc", "version", "bogus", "net1", "/run/netns/a", "",
                          "-i", "--ifname", "--ifname=eth1", "--ifname=", "-i=x", "-ieth2", "--cache-dir",
                          "--cache-dir=/c", "--cache", "--timeout", "--timeout=2.5", "--timeout=x", "1.5", "nan",
                          "-1", "--bin-dir", "--bin-dir=/b", "--bin", "-", "--", "-h", "--help", "a=b", "-x",
                          "--ifname=--", "--cache-dir=--", "--timeout=--", "--bin-dir=--", "-i--", "-i=--",
                          "--time=--", "inf", "0", "1e20", "--timeout=inf", "--timeout=0"])


def _argparse(argv: list[str]) -> dict[str, object] | None:
    try:
        return vars(build_parser("cni").parse_args(["cni", *argv]))
    except SystemExit:
        return None


@settings(max_examples=3000, deadline=None)
@given(st.lists(_WORDS, max_size=8))
def test_the_fast_parse_is_argparses_or_leaves_it_to_argparse(argv: list[str]) -> None:
    """parse_fast either declines or gives exactly what argparse gives for the same words."""
    fast = parse_fast(argv)
    if fast is not None:
        assert vars(fast) == _argparse(argv), argv


@pytest.mark.parametrize("argv, option", [
    (["version", "net1", "--cache-dir=--"], "--cache-dir"),
    (["version", "net1", "--cache-dir=--", "--time", "5"], "--cache-dir"),
    (["--bin-dir=--", "version", "net1"], "--bin-dir"),
    (["version", "net1", "--ifname=--"], "-i/--ifname"),
    (["version", "net1", "-i--"], "-i/--ifname"),
    (["version", "net1", "--timeout=--"], "--timeout"),
])
def test_an_option_value_of_dashdash_is_a_usage_error_naming_the_option(
        argv: list[str], option: str, capsys: pytest.CaptureFixture[str]) -> None:
    """argparse turns a value of exactly "--" into [] (the fast path took it as "--"): one
    meaning on both paths, a usage error, where it was a TypeError traceback or eth0."""
    assert parse_fast(argv) is None
    with pytest.raises(SystemExit) as exit_:
        main(["cni", *argv])
    assert exit_.value.code == 2
    assert f"argument {option}: expected one argument, not '--'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["add", "net1", "/run/netns/a"],
    ["del", "net1", "/run/netns/a", "--cache-dir", "/c", "--timeout", "3", "-i", "eth1"],
    ["--bin-dir", "/a", "--bin-dir=/b", "check", "net1", "x", "--ifname=net9"],
    ["status", "net1"], ["version", "net1", "--cache-dir=/c"],
])
def test_the_plain_forms_are_parsed_without_argparse(argv: list[str]) -> None:
    """The forms a runtime or a script uses take the fast path (the property above would pass
    with a parse_fast that always declines)."""
    fast = parse_fast(argv)
    assert fast is not None and vars(fast) == _argparse(argv)
