"""Launchers installed before the plugin package import `run_plugin` from here; it moved to
`cri_net.plugin.launcher`. Re-run `cri-net cni-plugin install` to drop this path."""

from .plugin.launcher import run_plugin

__all__ = ["run_plugin"]
