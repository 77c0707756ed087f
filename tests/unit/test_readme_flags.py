"""The README's paragraph on which sub-command takes which config and directory flags (after the
Configuration table), held to the real parsers: a flag added or dropped makes this fail until
the README says so."""

from __future__ import annotations

import argparse
from pathlib import Path

from cri_net.cli.parser import build_parser
from test_cli import _parsers

README = Path(__file__).resolve().parents[2] / "README.md"
#: the flags the README's paragraph is about
DIR_FLAGS = {"--config", "--conf-dir", "--bin-dir", "--cache-dir", "--state-dir", "--netns-dir", "--plugin-timeout"}
NETWORK_FLAGS = {"--config", "--conf-dir", "--bin-dir", "--cache-dir", "--state-dir", "--plugin-timeout"}


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--")} - {"--help"}


def test_readme_flag_paragraph_matches_the_parsers():
    text = README.read_text()
    assert "takes the same directory flags" not in text and "`--netns-dir`: a NETNS given by name" in text
    parsers = dict(_parsers(build_parser()))
    serve = _flags(parsers["cri-net serve"])
    assert DIR_FLAGS <= serve
    assert _flags(parsers["cri-net config show"]) == serve - {"--install-default-network"}
    network = {path: p for path, p in parsers.items() if path.startswith("cri-net network ")}
    assert network, "no network sub-commands"
    for path, p in network.items():
        assert _flags(p) & DIR_FLAGS == NETWORK_FLAGS, path  # no --netns-dir
    description = parsers["cri-net network"].description or ""
    assert "netns_dir" in description and "no --netns-dir" in description
    assert _flags(parsers["cri-net cni"]) & DIR_FLAGS == {"--bin-dir", "--cache-dir"}
    assert {"--timeout"} <= _flags(parsers["cri-net cni"])
    for path in ("cri-net pods", "cri-net inspect"):
        assert _flags(parsers[path]) & DIR_FLAGS == {"--config"}, path
        assert "--listen" in _flags(parsers[path]), path
    assert _flags(parsers["cri-net cni-plugin install"]) & DIR_FLAGS == {"--bin-dir"}
