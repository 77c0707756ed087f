"""Flags shared by the sub-commands. Kept free of heavy imports: parsing arguments must not
cost what running the command does."""

from __future__ import annotations

import argparse

from .usage import seconds_arg

DEFAULT_CONFIG_FILE = "/etc/cri-net/config.toml"


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """The config and directory flags of `serve` (and so `config show`) and the `network` sub-commands."""
    parser.add_argument("--config", help=f"config file, TOML or JSON (default {DEFAULT_CONFIG_FILE} if present)")
    parser.add_argument("--conf-dir", dest="conf_dir", help="cri-net's network config dir (default /etc/cri-net/net.d; a runtime using the cri-net hook must not read it)")
    parser.add_argument("--bin-dir", dest="bin_dirs", action="append",
                        help="CNI plugin dir, repeatable (default /opt/cni/bin and /usr/lib/cni)")
    parser.add_argument("--cache-dir", dest="cache_dir", help="CNI result cache dir (default /var/lib/cni)")
    parser.add_argument("--state-dir", dest="state_dir", help="cri-net state dir (default /var/lib/cri-net)")
    parser.add_argument("--plugin-timeout", dest="plugin_timeout", type=seconds_arg,
                        help="seconds before a plugin is killed (default 60, at most a day)")
