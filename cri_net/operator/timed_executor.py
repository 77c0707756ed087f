"""An Executor that reports each plugin run to `cri_net.metrics` (libcni itself stays free
of cri-net's metrics: the operator layer passes this one in)."""

from __future__ import annotations

import os
import time

from .. import metrics
from ..libcni import Executor
from ..libcni.invoke import PluginArgs


class TimedExecutor(Executor):
    def run(self, plugin_path: str, stdin: bytes, args: PluginArgs) -> bytes:
        start = time.monotonic()
        ok = False
        try:
            out = super().run(plugin_path, stdin, args)
            ok = True
            return out
        finally:
            metrics.observe_plugin_exec(os.path.basename(plugin_path), args.command, time.monotonic() - start, ok)
